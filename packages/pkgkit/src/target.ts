/**
 * The guest filesystem a package installer writes to, as an interface: the CLI adapts any GuestFs
 * (ext4 image, host directory, memory) to it. Structurally the same as rpm-inject's InjectTarget, so
 * one adapter serves rpm-inject and deb.
 *
 * Every path is an absolute guest path. Symlinks in intermediate components are followed INSIDE the
 * guest (absolute targets start at the guest root, ".." stops at the root); the final component is
 * never followed, except by readFile. Implementations may use `resolveGuestPath` for this.
 */
import { type ErrorLocation, ImgpatchError } from "@imgpatch/disk";
import { splitGuestPath } from "./guest-path.js";

/** The guest tree conflicts with the package (a directory where a file goes, a loop of symlinks...). */
export class TargetConflictError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}) {
    super("ECONFLICT", message, where);
  }
}

export type TargetFileType = "file" | "dir" | "symlink" | "chardev" | "blockdev" | "fifo" | "socket";
export type NodeType = "chardev" | "blockdev" | "fifo" | "socket";

export interface TargetStat {
  type: TargetFileType;
  /** Permission bits incl. setuid/setgid/sticky (mode & 0o7777). */
  perms: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  nlink: number;
  /** Inode number (hard links share it). */
  ino: number;
  rdevMajor: number;
  rdevMinor: number;
}

export interface PkgTarget {
  /** For messages (image path, host directory...). */
  readonly name: string;
  /** Metadata of the final component (not followed); undefined when absent. */
  lstat(path: string): Promise<TargetStat | undefined>;
  exists(path: string): Promise<boolean>;
  readlink(path: string): Promise<string>;
  /** Content of a regular file (a final symlink is followed inside the guest). */
  readFile(path: string): AsyncIterable<Uint8Array>;
  /** Creates one directory; the parent must exist. */
  mkdir(path: string, perms: number): Promise<void>;
  /**
   * Creates or replaces (never follows) a regular file with the streamed content. `size`, when
   * given, is the exact length the content will have (lets an image writer allocate up front).
   */
  writeFile(path: string, content: AsyncIterable<Uint8Array>, perms: number, size?: number): Promise<void>;
  symlink(target: string, path: string): Promise<void>;
  /** Hard link `path` to the existing regular file `existing`. */
  link(existing: string, path: string): Promise<void>;
  mknod(path: string, type: NodeType, perms: number, major: number, minor: number): Promise<void>;
  chown(path: string, uid: number, gid: number): Promise<void>;
  chmod(path: string, perms: number): Promise<void>;
  /** Seconds since the epoch; symlinks themselves are changed, not their targets. */
  utimes(path: string, atime: number, mtime: number): Promise<void>;
  setxattr(path: string, name: string, value: Uint8Array): Promise<void>;
  /** Renames within the guest, replacing a non-directory at `to`. */
  rename(from: string, to: string): Promise<void>;
  /** Removes a non-directory. */
  unlink(path: string): Promise<void>;
  /** Removes an empty directory. */
  rmdir(path: string): Promise<void>;
  /**
   * Names in a directory (symlinks followed inside the guest), without "." and "..". Optional:
   * only the guest keyring (signature checks) lists directories; without it the guest has no keys.
   */
  readdir?(path: string): Promise<string[]>;
  /**
   * Optional fast path: creates or replaces a regular file with its owner, permissions and mtime in
   * one operation (an image writer resolves the path once instead of four times). The final
   * component is never followed; the caller has removed a non-file there.
   */
  writeFileAttrs?(path: string, content: AsyncIterable<Uint8Array>, attrs: NewNodeAttrs): Promise<void>;
  /** Optional fast path: mkdir with owner, permissions and mtime. */
  mkdirAttrs?(path: string, attrs: NewNodeAttrs): Promise<void>;
}

/** Metadata of a node created in one operation. */
export interface NewNodeAttrs {
  perms: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Exact content length, when known. */
  size?: number;
}

/** The conflict error a caller's layer throws (rpm-inject: InjectConflictError). */
export type ConflictErrorClass = new (message: string, where?: ErrorLocation) => ImgpatchError;

/** Linux's limit on symlinks followed while resolving one path. */
export const MAX_SYMLINK_HOPS = 40;

export interface ResolveOps {
  /** Type of the final component of an already symlink-free path, or undefined when absent. */
  typeOf(path: string): Promise<TargetFileType | undefined>;
  readlink(path: string): Promise<string>;
}

/**
 * Resolves symlinks in a guest path inside the guest: returns a path whose intermediate components
 * (and the final one when `followFinal`) are not symlinks. Never leaves the guest root.
 */
export async function resolveGuestPath(
  path: string,
  ops: ResolveOps,
  followFinal: boolean,
  targetName = "<guest>",
  conflict: ConflictErrorClass = TargetConflictError,
): Promise<string> {
  const pending = splitGuestPath(path);
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const c = pending.shift() as string;
    if (c === ".") continue;
    if (c === "..") {
      resolved.pop();
      continue;
    }
    const candidate = `/${[...resolved, c].join("/")}`;
    if (pending.length > 0 || followFinal) {
      const type = await ops.typeOf(candidate);
      if (type === "symlink") {
        if (++hops > MAX_SYMLINK_HOPS) {
          throw new conflict(`too many levels of symbolic links resolving ${path}`, {
            file: targetName,
          });
        }
        const link = await ops.readlink(candidate);
        if (link.startsWith("/")) resolved.length = 0;
        pending.unshift(...splitGuestPath(link));
        continue;
      }
    }
    resolved.push(c);
  }
  return `/${resolved.join("/")}`;
}
