/** Hard links and directory link counts (dir_nlink). */
import { dirInsert } from "./dir-insert.js";
import { DIR_INSERT_RESERVE, loadDir, prepareDir } from "./dir-state.js";
import { fileTypeFromMode } from "./dirent.js";
import { type EditContext, key, timeNow } from "./edit-context.js";
import { Ext4EditError } from "./errors.js";
import { RO_COMPAT } from "./features.js";
import { type Inode, S_IFDIR, S_IFMT } from "./inode.js";
import { inodeRef, putInode } from "./inode-table.js";
import { resolve, resolveParent } from "./namei.js";
import { hasRoCompat } from "./superblock.js";

export const LINK_MAX = 65000;

export function incDirLinks(ctx: EditContext, dir: Inode): void {
  if (dir.linksCount === 1) return;
  if (dir.linksCount + 1 >= LINK_MAX) {
    if (!hasRoCompat(ctx.sb, RO_COMPAT.dir_nlink))
      throw new Ext4EditError("EMLINK", "too many subdirectories", `<inode ${dir.ino}>`);
    dir.linksCount = 1;
    return;
  }
  dir.linksCount++;
}

export function decDirLinks(dir: Inode): void {
  if (dir.linksCount > 2) dir.linksCount--;
}

export async function link(ctx: EditContext, existingPath: string, newPath: string): Promise<void> {
  const { inode } = await resolve(ctx, existingPath, false);
  if ((inode.mode & S_IFMT) === S_IFDIR)
    throw new Ext4EditError("EPERM", "hard link to a directory", existingPath);
  if (inode.linksCount >= LINK_MAX) throw new Ext4EditError("EMLINK", "too many links", existingPath);
  const { dir, name } = await resolveParent(ctx, newPath);
  await prepareDir(dir, newPath);
  const st = await loadDir(ctx, dir);
  if (st.entries.has(key(name))) throw new Ext4EditError("EEXIST", "file already exists", newPath);
  ctx.alloc.reserveBlocks(DIR_INSERT_RESERVE, newPath);
  await dirInsert(ctx, dir, name, inode.ino, fileTypeFromMode(inode.mode), newPath);
  putInode(ctx, dir);
  const fresh = await inodeRef(ctx, inode.ino);
  fresh.linksCount++;
  fresh.ctime = timeNow(ctx);
  putInode(ctx, fresh);
}
