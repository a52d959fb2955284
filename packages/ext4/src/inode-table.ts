/**
 * Inode-table I/O for the editor: one shared object per inode (every operation sees the previous
 * ones' changes), dirty inodes encoded into their table blocks at flush, new inodes from slabs.
 */
import { type EditContext, nextGeneration, timeNow } from "./edit-context.js";
import { Ext4ChecksumError, Ext4EditError } from "./errors.js";
import {
  encodeInodeFields,
  I_BLOCK_OFFSET,
  I_BLOCK_SIZE,
  type Inode,
  inodeChecksumMismatch,
  inodeChecksumSeed,
  parseInode,
  setInodeChecksum,
} from "./inode.js";

/** Inode objects kept (clean ones are dropped past this) and dirty ones before they are encoded. */
const MAX_CACHED_INODES = 65536;
export const MAX_DIRTY_INODES = 16384;

/** Where inode `ino` lies: its inode-table block and the byte offset in it. */
export function inodePos(ctx: EditContext, ino: number): { block: number; offset: number } {
  if (ino < 1 || ino > ctx.sb.inodesCount)
    throw new Ext4EditError("EINVAL", `inode ${ino} out of range`, `<inode ${ino}>`);
  const g = Math.floor((ino - 1) / ctx.sb.inodesPerGroup);
  const idx = (ino - 1) % ctx.sb.inodesPerGroup;
  const byte = idx * ctx.sb.inodeSize;
  return { block: ctx.groups[g].inodeTable + Math.floor(byte / ctx.bs), offset: byte % ctx.bs };
}

/** A copy of an inode as it is now (pending changes included). */
export async function getInode(ctx: EditContext, ino: number): Promise<Inode> {
  const pending = ctx.dirtyInodes.has(ino) ? ctx.inodes.get(ino) : undefined;
  if (pending) {
    await writeInode(ctx, pending);
    ctx.dirtyInodes.delete(ino);
  }
  const { block, offset } = inodePos(ctx, ino);
  const b = await ctx.store.get(block);
  return parseInode(ino, b.subarray(offset, offset + ctx.sb.inodeSize), ctx.sb.inodeSize);
}

/**
 * The editor's one object for an inode: every operation sees the changes of the previous ones.
 * putInode marks it dirty; it is encoded into its inode-table block by flushInodes (once, however
 * many operations touched it, e.g. a directory receiving thousands of names).
 */
export async function inodeRef(ctx: EditContext, ino: number): Promise<Inode> {
  const hit = ctx.inodes.get(ino);
  if (hit) return hit;
  const { block, offset } = inodePos(ctx, ino);
  const b = await ctx.store.get(block);
  const bytes = b.subarray(offset, offset + ctx.sb.inodeSize);
  // Never edit on top of a damaged inode (the reader checks the same way).
  const bad = ctx.csum ? inodeChecksumMismatch(ctx.seed, ino, bytes) : undefined;
  if (bad)
    throw new Ext4ChecksumError("inode checksum mismatch", bad.stored, bad.computed, {
      file: ctx.reader.device.name,
      structure: "inode",
      inode: ino,
      block,
      offset: block * ctx.bs + offset,
    });
  const inode = parseInodeFrom(ctx, ino, bytes);
  if (ctx.inodes.size >= MAX_CACHED_INODES) {
    for (const k of ctx.inodes.keys()) if (!ctx.dirtyInodes.has(k)) ctx.inodes.delete(k);
  }
  ctx.inodes.set(ino, inode);
  return inode;
}

/**
 * Mark an inode changed (encoded later by flushInodes; the dirty ones are bounded at each path
 * resolution, which every public operation starts with).
 */
export function putInode(ctx: EditContext, inode: Inode): void {
  ctx.inodes.set(inode.ino, inode);
  ctx.dirtyInodes.add(inode.ino);
}

/** Encode every dirty inode into the block cache. */
export async function flushInodes(ctx: EditContext): Promise<void> {
  for (const ino of ctx.dirtyInodes) {
    const inode = ctx.inodes.get(ino);
    if (!inode) continue;
    const { block, offset } = inodePos(ctx, ino);
    encodeInodeInto(ctx, inode, block, itableBlockNow(ctx, block) ?? (await ctx.store.get(block)), offset);
  }
  ctx.dirtyInodes.clear();
}

