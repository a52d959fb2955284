/**
 * The editor's view of a directory (entries by name, block map, free space per leaf), loaded
 * once and kept up to date by every insert and removal; block finishing (checksums) and growth.
 */
import { leafEnd, maxFree } from "./dir-write.js";
import { parseDirentBlock, setDirentTail } from "./dirent.js";
import { dxHash, effectiveHashVersion, isComputableHashVersion } from "./dx-hash.js";
import { type EditContext, key } from "./edit-context.js";
import { Ext4EditError, Ext4FormatError, Ext4UnsupportedError } from "./errors.js";
import { COMPAT, INODE_FLAGS } from "./features.js";
import { parseDxEntries, parseDxRootInfo, setDxChecksum } from "./htree.js";
import { inlineDirEntries, inlineParts } from "./inline.js";
import { inlineDirParent } from "./inline-data.js";
import type { Inode } from "./inode.js";
import { fileMap, setMap } from "./inode-map.js";
import { inodeSeed } from "./inode-table.js";
import { hasCompat } from "./superblock.js";

export interface DirEntryInfo {
  ino: number;
  ft: number;
  lblk: number;
}

export interface DirState {
  ino: number;
  entries: Map<string, DirEntryInfo>;
  /** Physical block of each logical block. */
  pblk: number[];
  /** Largest free record per leaf block (-1 for index blocks). */
  free: number[];
  /**
   * Per htree leaf: offset of the record the last insert wrote (a record boundary; reset to 0
   * whenever the leaf is changed otherwise), where the next insert starts looking for room.
   */
  hint: number[];
  indexed: boolean;
  /** Entries live in the inode (inline_data): i_block after the parent number, then system.data. */
  inline?: boolean;
}

/** Blocks a directory insert may need in the worst case (leaf split, index levels, tree nodes). */
export const DIR_INSERT_RESERVE = 8;

/** The directory's state (entries, blocks, free space per leaf), read once and then kept. */
export async function loadDir(ctx: EditContext, dirInode: Inode): Promise<DirState> {
  const cached = ctx.dirs.get(dirInode.ino);
  if (cached) return cached;
  const st: DirState = {
    ino: dirInode.ino,
    entries: new Map(),
    pblk: [],
    free: [],
    hint: [],
    indexed: false,
  };
  if (dirInode.flags & INODE_FLAGS.INLINE_DATA) {
    const { value } = await inlineParts(ctx, dirInode);
    for (const e of inlineDirEntries(ctx, dirInode, value))
      st.entries.set(key(e.name), { ino: e.inode, ft: e.fileType, lblk: -1 });
    st.inline = true;
    ctx.dirs.set(dirInode.ino, st);
    return st;
  }
  const map = await fileMap(ctx, dirInode);
  const nblocks = Math.ceil(dirInode.size / ctx.bs);
  // Every block up to i_size is mapped in a sound directory (e2fsck fills holes): a size past
  // the mapped blocks is damage, and must not size the tables below.
  const mapped = map.extents.reduce((n, e) => Math.max(n, e.lblk + e.len), 0);
  if (nblocks > mapped)
    throw new Ext4FormatError(
      `directory size ${dirInode.size} bytes (${nblocks} blocks) but only ${mapped} blocks mapped`,
      { file: ctx.reader.device.name, structure: "directory", inode: dirInode.ino },
    );
  st.pblk = new Array(nblocks).fill(0);
  for (const e of map.extents)
    for (let k = 0; k < e.len; k++) if (e.lblk + k < nblocks) st.pblk[e.lblk + k] = e.pblk + k;
  st.indexed = (dirInode.flags & INODE_FLAGS.INDEX) !== 0 && hasCompat(ctx.sb, COMPAT.dir_index);
  const dxBlocks = new Set<number>();
  if (st.indexed) {
    dxBlocks.add(0);
    const root = await ctx.store.get(st.pblk[0]);
    const info = parseDxRootInfo(root);
    let level = [0];
    let off = 0x18 + info.infoLength;
    for (let d = 0; d <= info.indirectLevels && d < 3; d++) {
      const next: number[] = [];
      for (const l of level) {
        const b = await ctx.store.get(st.pblk[l]);
        const node = parseDxEntries(b, l === 0 ? off : 8);
        for (const e of node.entries) next.push(e.block);
      }
      if (d < info.indirectLevels) for (const l of next) dxBlocks.add(l);
      level = next;
      off = 8;
    }
  }
  const end = leafEnd(ctx.bs, ctx.csum);
  for (let l = 0; l < nblocks; l++) {
    if (dxBlocks.has(l) || st.pblk[l] === 0) {
      st.free[l] = -1;
      continue;
    }
    const b = await ctx.store.get(st.pblk[l]);
    const { entries, problem } = parseDirentBlock(b, 0, end, ctx.bs, ctx.ft);
    if (problem)
      throw new Ext4EditError(
        "EINVAL",
        `corrupt directory block ${l}: ${problem.message}`,
        `<inode ${dirInode.ino}>`,
      );
    for (const e of entries) {
      const k = key(e.name);
      if (k === "." || k === "..") continue;
      st.entries.set(k, { ino: e.inode, ft: e.fileType, lblk: l });
    }
    st.free[l] = maxFree(b, 0, end, ctx.bs, ctx.ft);
  }
  ctx.dirs.set(dirInode.ino, st);
  return st;
}

