/**
 * Name adds and removes in leaf and node directories, and the conversions between the forms
 * (xfs_dir2_block_to_leaf, xfs_dir2_leaf_to_node, and back: node → leaf in dir2-write-node.ts,
 * xfs_dir2_leaf_to_block here):
 *
 * - a new name goes into the first data block whose longest free region fits it (the leaf's bests
 *   table or the free index says which), else into a new data block at the first unused data
 *   block number; the bests follow the data block's new longest free region;
 * - the hash entry is inserted in hash order into the leaf (leaf form) or into the leafn the
 *   dabtree leads to (node form), stale entries compacted away first when room is needed; the
 *   dabtree's hash values on the path are kept equal to each subtree's last hash; a full leafn
 *   splits (dir2-write-node.ts);
 * - a removed name leaves a stale hash entry (hash kept, so the dabtree stays exact), as the
 *   kernel does; an emptied data block is unmapped and freed; a leaf directory left with only its
 *   first data block, whose free space at the end takes the leaf, becomes a block directory.
 */

import { be32 } from "./bytes.js";
import { daFixHashPath } from "./da-btree-write.js";
import { DIR2_DATA_MAGIC, DIR3_DATA_MAGIC } from "./dir2-data.js";
import { dirHashName } from "./dir2-hash.js";
import {
  dataAddInPlace,
  dataEntryAt,
  dataNameAt,
  dataRemoveInPlace,
  leafBestsInPlace,
  leafCompactStale,
  leafHead,
  leafInsertInPlace,
  leafLastHash,
  leafStaleInPlace,
} from "./dir2-inplace.js";
import {
  DIR2_LEAF1_MAGIC,
  DIR3_LEAF1_MAGIC,
  type DirLeaf,
  decodeDirLeaf,
  leafFits,
  leafHashMatches,
  NULL_DATAOFF,
  NULL_DATAPTR,
} from "./dir2-leaf.js";
import {
  dirExtents,
  freeDirBlock,
  isNodeForm,
  newDirBlock,
  readBlk,
  readData,
  writeLeaf,
} from "./dir2-write-blocks.js";
import { type DirEntryW, type DirGeo, layoutFits, sameName, writeDirDataBlock } from "./dir2-write-data.js";
import {
  descend,
  type FreeEdit,
  leafCapacity,
  leafToNode,
  nodeFreeInPlace,
  relayoutNode,
  splitLeafn,
} from "./dir2-write-node.js";
import type { XfsEditor } from "./editor.js";
import { XfsFormatError, XfsFsError, type XfsLocation } from "./errors.js";
import type { XfsExtent } from "./fork.js";
import type { XfsInode } from "./inode.js";

/** Inserts (hash, address) into a leaf's entries in hash order (after equal hashes). */
function insertEnt(leaf: DirLeaf, hashval: number, address: number): void {
  let i = leaf.ents.length;
  while (i > 0 && leaf.ents[i - 1].hashval > hashval) i--;
  leaf.ents.splice(i, 0, { hashval, address });
}

function countStale(leaf: DirLeaf): number {
  let n = 0;
  for (const e of leaf.ents) if (e.address === NULL_DATAPTR) n++;
  return n;
}

