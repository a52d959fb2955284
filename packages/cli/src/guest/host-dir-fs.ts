/**
 * A host directory standing in for a guest root, chroot-free: every guest path is resolved by our own
 * resolver (symlinks interpreted inside the root, ".." clamped at it) before the host call, so a guest
 * symlink such as `/lib -> usr/lib` or `/etc/x -> /etc/y` never reaches host paths outside the root.
 *
 * Ownership and xattrs: an unprivileged process cannot chown, and node has no xattr API, so by default
 * both are kept in an overlay keyed by host inode (`ownership: "virtual"`); `stat` reports the overlay.
 * With `ownership: "host"` owners are applied with real lchown (needs root). Xattrs are always virtual.
 */
import type { Stats } from "node:fs";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { collectGuestData } from "./data.js";
import {
  type GuestData,
  type GuestErrorCode,
  type GuestFileType,
  type GuestFs,
  GuestFsError,
  type GuestMkdirOptions,
  type GuestNodeType,
  type GuestOwnerOptions,
  type GuestStats,
  type GuestWriteOptions,
} from "./guest-fs.js";
import { compareBytes } from "./memory-fs.js";
import { resolveGuestPath, splitGuestPath } from "./paths.js";

export interface HostDirGuestFsOptions {
  ownership?: "virtual" | "host";
}

interface Meta {
  uid?: number;
  gid?: number;
  xattrs?: Map<string, Uint8Array>;
}

const KNOWN_CODES = new Set([
  "ENOENT",
  "EEXIST",
  "ENOTDIR",
  "EISDIR",
  "ENOTEMPTY",
  "ELOOP",
  "EINVAL",
  "EPERM",
  "EXDEV",
]);

function wrap(err: unknown, path: string): GuestFsError {
  if (err instanceof GuestFsError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  const c: GuestErrorCode =
    code && KNOWN_CODES.has(code) ? (code as GuestErrorCode) : code === "EACCES" ? "EPERM" : "EIO";
  return new GuestFsError(c, path, (err as Error)?.message ?? String(err), { cause: err });
}

function typeOf(st: Stats): GuestFileType {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "directory";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isCharacterDevice()) return "chardev";
  if (st.isBlockDevice()) return "blockdev";
  if (st.isFIFO()) return "fifo";
  return "socket";
}

export class HostDirGuestFs implements GuestFs {
  readonly root: string;
  private readonly ownership: "virtual" | "host";
  private readonly meta = new Map<string, Meta>();

  constructor(rootDir: string, options: HostDirGuestFsOptions = {}) {
    this.root = rootDir;
    this.ownership = options.ownership ?? "virtual";
  }

  /** Host path of a canonical guest path (already resolved; contains no symlinks or "..") */
  hostPath(canonical: string): string {
    return join(this.root, ...splitGuestPath(canonical));
  }

  private resolve(path: string, followLast: boolean): Promise<string> {
    return resolveGuestPath(path, followLast, {
      kind: async (p) => {
        try {
          const st = await fsp.lstat(this.hostPath(p));
          return st.isSymbolicLink() ? "symlink" : st.isDirectory() ? "directory" : "other";
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
          throw wrap(err, p);
        }
      },
      readlink: async (p) => fsp.readlink(this.hostPath(p)),
    });
  }

  /** Resolves and returns the host path to operate on. */
  private async host(path: string, followLast: boolean): Promise<string> {
    return this.hostPath(await this.resolve(path, followLast));
  }

  private key(st: Stats): string {
    return `${st.dev}:${st.ino}`;
  }

  private metaFor(st: Stats, create: boolean): Meta | undefined {
    const k = this.key(st);
    let m = this.meta.get(k);
    if (!m && create) {
      m = {};
      this.meta.set(k, m);
    }
    return m;
  }

