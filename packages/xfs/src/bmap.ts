/**
 * Logical → physical mapping of an inode fork: the extent list of an extents-format fork, or the
 * leaves of a btree-format fork (bmbt), validated (in range, ordered, non-overlapping) so callers
 * can trust them, plus lookups over the sorted list.
 *
 * In-inode bmbt root (bmdr), at the start of the fork:
 * | off | size | field                                              |
 * |-----|------|----------------------------------------------------|
 * | 0   | 2    | level (>= 1)                                       |
 * | 2   | 2    | numrecs                                            |
 * | 4   | 8×n  | keys (startoff), n = maxrecs = (forksize - 4) / 16 |
 * | 4+8n| 8×n  | pointers (fsblock)                                 |
 * bmbt blocks use the generic long-form btree header (see btree.ts) with 16-byte records (the
 * extent record of fork.ts) in leaves and 8-byte keys + 8-byte pointers in nodes.
 *
 * The read side walks the tree itself (a plain descent, bounded by level and a visited set) so the
 * reader does not need the space engine's buffer cache.
 */
import { be16, be32, be64, le32 } from "./bytes.js";
import { XfsChecksumError, XfsFormatError, type XfsLocation } from "./errors.js";
import { BMBT_REC_SIZE, type ForkKind, forkArea, forkExtents, unpackExtent, type XfsExtent } from "./fork.js";
import { FMT_BTREE, FMT_EXTENTS, FMT_LOCAL, type XfsInode } from "./inode.js";
import { crcMatches, sectorCrc, type XfsGeometry } from "./sb.js";

export const BMAP_MAGIC = 0x424d4150; // "BMAP"
export const BMAP_CRC_MAGIC = 0x424d4133; // "BMA3"
const LONG_HDR_V4 = 24;
const LONG_HDR_V5 = 72;
const LONG_CRC_OFFSET = 64;
const MAX_LEVELS = 9;

/** Reads `len` bytes at a device byte offset (the reader's metadata path). */
export type ReadAt = (offset: number, len: number) => Promise<Uint8Array>;

/**
 * All extents of a fork, sorted by startoff. Local forks and absent attribute forks give [].
 * Throws XfsFormatError on extents outside the filesystem, overlapping or unordered extents,
 * and on malformed bmbt blocks.
 */
export async function readForkExtents(
  geo: XfsGeometry,
  inode: XfsInode,
  which: ForkKind,
  readAt: ReadAt,
  where: XfsLocation = {},
): Promise<XfsExtent[]> {
  const area = forkArea(inode, which);
  if (!area) return [];
  const at: XfsLocation = { ...where, structure: `${which} fork`, inode: inode.ino };
  let out: XfsExtent[];
  if (area.format === FMT_EXTENTS) out = forkExtents(inode, which, where);
  else if (area.format === FMT_BTREE) out = await readBmbt(geo, inode, which, readAt, at);
  else if (area.format === FMT_LOCAL) return [];
  else return [];
  const expected = which === "data" ? inode.nextents : inode.anextents;
  if (area.format === FMT_BTREE && out.length !== expected)
    throw new XfsFormatError(`bmbt holds ${out.length} extents, inode says ${expected}`, at);
  checkExtents(geo, out, at);
  return out;
}

/** Extents must be non-empty, inside one AG of the data device, ordered and non-overlapping. */
export function checkExtents(geo: XfsGeometry, exts: XfsExtent[], at: XfsLocation): void {
  let next = 0;
  for (const e of exts) {
    if (e.blockcount === 0) throw new XfsFormatError(`empty extent at file block ${e.startoff}`, at);
    if (e.startoff < next)
      throw new XfsFormatError(`extent at file block ${e.startoff} overlaps or is out of order`, at);
    if (!geo.validFsbRange(e.startblock, e.blockcount))
      throw new XfsFormatError(
        `extent ${e.startoff}+${e.blockcount} points at fsblock ${e.startblock}, outside the filesystem`,
        { ...at, block: e.startblock },
      );
    next = e.startoff + e.blockcount;
  }
}

