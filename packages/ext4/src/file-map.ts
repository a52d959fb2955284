/**
 * A file's logical→physical map as a flat extent list, read from and written to either an
 * extent tree (ext4) or an ext2/3 block map. Writing rebuilds the tree from the list: extent
 * trees grow in depth as needed (index nodes with checksummed tails), block maps get their
 * single/double/triple indirect blocks. Node blocks are supplied by the caller, who counts them
 * first with `extentNodesNeeded` / `blockMapNodesNeeded` (so ENOSPC is found before anything
 * is written).
 */
import type { BlockStore } from "./block-store.js";
import { setU32, u32 } from "./bytes.js";
import { Ext4FormatError } from "./errors.js";
import {
  EXT_INIT_MAX_LEN,
  EXT_MAX_DEPTH,
  EXTENT_MAGIC,
  encodeExtent,
  encodeExtentHeader,
  encodeExtentIndex,
  extentMaxEntries,
  parseExtent,
  parseExtentHeader,
  parseExtentIndex,
  setExtentBlockChecksum,
} from "./extent.js";
import { I_BLOCK_SIZE } from "./inode.js";

export interface MapExtent {
  lblk: number;
  pblk: number;
  len: number;
  uninit: boolean;
}

export interface FileMap {
  extents: MapExtent[];
  /** Tree nodes / indirect blocks (freed with the file). */
  metaBlocks: number[];
}

const ROOT_MAX = extentMaxEntries(I_BLOCK_SIZE, true);

/** Read the map of an extent-mapped inode (root in `iBlock`). */
export async function readExtentMap(
  store: BlockStore,
  iBlock: Uint8Array,
  ino: number,
  blocksCount = Number.MAX_SAFE_INTEGER,
): Promise<FileMap> {
  const out: FileMap = { extents: [], metaBlocks: [] };
  const walk = async (node: Uint8Array, depth: number, budget: number): Promise<void> => {
    const h = parseExtentHeader(node);
    if (h.magic !== EXTENT_MAGIC || h.depth !== depth || h.entries > h.max)
      throw new Ext4FormatError("bad extent header", { inode: ino, structure: "extent tree" });
    for (let i = 0; i < h.entries; i++) {
      if (depth === 0) {
        const e = parseExtent(node, i);
        if (e.len > 0 && (e.start === 0 || e.start + e.len > blocksCount))
          throw new Ext4FormatError(`extent ${e.start}+${e.len} outside the filesystem`, {
            inode: ino,
            structure: "extent tree",
          });
        if (e.len > 0) out.extents.push({ lblk: e.block, pblk: e.start, len: e.len, uninit: e.uninit });
      } else {
        const idx = parseExtentIndex(node, i);
        if (idx.leaf === 0 || idx.leaf >= blocksCount)
          throw new Ext4FormatError(`extent index block ${idx.leaf} outside the filesystem`, {
            inode: ino,
            structure: "extent tree",
          });
        out.metaBlocks.push(idx.leaf);
        if (out.metaBlocks.length > budget) throw new Ext4FormatError("extent tree loops", { inode: ino });
        await walk(await store.get(idx.leaf), depth - 1, budget);
      }
    }
  };
  const h = parseExtentHeader(iBlock);
  if (h.magic !== EXTENT_MAGIC || h.depth > EXT_MAX_DEPTH)
    throw new Ext4FormatError("bad extent root", { inode: ino, structure: "extent tree" });
  await walk(iBlock, h.depth, 1 << 22);
  return out;
}

/** Read an ext2/3 block map (direct, single, double, triple indirect). */
export async function readBlockMap(
  store: BlockStore,
  iBlock: Uint8Array,
  blockSize: number,
  blocksCount: number,
): Promise<FileMap> {
  const out: FileMap = { extents: [], metaBlocks: [] };
  const per = blockSize / 4;
  const push = (lblk: number, pblk: number) => {
    if (pblk === 0) return;
    if (pblk >= blocksCount) throw new Ext4FormatError(`block pointer ${pblk} out of range`);
    const last = out.extents[out.extents.length - 1];
    if (last && last.lblk + last.len === lblk && last.pblk + last.len === pblk) last.len++;
    else out.extents.push({ lblk, pblk, len: 1, uninit: false });
  };
  for (let i = 0; i < 12; i++) push(i, u32(iBlock, i * 4));
  const walk = async (blk: number, level: number, base: number): Promise<void> => {
    if (blk === 0) return;
    if (blk >= blocksCount) throw new Ext4FormatError(`indirect block ${blk} out of range`);
    out.metaBlocks.push(blk);
    const b = await store.get(blk);
    const span = per ** level;
    for (let i = 0; i < per; i++) {
      const p = u32(b, i * 4);
      if (level === 0) push(base + i, p);
      else await walk(p, level - 1, base + i * span);
    }
  };
  await walk(u32(iBlock, 48), 0, 12);
  await walk(u32(iBlock, 52), 1, 12 + per);
  await walk(u32(iBlock, 56), 2, 12 + per + per * per);
  return out;
}

