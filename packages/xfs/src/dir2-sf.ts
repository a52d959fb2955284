/**
 * Short-form directories: the whole directory in the inode's data fork (local format).
 *
 * Header: | 0 count u8 | 1 i8count u8 | 2 parent (4 bytes, or 8 when i8count > 0) |
 * Entry:  | namelen u8 | offset be16 (the entry's position if it were in a data block) | name |
 *         | ftype u8 (ftype filesystems only) | inumber (4 or 8 bytes, like the parent) |
 * "." and ".." are not stored: ".." is the header's parent.
 */
import { be16, be32, be64 } from "./bytes.js";
import { XfsFormatError, type XfsLocation } from "./errors.js";

export interface XfsRawDirent {
  name: Uint8Array;
  ino: number;
  /** Directory entry file type (XFS_DIR3_FT_*), 0 when the filesystem has no ftype. */
  ftype: number;
  /** The entry's dataptr offset (sf offset or byte position in the data section). */
  offset: number;
}

export interface SfDir {
  parent: number;
  i8: boolean;
  entries: XfsRawDirent[];
}

export function decodeSfDir(b: Uint8Array, hasFtype: boolean, where: XfsLocation = {}): SfDir {
  const at = { ...where, structure: "short-form directory" };
  if (b.length < 6) throw new XfsFormatError("short-form directory too small", at);
  const count = b[0];
  const i8count = b[1];
  const i8 = i8count > 0;
  const isz = i8 ? 8 : 4;
  const readIno = (off: number): number => (i8 ? be64(b, off) : be32(b, off));
  if (2 + isz > b.length) throw new XfsFormatError("short-form header truncated", at);
  const parent = readIno(2);
  let p = 2 + isz;
  const entries: XfsRawDirent[] = [];
  let lastOffset = -1;
  for (let i = 0; i < count; i++) {
    if (p + 3 > b.length) throw new XfsFormatError(`entry ${i} runs past the fork`, at);
    const namelen = b[p];
    const offset = be16(b, p + 1);
    const size = 3 + namelen + (hasFtype ? 1 : 0) + isz;
    if (namelen === 0 || p + size > b.length) throw new XfsFormatError(`entry ${i} is malformed`, at);
    if (offset <= lastOffset) throw new XfsFormatError(`entry ${i} offsets are not increasing`, at);
    lastOffset = offset;
    const name = b.slice(p + 3, p + 3 + namelen);
    const ftype = hasFtype ? b[p + 3 + namelen] : 0;
    const ino = readIno(p + 3 + namelen + (hasFtype ? 1 : 0));
    entries.push({ name, ino, ftype, offset });
    p += size;
  }
  return { parent, i8, entries };
}
