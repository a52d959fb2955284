/**
 * Extended attributes for the editor: read an inode's items, lay them out (in the inode first,
 * then one block), setxattr/removexattr.
 */
import { Ext4NoSpaceError } from "./alloc.js";
import { decodeName, setU32, u32 } from "./bytes.js";
import { type EditContext, key, timeNow } from "./edit-context.js";
import { Ext4EditError, Ext4UnsupportedError } from "./errors.js";
import { COMPAT } from "./features.js";
import { encodeInode, GOOD_OLD_INODE_SIZE, type Inode } from "./inode.js";
import { setBlocks } from "./inode-map.js";
import { putInode } from "./inode-table.js";
import { resolve } from "./namei.js";
import { hasCompat } from "./superblock.js";
import {
  decodePosixAcl,
  encodePosixAclDisk,
  isPosixAclName,
  parseXattrBlockHeader,
  parseXattrEntries,
  setXattrBlockChecksum,
  splitXattrName,
  XATTR_BLOCK_HEADER_SIZE,
  XATTR_MAGIC,
  type XattrEntry,
} from "./xattr.js";
import { planXattrs, writeIbodyXattrs, writeXattrBlock, type XattrItem } from "./xattr-write.js";

/** An inode's xattrs as items: the inode body's first, then the external block's. */
export async function loadXattrs(ctx: EditContext, inode: Inode): Promise<XattrItem[]> {
  const out: XattrItem[] = [];
  const start = 128 + inode.extraIsize;
  const raw = inode.raw;
  if (raw.length > start + 4 && u32(raw, start) === XATTR_MAGIC) {
    const { entries, problem } = parseXattrEntries(raw, start + 4, raw.length, start + 4);
    if (problem) throw new Ext4EditError("EINVAL", `in-inode xattrs: ${problem}`, `<inode ${inode.ino}>`);
    pushItems(out, inode, entries, raw, start + 4);
  }
  if (inode.fileAcl) {
    const b = await ctx.store.get(inode.fileAcl);
    const h = parseXattrBlockHeader(b);
    if (h.magic !== XATTR_MAGIC) throw new Ext4EditError("EINVAL", "bad xattr block", `<inode ${inode.ino}>`);
    pushItems(out, inode, parseXattrEntries(b, XATTR_BLOCK_HEADER_SIZE, b.length, 0).entries, b, 0);
  }
  return out;
}

/** Entries of one region (values at `base` + offset) as items; ea_inode values are refused. */
function pushItems(
  out: XattrItem[],
  inode: Inode,
  entries: XattrEntry[],
  region: Uint8Array,
  base: number,
): void {
  for (const e of entries) {
    if (e.valueInum)
      throw new Ext4UnsupportedError(
        "ea_inode",
        `xattr values in inodes are not supported for writing (inode ${inode.ino})`,
      );
    out.push({
      index: e.nameIndex,
      suffix: e.nameSuffix,
      value: region.slice(base + e.valueOffset, base + e.valueOffset + e.valueSize),
    });
  }
}

export async function releaseXattrBlock(ctx: EditContext, blk: number): Promise<void> {
  const b = await ctx.store.get(blk);
  const h = parseXattrBlockHeader(b);
  if (h.refcount > 1) {
    setU32(b, 4, h.refcount - 1);
    if (ctx.csum) setXattrBlockChecksum(ctx.seed, blk, b);
    ctx.store.markDirty(blk);
  } else await ctx.alloc.freeBlocksRange(blk, 1);
}

/** Lay out `items` (in-inode first, then one block); the inode is written by the caller. */
export async function storeXattrs(
  ctx: EditContext,
  inode: Inode,
  items: XattrItem[],
  path: string,
): Promise<void> {
  const ibody = ctx.sb.inodeSize - 128 - inode.extraIsize;
  const plan = planXattrs(items, ibody, ctx.bs);
  if (!plan)
    throw new Ext4NoSpaceError("blocks", "extended attributes do not fit in the inode and one block", path);
  const oldBlock = inode.fileAcl;
  let newBlock = 0;
  if (plan.block.length) {
    let reuse = false;
    if (oldBlock) reuse = parseXattrBlockHeader(await ctx.store.get(oldBlock)).refcount === 1;
    if (reuse) newBlock = oldBlock;
    else {
      const [r] = await ctx.alloc.allocBlocks(1, ctx.alloc.goalFor(inode.ino), path);
      newBlock = r.start;
    }
    const b = reuse ? await ctx.store.get(newBlock) : ctx.store.fresh(newBlock);
    writeXattrBlock(b, plan.block);
    if (ctx.csum) setXattrBlockChecksum(ctx.seed, newBlock, b);
    ctx.store.markDirty(newBlock);
  }
  if (oldBlock && oldBlock !== newBlock) await releaseXattrBlock(ctx, oldBlock);
  const dataBlocks = inode.blocksRaw / (ctx.bs / 512) - (oldBlock ? 1 : 0);
  inode.fileAcl = newBlock;
  setBlocks(ctx, inode, dataBlocks + (newBlock ? 1 : 0));
  const raw = encodeInode(inode, ctx.sb.inodeSize);
  writeIbodyXattrs(raw, inode.extraIsize, plan.ibody);
  inode.raw = raw;
}