export async function writeInode(ctx: EditContext, inode: Inode): Promise<void> {
  const { block, offset } = inodePos(ctx, inode.ino);
  encodeInodeInto(ctx, inode, block, itableBlockNow(ctx, block) ?? (await ctx.store.get(block)), offset);
}

/** An inode-table block without a read: cached, or wholly unused so far (a zeroed block). */
export function itableBlockNow(ctx: EditContext, block: number): Uint8Array | undefined {
  if (ctx.alloc.freshItable.has(block)) {
    ctx.alloc.freshItable.delete(block);
    return ctx.store.peek(block) ?? ctx.store.fresh(block);
  }
  return ctx.store.peek(block);
}

export function encodeInodeInto(
  ctx: EditContext,
  inode: Inode,
  block: number,
  b: Uint8Array,
  offset: number,
): void {
  const n = ctx.sb.inodeSize;
  let raw = inode.raw;
  if (raw.length !== n) {
    raw = new Uint8Array(n);
    raw.set(inode.raw.subarray(0, n));
    inode.raw = raw;
  }
  // Encoded in the inode's own (private) bytes, then copied into its table block.
  encodeInodeFields(inode, raw, 0, n);
  if (ctx.csum) setInodeChecksum(ctx.seed, inode.ino, raw);
  const ib = inode.iBlock;
  if (ib.buffer !== raw.buffer || ib.byteOffset !== raw.byteOffset + I_BLOCK_OFFSET)
    inode.iBlock = raw.subarray(I_BLOCK_OFFSET, I_BLOCK_OFFSET + I_BLOCK_SIZE);
  b.set(raw, offset);
  ctx.store.markDirty(block);
}

/** The inode's checksum seed (metadata_csum), for its extent, directory and xattr blocks. */
export function inodeSeed(ctx: EditContext, inode: Inode): number | undefined {
  return ctx.csum ? inodeChecksumSeed(ctx.seed, inode.ino, inode.generation) : undefined;
}

export function inodeBytes(ctx: EditContext): Uint8Array {
  const n = ctx.sb.inodeSize;
  if (ctx.inodeSlabPos + n > ctx.inodeSlab.length) {
    ctx.inodeSlab = new Uint8Array(Math.max(n, 1 << 20));
    ctx.inodeSlabPos = 0;
  }
  ctx.inodeSlabPos += n;
  return ctx.inodeSlab.subarray(ctx.inodeSlabPos - n, ctx.inodeSlabPos);
}

/** An inode read from bytes, its raw copy in a slab. */
export function parseInodeFrom(ctx: EditContext, ino: number, bytes: Uint8Array): Inode {
  const raw = inodeBytes(ctx);
  raw.set(bytes);
  return parseInode(ino, raw, ctx.sb.inodeSize, false);
}

export function blankInode(ctx: EditContext, ino: number, mode: number, uid: number, gid: number): Inode {
  const raw = inodeBytes(ctx);
  const extraIsize = ctx.sb.inodeSize >= 160 ? 32 : 0;
  if (extraIsize) raw[0x80] = extraIsize;
  const now = timeNow(ctx);
  // What parseInode gives for these bytes (same fields in the same order: one object shape),
  // without decoding zeros first.
  return {
    ino,
    mode,
    uid: uid >>> 0,
    gid: gid >>> 0,
    size: 0,
    linksCount: 0,
    blocksRaw: 0,
    flags: 0,
    generation: nextGeneration(ctx),
    fileAcl: 0,
    dtime: 0,
    version: 0,
    atime: now,
    mtime: now,
    ctime: now,
    crtime: extraIsize >= 24 ? now : undefined,
    extraIsize,
    projid: extraIsize >= 32 ? 0 : undefined,
    iBlock: raw.subarray(I_BLOCK_OFFSET, I_BLOCK_OFFSET + I_BLOCK_SIZE),
    raw,
  };
}
