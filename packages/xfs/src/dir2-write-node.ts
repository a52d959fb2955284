/**
 * Node-form directories (xfs_dir2_node.c): the hash index as a dabtree of leafn blocks in the
 * leaf section, and the free index (xfs_dir2_free blocks) in the free section.
 *
 * - Descent from the dabtree root (the leaf section's first block) to the leafn for a hash.
 * - A leafn that overflows splits in two (xfs_dir2_leafn_split); the new leafn goes into the
 *   parent node through the shared dabtree code (da-btree-write.ts), which splits nodes up to the
 *   root as needed.
 * - Free index: block k (at the free section's k-th directory block) holds the longest free
 *   region of data blocks k·n … k·n+n−1, n = (block size − header) / 2. A data block beyond the
 *   last free block's range gets a new free block; a free block whose entries all became unused
 *   is unmapped and freed (as xfs_dir2_data_block_free does).
 * - Shrinking: once a leafn is down to a quarter of its capacity, the whole hash index is laid
 *   out again from its live entries — a leaf1 block with the bests table when everything fits
 *   one block (node → leaf, as xfs_dir2_node_to_leaf; the free blocks go), else leafn blocks
 *   filled to three quarters under a new dabtree (the blocks freed by the packing are unmapped).
 *   The kernel gets there by joining siblings one removal at a time (xfs_da3_join); the result is
 *   the same kind of tree with fewer, fuller blocks.
 */
import { be16, be32, setBe16, setBe32, setBe64 } from "./bytes.js";
import {
  type DaBlock,
  type DaHost,
  type DaPathStep,
  daAddSibling,
  daBuild,
  isDaNode,
  readDaNode,
} from "./da-btree-write.js";
import {
  DIR2_FREE_MAGIC,
  DIR2_LEAF1_MAGIC,
  DIR2_LEAFN_MAGIC,
  DIR3_FREE_MAGIC,
  DIR3_LEAF1_MAGIC,
  DIR3_LEAFN_MAGIC,
  type DirLeaf,
  decodeDirFree,
  decodeDirLeaf,
  encodeDirFree,
  freeHeaderSize,
  type LeafEntry,
  leafFits,
  leafHeaderSize,
  NULL_DATAOFF,
  NULL_DATAPTR,
} from "./dir2-leaf.js";
import {
  type Blk,
  extentAfter,
  freeDirBlock,
  mapDirBlock,
  newDirBlock,
  readBlk,
  stampDa3,
  writeLeaf,
} from "./dir2-write-blocks.js";
import type { DirGeo } from "./dir2-write-data.js";
import type { XfsEditor } from "./editor.js";
import { XfsFormatError, XfsFsError } from "./errors.js";
import type { XfsExtent } from "./fork.js";
import type { XfsInode } from "./inode.js";

const DA_LAYOUT_V5 = { crcOffset: 12, lsnOffset: 24 };

/** First unmapped directory block in the leaf section (xfs_da_grow_inode on the leaf space). */
export function firstUnusedLeafBlock(ed: XfsEditor, dir: XfsInode, dg: DirGeo, exts: XfsExtent[]): number {
  for (let f = dg.leafFsb; f < dg.freeFsb; f += dg.g.dirBlockFsbs)
    if (mapDirBlock(ed, dir, dg, exts, f) < 0) return f;
  throw new XfsFsError("ENOSPC", "directory leaf section full", `<inode ${dir.ino}>`);
}

/**
 * The directory's dabtree as the shared code sees it. New blocks come from `reuse` first (blocks
 * already mapped in the leaf section, during a relayout), else are allocated at the first
 * unused leaf-section block.
 */
export function dirDaHost(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
  reuse: Blk[] = [],
): DaHost {
  return {
    v5: dg.v5,
    nodeMax: dg.nodeMax,
    at: { file: ed.device.name, inode: dir.ino, structure: "directory dabtree node" },
    read: (fblock) => readBlk(ed, dir, dg, exts, fblock),
    fresh: async () => {
      const old = reuse.shift();
      if (old)
        return {
          buf: ed.ctx.bufs.fresh(old.buf.offset, dg.blksize, "directory leaf"),
          fsb: old.fsb,
          fblock: old.fblock,
        };
      const fblock = firstUnusedLeafBlock(ed, dir, dg, exts);
      const fsb = await newDirBlock(ed, dir, dg, exts, fblock);
      return { buf: ed.ctx.bufs.fresh(dg.g.fsbToByte(fsb), dg.blksize, "directory leaf"), fsb, fblock };
    },
    written: (blk: DaBlock) => {
      stampDa3(blk.buf.data, dg, dir, blk.fsb);
      ed.ctx.bufs.dirty(blk.buf, dg.v5 ? DA_LAYOUT_V5 : {});
    },
  };
}

