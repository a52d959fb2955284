/** Adding a name to a directory: inline, linear or htree (see htree-build.ts for splits). */
import { appendDirBlock, checkDirWritable, finishLeaf, hashOf, loadDir } from "./dir-state.js";
import {
  insertIntoBlock,
  insertIntoBlockAt,
  type LeafRecord,
  leafEnd,
  maxFree,
  writeLeaf,
} from "./dir-write.js";
import { type EditContext, key, timeNow } from "./edit-context.js";
import { COMPAT, INODE_FLAGS } from "./features.js";
import { dxSearchBlock, parseDxRootInfo } from "./htree.js";
import { dxInsert, makeIndexed } from "./htree-build.js";
import { convertInlineDir, inlineDirInsert } from "./inline.js";
import type { Inode } from "./inode.js";
import { hasCompat } from "./superblock.js";

/**
 * dirInsert without an await, for an indexed directory whose root, index and target leaf are
 * cached and whose leaf has room (no split). False, and nothing done, otherwise.
 */
export function dirInsertNow(
  ctx: EditContext,
  dirInode: Inode,
  name: Uint8Array,
  ino: number,
  ft: number,
): boolean {
  if (dirInode.flags & (INODE_FLAGS.INLINE_DATA | INODE_FLAGS.ENCRYPT | INODE_FLAGS.CASEFOLD)) return false;
  const st = ctx.dirs.get(dirInode.ino);
  if (!st?.indexed) return false;
  const root = ctx.store.peek(st.pblk[0]);
  if (!root) return false;
  const info = parseDxRootInfo(root);
  if (info.unusedFlags & 1) return false;
  const hash = hashOf(ctx, name, info.hashVersion);
  let lblk = 0;
  let off = 0x18 + info.infoLength;
  for (let d = 0; d <= info.indirectLevels; d++) {
    const b = ctx.store.peek(st.pblk[lblk]);
    if (!b) return false;
    const slot = dxSearchBlock(b, off, hash);
    if (!slot) return false;
    lblk = slot.lblk;
    off = 8;
  }
  const leafBuf = ctx.store.peek(st.pblk[lblk]);
  if (!leafBuf) return false;
  const rec: LeafRecord = { inode: ino, name, fileType: ctx.ft ? ft : 0 };
  const end = leafEnd(ctx.bs, ctx.csum);
  const at = insertIntoBlockAt(leafBuf, 0, st.hint[lblk] ?? 0, end, ctx.bs, ctx.ft, rec);
  if (at < 0) return false;
  st.hint[lblk] = at;
  finishLeaf(ctx, dirInode, st.pblk[lblk], leafBuf);
  st.entries.set(key(name), { ino, ft: rec.fileType, lblk });
  const now = timeNow(ctx);
  dirInode.mtime = now;
  dirInode.ctime = now;
  return true;
}

/** Insert a name into a directory (dir inode is written by the caller). */
export async function dirInsert(
  ctx: EditContext,
  dirInode: Inode,
  name: Uint8Array,
  ino: number,
  ft: number,
  path: string,
): Promise<void> {
  checkDirWritable(dirInode, path);
  let st = ctx.dirs.get(dirInode.ino) ?? (await loadDir(ctx, dirInode));
  const rec: LeafRecord = { inode: ino, name, fileType: ctx.ft ? ft : 0 };
  const end = leafEnd(ctx.bs, ctx.csum);
  const need = 8 + ((name.length + 3) & ~3);
  if (st.inline) {
    if (await inlineDirInsert(ctx, dirInode, rec, path)) {
      st.entries.set(key(name), { ino, ft, lblk: -1 });
      const now = timeNow(ctx);
      dirInode.mtime = now;
      dirInode.ctime = now;
      return;
    }
    await convertInlineDir(ctx, dirInode, path);
    st = await loadDir(ctx, dirInode);
  }
  if (st.indexed) {
    await dxInsert(ctx, dirInode, st, rec, path);
  } else {
    let done = false;
    for (let l = 0; l < st.pblk.length; l++) {
      if (st.free[l] < need) continue;
      const b = await ctx.store.get(st.pblk[l]);
      if (insertIntoBlock(b, 0, end, ctx.bs, ctx.ft, rec)) {
        st.free[l] = maxFree(b, 0, end, ctx.bs, ctx.ft);
        finishLeaf(ctx, dirInode, st.pblk[l], b);
        st.entries.set(key(name), { ino, ft, lblk: l });
        done = true;
        break;
      }
    }
    if (!done) {
      if (
        st.pblk.length === 1 &&
        hasCompat(ctx.sb, COMPAT.dir_index) &&
        !(dirInode.flags & INODE_FLAGS.INDEX)
      ) {
        await makeIndexed(ctx, dirInode, st, path);
        await dxInsert(ctx, dirInode, st, rec, path);
      } else {
        const { lblk, buf, pblk } = await appendDirBlock(ctx, dirInode, st, path);
        writeLeaf(buf, end, ctx.bs, ctx.ft, [rec]);
        st.free[lblk] = maxFree(buf, 0, end, ctx.bs, ctx.ft);
        finishLeaf(ctx, dirInode, pblk, buf);
        st.entries.set(key(name), { ino, ft, lblk });
      }
    }
  }
  const now = timeNow(ctx);
  dirInode.mtime = now;
  dirInode.ctime = now;
}
