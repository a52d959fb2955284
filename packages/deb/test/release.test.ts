/**
 * InRelease / Release.gpg verification against gpgv (the verifier apt runs): the host's own cached
 * Debian InRelease files with the archive keyring, tampered copies, the wrong keyring, and
 * synthetic Release files clearsigned by gpg with RSA and Ed25519 keys (dash-escaped lines,
 * trailing whitespace, CRLF). Every verdict must match gpgv's.
 */
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { HostDirTarget } from "../../rpm-inject/src/host-target.js";
import {
  DebSignatureError,
  loadSourceKeys,
  parseDeb822Sources,
  parseOneLineSources,
  parseRepoOption,
  splitCleartext,
  verifyArmoredSignatures,
  verifyDetachedRelease,
  verifyInRelease,
} from "../src/index.js";

const KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";
const LISTS = "/var/lib/apt/lists";

async function gpgvOk(keyring: string, file: string, detachedData?: string): Promise<boolean> {
  const r = await runTool("gpgv", ["--keyring", keyring, file, ...(detachedData ? [detachedData] : [])]);
  return r.exitCode === 0;
}

function ours(text: string, keys: Parameters<typeof verifyInRelease>[1]): boolean {
  try {
    verifyInRelease(text, keys, "InRelease");
    return true;
  } catch (e) {
    expect(e).toBeInstanceOf(DebSignatureError);
    return false;
  }
}

describeWithTools(["gpgv", "gpg"], "Release signatures vs gpgv", () => {
  it("the host's cached Debian InRelease files: good, tampered, wrong key", async () => {
    const names = (await readdir(LISTS).catch(() => [])).filter((n) => n.endsWith("_InRelease"));
    if (names.length === 0)
      return expect
        .soft(names, "no cached InRelease in /var/lib/apt/lists (apt-get update never ran)")
        .not.toEqual([]);
    const root = new HostDirTarget("/");
    const keys = await loadSourceKeys(root, {
      uri: "file:///",
      suite: "x",
      components: ["main"],
      signedBy: [KEYRING],
      origin: "test",
    });
    const wrong = await loadSourceKeys(root, {
      uri: "file:///",
      suite: "x",
      components: ["main"],
      signedBy: ["/usr/share/keyrings/debian-archive-removed-keys.gpg"],
      origin: "test",
    });
    const dir = await tempDir("inrelease-");
    let cases = 0;
    for (const n of names) {
      const text = await readFile(join(LISTS, n), "utf8");
      const tampered = text
        .replace(/^(Date: .*)\d/m, (_, a) => `${a}7`)
        .replace(/^(Codename: )(\S+)/m, "$1$2x");
      for (const [label, t, k, ring] of [
        ["good", text, keys, KEYRING],
        ["tampered", tampered, keys, KEYRING],
        ["removed keys", text, wrong, "/usr/share/keyrings/debian-archive-removed-keys.gpg"],
      ] as const) {
        const f = join(dir, `${n}.${label}`);
        await writeFile(f, t);
        expect(ours(t, k), `${n} ${label}`).toBe(await gpgvOk(ring, f));
        cases++;
      }
      const r = verifyInRelease(text, keys, n);
      expect(r.sha256.size).toBeGreaterThan(10);
      expect(r.signer?.fingerprint).toMatch(/^[0-9a-f]{40}$/);
    }
    expect(cases).toBeGreaterThanOrEqual(3);
  });

  it("synthetic Release files clearsigned and detach-signed by gpg (RSA, Ed25519)", async () => {
    const home = await tempDir("gpghome-");
    const env = { GNUPGHOME: home };
    // Lines starting with "-" (dash-escaped by gpg) and trailing whitespace (not signed) exercise the
    // cleartext rules; they are checked at the signature level, a Release never holds them.
    const weird = "Origin: imgpatch \n- dash\n-----BEGIN not really\t\n--\nlast line  \n";
    const release = [
      "Origin: imgpatch",
      "Suite: test   ",
      "Codename: dashed\t",
      "Architectures: amd64 all",
      "Components: main",
      "SHA256:",
      ` ${"a".repeat(64)} 12 main/binary-amd64/Packages`,
      "",
    ].join("\n");
    const rel = join(home, "Release");
    await writeFile(rel, release);
    for (const algo of ["rsa3072", "ed25519"]) {
      const uid = `imgpatch ${algo} <${algo}@example.invalid>`;
      const g = await runTool(
        "gpg",
        [
          "--batch",
          "--pinentry-mode",
          "loopback",
          "--passphrase",
          "",
          "--quick-gen-key",
          uid,
          algo,
          "sign",
          "never",
        ],
        { env },
      );
      expect(g.exitCode, g.stderr.toString()).toBe(0);
      const pub = join(home, `${algo}.gpg`);
      const ex = await runTool("gpg", ["--batch", "--export", "-o", pub, uid], { env });
      expect(ex.exitCode).toBe(0);
      const inrel = join(home, `InRelease.${algo}`);
      const s = await runTool("gpg", ["--batch", "--yes", "-u", uid, "--clearsign", "-o", inrel, rel], {
        env,
      });
      expect(s.exitCode, s.stderr.toString()).toBe(0);
      const d = await runTool(
        "gpg",
        ["--batch", "--yes", "-u", uid, "--armor", "--detach-sign", "-o", `${rel}.${algo}.gpg`, rel],
        { env },
      );
      expect(d.exitCode, d.stderr.toString()).toBe(0);
      const keys = await loadSourceKeys(new HostDirTarget("/"), {
        uri: "file:///",
        suite: "x",
        components: ["main"],
        signedBy: [pub],
        origin: "test",
      });
      const text = await readFile(inrel, "utf8");
      expect(ours(text, keys), algo).toBe(await gpgvOk(pub, inrel));
      expect(ours(text, keys)).toBe(true);
      const parsed = verifyInRelease(text, keys, "InRelease");
      expect(parsed.stanza.get("Codename")).toBe("dashed");
      expect(parsed.sha256.get("main/binary-amd64/Packages")).toEqual({ hash: "a".repeat(64), size: 12 });
      const crlf = text.replace(/\n/g, "\r\n");
      expect(ours(crlf, keys)).toBe(true);
      const bad = text.replace("Components: main", "Components: mainx");
      await writeFile(`${inrel}.bad`, bad);
      expect(ours(bad, keys)).toBe(await gpgvOk(pub, `${inrel}.bad`));
      const weirdPath = join(home, `weird.${algo}`);
      await writeFile(weirdPath, weird);
      const ws = await runTool(
        "gpg",
        ["--batch", "--yes", "-u", uid, "--clearsign", "-o", `${weirdPath}.asc`, weirdPath],
        { env },
      );
      expect(ws.exitCode).toBe(0);
      const signedWeird = await readFile(`${weirdPath}.asc`, "utf8");
      expect(signedWeird).toContain("- -----BEGIN not really");
      const parts = splitCleartext(signedWeird, "weird");
      expect(parts.text).toBe(weird);
      expect(verifyArmoredSignatures(parts.armor, parts.signed, 0x01, keys, "weird").userIds).toContain(uid);
      const sig = await readFile(`${rel}.${algo}.gpg`, "utf8");
      expect(
        verifyDetachedRelease(new Uint8Array(await readFile(rel)), sig, keys, rel).signer?.userIds,
      ).toContain(uid);
      expect(() => verifyDetachedRelease(Buffer.from(`${release}x`), sig, keys, rel)).toThrow(
        DebSignatureError,
      );
    }
  });
});

