/**
 * Release freshness and Signed-By fingerprints against apt itself: a synthetic repository whose
 * InRelease is clearsigned by gpg-made keys (a certify-only primary key with two signing subkeys,
 * and a second key) is given to `apt-get update` (-o Dir= on the guest directory, the keys in its
 * trusted.gpg.d) and to loadRepositories on the same guest state; both must accept or both refuse.
 * gpgv's VALIDSIG line confirms which subkey made the signature (the fact apt decides on).
 *
 *   dates        Valid-Until passed / Date a day ahead, with Acquire::Check-Valid-Until,
 *                Acquire::Check-Date, check-valid-until=no, check-date=no, --allow-expired;
 *                Acquire::Max-ValidTime(::LABEL) / Min-ValidTime, valid-until-max/min
 *   fingerprints Signed-By: primary (accepts its subkeys), primary! (does not), subkey, subkey!,
 *                the other subkey!, another key, a list, a keyring file plus a fingerprint outside it
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { HostDirTarget } from "../../rpm-inject/src/host-target.js";
import {
  createFetcher,
  DebReleaseDateError,
  DebSignatureError,
  loadRepositories,
  parseReleaseDate,
  readAptSettings,
  readGuestSources,
} from "../src/index.js";
import { buildDeb } from "./build-deb.js";
import { makeRepo } from "./repo.js";

const HOUR = 3600_000;
const rfc1123 = (ms: number) => new Date(ms).toUTCString().replace("GMT", "UTC");

let gnupg: string;
let deb: string;
/** Fingerprints (uppercase, as users write them) and binary keyrings. */
const fpr = { primary: "", sub1: "", sub2: "", other: "" };
let keyringA: string;
let keyringB: string;

async function gpg(args: string[]): Promise<string> {
  const r = await runTool("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase", "", ...args], {
    env: { GNUPGHOME: gnupg },
  });
  expect(r.exitCode, r.stderr.toString()).toBe(0);
  return r.stdout.toString("utf8");
}

/** A repository signed by `signer` (a fingerprint with "!" for an exact subkey) with these dates. */
async function signedRepo(dates: { date: number; validUntil?: number }, signer = `${fpr.sub1}!`) {
  const dir = await tempDir("deb-trust-repo-");
  const extra = `Date: ${rfc1123(dates.date)}\n${dates.validUntil === undefined ? "" : `Valid-Until: ${rfc1123(dates.validUntil)}\n`}`;
  await makeRepo(dir, [deb], "stable", "amd64", extra);
  const rel = join(dir, "dists/stable/Release");
  await gpg(["--yes", "-u", signer, "--clearsign", "-o", join(dir, "dists/stable/InRelease"), rel]);
  await rm(rel); // only InRelease: apt and we both read that one
  return dir;
}

interface GuestSpec {
  repo: string;
  options?: string;
  aptConf?: string;
  /** Keyrings put in trusted.gpg.d. */
  trusted?: string[];
}

async function guest(g: GuestSpec): Promise<string> {
  const root = await tempDir("deb-trust-guest-");
  for (const d of ["var/lib/dpkg", "etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/trusted.gpg.d"])
    await mkdir(join(root, d), { recursive: true });
  await writeFile(join(root, "var/lib/dpkg/status"), "");
  await writeFile(
    join(root, "etc/apt/sources.list"),
    `deb ${g.options ? `[${g.options}] ` : ""}file://${g.repo} stable main\n`,
  );
  if (g.aptConf) await writeFile(join(root, "etc/apt/apt.conf.d/50test"), g.aptConf);
  // apt reads Signed-By keyring paths on the host, we read them in the guest: both get the same file.
  for (const k of [keyringA, keyringB]) {
    if (!g.options?.includes(k)) continue;
    await mkdir(join(root, gnupg), { recursive: true });
    await writeFile(join(root, k), await readFile(k));
  }
  for (const k of g.trusted ?? [keyringA, keyringB])
    await writeFile(join(root, "etc/apt/trusted.gpg.d", k.split("/").pop() as string), await readFile(k));
  return root;
}

