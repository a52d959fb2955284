/**
 * An in-memory guest filesystem: inodes with POSIX metadata, hard links, symlinks and xattrs.
 * Used by tests and by dry runs (apply a plan to a scratch copy to see what it would do).
 */
import { collectGuestData } from "./data.js";
import {
  type GuestData,
  type GuestFileType,
  type GuestFs,
  GuestFsError,
  type GuestMkdirOptions,
  type GuestNodeType,
  type GuestOwnerOptions,
  type GuestStats,
  type GuestWriteOptions,
} from "./guest-fs.js";
import { guestBasename, guestDirname, resolveGuestPath, splitGuestPath } from "./paths.js";

interface Inode {
  ino: number;
  rdevMajor: number;
  rdevMinor: number;
  type: GuestFileType;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: Date;
  atime: Date;
  ctime: Date;
  data: Uint8Array;
  target: string;
  entries: Map<string, Inode>;
  xattrs: Map<string, Uint8Array>;
}

export interface MemoryGuestFsOptions {
  /** Timestamp given to new inodes (default: now); fixed values make outputs reproducible. */
  now?: () => Date;
}

export class MemoryGuestFs implements GuestFs {
  private readonly root: Inode;
  private readonly now: () => Date;
  private nextIno = 2;

  constructor(options: MemoryGuestFsOptions = {}) {
    this.now = options.now ?? (() => new Date());
    this.root = this.newInode("directory", 0o755, 0, 0);
    this.root.nlink = 2;
  }

  private newInode(type: GuestFileType, mode: number, uid: number, gid: number): Inode {
    const t = this.now();
    return {
      ino: this.nextIno++,
      rdevMajor: 0,
      rdevMinor: 0,
      type,
      mode: mode & 0o7777,
      uid,
      gid,
      nlink: 1,
      mtime: t,
      atime: t,
      ctime: t,
      data: new Uint8Array(0),
      target: "",
      entries: new Map(),
      xattrs: new Map(),
    };
  }

  /** Inode at a canonical path (no symlinks in it), or null. */
  private lookup(canonical: string): Inode | null {
    let node = this.root;
    for (const c of splitGuestPath(canonical)) {
      if (node.type !== "directory") return null;
      const next = node.entries.get(c);
      if (!next) return null;
      node = next;
    }
    return node;
  }

  private resolve(path: string, followLast: boolean): Promise<string> {
    return resolveGuestPath(path, followLast, {
      kind: async (p) => {
        const n = this.lookup(p);
        if (!n) return null;
        return n.type === "symlink" ? "symlink" : n.type === "directory" ? "directory" : "other";
      },
      readlink: async (p) => this.lookup(p)!.target,
    });
  }

  private async get(path: string, followLast: boolean): Promise<{ canonical: string; node: Inode }> {
    const canonical = await this.resolve(path, followLast);
    const node = this.lookup(canonical);
    if (!node) throw new GuestFsError("ENOENT", path, "no such file or directory");
    return { canonical, node };
  }

  /** Parent directory inode and entry name for creating/removing `path` (final symlink not followed). */
  private async parentOf(
    path: string,
    followLast = false,
  ): Promise<{ dir: Inode; name: string; canonical: string }> {
    const canonical = await this.resolve(path, followLast);
    if (canonical === "/") throw new GuestFsError("EINVAL", path, "operation not valid on the root");
    const dir = this.lookup(guestDirname(canonical));
    if (!dir) throw new GuestFsError("ENOENT", path, "parent directory does not exist");
    if (dir.type !== "directory") throw new GuestFsError("ENOTDIR", path, "parent is not a directory");
    return { dir, name: guestBasename(canonical), canonical };
  }

  private stats(n: Inode): GuestStats {
    const size =
      n.type === "file" ? n.data.length : n.type === "symlink" ? Buffer.byteLength(n.target) : 4096;
    return {
      type: n.type,
      mode: n.mode,
      uid: n.uid,
      gid: n.gid,
      size,
      nlink: n.nlink,
      ino: n.ino,
      rdevMajor: n.rdevMajor,
      rdevMinor: n.rdevMinor,
      mtime: n.mtime,
      atime: n.atime,
      ctime: n.ctime,
    };
  }

  private touchDir(dir: Inode): void {
    const t = this.now();
    dir.mtime = t;
    dir.ctime = t;
  }

  async lstat(path: string): Promise<GuestStats> {
    return this.stats((await this.get(path, false)).node);
  }

  async stat(path: string): Promise<GuestStats> {
    return this.stats((await this.get(path, true)).node);
  }

