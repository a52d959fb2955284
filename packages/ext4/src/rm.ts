/** Removing names: unlink, rmdir, rm -r, and freeing an inode with its last link. */
import { dirRemove } from "./dir-remove.js";
import { dotdot, loadDir } from "./dir-state.js";
import { type EditContext, key, timeNow } from "./edit-context.js";
import { Ext4EditError, Ext4FormatError } from "./errors.js";
import { INODE_FLAGS } from "./features.js";
import { encodeInode, type Inode, S_IFDIR, S_IFMT } from "./inode.js";
import { fileMap, freeFileBlocks } from "./inode-map.js";
import { inodeRef, putInode } from "./inode-table.js";
import { decDirLinks } from "./link.js";
import { resolve, resolveParent } from "./namei.js";
import { loadXattrs, releaseXattrBlock } from "./xattr-store.js";

export async function unlink(ctx: EditContext, path: string): Promise<void> {
  const { dir, name } = await resolveParent(ctx, path);
  const e = (await loadDir(ctx, dir)).entries.get(key(name));
  if (!e) throw new Ext4EditError("ENOENT", "no such file or directory", path);
  const inode = await inodeRef(ctx, e.ino);
  if ((inode.mode & S_IFMT) === S_IFDIR) throw new Ext4EditError("EISDIR", "is a directory", path);
  await checkReleasable(ctx, inode, path);
  await dirRemove(ctx, dir, name, path);
  putInode(ctx, dir);
  await dropLink(ctx, inode);
}

/**
 * Before a name is removed: refuse immutable files, and when this is the last link, read the
 * block map and xattrs now, so a corrupt inode fails the operation before anything changes.
 */
export async function checkReleasable(ctx: EditContext, inode: Inode, path: string): Promise<void> {
  if (inode.flags & (INODE_FLAGS.IMMUTABLE | INODE_FLAGS.APPEND))
    throw new Ext4EditError("EPERM", "file is immutable or append-only", path);
  if (inode.linksCount <= 1) {
    await fileMap(ctx, inode);
    await loadXattrs(ctx, inode);
  }
}

/** One name fewer; frees the inode when it was the last. */
export async function dropLink(ctx: EditContext, inode: Inode): Promise<void> {
  const fresh = await inodeRef(ctx, inode.ino);
  if (fresh.linksCount > 1) {
    fresh.linksCount--;
    fresh.ctime = timeNow(ctx);
    putInode(ctx, fresh);
    return;
  }
  await releaseInode(ctx, fresh);
}

/** Free an inode with its blocks and xattr block (dtime set, fields cleared). */
export async function releaseInode(ctx: EditContext, inode: Inode): Promise<void> {
  const isDir = (inode.mode & S_IFMT) === S_IFDIR;
  if (!(inode.flags & INODE_FLAGS.INLINE_DATA)) await freeFileBlocks(ctx, inode);
  if (inode.fileAcl) await releaseXattrBlock(ctx, inode.fileAcl);
  inode.fileAcl = 0;
  inode.linksCount = 0;
  inode.size = 0;
  inode.blocksRaw = 0;
  inode.dtime = timeNow(ctx).sec >>> 0;
  inode.iBlock = new Uint8Array(60);
  inode.flags = 0;
  // Forget the in-inode xattrs too.
  const raw = encodeInode(inode, ctx.sb.inodeSize);
  raw.fill(0, 128 + inode.extraIsize);
  inode.raw = raw;
  putInode(ctx, inode);
  await ctx.alloc.freeInode(inode.ino, isDir);
  ctx.dirs.delete(inode.ino);
}

export async function rmdir(ctx: EditContext, path: string): Promise<void> {
  const { dir, name } = await resolveParent(ctx, path);
  const e = (await loadDir(ctx, dir)).entries.get(key(name));
  if (!e) throw new Ext4EditError("ENOENT", "no such file or directory", path);
  const inode = await inodeRef(ctx, e.ino);
  if ((inode.mode & S_IFMT) !== S_IFDIR) throw new Ext4EditError("ENOTDIR", "not a directory", path);
  if ((await loadDir(ctx, inode)).entries.size > 0)
    throw new Ext4EditError("ENOTEMPTY", "directory not empty", path);
  await checkReleasable(ctx, inode, path);
  await dirRemove(ctx, dir, name, path);
  decDirLinks(dir);
  putInode(ctx, dir);
  await releaseInode(ctx, await inodeRef(ctx, inode.ino));
}

export async function rm(
  ctx: EditContext,
  path: string,
  options: { recursive?: boolean; force?: boolean } = {},
): Promise<void> {
  return rmUnder(ctx, path, options, []);
}

/**
 * rm below `ancestors` (the directory inodes being removed around `path`). A damaged directory
 * must not send the walk elsewhere: an entry naming an ancestor (a loop) or whose name holds
 * "/" or NUL (it would resolve to another path) is a format error, nothing more removed.
 */
export async function rmUnder(
  ctx: EditContext,
  path: string,
  options: { recursive?: boolean; force?: boolean },
  ancestors: number[],
): Promise<void> {
  let found: { ino: number; inode: Inode };
  try {
    found = await resolve(ctx, path, false);
  } catch (e) {
    if (options.force && e instanceof Ext4EditError && e.code === "ENOENT") return;
    throw e;
  }
  const { ino, inode } = found;
  if ((inode.mode & S_IFMT) !== S_IFDIR) return unlink(ctx, path);
  if (!options.recursive) throw new Ext4EditError("EISDIR", "is a directory (use recursive)", path);
  const where = { file: ctx.reader.device.name, structure: "directory", inode: ino };
  if (ancestors.includes(ino))
    throw new Ext4FormatError(`directory loop: ${path} is one of its own ancestors`, where);
  const st = await loadDir(ctx, inode);
  // Reached from its parent: its ".." must say so (a damaged entry elsewhere must not make this
  // walk empty a directory that lives somewhere else).
  const from = ancestors[ancestors.length - 1];
  if (from !== undefined && (await dotdot(ctx, inode, path)) !== from)
    throw new Ext4FormatError(`${path}: its ".." is not the directory it was found in`, where);
  const below = [...ancestors, ino];
  for (const [k] of [...st.entries]) {
    if (k.includes("/") || k.includes("\0") || k === "." || k === "..")
      throw new Ext4FormatError(`entry name ${JSON.stringify(k)} in ${path} is invalid`, where);
    const child = `${path.replace(/\/+$/, "")}/${Buffer.from(k, "latin1").toString("utf8")}`;
    await rmUnder(ctx, child, options, below);
  }
  await rmdir(ctx, path);
}