/** Descends the dabtree from the leaf section's first block to the leaf that should hold `hash`. */
export async function descend(ed: XfsEditor, dir: XfsInode, dg: DirGeo, exts: XfsExtent[], hash: number) {
  const host = dirDaHost(ed, dir, dg, exts);
  const path: DaPathStep[] = [];
  let blk = await readBlk(ed, dir, dg, exts, dg.leafFsb);
  for (let depth = 0; isDaNode(blk.buf.data); depth++) {
    if (depth > 5) throw new XfsFormatError("directory dabtree too deep", { inode: dir.ino });
    const node = readDaNode(host, blk);
    let idx = node.entries.findIndex((e) => e.hashval >= hash);
    if (idx < 0) idx = node.entries.length - 1;
    path.push({ blk, idx });
    blk = await readBlk(ed, dir, dg, exts, node.entries[idx].before);
  }
  return { path, leafBlk: blk, host };
}

/**
 * Splits an over-full leafn in two (xfs_dir2_leafn_split): the upper half moves to a new leafn
 * linked after it, and the parent dabtree node gets an entry for it. A leafn that is the root
 * (node form with a single leaf) is first split into two new blocks under a new level-1 root.
 */
export async function splitLeafn(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
  path: DaPathStep[],
  blk: Blk,
  leaf: DirLeaf,
): Promise<void> {
  const host = dirDaHost(ed, dir, dg, exts);
  const ents = leaf.ents;
  const mid = ents.length >> 1;
  const lo = ents.slice(0, mid);
  const hi = ents.slice(mid);
  const lastOf = (x: LeafEntry[]) => x[x.length - 1].hashval;
  const leafn = dg.v5 ? DIR3_LEAFN_MAGIC : DIR2_LEAFN_MAGIC;
  if (path.length === 0) {
    // The root stays at the start of the leaf section: it becomes a node over two new leaves.
    const a = await host.fresh();
    const b = await host.fresh();
    writeLeaf(ed, dg, dir, a, { magic: leafn, forw: b.fblock, back: 0, ents: lo, stale: 0 });
    writeLeaf(ed, dg, dir, b, { magic: leafn, forw: 0, back: a.fblock, ents: hi, stale: 0 });
    await daBuild(
      host,
      [
        { hashval: lastOf(lo), before: a.fblock },
        { hashval: lastOf(hi), before: b.fblock },
      ],
      blk,
      dg.nodeMax,
    );
    return;
  }
  const nb = await host.fresh();
  const oldForw = leaf.forw;
  writeLeaf(ed, dg, dir, nb, { magic: leafn, forw: oldForw, back: blk.fblock, ents: hi, stale: 0 });
  writeLeaf(ed, dg, dir, blk, { magic: leafn, forw: nb.fblock, back: leaf.back, ents: lo, stale: 0 });
  if (oldForw !== 0) {
    const next = await readBlk(ed, dir, dg, exts, oldForw);
    setBe32(next.buf.data, 4, nb.fblock);
    host.written(next);
  }
  await daAddSibling(host, path, lastOf(lo), lastOf(hi), nb.fblock);
}

// ---------------------------------------------------------------- the free index

export interface FreeView {
  /** Longest free region of data block db (NULL_DATAOFF: no block). */
  get(db: number): number;
  set(db: number, v: number): Promise<void>;
  /** One past the last data block known. */
  count(): number;
  /** The first data block whose longest free region is at least `size`, or -1. */
  find(size: number): number;
  /** The first data block number not in use. */
  firstUnused(): number;
}

function bestsView(bests: number[]): Pick<FreeView, "find" | "firstUnused"> {
  return {
    find: (size) => {
      for (let i = 0; i < bests.length; i++) if (bests[i] !== NULL_DATAOFF && bests[i] >= size) return i;
      return -1;
    },
    firstUnused: () => {
      const i = bests.indexOf(NULL_DATAOFF);
      return i < 0 ? bests.length : i;
    },
  };
}

/**
 * The free index read and written in place for one name add or remove: `find` and `firstUnused`
 * scan the free blocks' bytes, `set` changes one best (with the block's nvalid and nused) where
 * the block stays; a new free block or an emptied one goes through the decoded view.
 */
export interface FreeEdit {
  /** The first data block whose longest free region is at least `size`, or -1. */
  find(size: number): Promise<number> | number;
  /** The first data block number not in use. */
  firstUnused(): Promise<number> | number;
  set(db: number, v: number): Promise<void>;
}

