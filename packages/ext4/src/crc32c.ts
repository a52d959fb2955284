/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78) as ext4 and jbd2 use it: the caller passes
 * the running value, with no implicit pre/post inversion (ext4 seeds with ~0 and stores the raw
 * result). Slice-by-8 tables: metadata checksums are on the hot path of every read.
 */
const POLY = 0x82f63b78;
const T = new Uint32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c >>> 0;
}
for (let n = 0; n < 256; n++) {
  let c = T[n];
  for (let s = 1; s < 8; s++) {
    c = T[c & 0xff] ^ (c >>> 8);
    T[s * 256 + n] = c >>> 0;
  }
}

export function crc32c(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  let c = crc >>> 0;
  let i = start;
  const stop8 = end - ((end - start) & 7);
  while (i < stop8) {
    const a = c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24));
    c =
      T[7 * 256 + (a & 0xff)] ^
      T[6 * 256 + ((a >>> 8) & 0xff)] ^
      T[5 * 256 + ((a >>> 16) & 0xff)] ^
      T[4 * 256 + (a >>> 24)] ^
      T[3 * 256 + data[i + 4]] ^
      T[2 * 256 + data[i + 5]] ^
      T[256 + data[i + 6]] ^
      T[data[i + 7]];
    i += 8;
  }
  while (i < end) c = T[(c ^ data[i++]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/** crc32c over `len` zero bytes (for checksum fields treated as zero without copying the block). */
export function crc32cZeros(crc: number, len: number): number {
  let c = crc >>> 0;
  for (let i = 0; i < len; i++) c = T[c & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/** crc32c of a little-endian u32 value. */
export function crc32cU32(crc: number, v: number): number {
  let c = crc >>> 0;
  for (let i = 0; i < 4; i++) {
    c = T[(c ^ (v >>> (8 * i))) & 0xff] ^ (c >>> 8);
  }
  return c >>> 0;
}
