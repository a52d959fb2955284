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
import { daFixHashPath } from "./da-btree-write.js";
import { asciiCiEqual, dirHashName } from "./dir2-hash.js";
import {
  DIR2_LEAF1_MAGIC,
  DIR3_LEAF1_MAGIC,
  type DirLeaf,
  decodeDirLeaf,
  leafFits,
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
import {
  type DirEntryW,
  type DirGeo,
  layoutFits,
  place,
  sameName,
  writeDirDataBlock,
} from "./dir2-write-data.js";
import {
  descend,
  type FreeView,
  leafCapacity,
  leafFreeView,
  leafToNode,
  nodeFreeView,
  relayoutNode,
  splitLeafn,
} from "./dir2-write-node.js";
import type { XfsEditor } from "./editor.js";
import { XfsFormatError, XfsFsError } from "./errors.js";
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

/** Adds a name to a leaf- or node-form directory. */
export async function leafAddName(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  entry: DirEntryW,
  path0: string,
): Promise<void> {
  const exts = await dirExtents(ed, dir);
  const hash = dirHashName(entry.name, dg.ci);
  let node = isNodeForm(dg, exts);
  let { path, leafBlk, host } = await descend(ed, dir, dg, exts, hash);
  let leaf = decodeDirLeaf(leafBlk.buf.data, dg.v5, { inode: dir.ino, structure: "directory leaf" });
  if (await hasName(ed, dir, dg, exts, leaf, hash, entry.name))
    throw new XfsFsError("EEXIST", "name exists", path0);
  if (!node && leaf.bests === undefined)
    throw new XfsFormatError("leafn without free blocks", { inode: dir.ino });
  if (!node) {
    // Keep room for one more entry and one more best; else move to node form first.
    if (!leafFits(dg.blksize, dg.v5, leaf.ents.length - leaf.stale + 1, (leaf.bests?.length ?? 0) + 1)) {
      dropStale(leaf);
      await leafToNode(ed, dir, dg, exts, leafBlk, leaf);
      node = true;
      ({ path, leafBlk, host } = await descend(ed, dir, dg, exts, hash));
      leaf = decodeDirLeaf(leafBlk.buf.data, dg.v5, { inode: dir.ino, structure: "directory leaf" });
    }
  }
  const free: FreeView = node ? await nodeFreeView(ed, dir, dg, exts) : leafFreeView(leaf);
  const size = dg.entsize(entry.name.length);
  // A data block with room, else a new one at the first unused data block number.
  let db = free.find(size);
  let best: number;
  if (db >= 0) {
    const { blk, entries } = await readData(ed, dir, dg, exts, db);
    if (!place(entries, entry, dg, "data"))
      throw new XfsFormatError("directory bests disagree with the data block", { inode: dir.ino });
    best = await writeDirDataBlock(ed, dir, dg, blk.fsb, [...entries, entry], false, "data");
  } else {
    db = free.firstUnused();
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
  const full = node && leaf.ents.length > dg.leafMax;
  if (full || !leafFits(dg.blksize, dg.v5, leaf.ents.length, leaf.bests?.length)) {
    await splitLeafn(ed, dir, dg, exts, path, leafBlk, leaf);
    return;
  }
  writeLeaf(ed, dg, dir, leafBlk, leaf);
  if (path.length) daFixHashPath(host, path, leaf.ents[leaf.ents.length - 1].hashval);
}

/**
 * Is `name` (hash `hash`) in the directory? Looks at the data entries the leaf's equal hashes
 * point at, following the leafn chain while the hash continues (ASCII-ci: equal ignoring case).
 */
async function hasName(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
  first: DirLeaf,
  hash: number,
  name: Uint8Array,
): Promise<boolean> {
  let leaf = first;
  for (let hops = 0; hops < 1024; hops++) {
    for (const ent of leaf.ents) {
      if (ent.hashval !== hash || ent.address === NULL_DATAPTR) continue;
      const byte = ent.address * 8;
      const { entries } = await readData(ed, dir, dg, exts, Math.floor(byte / dg.blksize));
      const e = entries.find((x) => x.offset === byte % dg.blksize);
      if (e && (sameName(e.name, name) || (dg.ci && asciiCiEqual(e.name, name)))) return true;
    }
    const last = leaf.ents[leaf.ents.length - 1];
    if (!last || last.hashval > hash || leaf.forw === 0) return false;
    const blk = await readBlk(ed, dir, dg, exts, leaf.forw);
    leaf = decodeDirLeaf(blk.buf.data, dg.v5, { inode: dir.ino, structure: "directory leaf" });
  }
  throw new XfsFormatError("directory leaf chain too long", { inode: dir.ino });
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
  const node = isNodeForm(dg, exts);
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
      const free: FreeView = node ? await nodeFreeView(ed, dir, dg, exts) : leafFreeView(leaf);
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
      let form = node ? "node" : "leaf";
      // A leafn down to a quarter: lay the hash index out again (possibly as one leaf1).
      if (node && leaf.ents.length - countStale(leaf) < leafCapacity(dg) / 4)
        form = await relayoutNode(ed, dir, dg, exts);
      if (form === "leaf") await leafToBlock(ed, dir, dg, exts);
      return;
    }
    const last = leaf.ents[leaf.ents.length - 1];
    if (!node || !last || last.hashval > hash || leaf.forw === 0) break;
    leafBlk = await readBlk(ed, dir, dg, exts, leaf.forw);
  }
  throw new XfsFsError("ENOENT", "no such name", path0);
}
