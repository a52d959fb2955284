/**
 * Ext4Editor: create, replace and remove files, directories, links, device nodes and xattrs in
 * an ext2/3/4 filesystem, with an API shaped like node:fs/promises (guest paths; symlinks are
 * resolved inside the guest). Metadata is edited through a write-back block cache and written by
 * sync()/close(); file data goes straight to the device in coalesced runs. Reads (stat,
 * readFile, readdir...) go through the Ext4Fs reader after pending metadata is written.
 *
 * Every operation checks for space (blocks and inodes) before it changes anything, so ENOSPC
 * leaves the filesystem as it was; a file replaced from a stream (size unknown up front) gets its
 * new content in a fresh map first, the old one freed only once the stream has ended.
 *
 * This file is the façade: the operations live in one module each (mkdir.ts, content.ts,
 * rename.ts, rm.ts, ...), plain functions over the shared EditContext (edit-context.ts), like
 * e2fsprogs' lib/ext2fs over its ext2_filsys handle. README.md lists where the code lives.
 */
import type { BlockDevice } from "@imgpatch/disk";
import { Ext4NoSpaceError } from "./alloc.js";
import { chmod, chown, lchown, lutimes, utimes } from "./attrs.js";
import type { BlockStore } from "./block-store.js";
import { setxattr, truncate, writeFile } from "./content.js";
import { mknod, symlink } from "./create.js";
import { EditContext } from "./edit-context.js";
import { Ext4EditError, Ext4UnsupportedError } from "./errors.js";
import { COMPAT, INCOMPAT, RO_COMPAT } from "./features.js";
import { type Ext4EntryStats, Ext4Fs, type Ext4OpenOptions } from "./fs.js";
import type { Inode } from "./inode.js";
import { getInode } from "./inode-table.js";
import { replayJournal } from "./journal-replay.js";
import { link } from "./link.js";
import { mkdir } from "./mkdir.js";
import { exists } from "./namei.js";
import { rename } from "./rename.js";
import { rm, rmdir, unlink } from "./rm.js";
import { settle, sync } from "./sb-stamp.js";
import type { Ext4Dirent, Ext4Stats } from "./stats.js";
import { hasCompat, hasIncompat, hasRoCompat } from "./superblock.js";
import { writeAt } from "./write-at.js";
import { removexattr } from "./xattr-store.js";

export type { EditErrorCode } from "./errors.js";
export { Ext4EditError, Ext4NoSpaceError };

export interface Ext4EditorOptions extends Ext4OpenOptions {
  /**
   * Fixed time (seconds since the epoch, or a Date) for every timestamp the editor sets, and a
   * deterministic inode generation sequence. Default: SOURCE_DATE_EPOCH from the environment
   * when set, else the clock and random generations.
   */
  timestamp?: number | Date;
  /** Ignore SOURCE_DATE_EPOCH in the environment. */
  ignoreSourceDateEpoch?: boolean;
  /**
   * When the journal needs recovery, replay it onto the device first (see replayJournal).
   * Without it such a filesystem is refused.
   */
  replayJournal?: boolean;
  /** sync()/close() ask the device to make the writes durable (fsync). Default true. */
  durable?: boolean;
}

/**
 * Extended attributes for an inode about to be created, asked for once per inode (each directory
 * `mkdir -p` makes, a new file, symlink or node): `path` names it as the call spelled it (parents
 * not resolved), `mode` is its full st_mode. They are written with the inode (in-inode space
 * first), not by a later setxattr; undefined: none. The same object may be answered for many
 * inodes (its in-inode layout is then reused): it must not change afterwards.
 */
export type CreateXattrs = (path: string, mode: number) => Readonly<Record<string, Uint8Array>> | undefined;

export interface OwnerOptions {
  uid?: number;
  gid?: number;
  /** Extended attributes given to each inode the call creates (a replaced file keeps its own). */
  createXattrs?: CreateXattrs;
}

export interface WriteFileOptions extends OwnerOptions {
  mode?: number;
  mtime?: Date | number;
  atime?: Date | number;
  /** "w" (default) creates or replaces; "wx" fails with EEXIST. */
  flag?: "w" | "wx";
}

