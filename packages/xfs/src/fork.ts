/**
 * Inode forks: where the data and attribute forks sit in the literal area, and the 128-bit
 * extent record (xfs_bmbt_rec) shared by extent-format forks and bmbt leaves.
 *
 * Extent record, two big-endian u64 words l0:l1:
 * | bits (of 128) | field                                            |
 * |---------------|--------------------------------------------------|
 * | 127           | unwritten flag (allocated, reads as zeros)       |
 * | 73..126       | startoff: logical block in the file (54 bits)    |
 * | 21..72        | startblock: fsblock (52 bits)                    |
 * | 0..20         | blockcount (21 bits)                             |
 */
import { be32, setBe32 } from "./bytes.js";
import { XfsFormatError, type XfsLocation } from "./errors.js";
import { coreSize, FMT_BTREE, FMT_EXTENTS, FMT_LOCAL, type XfsInode } from "./inode.js";

export const BMBT_REC_SIZE = 16;
export const MAX_EXTLEN = 0x1fffff;

export interface XfsExtent {
  /** Logical block in the file. */
  startoff: number;
  /** First fsblock (agno << agblklog | agbno). */
  startblock: number;
  blockcount: number;
  /** Unwritten (preallocated) extent: reads as zeros. */
  unwritten: boolean;
}

export function unpackExtent(b: Uint8Array, off: number): XfsExtent {
  const w0 = be32(b, off);
  const w1 = be32(b, off + 4);
  const w2 = be32(b, off + 8);
  const w3 = be32(b, off + 12);
  return {
    unwritten: w0 >>> 31 === 1,
    startoff: (w0 & 0x7fffffff) * 2 ** 23 + (w1 >>> 9),
    startblock: (w1 & 0x1ff) * 2 ** 43 + w2 * 2 ** 11 + (w3 >>> 21),
    blockcount: w3 & 0x1fffff,
  };
}

export function packExtent(b: Uint8Array, off: number, e: XfsExtent): void {
  const so = e.startoff;
  const sb = e.startblock;
  const soHi = Math.floor(so / 2 ** 23); // top 31 bits
  const soLo = so % 2 ** 23; // low 23 bits
  const sbHi = Math.floor(sb / 2 ** 43); // top 9 bits
  const sbMid = Math.floor(sb / 2 ** 11) % 2 ** 32; // next 32 bits
  const sbLo = sb % 2 ** 11; // low 11 bits
  setBe32(b, off, ((e.unwritten ? 0x80000000 : 0) | soHi) >>> 0);
  setBe32(b, off + 4, (soLo * 512 + sbHi) >>> 0);
  setBe32(b, off + 8, sbMid >>> 0);
  setBe32(b, off + 12, (sbLo * 2 ** 21 + (e.blockcount & 0x1fffff)) >>> 0);
}

export type ForkKind = "data" | "attr";

/** Byte range of a fork inside `inode.raw`. */
export interface ForkArea {
  start: number;
  size: number;
  format: number;
}

/** Literal-area bytes of an inode (inode size minus the core). */
export function literalSize(inode: XfsInode): number {
  return inode.raw.length - coreSize(inode.version);
}

/** Where a fork lives in the inode; undefined for an attribute fork the inode does not have. */
export function forkArea(inode: XfsInode, which: ForkKind): ForkArea | undefined {
  const lit = coreSize(inode.version);
  const litSize = inode.raw.length - lit;
  if (which === "data") {
    return { start: lit, size: inode.forkoff ? inode.forkoff * 8 : litSize, format: inode.format };
  }
  if (!inode.forkoff) return undefined;
  const start = lit + inode.forkoff * 8;
  return { start, size: litSize - inode.forkoff * 8, format: inode.aformat };
}

/** Extent records of an extent-format fork, validated against the fork's size. */
export function forkExtents(inode: XfsInode, which: ForkKind, where: XfsLocation = {}): XfsExtent[] {
  const area = forkArea(inode, which);
  if (!area) return [];
  const at = { ...where, structure: `${which} fork`, inode: inode.ino };
  if (area.format !== FMT_EXTENTS) throw new XfsFormatError(`fork is not in extents format`, at);
  const n = which === "data" ? inode.nextents : inode.anextents;
  if (n * BMBT_REC_SIZE > area.size)
    throw new XfsFormatError(`${n} extents do not fit the ${area.size}-byte fork`, at);
  const out: XfsExtent[] = [];
  for (let i = 0; i < n; i++) out.push(unpackExtent(inode.raw, area.start + i * BMBT_REC_SIZE));
  return out;
}

/** Bytes of a local-format fork (a copy). For the data fork, `inode.size` bytes. */
export function forkLocalBytes(inode: XfsInode, which: ForkKind, where: XfsLocation = {}): Uint8Array {
  const area = forkArea(inode, which);
  const at = { ...where, structure: `${which} fork`, inode: inode.ino };
  if (!area) throw new XfsFormatError("inode has no attribute fork", at);
  if (area.format !== FMT_LOCAL) throw new XfsFormatError("fork is not in local format", at);
  const len = which === "data" ? inode.size : area.size;
  if (len > area.size)
    throw new XfsFormatError(`local fork of ${len} bytes exceeds the ${area.size}-byte fork`, at);
  return inode.raw.slice(area.start, area.start + len);
}

/** Is the fork a btree root (bmdr) in the inode? */
export function isBtreeFork(inode: XfsInode, which: ForkKind): boolean {
  const area = forkArea(inode, which);
  return area?.format === FMT_BTREE;
}

/** Sorted extents with touching ones (logically and physically, same state) joined. */
export function mergeExtents(exts: XfsExtent[]): XfsExtent[] {
  const out: XfsExtent[] = [];
  for (const x of [...exts].sort((a, b) => a.startoff - b.startoff)) {
    const last = out[out.length - 1];
    if (
      last &&
      last.startoff + last.blockcount === x.startoff &&
      last.startblock + last.blockcount === x.startblock &&
      last.unwritten === x.unwritten &&
      last.blockcount + x.blockcount <= MAX_EXTLEN
    )
      last.blockcount += x.blockcount;
    else out.push({ ...x });
  }
  return out;
}
