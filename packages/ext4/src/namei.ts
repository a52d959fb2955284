/**
 * Path resolution for the editor (symlinks followed inside the guest), new-name checks, the
 * cache of parent directories by path, and reading symlink targets.
 */
import { decodeName } from "./bytes.js";
import { loadDir } from "./dir-state.js";
import { type EditContext, key, nameBytes, rememberKey } from "./edit-context.js";
import { Ext4EditError } from "./errors.js";
import { INODE_FLAGS } from "./features.js";
import { readDataBlock } from "./file-write.js";
import { ROOT_INO } from "./fs.js";
import { type Inode, S_IFDIR, S_IFLNK, S_IFMT } from "./inode.js";
import { fileMap, isFastSymlink } from "./inode-map.js";
import { flushInodes, inodeRef, MAX_DIRTY_INODES } from "./inode-table.js";
import { loadXattrs } from "./xattr-store.js";

const MAX_SYMLINKS = 40;

export function splitPath(path: string): string[] {
  if (typeof path !== "string") throw new Ext4EditError("EINVAL", "path must be a string", String(path));
  return path.split("/").filter((c) => c !== "" && c !== ".");
}

/** Resolve a guest path; symlinks are followed inside the guest. */
export async function resolve(
  ctx: EditContext,
  path: string,
  followLast: boolean,
): Promise<{ ino: number; inode: Inode }> {
  const r = await lookupPath(ctx, path, followLast);
  if (!r) throw new Ext4EditError("ENOENT", "no such file or directory", path);
  return r;
}

/** resolve, but undefined when a component does not exist (no exception on the common miss). */
export async function lookupPath(
  ctx: EditContext,
  path: string,
  followLast: boolean,
): Promise<{ ino: number; inode: Inode } | undefined> {
  if (ctx.dirtyInodes.size >= MAX_DIRTY_INODES) await flushInodes(ctx);
  let todo = splitPath(path);
  const stack: number[] = [];
  let links = 0;
  let cur = await inodeRef(ctx, ROOT_INO);
  while (todo.length) {
    const comp = todo.shift() as string;
    if (comp === "..") {
      stack.pop();
      cur = await inodeRef(ctx, stack.length ? stack[stack.length - 1] : ROOT_INO);
      continue;
    }
    if ((cur.mode & S_IFMT) !== S_IFDIR) throw new Ext4EditError("ENOTDIR", "not a directory", path);
    const name = nameBytes(comp);
    if (name.length > 255) throw new Ext4EditError("ENAMETOOLONG", "name too long", path);
    const e = (ctx.dirs.get(cur.ino) ?? (await loadDir(ctx, cur))).entries.get(key(name));
    if (!e) return undefined;
    const child = await inodeRef(ctx, e.ino);
    if ((child.mode & S_IFMT) === S_IFLNK && (todo.length > 0 || followLast)) {
      if (++links > MAX_SYMLINKS) throw new Ext4EditError("ELOOP", "too many levels of symbolic links", path);
      const target = decodeName(await readLink(ctx, child));
      if (target.startsWith("/")) stack.length = 0;
      todo = [...splitPath(target), ...todo];
      cur = await inodeRef(ctx, stack.length ? stack[stack.length - 1] : ROOT_INO);
      continue;
    }
    stack.push(e.ino);
    cur = child;
  }
  return { ino: stack.length ? stack[stack.length - 1] : ROOT_INO, inode: cur };
}

/** The directory that will hold the last component, and that component. */
export async function resolveParent(
  ctx: EditContext,
  path: string,
): Promise<{ dir: Inode; name: Uint8Array; nameStr: string }> {
  const p = lastComponent(path);
  const dir = knownParentNow(ctx, p.parentPath, path) ?? (await parentDir(ctx, p.parentPath, path));
  return { dir, name: p.name, nameStr: p.nameStr };
}

/** A path's parent path and checked last component. */
export function lastComponent(path: string): { parentPath: string; name: Uint8Array; nameStr: string } {
  const parts = splitPath(path);
  const last = parts.pop();
  if (last === undefined) throw new Ext4EditError("EINVAL", "invalid path", path);
  return { parentPath: parts.join("/"), name: checkedName(last, path), nameStr: last };
}

