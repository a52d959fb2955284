/**
 * Block-mapping btree (xfs_bmap_btree.c): maps a fork's file offsets to filesystem blocks when the
 * extent list no longer fits in the inode. Long-form blocks (64-bit fsblock pointers, bb_owner is
 * the inode number); the root lives in the inode fork as a `bmdr` block.
 *
 * Record (16 bytes, two big-endian 64-bit words l0, l1):
 *
 * | bits         | field                                                  |
 * |--------------|--------------------------------------------------------|
 * | l0:63        | extent flag (1 = unwritten)                            |
 * | l0:9-62      | br_startoff (54 bits, file block)                      |
 * | l0:0-8,l1:21-63 | br_startblock (52 bits, fsblock)                    |
 * | l1:0-20      | br_blockcount (21 bits)                                |
 *
 * Key: br_startoff (8 bytes). Pointer: fsblock (8 bytes). Magic BMAP/BMA3.
 *
 * In-inode root (bmdr), at the start of the fork area:
 *
 * | off            | size | field                          |
 * |----------------|------|--------------------------------|
 * | 0              | 2    | bb_level (>= 1)                |
 * | 2              | 2    | bb_numrecs                     |
 * | 4 + 8i         | 8    | key i                          |
 * | 4 + 8*max + 8i | 8    | ptr i; max = (forksize-4)/16   |
 */

import type { BtreeOps, InodeRoot } from "./btree.js";
import { be16, be64, setBe16, setBe64 } from "./bytes.js";
import { XfsFormatError } from "./errors.js";
import { packExtent, unpackExtent, type XfsExtent } from "./fork.js";

/** A bmbt leaf record is the fork's extent record (fork.ts). */
export type BmbtRec = XfsExtent;
export interface BmbtKey {
  startoff: number;
}

export const bmbtOps: BtreeOps<BmbtRec, BmbtKey> = {
  name: "bmbt",
  magicV4: 0x424d4150,
  magicV5: 0x424d4133,
  longPtrs: true,
  recSize: 16,
  keySize: 8,
  overlapping: false,
  readRec: unpackExtent,
  writeRec: packExtent,
  readKey: (b, off) => ({ startoff: be64(b, off) }),
  writeKey: (b, off, k) => setBe64(b, off, k.startoff),
  keyOf: (r) => ({ startoff: r.startoff }),
  highKeyOf: (r) => ({ startoff: r.startoff + r.blockcount - 1 }),
  cmpKey: (a, b) => a.startoff - b.startoff,
};

/** Capacity of an in-inode bmbt root in a fork area of `forkSize` bytes. */
export function bmdrMaxRecs(forkSize: number): number {
  return Math.floor((forkSize - 4) / 16);
}

/** Decode the bmdr root from a fork area (`fork` = the fork's bytes). */
export function readBmdr(fork: Uint8Array): InodeRoot<BmbtKey> {
  const level = be16(fork, 0);
  const n = be16(fork, 2);
  const max = bmdrMaxRecs(fork.length);
  if (n > max || level < 1) {
    throw new XfsFormatError(`bmbt inode root: level ${level}, ${n} records (room for ${max})`, {
      structure: "bmdr",
    });
  }
  const keys: BmbtKey[] = [];
  const ptrs: number[] = [];
  for (let i = 0; i < n; i++) {
    keys.push({ startoff: be64(fork, 4 + 8 * i) });
    ptrs.push(be64(fork, 4 + 8 * max + 8 * i));
  }
  return { level, keys, ptrs };
}

/** Encode the bmdr root into a fork area; unused slots are zeroed. */
export function writeBmdr(fork: Uint8Array, root: InodeRoot<BmbtKey>): void {
  const max = bmdrMaxRecs(fork.length);
  if (root.ptrs.length > max) throw new Error(`bmbt inode root overflow (${root.ptrs.length} > ${max})`);
  fork.fill(0);
  setBe16(fork, 0, root.level);
  setBe16(fork, 2, root.ptrs.length);
  for (let i = 0; i < root.ptrs.length; i++) {
    setBe64(fork, 4 + 8 * i, root.keys[i].startoff);
    setBe64(fork, 4 + 8 * max + 8 * i, root.ptrs[i]);
  }
}
