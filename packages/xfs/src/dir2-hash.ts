/**
 * The directory/attribute name hash (xfs_da_hashname) and its ASCII case-insensitive variant
 * (filesystems made with `-n version=ci`): each byte is folded in after rotating the hash left by
 * 7 bits; the ci variant first maps 'A'..'Z' to 'a'..'z' (ASCII only, like current kernels).
 */

export function daHashName(name: Uint8Array): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (name[i] ^ ((h << 7) | (h >>> 25))) >>> 0;
  return h >>> 0;
}

/** ASCII case folding used by version=ci directories. */
export function asciiCiFold(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c + 0x20 : c;
}

export function asciiCiHashName(name: Uint8Array): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (asciiCiFold(name[i]) ^ ((h << 7) | (h >>> 25))) >>> 0;
  return h >>> 0;
}

/** The hash a directory of this filesystem uses for `name`. */
export function dirHashName(name: Uint8Array, asciiCi: boolean): number {
  return asciiCi ? asciiCiHashName(name) : daHashName(name);
}

/** Case-insensitive (ASCII) equality of two names, as version=ci lookups compare them. */
export function asciiCiEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (asciiCiFold(a[i]) !== asciiCiFold(b[i])) return false;
  return true;
}
