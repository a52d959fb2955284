/**
 * Signature verdicts against the real tools. A throwaway GNUPGHOME gets RSA-2048 (with a signing
 * subkey), Ed25519, DSA-2048 and a "stranger" key; rpmsign 4.18 signs test packages with them
 * (header signatures, and header+payload ones with --rpmv3); the trusted keys are `rpm --import`ed
 * into a temporary rpmdb. For good, unknown-key, tampered, forged, truncated and unsigned packages
 * our checks must print what `rpm -Kv` prints, and our pass/fail must be rpm -K's exit status.
 * ECDSA (P-256/384/521), which rpm 4.18 cannot verify, is checked against `gpg --verify` instead.
 */
import { existsSync, readdirSync } from "node:fs";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ImgpatchError } from "@imgpatch/disk";
import { describeWithTools, findTool, runTool, runToolOk, tempDir } from "@imgpatch/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  checkSignaturePolicy,
  injectRpm,
  MemoryTarget,
  parsePublicKeys,
  RpmKeyring,
  RpmSignatureError,
  RpmType,
  readRpm,
  SigTag,
  verifyPackageSignatures,
  verifyPayload,
} from "../src/index.js";
import { fixtureRpm } from "./helpers.js";
import {
  editSignature,
  mainHeaderOf,
  makeTestKey,
  redigest,
  type SigEntry,
  signData,
  signDataV3,
} from "./signing.js";

const bin = (tag: number, value: Uint8Array): SigEntry => ({ tag, type: RpmType.BIN, value });

let dir = "";
let gnupg = "";
let db = "";
let root = "";
const env = () => ({ GNUPGHOME: gnupg });
const trusted: string[] = [];
const files: Record<string, string> = {};

async function gpg(args: string[]): Promise<Buffer> {
  return runToolOk("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase", "", ...args], {
    env: env(),
  });
}

async function rpmsign(file: string, signer: string, extra: string[] = []): Promise<void> {
  await runToolOk(
    "rpmsign",
    [
      "--addsign",
      ...extra,
      "--define",
      `_gpg_name ${signer}`,
      "--define",
      `_gpg_path ${gnupg}`,
      "--define",
      `__gpg ${findTool("gpg")}`,
      file,
    ],
    { env: env() },
  );
}

/** rpm -Kv's signature lines (status words kept, the parenthesised details dropped) and exit code. */
async function rpmK(file: string): Promise<{ lines: string[]; ok: boolean; out: string }> {
  const r = await runTool("rpm", ["-Kv", "--dbpath", db, file]);
  const out = r.stdout.toString("utf8");
  const lines = out
    .split("\n")
    .map((l) => l.trim())
    // rpm also lists some absent signature kinds as NOTFOUND: not a signature in the package.
    .filter((l) => /signature/i.test(l) && !l.endsWith(": NOTFOUND"))
    .map((l) => l.replace(/ \(.*\)$/, ""));
  return { lines, ok: r.exitCode === 0, out: out + r.stderr };
}

let keyring: RpmKeyring;
let subKeyId = "";

/** Our signature lines (header digests not checked, so a tampered header still shows its signatures). */
async function ours(file: string): Promise<string[]> {
  const pkg = await readRpm(file, { skipHeaderDigest: true });
  try {
    return (await verifyPackageSignatures(pkg, keyring)).map((c) => `${c.label}: ${c.status}`);
  } finally {
    await pkg.close();
  }
}

/** Our whole verdict, as rpm -K's: digests, then the signature policy "if-present" with the trusted keys. */
async function oursOk(file: string): Promise<boolean> {
  try {
    const pkg = await readRpm(file);
    try {
      await checkSignaturePolicy(pkg, { signature: "if-present", keys: [keyring], guestKeys: false });
      await verifyPayload(pkg);
    } finally {
      await pkg.close();
    }
    return true;
  } catch (e) {
    if (!(e instanceof ImgpatchError)) throw e;
    return false;
  }
}

async function variant(name: string, from: string, change: (b: Uint8Array) => Uint8Array): Promise<string> {
  const out = join(dir, `${name}.rpm`);
  await writeFile(out, change(new Uint8Array(await readFile(files[from]))));
  files[name] = out;
  return out;
}

