/**
 * Directory data blocks (and the data part of a single-block directory): a header with the three
 * largest free regions, then 8-byte aligned entries and unused regions filling the block (up to
 * the leaf array in block-form directories).
 *
 * Header v4: | 0 magic "XD2B"/"XD2D" | 4 bestfree[3] (offset be16, length be16) |  → 16 bytes
 * Header v5: | 0 magic "XDB3"/"XDD3" | 4 crc (LE) | 8 blkno | 16 lsn | 24 uuid | 40 owner |
 *            | 48 bestfree[3] | 60 pad |                                         → 64 bytes
 * Entry:  | inumber be64 | namelen u8 | name | ftype u8 (ftype fs) | pad to 8 | tag be16 |
 * Unused: | freetag 0xffff | length be16 | ... | tag be16 (last 2 bytes) |
 * `tag` is the entry's own offset in the block (lets a leaf address point back at it).
 */
import { be16, be32, be64, le32 } from "./bytes.js";
import type { XfsRawDirent } from "./dir2-sf.js";
import { XfsChecksumError, XfsFormatError, type XfsLocation } from "./errors.js";
import { crcMatches, sectorCrc } from "./sb.js";

export const DIR2_BLOCK_MAGIC = 0x58443242; // XD2B
export const DIR2_DATA_MAGIC = 0x58443244; // XD2D
export const DIR3_BLOCK_MAGIC = 0x58444233; // XDB3
export const DIR3_DATA_MAGIC = 0x58444433; // XDD3
export const DIR3_CRC_OFFSET = 4;
export const DATA_FREE_TAG = 0xffff;

/** Byte offset of the data section's end / the leaf section (32 GiB). */
export const DIR2_LEAF_OFFSET_BYTES = 2 ** 35;
export const DIR2_FREE_OFFSET_BYTES = 2 ** 36;

export function dataHeaderSize(v5: boolean): number {
  return v5 ? 64 : 16;
}

/** Size of a data entry with a name of `namelen` bytes. */
export function dataEntrySize(namelen: number, hasFtype: boolean): number {
  return (8 + 1 + namelen + (hasFtype ? 1 : 0) + 2 + 7) & ~7;
}

export interface DataBlockCheck {
  v5: boolean;
  /** Expected daddr of the block's first fs block (v5 blkno). */
  daddr: number;
  owner: number;
  uuid: Uint8Array;
}

/**
 * Verifies magic (one of `magics`), and on v5 the CRC, blkno, owner and uuid of a directory (or
 * dir-leaf/free) block whose v5 header is the 3-block header used by dir2 data blocks.
 */
export function checkDir3Header(
  b: Uint8Array,
  magics: readonly number[],
  chk: DataBlockCheck,
  at: XfsLocation,
): number {
  const magic = be32(b, 0);
  if (!magics.includes(magic))
    throw new XfsFormatError(`bad directory block magic 0x${magic.toString(16)}`, at);
  if (chk.v5) {
    if (!crcMatches(b, b.length, DIR3_CRC_OFFSET))
      throw new XfsChecksumError("directory block CRC mismatch", le32(b, 4), sectorCrc(b, b.length, 4), at);
    if (be64(b, 8) !== chk.daddr) throw new XfsFormatError("directory block records another address", at);
    if (be64(b, 40) !== chk.owner) throw new XfsFormatError("directory block owned by another inode", at);
    if (!sameBytes(b.subarray(24, 40), chk.uuid))
      throw new XfsFormatError("directory block has a foreign UUID", at);
  }
  return magic;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Entries of a data region `b[hdr, end)`. `base` is the byte position of the block in the
 * directory's data section (entry offsets are reported relative to it).
 */
export function decodeDataEntries(
  b: Uint8Array,
  v5: boolean,
  end: number,
  hasFtype: boolean,
  base: number,
  at: XfsLocation,
): XfsRawDirent[] {
  const out: XfsRawDirent[] = [];
  let p = dataHeaderSize(v5);
  if (end > b.length || end < p) throw new XfsFormatError("directory data region out of bounds", at);
  while (p < end) {
    if (p + 8 > end) throw new XfsFormatError(`directory entry at ${p} truncated`, at);
    if (be16(b, p) === DATA_FREE_TAG) {
      const len = be16(b, p + 2);
      if (len < 8 || len % 8 !== 0 || p + len > end)
        throw new XfsFormatError(`bad unused region of ${len} bytes at ${p}`, at);
      if (be16(b, p + len - 2) !== p) throw new XfsFormatError(`unused region at ${p} has a bad tag`, at);
      p += len;
      continue;
    }
    const ino = be64(b, p);
    const namelen = b[p + 8];
    const size = dataEntrySize(namelen, hasFtype);
    if (namelen === 0 || p + size > end) throw new XfsFormatError(`directory entry at ${p} is malformed`, at);
    if (be16(b, p + size - 2) !== p) throw new XfsFormatError(`directory entry at ${p} has a bad tag`, at);
    const name = b.slice(p + 9, p + 9 + namelen);
    const ftype = hasFtype ? b[p + 9 + namelen] : 0;
    out.push({ name, ino, ftype, offset: base + p });
    p += size;
  }
  return out;
}
