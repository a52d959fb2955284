/**
 * Reverse-mapping btree (xfs_rmap_btree.c, v5 `rmapbt` feature): who owns every used block of the
 * AG. With reflink several records may cover the same block, so node keys are (low, high) pairs
 * and range queries follow the high keys (an "overlapping" tree).
 *
 * Record (24 bytes, big-endian):
 *
 * | off | size | field          | notes                                                   |
 * |-----|------|----------------|---------------------------------------------------------|
 * | 0   | 4    | rm_startblock  | AG block                                                |
 * | 4   | 4    | rm_blockcount  |                                                         |
 * | 8   | 8    | rm_owner       | inode number, or a special owner (top bit set)          |
 * | 16  | 8    | rm_offset      | bit 63 attr fork, bit 62 bmbt block, bit 61 unwritten,  |
 * |     |      |                | bits 0-53 offset in the file (0 for special owners)     |
 *
 * Key (20 bytes, packed): rm_startblock (4), rm_owner (8), rm_offset (8, without the unwritten
 * bit). Keys compare startblock, then owner and offset as unsigned 64-bit values. A record's high
 * key adds blockcount-1 to the start block and, for file mappings, to the offset. Magic RMB3.
 */

import type { BtreeOps } from "./btree.js";
import { be32, be64big, setBe32, setBe64big } from "./bytes.js";

export const RMAP_OFF_ATTR_FORK = 1n << 63n;
export const RMAP_OFF_BMBT_BLOCK = 1n << 62n;
export const RMAP_OFF_UNWRITTEN = 1n << 61n;
export const RMAP_OFF_MASK = (1n << 54n) - 1n;

/** Special owners (xfs_format.h XFS_RMAP_OWN_*), as unsigned 64-bit values. */
export const RMAP_OWN = {
  NULL: 0xffff_ffff_ffff_ffffn,
  UNKNOWN: 0xffff_ffff_ffff_fffen,
  FS: 0xffff_ffff_ffff_fffdn,
  LOG: 0xffff_ffff_ffff_fffcn,
  AG: 0xffff_ffff_ffff_fffbn,
  INOBT: 0xffff_ffff_ffff_fffan,
  INODES: 0xffff_ffff_ffff_fff9n,
  REFC: 0xffff_ffff_ffff_fff8n,
  COW: 0xffff_ffff_ffff_fff7n,
} as const;

export function isInodeOwner(owner: bigint): boolean {
  return (owner & (1n << 63n)) === 0n;
}

export interface RmapRec {
  startblock: number;
  blockcount: number;
  owner: bigint;
  /** Offset in the file (blocks), 0 for special owners. */
  offset: bigint;
  attrFork: boolean;
  bmbtBlock: boolean;
  unwritten: boolean;
}

export interface RmapKey {
  startblock: number;
  owner: bigint;
  /** Offset with the attr-fork and bmbt-block bits (never the unwritten bit). */
  offset: bigint;
}

function packOffset(r: RmapRec): bigint {
  let v = r.offset & RMAP_OFF_MASK;
  if (r.attrFork) v |= RMAP_OFF_ATTR_FORK;
  if (r.bmbtBlock) v |= RMAP_OFF_BMBT_BLOCK;
  if (r.unwritten) v |= RMAP_OFF_UNWRITTEN;
  return v;
}

export function rmapKeyOf(r: RmapRec): RmapKey {
  return { startblock: r.startblock, owner: r.owner, offset: packOffset(r) & ~RMAP_OFF_UNWRITTEN };
}

function cmp64(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export const rmapbtOps: BtreeOps<RmapRec, RmapKey> = {
  name: "rmapbt",
  magicV4: 0x524d4233,
  magicV5: 0x524d4233,
  longPtrs: false,
  recSize: 24,
  keySize: 20,
  overlapping: true,
  readRec(b, off) {
    const o = be64big(b, off + 16);
    return {
      startblock: be32(b, off),
      blockcount: be32(b, off + 4),
      owner: be64big(b, off + 8),
      offset: o & RMAP_OFF_MASK,
      attrFork: (o & RMAP_OFF_ATTR_FORK) !== 0n,
      bmbtBlock: (o & RMAP_OFF_BMBT_BLOCK) !== 0n,
      unwritten: (o & RMAP_OFF_UNWRITTEN) !== 0n,
    };
  },
  writeRec(b, off, r) {
    setBe32(b, off, r.startblock);
    setBe32(b, off + 4, r.blockcount);
    setBe64big(b, off + 8, r.owner);
    setBe64big(b, off + 16, packOffset(r));
  },
  readKey: (b, off) => ({
    startblock: be32(b, off),
    owner: be64big(b, off + 4),
    offset: be64big(b, off + 12),
  }),
  writeKey(b, off, k) {
    setBe32(b, off, k.startblock);
    setBe64big(b, off + 4, k.owner);
    setBe64big(b, off + 12, k.offset);
  },
  keyOf: rmapKeyOf,
  highKeyOf(r) {
    const k = rmapKeyOf(r);
    const adj = r.blockcount - 1;
    const fileMapping = isInodeOwner(r.owner) && !r.bmbtBlock;
    return {
      startblock: r.startblock + adj,
      owner: k.owner,
      offset: fileMapping
        ? (k.offset & ~RMAP_OFF_MASK) | ((k.offset & RMAP_OFF_MASK) + BigInt(adj))
        : k.offset,
    };
  },
  cmpKey: (a, b) => a.startblock - b.startblock || cmp64(a.owner, b.owner) || cmp64(a.offset, b.offset),
};