/** Flips one character of the header's SUMMARY text (a byte covered only by digests and signatures). */
function tamperHeader(b: Uint8Array): Uint8Array {
  const { offset, bytes } = mainHeaderOf(b);
  const at = Buffer.from(bytes).indexOf("imgpatch");
  const c = Uint8Array.from(b);
  c[offset + at] ^= 0x20;
  return c;
}

function sigBytes(b: Uint8Array, tag: number): Uint8Array {
  let v: Uint8Array | undefined;
  editSignature(b, (es) => {
    v = es.find((e) => e.tag === tag)?.value as Uint8Array;
    return es;
  });
  return v as Uint8Array;
}

function replaceSig(tag: number, value: (old: Uint8Array) => Uint8Array) {
  return (b: Uint8Array) =>
    editSignature(b, (es) =>
      es.map((e) => (e.tag === tag ? { ...e, value: value(e.value as Uint8Array) } : e)),
    );
}

describeWithTools(
  ["gpg", "gpgconf", "rpmsign", "rpm"],
  "signatures vs rpm -Kv (gpg 2.2 + rpmsign 4.18)",
  () => {
    beforeAll(async () => {
      dir = await tempDir("rpm-sig-");
      gnupg = join(dir, "gnupg");
      db = join(dir, "rpmdb");
      await mkdir(gnupg, { mode: 0o700 });
      await mkdir(db);
      for (const [uid, algo] of [
        ["rsa@test", "rsa2048"],
        ["ed@test", "ed25519"],
        ["dsa@test", "dsa2048"],
        ["stranger@test", "ed25519"],
      ]) {
        await gpg(["--quick-gen-key", `Test ${algo} <${uid}>`, algo, "sign", "never"]);
      }
      const rsaFpr = /^fpr:+([0-9A-F]{40}):/m.exec(
        (await gpg(["--with-colons", "--list-keys", "rsa@test"])).toString(),
      )?.[1];
      await gpg(["--quick-add-key", rsaFpr as string, "rsa2048", "sign", "never"]);
      const subFpr = [
        ...(await gpg(["--with-colons", "--list-keys", "rsa@test"]))
          .toString()
          .matchAll(/^fpr:+([0-9A-F]{40}):/gm),
      ][1][1];
      subKeyId = subFpr.slice(-8).toLowerCase();
      for (const k of ["rsa", "ed", "dsa"]) {
        const f = join(dir, `${k}.asc`);
        await writeFile(f, await gpg(["--armor", "--export", `${k}@test`]));
        trusted.push(f);
      }
      // Keys made in-process (test/signing.ts) too: rpm judges the v3 and v4 packets our signer makes.
      const ownRsa = makeTestKey("rsa", "own rsa <own-rsa@test>");
      const ownEd = makeTestKey("ed25519", "own ed <own-ed@test>");
      for (const k of [ownRsa, ownEd]) {
        const f = join(dir, `own-${k.algo}.asc`);
        await writeFile(f, k.armored);
        trusted.push(f);
      }
      await runToolOk("rpm", ["--dbpath", db, "--import", ...trusted]);
      // The same keys in a root for `rpm -i --test` (its database lives inside the root).
      root = join(dir, "root");
      await mkdir(root);
      await runToolOk("rpm", ["--root", root, "--dbpath", "/var/lib/rpm", "--import", ...trusted]);
      keyring = await RpmKeyring.fromFiles(trusted);

      files.unsigned = join(dir, "unsigned.rpm");
      await copyFile(fixtureRpm("imgpatch-mini-gzip"), files.unsigned);
      const signed: [string, string, string[]][] = [
        ["rsa", "rsa@test", []],
        ["ed", "ed@test", []],
        ["dsa", "dsa@test", []],
        ["sub", `${subFpr}!`, []],
        ["rsa3", "rsa@test", ["--rpmv3"]],
        ["ed3", "ed@test", ["--rpmv3"]],
        ["stranger", "stranger@test", []],
      ];
      for (const [name, signer, extra] of signed) {
        files[name] = join(dir, `${name}.rpm`);
        await copyFile(files.unsigned, files[name]);
        await rpmsign(files[name], signer, extra);
      }
      // A bigger, xz-compressed fixture too.
      files.demo = join(dir, "demo.rpm");
      await copyFile(fixtureRpm("imgpatch-demo-xz"), files.demo);
      await rpmsign(files.demo, "rsa@test", ["--rpmv3"]);

      const header = mainHeaderOf(new Uint8Array(await readFile(files.unsigned)));
      const covered = new Uint8Array(await readFile(files.unsigned)).subarray(header.offset);
      const own: [string, (es: SigEntry[]) => SigEntry[]][] = [
        [
          "own-v4-rsa",
          (es) => [...es, bin(SigTag.RSAHEADER, signData(ownRsa, header.bytes, { hash: "sha384" }))],
        ],
        [
          "own-v4-ed",
          (es) => [...es, bin(SigTag.DSAHEADER, signData(ownEd, header.bytes, { hash: "sha512" }))],
        ],
        [
          "own-v3-rsa",
          (es) => [
            ...es,
            bin(SigTag.RSAHEADER, signDataV3(ownRsa, header.bytes)),
            bin(SigTag.PGP, signDataV3(ownRsa, covered, "sha1")),
          ],
        ],
        ["own-v4-legacy-ed", (es) => [...es, bin(SigTag.GPG, signData(ownEd, covered))]],
      ];
      for (const [name, edit] of own) await variant(name, "unsigned", (b) => editSignature(b, edit));
      await variant("own-v3-rsa-tampered", "own-v3-rsa", tamperHeader);
      await variant("own-v4-ed-forged", "own-v4-ed", (b) => redigest(tamperHeader(b)));
      for (const k of ["rsa", "ed", "dsa", "rsa3", "demo"]) await variant(`${k}-tampered`, k, tamperHeader);
      for (const k of ["rsa", "ed", "dsa", "sub", "rsa3"])
        await variant(`${k}-forged`, k, (b) => redigest(tamperHeader(b)));
      for (const k of ["rsa", "rsa3", "ed3", "demo"]) {
        await variant(`${k}-payload`, k, (b) => {
          const c = Uint8Array.from(b);
          c[c.length - 20] ^= 0x01;
          return c;
        });
      }
      // Truncated and corrupted signature packets.
      for (const [k, tag] of [
        ["rsa", SigTag.RSAHEADER],
        ["ed", SigTag.DSAHEADER],
        ["dsa", SigTag.DSAHEADER],
      ] as const) {
        const full = sigBytes(new Uint8Array(await readFile(files[k])), tag);
        for (const n of [1, 2, 6, 12, Math.floor(full.length / 2), full.length - 1]) {
          await variant(
            `${k}-trunc${n}`,
            k,
            replaceSig(tag, (v) => v.subarray(0, n)),
          );
        }
        await variant(
          `${k}-value`,
          k,
          replaceSig(tag, (v) => Uint8Array.from(v, (x, i) => (i === v.length - 5 ? x ^ 0x40 : x))),
        );
        // The two clear digest bytes sit just before the values: flip the first one.
        const left16At = (() => {
          // Packet header: new format (tag byte + 1, 2 or 5 length bytes) or old (tag byte + 1, 2 or 4).
          const h =
            full[0] & 0x40 ? 1 + (full[1] < 192 ? 1 : full[1] < 224 ? 2 : 5) : 1 + (1 << (full[0] & 3));
          const hashedLen = (full[h + 4] << 8) | full[h + 5]; // after version, type, key and hash algos
          const unhashedAt = h + 6 + hashedLen;
          return unhashedAt + 2 + ((full[unhashedAt] << 8) | full[unhashedAt + 1]);
        })();
        await variant(
          `${k}-left16`,
          k,
          replaceSig(tag, (v) => Uint8Array.from(v, (x, i) => (i === left16At ? x ^ 0xff : x))),
        );
      }
      for (const n of [3, 40])
        await variant(
          `rsa3-legacy-trunc${n}`,
          "rsa3",
          replaceSig(SigTag.PGP, (v) => v.subarray(0, n)),
        );
      await variant(
        "ed3-legacy-trunc9",
        "ed3",
        replaceSig(SigTag.GPG, (v) => v.subarray(0, 9)),
      );
      // Legacy header+payload signature alone (RSAHEADER dropped).
      await variant("rsa3-legacy-only", "rsa3", (b) =>
        editSignature(b, (es) => es.filter((e) => e.tag !== SigTag.RSAHEADER)),
      );
      await variant("ed3-legacy-only", "ed3", (b) =>
        editSignature(b, (es) => es.filter((e) => e.tag !== SigTag.DSAHEADER)),
      );
    }, 120_000);

    afterAll(async () => {
      await runTool("gpgconf", ["--kill", "all"], { env: env() });
    });

    it("rpmsign made the signatures we expect (header only by default, header+payload with --rpmv3)", async () => {
      expect((await rpmK(files.rsa)).lines).toEqual([
        expect.stringMatching(/^Header V4 RSA\/SHA\d+ Signature, key ID [0-9a-f]{8}: OK$/),
      ]);
      expect((await rpmK(files.rsa3)).lines).toHaveLength(2);
      expect((await rpmK(files.ed)).lines).toEqual([
        expect.stringMatching(/^Header V4 EdDSA\/SHA256 Signature/),
      ]);
      // The subkey signed "sub" (rpm finds subkeys of imported keys, so must we).
      expect((await rpmK(files.sub)).lines).toEqual([expect.stringContaining(`key ID ${subKeyId}: OK`)]);
      expect(keyring.find(`${"0".repeat(8)}${subKeyId}`)).toEqual([]);
      expect(keyring.keys.filter((k) => k.subkey && k.keyId.endsWith(subKeyId))).toHaveLength(1);
    });

    it("every case: our signature lines are rpm -Kv's and our verdict is rpm -K's", async () => {
      const names = Object.keys(files).sort();
      expect(names.length).toBeGreaterThanOrEqual(57);
      const statuses = new Set<string>();
      for (const name of names) {
        const want = await rpmK(files[name]);
        const got = await ours(files[name]);
        expect(got, `${name}\n${want.out}`).toEqual(want.lines);
        expect(await oursOk(files[name]), `${name} verdict\n${want.out}`).toBe(want.ok);
        for (const l of got) statuses.add(l.split(": ").pop() as string);
      }
      expect([...statuses].sort()).toEqual(["BAD", "NOKEY", "OK"]);
    });

    it('policy "required" accepts exactly what rpm -i accepts with %_pkgverify_level signature', async () => {
      // rpm -i --test reads no payload, so the cases that only break the payload are left out (rpm -K
      // covers them above); everything else must get the same yes/no.
      const names = Object.keys(files)
        .filter((n) => !n.endsWith("-payload"))
        .sort();
      let accepted = 0;
      for (const name of names) {
        const r = await runTool("rpm", [
          ...["-i", "--test", "--nodeps", "--root", root, "--dbpath", "/var/lib/rpm"],
          ...["--define", "_pkgverify_level signature", files[name]],
        ]);
        let ours = true;
        try {
          const pkg = await readRpm(files[name]);
          try {
            await checkSignaturePolicy(pkg, { signature: "required", keys: [keyring], guestKeys: false });
          } finally {
            await pkg.close();
          }
        } catch (e) {
          if (!(e instanceof ImgpatchError)) throw e;
          ours = false;
        }
        expect(ours, `${name}: rpm -i says ${r.exitCode}\n${r.stderr}`).toBe(r.exitCode === 0);
        if (ours) accepted++;
      }
      expect(names.length).toBeGreaterThanOrEqual(50);
      expect(accepted).toBeGreaterThanOrEqual(10);
    });

    it("a forged header (digests recomputed) passes the digest checks but not the signature, and nothing is written", async () => {
      for (const k of ["rsa", "ed", "dsa", "sub", "rsa3"]) {
        const pkg = await readRpm(files[`${k}-forged`]); // digests are consistent
        const guest = new MemoryTarget();
        await guest.put("/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
        await guest.put("/etc/group", "root:x:0:\n");
        const before = guest.mutations;
        const err = await injectRpm(pkg, guest, { keys: trusted }).catch((e) => e);
        expect(err, k).toBeInstanceOf(RpmSignatureError);
        expect((err as RpmSignatureError).reason).toBe("bad");
        expect(guest.mutations).toBe(before);
        await pkg.close();
      }
    });

    it("unknown key: NOKEY with rpm's key id in the message; the key file makes it pass", async () => {
      const pkg = await readRpm(files.stranger);
      const err = await checkSignaturePolicy(pkg, { keys: trusted }).catch((e) => e);
      expect(err).toBeInstanceOf(RpmSignatureError);
      const rpmLine = (await rpmK(files.stranger)).lines[0];
      const shortId = /key ID ([0-9a-f]{8})/.exec(rpmLine)?.[1];
      expect((err as Error).message).toContain(`NOKEY key ID ${shortId}`);
      expect((err as RpmSignatureError).keyId?.slice(8)).toBe(shortId);
      const strangerKey = join(dir, "stranger.asc");
      await writeFile(strangerKey, await gpg(["--export", "stranger@test"])); // binary this time
      const v = await checkSignaturePolicy(pkg, { keys: [...trusted, strangerKey] });
      expect(v.checks.map((c) => c.status)).toEqual(["OK"]);
      expect(v.checks[0].signer?.userIds).toEqual(["Test ed25519 <stranger@test>"]);
      await pkg.close();
    });
  },
);

describeWithTools(
  ["gpg", "gpgconf"],
  "ECDSA P-256/384/521 signatures vs gpg --verify (rpm 4.18 cannot make them)",
  () => {
    let home = "";
    const genv = () => ({ GNUPGHOME: home });
    const g = (args: string[]) =>
      runTool("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase", "", ...args], {
        env: genv(),
      });
    const curves = [
      ["nistp256", "SHA256"],
      ["nistp384", "SHA384"],
      ["nistp521", "SHA512"],
    ] as const;

    beforeAll(async () => {
      const d = await tempDir("rpm-sig-ec-");
      home = join(d, "gnupg");
      await mkdir(home, { mode: 0o700 });
      for (const [curve] of curves) {
        const r = await g(["--quick-gen-key", `EC <${curve}@test>`, curve, "sign", "never"]);
        expect(r.exitCode).toBe(0);
      }
    }, 60_000);
    afterAll(async () => {
      await runTool("gpgconf", ["--kill", "all"], { env: genv() });
    });

    it("gpg's ECDSA signatures over a header verify here; a changed header does not, for gpg either", async () => {
      const d = await tempDir("rpm-sig-ec-case-");
      const base = new Uint8Array(await readFile(fixtureRpm("imgpatch-mini-gzip")));
      const header = mainHeaderOf(base).bytes;
      await writeFile(join(d, "h"), header);
      for (const [curve, hash] of curves) {
        const sigFile = join(d, `${curve}.sig`);
        const signing = await g([
          "--local-user",
          `${curve}@test`,
          "--digest-algo",
          hash,
          "--detach-sign",
          "-o",
          sigFile,
          join(d, "h"),
        ]);
        expect(signing.exitCode, curve).toBe(0);
        const sig = new Uint8Array(await readFile(sigFile));
        const key = new Uint8Array((await g(["--armor", "--export", `${curve}@test`])).stdout);
        const signed = editSignature(base, (es) => [
          ...es,
          { tag: SigTag.DSAHEADER, type: RpmType.BIN, value: sig },
        ]);
        const ring = new RpmKeyring();
        ring.add(key, `${curve}.asc`);
        const check = async (b: Uint8Array) => {
          const pkg = await readRpm(b, { skipHeaderDigest: true });
          const c = await verifyPackageSignatures(pkg, ring);
          await pkg.close();
          return c.map((x) => `${x.label}: ${x.status}`);
        };
        expect(await check(signed), curve).toEqual([
          expect.stringMatching(new RegExp(`^Header V4 ECDSA/${hash} Signature, key ID [0-9a-f]{8}: OK$`)),
        ]);
        const tampered = tamperHeader(signed);
        expect(await check(tampered), curve).toEqual([expect.stringMatching(/: BAD$/)]);
        await writeFile(join(d, "h2"), mainHeaderOf(tampered).bytes);
        expect((await g(["--verify", sigFile, join(d, "h")])).exitCode, curve).toBe(0);
        expect((await g(["--verify", sigFile, join(d, "h2")])).exitCode, curve).not.toBe(0);
      }
    });

    it("our in-process ECDSA, EdDSA and RSA signatures verify under gpg --verify", async () => {
      const d = await tempDir("rpm-sig-ours-");
      const data = new Uint8Array(Buffer.from("header bytes stand-in\n".repeat(50)));
      await writeFile(join(d, "data"), data);
      for (const algo of ["p256", "p384", "p521", "ed25519", "rsa"] as const) {
        const key = makeTestKey(algo);
        await writeFile(join(d, `${algo}.gpg`), key.publicKey);
        expect((await g(["--import", join(d, `${algo}.gpg`)])).exitCode, algo).toBe(0);
        const hash = algo === "p384" ? "sha384" : algo === "p521" ? "sha512" : "sha256";
        await writeFile(join(d, `${algo}.sig`), signData(key, data, { hash }));
        const r = await g(["--verify", join(d, `${algo}.sig`), join(d, "data")]);
        expect(r.stderr, algo).toContain("Good signature");
      }
    });
  },
);