export interface MkdirOptions extends OwnerOptions {
  recursive?: boolean;
  mode?: number;
}

export type NodeType = "chardev" | "blockdev" | "fifo" | "socket";

export class Ext4Editor {
  readonly reader: Ext4Fs;
  readonly store: BlockStore;
  private readonly ctx: EditContext;
  private closed = false;

  private constructor(reader: Ext4Fs, options: Ext4EditorOptions) {
    this.ctx = new EditContext(reader, options);
    this.reader = reader;
    this.store = this.ctx.store;
  }

  /** Open a filesystem for editing. Refuses what cannot be written correctly. */
  static async open(device: BlockDevice, options: Ext4EditorOptions = {}): Promise<Ext4Editor> {
    if (device.readOnly)
      throw new Ext4UnsupportedError("read-only", "the device is read-only", { file: device.name });
    const openReader = () =>
      Ext4Fs.open(device, { ...options, superblock: options.superblock ?? 0, replayJournal: false });
    let reader = await openReader();
    if (reader.journal.needsRecovery && options.replayJournal) {
      await replayJournal(device);
      reader = await openReader();
    }
    const sb = reader.sb;
    const refuse = (feature: string, why: string) => {
      throw new Ext4UnsupportedError(feature, `cannot edit: ${why}`, {
        file: device.name,
        structure: "superblock",
      });
    };
    if (reader.journal.needsRecovery)
      refuse(
        "needs_recovery",
        "the journal needs recovery: open with { replayJournal: true } to replay it first (or run e2fsck); writing now would be overwritten by the replay",
      );
    if (reader.readOnlyReasons.length) refuse("ro_compat", reader.readOnlyReasons.join("; "));
    if (hasRoCompat(sb, RO_COMPAT.bigalloc))
      refuse("bigalloc", "bigalloc (cluster allocation) is not supported for writing");
    if (hasRoCompat(sb, RO_COMPAT.shared_blocks))
      refuse("shared_blocks", "shared blocks are not supported for writing");
    if (hasRoCompat(sb, RO_COMPAT.has_snapshot))
      refuse("has_snapshot", "snapshots are not supported for writing");
    if (hasRoCompat(sb, RO_COMPAT.orphan_present))
      refuse("orphan_present", "the orphan file holds inodes to clean up");
    if (hasIncompat(sb, INCOMPAT.mmp)) refuse("mmp", "multi-mount protection is not supported for writing");
    if (hasCompat(sb, COMPAT.exclude_bitmap)) refuse("exclude_bitmap", "exclude bitmaps are not supported");
    if (sb.state & 0x2) refuse("errors", "the filesystem is marked as having errors (run e2fsck)");
    if (sb.lastOrphan !== 0) refuse("orphans", "the filesystem has an orphan list to process (run e2fsck)");
    if (sb.revLevel === 0) refuse("rev0", "revision 0 filesystems are not supported for writing");
    return new Ext4Editor(reader, options);
  }

  /** A copy of an inode as it is now (pending changes included). */
  getInode(ino: number): Promise<Inode> {
    return getInode(this.ctx, ino);
  }

  mkdir(path: string, options: MkdirOptions = {}): Promise<string | undefined> {
    return mkdir(this.ctx, path, options);
  }

  writeFile(
    path: string,
    data: string | Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: WriteFileOptions = {},
  ): Promise<void> {
    return writeFile(this.ctx, path, data, options);
  }

  /**
   * Write `data` into an existing regular file at byte `offset`, like pwrite(2) (a final symlink
   * is followed). Only the touched blocks are written: holes in the range get new blocks,
   * unwritten (uninitialised) extents become written where the data lands (split around it),
   * and the size grows when the write ends past it — a write beyond the end leaves a hole. An
   * inline file stays inline while it fits, else its content moves to a block first.
   */
  writeAt(path: string, offset: number, data: Uint8Array | string): Promise<void> {
    return writeAt(this.ctx, path, offset, data);
  }

