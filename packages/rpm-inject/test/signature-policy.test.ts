/**
 * The signature policy without external tools: keys and signatures made in-process (node:crypto),
 * guests as MemoryTargets. Covers the modes, the guest keyring (/etc/pki/rpm-gpg, repo gpgkey=
 * lines, symlinks resolved inside the guest), typed errors, and that a refused package writes
 * nothing.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "@imgpatch/testkit";
import { beforeAll, describe, expect, it } from "vitest";
import {
  checkSignaturePolicy,
  formatPlan,
  injectRpm,
  injectRpms,
  loadGuestKeyring,
  MemoryTarget,
  planInjection,
  RpmKeyError,
  RpmKeyring,
  RpmSignatureError,
  RpmType,
  readRpm,
  repoGpgKeys,
  SigTag,
} from "../src/index.js";
import { buildRpm, S_IFREG } from "./build-rpm.js";
import {
  armor,
  editSignature,
  mainHeaderOf,
  makeTestKey,
  redigest,
  signData,
  signDataV3,
  signRpmHeader,
  type TestKey,
} from "./signing.js";

const enc = new TextEncoder();
let rsa: TestKey;
let ed: TestKey;
let ec: TestKey;
let ec384: TestKey;
let ec521: TestKey;
let other: TestKey;
let unsigned: Uint8Array;

function pkgBytes(name = "demo"): Uint8Array {
  return buildRpm({
    name,
    files: [
      {
        path: `/usr/share/${name}/hello.txt`,
        mode: S_IFREG | 0o644,
        content: enc.encode(`hello from ${name}\n`),
      },
    ],
  });
}

async function guest(keys: Record<string, string> = {}): Promise<MemoryTarget> {
  const t = new MemoryTarget();
  await t.put("/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
  await t.put("/etc/group", "root:x:0:\n");
  for (const [p, c] of Object.entries(keys)) {
    await t.ensureDir(p.slice(0, p.lastIndexOf("/")) || "/");
    await t.put(p, c);
  }
  return t;
}

async function inject(bytes: Uint8Array, t: MemoryTarget, opts: Parameters<typeof injectRpm>[2] = {}) {
  const pkg = await readRpm(bytes, { name: "test.rpm" });
  try {
    return await injectRpm(pkg, t, opts);
  } finally {
    await pkg.close();
  }
}

/** Injects and expects a typed refusal that left the guest untouched. */
async function refused(bytes: Uint8Array, t: MemoryTarget, opts: Parameters<typeof injectRpm>[2] = {}) {
  const before = t.mutations;
  const err = await inject(bytes, t, opts).then(
    () => undefined,
    (e) => e,
  );
  expect(err).toBeInstanceOf(RpmSignatureError);
  expect(t.mutations).toBe(before);
  expect(await t.exists("/usr/share/demo")).toBe(false);
  return err as RpmSignatureError;
}

beforeAll(() => {
  rsa = makeTestKey("rsa");
  ed = makeTestKey("ed25519");
  ec = makeTestKey("p256");
  ec384 = makeTestKey("p384");
  ec521 = makeTestKey("p521");
  other = makeTestKey("ed25519", "someone else <x@y>");
  unsigned = pkgBytes();
});

