/**
 * GuestFs over an ext4 filesystem. Reads go to `Ext4Fs` (@imgpatch/ext4). Writes go to the same
 * object when it has the editor's methods (the writable Ext4Fs shaped like GuestFs); otherwise, or
 * when the volume was opened read-only, they fail with EPERM naming the reason — never silently.
 */
import { ImgpatchError } from "@imgpatch/disk";
import type { Ext4EntryStats, Ext4Stats } from "@imgpatch/ext4";
import {
  type GuestCreateXattrs,
  type GuestData,
  type GuestDirEntry,
  type GuestErrorCode,
  type GuestFileType,
  type GuestFs,
  GuestFsError,
  type GuestMkdirOptions,
  type GuestNodeType,
  type GuestOwnerOptions,
  type GuestStats,
  type GuestWriteOptions,
} from "../guest/guest-fs.js";

/** File type from the S_IFMT bits of an inode mode (the same bits on ext4 and XFS). */
export function typeOfMode(mode: number): GuestFileType {
  switch (mode & 0xf000) {
    case 0x4000:
      return "directory";
    case 0xa000:
      return "symlink";
    case 0x2000:
      return "chardev";
    case 0x6000:
      return "blockdev";
    case 0x1000:
      return "fifo";
    case 0xc000:
      return "socket";
    default:
      return "file";
  }
}

const GUEST_CODES = new Set<string>([
  "ENOENT",
  "EEXIST",
  "ENOTDIR",
  "EISDIR",
  "ENOTEMPTY",
  "ELOOP",
  "EINVAL",
  "EPERM",
  "EXDEV",
  "EIO",
]);

function toDate(t: { sec: number; nsec: number }): Date {
  return new Date(t.sec * 1000 + Math.floor(t.nsec / 1e6));
}

/** The inode fields GuestStats is made of; ext4's and XFS's stats objects both have them. */
export type InodeStatsLike = Pick<
  Ext4Stats,
  | "mode"
  | "uid"
  | "gid"
  | "size"
  | "nlink"
  | "ino"
  | "rdevMajor"
  | "rdevMinor"
  | "mtimeSpec"
  | "atimeSpec"
  | "ctimeSpec"
>;

export function ext4StatsToGuest(s: InodeStatsLike): GuestStats {
  const type = typeOfMode(s.mode);
  return {
    type,
    mode: s.mode & 0o7777,
    uid: s.uid,
    gid: s.gid,
    size: s.size,
    nlink: s.nlink,
    ino: s.ino,
    rdevMajor: s.rdevMajor,
    rdevMinor: s.rdevMinor,
    mtime: toDate(s.mtimeSpec),
    atime: toDate(s.atimeSpec),
    ctime: toDate(s.ctimeSpec),
  };
}

/**
 * Options for an editor whose create hook takes the st_mode (ext4 and XFS): the hook is given
 * the file type instead.
 */
export function withModeHook<T extends GuestOwnerOptions>(options: T | undefined): ModeHooked<T> | undefined {
  const hook = options?.createXattrs;
  if (!options || !hook) return options as ModeHooked<T> | undefined;
  return { ...options, createXattrs: (path: string, mode: number) => hook(path, typeOfMode(mode)) };
}

/** Options as the ext4 and XFS editors take them: the create hook gets the st_mode. */
export type ModeHooked<T extends GuestOwnerOptions> = Omit<T, "createXattrs"> & {
  createXattrs?: (path: string, mode: number) => ReturnType<GuestCreateXattrs>;
};

/** Path errors of the reader become GuestFsError (same code, guest path); others pass through. */
export function mapError(err: unknown, path: string): unknown {
  if (err instanceof GuestFsError) return err;
  if (err instanceof ImgpatchError && GUEST_CODES.has(err.code)) {
    // The reader's message is "FILE: CODE: reason, 'path'": keep the reason only.
    const msg = err.message.replace(/^.*?\b[A-Z]{2,}: /, "").replace(/, '[^']*'$/, "");
    return new GuestFsError(err.code as GuestErrorCode, path, msg, { cause: err });
  }
  return err;
}

