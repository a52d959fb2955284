/**
 * The OpenPGP subset package managers need (rpm's signature tags, apt's InRelease files): RFC 4880,
 * with RFC 9580 where it matters: packet framing, ASCII armor, v3/v4 signature packets and v4 public keys (RSA, DSA, ECDSA P-256/384/521, legacy EdDSA Ed25519).
 * Keys become `node:crypto` KeyObjects; signatures are checked with `node:crypto` too.
 *
 * Everything here parses untrusted bytes: every length is checked against what is left, and every
 * failure is an `OpenPgpError` (plain data, no crash, no unbounded allocation).
 */
import { createHash, createPublicKey, type KeyObject } from "node:crypto";

/** Malformed or unsupported OpenPGP data; `unsupported` tells which one. */
export class OpenPgpError extends Error {
  constructor(
    message: string,
    /** Byte offset in the parsed buffer, when known. */
    readonly offset?: number,
    /** True for well-formed data we do not handle (an algorithm, a version). */
    readonly unsupported = false,
  ) {
    super(message);
    this.name = "OpenPgpError";
  }
}

/** Packet tags (RFC 4880 §4.3) we look at. */
export const PacketTag = {
  SIGNATURE: 2,
  SECRET_KEY: 5,
  PUBLIC_KEY: 6,
  SECRET_SUBKEY: 7,
  USER_ID: 13,
  PUBLIC_SUBKEY: 14,
} as const;

/** Public-key algorithm ids (RFC 4880 §9.1, RFC 9580 §9.1) with rpm's display names. */
export const PubkeyAlgo = {
  RSA: 1,
  RSA_SIGN: 3,
  DSA: 17,
  ECDSA: 19,
  EDDSA_LEGACY: 22,
} as const;

const PUBKEY_NAMES: Record<number, string> = {
  1: "RSA",
  2: "RSA",
  3: "RSA",
  16: "ELGAMAL",
  17: "DSA",
  18: "ECDH",
  19: "ECDSA",
  22: "EdDSA",
  25: "X25519",
  26: "X448",
  27: "Ed25519",
  28: "Ed448",
};

/** Hash algorithm ids (RFC 4880 §9.4, RFC 9580 §9.5): rpm's display name and node's name. */
export const HashAlgo: Record<number, { name: string; node: string; size: number }> = {
  1: { name: "MD5", node: "md5", size: 16 },
  2: { name: "SHA1", node: "sha1", size: 20 },
  3: { name: "RIPEMD160", node: "ripemd160", size: 20 },
  8: { name: "SHA256", node: "sha256", size: 32 },
  9: { name: "SHA384", node: "sha384", size: 48 },
  10: { name: "SHA512", node: "sha512", size: 64 },
  11: { name: "SHA224", node: "sha224", size: 28 },
  12: { name: "SHA3-256", node: "sha3-256", size: 32 },
  14: { name: "SHA3-512", node: "sha3-512", size: 64 },
};

export function pubkeyAlgoName(id: number): string {
  return PUBKEY_NAMES[id] ?? `algorithm ${id}`;
}

export function hashAlgoName(id: number): string {
  return HashAlgo[id]?.name ?? `hash ${id}`;
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

// ---------------------------------------------------------------------------------------------
// Packet framing (RFC 4880 §4.2)

export interface Packet {
  tag: number;
  /** Offset of the packet header in the parsed buffer. */
  offset: number;
  body: Uint8Array;
}

/**
 * Splits a buffer into packets. Old and new header formats; partial body lengths are refused (no
 * packet rpm reads — keys, signatures, user ids — may use them) as is the old indeterminate length.
 */
export function parsePackets(bytes: Uint8Array): Packet[] {
  const out: Packet[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const start = pos;
    const first = bytes[pos++];
    if ((first & 0x80) === 0)
      throw new OpenPgpError(`not an OpenPGP packet (byte 0x${first.toString(16)})`, start);
    let tag: number;
    let len: number;
    const need = (n: number) => {
      if (pos + n > bytes.length) throw new OpenPgpError("truncated packet header", start);
    };
    if (first & 0x40) {
      tag = first & 0x3f;
      need(1);
      const o1 = bytes[pos++];
      if (o1 < 192) len = o1;
      else if (o1 < 224) {
        need(1);
        len = ((o1 - 192) << 8) + bytes[pos++] + 192;
      } else if (o1 === 255) {
        need(4);
        len = readU32(bytes, pos);
        pos += 4;
      } else {
        throw new OpenPgpError(`packet tag ${tag} uses a partial body length`, start);
      }
    } else {
      tag = (first >> 2) & 0x0f;
      const lt = first & 3;
      if (lt === 3) throw new OpenPgpError(`packet tag ${tag} has an indeterminate length`, start);
      const n = 1 << lt;
      need(n);
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + bytes[pos++];
    }
    if (len > bytes.length - pos) {
      throw new OpenPgpError(
        `packet tag ${tag} claims ${len} bytes, only ${bytes.length - pos} remain`,
        start,
      );
    }
    out.push({ tag, offset: start, body: bytes.subarray(pos, pos + len) });
    pos += len;
  }
  return out;
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) >>> 0) + (b[at + 1] << 16) + (b[at + 2] << 8) + b[at + 3];
}

