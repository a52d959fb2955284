/** Little-endian field access on byte arrays (ext4 is little-endian throughout; jbd2 is big-endian). */

export function u8(b: Uint8Array, off: number): number {
  return b[off];
}
export function u16(b: Uint8Array, off: number): number {
  return b[off] | (b[off + 1] << 8);
}
export function u32(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}
export function i32(b: Uint8Array, off: number): number {
  return b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24);
}
/** 64-bit little-endian as a JS number (exact below 2^53; larger values lose precision, callers bound-check). */
export function u64(b: Uint8Array, off: number): number {
  return u32(b, off) + u32(b, off + 4) * 0x1_0000_0000;
}
export function be32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

export function setU8(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
}
export function setU16(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
}
export function setU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = (v >>> 24) & 0xff;
}
export function setU64(b: Uint8Array, off: number, v: number): void {
  setU32(b, off, v >>> 0);
  setU32(b, off + 4, Math.floor(v / 0x1_0000_0000) >>> 0);
}
export function setBe32(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 24) & 0xff;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}

/** Split a number into (lo32, hi32) for fields stored as two halves. */
export function hi32(v: number): number {
  return Math.floor(v / 0x1_0000_0000) >>> 0;
}

export function le32Bytes(v: number): Uint8Array {
  const b = new Uint8Array(4);
  setU32(b, 0, v);
  return b;
}
export function le64Bytes(v: number): Uint8Array {
  const b = new Uint8Array(8);
  setU64(b, 0, v);
  return b;
}

export function isAllZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

const utf8 = new TextDecoder("utf-8");
const utf8enc = new TextEncoder();
export function decodeName(b: Uint8Array): string {
  return utf8.decode(b);
}
export function encodeName(s: string): Uint8Array {
  return utf8enc.encode(s);
}

/** A NUL-padded fixed-size string field. */
export function cString(b: Uint8Array, off: number, len: number): string {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  return utf8.decode(b.subarray(off, end));
}
export function setCString(b: Uint8Array, off: number, len: number, s: string): void {
  const enc = utf8enc.encode(s);
  b.fill(0, off, off + len);
  b.set(enc.subarray(0, len), off);
}

/** Field-table plumbing shared by the structure codecs. */
export type FieldType = "u8" | "u16" | "u32" | "u64";
export type FieldTable<K extends string> = ReadonlyArray<readonly [K, number, FieldType]>;

export function readFields<K extends string>(
  b: Uint8Array,
  base: number,
  table: FieldTable<K>,
): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const [name, off, t] of table) {
    const o = base + off;
    out[name] = t === "u8" ? b[o] : t === "u16" ? u16(b, o) : t === "u32" ? u32(b, o) : u64(b, o);
  }
  return out;
}

export function writeFields<K extends string>(
  b: Uint8Array,
  base: number,
  table: FieldTable<K>,
  values: Partial<Record<K, number>>,
): void {
  for (const [name, off, t] of table) {
    const v = values[name];
    if (v === undefined) continue;
    const o = base + off;
    if (t === "u8") setU8(b, o, v);
    else if (t === "u16") setU16(b, o, v);
    else if (t === "u32") setU32(b, o, v);
    else setU64(b, o, v);
  }
}
