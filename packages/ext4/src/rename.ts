/** rename within and across directories, replacing a file or an empty directory. */
import { setU32 } from "./bytes.js";
import { dirInsert } from "./dir-insert.js";
import { dirRemove, dirRetarget } from "./dir-remove.js";
import { DIR_INSERT_RESERVE, dotdot, finishDx, finishLeaf, loadDir, prepareDir } from "./dir-state.js";
import { fileTypeFromMode } from "./dirent.js";
import { type EditContext, key, timeNow } from "./edit-context.js";
import { Ext4EditError } from "./errors.js";
import { INODE_FLAGS } from "./features.js";
import { ROOT_INO } from "./fs.js";
import { parseDxRootInfo } from "./htree.js";
import { setInlineDirParent } from "./inline-data.js";
import { type Inode, S_IFDIR, S_IFMT } from "./inode.js";
import { inodeRef, putInode } from "./inode-table.js";
import { decDirLinks, incDirLinks } from "./link.js";
import { resolveParent } from "./namei.js";
import { checkReleasable, dropLink, releaseInode } from "./rm.js";

export async function rename(ctx: EditContext, oldPath: string, newPath: string): Promise<void> {
  const src = await resolveParent(ctx, oldPath);
  const srcEntry = (await loadDir(ctx, src.dir)).entries.get(key(src.name));
  if (!srcEntry) throw new Ext4EditError("ENOENT", "no such file or directory", oldPath);
  const dst = await resolveParent(ctx, newPath);
  await prepareDir(src.dir, oldPath);
  if (dst.dir.ino === src.dir.ino) dst.dir = src.dir;
  else await prepareDir(dst.dir, newPath);
  const moving = await inodeRef(ctx, srcEntry.ino);
  const isDir = (moving.mode & S_IFMT) === S_IFDIR;
  if (isDir) {
    // The destination must not be inside the directory being moved.
    let cur = dst.dir.ino;
    for (let guard = 0; cur !== ROOT_INO && guard < 4096; guard++) {
      if (cur === moving.ino)
        throw new Ext4EditError("EINVAL", "cannot move a directory into itself", newPath);
      cur = await dotdot(ctx, await inodeRef(ctx, cur), newPath);
    }
    if (dst.dir.ino === moving.ino)
      throw new Ext4EditError("EINVAL", "cannot move a directory into itself", newPath);
  }
  const dstState = await loadDir(ctx, dst.dir);
  const target = dstState.entries.get(key(dst.name));
  if (target && target.ino === moving.ino) return;
  ctx.alloc.reserveBlocks(DIR_INSERT_RESERVE, newPath);
  let replaced: Inode | undefined;
  if (target) {
    replaced = await inodeRef(ctx, target.ino);
    const tIsDir = (replaced.mode & S_IFMT) === S_IFDIR;
    if (isDir && !tIsDir) throw new Ext4EditError("ENOTDIR", "not a directory", newPath);
    if (!isDir && tIsDir) throw new Ext4EditError("EISDIR", "is a directory", newPath);
    await checkReleasable(ctx, replaced, newPath);
    if (tIsDir && (await loadDir(ctx, replaced)).entries.size > 0)
      throw new Ext4EditError("ENOTEMPTY", "directory not empty", newPath);
    await dirRetarget(ctx, dst.dir, dst.name, moving.ino, fileTypeFromMode(moving.mode), newPath);
    const now = timeNow(ctx);
    dst.dir.mtime = now;
    dst.dir.ctime = now;
  } else {
    await dirInsert(ctx, dst.dir, dst.name, moving.ino, fileTypeFromMode(moving.mode), newPath);
  }
  putInode(ctx, dst.dir);
  // Remove the old name (re-read the source dir: it may be the same inode as dst).
  const srcDir = await inodeRef(ctx, src.dir.ino);
  await dirRemove(ctx, srcDir, src.name, oldPath);
  if (isDir && srcDir.ino !== dst.dir.ino) {
    decDirLinks(srcDir);
    putInode(ctx, srcDir);
    const dstDir = await inodeRef(ctx, dst.dir.ino);
    if (!(replaced && (replaced.mode & S_IFMT) === S_IFDIR)) incDirLinks(ctx, dstDir);
    putInode(ctx, dstDir);
    await setDotDot(ctx, await inodeRef(ctx, moving.ino), dst.dir.ino);
  } else {
    putInode(ctx, srcDir);
  }
  const mv = await inodeRef(ctx, moving.ino);
  mv.ctime = timeNow(ctx);
  putInode(ctx, mv);
  if (replaced) {
    if ((replaced.mode & S_IFMT) === S_IFDIR) {
      if (srcDir.ino === dst.dir.ino || !isDir) {
        const d = await inodeRef(ctx, dst.dir.ino);
        decDirLinks(d);
        putInode(ctx, d);
      }
      await releaseInode(ctx, await inodeRef(ctx, replaced.ino));
    } else await dropLink(ctx, replaced);
  }
}

/** Point a directory's ".." at a new parent. */
export async function setDotDot(ctx: EditContext, child: Inode, parent: number): Promise<void> {
  if (child.flags & INODE_FLAGS.INLINE_DATA) {
    setInlineDirParent(child.iBlock, parent);
    putInode(ctx, child);
    return;
  }
  const st = await loadDir(ctx, child);
  const b = await ctx.store.get(st.pblk[0]);
  setU32(b, 12, parent);
  if (st.indexed) {
    const info = parseDxRootInfo(b);
    finishDx(ctx, child, st.pblk[0], b, 0x18 + info.infoLength);
  } else finishLeaf(ctx, child, st.pblk[0], b);
}
