/**
 * Free-space btrees (xfs_alloc_btree.c): the bnobt sorted by start block and the cntbt sorted by
 * (length, start block). Both hold the same records; node keys use the record layout.
 *
 * Record and key (8 bytes, big-endian):
 *
 * | off | size | field         |
 * |-----|------|---------------|
 * | 0   | 4    | ar_startblock | AG block number of the free extent
 * | 4   | 4    | ar_blockcount | its length in blocks
 *
 * Pointers are 32-bit AG block numbers (short form). Magic: ABTB/AB3B (bno), ABTC/AB3C (cnt).
 */

import type { BtreeOps } from "./btree.js";
import { be32, setBe32 } from "./bytes.js";

export interface AllocRec {
  startblock: number;
  blockcount: number;
}

function readRec(b: Uint8Array, off: number): AllocRec {
  return { startblock: be32(b, off), blockcount: be32(b, off + 4) };
}
function writeRec(b: Uint8Array, off: number, r: AllocRec): void {
  setBe32(b, off, r.startblock);
  setBe32(b, off + 4, r.blockcount);
}

export const bnobtOps: BtreeOps<AllocRec, AllocRec> = {
  name: "bnobt",
  magicV4: 0x41425442,
  magicV5: 0x41423342,
  longPtrs: false,
  recSize: 8,
  keySize: 8,
  overlapping: false,
  readRec,
  writeRec,
  readKey: readRec,
  writeKey: writeRec,
  keyOf: (r) => r,
  highKeyOf: (r) => r,
  cmpKey: (a, b) => a.startblock - b.startblock,
};

export const cntbtOps: BtreeOps<AllocRec, AllocRec> = {
  name: "cntbt",
  magicV4: 0x41425443,
  magicV5: 0x41423343,
  longPtrs: false,
  recSize: 8,
  keySize: 8,
  overlapping: false,
  readRec,
  writeRec,
  readKey: readRec,
  writeKey: writeRec,
  keyOf: (r) => r,
  highKeyOf: (r) => r,
  cmpKey: (a, b) => a.blockcount - b.blockcount || a.startblock - b.startblock,
};
