/**
 * The editor's name operations (XfsEditor delegates to them): create, link, unlink, rename and
 * remove names, directories, symlinks and device nodes. Each is one editor call — it opens the
 * call's transaction (`ed.check()`) and ends it (`ed.finish()`); names are added and removed by
 * the editor's DirectoryWriter, inodes come from inode-create.ts, file blocks go back through
 * file-write.ts.
 */
import { ensureVersionBit } from "./alloc.js";
import { setXattr } from "./attr-write.js";
import { setBe32 } from "./bytes.js";
import type { CreateXattrs, DirectoryWriter, XfsEditor } from "./editor.js";
import { XfsFsError } from "./errors.js";
import { releaseData } from "./file-write.js";
import { encodeRdev, FMT_DEV, S_IFMT, type XfsInode, type XfsTimestamp } from "./inode.js";
import { createInode, initShortformDir, loadInode, releaseInode, storeInode } from "./inode-create.js";
import { setDotDot } from "./rename.js";
import { VERSION_ATTRBIT } from "./sb.js";
import { writeSymlinkTarget } from "./symlink.js";

const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

/** Parent path and last name of a path. */
export function splitPath(path: string): { parent: string; name: string } {
  const clean = path.replace(/\/+$/, "");
  const i = clean.lastIndexOf("/");
  return { parent: i <= 0 ? "/" : clean.slice(0, i), name: clean.slice(i + 1) };
}

/**
 * The attributes a create hook gives a new inode (written with it, in the same call: the short
 * form of the attribute fork when they fit); the caller stores the inode.
 */
export async function initXattrs(
  ed: XfsEditor,
  inode: XfsInode,
  path: string,
  hook: CreateXattrs | undefined,
): Promise<void> {
  const xattrs = hook?.(path, inode.mode);
  if (!xattrs) return;
  let any = false;
  for (const [name, value] of Object.entries(xattrs)) {
    await setXattr(ed, inode, name, value);
    any = true;
  }
  if (any) await ensureVersionBit(ed.ctx, VERSION_ATTRBIT);
}

/** Remove a file name; the inode goes when its last link does. */
export async function unlink(ed: XfsEditor, path: string): Promise<void> {
  ed.check();
  const dirs = directoriesOf(ed, path);
  const { parent, name } = splitPath(path);
  const inode = await ed.inodeOf(path, false);
  if ((inode.mode & S_IFMT) === S_IFDIR) throw new XfsFsError("EISDIR", "is a directory", path);
  const dir = await ed.inodeOf(parent, true);
  await dirs.removeEntry(ed, dir, new TextEncoder().encode(name));
  const t = ed.now();
  dir.mtime = t;
  dir.ctime = { ...t };
  await storeInode(ed.ctx, dir);
  inode.nlink--;
  if (inode.nlink === 0) {
    await releaseData(ed.ctx, ed.alloc, inode);
    await releaseInode(ed.ctx, ed.inodes, inode);
  } else {
    inode.ctime = { ...t };
    await storeInode(ed.ctx, inode);
  }
  await ed.finish();
}

function directoriesOf(ed: XfsEditor, _path: string): DirectoryWriter {
  return ed.directoryWriter;
}

export async function createFile(
  ed: XfsEditor,
  path: string,
  mode: number,
  owner: { uid?: number; gid?: number; createXattrs?: CreateXattrs },
): Promise<XfsInode> {
  const dirs = directoriesOf(ed, path);
  const { parent, name } = splitPath(path);
  if (!name || name === "." || name === "..") throw new XfsFsError("EINVAL", "bad file name", path);
  if (name.length > 255) throw new XfsFsError("ENAMETOOLONG", "name too long", path);
  const dir = await ed.inodeOf(parent, true);
  if ((dir.mode & S_IFMT) !== S_IFDIR) throw new XfsFsError("ENOTDIR", "parent is not a directory", path);
  const t = ed.now();
  const inode = await createInode(ed.ctx, ed.inodes, {
    mode,
    uid: owner.uid ?? 0,
    gid: owner.gid ?? 0,
    nlink: 1,
    time: t,
    agno: Math.floor(dir.ino / 2 ** (ed.ctx.geo.agBlockLog + ed.ctx.geo.inopbLog)),
  });
  // before the data, as the kernel (the data fork is then laid out beside the attribute fork)
  await initXattrs(ed, inode, path, owner.createXattrs);
  await dirs.addEntry(ed, dir, new TextEncoder().encode(name), inode.ino, mode);
  dir.mtime = t;
  dir.ctime = { ...t };
  await storeInode(ed.ctx, dir);
  return inode;
}

