/**
 * Reference-count btree (xfs_refcount_btree.c, v5 `reflink` feature): one record per extent whose
 * blocks are shared by more than one file mapping (refcount > 1), or staged for copy-on-write
 * (refcount 1, top bit of the start block set).
 *
 * Record (12 bytes, big-endian):
 *
 * | off | size | field          |
 * |-----|------|----------------|
 * | 0   | 4    | rc_startblock  | bit 31: CoW staging domain; bits 0-30: AG block
 * | 4   | 4    | rc_blockcount  |
 * | 8   | 4    | rc_refcount    |
 *
 * Key: rc_startblock (4 bytes, domain bit included). Pointers 32-bit. Magic R3FC (v5 only).
 */

import type { BtreeOps } from "./btree.js";
import { be32, setBe32 } from "./bytes.js";

export const REFC_COW_FLAG = 0x8000_0000;

export interface RefcountRec {
  /** Start block with the CoW flag as stored (bit 31). */
  startblock: number;
  blockcount: number;
  refcount: number;
}
export interface RefcountKey {
  startblock: number;
}

export const refcountbtOps: BtreeOps<RefcountRec, RefcountKey> = {
  name: "refcountbt",
  magicV4: 0x52334643,
  magicV5: 0x52334643,
  longPtrs: false,
  recSize: 12,
  keySize: 4,
  overlapping: false,
  readRec: (b, off) => ({
    startblock: be32(b, off),
    blockcount: be32(b, off + 4),
    refcount: be32(b, off + 8),
  }),
  writeRec(b, off, r) {
    setBe32(b, off, r.startblock);
    setBe32(b, off + 4, r.blockcount);
    setBe32(b, off + 8, r.refcount);
  },
  readKey: (b, off) => ({ startblock: be32(b, off) }),
  writeKey: (b, off, k) => setBe32(b, off, k.startblock),
  keyOf: (r) => ({ startblock: r.startblock }),
  highKeyOf: (r) => ({ startblock: r.startblock + r.blockcount - 1 }),
  cmpKey: (a, b) => a.startblock - b.startblock,
};
