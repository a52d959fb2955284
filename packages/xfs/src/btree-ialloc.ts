/**
 * Inode btrees (xfs_ialloc_btree.c): the inobt has one record per inode chunk; the finobt (v5
 * `finobt` feature) holds the same records for chunks with at least one free inode.
 *
 * Record (16 bytes, big-endian); the middle word depends on the `sparse inodes` feature:
 *
 * | off | size | full format       | sparse format                                   |
 * |-----|------|-------------------|-------------------------------------------------|
 * | 0   | 4    | ir_startino (AG inode number of the chunk's first inode)            |
 * | 4   | 4    | ir_freecount      | 4: ir_holemask (u16), 6: ir_count (u8), 7: ir_freecount (u8) |
 * | 8   | 8    | ir_free: bit i set = inode startino+i is free (holes are set too)   |
 *
 * Each holemask bit covers 4 inodes (64 / 16) that the chunk does not own. Key: ir_startino (4
 * bytes). Pointers are 32-bit AG block numbers. Magic: IABT/IAB3 (inobt), FIBT/FIB3 (finobt).
 */

import type { BtreeOps } from "./btree.js";
import { be16, be32, setBe16, setBe32 } from "./bytes.js";

export const INODES_PER_CHUNK = 64;
export const INODES_PER_HOLEMASK_BIT = 4;
export const ALL_FREE = 0xffff_ffff_ffff_ffffn;

export interface InobtRec {
  startino: number;
  /** Bit i set: inodes [startino + 4i, +4) are not part of the chunk (sparse). */
  holemask: number;
  /** Inodes the chunk holds (64 minus the holes). */
  count: number;
  freecount: number;
  free: bigint;
}

export interface InoKey {
  startino: number;
}

function readKey(b: Uint8Array, off: number): InoKey {
  return { startino: be32(b, off) };
}
function writeKey(b: Uint8Array, off: number, k: InoKey): void {
  setBe32(b, off, k.startino);
}

function makeOps(
  name: string,
  magicV4: number,
  magicV5: number,
  sparse: boolean,
): BtreeOps<InobtRec, InoKey> {
  return {
    name,
    magicV4,
    magicV5,
    longPtrs: false,
    recSize: 16,
    keySize: 4,
    overlapping: false,
    readRec(b, off) {
      const free = (BigInt(be32(b, off + 8)) << 32n) | BigInt(be32(b, off + 12));
      if (sparse) {
        return {
          startino: be32(b, off),
          holemask: be16(b, off + 4),
          count: b[off + 6],
          freecount: b[off + 7],
          free,
        };
      }
      return {
        startino: be32(b, off),
        holemask: 0,
        count: INODES_PER_CHUNK,
        freecount: be32(b, off + 4),
        free,
      };
    },
    writeRec(b, off, r) {
      setBe32(b, off, r.startino);
      if (sparse) {
        setBe16(b, off + 4, r.holemask);
        b[off + 6] = r.count;
        b[off + 7] = r.freecount;
      } else setBe32(b, off + 4, r.freecount);
      setBe32(b, off + 8, Number(r.free >> 32n));
      setBe32(b, off + 12, Number(r.free & 0xffff_ffffn));
    },
    readKey,
    writeKey,
    keyOf: (r) => ({ startino: r.startino }),
    highKeyOf: (r) => ({ startino: r.startino }),
    cmpKey: (a, b) => a.startino - b.startino,
  };
}

export function inobtOps(sparse: boolean): BtreeOps<InobtRec, InoKey> {
  return makeOps("inobt", 0x49414254, 0x49414233, sparse);
}
export function finobtOps(sparse: boolean): BtreeOps<InobtRec, InoKey> {
  return makeOps("finobt", 0x46494254, 0x46494233, sparse);
}

/** Mask of the inodes a holemask leaves out (1 = hole), as a 64-bit inode mask. */
export function holemaskToInodes(holemask: number): bigint {
  let m = 0n;
  for (let i = 0; i < 16; i++) if (holemask & (1 << i)) m |= 0xfn << BigInt(i * INODES_PER_HOLEMASK_BIT);
  return m;
}

/** Number of set bits of a 64-bit mask. */
export function popcount64(v: bigint): number {
  let n = 0;
  let x = v;
  while (x) {
    x &= x - 1n;
    n++;
  }
  return n;
}
