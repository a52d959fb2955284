/** An inode's block map (extent tree or ext2/3 block map): read, replace, free. */
import type { BlockStore } from "./block-store.js";
import type { EditContext } from "./edit-context.js";
import { INODE_FLAGS } from "./features.js";
import {
  blockMapNodesNeeded,
  extentNodesNeeded,
  type FileMap,
  type MapExtent,
  normaliseExtents,
  readBlockMap,
  readExtentMap,
  writeBlockMap,
  writeExtentTree,
} from "./file-map.js";
import { type Inode, S_IFBLK, S_IFCHR, S_IFIFO, S_IFLNK, S_IFMT, S_IFSOCK } from "./inode.js";
import { inodeSeed } from "./inode-table.js";

/** i_block of an extent-mapped inode with no extents. */
const EMPTY_EXTENT_ROOT = writeExtentTree({} as BlockStore, [], [], undefined);

export function emptyMapRoot(ctx: EditContext, inode: Inode): void {
  if (ctx.extents) {
    inode.flags |= INODE_FLAGS.EXTENTS;
    inode.iBlock = EMPTY_EXTENT_ROOT.slice();
  } else inode.iBlock = new Uint8Array(60);
}

export function usesExtents(inode: Inode): boolean {
  return (inode.flags & INODE_FLAGS.EXTENTS) !== 0;
}

/** The inode's map as extents (empty for inline data, devices and fast symlinks). */
export async function fileMap(ctx: EditContext, inode: Inode): Promise<FileMap> {
  if (inode.flags & INODE_FLAGS.INLINE_DATA) return { extents: [], metaBlocks: [] };
  const t = inode.mode & S_IFMT;
  if (t === S_IFCHR || t === S_IFBLK || t === S_IFIFO || t === S_IFSOCK)
    return { extents: [], metaBlocks: [] };
  if (t === S_IFLNK && isFastSymlink(ctx, inode)) return { extents: [], metaBlocks: [] };
  if (usesExtents(inode)) return readExtentMap(ctx.store, inode.iBlock, inode.ino, ctx.sb.blocksCount);
  return readBlockMap(ctx.store, inode.iBlock, ctx.bs, ctx.sb.blocksCount);
}

export function isFastSymlink(ctx: EditContext, inode: Inode): boolean {
  return ctx.reader.isFastSymlink(inode);
}

export function nodesNeeded(ctx: EditContext, inode: Inode, extents: MapExtent[]): number {
  return usesExtents(inode)
    ? extentNodesNeeded(extents.length, ctx.bs)
    : blockMapNodesNeeded(extents, ctx.bs);
}

/**
 * Replace an inode's map with `extents` (already allocated data), freeing the old tree nodes
 * and allocating new ones. Updates i_block and i_blocks (not the size). Throws ENOSPC before
 * changing anything when the nodes cannot be allocated.
 */
export async function setMap(
  ctx: EditContext,
  inode: Inode,
  extents: MapExtent[],
  oldMeta: number[],
  path?: string,
): Promise<void> {
  const norm = normaliseExtents([...extents].sort((a, b) => a.lblk - b.lblk));
  if (!usesExtents(inode) && norm.some((e) => e.uninit)) throw new Error("uninit extent in a block map");
  const need = nodesNeeded(ctx, inode, norm);
  if (need > ctx.alloc.freeBlocks + oldMeta.length) ctx.alloc.reserveBlocks(need - oldMeta.length, path);
  for (const b of oldMeta) await ctx.alloc.freeBlocksRange(b, 1);
  const goal = norm.length ? norm[0].pblk : ctx.alloc.goalFor(inode.ino);
  const runs = need ? await ctx.alloc.allocBlocks(need, goal, path) : [];
  const nodes: number[] = [];
  for (const r of runs) for (let k = 0; k < r.len; k++) nodes.push(r.start + k);
  const root = usesExtents(inode)
    ? writeExtentTree(ctx.store, norm, nodes, inodeSeed(ctx, inode))
    : writeBlockMap(ctx.store, norm, nodes);
  inode.iBlock = root;
  const data = norm.reduce((n, e) => n + e.len, 0);
  setBlocks(ctx, inode, data + nodes.length + (inode.fileAcl ? 1 : 0));
}

/** Set i_blocks from a count of filesystem blocks (512-byte units, no huge_file scaling). */
export function setBlocks(ctx: EditContext, inode: Inode, blocks: number): void {
  inode.blocksRaw = blocks * (ctx.bs / 512);
  inode.flags &= ~INODE_FLAGS.HUGE_FILE;
  if (inode.blocksRaw >= 2 ** 48) throw new Error("file too large");
}

export async function freeFileBlocks(ctx: EditContext, inode: Inode): Promise<void> {
  await freeMap(ctx, await fileMap(ctx, inode));
}

/** Free a file map's data blocks and its tree nodes / indirect blocks. */
export async function freeMap(
  ctx: EditContext,
  map: { extents: MapExtent[]; metaBlocks: number[] },
): Promise<void> {
  for (const e of map.extents) await ctx.alloc.freeBlocksRange(e.pblk, e.len);
  for (const b of map.metaBlocks) await ctx.alloc.freeBlocksRange(b, 1);
}