/** A bounds-checked reader over a packet body. */
class Reader {
  pos = 0;
  constructor(
    readonly b: Uint8Array,
    readonly what: string,
    readonly base = 0,
  ) {}
  get left(): number {
    return this.b.length - this.pos;
  }
  take(n: number, field: string): Uint8Array {
    if (n > this.left) {
      throw new OpenPgpError(
        `${this.what}: truncated ${field} (needs ${n} bytes, ${this.left} left)`,
        this.base + this.pos,
      );
    }
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  u8(field: string): number {
    return this.take(1, field)[0];
  }
  u16(field: string): number {
    const v = this.take(2, field);
    return (v[0] << 8) | v[1];
  }
  u32(field: string): number {
    return readU32(this.take(4, field), 0);
  }
  /** Multiprecision integer: 2-byte bit count then the big-endian magnitude. */
  mpi(field: string): Uint8Array {
    const bits = this.u16(`${field} length`);
    const v = this.take((bits + 7) >> 3, field);
    // Leading zero bytes are tolerated (some encoders emit them); strip them for a canonical value.
    let i = 0;
    while (i < v.length - 1 && v[i] === 0) i++;
    return v.subarray(i);
  }
}

// ---------------------------------------------------------------------------------------------
// ASCII armor (RFC 4880 §6)

const CRC24_INIT = 0xb704ce;
const CRC24_POLY = 0x1864cfb;

function crc24(data: Uint8Array): number {
  let crc = CRC24_INIT;
  for (const byte of data) {
    crc ^= byte << 16;
    for (let i = 0; i < 8; i++) {
      crc <<= 1;
      if (crc & 0x1000000) crc ^= CRC24_POLY;
    }
  }
  return crc & 0xffffff;
}

const BASE64_LINE = /^[A-Za-z0-9+/=]+$/;

/**
 * Decodes every armored block of the given kind ("PUBLIC KEY BLOCK", "SIGNATURE", ...) in a text;
 * the checksum line is verified when present (RFC 9580 makes it optional).
 */
export function dearmor(text: string, kind = "PUBLIC KEY BLOCK"): Uint8Array[] {
  const lines = text.split(/\r?\n/);
  const blocks: Uint8Array[] = [];
  const begin = `-----BEGIN PGP ${kind}-----`;
  const end = `-----END PGP ${kind}-----`;
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== begin) continue;
    i++;
    // Armor headers ("Version: ...") run to the first blank line; some writers omit them and the blank.
    const headerStart = i;
    while (i < lines.length && lines[i].trim() !== "" && /^[A-Za-z-]+: /.test(lines[i])) i++;
    if (i < lines.length && lines[i].trim() === "") i++;
    else if (i !== headerStart) throw new OpenPgpError(`armor: no blank line after the headers of ${begin}`);
    let b64 = "";
    let crc: string | undefined;
    for (; i < lines.length; i++) {
      const l = lines[i].trim();
      if (l === end) break;
      if (l.startsWith("=") && l.length === 5) crc = l.slice(1);
      else if (l === "") continue;
      else if (!BASE64_LINE.test(l)) throw new OpenPgpError(`armor: bad base64 line ${i + 1}`);
      else b64 += l;
    }
    if (i >= lines.length) throw new OpenPgpError(`armor: ${begin} has no ${end}`);
    const data = new Uint8Array(Buffer.from(b64, "base64"));
    if (crc !== undefined) {
      const want = Buffer.from(crc, "base64");
      const got = crc24(data);
      if (want.length !== 3 || ((want[0] << 16) | (want[1] << 8) | want[2]) !== got) {
        throw new OpenPgpError(`armor: checksum mismatch in ${begin} block`);
      }
    }
    blocks.push(data);
  }
  return blocks;
}

