/** Inode attribute changes: mode, owner, times. */
import { type EditContext, timeNow, toTimestamp } from "./edit-context.js";
import { type Inode, S_IFMT } from "./inode.js";
import { putInode } from "./inode-table.js";
import { resolve } from "./namei.js";

/** Change an inode found by path (`follow`: a final symlink is followed); ctime is set. */
export async function modify(
  ctx: EditContext,
  path: string,
  follow: boolean,
  fn: (inode: Inode) => void,
): Promise<void> {
  const { inode } = await resolve(ctx, path, follow);
  fn(inode);
  inode.ctime = timeNow(ctx);
  putInode(ctx, inode);
}

export async function chmod(ctx: EditContext, path: string, mode: number): Promise<void> {
  await modify(ctx, path, true, (i) => {
    i.mode = (i.mode & S_IFMT) | (mode & 0o7777);
  });
}

export async function chown(ctx: EditContext, path: string, uid: number, gid: number): Promise<void> {
  await modify(ctx, path, true, (i) => {
    if (uid >= 0) i.uid = uid >>> 0;
    if (gid >= 0) i.gid = gid >>> 0;
  });
}

export async function lchown(ctx: EditContext, path: string, uid: number, gid: number): Promise<void> {
  await modify(ctx, path, false, (i) => {
    if (uid >= 0) i.uid = uid >>> 0;
    if (gid >= 0) i.gid = gid >>> 0;
  });
}

export async function utimes(
  ctx: EditContext,
  path: string,
  atime: Date | number,
  mtime: Date | number,
): Promise<void> {
  await modify(ctx, path, true, (i) => {
    i.atime = toTimestamp(atime);
    i.mtime = toTimestamp(mtime);
  });
}

export async function lutimes(
  ctx: EditContext,
  path: string,
  atime: Date | number,
  mtime: Date | number,
): Promise<void> {
  await modify(ctx, path, false, (i) => {
    i.atime = toTimestamp(atime);
    i.mtime = toTimestamp(mtime);
  });
}