export function xattrName(name: string, path: string): { index: number; suffix: Uint8Array } {
  const s = splitXattrName(name);
  if (!s || (s.index === 7 && decodeName(s.suffix) === "data") || name.length > 255)
    throw new Ext4EditError("EINVAL", `unsupported xattr name ${name}`, path);
  return s;
}

/** An attribute as stored: name split by namespace, a POSIX ACL in its on-disk form. */
function xattrItem(ctx: EditContext, name: string, value: Uint8Array | string, path: string): XattrItem {
  if (!hasCompat(ctx.sb, COMPAT.ext_attr))
    throw new Ext4UnsupportedError("ext_attr", "the filesystem has no ext_attr feature");
  const n = xattrName(name, path);
  let v = typeof value === "string" ? new TextEncoder().encode(value) : value;
  if (isPosixAclName(name)) {
    try {
      v = encodePosixAclDisk(decodePosixAcl(v));
    } catch (e) {
      throw new Ext4EditError("EINVAL", `bad POSIX ACL: ${(e as Error).message}`, path);
    }
  }
  if (v.length > 65536) throw new Ext4EditError("EINVAL", "xattr value too large", path);
  return { index: n.index, suffix: n.suffix, value: v.slice() };
}

/**
 * The attributes of an inode being created (blank, none yet): into its own bytes when they fit
 * the in-inode area (a SELinux label does with 256-byte inodes), else laid out as storeXattrs does.
 */
export async function initXattrs(
  ctx: EditContext,
  inode: Inode,
  xattrs: Readonly<Record<string, Uint8Array>>,
  path: string,
): Promise<void> {
  // A caller labelling many inodes alike passes the same object: its in-inode bytes are reused.
  const start = GOOD_OLD_INODE_SIZE + inode.extraIsize;
  const known = ibodyImages.get(xattrs);
  if (known && known.ctx === ctx && known.start === start && inode.fileAcl === 0) {
    inode.raw.set(known.bytes, start);
    return;
  }
  const items = Object.entries(xattrs).map(([name, value]) => xattrItem(ctx, name, value, path));
  if (items.length === 0) return;
  const plan = planXattrs(items, ctx.sb.inodeSize - start, ctx.bs);
  if (plan && plan.block.length === 0 && inode.fileAcl === 0) {
    writeIbodyXattrs(inode.raw, inode.extraIsize, plan.ibody);
    ibodyImages.set(xattrs, { ctx, start, bytes: inode.raw.slice(start) });
    return;
  }
  await storeXattrs(ctx, inode, items, path);
}

/** In-inode attribute areas initXattrs laid out, by the attribute object they came from. */
const ibodyImages = new WeakMap<object, { ctx: EditContext; start: number; bytes: Uint8Array }>();

/** The attributes `inode` has with `name` set to `value` (to be stored by the caller). */
export async function withXattr(
  ctx: EditContext,
  inode: Inode,
  name: string,
  value: Uint8Array | string,
  path: string,
): Promise<XattrItem[]> {
  const item = xattrItem(ctx, name, value, path);
  const items = (await loadXattrs(ctx, inode)).filter(
    (x) => !(x.index === item.index && key(x.suffix) === key(item.suffix)),
  );
  items.push(item);
  return items;
}

/** Would `items` need an attribute block next to the inode body? undefined: they do not fit at all. */
export function needsXattrBlock(ctx: EditContext, inode: Inode, items: XattrItem[]): boolean | undefined {
  const plan = planXattrs(items, ctx.sb.inodeSize - 128 - inode.extraIsize, ctx.bs);
  return plan && plan.block.length > 0;
}

export async function removexattr(
  ctx: EditContext,
  path: string,
  name: string,
  options: { follow?: boolean } = {},
): Promise<void> {
  const n = xattrName(name, path);
  const { inode } = await resolve(ctx, path, options.follow ?? true);
  const items = await loadXattrs(ctx, inode);
  const rest = items.filter((x) => !(x.index === n.index && key(x.suffix) === key(n.suffix)));
  if (rest.length === items.length) throw new Ext4EditError("ENODATA", `no attribute ${name}`, path);
  await storeXattrs(ctx, inode, rest, path);
  inode.ctime = timeNow(ctx);
  putInode(ctx, inode);
}