/** Split extents longer than the on-disk maximum and merge adjacent ones. */
export function normaliseExtents(list: readonly MapExtent[]): MapExtent[] {
  const out: MapExtent[] = [];
  for (const e of list) {
    if (e.len <= 0) continue;
    const last = out[out.length - 1];
    if (
      last &&
      last.uninit === e.uninit &&
      last.lblk + last.len === e.lblk &&
      last.pblk + last.len === e.pblk
    ) {
      last.len += e.len;
    } else out.push({ ...e });
  }
  const res: MapExtent[] = [];
  for (const e of out) {
    const max = e.uninit ? EXT_INIT_MAX_LEN - 1 : EXT_INIT_MAX_LEN;
    for (let off = 0; off < e.len; off += max)
      res.push({ lblk: e.lblk + off, pblk: e.pblk + off, len: Math.min(max, e.len - off), uninit: e.uninit });
  }
  return res;
}

/** Number of tree node blocks for `n` (normalised) extents. */
export function extentNodesNeeded(n: number, blockSize: number): number {
  if (n <= ROOT_MAX) return 0;
  const per = extentMaxEntries(blockSize, false);
  let nodes = Math.ceil(n / per);
  let total = nodes;
  while (nodes > ROOT_MAX) {
    nodes = Math.ceil(nodes / per);
    total += nodes;
  }
  return total;
}

/**
 * Write a depth-0 extent root holding `extents` (at most 4, normalised, sorted) over `root` (an
 * i_block area whose bytes past these entries are zero, e.g. an empty root).
 */
export function writeExtentRoot(root: Uint8Array, extents: readonly MapExtent[], generation = 0): void {
  if (extents.length > ROOT_MAX) throw new Error("extent root: too many extents");
  encodeExtentHeader(root, {
    magic: EXTENT_MAGIC,
    entries: extents.length,
    max: ROOT_MAX,
    depth: 0,
    generation,
  });
  for (let i = 0; i < extents.length; i++) {
    const e = extents[i];
    encodeExtent(root, i, { block: e.lblk, len: e.len, start: e.pblk, uninit: e.uninit });
  }
}

/**
 * Write an extent tree for `extents` (normalised, sorted) using `nodeBlocks` (exactly
 * extentNodesNeeded of them). Returns the new 60-byte root.
 */
export function writeExtentTree(
  store: BlockStore,
  extents: readonly MapExtent[],
  nodeBlocks: readonly number[],
  inodeSeed: number | undefined,
  generation = 0,
): Uint8Array {
  const root = new Uint8Array(I_BLOCK_SIZE);
  if (extents.length <= ROOT_MAX) {
    writeExtentRoot(root, extents, generation);
    return root;
  }
  const bs = store.blockSize;
  const per = extentMaxEntries(bs, false);
  let next = 0;
  const take = () => {
    const b = nodeBlocks[next++];
    if (b === undefined) throw new Error("extent tree: not enough node blocks");
    return b;
  };
  // Leaves.
  let level: { first: number; blk: number }[] = [];
  for (let i = 0; i < extents.length; i += per) {
    const blk = take();
    const b = store.fresh(blk);
    const chunk = extents.slice(i, i + per);
    encodeExtentHeader(b, { magic: EXTENT_MAGIC, entries: chunk.length, max: per, depth: 0, generation });
    chunk.forEach((e, k) => {
      encodeExtent(b, k, { block: e.lblk, len: e.len, start: e.pblk, uninit: e.uninit });
    });
    if (inodeSeed !== undefined) setExtentBlockChecksum(inodeSeed, b);
    level.push({ first: chunk[0].lblk, blk });
  }
  let depth = 1;
  while (level.length > ROOT_MAX) {
    const up: { first: number; blk: number }[] = [];
    for (let i = 0; i < level.length; i += per) {
      const blk = take();
      const b = store.fresh(blk);
      const chunk = level.slice(i, i + per);
      encodeExtentHeader(b, { magic: EXTENT_MAGIC, entries: chunk.length, max: per, depth, generation });
      chunk.forEach((c, k) => {
        encodeExtentIndex(b, k, { block: c.first, leaf: c.blk });
      });
      if (inodeSeed !== undefined) setExtentBlockChecksum(inodeSeed, b);
      up.push({ first: chunk[0].first, blk });
    }
    level = up;
    depth++;
  }
  encodeExtentHeader(root, { magic: EXTENT_MAGIC, entries: level.length, max: ROOT_MAX, depth, generation });
  level.forEach((c, k) => {
    encodeExtentIndex(root, k, { block: c.first, leaf: c.blk });
  });
  return root;
}