/** Create a directory (with `recursive`, its missing parents too; returns the first one made). */
export async function mkdir(
  ed: XfsEditor,
  path: string,
  options: {
    mode?: number;
    uid?: number;
    gid?: number;
    recursive?: boolean;
    createXattrs?: CreateXattrs;
  } = {},
): Promise<string | undefined> {
  ed.check();
  if (await ed.fs.exists(path)) {
    if (options.recursive && (await ed.fs.stat(path)).isDirectory()) return undefined;
    throw new XfsFsError("EEXIST", "file already exists", path);
  }
  const { parent } = splitPath(path);
  let first: string | undefined;
  if (options.recursive && !(await ed.fs.exists(parent))) {
    first = await ed.mkdir(parent, options);
    ed.restart();
  }
  const dirs = directoriesOf(ed, path);
  const { pdir, name } = await parentOf(ed, path);
  const mode = S_IFDIR | ((options.mode ?? 0o755) & 0o7777);
  const t = ed.now();
  const inode = await createInode(ed.ctx, ed.inodes, {
    mode,
    uid: options.uid ?? 0,
    gid: options.gid ?? 0,
    nlink: 2,
    time: t,
    agno: agOf(ed, pdir.ino),
  });
  initShortformDir(inode, pdir.ino);
  await initXattrs(ed, inode, path, options.createXattrs);
  await storeInode(ed.ctx, inode);
  await dirs.addEntry(ed, pdir, name, inode.ino, mode);
  pdir.nlink++;
  touch(pdir, t);
  await storeInode(ed.ctx, pdir);
  await ed.finish();
  return first ?? path;
}

/** Remove an empty directory. */
export async function rmdir(ed: XfsEditor, path: string): Promise<void> {
  ed.check();
  const inode = await ed.inodeOf(path, false);
  if ((inode.mode & S_IFMT) !== S_IFDIR) throw new XfsFsError("ENOTDIR", "not a directory", path);
  if (inode.ino === ed.fs.geometry.rootIno) throw new XfsFsError("EINVAL", "cannot remove the root", path);
  if ((await ed.fs.readdir(path)).length > 0) throw new XfsFsError("ENOTEMPTY", "directory not empty", path);
  const { pdir, name } = await parentOf(ed, path);
  await directoriesOf(ed, path).removeEntry(ed, pdir, name);
  pdir.nlink--;
  touch(pdir, ed.now());
  await storeInode(ed.ctx, pdir);
  await releaseData(ed.ctx, ed.alloc, inode);
  await releaseInode(ed.ctx, ed.inodes, inode);
  await ed.finish();
}

/** Create a symbolic link at `path` pointing to `target`. */
export async function symlink(
  ed: XfsEditor,
  target: string,
  path: string,
  owner: { uid?: number; gid?: number; createXattrs?: CreateXattrs } = {},
): Promise<void> {
  ed.check();
  if (await ed.fs.exists(path).catch(() => false))
    throw new XfsFsError("EEXIST", "file already exists", path);
  const { pdir, name } = await parentOf(ed, path);
  const mode = S_IFLNK | 0o777;
  const inode = await createInode(ed.ctx, ed.inodes, {
    mode,
    uid: owner.uid ?? 0,
    gid: owner.gid ?? 0,
    nlink: 1,
    time: ed.now(),
    agno: agOf(ed, pdir.ino),
  });
  await writeSymlinkTarget(ed.ctx, ed.alloc, inode, new TextEncoder().encode(target));
  await initXattrs(ed, inode, path, owner.createXattrs);
  await storeInode(ed.ctx, inode);
  await directoriesOf(ed, path).addEntry(ed, pdir, name, inode.ino, mode);
  touch(pdir, ed.now());
  await storeInode(ed.ctx, pdir);
  await ed.finish();
}