// ---------------------------------------------------------------------------------------------
// Signature packets (RFC 4880 §5.2)

/** Signature subpacket types we read (RFC 4880 §5.2.3.1, RFC 9580 §5.2.3.7). */
const Subpacket = {
  CREATION_TIME: 2,
  EXPIRATION_TIME: 3,
  ISSUER: 16,
  ISSUER_FINGERPRINT: 33,
} as const;

/** Subpacket types a verifier may meet marked critical and still accept (they carry no constraint on us). */
const KNOWN_SUBPACKETS = new Set([2, 3, 4, 5, 7, 9, 11, 16, 20, 21, 22, 23, 25, 26, 27, 28, 30, 33, 34]);

export interface OpenPgpSignature {
  version: 3 | 4;
  /** Signature type (0x00 binary document for rpm). */
  type: number;
  pubkeyAlgo: number;
  hashAlgo: number;
  /** Seconds since the epoch (v3 field or v4 creation-time subpacket). */
  created?: number;
  /** Seconds after `created` the signature expires, when the signer set one. */
  expiresAfter?: number;
  /** Issuer key id, 16 hex digits (from the issuer subpacket or the fingerprint). */
  keyId?: string;
  /** Issuer fingerprint (v4 subpacket 33), hex. */
  issuerFingerprint?: string;
  /** First two bytes of the digest, stored in clear. */
  left16: Uint8Array;
  /** Signature values (RSA: s; DSA/ECDSA/EdDSA: r, s). */
  mpis: Uint8Array[];
  /**
   * The bytes appended to the signed data before hashing: v3 the type and creation time; v4 the
   * hashed part of the packet and its trailer.
   */
  trailer: Uint8Array;
  /** Critical subpackets we do not understand: such a signature must be rejected (RFC 4880 §5.2.3.1). */
  unknownCritical: number[];
}

/** Parses one signature packet body (a v3 or v4 signature). */
export function parseSignatureBody(body: Uint8Array, base = 0): OpenPgpSignature {
  const r = new Reader(body, "signature", base);
  const version = r.u8("version");
  if (version === 3 || version === 2) {
    if (r.u8("hashed length") !== 5)
      throw new OpenPgpError("v3 signature: hashed length must be 5", base + 1);
    const hashed = r.take(5, "type and creation time");
    const keyId = toHex(r.take(8, "key id"));
    const pubkeyAlgo = r.u8("public-key algorithm");
    const hashAlgo = r.u8("hash algorithm");
    const left16 = r.take(2, "hash prefix");
    const mpis = readSigMpis(r, pubkeyAlgo);
    return {
      version: 3,
      type: hashed[0],
      pubkeyAlgo,
      hashAlgo,
      created: readU32(hashed, 1),
      keyId,
      left16,
      mpis,
      trailer: hashed,
      unknownCritical: [],
    };
  }
  if (version !== 4) {
    throw new OpenPgpError(`signature version ${version} is not supported (v3 and v4 are)`, base, true);
  }
  const type = r.u8("type");
  const pubkeyAlgo = r.u8("public-key algorithm");
  const hashAlgo = r.u8("hash algorithm");
  const hashedLen = r.u16("hashed subpacket length");
  const hashedArea = r.take(hashedLen, "hashed subpackets");
  const hashedEnd = r.pos;
  const unhashedLen = r.u16("unhashed subpacket length");
  const unhashedArea = r.take(unhashedLen, "unhashed subpackets");
  const left16 = r.take(2, "hash prefix");
  const mpis = readSigMpis(r, pubkeyAlgo);

  const sig: OpenPgpSignature = {
    version: 4,
    type,
    pubkeyAlgo,
    hashAlgo,
    left16,
    mpis,
    trailer: new Uint8Array(0),
    unknownCritical: [],
  };
  readSubpackets(hashedArea, base + 6, sig, true);
  // Unhashed subpackets are not signed: only the issuer key id is taken from there (a hint for the
  // key lookup; a wrong one just finds the wrong key and fails).
  readSubpackets(unhashedArea, base + hashedEnd + 2, sig, false);

  // v4 trailer: the hashed part of the packet, then 0x04 0xff and its length as 4 bytes.
  const trailer = new Uint8Array(hashedEnd + 6);
  trailer.set(body.subarray(0, hashedEnd), 0);
  trailer[hashedEnd] = 0x04;
  trailer[hashedEnd + 1] = 0xff;
  new DataView(trailer.buffer).setUint32(hashedEnd + 2, hashedEnd);
  sig.trailer = trailer;
  return sig;
}

