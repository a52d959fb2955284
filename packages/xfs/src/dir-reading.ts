/**
 * Reading directory blocks: the data entries of block, leaf and node directories (every data
 * block below the leaf section, checked for magic, v5 header and entry layout), single directory
 * blocks (dirBlockFsbs fs blocks, possibly split across extents) and the directory's form.
 */
import { findExtent } from "./bmap.js";
import { decodeBlockTail } from "./dir2-block.js";
import {
  checkDir3Header,
  DIR2_BLOCK_MAGIC,
  DIR2_DATA_MAGIC,
  DIR2_FREE_OFFSET_BYTES,
  DIR2_LEAF_OFFSET_BYTES,
  DIR3_BLOCK_MAGIC,
  DIR3_DATA_MAGIC,
  dataHeaderSize,
  decodeDataEntries,
} from "./dir2-data.js";
import type { XfsRawDirent } from "./dir2-sf.js";
import { XfsFormatError, type XfsLocation } from "./errors.js";
import type { XfsExtent } from "./fork.js";
import type { ForkReadContext } from "./fork-reading.js";
import { FMT_LOCAL, type XfsInode } from "./inode.js";

/** Entries of every data block of a block, leaf or node directory ("." and ".." included). */
export async function readDirDataEntries(
  ctx: ForkReadContext,
  dir: XfsInode,
  at: XfsLocation,
): Promise<XfsRawDirent[]> {
  const g = ctx.geometry;
  const exts = await ctx.forkExtents(dir, "data");
  const dirFsbs = g.dirBlockFsbs;
  const leafFsb = DIR2_LEAF_OFFSET_BYTES / g.blockSize;
  if (dir.size % g.dirBlockSize !== 0 || dir.size > DIR2_LEAF_OFFSET_BYTES)
    throw new XfsFormatError(`directory size ${dir.size} is not a whole number of directory blocks`, at);
  const maxDb = dir.size / g.dirBlockSize;
  const dbs: number[] = [];
  for (const e of exts) {
    if (e.startoff >= leafFsb) break;
    const first = Math.floor(e.startoff / dirFsbs);
    const last = Math.floor((Math.min(e.startoff + e.blockcount, leafFsb) - 1) / dirFsbs);
    for (let db = first; db <= last; db++) {
      if (db >= maxDb) throw new XfsFormatError(`directory block ${db} lies beyond the directory size`, at);
      if (dbs.length === 0 || dbs[dbs.length - 1] !== db) dbs.push(db);
    }
  }
  // Single-block form: nothing mapped past the first directory block (xfs_dir2_isblock).
  const lastEnd = exts.length ? exts[exts.length - 1].startoff + exts[exts.length - 1].blockcount : 0;
  const single = maxDb === 1 && lastEnd === dirFsbs;
  const out: XfsRawDirent[] = [];
  const v5 = g.v5;
  for (const db of dbs) {
    const b = await readDirBlock(ctx, exts, db, at);
    const fsb = exts[findExtent(exts, db * dirFsbs)];
    const daddr = g.fsbToDaddr(fsb.startblock + (db * dirFsbs - fsb.startoff));
    const bat = { ...at, offset: g.fsbToByte(fsb.startblock + (db * dirFsbs - fsb.startoff)) };
    const magics = single
      ? [v5 ? DIR3_BLOCK_MAGIC : DIR2_BLOCK_MAGIC]
      : [v5 ? DIR3_DATA_MAGIC : DIR2_DATA_MAGIC];
    checkDir3Header(b, magics, { v5, daddr, owner: dir.ino, uuid: g.metaUuid }, bat);
    const end = single ? decodeBlockTail(b, dataHeaderSize(v5), bat).leafStart : b.length;
    for (const e of decodeDataEntries(b, v5, end, ctx.geometry.features.ftype, db * g.dirBlockSize, bat))
      out.push(e);
  }
  return out;
}

/** Directory block `db` with the daddr of its first fs block (for v5 checks). */
export async function dirBlockAt(
  ctx: ForkReadContext,
  exts: XfsExtent[],
  db: number,
  at: XfsLocation,
): Promise<{ b: Uint8Array; daddr: number }> {
  const g = ctx.geometry;
  const i = findExtent(exts, db * g.dirBlockFsbs);
  if (i < 0) throw new XfsFormatError(`directory block ${db} is not mapped`, at);
  const e = exts[i];
  const fsb = e.startblock + (db * g.dirBlockFsbs - e.startoff);
  return { b: await readDirBlock(ctx, exts, db, at), daddr: g.fsbToDaddr(fsb) };
}

/** One directory block (dirBlockFsbs fs blocks, possibly split across extents). */
export async function readDirBlock(
  ctx: ForkReadContext,
  exts: XfsExtent[],
  db: number,
  at: XfsLocation,
): Promise<Uint8Array> {
  const g = ctx.geometry;
  const n = g.dirBlockFsbs;
  // One extent holding the whole directory block: its bytes as read, not a copy.
  const one = findExtent(exts, db * n);
  if (one >= 0) {
    const e = exts[one];
    if (!e.unwritten && e.startoff + e.blockcount >= db * n + n)
      return ctx.readAt(g.fsbToByte(e.startblock + (db * n - e.startoff)), g.dirBlockSize);
  }
  const out = new Uint8Array(g.dirBlockSize);
  let k = 0;
  while (k < n) {
    const fblock = db * n + k;
    const i = findExtent(exts, fblock);
    if (i < 0) throw new XfsFormatError(`directory block ${db} has a hole`, at);
    const e = exts[i];
    if (e.unwritten) throw new XfsFormatError(`directory block ${db} is unwritten`, at);
    const run = Math.min(n - k, e.startoff + e.blockcount - fblock);
    const dev = g.fsbToByte(e.startblock + (fblock - e.startoff));
    out.set(await ctx.readAt(dev, run * g.blockSize), k * g.blockSize);
    k += run;
  }
  return out;
}

/** Which of the four directory forms `dir` is in (shortform, block, leaf or node). */
export async function dirFormOf(
  ctx: ForkReadContext,
  dir: XfsInode,
): Promise<"shortform" | "block" | "leaf" | "node"> {
  if (dir.format === FMT_LOCAL) return "shortform";
  const g = ctx.geometry;
  const exts = await ctx.forkExtents(dir, "data");
  const last = exts[exts.length - 1];
  if (last && last.startoff + last.blockcount === g.dirBlockFsbs) return "block";
  const freeFsb = DIR2_FREE_OFFSET_BYTES / g.blockSize;
  return exts.some((e) => e.startoff + e.blockcount > freeFsb) ? "node" : "leaf";
}