/** Most directory inode numbers Ext4GuestFs remembers for readdirStats. */
const DIR_INODE_HINTS = 1 << 18;

/**
 * Sorts entries by the UTF-8 bytes of their names (readdir's order). UTF-16 order is the same
 * except where surrogates meet U+E000..U+FFFF: only names with such characters are encoded.
 */
export function sortBytewise<T extends { name: string }>(list: T[]): T[] {
  if (!list.some((e) => /[\uD800-\uFFFF]/.test(e.name)))
    return list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const keyed = list.map((e) => ({ key: Buffer.from(e.name), e }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  return keyed.map((k) => k.e);
}

/** Methods the ext4 editor adds; present when Ext4Fs is writable. */
type WriteMethods = Pick<
  GuestFs,
  "link" | "unlink" | "rmdir" | "rename" | "chmod" | "chown" | "lchown" | "utimes" | "lutimes" | "setxattr"
> & {
  mkdir(path: string, options?: ModeHooked<GuestMkdirOptions>): Promise<string | undefined>;
  writeFile(path: string, data: GuestData, options?: ModeHooked<GuestWriteOptions>): Promise<void>;
  symlink(target: string, path: string, options?: ModeHooked<GuestOwnerOptions>): Promise<void>;
  mknod(
    path: string,
    type: GuestNodeType,
    mode: number,
    major?: number,
    minor?: number,
    owner?: ModeHooked<GuestOwnerOptions>,
  ): Promise<void>;
  setxattr(path: string, name: string, value: Uint8Array, options?: { follow?: boolean }): Promise<void>;
  writeAt(path: string, offset: number, data: Uint8Array): Promise<void>;
};

/** The read side shared by the reader (Ext4Fs) and the editor (Ext4Editor). */
export interface Ext4Readable {
  stat(path: string): Promise<Ext4Stats>;
  lstat(path: string): Promise<Ext4Stats>;
  readdir(path: string): Promise<string[]>;
  /** Entries with their lstat by inode number (Ext4Fs and Ext4Editor have it). */
  lstatEntries?(path: string): Promise<Ext4EntryStats[]>;
  /** The same for a directory given by inode number (Ext4Fs). */
  lstatEntriesOfInode?(ino: number): Promise<Ext4EntryStats[]>;
  readFile(path: string): Promise<Uint8Array>;
  /** The content of the file with inode number `ino` (Ext4Fs); `path` names it in errors. */
  readFileOfInode?(ino: number, path: string): Promise<Uint8Array>;
  readlink(path: string): Promise<string>;
  listxattr(path: string): Promise<string[]>;
  getxattr(path: string, name: string, options?: { noFollow?: boolean }): Promise<Uint8Array>;
}

export interface Ext4GuestFsOptions {
  /** Why writes are refused (e.g. "opened read-only: give --overlay, -o or --in-place"). */
  readOnlyReason?: string;
  /** Label for messages ("IMAGE partition 3"). */
  name?: string;
}

export class Ext4GuestFs implements GuestFs {
  readonly ext4: Ext4Readable;
  private readonly readOnlyReason?: string;
  private readonly editor?: WriteMethods;
  /**
   * Inode numbers of the directories readdirStats listed, by path, kept only when nothing can
   * change the filesystem (the reader, not the editor): a walk's readdirStats of each of them then
   * skips the path lookup. Each is used once; bounded.
   */
  private readonly dirInodes = new Map<string, number>();

  constructor(ext4: Ext4Readable, options: Ext4GuestFsOptions = {}) {
    this.ext4 = ext4;
    const candidate = ext4 as unknown as Partial<WriteMethods>;
    const writable =
      typeof candidate.writeFile === "function" &&
      typeof candidate.mkdir === "function" &&
      typeof candidate.symlink === "function";
    if (writable) this.editor = ext4 as unknown as WriteMethods;
    this.readOnlyReason =
      options.readOnlyReason ??
      (writable ? undefined : "this build of @imgpatch/ext4 has no editor yet (read-only)");
  }

  /** True when writes can succeed. */
  get writable(): boolean {
    return this.editor !== undefined && this.readOnlyReason === undefined;
  }

  private w(path: string): WriteMethods {
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
    return this.r(path, async () => ext4StatsToGuest(await this.ext4.lstat(path)));
  }
  stat(path: string): Promise<GuestStats> {
    return this.r(path, async () => ext4StatsToGuest(await this.ext4.stat(path)));
  }
  readdir(path: string): Promise<string[]> {
    return this.r(path, async () => {
      const names = await this.ext4.readdir(path);
      return names
        .filter((n) => n !== "." && n !== "..")
        .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    });
  }
  readdirStats(path: string): Promise<GuestDirEntry[]> {
    return this.r(path, async () => {
      const ext4 = this.ext4;
      const prefix = path.endsWith("/") ? path : `${path}/`;
      const ino = this.dirInodes.get(path);
      let raw: Ext4EntryStats[] | undefined;
      if (ino !== undefined && ext4.lstatEntriesOfInode) {
        this.dirInodes.delete(path);
        raw = await ext4.lstatEntriesOfInode(ino);
      } else if (ext4.lstatEntries) raw = await ext4.lstatEntries(path);
      if (!raw) {
        const names = await ext4.readdir(path);
        return sortBytewise(
          await Promise.all(
            names.map(async (name) => ({ name, stats: ext4StatsToGuest(await ext4.lstat(prefix + name)) })),
          ),
        );
      }
      if (!this.editor) {
        if (this.dirInodes.size > DIR_INODE_HINTS) this.dirInodes.clear();
        for (const e of raw) if (e.stats.isDirectory()) this.dirInodes.set(prefix + e.name, e.ino);
      }
      return sortBytewise(raw.map((e) => ({ name: e.name, stats: ext4StatsToGuest(e.stats) })));
    });
  }
  readFile(path: string): Promise<Uint8Array> {
    return this.r(path, async () => new Uint8Array(await this.ext4.readFile(path)));
  }
  readFileOfEntry(path: string, stats: GuestStats): Promise<Uint8Array> {
    return this.r(path, async () => {
      const ext4 = this.ext4;
      // Only the reader: an editor may have changed what the inode number names since the listing.
      if (this.editor || !ext4.readFileOfInode || stats.type !== "file") return this.readFile(path);
      const data = await ext4.readFileOfInode(stats.ino, path);
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    });
  }
  readlink(path: string): Promise<string> {
    return this.r(path, () => this.ext4.readlink(path));
  }
  listxattr(path: string): Promise<string[]> {
    return this.r(path, () => this.ext4.listxattr(path));
  }
  getxattr(path: string, name: string): Promise<Uint8Array | undefined> {
    return this.xattrOf(path, name, false);
  }
  lgetxattr(path: string, name: string): Promise<Uint8Array | undefined> {
    return this.xattrOf(path, name, true);
  }
  private async xattrOf(path: string, name: string, noFollow: boolean): Promise<Uint8Array | undefined> {
    if (!path.startsWith("/")) throw new GuestFsError("EINVAL", path, "guest paths must be absolute");
    try {
      // The editor's getxattr follows links; its reader (brought up to date by any editor read
      // first) can read a link's own attributes.
      let src: Ext4Readable = this.ext4;
      const reader = (this.ext4 as { reader?: Ext4Readable }).reader;
      if (noFollow && reader) {
        await this.ext4.lstat(path);
        src = reader;
      }
      return new Uint8Array(await src.getxattr(path, name, { noFollow }));
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