function readSigMpis(r: Reader, algo: number): Uint8Array[] {
  const count =
    algo === 1 || algo === 2 || algo === 3 ? 1 : algo === 17 || algo === 19 || algo === 22 ? 2 : -1;
  if (count < 0) {
    // Values of unknown algorithms are not parsed; the signature is refused as unsupported later.
    r.take(r.left, "signature values");
    return [];
  }
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) out.push(r.mpi(`signature value ${i + 1}`));
  if (r.left !== 0)
    throw new OpenPgpError(`signature: ${r.left} trailing bytes after the values`, r.base + r.pos);
  return out;
}

function readSubpackets(area: Uint8Array, base: number, sig: OpenPgpSignature, hashed: boolean): void {
  const r = new Reader(area, "signature subpacket", base);
  while (r.left > 0) {
    const o1 = r.u8("subpacket length");
    let len: number;
    if (o1 < 192) len = o1;
    else if (o1 < 255) len = ((o1 - 192) << 8) + r.u8("subpacket length") + 192;
    else len = r.u32("subpacket length");
    if (len < 1) throw new OpenPgpError("signature subpacket of length 0", base + r.pos);
    const data = r.take(len, "subpacket");
    const critical = (data[0] & 0x80) !== 0;
    const type = data[0] & 0x7f;
    const v = data.subarray(1);
    if (hashed && critical && !KNOWN_SUBPACKETS.has(type)) sig.unknownCritical.push(type);
    switch (type) {
      case Subpacket.CREATION_TIME:
        if (hashed && v.length === 4) sig.created = readU32(v, 0);
        break;
      case Subpacket.EXPIRATION_TIME:
        if (hashed && v.length === 4) sig.expiresAfter = readU32(v, 0);
        break;
      case Subpacket.ISSUER:
        if (v.length === 8 && (hashed || sig.keyId === undefined)) sig.keyId = toHex(v);
        break;
      case Subpacket.ISSUER_FINGERPRINT:
        // version byte, then 20 bytes (v4) or 32 (v6)
        if (hashed && v.length >= 2) {
          sig.issuerFingerprint = toHex(v.subarray(1));
          if (v[0] === 4 && v.length === 21 && sig.keyId === undefined) sig.keyId = toHex(v.subarray(13));
        }
        break;
    }
  }
}

/** Parses a buffer holding exactly one signature packet (what rpm stores in its signature tags). */
export function parseSignaturePacket(bytes: Uint8Array): OpenPgpSignature {
  const packets = parsePackets(bytes);
  if (packets.length !== 1)
    throw new OpenPgpError(`expected one signature packet, found ${packets.length}`, 0);
  const p = packets[0];
  if (p.tag !== PacketTag.SIGNATURE)
    throw new OpenPgpError(`expected a signature packet, found tag ${p.tag}`, 0);
  return parseSignatureBody(p.body, bytes.length - p.body.length);
}

// ---------------------------------------------------------------------------------------------
// Public keys (RFC 4880 §5.5.2, v4)

const OID_ED25519_LEGACY = "2b06010401da470f01"; // 1.3.6.1.4.1.11591.15.1
/** NIST curves for ECDSA: OID (hex) → JWK curve name and coordinate size in bytes. */
const NIST_CURVES: Record<string, { crv: string; size: number }> = {
  "2a8648ce3d030107": { crv: "P-256", size: 32 }, // 1.2.840.10045.3.1.7
  "2b81040022": { crv: "P-384", size: 48 }, // 1.3.132.0.34
  "2b81040023": { crv: "P-521", size: 66 }, // 1.3.132.0.35
};

/**
 * Size bounds on key material, so a hostile key file cannot make verification arbitrarily slow
 * (the largest keys in use are RSA-16384 and DSA 3072/256).
 */
const MAX_RSA_BYTES = 16384 / 8;
const MAX_DSA_P_BYTES = 4096 / 8;
const MAX_DSA_Q_BYTES = 512 / 8;

