/**
 * Name adds and removes in leaf and node directories, and the block → leaf and leaf → node
 * conversions (xfs_dir2_block_to_leaf, xfs_dir2_leaf_to_node):
 *
 * - a new name goes into the first data block whose longest free region fits it (the leaf's bests
 *   table or the free index says which), else into a new data block at the first unused data
 *   block number; the bests follow the data block's new longest free region;
 * - the hash entry is inserted in hash order into the leaf (leaf form) or into the leafn the
 *   dabtree leads to (node form), stale entries compacted away first when room is needed; the
 *   dabtree's hash values on the path are kept equal to each subtree's last hash;
 * - a removed name leaves a stale hash entry (hash kept, so the dabtree stays exact), as the
 *   kernel does.
 * Refused for now (XfsUnsupportedError): splitting a full leafn, a removal that empties a data
 * block, a new block that needs the fork to turn from extents into a bmbt, a new free-index block.
 */

import { NULL_PTR } from "./btree.js";
import { type BmbtRec, writeBmdr } from "./btree-bmap.js";
import { btreeDeleteAt, btreeInsert, btreeUpdateAt } from "./btree-update.js";
import type { MetaBuf } from "./buf.js";
import { be16, be32, setBe16, setBe32, setBe64 } from "./bytes.js";
import { DA_NODE_MAGIC, DA3_NODE_MAGIC, decodeDaNode } from "./da-btree.js";
import { DIR2_DATA_MAGIC, DIR3_DATA_MAGIC, decodeDataEntries } from "./dir2-data.js";
import { asciiCiEqual, dirHashName } from "./dir2-hash.js";
import {
  DIR2_LEAF1_MAGIC,
  DIR2_LEAFN_MAGIC,
  DIR3_LEAF1_MAGIC,
  DIR3_LEAFN_MAGIC,
  type DirLeaf,
  decodeDirFree,
  decodeDirLeaf,
  encodeDirFree,
  encodeDirLeaf,
  freeHeaderSize,
  leafFits,
  leafHashMatches,
  NULL_DATAOFF,
  NULL_DATAPTR,
} from "./dir2-leaf.js";
import {
  type DirEntryW,
  type DirGeo,
  place,
  rmapOwner,
  sameName,
  writeDirDataBlock,
} from "./dir2-write-data.js";
import type { XfsEditor } from "./editor.js";
import { XfsFormatError, XfsFsError, XfsUnsupportedError } from "./errors.js";
import { bmbtTree } from "./file-write.js";
import { forkArea, MAX_EXTLEN, packExtent, type XfsExtent } from "./fork.js";
import { FMT_BTREE, FMT_EXTENTS, type XfsInode } from "./inode.js";

function unsupported(ed: XfsEditor, dir: XfsInode, feature: string, what: string): XfsUnsupportedError {
  return new XfsUnsupportedError(feature, `${what} cannot be written yet`, {
    file: ed.device.name,
    inode: dir.ino,
  });
}

/**
 * The directory's data fork mapping, from the inode being edited (through the reader's extent
 * cache, which checks the fork's bytes; copied, since the writers change it).
 */
async function dirExtents(ed: XfsEditor, dir: XfsInode): Promise<XfsExtent[]> {
  return (await ed.fs.forkExtents(dir, "data")).map((e) => ({ ...e }));
}

/** First fs block of directory block starting at file block `fblock` (contiguous), or -1. */
function mapDirBlock(ed: XfsEditor, dir: XfsInode, dg: DirGeo, exts: XfsExtent[], fblock: number): number {
  for (const e of exts) {
    if (fblock >= e.startoff && fblock < e.startoff + e.blockcount) {
      if (fblock + dg.g.dirBlockFsbs > e.startoff + e.blockcount)
        throw unsupported(ed, dir, "dir-discontiguous", "a directory block split across extents");
      return e.startblock + (fblock - e.startoff);
    }
  }
  return -1;
}