  symlink(target: string, path: string, owner: OwnerOptions = {}): Promise<void> {
    return symlink(this.ctx, target, path, owner);
  }

  link(existingPath: string, newPath: string): Promise<void> {
    return link(this.ctx, existingPath, newPath);
  }

  mknod(
    path: string,
    type: NodeType,
    mode: number,
    major = 0,
    minor = 0,
    owner: OwnerOptions = {},
  ): Promise<void> {
    return mknod(this.ctx, path, type, mode, major, minor, owner);
  }

  unlink(path: string): Promise<void> {
    return unlink(this.ctx, path);
  }

  rmdir(path: string): Promise<void> {
    return rmdir(this.ctx, path);
  }

  rm(path: string, options: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    return rm(this.ctx, path, options);
  }

  rename(oldPath: string, newPath: string): Promise<void> {
    return rename(this.ctx, oldPath, newPath);
  }

  chmod(path: string, mode: number): Promise<void> {
    return chmod(this.ctx, path, mode);
  }

  chown(path: string, uid: number, gid: number): Promise<void> {
    return chown(this.ctx, path, uid, gid);
  }

  lchown(path: string, uid: number, gid: number): Promise<void> {
    return lchown(this.ctx, path, uid, gid);
  }

  utimes(path: string, atime: Date | number, mtime: Date | number): Promise<void> {
    return utimes(this.ctx, path, atime, mtime);
  }

  lutimes(path: string, atime: Date | number, mtime: Date | number): Promise<void> {
    return lutimes(this.ctx, path, atime, mtime);
  }

  /** Set the size: shrinking frees blocks past the end, growing leaves a hole. */
  truncate(path: string, len = 0): Promise<void> {
    return truncate(this.ctx, path, len);
  }

  setxattr(
    path: string,
    name: string,
    value: Uint8Array | string,
    options: { follow?: boolean } = {},
  ): Promise<void> {
    return setxattr(this.ctx, path, name, value, options);
  }

  removexattr(path: string, name: string, options: { follow?: boolean } = {}): Promise<void> {
    return removexattr(this.ctx, path, name, options);
  }

  // ------------------------------------------------------------ reads (through the reader)

  async stat(path: string): Promise<Ext4Stats> {
    await settle(this.ctx);
    return this.reader.stat(path);
  }
  async lstat(path: string): Promise<Ext4Stats> {
    await settle(this.ctx);
    return this.reader.lstat(path);
  }
  async readFile(path: string): Promise<Buffer> {
    await settle(this.ctx);
    return this.reader.readFile(path);
  }
  async readdir(path: string): Promise<string[]>;
  async readdir(path: string, options: { withFileTypes: true }): Promise<Ext4Dirent[]>;
  async readdir(path: string, options?: { withFileTypes?: boolean }): Promise<string[] | Ext4Dirent[]> {
    await settle(this.ctx);
    if (options?.withFileTypes) return this.reader.readdir(path, { withFileTypes: true });
    return this.reader.readdir(path);
  }
  async lstatEntries(path: string): Promise<Ext4EntryStats[]> {
    await settle(this.ctx);
    return this.reader.lstatEntries(path);
  }
  async readlink(path: string): Promise<string> {
    await settle(this.ctx);
    return this.reader.readlink(path);
  }
  async getxattr(path: string, name: string): Promise<Buffer> {
    await settle(this.ctx);
    return this.reader.getxattr(path, name);
  }
  async listxattr(path: string): Promise<string[]> {
    await settle(this.ctx);
    return this.reader.listxattr(path);
  }
  exists(path: string): Promise<boolean> {
    return exists(this.ctx, path);
  }

  /** Bytes written so far (metadata flushes and file data). */
  get writeCounters(): { writes: number; bytesWritten: number } {
    return this.store.counters;
  }

  /** Write all pending metadata (bitmaps, descriptors, superblocks, inodes, directories). */
  sync(): Promise<void> {
    return sync(this.ctx);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.sync();
    this.closed = true;
    await this.reader.close();
  }
}