it("sources: one-line, deb822, --repo", () => {
  const one = parseOneLineSources(
    "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.invalid/debian bookworm main contrib\ndeb-src http://m.invalid/debian bookworm main\ndeb file:/srv/repo ./\n",
    "sources.list",
  );
  expect(one).toEqual([
    {
      uri: "http://m.invalid/debian/",
      suite: "bookworm",
      components: ["main", "contrib"],
      architectures: ["amd64"],
      signedBy: ["/k.gpg"],
      origin: "sources.list:2",
    },
    { uri: "file:/srv/repo/", suite: "./", components: [], origin: "sources.list:4" },
  ]);
  const d = parseDeb822Sources(
    "Types: deb deb-src\n# a comment\nURIs: http://a.invalid/debian http://b.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nEnabled: no\nURIs: http://c.invalid/\nSuites: x\nComponents: main\n",
    "debian.sources",
  );
  expect(d.map((e) => `${e.uri} ${e.suite}`)).toEqual([
    "http://a.invalid/debian/ bookworm",
    "http://a.invalid/debian/ bookworm-updates",
    "http://b.invalid/debian/ bookworm",
    "http://b.invalid/debian/ bookworm-updates",
  ]);
  expect(parseRepoOption("deb [trusted=yes] file:///srv/r stable main")).toMatchObject({
    uri: "file:///srv/r/",
    trusted: true,
    origin: "--repo",
  });
  expect(() => parseRepoOption("deb ftp://x/ a main")).toThrow(/unsupported URI/);
  expect(() => parseOneLineSources("deb http://x/ suite\n", "l")).toThrow(/needs components/);
});