/** apt-get update on the guest directory: did apt accept the repository? */
async function aptAccepts(root: string): Promise<{ ok: boolean; output: string }> {
  for (const d of ["var/lib/apt/lists/partial", "var/cache/apt/archives/partial"])
    await mkdir(join(root, d), { recursive: true });
  const conf = join(root, "apt-oracle.conf");
  await writeFile(conf, `Dir "${root}/";\n`);
  const r = await runTool(
    "apt-get",
    [
      "-o",
      `Dir=${root}`,
      "-o",
      `Dir::State::status=${root}/var/lib/dpkg/status`,
      "-o",
      "APT::Architecture=amd64",
      "-o",
      "Debug::NoLocking=1",
      "-o",
      "APT::Sandbox::User=root",
      "update",
    ],
    { timeoutMs: 60_000, env: { APT_CONFIG: conf } },
  );
  const output = r.stdout.toString("utf8") + r.stderr.toString("utf8");
  // apt-get update exits 100 on these errors; a W: line about the repository also means it was not used.
  return { ok: r.exitCode === 0 && !/^(E|W): /m.test(output), output };
}

async function ours(
  root: string,
  extra: { allowExpired?: boolean } = {},
): Promise<{ ok: boolean; error?: unknown; warnings: string[] }> {
  const target = new HostDirTarget(root);
  const settings = await readAptSettings(target);
  const warnings: string[] = [];
  try {
    const repos = await loadRepositories(target, await readGuestSources(target), {
      fetcher: createFetcher({ cache: join(root, "cache") }),
      architectures: ["amd64"],
      aptValues: settings.values,
      allowExpired: extra.allowExpired,
      warn: (m) => warnings.push(m),
    });
    expect(repos[0].packages.map((p) => p.name)).toEqual(["trustme"]);
    return { ok: true, warnings };
  } catch (e) {
    return { ok: false, error: e, warnings };
  }
}

async function same(g: GuestSpec, label: string): Promise<{ ok: boolean; error?: unknown }> {
  const root = await guest(g);
  const apt = await aptAccepts(root);
  const mine = await ours(root);
  expect(mine.ok, `${label}: ours ${String(mine.error)}\n--- apt:\n${apt.output}`).toBe(apt.ok);
  return mine;
}

