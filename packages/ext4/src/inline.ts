/**
 * inline_data for the editor: capacity, storing file content in the inode, and inline directories
 * (insert, edit, conversion to a block when full).
 */
import { decodeName, encodeName, setU16, u16 } from "./bytes.js";
import { DIR_INSERT_RESERVE, type DirEntryInfo, finishLeaf } from "./dir-state.js";
import { insertIntoBlock, type LeafRecord, leafEnd, maxFree } from "./dir-write.js";
import { decodeRecLen, direntSize, encodeDirent, encodeRecLen, FT, parseDirentBlock } from "./dirent.js";
import { type EditContext, key } from "./edit-context.js";
import { Ext4EditError, Ext4UnsupportedError } from "./errors.js";
import { INODE_FLAGS } from "./features.js";
import {
  INLINE_DATA_XATTR_INDEX,
  INLINE_DATA_XATTR_SUFFIX,
  INLINE_DIR_PARENT_SIZE,
  INLINE_IBLOCK_SIZE,
  inlineDirParent,
  inlineValueCapacity,
} from "./inline-data.js";
import type { Inode } from "./inode.js";
import { emptyMapRoot, setMap } from "./inode-map.js";
import { putInode } from "./inode-table.js";
import { loadXattrs, storeXattrs } from "./xattr-store.js";
import { type XattrItem, xattrItemSize } from "./xattr-write.js";

const DATA_SUFFIX = new TextEncoder().encode(INLINE_DATA_XATTR_SUFFIX);
const isSystemData = (x: XattrItem) =>
  x.index === INLINE_DATA_XATTR_INDEX && decodeName(x.suffix) === INLINE_DATA_XATTR_SUFFIX;

/**
 * Most bytes this inode can hold inline (i_block, then the largest system.data value the inode
 * body has room for next to its other attributes), or -1 when it cannot hold inline data.
 */
export function inlineCapacity(ctx: EditContext, inode: Inode, others: XattrItem[]): number {
  if (!ctx.inlineData) return -1;
  const ibody = ctx.sb.inodeSize - 128 - inode.extraIsize;
  const cap = inlineValueCapacity(
    ibody,
    others.reduce((n, x) => n + xattrItemSize(x), 0),
  );
  return cap < 0 ? -1 : INLINE_IBLOCK_SIZE + cap;
}

/** An inode's system.data value and its other attributes. */
export async function inlineParts(
  ctx: EditContext,
  inode: Inode,
): Promise<{ value: Uint8Array; others: XattrItem[] }> {
  const items = await loadXattrs(ctx, inode);
  return {
    value: items.find(isSystemData)?.value ?? new Uint8Array(0),
    others: items.filter((x) => !isSystemData(x)),
  };
}

/**
 * Store `data` in the inode like the kernel's inline_data: the first 60 bytes in i_block, the
 * rest as the system.data value (present, maybe empty). Data blocks must already be freed;
 * the inode is written by the caller.
 */
export async function storeInline(
  ctx: EditContext,
  inode: Inode,
  data: Uint8Array,
  others: XattrItem[],
  path: string,
): Promise<void> {
  const { flags, iBlock } = inode;
  inode.flags = (inode.flags | INODE_FLAGS.INLINE_DATA) & ~INODE_FLAGS.EXTENTS;
  inode.iBlock = new Uint8Array(INLINE_IBLOCK_SIZE);
  inode.iBlock.set(data.subarray(0, INLINE_IBLOCK_SIZE));
  const value = data.slice(Math.min(data.length, INLINE_IBLOCK_SIZE));
  try {
    await storeXattrs(
      ctx,
      inode,
      [...others, { index: INLINE_DATA_XATTR_INDEX, suffix: DATA_SUFFIX, value }],
      path,
    );
  } catch (e) {
    // storeXattrs changes nothing when it fails (e.g. no block for the other attributes).
    inode.flags = flags;
    inode.iBlock = iBlock;
    throw e;
  }
  inode.size = data.length;
}

export async function storeInlineDirValue(
  ctx: EditContext,
  dir: Inode,
  value: Uint8Array,
  others: XattrItem[],
  path: string,
): Promise<void> {
  await storeXattrs(
    ctx,
    dir,
    [...others, { index: INLINE_DATA_XATTR_INDEX, suffix: DATA_SUFFIX, value }],
    path,
  );
  dir.size = INLINE_IBLOCK_SIZE + value.length;
}

/** The live entries of an inline directory: i_block after the parent number, then system.data. */
export function inlineDirEntries(
  ctx: EditContext,
  dir: Inode,
  value: Uint8Array,
): { inode: number; name: Uint8Array; fileType: number }[] {
  const a = parseDirentBlock(dir.iBlock, INLINE_DIR_PARENT_SIZE, INLINE_IBLOCK_SIZE, ctx.bs, ctx.ft);
  const b = value.length ? parseDirentBlock(value, 0, value.length, ctx.bs, ctx.ft) : { entries: [] };
  const problem = a.problem ?? b.problem;
  if (problem)
    throw new Ext4EditError("EINVAL", `corrupt inline directory: ${problem.message}`, `<inode ${dir.ino}>`);
  return [...a.entries, ...b.entries];
}