/**
 * Adds a new mapping to the data fork: merged into a physically and logically adjacent extent
 * when there is one (as xfs_bmap_add_extent_hole_real does), else a new record — in the inode
 * while it fits, else the fork becomes a bmbt (xfs_bmap_extents_to_btree) and records go there.
 */
async function addMapping(ed: XfsEditor, dir: XfsInode, exts: XfsExtent[], ext: XfsExtent): Promise<void> {
  const area = forkArea(dir, "data");
  if (!area) throw new XfsFormatError("directory without a data fork", { inode: dir.ino });
  if (dir.format === FMT_EXTENTS) {
    const all = [...exts, ext].sort((a, b) => a.startoff - b.startoff);
    const merged: XfsExtent[] = [];
    for (const x of all) {
      const last = merged[merged.length - 1];
      if (
        last &&
        last.startoff + last.blockcount === x.startoff &&
        last.startblock + last.blockcount === x.startblock &&
        last.unwritten === x.unwritten &&
        last.blockcount + x.blockcount <= MAX_EXTLEN
      )
        last.blockcount += x.blockcount;
      else merged.push({ ...x });
    }
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
async function newDirBlock(
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
async function extentsToBtree(ed: XfsEditor, dir: XfsInode, recs: XfsExtent[]): Promise<void> {
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
async function freeDirBlock(
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

interface Blk {
  buf: MetaBuf;
  fsb: number;
  fblock: number;
}

async function readBlk(
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
function stampDa3(b: Uint8Array, dg: DirGeo, dir: XfsInode, fsb: number): void {
  if (!dg.v5) return;
  setBe64(b, 16, dg.g.fsbToDaddr(fsb));
  b.set(dg.g.metaUuid.subarray(0, 16), 32);
  setBe64(b, 48, dir.ino);
}

function writeLeaf(ed: XfsEditor, dg: DirGeo, dir: XfsInode, blk: Blk, leaf: DirLeaf): void {
  encodeDirLeaf(blk.buf.data, dg.v5, leaf);
  stampDa3(blk.buf.data, dg, dir, blk.fsb);
  ed.ctx.bufs.dirty(blk.buf, dg.v5 ? { crcOffset: 12, lsnOffset: 24 } : {});
}

/** Data entries of data block `db` (a plain data block of a leaf/node directory). */
async function readData(ed: XfsEditor, dir: XfsInode, dg: DirGeo, exts: XfsExtent[], db: number) {
  const blk = await readBlk(ed, dir, dg, exts, db * dg.g.dirBlockFsbs);
  const b = blk.buf.data;
  const at = { file: ed.device.name, inode: dir.ino, structure: "directory data block" };
  if (be32(b, 0) !== (dg.v5 ? DIR3_DATA_MAGIC : DIR2_DATA_MAGIC))
    throw new XfsFormatError("bad directory data block magic", at);
  const entries: DirEntryW[] = decodeDataEntries(b, dg.v5, b.length, dg.ftype, 0, at).map((e) => ({ ...e }));
  return { blk, entries };
}

// ---------------------------------------------------------------- the hash index

interface PathStep {
  blk: Blk;
  idx: number;
  count: number;
}

/** Descends the dabtree from the leaf section's first block to the leafn that should hold `hash`. */
async function descend(ed: XfsEditor, dir: XfsInode, dg: DirGeo, exts: XfsExtent[], hash: number) {
  const path: PathStep[] = [];
  let blk = await readBlk(ed, dir, dg, exts, dg.leafFsb);
  for (let depth = 0; ; depth++) {
    const magic = be16(blk.buf.data, 8);
    if (magic !== DA_NODE_MAGIC && magic !== DA3_NODE_MAGIC) break;
    if (depth > 5) throw new XfsFormatError("directory dabtree too deep", { inode: dir.ino });
    const node = decodeDaNode(blk.buf.data, dg.v5, { inode: dir.ino });
    let idx = node.entries.findIndex((e) => e.hashval >= hash);
    if (idx < 0) idx = node.entries.length - 1;
    path.push({ blk, idx, count: node.entries.length });
    blk = await readBlk(ed, dir, dg, exts, node.entries[idx].before);
  }
  return { path, leafBlk: blk };
}

/** Sets the dabtree hash values on `path` so each names its subtree's last hash (xfs_da3_fixhashpath). */
function fixHashPath(ed: XfsEditor, dg: DirGeo, path: PathStep[], lastHash: number): void {
  for (let i = path.length - 1; i >= 0; i--) {
    const step = path[i];
    const b = step.blk.buf;
    const off = (dg.v5 ? 64 : 16) + step.idx * 8;
    if (be32(b.data, off) === lastHash) return;
    setBe32(b.data, off, lastHash);
    ed.ctx.bufs.dirty(b, dg.v5 ? { crcOffset: 12, lsnOffset: 24 } : {});
    if (step.idx !== step.count - 1) return;
  }
}

/** Inserts (hash, address) into a leaf's entries in hash order (after equal hashes). */
function insertEnt(leaf: DirLeaf, hashval: number, address: number): void {
  let i = leaf.ents.length;
  while (i > 0 && leaf.ents[i - 1].hashval > hashval) i--;
  leaf.ents.splice(i, 0, { hashval, address });
}

function dropStale(leaf: DirLeaf): void {
  leaf.ents = leaf.ents.filter((e) => e.address !== NULL_DATAPTR);
  leaf.stale = 0;
}

// ---------------------------------------------------------------- free space bookkeeping

interface FreeView {
  /** Longest free region of data block db (NULL_DATAOFF: no block), and a setter. */
  get(db: number): number;
  set(db: number, v: number): Promise<void>;
  /** Data blocks known. */
  count(): number;
}

async function leafFreeView(leaf: DirLeaf): Promise<FreeView> {
  const bests = leaf.bests ?? [];
  return {
    get: (db) => (db < bests.length ? bests[db] : NULL_DATAOFF),
    set: async (db, v) => {
      while (bests.length <= db) bests.push(NULL_DATAOFF);
      bests[db] = v;
    },
    count: () => bests.length,
  };
}

async function nodeFreeView(ed: XfsEditor, dir: XfsInode, dg: DirGeo, exts: XfsExtent[]): Promise<FreeView> {
  const per = Math.floor((dg.blksize - freeHeaderSize(dg.v5)) / 2);
  const blocks: { blk: Blk; free: ReturnType<typeof decodeDirFree> }[] = [];
  for (let k = 0; ; k++) {
    const fblock = dg.freeFsb + k * dg.g.dirBlockFsbs;
    if (mapDirBlock(ed, dir, dg, exts, fblock) < 0) break;
    const blk = await readBlk(ed, dir, dg, exts, fblock);
    const free = decodeDirFree(blk.buf.data, dg.v5, { inode: dir.ino, structure: "directory free block" });
    if (free.firstdb !== k * per)
      throw new XfsFormatError("directory free block out of place", { inode: dir.ino });
    blocks.push({ blk, free });
  }
  return {
    get: (db) => {
      const f = blocks[Math.floor(db / per)]?.free;
      const i = db % per;
      return f && i < f.bests.length ? f.bests[i] : NULL_DATAOFF;
    },
    set: async (db, v) => {
      const k = Math.floor(db / per);
      const entry = blocks[k];
      if (!entry) throw unsupported(ed, dir, "dir-new-free-block", "a new directory free-index block");
      const i = db % per;
      while (entry.free.bests.length <= i) entry.free.bests.push(NULL_DATAOFF);
      entry.free.bests[i] = v;
      // Trailing unused slots are not kept valid.
      while (entry.free.bests.length && entry.free.bests[entry.free.bests.length - 1] === NULL_DATAOFF)
        entry.free.bests.pop();
      encodeDirFree(entry.blk.buf.data, dg.v5, entry.free);
      if (dg.v5) {
        setBe64(entry.blk.buf.data, 8, dg.g.fsbToDaddr(entry.blk.fsb));
        entry.blk.buf.data.set(dg.g.metaUuid.subarray(0, 16), 24);
        setBe64(entry.blk.buf.data, 40, dir.ino);
      }
      ed.ctx.bufs.dirty(entry.blk.buf, dg.v5 ? { crcOffset: 4, lsnOffset: 16 } : {});
    },
    count: () => blocks.reduce((n, b) => n + b.free.bests.length, 0),
  };
}

// ---------------------------------------------------------------- conversions

/** Turns a full single-block directory into a data block plus a leaf1 block (xfs_dir2_block_to_leaf). */
export async function blockToLeaf(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  blockFsb: number,
  entries: DirEntryW[],
): Promise<void> {
  const exts = await dirExtents(ed, dir);
  const best = await writeDirDataBlock(ed, dir, dg, blockFsb, entries, false, "data");
  const fsb = await newDirBlock(ed, dir, dg, exts, dg.leafFsb);
  const buf = ed.ctx.bufs.fresh(dg.g.fsbToByte(fsb), dg.blksize, "directory leaf");
  const leaf: DirLeaf = {
    magic: dg.v5 ? DIR3_LEAF1_MAGIC : DIR2_LEAF1_MAGIC,
    forw: 0,
    back: 0,
    ents: [],
    stale: 0,
    bests: [best],
  };
  for (const e of entries) insertEnt(leaf, dirHashName(e.name, dg.ci), e.offset / 8);
  writeLeaf(ed, dg, dir, { buf, fsb, fblock: dg.leafFsb }, leaf);
}

/** Moves a leaf1's bests into a new free-index block and makes the leaf a leafn (xfs_dir2_leaf_to_node). */
async function leafToNode(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
  blk: Blk,
  leaf: DirLeaf,
): Promise<void> {
  const fsb = await newDirBlock(ed, dir, dg, exts, dg.freeFsb);
  const buf = ed.ctx.bufs.fresh(dg.g.fsbToByte(fsb), dg.blksize, "directory free block");
  const bests = [...(leaf.bests ?? [])];
  while (bests.length && bests[bests.length - 1] === NULL_DATAOFF) bests.pop();
  encodeDirFree(buf.data, dg.v5, { firstdb: 0, bests });
  if (dg.v5) {
    setBe64(buf.data, 8, dg.g.fsbToDaddr(fsb));
    buf.data.set(dg.g.metaUuid.subarray(0, 16), 24);
    setBe64(buf.data, 40, dir.ino);
  }
  ed.ctx.bufs.dirty(buf, dg.v5 ? { crcOffset: 4, lsnOffset: 16 } : {});
  leaf.magic = dg.v5 ? DIR3_LEAFN_MAGIC : DIR2_LEAFN_MAGIC;
  leaf.bests = undefined;
  writeLeaf(ed, dg, dir, blk, leaf);
}

// ---------------------------------------------------------------- add and remove

/**
 * Is `name` in the directory already (ASCII case ignored on ci filesystems)? Only the data entries
 * the leaf's entries with its hash point at are read, following the leafn chain while that hash
 * continues (node form).
 */
async function hasName(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
  leafBlk: Blk,
  hash: number,
  name: Uint8Array,
): Promise<boolean> {
  const at = { file: ed.device.name, inode: dir.ino, structure: "directory leaf" };
  let blk = leafBlk;
  for (let hop = 0; hop < 64; hop++) {
    const m = leafHashMatches(blk.buf.data, dg.v5, hash, at);
    for (const address of m.addresses) {
      const byte = address * 8;
      const data = await readBlk(ed, dir, dg, exts, Math.floor(byte / dg.blksize) * dg.g.dirBlockFsbs);
      const b = data.buf.data;
      const off = byte % dg.blksize;
      const len = b[off + 8];
      if (off < dg.hdr || off + 9 + len > b.length)
        throw new XfsFormatError("leaf entry points at a bad data entry", at);
      const other = b.subarray(off + 9, off + 9 + len);
      if (dg.ci ? asciiCiEqual(other, name) : sameName(other, name)) return true;
    }
    if (m.lastHash !== hash || m.forw === 0) return false;
    blk = await readBlk(ed, dir, dg, exts, m.forw);
  }
  throw new XfsFormatError("directory leaf chain too long", at);
}

/** Adds a name to a leaf- or node-form directory (EEXIST when it is there). */
export async function leafAddName(ed: XfsEditor, dir: XfsInode, dg: DirGeo, entry: DirEntryW): Promise<void> {
  const exts = await dirExtents(ed, dir);
  const hash = dirHashName(entry.name, dg.ci);
  let node = exts.some((e) => e.startoff + e.blockcount > dg.freeFsb);
  let { path, leafBlk } = await descend(ed, dir, dg, exts, hash);
  if (await hasName(ed, dir, dg, exts, leafBlk, hash, entry.name))
    throw new XfsFsError("EEXIST", "name exists", `<inode ${dir.ino}>/${Buffer.from(entry.name).toString()}`);
  let leaf = decodeDirLeaf(leafBlk.buf.data, dg.v5, { inode: dir.ino, structure: "directory leaf" });
  if (!node && leaf.bests === undefined)
    throw new XfsFormatError("leafn without free blocks", { inode: dir.ino });
  if (!node) {
    // Keep room for one more entry and one more best; else move to node form first.
    if (!leafFits(dg.blksize, dg.v5, leaf.ents.length - leaf.stale + 1, (leaf.bests?.length ?? 0) + 1)) {
      dropStale(leaf);
      await leafToNode(ed, dir, dg, exts, leafBlk, leaf);
      node = true;
      ({ path, leafBlk } = await descend(ed, dir, dg, exts, hash));
      leaf = decodeDirLeaf(leafBlk.buf.data, dg.v5, { inode: dir.ino, structure: "directory leaf" });
    }
  }
  const free = node ? await nodeFreeView(ed, dir, dg, exts) : await leafFreeView(leaf);
  const size = dg.entsize(entry.name.length);
  // A data block with room, else a new one at the first unused data block number.
  let db = -1;
  for (let i = 0, n = free.count(); i < n; i++) {
    const v = free.get(i);
    if (v !== NULL_DATAOFF && v >= size) {
      db = i;
      break;
    }
  }
  let best: number;
  if (db >= 0) {
    const { blk, entries } = await readData(ed, dir, dg, exts, db);
    if (!place(entries, entry, dg, "data"))
      throw new XfsFormatError("directory bests disagree with the data block", { inode: dir.ino });
    best = await writeDirDataBlock(ed, dir, dg, blk.fsb, [...entries, entry], false, "data");
  } else {
    db = 0;
    while (mapDirBlock(ed, dir, dg, exts, db * dg.g.dirBlockFsbs) >= 0) db++;
    if ((db + 1) * dg.blksize > 2 ** 35)
      throw new XfsFsError("ENOSPC", "directory data section full", `<inode ${dir.ino}>`);
    const fsb = await newDirBlock(ed, dir, dg, exts, db * dg.g.dirBlockFsbs);
    entry.offset = dg.hdr;
    best = await writeDirDataBlock(ed, dir, dg, fsb, [entry], true, "data");
    dir.size = Math.max(dir.size, (db + 1) * dg.blksize);
  }
  await free.set(db, best);
  if (leaf.stale && !leafFits(dg.blksize, dg.v5, leaf.ents.length + 1, leaf.bests?.length)) dropStale(leaf);
  insertEnt(leaf, hash, (db * dg.blksize + entry.offset) / 8);
  if (!leafFits(dg.blksize, dg.v5, leaf.ents.length, leaf.bests?.length)) {
    await splitLeafn(ed, dir, dg, exts, path, leafBlk, leaf);
    return;
  }
  writeLeaf(ed, dg, dir, leafBlk, leaf);
  if (path.length) fixHashPath(ed, dg, path, leaf.ents[leaf.ents.length - 1].hashval);
}

/** First unmapped directory block in the leaf section (xfs_dir2_grow_inode on the leaf space). */
function firstUnusedLeafBlock(ed: XfsEditor, dir: XfsInode, dg: DirGeo, exts: XfsExtent[]): number {
  for (let f = dg.leafFsb; f < dg.freeFsb; f += dg.g.dirBlockFsbs)
    if (mapDirBlock(ed, dir, dg, exts, f) < 0) return f;
  throw new XfsFsError("ENOSPC", "directory leaf section full", `<inode ${dir.ino}>`);
}

function writeDaNode(
  ed: XfsEditor,
  dg: DirGeo,
  dir: XfsInode,
  blk: Blk,
  level: number,
  ents: { hashval: number; before: number }[],
) {
  const b = blk.buf.data;
  const hdr = dg.v5 ? 64 : 16;
  b.fill(0);
  setBe16(b, 8, dg.v5 ? DA3_NODE_MAGIC : DA_NODE_MAGIC);
  setBe16(b, dg.v5 ? 56 : 12, ents.length);
  setBe16(b, dg.v5 ? 58 : 14, level);
  ents.forEach((e, i) => {
    setBe32(b, hdr + i * 8, e.hashval);
    setBe32(b, hdr + i * 8 + 4, e.before);
  });
  stampDa3(b, dg, dir, blk.fsb);
  ed.ctx.bufs.dirty(blk.buf, dg.v5 ? { crcOffset: 12, lsnOffset: 24 } : {});
}

/**
 * Splits an over-full leafn in two (xfs_dir2_leafn_split): the upper half moves to a new leafn
 * linked after it, and the parent dabtree node gets an entry for it. A leafn that is the root
 * (node form with a single leaf) is first split into two new blocks under a new level-1 root.
 */
async function splitLeafn(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
  path: PathStep[],
  blk: Blk,
  leaf: DirLeaf,
): Promise<void> {
  const ents = leaf.ents;
  const mid = ents.length >> 1;
  const lo = ents.slice(0, mid);
  const hi = ents.slice(mid);
  const lastOf = (x: typeof ents) => x[x.length - 1].hashval;
  const leafn = dg.v5 ? DIR3_LEAFN_MAGIC : DIR2_LEAFN_MAGIC;
  const fresh = async (fblock: number): Promise<Blk> => {
    const fsb = await newDirBlock(ed, dir, dg, exts, fblock);
    return { buf: ed.ctx.bufs.fresh(dg.g.fsbToByte(fsb), dg.blksize, "directory leaf"), fsb, fblock };
  };
  if (path.length === 0) {
    // The root stays at the start of the leaf section: it becomes a node over two new leaves.
    const a = await fresh(firstUnusedLeafBlock(ed, dir, dg, exts));
    const b = await fresh(firstUnusedLeafBlock(ed, dir, dg, exts));
    writeLeaf(ed, dg, dir, a, { magic: leafn, forw: b.fblock, back: 0, ents: lo, stale: 0 });
    writeLeaf(ed, dg, dir, b, { magic: leafn, forw: 0, back: a.fblock, ents: hi, stale: 0 });
    writeDaNode(ed, dg, dir, blk, 1, [
      { hashval: lastOf(lo), before: a.fblock },
      { hashval: lastOf(hi), before: b.fblock },
    ]);
    return;
  }
  const parent = path[path.length - 1];
  const pnode = decodeDaNode(parent.blk.buf.data, dg.v5, { inode: dir.ino });
  const nodeMax = Math.floor((dg.blksize - (dg.v5 ? 64 : 16)) / 8);
  if (pnode.entries.length + 1 > nodeMax)
    throw unsupported(ed, dir, "dir-node-split", "a full directory dabtree node that needs splitting");
  const nb = await fresh(firstUnusedLeafBlock(ed, dir, dg, exts));
  const oldForw = leaf.forw;
  writeLeaf(ed, dg, dir, nb, { magic: leafn, forw: oldForw, back: blk.fblock, ents: hi, stale: 0 });
  writeLeaf(ed, dg, dir, blk, { magic: leafn, forw: nb.fblock, back: leaf.back, ents: lo, stale: 0 });
  if (oldForw !== 0) {
    const next = await readBlk(ed, dir, dg, exts, oldForw);
    setBe32(next.buf.data, 4, nb.fblock);
    ed.ctx.bufs.dirty(next.buf, dg.v5 ? { crcOffset: 12, lsnOffset: 24 } : {});
  }
  pnode.entries[parent.idx].hashval = lastOf(lo);
  pnode.entries.splice(parent.idx + 1, 0, { hashval: lastOf(hi), before: nb.fblock });
  writeDaNode(ed, dg, dir, parent.blk, pnode.level, pnode.entries);
  if (parent.idx + 1 === pnode.entries.length - 1 && path.length > 1) {
    const up = path.slice(0, -1);
    fixHashPath(ed, dg, up, lastOf(hi));
  }
}

/** Removes a name from a leaf- or node-form directory. */
export async function leafRemoveName(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  name: Uint8Array,
  path0: string,
): Promise<void> {
  const exts = await dirExtents(ed, dir);
  const node = exts.some((e) => e.startoff + e.blockcount > dg.freeFsb);
  const hash = dirHashName(name, dg.ci);
  // Equal hashes may continue into the next leafn; follow forw while the hash still matches.
  let { leafBlk } = await descend(ed, dir, dg, exts, hash);
  for (let hops = 0; hops < 1024; hops++) {
    const leaf = decodeDirLeaf(leafBlk.buf.data, dg.v5, { inode: dir.ino, structure: "directory leaf" });
    for (const ent of leaf.ents) {
      if (ent.hashval !== hash || ent.address === NULL_DATAPTR) continue;
      const byte = ent.address * 8;
      const db = Math.floor(byte / dg.blksize);
      const { blk, entries } = await readData(ed, dir, dg, exts, db);
      const i = entries.findIndex((e) => e.offset === byte % dg.blksize);
      if (i < 0 || !sameName(entries[i].name, name)) continue;
      entries.splice(i, 1);
      const free = node ? await nodeFreeView(ed, dir, dg, exts) : await leafFreeView(leaf);
      if (entries.length === 0) {
        // The data block is empty: unmap and free it (xfs_dir2_shrink_inode); its best goes.
        await freeDirBlock(ed, dir, dg, exts, db * dg.g.dirBlockFsbs);
        await free.set(db, NULL_DATAOFF);
        if (!node && leaf.bests)
          while (leaf.bests.length && leaf.bests[leaf.bests.length - 1] === NULL_DATAOFF) leaf.bests.pop();
        // The directory size ends with its last data block.
        let last = 0;
        for (const e of exts) if (e.startoff < dg.leafFsb) last = Math.max(last, e.startoff + e.blockcount);
        dir.size = Math.ceil(last / dg.g.dirBlockFsbs) * dg.blksize;
      } else {
        const best = await writeDirDataBlock(ed, dir, dg, blk.fsb, entries, false, "data");
        await free.set(db, best);
      }
      ent.address = NULL_DATAPTR;
      writeLeaf(ed, dg, dir, leafBlk, leaf);
      return;
    }
    const last = leaf.ents[leaf.ents.length - 1];
    if (!node || !last || last.hashval > hash || leaf.forw === 0) break;
    leafBlk = await readBlk(ed, dir, dg, exts, leaf.forw);
  }
  throw new XfsFsError("ENOENT", "no such name", path0);
}