/** Check a directory can be edited. */
export async function prepareDir(dir: Inode, path: string): Promise<void> {
  checkDirWritable(dir, path);
}

export function checkDirWritable(dir: Inode, path: string): void {
  if (dir.flags & INODE_FLAGS.ENCRYPT)
    throw new Ext4UnsupportedError("encrypt", `cannot edit encrypted directory '${path}'`);
  if (dir.flags & INODE_FLAGS.CASEFOLD)
    throw new Ext4UnsupportedError("casefold", `cannot edit case-folded directory '${path}'`);
}

/** A leaf block was changed: dirty, with its checksum tail set at flush (metadata_csum). */
export function finishLeaf(ctx: EditContext, dirInode: Inode, pblk: number, buf: Uint8Array): void {
  ctx.store.markDirty(pblk);
  if (ctx.csum && !ctx.store.hasDeferredChecksum(pblk)) {
    const seed = inodeSeed(ctx, dirInode) as number;
    ctx.store.deferChecksum(pblk, (b) => setDirentTail(seed, b));
  }
  void buf;
}

/** An htree root/node block was changed: dirty, with its dx tail checksum set at flush. */
export function finishDx(
  ctx: EditContext,
  dirInode: Inode,
  pblk: number,
  buf: Uint8Array,
  off: number,
): void {
  ctx.store.markDirty(pblk);
  if (ctx.csum) {
    const seed = inodeSeed(ctx, dirInode) as number;
    ctx.store.deferChecksum(pblk, (b) => setDxChecksum(seed, b, parseDxEntries(b, off)));
  }
  void buf;
}

/** Append a fresh block to a directory; returns its logical number. */
export async function appendDirBlock(
  ctx: EditContext,
  dirInode: Inode,
  st: DirState,
  path: string,
): Promise<{ lblk: number; buf: Uint8Array; pblk: number }> {
  const lblk = st.pblk.length;
  const last = st.pblk[lblk - 1];
  const [run] = await ctx.alloc.allocBlocks(1, last ? last + 1 : ctx.alloc.goalFor(dirInode.ino), path);
  const map = await fileMap(ctx, dirInode);
  try {
    await setMap(
      ctx,
      dirInode,
      [...map.extents, { lblk, pblk: run.start, len: 1, uninit: false }],
      map.metaBlocks,
      path,
    );
  } catch (e) {
    await ctx.alloc.freeBlocksRange(run.start, 1);
    throw e;
  }
  dirInode.size = (lblk + 1) * ctx.bs;
  st.pblk.push(run.start);
  st.free.push(0);
  const buf = ctx.store.fresh(run.start);
  return { lblk, buf, pblk: run.start };
}

/**
 * Apply `edit` to the leaf holding a name: the entry's lblk first (a hint: names moved by a
 * leaf split keep the old one), then every other leaf. Returns the leaf, or -1.
 */
export async function inLeaf(
  ctx: EditContext,
  st: DirState,
  e: DirEntryInfo,
  edit: (b: Uint8Array) => boolean,
): Promise<number> {
  if (e.lblk >= 0 && e.lblk < st.pblk.length && st.pblk[e.lblk] && st.free[e.lblk] !== -1) {
    if (edit(await ctx.store.get(st.pblk[e.lblk]))) return e.lblk;
  }
  for (let l = 0; l < st.pblk.length; l++) {
    if (l === e.lblk || st.free[l] === -1 || st.pblk[l] === 0) continue;
    if (edit(await ctx.store.get(st.pblk[l]))) {
      e.lblk = l;
      return l;
    }
  }
  return -1;
}

/** The inode number a directory's ".." names (the second record of block 0, or inline). */
export async function dotdot(ctx: EditContext, dirInode: Inode, path: string): Promise<number> {
  if (dirInode.flags & INODE_FLAGS.INLINE_DATA) return inlineDirParent(dirInode.iBlock);
  const st = await loadDir(ctx, dirInode);
  const b = st.pblk[0] ? await ctx.store.get(st.pblk[0]) : undefined;
  // To the block's end: in an htree root ".." spans the index (and a leaf's checksum tail
  // parses as an empty record).
  const { entries } = b ? parseDirentBlock(b, 0, ctx.bs, ctx.bs, ctx.ft) : { entries: [] };
  const e = entries[1];
  if (!e || key(e.name) !== ".." || entries[0] === undefined || key(entries[0].name) !== ".")
    throw new Ext4FormatError(`directory ${path} does not begin with "." and ".."`, {
      file: ctx.reader.device.name,
      structure: "directory",
      inode: dirInode.ino,
    });
  return e.inode;
}

export function hashVersion(ctx: EditContext): number {
  return ctx.sb.defHashVersion;
}

/** The htree hash of a name for a root's hash version (uncomputable versions are refused). */
export function hashOf(ctx: EditContext, name: Uint8Array, rootVersion: number): number {
  // From an htree root or s_def_hash_version: siphash (casefold+encrypt) or garbage is refused.
  if (!isComputableHashVersion(rootVersion))
    throw new Ext4UnsupportedError("dir_hash", `htree hash version ${rootVersion} is not supported`, {
      file: ctx.reader.device.name,
      structure: "htree root",
    });
  return dxHash(name, effectiveHashVersion(rootVersion, ctx.sb.flags), ctx.sb.hashSeed).hash;
}
