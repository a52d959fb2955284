/**
 * GuestFs over an XFS filesystem. Reads go to `XfsFs` or `XfsEditor` (@imgpatch/xfs, same
 * node:fs/promises shape and error codes as the ext4 package); writes go to the editor when there
 * is one and the volume is writable, else they fail with EPERM naming the reason — never silently.
 *
 * `writeAt` overwrites a file's blocks where they lie (`--scrub`); preallocated ranges are
 * converted, and blocks another file shares (reflink) are copied first (that file keeps the old
 * bytes, which are its own).
 */
import { ImgpatchError } from "@imgpatch/disk";
import type { XfsEditor, XfsFs, XfsStats } from "@imgpatch/xfs";
import {
  type GuestData,
  type GuestDirEntry,
  type GuestFs,
  GuestFsError,
  type GuestMkdirOptions,
  type GuestNodeType,
  type GuestOwnerOptions,
  type GuestStats,
  type GuestWriteOptions,
} from "../guest/guest-fs.js";
import { ext4StatsToGuest, mapError, sortBytewise, withModeHook } from "./ext4-guest-fs.js";

/** What the XFS reader offers for reads by inode number (walks). */
type XfsByInode = Pick<XfsFs, "readdir" | "readdirInode" | "statInode" | "readInode" | "readFileInode">;

/** Most directory inode numbers XfsGuestFs remembers for readdirStats. */
const DIR_INODE_HINTS = 1 << 18;

/** The read side shared by the reader (XfsFs) and the editor (XfsEditor). */
export interface XfsReadable {
  stat(path: string): Promise<XfsStats>;
  lstat(path: string): Promise<XfsStats>;
  readdir(path: string): Promise<string[]>;
  readFile(path: string): Promise<Uint8Array>;
  readlink(path: string): Promise<string>;
  listxattr(path: string): Promise<string[]>;
  getxattr(path: string, name: string): Promise<Uint8Array>;
  lgetxattr(path: string, name: string): Promise<Uint8Array>;
}

export interface XfsGuestFsOptions {
  /** Why writes are refused; required when `xfs` is a reader. */
  readOnlyReason?: string;
}

/** XfsStats → GuestStats (the fields are the ext4 package's, so the same mapping applies). */
export function xfsStatsToGuest(s: XfsStats): GuestStats {
  return ext4StatsToGuest(s);
}

export class XfsGuestFs implements GuestFs {
  readonly xfs: XfsReadable;
  private readonly readOnlyReason?: string;
  private readonly editor?: XfsEditor;
  /**
   * Inode numbers of the directories the reader's readdirStats listed, by path: a walk's listing
   * of each of them then skips the path lookup (each used once; bounded).
   */
  private readonly dirInodes = new Map<string, number>();

  constructor(xfs: XfsReadable | XfsEditor, options: XfsGuestFsOptions = {}) {
    this.xfs = xfs;
    const candidate = xfs as Partial<XfsEditor>;
    const writable = typeof candidate.writeFile === "function" && typeof candidate.mkdir === "function";
    if (writable) this.editor = xfs as XfsEditor;
    this.readOnlyReason = options.readOnlyReason ?? (writable ? undefined : "the XFS volume is read-only");
  }

  /** True when writes can succeed. */
  get writable(): boolean {
    return this.editor !== undefined && this.readOnlyReason === undefined;
  }

  private w(path: string): XfsEditor {
    if (!this.editor || this.readOnlyReason !== undefined) {
      throw new GuestFsError("EPERM", path, this.readOnlyReason ?? "read-only");
    }
    return this.editor;
  }

  private async r<T>(path: string, f: () => Promise<T>): Promise<T> {
    if (!path.startsWith("/")) throw new GuestFsError("EINVAL", path, "guest paths must be absolute");
    try {
      return await f();
    } catch (err) {
      throw mapError(err, path);
    }
  }