  async readdir(path: string): Promise<string[]> {
    const { node } = await this.get(path, true);
    if (node.type !== "directory") throw new GuestFsError("ENOTDIR", path, "not a directory");
    return [...node.entries.keys()].sort(compareBytes);
  }

  async readFile(path: string): Promise<Uint8Array> {
    const { node } = await this.get(path, true);
    if (node.type === "directory") throw new GuestFsError("EISDIR", path, "is a directory");
    if (node.type !== "file") throw new GuestFsError("EINVAL", path, `cannot read a ${node.type}`);
    return node.data.slice();
  }

  async readlink(path: string): Promise<string> {
    const { node } = await this.get(path, false);
    if (node.type !== "symlink") throw new GuestFsError("EINVAL", path, "not a symbolic link");
    return node.target;
  }

  async mkdir(path: string, options: GuestMkdirOptions = {}): Promise<string | undefined> {
    const mode = options.mode ?? 0o755;
    if (!options.recursive) {
      const { dir, name, canonical } = await this.parentOf(path);
      if (dir.entries.has(name)) throw new GuestFsError("EEXIST", path, "file exists");
      this.addDir(dir, name, mode, options);
      return canonical;
    }
    let first: string | undefined;
    let current = "";
    for (const c of splitGuestPath(path)) {
      current = `${current}/${c}`;
      let st: GuestStats | undefined;
      try {
        st = await this.stat(current);
      } catch (err) {
        if (!(err instanceof GuestFsError && err.code === "ENOENT")) throw err;
      }
      if (st) {
        if (st.type !== "directory") throw new GuestFsError("ENOTDIR", path, `${current} is not a directory`);
        continue;
      }
      const { dir, name, canonical } = await this.parentOf(current, true);
      this.addDir(dir, name, mode, options);
      first ??= canonical;
    }
    return first;
  }

  private addDir(parent: Inode, name: string, mode: number, owner: GuestOwnerOptions): void {
    const d = this.newInode("directory", mode, owner.uid ?? 0, owner.gid ?? 0);
    d.nlink = 2;
    parent.entries.set(name, d);
    parent.nlink++;
    this.touchDir(parent);
  }

  async writeFile(path: string, data: GuestData, options: GuestWriteOptions = {}): Promise<void> {
    const bytes = await collectGuestData(data);
    const { dir, name } = await this.parentOf(path, true);
    let node = dir.entries.get(name);
    if (node) {
      if (options.flag === "wx") throw new GuestFsError("EEXIST", path, "file exists");
      if (node.type === "directory") throw new GuestFsError("EISDIR", path, "is a directory");
      if (node.type !== "file") throw new GuestFsError("EINVAL", path, `cannot write a ${node.type}`);
      if (options.mode !== undefined) node.mode = options.mode & 0o7777;
    } else {
      node = this.newInode("file", options.mode ?? 0o644, options.uid ?? 0, options.gid ?? 0);
      dir.entries.set(name, node);
      this.touchDir(dir);
    }
    node.data = bytes.slice();
    if (options.uid !== undefined) node.uid = options.uid;
    if (options.gid !== undefined) node.gid = options.gid;
    const t = this.now();
    node.mtime = options.mtime ?? t;
    node.ctime = t;
  }

  async writeAt(path: string, offset: number, data: Uint8Array): Promise<void> {
    const { node } = await this.get(path, true);
    if (node.type !== "file") throw new GuestFsError("EINVAL", path, "not a regular file");
    const old = node.data ?? new Uint8Array(0);
    const next = old.length >= offset + data.length ? old : new Uint8Array(offset + data.length);
    if (next !== old) next.set(old);
    next.set(data, offset);
    node.data = next;
    const t = this.now();
    node.mtime = t;
    node.ctime = t;
  }

  async symlink(target: string, path: string, options: GuestOwnerOptions = {}): Promise<void> {
    const { dir, name } = await this.parentOf(path);
    if (dir.entries.has(name)) throw new GuestFsError("EEXIST", path, "file exists");
    const node = this.newInode("symlink", 0o777, options.uid ?? 0, options.gid ?? 0);
    node.target = target;
    dir.entries.set(name, node);
    this.touchDir(dir);
  }

  async link(existingPath: string, newPath: string): Promise<void> {
    const { node } = await this.get(existingPath, false);
    if (node.type === "directory") throw new GuestFsError("EPERM", existingPath, "hard link to a directory");
    const { dir, name } = await this.parentOf(newPath);
    if (dir.entries.has(name)) throw new GuestFsError("EEXIST", newPath, "file exists");
    dir.entries.set(name, node);
    node.nlink++;
    node.ctime = this.now();
    this.touchDir(dir);
  }

