/**
 * inline_data: small files and directories stored in the inode itself — the 60-byte i_block
 * first, continued in the "system.data" xattr of the inode body. Inline directories start with
 * the parent's inode number (4 bytes) instead of "." and ".." entries.
 */
import { setU32, u32 } from "./bytes.js";
import { xattrEntrySize } from "./xattr.js";

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

/** Bytes of i_block: an inline inode's first 60 bytes (EXT4_MIN_INLINE_DATA_SIZE). */
export const INLINE_IBLOCK_SIZE = 60;

/**
 * Largest system.data value (a multiple of 4) the inode body can hold next to `otherBytes` of
 * other in-inode attributes, or -1 when not even an empty system.data entry fits. `ibodySize`
 * is the in-inode attribute area (inode size - 128 - i_extra_isize); it holds the 4-byte
 * header magic and a 4-byte end marker besides the entries and their values.
 */
export function inlineValueCapacity(ibodySize: number, otherBytes: number): number {
  const free = ibodySize - 4 - 4 - xattrEntrySize(INLINE_DATA_XATTR_SUFFIX.length) - otherBytes;
  return free < 0 ? -1 : free & ~3;
}