/**
 * Add an entry to an inline directory as the kernel does: into i_block's free space, else into
 * system.data's, growing an empty system.data once to all the room the inode body has. False
 * when it does not fit (the directory must move to a block).
 */
export async function inlineDirInsert(
  ctx: EditContext,
  dir: Inode,
  rec: LeafRecord,
  path: string,
): Promise<boolean> {
  const ib = dir.iBlock.slice(0, INLINE_IBLOCK_SIZE);
  if (insertIntoBlock(ib, INLINE_DIR_PARENT_SIZE, INLINE_IBLOCK_SIZE, ctx.bs, ctx.ft, rec)) {
    dir.iBlock = ib;
    return true;
  }
  const { value, others } = await inlineParts(ctx, dir);
  let v = value.slice();
  if (v.length === 0) {
    const cap = inlineCapacity(ctx, dir, others) - INLINE_IBLOCK_SIZE;
    if (cap <= direntSize(1)) return false;
    v = new Uint8Array(cap);
    encodeDirent(v, 0, { inode: 0, recLen: cap, name: new Uint8Array(0), fileType: 0 }, ctx.bs, ctx.ft);
  }
  if (!insertIntoBlock(v, 0, v.length, ctx.bs, ctx.ft, rec)) return false;
  await storeInlineDirValue(ctx, dir, v, others, path);
  return true;
}

/** Apply `edit` to the inline region holding the entry (i_block first); false when absent. */
export async function inlineDirEdit(
  ctx: EditContext,
  dir: Inode,
  path: string,
  edit: (buf: Uint8Array, start: number, end: number) => boolean,
): Promise<boolean> {
  const ib = dir.iBlock.slice(0, INLINE_IBLOCK_SIZE);
  if (edit(ib, INLINE_DIR_PARENT_SIZE, INLINE_IBLOCK_SIZE)) {
    dir.iBlock = ib;
    return true;
  }
  const { value, others } = await inlineParts(ctx, dir);
  const v = value.slice();
  if (!v.length || !edit(v, 0, v.length)) return false;
  await storeInlineDirValue(ctx, dir, v, others, path);
  return true;
}

/**
 * Move an inline-data directory into a fresh block as the kernel does when it overflows: "."
 * and ".." (12 bytes each), then the inline records copied as they lie (i_block after the
 * parent number, then system.data), the last record stretched to the end of the block;
 * system.data removed, INLINE_DATA cleared.
 */
export async function convertInlineDir(ctx: EditContext, dir: Inode, path: string): Promise<void> {
  ctx.alloc.reserveBlocks(DIR_INSERT_RESERVE, path);
  const { value, others } = await inlineParts(ctx, dir);
  inlineDirEntries(ctx, dir, value); // validates both regions
  const parent = inlineDirParent(dir.iBlock);
  const end = leafEnd(ctx.bs, ctx.csum);
  const head = 2 * direntSize(2);
  const used = head + INLINE_IBLOCK_SIZE - INLINE_DIR_PARENT_SIZE + value.length;
  if (used > end)
    throw new Ext4UnsupportedError("inline_data", `inline directory '${path}' does not fit in one block`);
  const [run] = await ctx.alloc.allocBlocks(1, ctx.alloc.goalFor(dir.ino), path);
  const buf = ctx.store.fresh(run.start);
  const dirFt = ctx.ft ? FT.dir : 0;
  encodeDirent(
    buf,
    0,
    { inode: dir.ino, recLen: 12, name: encodeName("."), fileType: dirFt },
    ctx.bs,
    ctx.ft,
  );
  encodeDirent(
    buf,
    12,
    { inode: parent, recLen: 12, name: encodeName(".."), fileType: dirFt },
    ctx.bs,
    ctx.ft,
  );
  buf.set(dir.iBlock.subarray(INLINE_DIR_PARENT_SIZE, INLINE_IBLOCK_SIZE), head);
  buf.set(value, head + INLINE_IBLOCK_SIZE - INLINE_DIR_PARENT_SIZE);
  let last = 0;
  for (let off = 0; off < used; ) {
    last = off;
    off += Math.max(8, decodeRecLen(u16(buf, off + 4), ctx.bs)); // validated above
  }
  setU16(buf, last + 4, encodeRecLen(end - last, ctx.bs));
  const entries = new Map<string, DirEntryInfo>();
  for (const d of parseDirentBlock(buf, 0, end, ctx.bs, ctx.ft).entries) {
    const k = key(d.name);
    if (k !== "." && k !== "..") entries.set(k, { ino: d.inode, ft: d.fileType, lblk: 0 });
  }
  dir.flags &= ~INODE_FLAGS.INLINE_DATA;
  await storeXattrs(ctx, dir, others, path);
  emptyMapRoot(ctx, dir);
  dir.size = ctx.bs;
  await setMap(ctx, dir, [{ lblk: 0, pblk: run.start, len: 1, uninit: false }], [], path);
  finishLeaf(ctx, dir, run.start, buf);
  putInode(ctx, dir);
  ctx.dirs.set(dir.ino, {
    ino: dir.ino,
    entries,
    pblk: [run.start],
    free: [maxFree(buf, 0, end, ctx.bs, ctx.ft)],
    hint: [],
    indexed: false,
  });
}