async function readBmbt(
  geo: XfsGeometry,
  inode: XfsInode,
  which: ForkKind,
  readAt: ReadAt,
  at: XfsLocation,
): Promise<XfsExtent[]> {
  const area = forkArea(inode, which);
  if (!area) return [];
  const raw = inode.raw;
  const level = be16(raw, area.start);
  const numrecs = be16(raw, area.start + 2);
  const rootMax = Math.floor((area.size - 4) / 16);
  if (level < 1 || level > MAX_LEVELS) throw new XfsFormatError(`bmbt root level ${level}`, at);
  if (numrecs < 1 || numrecs > rootMax) throw new XfsFormatError(`bmbt root holds ${numrecs} records`, at);
  const ptrBase = area.start + 4 + rootMax * 8;
  const out: XfsExtent[] = [];
  const visited = new Set<number>();
  const hdr = geo.v5 ? LONG_HDR_V5 : LONG_HDR_V4;
  const nodeMax = Math.floor((geo.blockSize - hdr) / 16);
  const leafMax = Math.floor((geo.blockSize - hdr) / BMBT_REC_SIZE);
  const limit = which === "data" ? inode.nextents : inode.anextents;

  const walk = async (fsb: number, expectLevel: number): Promise<void> => {
    const loc = { ...at, structure: "bmbt block", block: fsb };
    if (!geo.validFsbRange(fsb)) throw new XfsFormatError("bmbt pointer outside the filesystem", loc);
    if (visited.has(fsb)) throw new XfsFormatError("bmbt block reached twice (cycle)", loc);
    visited.add(fsb);
    const offset = geo.fsbToByte(fsb);
    const b = await readAt(offset, geo.blockSize);
    const magic = be32(b, 0);
    const want = geo.v5 ? BMAP_CRC_MAGIC : BMAP_MAGIC;
    if (magic !== want)
      throw new XfsFormatError(`bad bmbt magic 0x${magic.toString(16)}`, { ...loc, offset });
    if (geo.v5) {
      if (!crcMatches(b, geo.blockSize, LONG_CRC_OFFSET))
        throw new XfsChecksumError(
          "bmbt block CRC mismatch",
          le32(b, LONG_CRC_OFFSET),
          sectorCrc(b, geo.blockSize, LONG_CRC_OFFSET),
          { ...loc, offset },
        );
      if (be64(b, 24) !== geo.fsbToDaddr(fsb))
        throw new XfsFormatError("bmbt block records another address", loc);
      if (be64(b, 56) !== inode.ino) throw new XfsFormatError("bmbt block owned by another inode", loc);
    }
    const lvl = be16(b, 4);
    const n = be16(b, 6);
    if (lvl !== expectLevel)
      throw new XfsFormatError(`bmbt block at level ${lvl}, expected ${expectLevel}`, loc);
    if (lvl === 0) {
      if (n > leafMax) throw new XfsFormatError(`bmbt leaf holds ${n} records`, loc);
      if (out.length + n > limit)
        throw new XfsFormatError("bmbt holds more extents than the inode says", loc);
      for (let i = 0; i < n; i++) out.push(unpackExtent(b, hdr + i * BMBT_REC_SIZE));
      return;
    }
    if (n < 1 || n > nodeMax) throw new XfsFormatError(`bmbt node holds ${n} records`, loc);
    const pbase = hdr + nodeMax * 8;
    for (let i = 0; i < n; i++) await walk(be64(b, pbase + i * 8), lvl - 1);
  };
  for (let i = 0; i < numrecs; i++) await walk(be64(raw, ptrBase + i * 8), level - 1);
  return out;
}

/** Index of the extent containing file block `fblock`, or -1 (binary search over a sorted list). */
export function findExtent(exts: readonly XfsExtent[], fblock: number): number {
  let lo = 0;
  let hi = exts.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const e = exts[mid];
    if (fblock < e.startoff) hi = mid - 1;
    else if (fblock >= e.startoff + e.blockcount) lo = mid + 1;
    else return mid;
  }
  return -1;
}