function dropStale(leaf: DirLeaf): void {
  leaf.ents = leaf.ents.filter((e) => e.address !== NULL_DATAPTR);
  leaf.stale = 0;
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

/**
 * xfs_dir2_leaf_to_block: a leaf directory whose only data block is the first, with room at its
 * end for the hash entries and the block tail, becomes a block directory (entries stay put) and
 * the leaf block is freed.
 */
async function leafToBlock(ed: XfsEditor, dir: XfsInode, dg: DirGeo, exts: XfsExtent[]): Promise<void> {
  const leafBlk = await readBlk(ed, dir, dg, exts, dg.leafFsb);
  const leaf = decodeDirLeaf(leafBlk.buf.data, dg.v5, { inode: dir.ino, structure: "directory leaf" });
  const bests = [...(leaf.bests ?? [])];
  while (bests.length && bests[bests.length - 1] === NULL_DATAOFF) bests.pop();
  if (bests.length !== 1) return;
  for (const e of exts) if (e.startoff < dg.leafFsb && e.startoff + e.blockcount > dg.g.dirBlockFsbs) return;
  const { blk, entries } = await readData(ed, dir, dg, exts, 0);
  if (entries.length !== leaf.ents.length - countStale(leaf)) return;
  if (!layoutFits(entries, dg, "block")) return;
  await writeDirDataBlock(ed, dir, dg, blk.fsb, entries, false, "block");
  await freeDirBlock(ed, dir, dg, exts, dg.leafFsb);
  dir.size = dg.blksize;
}

// ---------------------------------------------------------------- add and remove

/** A data block of a leaf/node directory, its magic checked. */
async function readDataBlk(ed: XfsEditor, dir: XfsInode, dg: DirGeo, exts: XfsExtent[], db: number) {
  const blk = await readBlk(ed, dir, dg, exts, db * dg.g.dirBlockFsbs);
  if (be32(blk.buf.data, 0) !== (dg.v5 ? DIR3_DATA_MAGIC : DIR2_DATA_MAGIC))
    throw new XfsFormatError("bad directory data block magic", {
      file: ed.device.name,
      inode: dir.ino,
      offset: blk.buf.offset,
      structure: "directory data block",
    });
  return blk;
}

const DATA_LAYOUT_V5 = { crcOffset: 4, lsnOffset: 16 };
const LEAF_LAYOUT_V5 = { crcOffset: 12, lsnOffset: 24 };

/**
 * Adds a name to a leaf- or node-form directory. The common case edits the data block and the
 * leaf in place (dir2-inplace.ts); conversions to node form and leafn splits go through the
 * decoded leaf.
 */
export async function leafAddName(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  entry: DirEntryW,
  path0: string,
): Promise<void> {
  const exts = await dirExtents(ed, dir);
  const hash = dirHashName(entry.name, dg.ci);
  const at = { file: ed.device.name, inode: dir.ino, structure: "directory leaf" };
  let node = isNodeForm(dg, exts);
  let { path, leafBlk, host } = await descend(ed, dir, dg, exts, hash);
  if (await hasName(ed, dir, dg, exts, leafBlk.buf.data, hash, entry.name, at))
    throw new XfsFsError("EEXIST", "name exists", path0);
  let h = leafHead(leafBlk.buf.data, dg.v5, at);
  if (!node && !h.leaf1) throw new XfsFormatError("leafn without free blocks", at);
  // Keep room for one more entry and one more best; else move to node form first.
  if (!node && !leafFits(dg.blksize, dg.v5, h.count - h.stale + 1, h.bestcount + 1)) {
    const leaf = decodeDirLeaf(leafBlk.buf.data, dg.v5, at);
    dropStale(leaf);
    await leafToNode(ed, dir, dg, exts, leafBlk, leaf);
    node = true;
    ({ path, leafBlk, host } = await descend(ed, dir, dg, exts, hash));
  }
  const b = leafBlk.buf.data;
  const free: FreeEdit = node ? nodeFreeInPlace(ed, dir, dg, exts) : leafBestsInPlace(b, dg.v5, at);
  const size = dg.entsize(entry.name.length);
  // A data block with room, else a new one at the first unused data block number.
  let db = await free.find(size);
  let best: number;
  if (db >= 0) {
    const blk = await readDataBlk(ed, dir, dg, exts, db);
    best = dataAddInPlace(blk.buf.data, dg, entry, { ...at, structure: "directory data block" });
    ed.ctx.bufs.dirty(blk.buf, dg.v5 ? DATA_LAYOUT_V5 : {});
  } else {
    db = await free.firstUnused();
    if ((db + 1) * dg.blksize > 2 ** 35)
      throw new XfsFsError("ENOSPC", "directory data section full", `<inode ${dir.ino}>`);
    const fsb = await newDirBlock(ed, dir, dg, exts, db * dg.g.dirBlockFsbs);
    entry.offset = dg.hdr;
    best = await writeDirDataBlock(ed, dir, dg, fsb, [entry], true, "data");
    dir.size = Math.max(dir.size, (db + 1) * dg.blksize);
  }
  await free.set(db, best);
  h = leafHead(b, dg.v5, at);
  if (h.stale && !leafFits(dg.blksize, dg.v5, h.count + 1, h.leaf1 ? h.bestcount : undefined)) {
    leafCompactStale(b, dg.v5, at);
    h = leafHead(b, dg.v5, at);
  }
  const address = (db * dg.blksize + entry.offset) / 8;
  const full = node && h.count + 1 > dg.leafMax;
  if (full || !leafFits(dg.blksize, dg.v5, h.count + 1, h.leaf1 ? h.bestcount : undefined)) {
    const leaf = decodeDirLeaf(b, dg.v5, at);
    insertEnt(leaf, hash, address);
    await splitLeafn(ed, dir, dg, exts, path, leafBlk, leaf);
    return;
  }
  leafInsertInPlace(b, dg.v5, hash, address, at);
  ed.ctx.bufs.dirty(leafBlk.buf, dg.v5 ? LEAF_LAYOUT_V5 : {});
  const last = leafLastHash(b, dg.v5, at);
  if (path.length && last !== undefined) daFixHashPath(host, path, last);
}

/**
 * Is `name` (hash `hash`) in the directory? Binary-searches the leaf's bytes for the hash and
 * compares the names the matching entries point at, following the leafn chain while the hash
 * continues (ASCII-ci: equal ignoring case).
 */
async function hasName(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
  first: Uint8Array,
  hash: number,
  name: Uint8Array,
  at: XfsLocation,
): Promise<boolean> {
  let b = first;
  for (let hops = 0; hops < 1024; hops++) {
    const m = leafHashMatches(b, dg.v5, hash, at);
    for (const address of m.addresses) {
      const byte = address * 8;
      const blk = await readBlk(ed, dir, dg, exts, Math.floor(byte / dg.blksize) * dg.g.dirBlockFsbs);
      if (dataNameAt(blk.buf.data, dg, byte % dg.blksize, name)) return true;
    }
    if (m.lastHash === undefined || m.lastHash > hash || m.forw === 0) return false;
    b = (await readBlk(ed, dir, dg, exts, m.forw)).buf.data;
  }
  throw new XfsFormatError("directory leaf chain too long", at);
}

/** Removes a name from a leaf- or node-form directory (data block and leaf edited in place). */
export async function leafRemoveName(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  name: Uint8Array,
  path0: string,
): Promise<void> {
  const exts = await dirExtents(ed, dir);
  const node = isNodeForm(dg, exts);
  const hash = dirHashName(name, dg.ci);
  const at = { file: ed.device.name, inode: dir.ino, structure: "directory leaf" };
  const dat = { ...at, structure: "directory data block" };
  // Equal hashes may continue into the next leafn; follow forw while the hash still matches.
  let { leafBlk } = await descend(ed, dir, dg, exts, hash);
  for (let hops = 0; hops < 1024; hops++) {
    const b = leafBlk.buf.data;
    const m = leafHashMatches(b, dg.v5, hash, at);
    for (const address of m.addresses) {
      const byte = address * 8;
      const db = Math.floor(byte / dg.blksize);
      const off = byte % dg.blksize;
      const blk = await readDataBlk(ed, dir, dg, exts, db);
      const e = dataEntryAt(blk.buf.data, dg, off);
      if (!e || !sameName(e.name, name)) continue;
      const bests = node ? undefined : leafBestsInPlace(b, dg.v5, at);
      const free: FreeEdit = bests ?? nodeFreeInPlace(ed, dir, dg, exts);
      const r = dataRemoveInPlace(blk.buf.data, dg, off, dat);
      if (r.empty) {
        // The data block is empty: unmap and free it (xfs_dir2_shrink_inode); its best goes.
        await freeDirBlock(ed, dir, dg, exts, db * dg.g.dirBlockFsbs);
        await free.set(db, NULL_DATAOFF);
        bests?.trim();
        // The directory size ends with its last data block.
        let last = 0;
        for (const x of exts) if (x.startoff < dg.leafFsb) last = Math.max(last, x.startoff + x.blockcount);
        dir.size = Math.ceil(last / dg.g.dirBlockFsbs) * dg.blksize;
      } else {
        ed.ctx.bufs.dirty(blk.buf, dg.v5 ? DATA_LAYOUT_V5 : {});
        await free.set(db, r.longest);
      }
      if (!leafStaleInPlace(b, dg.v5, hash, address, at))
        throw new XfsFormatError("directory leaf entry vanished", at);
      ed.ctx.bufs.dirty(leafBlk.buf, dg.v5 ? LEAF_LAYOUT_V5 : {});
      let form = node ? "node" : "leaf";
      // A leafn down to a quarter: lay the hash index out again (possibly as one leaf1).
      const h = leafHead(b, dg.v5, at);
      if (node && h.count - h.stale < leafCapacity(dg) / 4) form = await relayoutNode(ed, dir, dg, exts);
      if (form === "leaf") await leafToBlock(ed, dir, dg, exts);
      return;
    }
    if (!node || m.lastHash === undefined || m.lastHash > hash || m.forw === 0) break;
    leafBlk = await readBlk(ed, dir, dg, exts, m.forw);
  }
  throw new XfsFsError("ENOENT", "no such name", path0);
}