export interface OpenPgpPublicKey {
  /** 16 hex digits: the low 64 bits of the v4 fingerprint. */
  keyId: string;
  /** 40 hex digits (v4). */
  fingerprint: string;
  algo: number;
  created: number;
  /** True for a subkey; `primaryKeyId` names its primary key. */
  subkey: boolean;
  primaryKeyId: string;
  /** User ids of the certificate the key belongs to. */
  userIds: string[];
  /** The key for `node:crypto`. */
  key: KeyObject;
  /** For ECDSA/DSA: byte size of r and s (curve order / q length). */
  scalarSize?: number;
  /** Where the key came from (file name), for messages. */
  source: string;
}

/** A key packet we skipped: an algorithm or version we cannot verify with (encryption subkeys...). */
export interface SkippedKey {
  source: string;
  offset: number;
  reason: string;
}

function b64url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64url");
}

/** Minimal DER writer for the DSA SubjectPublicKeyInfo (JWK has no DSA form). */
function derLen(n: number): number[] {
  if (n < 0x80) return [n];
  const out: number[] = [];
  while (n > 0) {
    out.unshift(n & 0xff);
    n = Math.floor(n / 256);
  }
  return [0x80 | out.length, ...out];
}
function der(tag: number, content: Uint8Array | number[]): Uint8Array {
  const c = content instanceof Uint8Array ? content : Uint8Array.from(content);
  return Uint8Array.from([tag, ...derLen(c.length), ...c]);
}
function derInt(mag: Uint8Array): Uint8Array {
  // Positive INTEGER: prepend 0 when the top bit is set.
  return der(0x02, mag[0] & 0x80 ? Uint8Array.from([0, ...mag]) : mag);
}
function concat(parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}
const OID_DSA = Uint8Array.from([0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01]); // 1.2.840.10040.4.1

function dsaKey(p: Uint8Array, q: Uint8Array, g: Uint8Array, y: Uint8Array): KeyObject {
  const algId = der(0x30, concat([OID_DSA, der(0x30, concat([derInt(p), derInt(q), derInt(g)]))]));
  const bitString = der(0x03, concat([Uint8Array.from([0]), derInt(y)]));
  return createPublicKey({
    key: Buffer.from(der(0x30, concat([algId, bitString]))),
    format: "der",
    type: "spki",
  });
}

/**
 * Parses a v4 public-key (or public-subkey) packet body. Returns undefined (with `skip` filled) for
 * keys rpm cannot verify with; throws on malformed data.
 */
function parsePublicKeyBody(
  body: Uint8Array,
  base: number,
  source: string,
): { key?: Omit<OpenPgpPublicKey, "subkey" | "primaryKeyId" | "userIds">; skip?: string } {
  const r = new Reader(body, "public key", base);
  const version = r.u8("version");
  if (version !== 4) return { skip: `version ${version} key` };
  const created = r.u32("creation time");
  const algo = r.u8("algorithm");
  const fingerprint = createHash("sha1")
    .update(Uint8Array.from([0x99, body.length >> 8, body.length & 0xff]))
    .update(body)
    .digest("hex");
  const keyId = fingerprint.slice(24);
  const common = { keyId, fingerprint, algo, created, source };
  try {
    switch (algo) {
      case 1:
      case 3: {
        const n = r.mpi("RSA n");
        const e = r.mpi("RSA e");
        if (n.length > MAX_RSA_BYTES)
          return { skip: `RSA key of ${n.length * 8} bits (more than ${MAX_RSA_BYTES * 8})` };
        const key = createPublicKey({ key: { kty: "RSA", n: b64url(n), e: b64url(e) }, format: "jwk" });
        return { key: { ...common, key } };
      }
      case 17: {
        const p = r.mpi("DSA p");
        const q = r.mpi("DSA q");
        const g = r.mpi("DSA g");
        const y = r.mpi("DSA y");
        if (p.length > MAX_DSA_P_BYTES || q.length > MAX_DSA_Q_BYTES) {
          return { skip: `DSA key of ${p.length * 8}/${q.length * 8} bits (larger than any standard size)` };
        }
        return { key: { ...common, key: dsaKey(p, q, g, y), scalarSize: q.length } };
      }
      case 19:
      case 22: {
        const oidLen = r.u8("curve OID length");
        if (oidLen === 0 || oidLen === 0xff)
          throw new OpenPgpError("public key: reserved curve OID length", base + r.pos);
        const oid = toHex(r.take(oidLen, "curve OID"));
        const point = r.mpi("EC point");
        if (algo === 22) {
          if (oid !== OID_ED25519_LEGACY) return { skip: `EdDSA curve OID ${oid}` };
          if (point.length !== 33 || point[0] !== 0x40) {
            throw new OpenPgpError(
              "public key: Ed25519 point must be 0x40 followed by 32 bytes",
              base + r.pos,
            );
          }
          const key = createPublicKey({
            key: { kty: "OKP", crv: "Ed25519", x: b64url(point.subarray(1)) },
            format: "jwk",
          });
          return { key: { ...common, key } };
        }
        const curve = NIST_CURVES[oid];
        if (!curve) return { skip: `ECDSA curve OID ${oid}` };
        const n = curve.size;
        if (point.length !== 1 + 2 * n || point[0] !== 0x04) {
          throw new OpenPgpError(
            `public key: ${curve.crv} point must be uncompressed (0x04, x, y)`,
            base + r.pos,
          );
        }
        const key = createPublicKey({
          key: {
            kty: "EC",
            crv: curve.crv,
            x: b64url(point.subarray(1, 1 + n)),
            y: b64url(point.subarray(1 + n)),
          },
          format: "jwk",
        });
        return { key: { ...common, key, scalarSize: n } };
      }
      default:
        return { skip: `${pubkeyAlgoName(algo)} key (cannot sign packages)` };
    }
  } catch (e) {
    if (e instanceof OpenPgpError) throw e;
    // node:crypto refused the numbers (not a valid point, bad RSA modulus...).
    throw new OpenPgpError(`public key ${keyId}: ${(e as Error).message}`, base);
  }
}