  private toStats(st: Stats): GuestStats {
    const m = this.metaFor(st, false);
    return {
      type: typeOf(st),
      mode: st.mode & 0o7777,
      uid: m?.uid ?? (this.ownership === "virtual" ? 0 : st.uid),
      gid: m?.gid ?? (this.ownership === "virtual" ? 0 : st.gid),
      size: st.size,
      nlink: st.nlink,
      ino: st.ino,
      rdevMajor: st.isCharacterDevice() || st.isBlockDevice() ? Math.floor(st.rdev / 256) & 0xfff : 0,
      rdevMinor:
        st.isCharacterDevice() || st.isBlockDevice() ? (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00) : 0,
      mtime: st.mtime,
      atime: st.atime,
      ctime: st.ctime,
    };
  }

  private async setOwner(hostPath: string, uid: number | undefined, gid: number | undefined): Promise<void> {
    if (uid === undefined && gid === undefined) return;
    if (this.ownership === "host") {
      await fsp.lchown(hostPath, uid ?? -1, gid ?? -1);
      return;
    }
    const m = this.metaFor(await fsp.lstat(hostPath), true)!;
    if (uid !== undefined && uid !== -1) m.uid = uid;
    if (gid !== undefined && gid !== -1) m.gid = gid;
  }

  async lstat(path: string): Promise<GuestStats> {
    try {
      return this.toStats(await fsp.lstat(await this.host(path, false)));
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async stat(path: string): Promise<GuestStats> {
    try {
      return this.toStats(await fsp.lstat(await this.host(path, true)));
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async readdir(path: string): Promise<string[]> {
    try {
      return (await fsp.readdir(await this.host(path, true))).sort(compareBytes);
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async readFile(path: string): Promise<Uint8Array> {
    try {
      const h = await this.host(path, true);
      const st = await fsp.lstat(h);
      if (st.isDirectory()) throw new GuestFsError("EISDIR", path, "is a directory");
      if (!st.isFile()) throw new GuestFsError("EINVAL", path, `cannot read a ${typeOf(st)}`);
      return new Uint8Array(await fsp.readFile(h));
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async readlink(path: string): Promise<string> {
    try {
      return await fsp.readlink(await this.host(path, false));
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async mkdir(path: string, options: GuestMkdirOptions = {}): Promise<string | undefined> {
    const mode = options.mode ?? 0o755;
    const one = async (p: string): Promise<string> => {
      const canonical = await this.resolve(p, false);
      const h = this.hostPath(canonical);
      await fsp.mkdir(h);
      await fsp.chmod(h, mode);
      await this.setOwner(h, options.uid, options.gid);
      return canonical;
    };
    try {
      if (!options.recursive) return await one(path);
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
          if (st.type !== "directory")
            throw new GuestFsError("ENOTDIR", path, `${current} is not a directory`);
          continue;
        }
        const created = await one(await this.resolve(current, true));
        first ??= created;
      }
      return first;
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async writeAt(path: string, offset: number, data: Uint8Array): Promise<void> {
    try {
      const h = await this.host(path, true);
      const st = await fsp.lstat(h);
      if (!st.isFile()) throw new GuestFsError("EINVAL", path, "not a regular file");
      const fh = await fsp.open(h, "r+");
      try {
        await fh.write(data, 0, data.length, offset);
      } finally {
        await fh.close();
      }
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async writeFile(path: string, data: GuestData, options: GuestWriteOptions = {}): Promise<void> {
    try {
      const bytes = await collectGuestData(data);
      const h = await this.host(path, true);
      let existed = true;
      try {
        const st = await fsp.lstat(h);
        if (options.flag === "wx") throw new GuestFsError("EEXIST", path, "file exists");
        if (st.isDirectory()) throw new GuestFsError("EISDIR", path, "is a directory");
        if (!st.isFile()) throw new GuestFsError("EINVAL", path, `cannot write a ${typeOf(st)}`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        existed = false;
      }
      await fsp.writeFile(h, bytes, { flag: existed ? "w" : "wx" });
      if (options.mode !== undefined || !existed) await fsp.chmod(h, options.mode ?? 0o644);
      if (!existed && this.ownership === "virtual") {
        // A new inode may reuse a number whose overlay entry was dropped late; start clean.
        this.meta.delete(this.key(await fsp.lstat(h)));
      }
      await this.setOwner(h, options.uid, options.gid);
      if (options.mtime) await fsp.utimes(h, options.mtime, options.mtime);
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async symlink(target: string, path: string, options: GuestOwnerOptions = {}): Promise<void> {
    try {
      const h = await this.host(path, false);
      await fsp.symlink(target, h);
      await this.setOwner(h, options.uid, options.gid);
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async link(existingPath: string, newPath: string): Promise<void> {
    try {
      await fsp.link(await this.host(existingPath, false), await this.host(newPath, false));
    } catch (err) {
      throw wrap(err, newPath);
    }
  }

  private async dropMeta(h: string): Promise<void> {
    try {
      const st = await fsp.lstat(h);
      if (st.nlink <= 1 || st.isDirectory()) this.meta.delete(this.key(st));
    } catch {
      // already gone: nothing to drop
    }
  }

  async unlink(path: string): Promise<void> {
    try {
      const h = await this.host(path, false);
      const st = await fsp.lstat(h);
      if (st.isDirectory()) throw new GuestFsError("EISDIR", path, "is a directory (use rmdir)");
      await this.dropMeta(h);
      await fsp.unlink(h);
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async rmdir(path: string): Promise<void> {
    try {
      const h = await this.host(path, false);
      const st = await fsp.lstat(h);
      if (!st.isDirectory()) throw new GuestFsError("ENOTDIR", path, "not a directory");
      await fsp.rmdir(h);
      this.meta.delete(this.key(st));
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async rename(oldPath: string, newPath: string): Promise<void> {
    try {
      const from = await this.host(oldPath, false);
      const to = await this.host(newPath, false);
      await fsp.lstat(from);
      try {
        await this.dropMeta(to);
      } catch {
        // target absent
      }
      await fsp.rename(from, to);
    } catch (err) {
      throw wrap(err, oldPath);
    }
  }

  async chmod(path: string, mode: number): Promise<void> {
    try {
      await fsp.chmod(await this.host(path, true), mode & 0o7777);
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    try {
      await this.setOwner(await this.host(path, true), uid, gid);
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async lchown(path: string, uid: number, gid: number): Promise<void> {
    try {
      await this.setOwner(await this.host(path, false), uid, gid);
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async utimes(path: string, atime: Date, mtime: Date): Promise<void> {
    try {
      await fsp.utimes(await this.host(path, true), atime, mtime);
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async lutimes(path: string, atime: Date, mtime: Date): Promise<void> {
    try {
      await fsp.lutimes(await this.host(path, false), atime, mtime);
    } catch (err) {
      throw wrap(err, path);
    }
  }

  /** Node cannot create device nodes or FIFOs: a host directory cannot stand in for them. */
  async mknod(path: string, type: GuestNodeType): Promise<void> {
    throw new GuestFsError("EPERM", path, `cannot create a ${type} in a host directory`);
  }

  async setxattr(path: string, name: string, value: Uint8Array): Promise<void> {
    try {
      const st = await fsp.lstat(await this.host(path, false));
      const m = this.metaFor(st, true)!;
      m.xattrs ??= new Map();
      m.xattrs.set(name, value.slice());
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async getxattr(path: string, name: string): Promise<Uint8Array | undefined> {
    try {
      const st = await fsp.lstat(await this.host(path, false));
      return this.metaFor(st, false)?.xattrs?.get(name)?.slice();
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async listxattr(path: string): Promise<string[]> {
    try {
      const st = await fsp.lstat(await this.host(path, false));
      return [...(this.metaFor(st, false)?.xattrs?.keys() ?? [])].sort();
    } catch (err) {
      throw wrap(err, path);
    }
  }
}