describeWithTools(
  ["apt-get", "gpg", "gpgv", "dpkg-deb"],
  "Release dates and Signed-By vs apt-get update",
  () => {
    beforeAll(async () => {
      gnupg = await tempDir("deb-trust-gnupg-");
      deb = await buildDeb({ name: "trustme", files: { "usr/share/doc/trustme/x": "x" } });
      await gpg([
        "--quick-gen-key",
        "imgpatch primary <primary@example.invalid>",
        "ed25519",
        "cert",
        "never",
      ]);
      await gpg(["--quick-gen-key", "imgpatch other <other@example.invalid>", "ed25519", "sign", "never"]);
      const list = (uid: string) => gpg(["--with-colons", "--list-keys", uid]);
      const fprs = (text: string) => [...text.matchAll(/^fpr:+([0-9A-F]{40}):/gm)].map((m) => m[1]);
      [fpr.primary] = fprs(await list("primary@example.invalid"));
      await gpg(["--quick-add-key", fpr.primary, "ed25519", "sign", "never"]);
      await gpg(["--quick-add-key", fpr.primary, "ed25519", "sign", "never"]);
      [, fpr.sub1, fpr.sub2] = fprs(await list("primary@example.invalid"));
      [fpr.other] = fprs(await list("other@example.invalid"));
      expect(Object.values(fpr).every((f) => /^[0-9A-F]{40}$/.test(f))).toBe(true);
      keyringA = join(gnupg, "a.gpg");
      keyringB = join(gnupg, "b.gpg");
      await gpg(["--yes", "--export", "-o", keyringA, fpr.primary]);
      await gpg(["--yes", "--export", "-o", keyringB, fpr.other]);
    });

    it("gpgv: the Release is signed by subkey 1 of the primary key", async () => {
      const repo = await signedRepo({ date: Date.now() - HOUR });
      const r = await runTool("gpgv", [
        "--status-fd",
        "1",
        "--keyring",
        keyringA,
        join(repo, "dists/stable/InRelease"),
      ]);
      expect(r.exitCode).toBe(0);
      const validsig = /^\[GNUPG:\] VALIDSIG (\S+) .* (\S+)$/m.exec(r.stdout.toString("utf8"));
      expect(validsig?.[1]).toBe(fpr.sub1);
      expect(validsig?.[2]).toBe(fpr.primary);
    });

    it("Valid-Until and Date: the same verdicts as apt", async () => {
      const now = Date.now();
      const fresh = await signedRepo({ date: now - 24 * HOUR, validUntil: now + 7 * 24 * HOUR });
      const expired = await signedRepo({ date: now - 48 * HOUR, validUntil: now - HOUR });
      const future = await signedRepo({ date: now + 24 * HOUR, validUntil: now + 7 * 24 * HOUR });
      const undated = await signedRepo({ date: now - HOUR });
      expect((await same({ repo: fresh }, "fresh")).ok).toBe(true);
      expect((await same({ repo: undated }, "no Valid-Until")).ok).toBe(true);
      const e = await same({ repo: expired }, "expired");
      expect(e.error).toBeInstanceOf(DebReleaseDateError);
      expect(String(e.error)).toMatch(/InRelease: .* is expired \(invalid since 1h \d+min \d+s/);
      expect(
        (await same({ repo: expired, aptConf: 'Acquire::Check-Valid-Until "false";\n' }, "apt.conf")).ok,
      ).toBe(true);
      expect(
        (await same({ repo: expired, options: "check-valid-until=no" }, "check-valid-until=no")).ok,
      ).toBe(true);
      expect(
        (await same({ repo: expired, options: "check-date=no" }, "check-date=no disables both")).ok,
      ).toBe(true);
      const f = await same({ repo: future }, "Date a day ahead");
      expect(f.error).toBeInstanceOf(DebReleaseDateError);
      expect(String(f.error)).toMatch(/InRelease: .* is not valid yet \(invalid for another 23h \d+min/);
      expect((await same({ repo: future, options: "check-date=no" }, "future, check-date=no")).ok).toBe(true);
      expect(
        (
          await same(
            { repo: future, aptConf: 'Acquire { Check-Date "false"; };\n' },
            "future, Check-Date false",
          )
        ).ok,
      ).toBe(true);
      // Check-Valid-Until=false does not accept a Release from the future.
      expect(
        (
          await same(
            { repo: future, aptConf: 'Acquire::Check-Valid-Until "false";\n' },
            "future, no Valid-Until",
          )
        ).ok,
      ).toBe(false);
      // Max-ValidTime / Min-ValidTime cap or extend Valid-Until, counted from Date.
      const maxValid: [GuestSpec, string, boolean][] = [
        [{ repo: fresh, aptConf: 'Acquire::Max-ValidTime "3600";\n' }, "Max-ValidTime caps", false],
        [{ repo: fresh, options: "valid-until-max=3600" }, "valid-until-max caps", false],
        [
          { repo: fresh, aptConf: 'Acquire::Max-ValidTime::imgpatch-test-label "3600";\n' },
          "Max-ValidTime::LABEL",
          false,
        ],
        [{ repo: fresh, aptConf: 'Acquire::Max-ValidTime::other-label "3600";\n' }, "another label", true],
        [
          { repo: undated, aptConf: 'Acquire::Max-ValidTime "60";\n' },
          "Max-ValidTime without Valid-Until",
          false,
        ],
        [{ repo: expired, aptConf: 'Acquire::Min-ValidTime "604800";\n' }, "Min-ValidTime extends", true],
        [{ repo: expired, options: "valid-until-min=604800" }, "valid-until-min extends", true],
      ];
      for (const [g, label, ok] of maxValid) {
        const r = await same(g, label);
        expect(r.ok, label).toBe(ok);
        if (!ok) expect(String(r.error), label).toMatch(/is expired .*Max-ValidTime/);
      }
      // --allow-expired (ours; apt's equivalent is -o Acquire::Check-Valid-Until=false): accepted, loudly.
      const allowed = await ours(await guest({ repo: expired }), { allowExpired: true });
      expect(allowed.ok).toBe(true);
      expect(allowed.warnings.join("\n")).toMatch(/WARNING: .*is expired.*--allow-expired/);
    });

    it("Signed-By fingerprints select keys as apt does (subkeys, '!')", async () => {
      const repo = await signedRepo({ date: Date.now() - HOUR });
      const cases: [string, string, boolean][] = [
        ["no Signed-By: every trusted key", "", true],
        ["primary fingerprint accepts its subkey", `signed-by=${fpr.primary}`, true],
        ["lowercase fingerprint", `signed-by=${fpr.primary.toLowerCase()}`, true],
        ["primary! only the primary key itself", `signed-by=${fpr.primary}!`, false],
        ["the signing subkey", `signed-by=${fpr.sub1}`, true],
        ["the signing subkey!", `signed-by=${fpr.sub1}!`, true],
        ["the other subkey!", `signed-by=${fpr.sub2}!`, false],
        ["another key", `signed-by=${fpr.other}`, false],
        ["a list", `signed-by=${fpr.other},${fpr.primary}`, true],
        ["a keyring file, the fingerprint not in it", `signed-by=${keyringB},${fpr.primary}`, false],
        ["a keyring file and its key's fingerprint", `signed-by=${keyringA},${fpr.sub1}!`, true],
      ];
      for (const [label, options, expected] of cases) {
        const r = await same({ repo, options }, label);
        expect(r.ok, label).toBe(expected);
        if (!r.ok) expect(r.error, label).toBeInstanceOf(DebSignatureError);
      }
      // deb822 Signed-By with a fingerprint (apt reads the same field)
      const root = await guest({ repo });
      await rm(join(root, "etc/apt/sources.list"));
      await mkdir(join(root, "etc/apt/sources.list.d"), { recursive: true });
      await writeFile(
        join(root, "etc/apt/sources.list.d/t.sources"),
        `Types: deb\nURIs: file://${repo}\nSuites: stable\nComponents: main\nSigned-By: ${fpr.sub2}! ${fpr.primary}\n`,
      );
      expect((await aptAccepts(root)).ok).toBe(true);
      expect((await ours(root)).ok).toBe(true);
    });

    it("a Signed-By value that is neither a path nor a fingerprint is refused, naming it", async () => {
      const repo = await signedRepo({ date: Date.now() - HOUR });
      const root = await guest({ repo, options: "signed-by=DEADBEEF" });
      expect((await aptAccepts(root)).ok).toBe(false);
      const r = await ours(root);
      expect(r.error).toBeInstanceOf(DebSignatureError);
      expect(String(r.error)).toMatch(/sources\.list:1: Signed-By "DEADBEEF" is neither/);
    });
  },
);

it("Release dates: RFC 1123 forms, offsets, garbage", () => {
  expect(parseReleaseDate("Sat, 10 Jun 2023 08:53:51 UTC")).toBe(Date.UTC(2023, 5, 10, 8, 53, 51));
  expect(parseReleaseDate("Sat, 10 Jun 2023 08:53:51 GMT")).toBe(Date.UTC(2023, 5, 10, 8, 53, 51));
  expect(parseReleaseDate("10 Jun 2023 10:53:51 +0200")).toBe(Date.UTC(2023, 5, 10, 8, 53, 51));
  expect(parseReleaseDate("Sat, 10 Foo 2023 08:53:51 UTC")).toBeUndefined();
  expect(parseReleaseDate(`${"9".repeat(5000)}`)).toBeUndefined();
});