export function nodeFreeInPlace(ed: XfsEditor, dir: XfsInode, dg: DirGeo, exts: XfsExtent[]): FreeEdit {
  const per = freeBestsPerBlock(dg);
  const fpb = dg.g.dirBlockFsbs;
  const hdr = freeHeaderSize(dg.v5);
  const o = dg.v5 ? 48 : 4;
  const at = { file: ed.device.name, inode: dir.ino, structure: "directory free block" };
  /** Free blocks in order: k and the block, header checked. */
  async function* blocks(): AsyncGenerator<{ k: number; blk: Blk; nvalid: number }> {
    for (let x = extentAfter(exts, dg.freeFsb); x < exts.length; x++) {
      const e = exts[x];
      const end = e.startoff + e.blockcount;
      for (let f = Math.max(e.startoff, dg.freeFsb); f < end; f++) {
        if ((f - dg.freeFsb) % fpb !== 0) continue;
        const k = (f - dg.freeFsb) / fpb;
        const blk = await readBlk(ed, dir, dg, exts, f);
        const b = blk.buf.data;
        if (be32(b, 0) !== (dg.v5 ? DIR3_FREE_MAGIC : DIR2_FREE_MAGIC))
          throw new XfsFormatError("bad directory free block magic", at);
        const nvalid = be32(b, o + 4);
        if (be32(b, o) !== k * per || nvalid > per || hdr + nvalid * 2 > b.length)
          throw new XfsFormatError("directory free block out of place", at);
        yield { k, blk, nvalid };
      }
    }
  }
  return {
    set: async (db, v) => {
      const k = Math.floor(db / per);
      const idx = db - k * per;
      for await (const { k: bk, blk, nvalid } of blocks()) {
        if (bk < k) continue;
        if (bk > k) break;
        const b = blk.buf.data;
        const old = idx < nvalid ? be16(b, hdr + idx * 2) : NULL_DATAOFF;
        const used = be32(b, o + 8) - (old !== NULL_DATAOFF ? 1 : 0) + (v !== NULL_DATAOFF ? 1 : 0);
        if (used <= 0) break; // the block empties: the decoded view frees it
        let n = nvalid;
        for (; n <= idx; n++) setBe16(b, hdr + n * 2, NULL_DATAOFF);
        setBe16(b, hdr + idx * 2, v);
        while (n > 0 && be16(b, hdr + (n - 1) * 2) === NULL_DATAOFF) n--;
        b.fill(0, hdr + n * 2, hdr + Math.max(nvalid, n) * 2);
        setBe32(b, o + 4, n);
        setBe32(b, o + 8, used);
        ed.ctx.bufs.dirty(blk.buf, dg.v5 ? { crcOffset: 4, lsnOffset: 16 } : {});
        return;
      }
      await (await nodeFreeView(ed, dir, dg, exts)).set(db, v);
    },
    find: async (size: number) => {
      for await (const { k, blk, nvalid } of blocks()) {
        const b = blk.buf.data;
        for (let i = 0; i < nvalid; i++) {
          const v = be16(b, hdr + i * 2);
          if (v !== NULL_DATAOFF && v >= size) return k * per + i;
        }
      }
      return -1;
    },
    firstUnused: async () => {
      let next = 0;
      for await (const { k, blk, nvalid } of blocks()) {
        if (k !== next) return next * per;
        const b = blk.buf.data;
        for (let i = 0; i < nvalid; i++) if (be16(b, hdr + i * 2) === NULL_DATAOFF) return k * per + i;
        if (nvalid < per) return k * per + nvalid;
        next = k + 1;
      }
      return next * per;
    },
  };
}

/** Bests per free-index block (xfs_dir3_free_max_bests). */
export function freeBestsPerBlock(dg: DirGeo): number {
  return Math.floor((dg.blksize - freeHeaderSize(dg.v5)) / 2);
}

function writeFree(
  ed: XfsEditor,
  dg: DirGeo,
  dir: XfsInode,
  blk: Blk,
  firstdb: number,
  bests: number[],
): void {
  encodeDirFree(blk.buf.data, dg.v5, { firstdb, bests });
  if (dg.v5) {
    setBe64(blk.buf.data, 8, dg.g.fsbToDaddr(blk.fsb));
    blk.buf.data.set(dg.g.metaUuid.subarray(0, 16), 24);
    setBe64(blk.buf.data, 40, dir.ino);
  }
  ed.ctx.bufs.dirty(blk.buf, dg.v5 ? { crcOffset: 4, lsnOffset: 16 } : {});
}