/** A second name for a file (not a directory). */
export async function link(ed: XfsEditor, existingPath: string, newPath: string): Promise<void> {
  ed.check();
  const inode = await ed.inodeOf(existingPath, false);
  if ((inode.mode & S_IFMT) === S_IFDIR)
    throw new XfsFsError("EINVAL", "cannot hard-link a directory", existingPath);
  if (await ed.fs.exists(newPath)) throw new XfsFsError("EEXIST", "file already exists", newPath);
  const { pdir, name } = await parentOf(ed, newPath);
  await directoriesOf(ed, newPath).addEntry(ed, pdir, name, inode.ino, inode.mode);
  const t = ed.now();
  touch(pdir, t);
  await storeInode(ed.ctx, pdir);
  inode.nlink++;
  inode.ctime = { ...t };
  await storeInode(ed.ctx, inode);
  await ed.finish();
}

/**
 * Rename a file, symlink or directory (a directory moving to another parent gets its ".." and
 * both parents' link counts updated). A name already at `newPath` is replaced as rename(2) does:
 * a file by a file, an empty directory by a directory (ENOTEMPTY otherwise).
 */
export async function rename(ed: XfsEditor, oldPath: string, newPath: string): Promise<void> {
  ed.check();
  let inode = await ed.inodeOf(oldPath, false);
  const isDir = (inode.mode & S_IFMT) === S_IFDIR;
  if (isDir) {
    // A directory cannot move below itself.
    const src = await ed.fs.realpath(oldPath);
    const dst = await ed.fs.realpath(splitPath(newPath).parent);
    if (dst === src || dst.startsWith(`${src}/`)) {
      throw new XfsFsError("EINVAL", "cannot move a directory into itself", newPath);
    }
  }
  if (await ed.fs.exists(newPath).catch(() => false)) {
    const victim = await ed.inodeOf(newPath, false);
    if (victim.ino === inode.ino) return;
    const victimIsDir = (victim.mode & S_IFMT) === S_IFDIR;
    // As rename(2): a directory replaces an empty directory only, a non-directory a non-directory.
    if (victimIsDir !== isDir) {
      throw new XfsFsError(isDir ? "ENOTDIR" : "EISDIR", "cannot replace across file types", newPath);
    }
    if (victimIsDir) await ed.rmdir(newPath);
    else await ed.unlink(newPath);
    ed.restart();
    inode = await ed.inodeOf(oldPath, false);
  }
  // Parents are read after any unlink above, so no stale copy is written back.
  const from = await parentOf(ed, oldPath);
  const to = await parentOf(ed, newPath);
  const dirs = directoriesOf(ed, newPath);
  // One object per directory inode, so changes made through both names land in one copy.
  const toDir = from.pdir.ino === to.pdir.ino ? from.pdir : await loadInode(ed.ctx, to.pdir.ino);
  const fromDir = from.pdir.ino === to.pdir.ino ? toDir : await loadInode(ed.ctx, from.pdir.ino);
  await dirs.addEntry(ed, toDir, to.name, inode.ino, inode.mode);
  await dirs.removeEntry(ed, fromDir, from.name);
  if (isDir && fromDir !== toDir) {
    // Its ".." names the new parent, whose link count it now adds to.
    await setDotDot(ed.ctx, ed.alloc, inode, toDir.ino, ed.fs.geometry.dirBlockSize);
    fromDir.nlink--;
    toDir.nlink++;
  }
  const t = ed.now();
  touch(toDir, t);
  await storeInode(ed.ctx, toDir);
  if (fromDir !== toDir) {
    touch(fromDir, t);
    await storeInode(ed.ctx, fromDir);
  }
  inode.ctime = { ...t };
  await storeInode(ed.ctx, inode);
  await ed.finish();
}