export interface ParsedKeys {
  keys: OpenPgpPublicKey[];
  skipped: SkippedKey[];
}

/**
 * Reads the public keys (primary keys and subkeys) of an OpenPGP key file: ASCII-armored (any
 * number of blocks) or binary (one or several transferable public keys, e.g. a keyring export).
 * Secret-key packets are refused so that a secret key is never mistaken for a public one.
 */
export function parsePublicKeys(data: Uint8Array, source: string): ParsedKeys {
  const text = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("latin1");
  const blocks = text.includes("-----BEGIN PGP ") ? dearmor(text) : [data];
  if (blocks.length === 0) throw new OpenPgpError(`${source}: no PUBLIC KEY BLOCK in the armored file`);
  const keys: OpenPgpPublicKey[] = [];
  const skipped: SkippedKey[] = [];
  for (const block of blocks) {
    let primary: OpenPgpPublicKey | undefined;
    let primaryId: string | undefined;
    let certKeys: OpenPgpPublicKey[] = [];
    for (const p of parsePackets(block)) {
      if (p.tag === PacketTag.SECRET_KEY || p.tag === PacketTag.SECRET_SUBKEY) {
        throw new OpenPgpError(`${source}: holds a secret key, expected public keys only`, p.offset);
      }
      if (p.tag === PacketTag.PUBLIC_KEY || p.tag === PacketTag.PUBLIC_SUBKEY) {
        const isSub = p.tag === PacketTag.PUBLIC_SUBKEY;
        if (!isSub) {
          keys.push(...certKeys);
          certKeys = [];
          primary = undefined;
        } else if (primaryId === undefined) {
          throw new OpenPgpError(`${source}: subkey before any primary key`, p.offset);
        }
        const { key, skip } = parsePublicKeyBody(p.body, p.offset, source);
        if (!isSub) primaryId = key?.keyId ?? `skipped@${p.offset}`;
        if (!key) {
          skipped.push({ source, offset: p.offset, reason: skip ?? "unsupported" });
          continue;
        }
        const full: OpenPgpPublicKey = {
          ...key,
          subkey: isSub,
          primaryKeyId: isSub ? (primary?.keyId ?? (primaryId as string)) : key.keyId,
          userIds: isSub ? (primary?.userIds ?? []) : [],
        };
        if (!isSub) primary = full;
        certKeys.push(full);
      } else if (p.tag === PacketTag.USER_ID && primary) {
        primary.userIds.push(Buffer.from(p.body).toString("utf8"));
      }
    }
    keys.push(...certKeys);
  }
  return { keys, skipped };
}

// ---------------------------------------------------------------------------------------------
// Verification

/** Left-pads a big-endian magnitude to `size` bytes (refuses one that is too long). */
export function padTo(v: Uint8Array, size: number): Uint8Array | undefined {
  if (v.length > size) return undefined;
  const out = new Uint8Array(size);
  out.set(v, size - v.length);
  return out;
}