  lstat(path: string): Promise<GuestStats> {
    return this.r(path, async () => xfsStatsToGuest(await this.xfs.lstat(path)));
  }
  stat(path: string): Promise<GuestStats> {
    return this.r(path, async () => xfsStatsToGuest(await this.xfs.stat(path)));
  }
  readdir(path: string): Promise<string[]> {
    return this.r(path, async () => {
      const names = await this.xfs.readdir(path);
      return names
        .filter((n) => n !== "." && n !== "..")
        .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    });
  }
  /**
   * The reader (nothing can change the filesystem) lists and reads by inode number; the editor
   * goes by path.
   */
  private byInode(): XfsByInode | undefined {
    const x = this.xfs as unknown as Partial<XfsByInode>;
    return !this.editor && x.statInode && x.readInode && x.readFileInode ? (x as XfsByInode) : undefined;
  }
  readdirStats(path: string): Promise<GuestDirEntry[]> {
    return this.r(path, async () => {
      const x = this.byInode();
      const prefix = path.endsWith("/") ? path : `${path}/`;
      const out: GuestDirEntry[] = [];
      if (!x) {
        for (const name of await this.xfs.readdir(path))
          out.push({ name, stats: xfsStatsToGuest(await this.xfs.lstat(prefix + name)) });
      } else {
        const ino = this.dirInodes.get(path);
        let list: Awaited<ReturnType<XfsByInode["readdirInode"]>>;
        if (ino !== undefined) {
          this.dirInodes.delete(path);
          list = await x.readdirInode(await x.readInode(ino), path);
        } else list = await x.readdir(path, { withFileTypes: true });
        if (this.dirInodes.size > DIR_INODE_HINTS) this.dirInodes.clear();
        // One after the other: the first inode of a 64-inode chunk reads the chunk (cached), the
        // others find it there; reads in parallel would each read it.
        for (const d of list) {
          const stats = xfsStatsToGuest(await x.statInode(d.ino));
          if (stats.type === "directory") this.dirInodes.set(prefix + d.name, d.ino);
          out.push({ name: d.name, stats });
        }
      }
      return sortBytewise(out);
    });
  }
  readFile(path: string): Promise<Uint8Array> {
    return this.r(path, async () => new Uint8Array(await this.xfs.readFile(path)));
  }
  readFileOfEntry(path: string, stats: GuestStats): Promise<Uint8Array> {
    return this.r(path, async () => {
      const x = this.byInode();
      if (!x || stats.type !== "file") return new Uint8Array(await this.xfs.readFile(path));
      const data = await x.readFileInode(await x.readInode(stats.ino), path);
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    });
  }
  readlink(path: string): Promise<string> {
    return this.r(path, () => this.xfs.readlink(path));
  }
  listxattr(path: string): Promise<string[]> {
    return this.r(path, () => this.xfs.listxattr(path));
  }
  getxattr(path: string, name: string): Promise<Uint8Array | undefined> {
    return this.xattrOf(path, name, false);
  }
  /** A final symlink's own attributes (SELinux labels symlinks too). */
  lgetxattr(path: string, name: string): Promise<Uint8Array | undefined> {
    return this.xattrOf(path, name, true);
  }
  private async xattrOf(path: string, name: string, noFollow: boolean): Promise<Uint8Array | undefined> {
    if (!path.startsWith("/")) throw new GuestFsError("EINVAL", path, "guest paths must be absolute");
    try {
      return new Uint8Array(
        await (noFollow ? this.xfs.lgetxattr(path, name) : this.xfs.getxattr(path, name)),
      );
    } catch (err) {
      if (err instanceof ImgpatchError && err.code === "ENODATA") return undefined;
      throw mapError(err, path);
    }
  }

  mkdir(path: string, options?: GuestMkdirOptions): Promise<string | undefined> {
    return this.r(path, () => this.w(path).mkdir(path, withModeHook(options)));
  }
  writeFile(path: string, data: GuestData, options?: GuestWriteOptions): Promise<void> {
    return this.r(path, () => this.w(path).writeFile(path, data, withModeHook(options)));
  }
  writeAt(path: string, offset: number, data: Uint8Array): Promise<void> {
    return this.r(path, () => this.w(path).writeAt(path, offset, data));
  }
  symlink(target: string, path: string, options?: GuestOwnerOptions): Promise<void> {
    return this.r(path, () => this.w(path).symlink(target, path, withModeHook(options)));
  }
  link(existingPath: string, newPath: string): Promise<void> {
    return this.r(newPath, () => this.w(newPath).link(existingPath, newPath));
  }
  unlink(path: string): Promise<void> {
    return this.r(path, () => this.w(path).unlink(path));
  }
  rmdir(path: string): Promise<void> {
    return this.r(path, () => this.w(path).rmdir(path));
  }
  rename(oldPath: string, newPath: string): Promise<void> {
    return this.r(oldPath, () => this.w(oldPath).rename(oldPath, newPath));
  }
  chmod(path: string, mode: number): Promise<void> {
    return this.r(path, () => this.w(path).chmod(path, mode));
  }
  chown(path: string, uid: number, gid: number): Promise<void> {
    return this.r(path, () => this.w(path).chown(path, uid, gid));
  }
  lchown(path: string, uid: number, gid: number): Promise<void> {
    return this.r(path, () => this.w(path).lchown(path, uid, gid));
  }
  utimes(path: string, atime: Date, mtime: Date): Promise<void> {
    return this.r(path, () => this.w(path).utimes(path, atime, mtime));
  }
  lutimes(path: string, atime: Date, mtime: Date): Promise<void> {
    return this.r(path, () => this.w(path).lutimes(path, atime, mtime));
  }
  mknod(
    path: string,
    type: GuestNodeType,
    mode: number,
    major?: number,
    minor?: number,
    owner?: GuestOwnerOptions,
  ): Promise<void> {
    return this.r(path, () => this.w(path).mknod(path, type, mode, major, minor, withModeHook(owner)));
  }
  setxattr(path: string, name: string, value: Uint8Array): Promise<void> {
    return this.r(path, () => this.w(path).setxattr(path, name, value));
  }
  lsetxattr(path: string, name: string, value: Uint8Array): Promise<void> {
    return this.r(path, () => this.w(path).setxattr(path, name, value, { follow: false }));
  }
}
