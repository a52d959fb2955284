/**
 * The dabtree shared by large directories (leafn/free blocks under a node) and attribute forks:
 * every block starts with a block-info header; interior (node) blocks hold (hashval, before)
 * pairs pointing at child blocks by their logical block number in the fork.
 *
 * blkinfo v4:  | 0 forw be32 | 4 back be32 | 8 magic be16 | 10 pad |                     → 12 bytes
 * blkinfo v5:  | ... as v4 ... | 12 crc (LE) | 16 blkno be64 | 24 lsn | 32 uuid | 48 owner | → 56
 * node header: blkinfo, then | count be16 | level be16 | (v5: pad be32) |  → 16 / 64 bytes
 * node entry:  | hashval be32 | before be32 |
 */
import { be16, be32, be64, le32 } from "./bytes.js";
import { XfsChecksumError, XfsFormatError, type XfsLocation } from "./errors.js";
import { crcMatches, sectorCrc } from "./sb.js";

export const DA_NODE_MAGIC = 0xfebe;
export const DA3_NODE_MAGIC = 0x3ebe;
export const DA3_CRC_OFFSET = 12;
/** Deepest dabtree accepted (XFS_DA_NODE_MAXDEPTH). */
export const DA_NODE_MAXDEPTH = 5;

export interface DaBlkInfo {
  forw: number;
  back: number;
  magic: number;
}

export function decodeBlkInfo(b: Uint8Array): DaBlkInfo {
  return { forw: be32(b, 0), back: be32(b, 4), magic: be16(b, 8) };
}

export interface Da3Check {
  daddr: number;
  owner: number;
  uuid: Uint8Array;
}

/** v5 self-description of a dabtree block (CRC, blkno, owner, uuid). */
export function checkDa3Block(b: Uint8Array, chk: Da3Check, at: XfsLocation): void {
  if (!crcMatches(b, b.length, DA3_CRC_OFFSET))
    throw new XfsChecksumError("dabtree block CRC mismatch", le32(b, 12), sectorCrc(b, b.length, 12), at);
  if (be64(b, 16) !== chk.daddr) throw new XfsFormatError("dabtree block records another address", at);
  if (be64(b, 48) !== chk.owner) throw new XfsFormatError("dabtree block owned by another inode", at);
  for (let i = 0; i < 16; i++)
    if (b[32 + i] !== chk.uuid[i]) throw new XfsFormatError("dabtree block has a foreign UUID", at);
}

export interface DaNode {
  level: number;
  entries: { hashval: number; before: number }[];
}

export function decodeDaNode(b: Uint8Array, v5: boolean, at: XfsLocation): DaNode {
  const hdr = v5 ? 64 : 16;
  const off = v5 ? 56 : 12;
  const count = be16(b, off);
  const level = be16(b, off + 2);
  if (level < 1 || level > DA_NODE_MAXDEPTH) throw new XfsFormatError(`dabtree node at level ${level}`, at);
  if (count < 1 || hdr + count * 8 > b.length)
    throw new XfsFormatError(`dabtree node holds ${count} entries`, at);
  const entries: DaNode["entries"] = [];
  for (let i = 0; i < count; i++)
    entries.push({ hashval: be32(b, hdr + i * 8), before: be32(b, hdr + i * 8 + 4) });
  return { level, entries };
}
