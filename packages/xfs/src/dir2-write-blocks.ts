/**
 * The blocks of leaf and node directories: the data fork's mapping (extents in the inode or a
 * bmbt), allocating and mapping a directory block (merged with its neighbours, as
 * xfs_bmap_add_extent_hole_real does), unmapping and freeing one (xfs_dir2_shrink_inode), and
 * reading and writing leaf and data blocks with their v5 self-description.
 */
import { readForkExtents } from "./bmap.js";
import { NULL_PTR } from "./btree.js";
import { type BmbtRec, writeBmdr } from "./btree-bmap.js";
import { btreeDeleteAt, btreeInsert, btreeUpdateAt } from "./btree-update.js";
import type { MetaBuf } from "./buf.js";
import { be32, setBe64 } from "./bytes.js";
import { DIR2_DATA_MAGIC, DIR3_DATA_MAGIC, decodeDataEntries } from "./dir2-data.js";
import { type DirLeaf, encodeDirLeaf } from "./dir2-leaf.js";
import { type DirEntryW, type DirGeo, rmapOwner } from "./dir2-write-data.js";
import type { XfsEditor } from "./editor.js";
import { XfsFormatError, XfsFsError, XfsUnsupportedError } from "./errors.js";
import { bmbtTree } from "./file-write.js";
import { forkArea, mergeExtents, packExtent, type XfsExtent } from "./fork.js";
import { FMT_BTREE, FMT_EXTENTS, type XfsInode } from "./inode.js";

export function unsupported(
  ed: XfsEditor,
  dir: XfsInode,
  feature: string,
  what: string,
): XfsUnsupportedError {
  return new XfsUnsupportedError(feature, `${what} cannot be written yet`, {
    file: ed.device.name,
    inode: dir.ino,
  });
}

/**
 * Mappings of bmbt-format directories, kept up to date by the writers here (every change to a
 * directory's mapping goes through addMapping/freeDirBlock, which edit the array in place), so a
 * big directory's bmbt is walked once per editor rather than once per name. Keyed by the
 * allocator: a call that fails is rolled back with a new one, and the cache goes with it.
 */
const bmbtExtents = new WeakMap<object, Map<number, XfsExtent[]>>();

/** The directory's data fork mapping, read from the inode being edited. */
export async function dirExtents(ed: XfsEditor, dir: XfsInode): Promise<XfsExtent[]> {
  let cache = bmbtExtents.get(ed.alloc);
  if (dir.format !== FMT_BTREE) cache?.delete(dir.ino);
  else {
    const hit = cache?.get(dir.ino);
    if (hit && hit.length === dir.nextents) return hit;
  }
  const exts = await readForkExtents(ed.fs.geometry, dir, "data", (o, l) => ed.device.read(o, l), {
    file: ed.device.name,
  });
  if (dir.format === FMT_BTREE) {
    if (!cache) {
      cache = new Map();
      bmbtExtents.set(ed.alloc, cache);
    }
    cache.set(dir.ino, exts);
  }
  return exts;
}