/** The bytes of a new entry's name, checked. */
export function checkedName(last: string, path: string): Uint8Array {
  if (last === "..") throw new Ext4EditError("EINVAL", "invalid path", path);
  const name = nameBytes(last);
  if (name.length > 255) throw new Ext4EditError("ENAMETOOLONG", "name too long", path);
  if (name.includes(0)) throw new Ext4EditError("EINVAL", "name contains NUL", path);
  // As many UTF-8 bytes as UTF-16 units: all ASCII, so the latin1 key is the string itself.
  if (name.length === last.length) rememberKey(name, last);
  return name;
}

/** Remember what a directory path resolves to (see knownParentNow). */
export function rememberParent(ctx: EditContext, parentPath: string, ino: number): void {
  if (ctx.parentDirs.size >= 4096) ctx.parentDirs.clear();
  ctx.parentDirs.set(parentPath, ino);
}

/**
 * Many operations in a row go to the same few directories: their inode numbers are kept by
 * parent path, and forgotten whenever a name is removed or replaced (nothing else can change
 * what an existing path resolves to). The cached directory inode, when that needs no await.
 */
export function knownParentNow(ctx: EditContext, parentPath: string, path: string): Inode | undefined {
  if (ctx.dirtyInodes.size >= MAX_DIRTY_INODES) return undefined;
  const known = ctx.parentDirs.get(parentPath);
  const inode = known === undefined ? undefined : ctx.inodes.get(known);
  if (inode && (inode.mode & S_IFMT) !== S_IFDIR) throw new Ext4EditError("ENOTDIR", "not a directory", path);
  return inode;
}

export async function parentDir(ctx: EditContext, parentPath: string, path: string): Promise<Inode> {
  const known = ctx.parentDirs.get(parentPath);
  let inode: Inode;
  if (known !== undefined) {
    if (ctx.dirtyInodes.size >= MAX_DIRTY_INODES) await flushInodes(ctx);
    inode = ctx.inodes.get(known) ?? (await inodeRef(ctx, known));
  } else {
    const r = await resolve(ctx, `/${parentPath}`, true);
    inode = r.inode;
    if ((inode.mode & S_IFMT) === S_IFDIR) rememberParent(ctx, parentPath, r.ino);
  }
  if ((inode.mode & S_IFMT) !== S_IFDIR) throw new Ext4EditError("ENOTDIR", "not a directory", path);
  return inode;
}

/** A symlink's target bytes (fast, inline or in blocks), pending writes included. */
export async function readLink(ctx: EditContext, inode: Inode): Promise<Uint8Array> {
  if (inode.size > 4096) throw new Ext4EditError("EINVAL", "symlink target too long", `<inode ${inode.ino}>`);
  if (inode.flags & INODE_FLAGS.INLINE_DATA || isFastSymlink(ctx, inode)) {
    if (inode.size <= 60) return inode.iBlock.slice(0, inode.size);
    const rest = (await loadXattrs(ctx, inode)).find((x) => x.index === 7 && decodeName(x.suffix) === "data");
    const out = new Uint8Array(inode.size);
    out.set(inode.iBlock.subarray(0, 60));
    if (rest) out.set(rest.value.subarray(0, inode.size - 60), 60);
    return out;
  }
  const map = await fileMap(ctx, inode);
  const out = new Uint8Array(inode.size);
  for (const e of map.extents) {
    for (let k = 0; k < e.len; k++) {
      const off = (e.lblk + k) * ctx.bs;
      if (off >= inode.size) break;
      const b = await readDataBlock(ctx, e.pblk + k);
      out.set(b.subarray(0, Math.min(ctx.bs, inode.size - off)), off);
    }
  }
  return out;
}

export async function exists(ctx: EditContext, path: string): Promise<boolean> {
  try {
    await resolve(ctx, path, false);
    return true;
  } catch (e) {
    if (e instanceof Ext4EditError && (e.code === "ENOENT" || e.code === "ENOTDIR")) return false;
    throw e;
  }
}
