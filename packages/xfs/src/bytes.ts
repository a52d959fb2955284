/**
 * Big-endian field access (XFS metadata is big-endian throughout, except the little-endian CRC
 * fields, which callers handle with `le32`/`setLe32`). 64-bit values are JS numbers: exact below
 * 2^53; `be64` returns NaN-free values only when the high word fits, so callers that need an exact
 * 64-bit value (LSNs, raw inode numbers) use `be64big`.
 */

export function be16(b: Uint8Array, off: number): number {
  return (b[off] << 8) | b[off + 1];
}
export function be32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}
/** 64-bit big-endian as a JS number (exact below 2^53; callers bound-check against their limits). */
export function be64(b: Uint8Array, off: number): number {
  return be32(b, off) * 0x1_0000_0000 + be32(b, off + 4);
}
export function be64big(b: Uint8Array, off: number): bigint {
  return (BigInt(be32(b, off)) << 32n) | BigInt(be32(b, off + 4));
}
export function le32(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}

export function setBe16(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff;
  b[off + 1] = v & 0xff;
}
export function setBe32(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 24) & 0xff;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}
/** Stores a non-negative integer below 2^53 as 64-bit big-endian. */
export function setBe64(b: Uint8Array, off: number, v: number): void {
  setBe32(b, off, Math.floor(v / 0x1_0000_0000) >>> 0);
  setBe32(b, off + 4, v >>> 0);
}
export function setBe64big(b: Uint8Array, off: number, v: bigint): void {
  setBe32(b, off, Number((v >> 32n) & 0xffff_ffffn));
  setBe32(b, off + 4, Number(v & 0xffff_ffffn));
}
export function setLe32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = (v >>> 24) & 0xff;
}

/** True when every byte of `b[start, end)` is zero. */
export function isZero(b: Uint8Array, start = 0, end = b.length): boolean {
  for (let i = start; i < end; i++) if (b[i] !== 0) return false;
  return true;
}
