/**
 * Changing a dabtree (the hash index of node directories and of node-form attribute forks), as
 * libxfs xfs_da_btree.c does, for any owner: the caller says how to read a block by its fork
 * block number, how to get a new block in the tree's space and how to stamp a changed one.
 *
 * - A child that split adds its new right sibling to the parent node; a parent that overflows
 *   splits in turn (xfs_da3_node_split: the upper half moves to a new node linked after it), up to
 *   the root, which stays where it is (directories find it at the leaf section's first block,
 *   attribute forks at block 0): its entries move to two new nodes and it becomes their parent one
 *   level up (xfs_da3_root_split).
 * - Each node entry's hash is the last (largest) hash in its subtree (xfs_da3_fixhashpath).
 * - `daBuild` lays a whole tree out over a list of leaves, bottom up, every node filled to
 *   `fill` of its capacity, siblings linked at every level.
 *
 * Node layout (see da-btree.ts): blkinfo (forw, back, magic; v5 crc, blkno, lsn, uuid, owner),
 * | count be16 | level be16 | (v5 pad be32) |, then `count` × | hashval be32 | before be32 |.
 */
import type { MetaBuf } from "./buf.js";
import { be16, be32, setBe16, setBe32 } from "./bytes.js";
import { DA_NODE_MAGIC, DA_NODE_MAXDEPTH, DA3_NODE_MAGIC, decodeDaNode } from "./da-btree.js";
import { XfsFsError, type XfsLocation } from "./errors.js";

export interface DaBlock {
  buf: MetaBuf;
  fsb: number;
  /** The block's number in the fork (what node entries and sibling links hold). */
  fblock: number;
}

export interface DaEntry {
  hashval: number;
  before: number;
}

export interface DaNodeW {
  forw: number;
  back: number;
  level: number;
  entries: DaEntry[];
}

/** What the tree operations need from the fork that owns the tree. */
export interface DaHost {
  v5: boolean;
  /** Entries a node may hold: (block size − header) / 8, or less (tests build deep trees). */
  nodeMax: number;
  read(fblock: number): Promise<DaBlock>;
  /** A new, zeroed block in the tree's space. */
  fresh(): Promise<DaBlock>;
  /** Stamps the v5 self-description (blkno, uuid, owner) and marks the buffer changed. */
  written(blk: DaBlock): void;
  at: XfsLocation;
}

/** One step of a root-to-leaf descent: the node and the entry taken. */
export interface DaPathStep {
  blk: DaBlock;
  idx: number;
}

export function daNodeHeaderSize(v5: boolean): number {
  return v5 ? 64 : 16;
}

/** Most entries a node block of `blksize` bytes holds (xfs_da_geometry node_ents). */
export function daNodeEntries(blksize: number, v5: boolean): number {
  return Math.floor((blksize - daNodeHeaderSize(v5)) / 8);
}

export function isDaNode(b: Uint8Array): boolean {
  const magic = be16(b, 8);
  return magic === DA_NODE_MAGIC || magic === DA3_NODE_MAGIC;
}

export function readDaNode(host: DaHost, blk: DaBlock): DaNodeW {
  const b = blk.buf.data;
  const n = decodeDaNode(b, host.v5, host.at);
  return { forw: be32(b, 0), back: be32(b, 4), level: n.level, entries: n.entries };
}

export function writeDaNode(host: DaHost, blk: DaBlock, node: DaNodeW): void {
  const b = blk.buf.data;
  const hdr = daNodeHeaderSize(host.v5);
  b.fill(0);
  setBe32(b, 0, node.forw);
  setBe32(b, 4, node.back);
  setBe16(b, 8, host.v5 ? DA3_NODE_MAGIC : DA_NODE_MAGIC);
  setBe16(b, host.v5 ? 56 : 12, node.entries.length);
  setBe16(b, host.v5 ? 58 : 14, node.level);
  node.entries.forEach((e, i) => {
    setBe32(b, hdr + i * 8, e.hashval);
    setBe32(b, hdr + i * 8 + 4, e.before);
  });
  host.written(blk);
}

const lastHash = (ents: DaEntry[]): number => ents[ents.length - 1].hashval;

/**
 * Sets the hash of the entries on `path` that lead to a subtree whose last hash is now
 * `hash`, from the bottom up, stopping where the entry is not its node's last (above it nothing
 * changes).
 */
export function daFixHashPath(host: DaHost, path: DaPathStep[], hash: number): void {
  for (let i = path.length - 1; i >= 0; i--) {
    const step = path[i];
    const b = step.blk.buf.data;
    const off = daNodeHeaderSize(host.v5) + step.idx * 8;
    const count = be16(b, host.v5 ? 56 : 12);
    if (be32(b, off) === hash) return;
    setBe32(b, off, hash);
    host.written(step.blk);
    if (step.idx !== count - 1) return;
  }
}

