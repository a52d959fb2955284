/** Removing a name from a directory, or pointing it at another inode (rename over a name). */
import { finishLeaf, inLeaf, loadDir, prepareDir } from "./dir-state.js";
import { leafEnd, maxFree, removeFromBlock, retargetInBlock } from "./dir-write.js";
import { type EditContext, key, timeNow } from "./edit-context.js";
import { Ext4EditError } from "./errors.js";
import { inlineDirEdit } from "./inline.js";
import type { Inode } from "./inode.js";

export async function dirRemove(
  ctx: EditContext,
  dirInode: Inode,
  name: Uint8Array,
  path: string,
): Promise<void> {
  await prepareDir(dirInode, path);
  const st = await loadDir(ctx, dirInode);
  const e = st.entries.get(key(name));
  if (!e) throw new Ext4EditError("ENOENT", "no such file or directory", path);
  ctx.parentDirs.clear();
  if (st.inline) {
    const ok = await inlineDirEdit(ctx, dirInode, path, (buf, start, end) =>
      removeFromBlock(buf, start, end, ctx.bs, ctx.ft, name),
    );
    if (!ok) throw new Ext4EditError("EINVAL", "directory entry vanished", path);
  } else {
    const end = leafEnd(ctx.bs, ctx.csum);
    const l = await inLeaf(ctx, st, e, (b) => removeFromBlock(b, 0, end, ctx.bs, ctx.ft, name));
    if (l < 0) throw new Ext4EditError("EINVAL", "directory entry vanished", path);
    // Records merged: the insert hint may no longer be a record boundary.
    st.hint[l] = 0;
    const b = await ctx.store.get(st.pblk[l]);
    st.free[l] = maxFree(b, 0, end, ctx.bs, ctx.ft);
    finishLeaf(ctx, dirInode, st.pblk[l], b);
  }
  st.entries.delete(key(name));
  const now = timeNow(ctx);
  dirInode.mtime = now;
  dirInode.ctime = now;
}

export async function dirRetarget(
  ctx: EditContext,
  dirInode: Inode,
  name: Uint8Array,
  ino: number,
  ft: number,
  path: string,
): Promise<void> {
  const st = await loadDir(ctx, dirInode);
  const e = st.entries.get(key(name));
  if (!e) throw new Ext4EditError("ENOENT", "no such file or directory", path);
  ctx.parentDirs.clear();
  if (st.inline) {
    const ok = await inlineDirEdit(ctx, dirInode, path, (buf, start, end) =>
      retargetInBlock(buf, start, end, ctx.bs, ctx.ft, name, ino, ctx.ft ? ft : 0),
    );
    if (!ok) throw new Ext4EditError("EINVAL", "directory entry vanished", path);
  } else {
    const end = leafEnd(ctx.bs, ctx.csum);
    const l = await inLeaf(ctx, st, e, (b) =>
      retargetInBlock(b, 0, end, ctx.bs, ctx.ft, name, ino, ctx.ft ? ft : 0),
    );
    if (l < 0) throw new Ext4EditError("EINVAL", "directory entry vanished", path);
    finishLeaf(ctx, dirInode, st.pblk[l], await ctx.store.get(st.pblk[l]));
  }
  e.ino = ino;
  e.ft = ft;
}