  async unlink(path: string): Promise<void> {
    const { dir, name } = await this.parentOf(path);
    const node = dir.entries.get(name);
    if (!node) throw new GuestFsError("ENOENT", path, "no such file or directory");
    if (node.type === "directory") throw new GuestFsError("EISDIR", path, "is a directory (use rmdir)");
    dir.entries.delete(name);
    node.nlink--;
    this.touchDir(dir);
  }

  async rmdir(path: string): Promise<void> {
    const { dir, name } = await this.parentOf(path);
    const node = dir.entries.get(name);
    if (!node) throw new GuestFsError("ENOENT", path, "no such file or directory");
    if (node.type !== "directory") throw new GuestFsError("ENOTDIR", path, "not a directory");
    if (node.entries.size > 0) throw new GuestFsError("ENOTEMPTY", path, "directory not empty");
    dir.entries.delete(name);
    dir.nlink--;
    this.touchDir(dir);
  }

  async rename(oldPath: string, newPath: string): Promise<void> {
    const from = await this.parentOf(oldPath);
    const node = from.dir.entries.get(from.name);
    if (!node) throw new GuestFsError("ENOENT", oldPath, "no such file or directory");
    const to = await this.parentOf(newPath);
    if (node.type === "directory" && `${to.canonical}/`.startsWith(`${from.canonical}/`)) {
      throw new GuestFsError("EINVAL", newPath, "cannot move a directory into itself");
    }
    const existing = to.dir.entries.get(to.name);
    if (existing === node) return;
    if (existing) {
      if (existing.type === "directory") {
        if (node.type !== "directory") throw new GuestFsError("EISDIR", newPath, "is a directory");
        if (existing.entries.size > 0) throw new GuestFsError("ENOTEMPTY", newPath, "directory not empty");
        to.dir.nlink--;
      } else if (node.type === "directory") {
        throw new GuestFsError("ENOTDIR", newPath, "not a directory");
      }
      existing.nlink--;
    }
    from.dir.entries.delete(from.name);
    to.dir.entries.set(to.name, node);
    if (node.type === "directory") {
      from.dir.nlink--;
      to.dir.nlink++;
    }
    this.touchDir(from.dir);
    this.touchDir(to.dir);
  }

  async chmod(path: string, mode: number): Promise<void> {
    const { node } = await this.get(path, true);
    node.mode = mode & 0o7777;
    node.ctime = this.now();
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    const { node } = await this.get(path, true);
    this.setOwner(node, uid, gid);
  }

  async lchown(path: string, uid: number, gid: number): Promise<void> {
    const { node } = await this.get(path, false);
    this.setOwner(node, uid, gid);
  }

  private setOwner(node: Inode, uid: number, gid: number): void {
    if (uid !== -1) node.uid = uid;
    if (gid !== -1) node.gid = gid;
    node.ctime = this.now();
  }

  async utimes(path: string, atime: Date, mtime: Date): Promise<void> {
    const { node } = await this.get(path, true);
    node.atime = atime;
    node.mtime = mtime;
  }

  async lutimes(path: string, atime: Date, mtime: Date): Promise<void> {
    const { node } = await this.get(path, false);
    node.atime = atime;
    node.mtime = mtime;
  }

  async mknod(
    path: string,
    type: GuestNodeType,
    mode: number,
    major = 0,
    minor = 0,
    owner: GuestOwnerOptions = {},
  ): Promise<void> {
    const { dir, name } = await this.parentOf(path);
    if (dir.entries.has(name)) throw new GuestFsError("EEXIST", path, "file exists");
    const node = this.newInode(type, mode, owner.uid ?? 0, owner.gid ?? 0);
    if (type === "chardev" || type === "blockdev") {
      node.rdevMajor = major;
      node.rdevMinor = minor;
    }
    dir.entries.set(name, node);
    this.touchDir(dir);
  }

  async setxattr(path: string, name: string, value: Uint8Array): Promise<void> {
    const { node } = await this.get(path, false);
    node.xattrs.set(name, value.slice());
  }

  async getxattr(path: string, name: string): Promise<Uint8Array | undefined> {
    const { node } = await this.get(path, false);
    return node.xattrs.get(name)?.slice();
  }

  async listxattr(path: string): Promise<string[]> {
    const { node } = await this.get(path, false);
    return [...node.xattrs.keys()].sort();
  }
}

export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