/** Fails before a root split would make the tree deeper than the format allows. */
function checkDepth(host: DaHost, level: number): void {
  if (level + 1 >= DA_NODE_MAXDEPTH)
    throw new XfsFsError(
      "ENOSPC",
      `dabtree would need more than ${DA_NODE_MAXDEPTH} levels`,
      `<inode ${host.at.inode ?? "?"}>`,
    );
}

/**
 * The child at `path[path.length-1].idx` has split: it keeps the hashes up to `loHash`, and a
 * new block `newBefore` linked after it holds the rest, up to `hiHash`. The parent gets an entry
 * for it; nodes that overflow split, up to the root.
 */
export async function daAddSibling(
  host: DaHost,
  path: DaPathStep[],
  loHash: number,
  hiHash: number,
  newBefore: number,
): Promise<void> {
  let lo = loHash;
  let hi = hiHash;
  let nb = newBefore;
  for (let d = path.length - 1; d >= 0; d--) {
    const step = path[d];
    const node = readDaNode(host, step.blk);
    const oldLast = lastHash(node.entries);
    node.entries[step.idx].hashval = lo;
    node.entries.splice(step.idx + 1, 0, { hashval: hi, before: nb });
    if (node.entries.length <= host.nodeMax) {
      writeDaNode(host, step.blk, node);
      const newLast = lastHash(node.entries);
      if (newLast !== oldLast) daFixHashPath(host, path.slice(0, d), newLast);
      return;
    }
    const mid = node.entries.length >> 1;
    const loE = node.entries.slice(0, mid);
    const hiE = node.entries.slice(mid);
    if (d === 0) {
      // xfs_da3_root_split: the root keeps its block and becomes the parent of two new nodes.
      checkDepth(host, node.level);
      const a = await host.fresh();
      const b = await host.fresh();
      writeDaNode(host, a, { forw: b.fblock, back: 0, level: node.level, entries: loE });
      writeDaNode(host, b, { forw: 0, back: a.fblock, level: node.level, entries: hiE });
      writeDaNode(host, step.blk, {
        forw: 0,
        back: 0,
        level: node.level + 1,
        entries: [
          { hashval: lastHash(loE), before: a.fblock },
          { hashval: lastHash(hiE), before: b.fblock },
        ],
      });
      return;
    }
    // xfs_da3_node_split: the upper half moves to a new node linked after this one.
    const right = await host.fresh();
    writeDaNode(host, right, { forw: node.forw, back: step.blk.fblock, level: node.level, entries: hiE });
    writeDaNode(host, step.blk, { forw: right.fblock, back: node.back, level: node.level, entries: loE });
    if (node.forw !== 0) {
      const next = await host.read(node.forw);
      setBe32(next.buf.data, 4, right.fblock);
      host.written(next);
    }
    lo = lastHash(loE);
    hi = lastHash(hiE);
    nb = right.fblock;
  }
}

/**
 * Lays out the nodes over `children` (the leaves, in hash order, each with its last hash),
 * bottom up: each level's nodes filled to `fill` entries, linked forw/back; the root goes into
 * `root`. `fresh` blocks come from the host. With one child there are no nodes: the caller keeps
 * that child as the root itself.
 */
export async function daBuild(host: DaHost, children: DaEntry[], root: DaBlock, fill: number): Promise<void> {
  const per = Math.max(2, Math.min(fill, host.nodeMax));
  let level = 1;
  let row = children;
  while (row.length > host.nodeMax) {
    checkDepth(host, level);
    const groups: DaEntry[][] = [];
    for (let i = 0; i < row.length; i += per) groups.push(row.slice(i, i + per));
    // A last group of one would leave a node with a single entry: borrow from its neighbour.
    if (groups.length > 1 && groups[groups.length - 1].length === 1) {
      const prev = groups[groups.length - 2];
      groups[groups.length - 1].unshift(prev.pop() as DaEntry);
    }
    const blks: DaBlock[] = [];
    for (let i = 0; i < groups.length; i++) blks.push(await host.fresh());
    groups.forEach((ents, i) => {
      writeDaNode(host, blks[i], {
        forw: i + 1 < blks.length ? blks[i + 1].fblock : 0,
        back: i > 0 ? blks[i - 1].fblock : 0,
        level,
        entries: ents,
      });
    });
    row = groups.map((ents, i) => ({ hashval: lastHash(ents), before: blks[i].fblock }));
    level++;
  }
  checkDepth(host, level - 1);
  writeDaNode(host, root, { forw: 0, back: 0, level, entries: row });
}