/** Create a device node, FIFO or socket (device number in the data fork, "dev" format). */
export async function mknod(
  ed: XfsEditor,
  path: string,
  type: "chardev" | "blockdev" | "fifo" | "socket",
  mode: number,
  major = 0,
  minor = 0,
  owner: { uid?: number; gid?: number; createXattrs?: CreateXattrs } = {},
): Promise<void> {
  ed.check();
  const fmt = { chardev: 0o020000, blockdev: 0o060000, fifo: 0o010000, socket: 0o140000 }[type];
  if (fmt === undefined) throw new XfsFsError("EINVAL", `unknown node type ${type}`, path);
  if (await ed.fs.exists(path).catch(() => false))
    throw new XfsFsError("EEXIST", "file already exists", path);
  const { pdir, name } = await parentOf(ed, path);
  const full = fmt | (mode & 0o7777);
  const t = ed.now();
  const inode = await createInode(ed.ctx, ed.inodes, {
    mode: full,
    uid: owner.uid ?? 0,
    gid: owner.gid ?? 0,
    nlink: 1,
    time: t,
    agno: agOf(ed, pdir.ino),
  });
  inode.format = FMT_DEV;
  if (type === "chardev" || type === "blockdev") {
    setBe32(inode.raw, inode.version >= 3 ? 176 : 100, encodeRdev(major, minor));
  }
  await initXattrs(ed, inode, path, owner.createXattrs);
  await storeInode(ed.ctx, inode);
  await directoriesOf(ed, path).addEntry(ed, pdir, name, inode.ino, full);
  touch(pdir, t);
  await storeInode(ed.ctx, pdir);
  await ed.finish();
}

/** Remove a file, or with `recursive` a whole tree; `force` ignores a missing path. */
export async function rm(
  ed: XfsEditor,
  path: string,
  options: { recursive?: boolean; force?: boolean } = {},
): Promise<void> {
  ed.check();
  if (!(await ed.fs.exists(path).catch(() => false))) {
    if (options.force) return;
    throw new XfsFsError("ENOENT", "no such file or directory", path);
  }
  const st = await ed.fs.lstat(path);
  if (!st.isDirectory()) {
    await ed.unlink(path);
    return;
  }
  if (!options.recursive) throw new XfsFsError("EISDIR", "is a directory (use recursive)", path);
  const base = path.replace(/\/+$/, "");
  for (const name of await ed.fs.readdir(path)) await ed.rm(`${base}/${name}`, { recursive: true });
  await ed.rmdir(path);
}

function touch(dir: XfsInode, t: XfsTimestamp): void {
  dir.mtime = { ...t };
  dir.ctime = { ...t };
  if (dir.version >= 3) dir.changecount++;
}

function agOf(ed: XfsEditor, ino: number): number {
  return Math.floor(ino / 2 ** (ed.ctx.geo.agBlockLog + ed.ctx.geo.inopbLog));
}

/** The parent directory (loaded through the buffer cache) and the last name of `path`. */
export async function parentOf(ed: XfsEditor, path: string): Promise<{ pdir: XfsInode; name: Uint8Array }> {
  const { parent, name } = splitPath(path);
  if (!name || name === "." || name === "..") throw new XfsFsError("EINVAL", "bad file name", path);
  const bytes = new TextEncoder().encode(name);
  if (bytes.length > 255) throw new XfsFsError("ENAMETOOLONG", "name too long", path);
  const pdir = await ed.inodeOf(parent, true);
  if ((pdir.mode & S_IFMT) !== S_IFDIR) throw new XfsFsError("ENOTDIR", "parent is not a directory", path);
  return { pdir, name: bytes };
}