/** The free-index blocks of a node directory, as one bests array. */
export async function nodeFreeView(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
): Promise<FreeView> {
  const per = freeBestsPerBlock(dg);
  const fpb = dg.g.dirBlockFsbs;
  const blocks = new Map<number, Blk>();
  // All bests, block k's at k·per (unused slots NULL_DATAOFF).
  const bests: number[] = [];
  for (let x = extentAfter(exts, dg.freeFsb); x < exts.length; x++) {
    const e = exts[x];
    const end = e.startoff + e.blockcount;
    for (let f = Math.max(e.startoff, dg.freeFsb); f < end; f++) {
      if ((f - dg.freeFsb) % fpb !== 0) continue;
      const k = (f - dg.freeFsb) / fpb;
      if (k * per > 2 ** 32 / dg.blksize)
        throw new XfsFormatError("directory free block beyond the data section", { inode: dir.ino });
      const blk = await readBlk(ed, dir, dg, exts, f);
      const free = decodeDirFree(blk.buf.data, dg.v5, { inode: dir.ino, structure: "directory free block" });
      if (free.firstdb !== k * per || free.bests.length > per)
        throw new XfsFormatError("directory free block out of place", { inode: dir.ino });
      blocks.set(k, blk);
      while (bests.length < k * per + free.bests.length) bests.push(NULL_DATAOFF);
      free.bests.forEach((v, i) => {
        bests[k * per + i] = v;
      });
    }
  }
  const trim = () => {
    while (bests.length && bests[bests.length - 1] === NULL_DATAOFF) bests.pop();
  };
  trim();
  return {
    get: (db) => (db < bests.length ? bests[db] : NULL_DATAOFF),
    set: async (db, v) => {
      const k = Math.floor(db / per);
      while (bests.length <= db) bests.push(NULL_DATAOFF);
      bests[db] = v;
      trim();
      const mine = bests.slice(k * per, Math.min(bests.length, (k + 1) * per));
      while (mine.length && mine[mine.length - 1] === NULL_DATAOFF) mine.pop();
      let blk = blocks.get(k);
      if (mine.length === 0) {
        // Nothing left in its range: the free block goes (xfs_dir2_data_block_free).
        if (blk) {
          await freeDirBlock(ed, dir, dg, exts, dg.freeFsb + k * fpb);
          blocks.delete(k);
        }
        return;
      }
      if (!blk) {
        // A data block past the last free block's range: a new free block (xfs_dir2_node_addname_int).
        const fsb = await newDirBlock(ed, dir, dg, exts, dg.freeFsb + k * fpb);
        blk = {
          buf: ed.ctx.bufs.fresh(dg.g.fsbToByte(fsb), dg.blksize, "directory free block"),
          fsb,
          fblock: dg.freeFsb + k * fpb,
        };
        blocks.set(k, blk);
      }
      writeFree(ed, dg, dir, blk, k * per, mine);
    },
    count: () => bests.length,
    ...bestsView(bests),
  };
}

/** Moves a leaf1's bests into a new free-index block and makes the leaf a leafn (xfs_dir2_leaf_to_node). */
export async function leafToNode(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
  blk: Blk,
  leaf: DirLeaf,
): Promise<void> {
  const bests = [...(leaf.bests ?? [])];
  while (bests.length && bests[bests.length - 1] === NULL_DATAOFF) bests.pop();
  const per = freeBestsPerBlock(dg);
  for (let k = 0; k * per < bests.length; k++) {
    const fblock = dg.freeFsb + k * dg.g.dirBlockFsbs;
    const fsb = await newDirBlock(ed, dir, dg, exts, fblock);
    const buf = ed.ctx.bufs.fresh(dg.g.fsbToByte(fsb), dg.blksize, "directory free block");
    const mine = bests.slice(k * per, (k + 1) * per);
    while (mine.length && mine[mine.length - 1] === NULL_DATAOFF) mine.pop();
    writeFree(ed, dg, dir, { buf, fsb, fblock }, k * per, mine);
  }
  leaf.magic = dg.v5 ? DIR3_LEAFN_MAGIC : DIR2_LEAFN_MAGIC;
  leaf.bests = undefined;
  writeLeaf(ed, dg, dir, blk, leaf);
}

// ---------------------------------------------------------------- shrinking

/** Leaf entries a leafn block holds (or fewer, for a writer made for tests). */
export function leafCapacity(dg: DirGeo): number {
  return Math.min(dg.leafMax, Math.floor((dg.blksize - leafHeaderSize(dg.v5)) / 8));
}

