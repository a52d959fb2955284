/**
 * inline_data: small files and directories stored in the inode itself — the 60-byte i_block
 * first, continued in the "system.data" xattr of the inode body. Inline directories start with
 * the parent's inode number (4 bytes) instead of "." and ".." entries.
 */
import { setU32, u32 } from "./bytes.js";

export const INLINE_DATA_XATTR_INDEX = 7;
export const INLINE_DATA_XATTR_SUFFIX = "data";
export const INLINE_DIR_PARENT_SIZE = 4;

/** Concatenate i_block and the system.data value, cut to the file size. */
export function inlineFileContent(
  iBlock: Uint8Array,
  xattrValue: Uint8Array | undefined,
  size: number,
): Uint8Array {
  const total = iBlock.length + (xattrValue?.length ?? 0);
  const n = Math.min(size, total);
  const out = new Uint8Array(n);
  out.set(iBlock.subarray(0, Math.min(n, iBlock.length)));
  if (n > iBlock.length && xattrValue) out.set(xattrValue.subarray(0, n - iBlock.length), iBlock.length);
  return out;
}

export function inlineDirParent(iBlock: Uint8Array): number {
  return u32(iBlock, 0);
}

export function setInlineDirParent(iBlock: Uint8Array, ino: number): void {
  setU32(iBlock, 0, ino);
}
