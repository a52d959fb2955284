/**
 * Directory index hashes (legacy "dx_hack", half-MD4, TEA), each with a signed-char and an
 * unsigned-char variant (the superblock's s_flags says which one the creating platform used).
 */

export const DX_HASH = {
  legacy: 0,
  halfMd4: 1,
  tea: 2,
  legacyUnsigned: 3,
  halfMd4Unsigned: 4,
  teaUnsigned: 5,
  siphash: 6,
} as const;

const DEFAULT_SEED = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

function charAt(name: Uint8Array, i: number, signed: boolean): number {
  const c = name[i];
  return signed && c >= 128 ? c - 256 : c;
}

function legacyHash(name: Uint8Array, signed: boolean): number {
  let h0 = 0x12a3fe2d;
  let h1 = 0x37abe8f9;
  for (let i = 0; i < name.length; i++) {
    let h = (h1 + (h0 ^ Math.imul(charAt(name, i, signed), 7152373))) >>> 0;
    if (h & 0x80000000) h = (h - 0x7fffffff) >>> 0;
    h1 = h0;
    h0 = h;
  }
  return (h0 << 1) >>> 0;
}

/** Pack up to num*4 name bytes into num words, padded with a length-derived pattern. */
function str2hashbuf(name: Uint8Array, start: number, len: number, num: number, signed: boolean): number[] {
  let pad = (len | (len << 8)) >>> 0;
  pad = (pad | (pad << 16)) >>> 0;
  const out: number[] = [];
  let val = pad;
  const n = Math.min(len, num * 4);
  for (let i = 0; i < n; i++) {
    val = (charAt(name, start + i, signed) + ((val << 8) >>> 0)) >>> 0;
    if (i % 4 === 3) {
      out.push(val);
      val = pad;
    }
  }
  if (out.length < num) out.push(val);
  while (out.length < num) out.push(pad);
  return out;
}

const rol = (x: number, s: number) => ((x << s) | (x >>> (32 - s))) >>> 0;
const F = (x: number, y: number, z: number) => (z ^ (x & (y ^ z))) >>> 0;
const G = (x: number, y: number, z: number) => ((x & y) + ((x ^ y) & z)) >>> 0;
const H = (x: number, y: number, z: number) => (x ^ y ^ z) >>> 0;
const K2 = 0o13240474631;
const K3 = 0o15666365641;

function halfMd4(buf: number[], inp: number[]): void {
  let [a, b, c, d] = buf;
  const r = (f: typeof F, w: number, x: number, y: number, z: number, k: number, s: number) =>
    rol((w + f(x, y, z) + k) >>> 0, s);
  a = r(F, a, b, c, d, inp[0], 3);
  d = r(F, d, a, b, c, inp[1], 7);
  c = r(F, c, d, a, b, inp[2], 11);
  b = r(F, b, c, d, a, inp[3], 19);
  a = r(F, a, b, c, d, inp[4], 3);
  d = r(F, d, a, b, c, inp[5], 7);
  c = r(F, c, d, a, b, inp[6], 11);
  b = r(F, b, c, d, a, inp[7], 19);
  a = r(G, a, b, c, d, (inp[1] + K2) >>> 0, 3);
  d = r(G, d, a, b, c, (inp[3] + K2) >>> 0, 5);
  c = r(G, c, d, a, b, (inp[5] + K2) >>> 0, 9);
  b = r(G, b, c, d, a, (inp[7] + K2) >>> 0, 13);
  a = r(G, a, b, c, d, (inp[0] + K2) >>> 0, 3);
  d = r(G, d, a, b, c, (inp[2] + K2) >>> 0, 5);
  c = r(G, c, d, a, b, (inp[4] + K2) >>> 0, 9);
  b = r(G, b, c, d, a, (inp[6] + K2) >>> 0, 13);
  a = r(H, a, b, c, d, (inp[3] + K3) >>> 0, 3);
  d = r(H, d, a, b, c, (inp[7] + K3) >>> 0, 9);
  c = r(H, c, d, a, b, (inp[2] + K3) >>> 0, 11);
  b = r(H, b, c, d, a, (inp[6] + K3) >>> 0, 15);
  a = r(H, a, b, c, d, (inp[1] + K3) >>> 0, 3);
  d = r(H, d, a, b, c, (inp[5] + K3) >>> 0, 9);
  c = r(H, c, d, a, b, (inp[0] + K3) >>> 0, 11);
  b = r(H, b, c, d, a, (inp[4] + K3) >>> 0, 15);
  buf[0] = (buf[0] + a) >>> 0;
  buf[1] = (buf[1] + b) >>> 0;
  buf[2] = (buf[2] + c) >>> 0;
  buf[3] = (buf[3] + d) >>> 0;
}