/** Index of the first extent (sorted by file offset) that ends after file block `fblock`. */
export function extentAfter(exts: XfsExtent[], fblock: number): number {
  let lo = 0;
  let hi = exts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (exts[mid].startoff + exts[mid].blockcount <= fblock) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First fs block of directory block starting at file block `fblock` (contiguous), or -1. */
export function mapDirBlock(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
  fblock: number,
): number {
  const e = exts[extentAfter(exts, fblock)];
  if (!e || fblock < e.startoff) return -1;
  if (fblock + dg.g.dirBlockFsbs > e.startoff + e.blockcount)
    throw unsupported(ed, dir, "dir-discontiguous", "a directory block split across extents");
  return e.startblock + (fblock - e.startoff);
}

/** Is the directory in node form (anything mapped in the free section)? */
export function isNodeForm(dg: DirGeo, exts: XfsExtent[]): boolean {
  const last = exts[exts.length - 1];
  return last !== undefined && last.startoff + last.blockcount > dg.freeFsb;
}

/**
 * Adds a new mapping to the data fork: merged into a physically and logically adjacent extent
 * when there is one (as xfs_bmap_add_extent_hole_real does), else a new record — in the inode
 * while it fits, else the fork becomes a bmbt (xfs_bmap_extents_to_btree) and records go there.
 */
export async function addMapping(
  ed: XfsEditor,
  dir: XfsInode,
  exts: XfsExtent[],
  ext: XfsExtent,
): Promise<void> {
  const area = forkArea(dir, "data");
  if (!area) throw new XfsFormatError("directory without a data fork", { inode: dir.ino });
  if (dir.format === FMT_EXTENTS) {
    const merged = mergeExtents([...exts, ext]);
    if (merged.length * 16 <= area.size) {
      dir.raw.fill(0, area.start, area.start + area.size);
      merged.forEach((x, i) => {
        packExtent(dir.raw, area.start + i * 16, x);
      });
      dir.nextents = merged.length;
      exts.splice(0, exts.length, ...merged);
      return;
    }
    await extentsToBtree(ed, dir, exts);
  }
  if (dir.format !== FMT_BTREE)
    throw new XfsFormatError("directory fork is neither extents nor btree", { inode: dir.ino });
  await btreeInsert(bmbtTree(ed.ctx, ed.alloc, dir), { ...ext } as BmbtRec);
  dir.nextents++;
  exts.push(ext);
  exts.sort((a, b) => a.startoff - b.startoff);
}

/** Allocates and maps a directory block at file block `fblock`; returns its first fs block. */
export async function newDirBlock(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
  fblock: number,
): Promise<number> {
  const g = dg.g;
  const n = g.dirBlockFsbs;
  const r = await ed.alloc.alloc(g.inoToAgno(dir.ino), {
    minlen: n,
    maxlen: n,
    near: g.inoToAgbno(dir.ino),
    owner: rmapOwner(dir, fblock),
  });
  if (!r) throw new XfsFsError("ENOSPC", "no space for a directory block", `<inode ${dir.ino}>`);
  const fsb = g.agbToFsb(r.agno, r.ext.agbno);
  await addMapping(ed, dir, exts, { startoff: fblock, startblock: fsb, blockcount: n, unwritten: false });
  dir.nblocks += n;
  return fsb;
}

/** xfs_bmap_extents_to_btree: an empty leaf under a level-1 root in the inode, then every record. */
export async function extentsToBtree(ed: XfsEditor, dir: XfsInode, recs: XfsExtent[]): Promise<void> {
  const area = forkArea(dir, "data");
  if (!area) throw new XfsFormatError("directory without a data fork", { inode: dir.ino });
  dir.format = FMT_BTREE;
  dir.nextents = 0;
  const fork = dir.raw.subarray(area.start, area.start + area.size);
  fork.fill(0);
  const t = bmbtTree(ed.ctx, ed.alloc, dir);
  const leaf = await t.host.allocBlock(recs[0]?.startblock ?? NULL_PTR);
  t.writeNode({
    ptr: leaf,
    level: 0,
    left: NULL_PTR,
    right: NULL_PTR,
    recs: [],
    keys: [],
    highKeys: [],
    ptrs: [],
  });
  writeBmdr(fork, { level: 1, keys: [{ startoff: 0 }], ptrs: [leaf] });
  for (const x of recs) {
    await btreeInsert(t, { ...x } as BmbtRec);
    dir.nextents++;
  }
}

/**
 * Unmaps and frees the directory block at file block `fblock` (dirBlockFsbs blocks): the
 * extent holding it is trimmed or split (in the inode, or through the bmbt).
 */
export async function freeDirBlock(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
  fblock: number,
): Promise<void> {
  const g = dg.g;
  const n = g.dirBlockFsbs;
  const i = exts.findIndex((e) => fblock >= e.startoff && fblock + n <= e.startoff + e.blockcount);
  if (i < 0) throw unsupported(ed, dir, "dir-discontiguous", "a directory block split across extents");
  const e = exts[i];
  const fsb = e.startblock + (fblock - e.startoff);
  const pieces: XfsExtent[] = [];
  if (fblock > e.startoff) pieces.push({ ...e, blockcount: fblock - e.startoff });
  if (fblock + n < e.startoff + e.blockcount)
    pieces.push({
      startoff: fblock + n,
      startblock: fsb + n,
      blockcount: e.startoff + e.blockcount - fblock - n,
      unwritten: e.unwritten,
    });
  if (dir.format === FMT_EXTENTS) {
    const area = forkArea(dir, "data");
    if (!area) throw new XfsFormatError("directory without a data fork", { inode: dir.ino });
    const all = [...exts.slice(0, i), ...pieces, ...exts.slice(i + 1)];
    if (all.length * 16 > area.size) await extentsToBtree(ed, dir, all);
    else {
      dir.raw.fill(0, area.start, area.start + area.size);
      all.forEach((x, k) => {
        packExtent(dir.raw, area.start + k * 16, x);
      });
      dir.nextents = all.length;
    }
    exts.splice(0, exts.length, ...all);
  } else {
    const t = bmbtTree(ed.ctx, ed.alloc, dir);
    const cur = await t.lookup({ startoff: e.startoff }, "eq");
    if (!cur) throw new XfsFormatError("directory mapping missing from its bmbt", { inode: dir.ino });
    if (pieces.length === 0) {
      await btreeDeleteAt(t, cur);
      dir.nextents--;
    } else {
      await btreeUpdateAt(t, cur, { ...pieces[0] } as BmbtRec);
      if (pieces.length === 2) {
        await btreeInsert(t, { ...pieces[1] } as BmbtRec);
        dir.nextents++;
      }
    }
    exts.splice(i, 1, ...pieces);
    // Back to extents format once the records fit the inode (xfs_bmap_btree_to_extents).
    const area = forkArea(dir, "data");
    if (area && dir.nextents * 16 <= area.size) {
      const recs: XfsExtent[] = [];
      for await (const r of t.records()) recs.push({ ...r });
      for (const p of await t.blocks()) {
        ed.ctx.bufs.forget(g.fsbToByte(p));
        await t.host.freeBlock(p);
      }
      dir.raw.fill(0, area.start, area.start + area.size);
      recs.forEach((x, k) => {
        packExtent(dir.raw, area.start + k * 16, x);
      });
      dir.format = FMT_EXTENTS;
      dir.nextents = recs.length;
    }
  }
  for (let k = 0; k < n; k++) ed.ctx.bufs.forget(g.fsbToByte(fsb + k));
  await ed.alloc.free(g.fsbToAgno(fsb), g.fsbToAgbno(fsb), n, rmapOwner(dir, fblock));
  dir.nblocks -= n;
}

export interface Blk {
  buf: MetaBuf;
  fsb: number;
  fblock: number;
}

export async function readBlk(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
  fblock: number,
): Promise<Blk> {
  const fsb = mapDirBlock(ed, dir, dg, exts, fblock);
  if (fsb < 0)
    throw new XfsFormatError(`directory block at file block ${fblock} is not mapped`, { inode: dir.ino });
  const buf = await ed.ctx.bufs.read(dg.g.fsbToByte(fsb), dg.blksize, "directory block");
  return { buf, fsb, fblock };
}

/** v5 self-description of a dabtree-style block (leaf, node): blkno, uuid, owner. */
export function stampDa3(b: Uint8Array, dg: DirGeo, dir: XfsInode, fsb: number): void {
  if (!dg.v5) return;
  setBe64(b, 16, dg.g.fsbToDaddr(fsb));
  b.set(dg.g.metaUuid.subarray(0, 16), 32);
  setBe64(b, 48, dir.ino);
}

export function writeLeaf(ed: XfsEditor, dg: DirGeo, dir: XfsInode, blk: Blk, leaf: DirLeaf): void {
  encodeDirLeaf(blk.buf.data, dg.v5, leaf);
  stampDa3(blk.buf.data, dg, dir, blk.fsb);
  ed.ctx.bufs.dirty(blk.buf, dg.v5 ? { crcOffset: 12, lsnOffset: 24 } : {});
}

/** Data entries of data block `db` (a plain data block of a leaf/node directory). */
export async function readData(ed: XfsEditor, dir: XfsInode, dg: DirGeo, exts: XfsExtent[], db: number) {
  const blk = await readBlk(ed, dir, dg, exts, db * dg.g.dirBlockFsbs);
  const b = blk.buf.data;
  const at = { file: ed.device.name, inode: dir.ino, structure: "directory data block" };
  if (be32(b, 0) !== (dg.v5 ? DIR3_DATA_MAGIC : DIR2_DATA_MAGIC))
    throw new XfsFormatError("bad directory data block magic", at);
  const entries: DirEntryW[] = decodeDataEntries(b, dg.v5, b.length, dg.ftype, 0, at).map((e) => ({ ...e }));
  return { blk, entries };
}