/**
 * Lays the hash index of a node directory out again from its live entries (see the file
 * comment): leaf form when one leaf1 holds them with the bests, else packed leafn blocks under a
 * new dabtree. Returns the new form.
 */
export async function relayoutNode(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  exts: XfsExtent[],
): Promise<"leaf" | "node"> {
  const fpb = dg.g.dirBlockFsbs;
  const at = { inode: dir.ino, structure: "directory leaf" };
  // Every block of the leaf section, the root first.
  const blks: Blk[] = [];
  for (const e of exts) {
    const end = Math.min(e.startoff + e.blockcount, dg.freeFsb);
    for (let f = Math.max(e.startoff, dg.leafFsb); f < end; f++)
      if ((f - dg.leafFsb) % fpb === 0) blks.push(await readBlk(ed, dir, dg, exts, f));
  }
  blks.sort((a, b) => a.fblock - b.fblock);
  if (blks[0]?.fblock !== dg.leafFsb) throw new XfsFormatError("node directory without a dabtree root", at);
  const live: LeafEntry[] = [];
  for (const b of blks) {
    if (isDaNode(b.buf.data)) continue;
    const leaf = decodeDirLeaf(b.buf.data, dg.v5, at);
    for (const e of leaf.ents) if (e.address !== NULL_DATAPTR) live.push(e);
  }
  live.sort((a, b) => a.hashval - b.hashval || a.address - b.address);
  const free = await nodeFreeView(ed, dir, dg, exts);
  const root = blks[0];
  const rest = blks.slice(1);
  const done = async (keep: number) => {
    for (const b of rest.slice(keep)) await freeDirBlock(ed, dir, dg, exts, b.fblock);
  };
  const nbests = free.count();
  if (leafFits(dg.blksize, dg.v5, live.length, nbests)) {
    // xfs_dir2_node_to_leaf: one leaf1 with the bests; the free index goes.
    const bests: number[] = [];
    for (let db = 0; db < nbests; db++) bests.push(free.get(db));
    const leaf: DirLeaf = {
      magic: dg.v5 ? DIR3_LEAF1_MAGIC : DIR2_LEAF1_MAGIC,
      forw: 0,
      back: 0,
      ents: live,
      stale: 0,
      bests,
    };
    await done(0);
    for (const e of [...exts])
      for (let f = Math.max(e.startoff, dg.freeFsb); f < e.startoff + e.blockcount; f += fpb)
        await freeDirBlock(ed, dir, dg, exts, f);
    const fresh = { ...root, buf: ed.ctx.bufs.fresh(root.buf.offset, dg.blksize, "directory leaf") };
    writeLeaf(ed, dg, dir, fresh, leaf);
    return "leaf";
  }
  const cap = leafCapacity(dg);
  const leafn = dg.v5 ? DIR3_LEAFN_MAGIC : DIR2_LEAFN_MAGIC;
  if (live.length <= cap) {
    // One leafn: it is the root itself.
    await done(0);
    const fresh = { ...root, buf: ed.ctx.bufs.fresh(root.buf.offset, dg.blksize, "directory leaf") };
    writeLeaf(ed, dg, dir, fresh, { magic: leafn, forw: 0, back: 0, ents: live, stale: 0 });
    return "node";
  }
  const fill = Math.max(1, Math.floor((cap * 3) / 4));
  const groups: LeafEntry[][] = [];
  for (let i = 0; i < live.length; i += fill) groups.push(live.slice(i, i + fill));
  const pool = [...rest];
  const host = dirDaHost(ed, dir, dg, exts, pool);
  const leaves: Blk[] = [];
  for (let i = 0; i < groups.length; i++) leaves.push(await host.fresh());
  groups.forEach((ents, i) => {
    writeLeaf(ed, dg, dir, leaves[i], {
      magic: leafn,
      forw: i + 1 < leaves.length ? leaves[i + 1].fblock : 0,
      back: i > 0 ? leaves[i - 1].fblock : 0,
      ents,
      stale: 0,
    });
  });
  const rootFresh = { ...root, buf: ed.ctx.bufs.fresh(root.buf.offset, dg.blksize, "directory node") };
  await daBuild(
    host,
    groups.map((ents, i) => ({ hashval: ents[ents.length - 1].hashval, before: leaves[i].fblock })),
    rootFresh,
    Math.max(2, Math.floor((dg.nodeMax * 3) / 4)),
  );
  // What the pool did not hand out is no longer used.
  for (const b of pool) await freeDirBlock(ed, dir, dg, exts, b.fblock);
  return "node";
}
