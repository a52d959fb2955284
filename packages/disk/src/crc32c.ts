/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78) as ext4, jbd2 and XFS use it: the caller
 * passes the running value, with no implicit pre/post inversion (ext4 seeds with ~0 and stores the
 * raw result; XFS seeds with ~0 and stores the inverted result). Slice-by-16 tables: metadata
 * checksums (every inode, directory block, btree block) are on the hot path of every read.
 */
const POLY = 0x82f63b78;
const T = new Int32Array(16 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = T[n];
  for (let s = 1; s < 16; s++) {
    c = T[c & 0xff] ^ (c >>> 8);
    T[s * 256 + n] = c;
  }
}

/**
 * x^(2^k) modulo the polynomial, k = 0..31, in the reflected bit order (bit 31 is x^0): appending
 * n zero bytes multiplies the register by x^(8n), built from these in O(log n).
 */
const X2N = new Int32Array(32);
X2N[0] = 0x40000000;
for (let k = 1; k < 32; k++) X2N[k] = multModP(X2N[k - 1], X2N[k - 1]);

/** a·b modulo the polynomial (reflected bit order; a must not be 0). */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  let v = b;
  for (;;) {
    if (a & m) {
      p ^= v;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    v = v & 1 ? (v >>> 1) ^ POLY : v >>> 1;
  }
  return p;
}

/** The register after `len` more zero bytes. */
function shiftZeros(c: number, len: number): number {
  let op = 0x80000000; // x^0
  let k = 3; // 2^3 bits per byte
  for (let n = len; n > 0; n = Math.floor(n / 2), k++) if (n & 1) op = multModP(X2N[k & 31], op);
  return multModP(op, c) >>> 0;
}

/** A word view of the last buffer scanned (blocks of one read share a buffer: no view per call). */
let lastBuffer: ArrayBufferLike | undefined;
let lastWords: Int32Array<ArrayBufferLike> = new Int32Array(0);
function wordsOf(buf: ArrayBufferLike): Int32Array {
  if (buf !== lastBuffer) {
    lastBuffer = buf;
    lastWords = new Int32Array(buf, 0, buf.byteLength >> 2);
  }
  return lastWords;
}

/**
 * Where the run of zero bytes ending at `end` starts (`end` when data[end - 1] is not zero), read
 * a 32-bit word at a time: directory blocks and tables are mostly zero past their last record.
 */
function zeroTailStart(data: Uint8Array, start: number, end: number): number {
  let e = end;
  while (e > start && (data.byteOffset + e) & 3) {
    if (data[e - 1] !== 0) return e;
    e--;
  }
  const first = (data.byteOffset + start + 3) >> 2;
  const last = (data.byteOffset + e) >> 2;
  if (last > first) {
    const w = wordsOf(data.buffer);
    let i = last;
    while (i > first && w[i - 1] === 0) i--;
    e = 4 * i - data.byteOffset;
  }
  while (e > start && data[e - 1] === 0) e--;
  return e;
}

export function crc32c(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  // A long zero tail costs O(log n) instead of a table step per byte.
  if (end - start >= 1024 && data[end - 1] === 0) {
    const z = zeroTailStart(data, start, end);
    return shiftZeros(crc32cBytes(crc, data, start, z), end - z);
  }
  return crc32cBytes(crc, data, start, end);
}

function crc32cBytes(crc: number, data: Uint8Array, start: number, end: number): number {
  let c = crc | 0;
  let i = start;
  const stop16 = end - ((end - start) & 15);
  while (i < stop16) {
    // 16 bytes per step: the first word is folded with the running crc, table s*256 holds the
    // contribution of a byte followed by s more bytes.
    const a = c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24));
    const b = data[i + 4] | (data[i + 5] << 8) | (data[i + 6] << 16) | (data[i + 7] << 24);
    const d = data[i + 8] | (data[i + 9] << 8) | (data[i + 10] << 16) | (data[i + 11] << 24);
    const e = data[i + 12] | (data[i + 13] << 8) | (data[i + 14] << 16) | (data[i + 15] << 24);
    c =
      T[3840 + (a & 0xff)] ^
      T[3584 + ((a >>> 8) & 0xff)] ^
      T[3328 + ((a >>> 16) & 0xff)] ^
      T[3072 + (a >>> 24)] ^
      T[2816 + (b & 0xff)] ^
      T[2560 + ((b >>> 8) & 0xff)] ^
      T[2304 + ((b >>> 16) & 0xff)] ^
      T[2048 + (b >>> 24)] ^
      T[1792 + (d & 0xff)] ^
      T[1536 + ((d >>> 8) & 0xff)] ^
      T[1280 + ((d >>> 16) & 0xff)] ^
      T[1024 + (d >>> 24)] ^
      T[768 + (e & 0xff)] ^
      T[512 + ((e >>> 8) & 0xff)] ^
      T[256 + ((e >>> 16) & 0xff)] ^
      T[e >>> 24];
    i += 16;
  }
  while (i < end) c = T[(c ^ data[i++]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/** crc32c over `len` zero bytes (for checksum fields treated as zero without copying the block). */
export function crc32cZeros(crc: number, len: number): number {
  return len > 0 ? shiftZeros(crc | 0, len) : crc >>> 0;
}

/** crc32c of a little-endian u32 value. */
export function crc32cU32(crc: number, v: number): number {
  let c = crc | 0;
  for (let i = 0; i < 4; i++) {
    c = T[(c ^ (v >>> (8 * i))) & 0xff] ^ (c >>> 8);
  }
  return c >>> 0;
}
