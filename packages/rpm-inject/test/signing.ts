/**
 * Test helpers for package signatures: rewriting an RPM's signature header (to add, drop, truncate
 * or corrupt signature tags) and a small in-process OpenPGP signer built on node:crypto, so that
 * signature tests (and fuzzing) also run where gpg/rpmsign are absent and cover ECDSA, which rpm
 * 4.18 cannot make.
 */
import { createHash, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { HEADER_INTRO_SIZE, INDEX_ENTRY_SIZE, LEAD_SIZE, RpmHeader, RpmType, SigTag } from "../src/index.js";
import { buildHeader } from "./build-rpm.js";

type Value = string | string[] | number[] | Uint8Array;
export interface SigEntry {
  tag: number;
  type: number;
  value: Value;
}

/** Splits an RPM into lead, signature entries and the rest (header + payload). */
export function splitRpm(rpm: Uint8Array): { lead: Uint8Array; entries: SigEntry[]; rest: Uint8Array } {
  const sizes = new DataView(rpm.buffer, rpm.byteOffset + LEAD_SIZE + 8, 8);
  const total = HEADER_INTRO_SIZE + sizes.getUint32(0) * INDEX_ENTRY_SIZE + sizes.getUint32(4);
  const sig = new RpmHeader(rpm.subarray(LEAD_SIZE, LEAD_SIZE + total), "sig", LEAD_SIZE);
  const entries: SigEntry[] = [];
  for (const e of sig.entries.values()) {
    if (e.tag === 62) continue; // the region is rebuilt
    let value: Value;
    if (e.type === RpmType.STRING) value = sig.string(e.tag) as string;
    else if (e.type === RpmType.STRING_ARRAY || e.type === RpmType.I18NSTRING)
      value = sig.strings(e.tag) as string[];
    else if (e.type === RpmType.BIN) value = Uint8Array.from(sig.binary(e.tag) as Uint8Array);
    else value = sig.numbers(e.tag) as number[];
    entries.push({ tag: e.tag, type: e.type, value });
  }
  const restAt = LEAD_SIZE + ((total + 7) & ~7);
  return { lead: rpm.subarray(0, LEAD_SIZE), entries, rest: rpm.subarray(restAt) };
}

/** Rebuilds an RPM with an edited signature header (header and payload unchanged). */
export function editSignature(rpm: Uint8Array, edit: (entries: SigEntry[]) => SigEntry[]): Uint8Array {
  const { lead, entries, rest } = splitRpm(rpm);
  const sig = buildHeader(edit(entries), 62);
  const padded = new Uint8Array((sig.length + 7) & ~7);
  padded.set(sig);
  return new Uint8Array(Buffer.concat([lead, padded, rest]));
}

/** The main header's bytes (what header signatures cover). */
export function mainHeaderOf(rpm: Uint8Array): { offset: number; bytes: Uint8Array } {
  const { entries, rest } = splitRpm(rpm);
  void entries;
  const dv = new DataView(rest.buffer, rest.byteOffset + 8, 8);
  const len = HEADER_INTRO_SIZE + dv.getUint32(0) * INDEX_ENTRY_SIZE + dv.getUint32(4);
  return { offset: rpm.length - rest.length, bytes: rest.subarray(0, len) };
}

/** Recomputes the header digests (SHA1 269, SHA256 273) after the main header was changed. */
export function redigest(rpm: Uint8Array): Uint8Array {
  const h = mainHeaderOf(rpm).bytes;
  return editSignature(rpm, (es) =>
    es.map((e) =>
      e.tag === SigTag.SHA1
        ? { ...e, value: createHash("sha1").update(h).digest("hex") }
        : e.tag === SigTag.SHA256
          ? { ...e, value: createHash("sha256").update(h).digest("hex") }
          : e,
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// In-process OpenPGP signer (v4 keys and signatures)

export type TestKeyAlgo = "rsa" | "ed25519" | "p256" | "p384" | "p521" | "dsa";

/** ECDSA test curves: node's name, the OID (length-prefixed, as in a key packet), coordinate size. */
const EC_CURVES = {
  p256: { name: "P-256", oid: [8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07], size: 32 },
  p384: { name: "P-384", oid: [5, 0x2b, 0x81, 0x04, 0x00, 0x22], size: 48 },
  p521: { name: "P-521", oid: [5, 0x2b, 0x81, 0x04, 0x00, 0x23], size: 66 },
} as const;

export interface TestKey {
  algo: TestKeyAlgo;
  /** Binary transferable public key: key packet + user id packet. */
  publicKey: Uint8Array;
  armored: string;
  keyId: string;
  fingerprint: string;
  privateKey: KeyObject;
}

function packet(tag: number, body: Uint8Array): Uint8Array {
  // New format, always with the 4-byte length form when large (keeps the helper simple).
  const head =
    body.length < 192
      ? [0xc0 | tag, body.length]
      : [
          0xc0 | tag,
          0xff,
          body.length >>> 24,
          (body.length >> 16) & 0xff,
          (body.length >> 8) & 0xff,
          body.length & 0xff,
        ];
  return new Uint8Array(Buffer.concat([Uint8Array.from(head), body]));
}

function mpi(mag: Uint8Array): Uint8Array {
  let i = 0;
  while (i < mag.length - 1 && mag[i] === 0) i++;
  const v = mag.subarray(i);
  const bits = v.length === 0 ? 0 : (v.length - 1) * 8 + (32 - Math.clz32(v[0]));
  return new Uint8Array(Buffer.concat([Uint8Array.from([bits >> 8, bits & 0xff]), v]));
}

const fromB64u = (s: string | undefined) => new Uint8Array(Buffer.from(s ?? "", "base64url"));

function crc24(data: Uint8Array): number {
  let crc = 0xb704ce;
  for (const b of data) {
    crc ^= b << 16;
    for (let i = 0; i < 8; i++) {
      crc <<= 1;
      if (crc & 0x1000000) crc ^= 0x1864cfb;
    }
  }
  return crc & 0xffffff;
}

export function armor(data: Uint8Array, kind = "PUBLIC KEY BLOCK"): string {
  const b64 = Buffer.from(data).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  const c = crc24(data);
  const crc = Buffer.from([c >> 16, (c >> 8) & 0xff, c & 0xff]).toString("base64");
  return `-----BEGIN PGP ${kind}-----\n\n${lines.join("\n")}\n=${crc}\n-----END PGP ${kind}-----\n`;
}

/** Makes a v4 signing key with node:crypto (created at a fixed time, so ids are per key material). */
export function makeTestKey(algo: TestKeyAlgo, uid = `test ${algo} <${algo}@test>`): TestKey {
  const created = 1_700_000_000;
  let material: Uint8Array[];
  let algoId: number;
  let privateKey: KeyObject;
  if (algo === "rsa") {
    const kp = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const jwk = kp.publicKey.export({ format: "jwk" });
    material = [mpi(fromB64u(jwk.n)), mpi(fromB64u(jwk.e))];
    algoId = 1;
    privateKey = kp.privateKey;
  } else if (algo === "ed25519") {
    const kp = generateKeyPairSync("ed25519");
    const x = fromB64u(kp.publicKey.export({ format: "jwk" }).x);
    const oid = Uint8Array.from([9, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01]);
    material = [oid, mpi(Uint8Array.from([0x40, ...x]))];
    algoId = 22;
    privateKey = kp.privateKey;
  } else if (algo === "p256" || algo === "p384" || algo === "p521") {
    const curve = EC_CURVES[algo];
    const kp = generateKeyPairSync("ec", { namedCurve: curve.name });
    const jwk = kp.publicKey.export({ format: "jwk" });
    const oid = Uint8Array.from(curve.oid);
    material = [oid, mpi(Uint8Array.from([0x04, ...fromB64u(jwk.x), ...fromB64u(jwk.y)]))];
    algoId = 19;
    privateKey = kp.privateKey;
  } else {
    throw new Error("dsa test keys come from gpg");
  }
  const body = new Uint8Array(
    Buffer.concat([
      Uint8Array.from([
        4,
        created >>> 24,
        (created >> 16) & 0xff,
        (created >> 8) & 0xff,
        created & 0xff,
        algoId,
      ]),
      ...material,
    ]),
  );
  const fingerprint = createHash("sha1")
    .update(Uint8Array.from([0x99, body.length >> 8, body.length & 0xff]))
    .update(body)
    .digest("hex");
  const uidBytes = new TextEncoder().encode(uid);
  const key: TestKey = {
    algo,
    publicKey: new Uint8Array(0),
    armored: "",
    keyId: fingerprint.slice(24),
    fingerprint,
    privateKey,
  };
  // Self-certification (positive, 0x13) of the user id, so gpg accepts the key: it covers the key
  // packet body and the user id, each with its own prefix and length.
  const uidLen = Buffer.alloc(4);
  uidLen.writeUInt32BE(uidBytes.length);
  const certified = Buffer.concat([
    Uint8Array.from([0x99, body.length >> 8, body.length & 0xff]),
    body,
    Uint8Array.from([0xb4]),
    uidLen,
    uidBytes,
  ]);
  // gpg wants an ECDSA hash at least as long as the curve (SHA-384 for P-384, SHA-512 for P-521).
  const hash = algo === "p384" ? "sha384" : algo === "p521" ? "sha512" : "sha256";
  const cert = signData(key, certified, {
    type: 0x13,
    created,
    hash,
    extraHashed: Uint8Array.from([2, 27, 0x03]),
  });
  key.publicKey = new Uint8Array(Buffer.concat([packet(6, body), packet(13, uidBytes), cert]));
  key.armored = armor(key.publicKey);
  return key;
}

const HASH_IDS: Record<string, number> = { sha1: 2, sha256: 8, sha384: 9, sha512: 10, sha224: 11 };

export interface SignOptions {
  hash?: string;
  /** Signature type (0 binary). */
  type?: number;
  created?: number;
  /** Extra hashed subpackets, raw (length byte, type, data). */
  extraHashed?: Uint8Array;
  /** Leave out the issuer subpackets. */
  noIssuer?: boolean;
}

/** A v4 signature packet by `key` over `data` (the bytes a header or legacy signature covers). */
export function signData(key: TestKey, data: Uint8Array, o: SignOptions = {}): Uint8Array {
  const hash = o.hash ?? "sha256";
  const algoId = key.algo === "rsa" ? 1 : key.algo === "ed25519" ? 22 : 19;
  const created = o.created ?? 1_700_000_100;
  const fpr = Buffer.from(key.fingerprint, "hex");
  const hashedSub = Buffer.concat([
    Uint8Array.from([5, 2, created >>> 24, (created >> 16) & 0xff, (created >> 8) & 0xff, created & 0xff]),
    o.noIssuer ? new Uint8Array(0) : Uint8Array.from([22, 33, 4, ...fpr]),
    o.extraHashed ?? new Uint8Array(0),
  ]);
  const unhashedSub = o.noIssuer
    ? new Uint8Array(0)
    : Uint8Array.from([9, 16, ...Buffer.from(key.keyId, "hex")]);
  const hashed = Buffer.concat([
    Uint8Array.from([4, o.type ?? 0, algoId, HASH_IDS[hash], hashedSub.length >> 8, hashedSub.length & 0xff]),
    hashedSub,
  ]);
  const trailer = Buffer.concat([hashed, Uint8Array.from([4, 0xff]), Buffer.from([0, 0, 0, 0])]);
  trailer.writeUInt32BE(hashed.length, trailer.length - 4);
  const signed = Buffer.concat([data, trailer]);
  const digest = createHash(hash).update(signed).digest();
  let values: Uint8Array[];
  if (key.algo === "rsa") values = [mpi(sign(hash, signed, key.privateKey))];
  else if (key.algo === "ed25519") {
    const s = sign(null, digest, key.privateKey);
    values = [mpi(s.subarray(0, 32)), mpi(s.subarray(32))];
  } else {
    const s = sign(hash, signed, { key: key.privateKey, dsaEncoding: "ieee-p1363" });
    values = [mpi(s.subarray(0, s.length / 2)), mpi(s.subarray(s.length / 2))];
  }
  const body = Buffer.concat([
    hashed,
    Uint8Array.from([unhashedSub.length >> 8, unhashedSub.length & 0xff]),
    unhashedSub,
    digest.subarray(0, 2),
    ...values,
  ]);
  return packet(2, new Uint8Array(body));
}

/** Signs an RPM's header (RSAHEADER for RSA keys, DSAHEADER for the others, as rpmsign does). */
export function signRpmHeader(rpm: Uint8Array, key: TestKey, o: SignOptions = {}): Uint8Array {
  const sig = signData(key, mainHeaderOf(rpm).bytes, o);
  const tag = key.algo === "rsa" ? SigTag.RSAHEADER : SigTag.DSAHEADER;
  return editSignature(rpm, (es) => [
    ...es.filter((e) => e.tag !== tag),
    { tag, type: RpmType.BIN, value: sig },
  ]);
}

/** A v3 signature packet (old packet format, as PGP 2.6 / early gpg made them). */
export function signDataV3(
  key: TestKey,
  data: Uint8Array,
  hash = "sha256",
  created = 1_700_000_200,
): Uint8Array {
  if (key.algo !== "rsa") throw new Error("v3 test signatures are RSA");
  const hashed = Uint8Array.from([
    0,
    created >>> 24,
    (created >> 16) & 0xff,
    (created >> 8) & 0xff,
    created & 0xff,
  ]);
  const signed = Buffer.concat([data, hashed]);
  const digest = createHash(hash).update(signed).digest();
  const body = Buffer.concat([
    Uint8Array.from([3, 5]),
    hashed,
    Buffer.from(key.keyId, "hex"),
    Uint8Array.from([1, HASH_IDS[hash]]),
    digest.subarray(0, 2),
    mpi(sign(hash, signed, key.privateKey)),
  ]);
  // Old format, tag 2, two-byte length.
  return new Uint8Array(
    Buffer.concat([Uint8Array.from([0x80 | (2 << 2) | 1, body.length >> 8, body.length & 0xff]), body]),
  );
}
