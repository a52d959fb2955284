/**
 * The guest-filesystem contract the CLI writes through. It is shaped like `node:fs/promises`, but every
 * path is a guest path (absolute, POSIX) and symlinks are always resolved inside the guest: an absolute
 * link target means the guest's root, and `..` never climbs above it. Implementations: `HostDirGuestFs`
 * (a host directory standing in for the guest root, for tests), `MemoryGuestFs`, and the ext4 editor.
 */
import { ImgpatchError } from "@imgpatch/disk";

export type GuestFileType = "file" | "directory" | "symlink" | "chardev" | "blockdev" | "fifo" | "socket";

/** What `lstat`/`stat` report. `mode` holds the permission bits only (0o7777); `type` holds the kind. */
export interface GuestStats {
  type: GuestFileType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  /** Inode number: hard links share it. */
  ino: number;
  /** Device numbers of a chardev/blockdev (0 otherwise). */
  rdevMajor: number;
  rdevMinor: number;
  mtime: Date;
  atime: Date;
  ctime: Date;
}

export type GuestNodeType = "chardev" | "blockdev" | "fifo" | "socket";

/**
 * A hook a filesystem calls for each inode it is about to create (each directory `mkdir -p`
 * makes, a new file, symlink or node; not a file that is replaced): the extended attributes to
 * create it with, or undefined. `path` is the new name in this GuestFs's own paths, as the call
 * spelled it (parents not resolved). The SELinux labeler uses it to write labels with the inode
 * instead of a setxattr per file afterwards. Optional for implementations: one that does not call
 * it creates the inode without them (the caller sees the hook was not called).
 */
export type GuestCreateXattrs = (
  path: string,
  type: GuestFileType,
) => Readonly<Record<string, Uint8Array>> | undefined;

export interface GuestOwnerOptions {
  uid?: number;
  gid?: number;
  /** Extended attributes for each inode the call creates (see GuestCreateXattrs). */
  createXattrs?: GuestCreateXattrs;
}

export interface GuestMkdirOptions extends GuestOwnerOptions {
  /** Create missing parents (they get the same mode/owner); no error when the directory exists. */
  recursive?: boolean;
  /** Permission bits, default 0o755. Applied exactly (no umask: the guest has no process umask). */
  mode?: number;
}

export interface GuestWriteOptions extends GuestOwnerOptions {
  /** Permission bits for a new file (default 0o644); an existing file keeps its mode unless given. */
  mode?: number;
  mtime?: Date;
  /** "w" (default) creates or truncates; "wx" fails with EEXIST when the path exists. */
  flag?: "w" | "wx";
}

export type GuestData = string | Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** A directory entry with its lstat (`readdirStats`). */
export interface GuestDirEntry {
  name: string;
  stats: GuestStats;
}

export interface GuestFs {
  /** Stat without following a final symlink. */
  lstat(path: string): Promise<GuestStats>;
  /** Stat following symlinks (inside the guest). */
  stat(path: string): Promise<GuestStats>;
  /** Entry names of a directory (without "." and ".."), sorted bytewise. */
  readdir(path: string): Promise<string[]>;
  /**
   * The entries of a directory (as `readdir` lists them) with each one's lstat: what a tree walk
   * needs in one call per directory, where the filesystem can answer without a path lookup per
   * entry. Optional: walks fall back to readdir + lstat.
   */
  readdirStats?(path: string): Promise<GuestDirEntry[]>;
  readFile(path: string): Promise<Uint8Array>;
  /**
   * The content of the regular file a walk just listed at `path` with `stats` (lstat, so not a
   * symlink): read by its inode number, no path lookup. Optional, and offered only where nothing
   * can change the filesystem between the listing and the read (a read-only reader).
   */
  readFileOfEntry?(path: string, stats: GuestStats): Promise<Uint8Array>;
  readlink(path: string): Promise<string>;
  /** Returns the first directory created (like node), or undefined when nothing was created. */
  mkdir(path: string, options?: GuestMkdirOptions): Promise<string | undefined>;
  /** Writes a regular file (following a final symlink like node does). Parents must exist. */
  writeFile(path: string, data: GuestData, options?: GuestWriteOptions): Promise<void>;
  /**
   * Overwrites bytes of an existing regular file where they lie on disk (no new allocation for
   * the written range; the file grows when the range passes its end). Optional: `--scrub` needs it.
   */
  writeAt?(path: string, offset: number, data: Uint8Array): Promise<void>;
  /** Creates `path` as a symlink whose text is `target` (node argument order). */
  symlink(target: string, path: string, options?: GuestOwnerOptions): Promise<void>;
  /** Hard link `newPath` to the inode of `existingPath`. */
  link(existingPath: string, newPath: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  rename(oldPath: string, newPath: string): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  /** Follows a final symlink. */
  chown(path: string, uid: number, gid: number): Promise<void>;
  /** Changes the symlink itself. */
  lchown(path: string, uid: number, gid: number): Promise<void>;
  utimes(path: string, atime: Date, mtime: Date): Promise<void>;
  /** Like utimes, but changes a final symlink itself. */
  lutimes(path: string, atime: Date, mtime: Date): Promise<void>;
  /** Creates a device node, FIFO or socket inode. */
  mknod(
    path: string,
    type: GuestNodeType,
    mode: number,
    major?: number,
    minor?: number,
    owner?: GuestOwnerOptions,
  ): Promise<void>;
  setxattr(path: string, name: string, value: Uint8Array): Promise<void>;
  getxattr(path: string, name: string): Promise<Uint8Array | undefined>;
  listxattr(path: string): Promise<string[]>;
  /** Like setxattr/getxattr, on a final symlink itself (SELinux labels symlinks too). Optional. */
  lsetxattr?(path: string, name: string, value: Uint8Array): Promise<void>;
  lgetxattr?(path: string, name: string): Promise<Uint8Array | undefined>;
}

export type GuestErrorCode =
  | "ENOENT"
  | "EEXIST"
  | "ENOTDIR"
  | "EISDIR"
  | "ENOTEMPTY"
  | "ELOOP"
  | "EINVAL"
  | "EPERM"
  | "EXDEV"
  | "EIO";

/** A guest path operation failed; `file` is the guest path, `code` a POSIX errno name. */
export class GuestFsError extends ImgpatchError {
  declare readonly code: GuestErrorCode;
  constructor(code: GuestErrorCode, path: string, message: string, options?: { cause?: unknown }) {
    super(code, `${code}: ${message}`, { file: path }, options);
  }
}

export function isGuestError(err: unknown, code?: GuestErrorCode): err is GuestFsError {
  return err instanceof GuestFsError && (code === undefined || err.code === code);
}