describe("signature policy", () => {
  it("default (if-present): a package signed by a key in the guest's /etc/pki/rpm-gpg is installed", async () => {
    for (const key of [rsa, ed, ec, ec384, ec521]) {
      const t = await guest({ "/etc/pki/rpm-gpg/RPM-GPG-KEY-test": key.armored });
      const { plan } = await inject(signRpmHeader(unsigned, key), t);
      expect(plan.signature.checks).toHaveLength(1);
      const c = plan.signature.checks[0];
      expect(c.status, key.algo).toBe("OK");
      expect(c.signer?.source).toBe("guest:/etc/pki/rpm-gpg/RPM-GPG-KEY-test");
      expect(c.signer?.fingerprint).toBe(key.fingerprint);
      expect(c.label).toBe(
        `Header V4 ${{ rsa: "RSA", ed25519: "EdDSA", p256: "ECDSA", p384: "ECDSA", p521: "ECDSA", dsa: "DSA" }[key.algo]}/SHA256 Signature, key ID ${key.keyId.slice(8)}`,
      );
      expect(await t.exists("/usr/share/demo/hello.txt")).toBe(true);
      expect(formatPlan(plan)).toContain(`signature ${c.label}: OK`);
    }
  });

  it("default: an unknown key is NOKEY (rpm's wording and key id) and nothing is written", async () => {
    const t = await guest({ "/etc/pki/rpm-gpg/RPM-GPG-KEY-other": other.armored });
    const err = await refused(signRpmHeader(unsigned, rsa), t);
    expect(err.reason).toBe("nokey");
    expect(err.code).toBe("ESIGNATURE");
    expect(err.message).toContain(`NOKEY key ID ${rsa.keyId.slice(8)}`);
    expect(err.keyId).toBe(rsa.keyId);
    expect(err.file).toBe("test.rpm");
  });

  it("explicit keys: host file paths, bytes or keyrings; guestKeys:false ignores the guest's", async () => {
    const dir = await tempDir("rpm-sig-keys-");
    const asc = join(dir, "key.asc");
    const bin = join(dir, "key.gpg");
    await writeFile(asc, rsa.armored);
    await writeFile(bin, ed.publicKey);
    const both = editSignature(signRpmHeader(signRpmHeader(unsigned, rsa), ed), (e) => e);
    for (const keys of [
      [asc, bin],
      [rsa.publicKey, enc.encode(ed.armored)],
      [await RpmKeyring.fromFiles([asc, bin])],
    ]) {
      const { plan } = await inject(both, await guest(), { keys });
      expect(plan.signature.checks.map((c) => c.status)).toEqual(["OK", "OK"]);
    }
    const t = await guest({ "/etc/pki/rpm-gpg/k": rsa.armored });
    await refused(signRpmHeader(unsigned, rsa), t, { guestKeys: false });
  });

  it("the guest keyring is read afresh for each package (a key added later counts)", async () => {
    const opts = { signature: "required" as const };
    const t = await guest();
    await refused(signRpmHeader(unsigned, rsa), t, opts);
    await t.ensureDir("/etc/pki/rpm-gpg");
    await t.put("/etc/pki/rpm-gpg/k", rsa.armored);
    expect((await inject(signRpmHeader(unsigned, rsa), t, opts)).plan.signature.checks[0].status).toBe("OK");
  });

  it("a key file that is not a key is an error even for an unsigned package", async () => {
    const dir = await tempDir("rpm-sig-notkey-");
    await writeFile(join(dir, "k.asc"), "not a key\n");
    const pkg = await readRpm(unsigned);
    await expect(checkSignaturePolicy(pkg, { keys: [join(dir, "k.asc")] })).rejects.toBeInstanceOf(
      RpmKeyError,
    );
    await pkg.close();
  });

  it("required: unsigned packages fail; if-present lets them through; ignore skips everything", async () => {
    const err = await refused(unsigned, await guest(), { signature: "required" });
    expect(err.reason).toBe("unsigned");
    expect(err.message).toContain("is not signed");
    const { plan } = await inject(unsigned, await guest());
    expect(plan.signature).toMatchObject({ mode: "if-present", signed: false, checks: [] });
    expect(formatPlan(plan)).toContain("signature none (unsigned; allowed by policy if-present)");
    const bad = editSignature(signRpmHeader(unsigned, rsa), (es) =>
      es.map((e) =>
        e.tag === SigTag.RSAHEADER ? { ...e, value: (e.value as Uint8Array).subarray(0, 20) } : e,
      ),
    );
    const r = await inject(bad, await guest(), { signature: "ignore" });
    expect(r.plan.signature).toMatchObject({ mode: "ignore", signed: true, checks: [] });
    const t = await guest({ "/etc/pki/rpm-gpg/k": rsa.armored });
    expect(
      (await inject(signRpmHeader(unsigned, rsa), t, { signature: "required" })).plan.signature.checks[0]
        .status,
    ).toBe("OK");
    await expect(
      inject(unsigned, await guest(), { signature: "maybe" as "required" }),
    ).rejects.toBeInstanceOf(TypeError);
  });

  it("a forged header (digests recomputed, signature kept) is BAD", async () => {
    const signed = signRpmHeader(unsigned, ed);
    const { offset, bytes } = mainHeaderOf(signed);
    const forged = Uint8Array.from(signed);
    forged[offset + Buffer.from(bytes).indexOf("hello.txt")] = "j".charCodeAt(0);
    const t = await guest({ "/etc/pki/rpm-gpg/k": ed.armored });
    const err = await refused(redigest(forged), t);
    expect(err.reason).toBe("bad");
    expect(err.message).toMatch(/Header V4 EdDSA\/SHA256 Signature, key ID [0-9a-f]{8}: BAD/);
  });

  it("the guest keyring: repo gpgkey=file:// keys (dnf variables, continuation lines), symlinks inside the guest", async () => {
    const t = await guest({
      "/etc/yum.repos.d/a.repo":
        "[a]\nname=A\nbaseurl=https://example.invalid/\ngpgcheck=1\ngpgkey=file:///opt/keys/KEY-a-$releasever\n" +
        "   file:///opt/other/ec.asc, https://example.invalid/remote.asc\n#gpgkey=file:///opt/keys/commented\n",
      "/etc/yum.repos.d/readme.txt": "gpgkey=file:///opt/keys/ignored\n",
      "/opt/keys/KEY-a-41": rsa.armored,
      "/opt/keys/ignored": ed.armored,
      "/shared/real-ec.asc": ec.armored,
      "/etc/pki/rpm-gpg/garbage": "not a key\n",
    });
    await t.ensureDir("/opt/other");
    // Absolute symlink: resolved at the guest root, not the host's.
    await t.symlink("/shared/real-ec.asc", "/opt/other/ec.asc");
    const ring = await loadGuestKeyring(t);
    expect(ring.keys.map((k) => k.keyId).sort()).toEqual([rsa.keyId, ec.keyId].sort());
    expect(ring.sources).toEqual(["guest:/opt/keys/KEY-a-41", "guest:/opt/other/ec.asc"]);
    expect(ring.problems.map((p) => p.source)).toEqual(["guest:/etc/pki/rpm-gpg/garbage"]);
    expect((await inject(signRpmHeader(unsigned, ec), t)).plan.signature.checks[0].status).toBe("OK");
    // The directory itself may be a symlink (inside the guest).
    const t2 = await guest({ "/usr/share/keys/k.asc": ed.armored });
    await t2.ensureDir("/etc/pki");
    await t2.symlink("../../usr/share/keys", "/etc/pki/rpm-gpg");
    expect((await loadGuestKeyring(t2)).keys.map((k) => k.keyId)).toEqual([ed.keyId]);
  });

  it("hostile guest key files are recorded as problems, never read whole or followed out", async () => {
    const t = await guest({
      "/etc/pki/rpm-gpg/good": ed.armored,
      "/etc/pki/rpm-gpg/huge": "x".repeat(1024 * 1024 + 1),
      "/etc/yum.repos.d/loop.repo": "[l]\ngpgkey=file:///etc/loop/key file:///missing/key\n",
    });
    await t.mknod("/etc/pki/rpm-gpg/fifo", "fifo", 0o644, 0, 0);
    await t.symlink("fifo", "/etc/pki/rpm-gpg/to-fifo");
    await t.symlink("/etc/pki/rpm-gpg/self", "/etc/pki/rpm-gpg/self");
    await t.symlink("../../../../../../etc/pki/rpm-gpg/good", "/etc/pki/rpm-gpg/dotdot");
    await t.ensureDir("/etc/loop");
    await t.symlink("/etc/loop", "/etc/loop/loop");
    const ring = await loadGuestKeyring(t);
    // "dotdot" stops at the guest root and finds the same key again (deduplicated).
    expect(ring.keys.map((k) => k.keyId)).toEqual([ed.keyId]);
    expect(ring.sources).toEqual(["guest:/etc/pki/rpm-gpg/dotdot", "guest:/etc/pki/rpm-gpg/good"]);
    const problems = Object.fromEntries(ring.problems.map((p) => [p.source, p.reason]));
    expect(Object.keys(problems).sort()).toEqual([
      "guest:/etc/loop/key",
      "guest:/etc/pki/rpm-gpg/fifo",
      "guest:/etc/pki/rpm-gpg/huge",
      "guest:/etc/pki/rpm-gpg/self",
      "guest:/etc/pki/rpm-gpg/to-fifo",
      "guest:/missing/key",
    ]);
    expect(problems["guest:/etc/pki/rpm-gpg/huge"]).toMatch(/larger than/);
    expect(problems["guest:/etc/pki/rpm-gpg/fifo"]).toMatch(/not a regular file/);
    expect(problems["guest:/etc/pki/rpm-gpg/self"]).toMatch(/too many levels/);
    // The package still installs with the good key, and the dry-run plan lists the problems.
    const { plan } = await inject(signRpmHeader(unsigned, ed), t);
    expect(plan.signature.keyProblems).toHaveLength(6);
  });

  it("repoGpgKeys reads several keys, continuation lines and ignores comments", () => {
    expect(
      repoGpgKeys(
        "[x]\ngpgkey = file:///a ,file:///b\n\tfile:///c\nenabled=1\n  file:///not-a-key\n; gpgkey=file:///d\n",
      ),
    ).toEqual(["file:///a", "file:///b", "file:///c"]);
  });

  it("several signatures (OPENPGP tag): one trusted OK is enough, but any BAD fails", async () => {
    const header = mainHeaderOf(unsigned).bytes;
    const b64 = (sig: Uint8Array) => Buffer.from(sig).toString("base64");
    const withSigs = (sigs: Uint8Array[]) =>
      editSignature(unsigned, (es) => [
        ...es,
        { tag: SigTag.OPENPGP, type: RpmType.STRING_ARRAY, value: sigs.map(b64) },
      ]);
    const t = await guest({ "/etc/pki/rpm-gpg/k": ed.armored });
    const ok = await inject(withSigs([signData(other, header), signData(ed, header, { hash: "sha512" })]), t);
    expect(ok.plan.signature.checks.map((c) => c.status)).toEqual(["NOKEY", "OK"]);
    const badSig = signData(ed, header);
    badSig[badSig.length - 3] ^= 1;
    expect(
      (
        await refused(
          withSigs([signData(ed, header), badSig]),
          await guest({ "/etc/pki/rpm-gpg/k": ed.armored }),
        )
      ).reason,
    ).toBe("bad");
    expect(
      (await refused(withSigs([signData(other, header)]), await guest({ "/etc/pki/rpm-gpg/k": ed.armored })))
        .reason,
    ).toBe("nokey");
  });

  it("v3 signatures and legacy header+payload signatures verify; a changed payload breaks the latter", async () => {
    const rpm = unsigned;
    const { bytes: header, offset } = mainHeaderOf(rpm);
    const covered = rpm.subarray(offset);
    expect(covered.subarray(0, header.length)).toEqual(header);
    const legacy = editSignature(rpm, (es) => [
      ...es,
      { tag: SigTag.RSAHEADER, type: RpmType.BIN, value: signDataV3(rsa, header) },
      { tag: SigTag.PGP, type: RpmType.BIN, value: signDataV3(rsa, covered, "sha1") },
    ]);
    const t = await guest({ "/etc/pki/rpm-gpg/k": rsa.armored });
    const r = await inject(legacy, t);
    expect(r.plan.signature.checks.map((c) => `${c.label}: ${c.status}`)).toEqual([
      `Header V3 RSA/SHA256 Signature, key ID ${rsa.keyId.slice(8)}: OK`,
      `V3 RSA/SHA1 Signature, key ID ${rsa.keyId.slice(8)}: OK`,
    ]);
    // Flip a payload byte (the legacy signature covers it); checked before the payload digest.
    const changed = Uint8Array.from(legacy);
    changed[changed.length - 10] ^= 1;
    const pkg = await readRpm(changed);
    const err = await checkSignaturePolicy(pkg, { keys: [rsa.publicKey] }).catch((e) => e);
    expect(err).toBeInstanceOf(RpmSignatureError);
    expect((err as RpmSignatureError).checks.map((c) => c.status)).toEqual(["OK", "BAD"]);
    await pkg.close();
  });

  it("refuses text-mode signatures, unknown critical subpackets, missing issuers and unknown algorithms", async () => {
    const header = mainHeaderOf(unsigned).bytes;
    const t = () => guest({ "/etc/pki/rpm-gpg/k": rsa.armored });
    const put = (sig: Uint8Array, tag: number = SigTag.RSAHEADER) =>
      editSignature(unsigned, (es) => [...es, { tag, type: RpmType.BIN, value: sig }]);
    const text = await refused(put(signData(rsa, header, { type: 0x01 })), await t());
    expect(text.reason).toBe("bad");
    expect(text.message).toContain("not a binary-document signature");
    const crit = await refused(
      put(signData(rsa, header, { extraHashed: Uint8Array.from([2, 0x80 | 101, 0]) })),
      await t(),
    );
    expect(crit.message).toContain("unknown critical subpacket 101");
    expect((await refused(put(signData(rsa, header, { noIssuer: true })), await t())).message).toContain(
      "no issuer",
    );
    // Hash algorithm 99 and public-key algorithm 99 (patched into a good packet): unsupported.
    const good = signData(rsa, header);
    const h = good[1] < 192 ? 2 : good[1] < 224 ? 3 : 6; // new-format packet header length
    const hashAt = h + 3; // after version, type, pk algo
    const unknownHash = Uint8Array.from(good, (x, i) => (i === hashAt ? 99 : x));
    expect((await refused(put(unknownHash), await t())).reason).toBe("unsupported");
    const v5 = Uint8Array.from(good, (x, i) => (i === h ? 5 : x));
    const e5 = await refused(put(v5), await t());
    expect(e5.reason).toBe("unsupported");
    expect(e5.message).toContain("signature version 5");
    // An RSA signature with only an EdDSA key of that id is NOKEY, not a crash.
    const t2 = await guest({ "/etc/pki/rpm-gpg/k": ed.armored });
    const forged = signData(rsa, header);
    expect((await refused(put(forged), t2)).reason).toBe("nokey");
  });

  it("bad key files given by the user are typed errors", async () => {
    const dir = await tempDir("rpm-sig-badkeys-");
    const cases: Record<string, string | Uint8Array> = {
      "text.asc": "hello\n",
      "crc.asc": rsa.armored.replace(/\n=.{4}\n/, "\n=AAAA\n"),
      "secret.gpg": Uint8Array.from([0xc5, 0x01, 0x04]),
      "trunc.gpg": rsa.publicKey.subarray(0, 40),
      "empty.gpg": new Uint8Array(0),
    };
    for (const [name, content] of Object.entries(cases)) {
      const p = join(dir, name);
      await writeFile(p, content);
      const err = await RpmKeyring.fromFiles([p]).catch((e) => e);
      expect(err, name).toBeInstanceOf(RpmKeyError);
      expect((err as RpmKeyError).file).toBe(p);
    }
    await expect(RpmKeyring.fromFiles([join(dir, "missing.asc")])).rejects.toBeInstanceOf(RpmKeyError);
    // Several armored blocks in one file, and a binary keyring of two certificates.
    const ring = new RpmKeyring();
    ring.add(enc.encode(`junk before\n${rsa.armored}\n${armor(ed.publicKey)}`), "two.asc");
    ring.add(new Uint8Array(Buffer.concat([ec.publicKey, other.publicKey])), "two.gpg");
    expect(ring.keys.map((k) => k.keyId)).toEqual([rsa.keyId, ed.keyId, ec.keyId, other.keyId]);
    expect(ring.keys[0].userIds).toEqual(["test rsa <rsa@test>"]);
  });

  it("injectRpms: a package that fails the policy stops the whole set before any write", async () => {
    const t = await guest({ "/etc/pki/rpm-gpg/k": rsa.armored });
    const good = await readRpm(signRpmHeader(pkgBytes("good"), rsa), { name: "good.rpm" });
    const bad = await readRpm(signRpmHeader(pkgBytes("bad"), other), { name: "bad.rpm" });
    const before = t.mutations;
    const err = await injectRpms([good, bad], t).catch((e) => e);
    expect(err).toBeInstanceOf(RpmSignatureError);
    expect((err as RpmSignatureError).file).toBe("bad.rpm");
    expect(t.mutations).toBe(before);
    const bad2 = await readRpm(pkgBytes("unsigned"), { name: "u.rpm" });
    const r = await injectRpms([good, bad2], t);
    expect(r.plans.map((p) => p.signature.signed)).toEqual([true, false]);
    expect(r.plans[0].signature.checks[0].status).toBe("OK");
    for (const p of [good, bad, bad2]) await p.close();
  });

  it("planInjection (the dry run) applies the policy too", async () => {
    const pkg = await readRpm(signRpmHeader(unsigned, other));
    await expect(planInjection(pkg, await guest())).rejects.toBeInstanceOf(RpmSignatureError);
    await pkg.close();
  });
});