function tea(buf: number[], inp: number[]): void {
  let sum = 0;
  let b0 = buf[0];
  let b1 = buf[1];
  const [a, b, c, d] = inp;
  for (let n = 0; n < 16; n++) {
    sum = (sum + 0x9e3779b9) >>> 0;
    b0 = (b0 + ((((b1 << 4) >>> 0) + a) ^ (b1 + sum) ^ ((b1 >>> 5) + b))) >>> 0;
    b1 = (b1 + ((((b0 << 4) >>> 0) + c) ^ (b0 + sum) ^ ((b0 >>> 5) + d))) >>> 0;
  }
  buf[0] = (buf[0] + b0) >>> 0;
  buf[1] = (buf[1] + b1) >>> 0;
}

export interface DxHash {
  hash: number;
  minor: number;
}

/**
 * Hash a name for the directory index. `version` is a DX_HASH value (already adjusted for the
 * unsigned flag); `seed` is s_hash_seed (all zero → the default seed).
 */
export function dxHash(name: Uint8Array, version: number, seed: readonly number[] | undefined): DxHash {
  const buf = seed?.some((w) => w !== 0) ? [...seed] : [...DEFAULT_SEED];
  let hash: number;
  let minor = 0;
  switch (version) {
    case DX_HASH.legacy:
    case DX_HASH.legacyUnsigned:
      hash = legacyHash(name, version === DX_HASH.legacy);
      break;
    case DX_HASH.halfMd4:
    case DX_HASH.halfMd4Unsigned: {
      const signed = version === DX_HASH.halfMd4;
      for (let p = 0, len = name.length; len > 0; len -= 32, p += 32) {
        halfMd4(buf, str2hashbuf(name, p, len, 8, signed));
      }
      // An empty name still runs zero rounds: the hash is the seed's word 1.
      hash = buf[1];
      minor = buf[2];
      break;
    }
    case DX_HASH.tea:
    case DX_HASH.teaUnsigned: {
      const signed = version === DX_HASH.tea;
      for (let p = 0, len = name.length; len > 0; len -= 16, p += 16) {
        tea(buf, str2hashbuf(name, p, len, 4, signed));
      }
      hash = buf[0];
      minor = buf[1];
      break;
    }
    default:
      throw new RangeError(`unsupported directory hash version ${version}`);
  }
  hash = (hash & ~1) >>> 0;
  if (hash === 0xfffffffe) hash = 0xfffffffc;
  return { hash, minor };
}

/** A hash version dxHash computes (siphash, for casefolded+encrypted directories, is not). */
export function isComputableHashVersion(version: number): boolean {
  return Number.isInteger(version) && version >= DX_HASH.legacy && version <= DX_HASH.teaUnsigned;
}

/** The effective hash version: a signed version becomes unsigned when s_flags says so. */
export function effectiveHashVersion(rootVersion: number, sbFlags: number): number {
  if (rootVersion <= DX_HASH.tea && sbFlags & 0x2) return rootVersion + 3;
  return rootVersion;
}