describeWithTools(["gpg"], "key files vs gpg --show-keys", () => {
  // Real-world keyrings on this machine (Debian's archive keys: RSA-4096, Ed25519, old DSA/ElGamal)
  // plus keys made in-process; every key gpg lists must be ours, with the same fingerprint, or be
  // one we skip as unable to sign (ElGamal, ECDH).
  const system = ["/usr/share/keyrings", "/etc/apt/trusted.gpg.d", "/etc/pki/rpm-gpg"]
    .filter((d) => existsSync(d))
    .flatMap((d) => readdirSync(d).map((f) => join(d, f)))
    .filter((f) => /\.(gpg|asc)$|RPM-GPG-KEY/.test(f));

  it(`the fingerprints of ${system.length} system key files and in-process keys match gpg's`, async () => {
    const home = join(await tempDir("rpm-sig-show-"), "gnupg");
    await mkdir(home, { mode: 0o700 });
    const d = await tempDir("rpm-sig-own-keys-");
    const files = [...system];
    for (const algo of ["rsa", "ed25519", "p256", "p384", "p521"] as const) {
      const f = join(d, `${algo}.asc`);
      await writeFile(f, makeTestKey(algo).armored);
      files.push(f);
    }
    let compared = 0;
    for (const f of files) {
      const r = await runTool(
        "gpg",
        ["--batch", "--show-keys", "--with-colons", "--with-subkey-fingerprints", f],
        {
          env: { GNUPGHOME: home },
        },
      );
      if (r.exitCode !== 0) continue; // not a key file gpg reads either
      const listed = r.stdout.toString("utf8").split("\n");
      const theirs: { algo: number; fpr: string }[] = [];
      // Each pub/sub line is followed (after rvk lines and the like) by its fpr line.
      let algo: number | undefined;
      for (const l of listed) {
        const m = /^(pub|sub):[^:]*:\d+:(\d+):/.exec(l);
        if (m) algo = Number(m[2]);
        const fpr = /^fpr:+([0-9A-F]{40}):/.exec(l);
        if (fpr && algo !== undefined) {
          theirs.push({ algo, fpr: fpr[1].toLowerCase() });
          algo = undefined;
        }
      }
      const ours = parsePublicKeys(new Uint8Array(await readFile(f)), f);
      const ourFprs = new Set(ours.keys.map((k) => k.fingerprint));
      for (const t of theirs) {
        if (ourFprs.has(t.fpr)) compared++;
        else expect([16, 18], `${f}: key ${t.fpr} (algorithm ${t.algo}) is missing`).toContain(t.algo);
      }
      expect(ours.keys.length + ours.skipped.length, f).toBe(theirs.length);
    }
    expect(compared).toBeGreaterThanOrEqual(3);
    await runTool("gpgconf", ["--kill", "all"], { env: { GNUPGHOME: home } });
  });
});