/** Which indirect nodes a block map needs for these extents: a list of node keys in build order. */
function blockMapNodeKeys(extents: readonly MapExtent[], blockSize: number): string[] {
  const per = blockSize / 4;
  const keys = new Set<string>();
  const addRange = (lo: number, hi: number) => {
    // [lo, hi) logical blocks
    for (let l = lo; l < hi; ) {
      if (l < 12) {
        l = Math.min(hi, 12);
        continue;
      }
      let r = l - 12;
      if (r < per) {
        keys.add("s");
        l = Math.min(hi, 12 + per);
        continue;
      }
      r -= per;
      if (r < per * per) {
        keys.add("d");
        const i = Math.floor(r / per);
        keys.add(`d${i}`);
        l = Math.min(hi, 12 + per + (i + 1) * per);
        continue;
      }
      r -= per * per;
      if (r >= per * per * per) throw new Ext4FormatError("file too large for a block map");
      keys.add("t");
      const i = Math.floor(r / (per * per));
      const j = Math.floor((r % (per * per)) / per);
      keys.add(`t${i}`);
      keys.add(`t${i}.${j}`);
      l = Math.min(hi, 12 + per + per * per + i * per * per + (j + 1) * per);
    }
  };
  for (const e of extents) addRange(e.lblk, e.lblk + e.len);
  return [...keys];
}

export function blockMapNodesNeeded(extents: readonly MapExtent[], blockSize: number): number {
  return blockMapNodeKeys(extents, blockSize).length;
}

/** Write a block map for `extents` using `nodeBlocks` (blockMapNodesNeeded of them). Returns i_block. */
export function writeBlockMap(
  store: BlockStore,
  extents: readonly MapExtent[],
  nodeBlocks: readonly number[],
): Uint8Array {
  const bs = store.blockSize;
  const per = bs / 4;
  const root = new Uint8Array(I_BLOCK_SIZE);
  const keys = blockMapNodeKeys(extents, bs);
  const nodes = new Map<string, { blk: number; buf: Uint8Array }>();
  keys.forEach((k, i) => {
    const blk = nodeBlocks[i];
    if (blk === undefined) throw new Error("block map: not enough node blocks");
    nodes.set(k, { blk, buf: store.fresh(blk) });
  });
  const node = (k: string) => nodes.get(k) as { blk: number; buf: Uint8Array };
  if (nodes.has("s")) setU32(root, 48, node("s").blk);
  if (nodes.has("d")) setU32(root, 52, node("d").blk);
  if (nodes.has("t")) setU32(root, 56, node("t").blk);
  for (const k of keys) {
    if (/^d\d+$/.test(k)) setU32(node("d").buf, Number(k.slice(1)) * 4, node(k).blk);
    else if (/^t\d+$/.test(k)) setU32(node("t").buf, Number(k.slice(1)) * 4, node(k).blk);
    else if (/^t\d+\.\d+$/.test(k)) {
      const [i, j] = k.slice(1).split(".").map(Number);
      setU32(node(`t${i}`).buf, j * 4, node(k).blk);
    }
  }
  for (const e of extents) {
    for (let k = 0; k < e.len; k++) {
      const l = e.lblk + k;
      const p = e.pblk + k;
      if (l < 12) {
        setU32(root, l * 4, p);
        continue;
      }
      let r = l - 12;
      if (r < per) {
        setU32(node("s").buf, r * 4, p);
        continue;
      }
      r -= per;
      if (r < per * per) {
        setU32(node(`d${Math.floor(r / per)}`).buf, (r % per) * 4, p);
        continue;
      }
      r -= per * per;
      const i = Math.floor(r / (per * per));
      const j = Math.floor((r % (per * per)) / per);
      setU32(node(`t${i}.${j}`).buf, (r % per) * 4, p);
    }
  }
  return root;
}
