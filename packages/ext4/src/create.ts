/** New inodes with a name: the common path of every creation, symlinks and device nodes. */
import { encodeName, setU32 } from "./bytes.js";
import { dirInsert, dirInsertNow } from "./dir-insert.js";
import { checkDirWritable, DIR_INSERT_RESERVE, loadDir, prepareDir } from "./dir-state.js";
import { fileTypeFromMode } from "./dirent.js";
import { type EditContext, key } from "./edit-context.js";
import type { NodeType, OwnerOptions } from "./editor.js";
import { Ext4EditError } from "./errors.js";
import { INODE_FLAGS } from "./features.js";
import { writeContent } from "./file-write.js";
import { ROOT_INO } from "./fs.js";
import { type Inode, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFSOCK } from "./inode.js";
import { emptyMapRoot } from "./inode-map.js";
import { blankInode, putInode, writeInode } from "./inode-table.js";
import { incDirLinks } from "./link.js";
import { resolveParent } from "./namei.js";
import { initXattrs } from "./xattr-store.js";

/**
 * Allocate an inode, fill it (`fill`), and give it `name` in `parent`: the common path of
 * every creation. Space (an inode, the directory insert) is checked first; a failing `fill`
 * frees the inode again.
 */
export async function createInode(
  ctx: EditContext,
  parent: Inode,
  name: Uint8Array,
  mode: number,
  owner: OwnerOptions,
  path: string,
  fill: (inode: Inode) => Promise<void> | undefined,
  /**
   * The inode is complete once filled (a new file, a symlink, a device): encode it into its
   * table block now instead of keeping the object dirty until flush. Thousands of new files
   * then leave no objects behind for the garbage collector to carry.
   */
  final = false,
): Promise<Inode> {
  if (parent.flags & INODE_FLAGS.INLINE_DATA) await prepareDir(parent, path);
  else checkDirWritable(parent, path);
  const st = ctx.dirs.get(parent.ino) ?? (await loadDir(ctx, parent));
  if (st.entries.has(key(name))) throw new Ext4EditError("EEXIST", "file already exists", path);
  const isDir = (mode & S_IFMT) === S_IFDIR;
  ctx.alloc.reserveInodes(1, path);
  ctx.alloc.reserveBlocks(DIR_INSERT_RESERVE + (isDir ? 1 : 0), path);
  const topLevel = isDir && parent.ino === ROOT_INO;
  const ino =
    ctx.alloc.allocInodeNow(parent.ino, isDir, topLevel, path) ||
    (await ctx.alloc.allocInode(parent.ino, isDir, topLevel, path));
  const inode = blankInode(ctx, ino, mode, owner.uid ?? 0, owner.gid ?? 0);
  try {
    // Attributes first, as the kernel's security_inode_init_security: inline data and inline
    // directories then see the room they leave.
    const xattrs = owner.createXattrs?.(path, mode);
    if (xattrs) await initXattrs(ctx, inode, xattrs, path);
    const pending = fill(inode);
    if (pending) await pending;
  } catch (e) {
    await ctx.alloc.freeInode(ino, isDir);
    throw e;
  }
  if (final) {
    // A former inode of this number (freed in this session) must not be flushed over it.
    ctx.inodes.delete(ino);
    ctx.dirtyInodes.delete(ino);
    await writeInode(ctx, inode);
  } else putInode(ctx, inode);
  const ft = fileTypeFromMode(mode);
  if (!dirInsertNow(ctx, parent, name, ino, ft)) await dirInsert(ctx, parent, name, ino, ft, path);
  if (isDir) incDirLinks(ctx, parent);
  putInode(ctx, parent);
  return inode;
}

export async function symlink(
  ctx: EditContext,
  target: string,
  path: string,
  owner: OwnerOptions = {},
): Promise<void> {
  const t = encodeName(target);
  if (t.length === 0 || t.length > 4095)
    throw new Ext4EditError("ENAMETOOLONG", "symlink target length", path);
  const { dir, name } = await resolveParent(ctx, path);
  await createInode(
    ctx,
    dir,
    name,
    S_IFLNK | 0o777,
    owner,
    path,
    async (inode) => {
      inode.linksCount = 1;
      if (t.length < 60) {
        inode.iBlock = new Uint8Array(60);
        inode.iBlock.set(t);
        inode.size = t.length;
        return;
      }
      emptyMapRoot(ctx, inode);
      await writeContent(ctx, inode, t, path);
    },
    true,
  );
}

/** A device node, FIFO or socket (device numbers in i_block: old or new encoding). */
export async function mknod(
  ctx: EditContext,
  path: string,
  type: NodeType,
  mode: number,
  major = 0,
  minor = 0,
  owner: OwnerOptions = {},
): Promise<void> {
  const fmt = { chardev: S_IFCHR, blockdev: S_IFBLK, fifo: S_IFIFO, socket: S_IFSOCK }[type];
  if (fmt === undefined) throw new Ext4EditError("EINVAL", `unknown node type ${type}`, path);
  const { dir, name } = await resolveParent(ctx, path);
  await createInode(
    ctx,
    dir,
    name,
    fmt | (mode & 0o7777),
    owner,
    path,
    async (inode) => {
      inode.linksCount = 1;
      inode.iBlock = new Uint8Array(60);
      if (fmt === S_IFCHR || fmt === S_IFBLK) {
        if (major < 256 && minor < 256) setU32(inode.iBlock, 0, (major << 8) | minor);
        else setU32(inode.iBlock, 4, ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0);
      }
    },
    true,
  );
}
