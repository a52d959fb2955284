/**
 * `XfsEditor`: the editing façade, shaped like the ext4 package's `Ext4Editor` (node:fs/promises-
 * style paths and errors). It reads through the `XfsFs` reader and changes the filesystem through
 * the space engine (alloc.ts, ialloc.ts), inode-create.ts and file-write.ts; every call commits
 * its changes before it returns (metadata written with CRCs and the log's LSN, superblock counters
 * kept exact), so a failure leaves earlier calls' work in place.
 *
 * It refuses, with typed errors, what it must not touch: a dirty log (the kernel would replay it
 * over our changes), `needsrepair` and unknown incompat features (refused by the reader already),
 * unknown ro_compat features, a realtime subvolume or an external log.
 *
 * Names are added and removed by a DirectoryWriter (dir2-write.ts by default); directory forms it
 * cannot write yet are refused by it with a typed error.
 */
import type { BlockDevice } from "@imgpatch/disk";
import { ReadOnlyError } from "@imgpatch/disk";
import { spaceGeometry } from "./ag.js";
import { Allocator, ensureVersionBit, type SpaceContext } from "./alloc.js";
import { removeXattr, setXattr } from "./attr-write.js";
import { BufCache, CacheView } from "./buf.js";
import { dir2Writer } from "./dir2-write.js";
import * as names from "./editor-names.js";
import { XfsFsError, XfsUnsupportedError } from "./errors.js";
import { releaseData, writeData } from "./file-write.js";
import { XfsFs, type XfsOpenOptions } from "./fs.js";
import { InodeAllocator } from "./ialloc.js";
import { S_IFMT, type XfsInode, type XfsTimestamp } from "./inode.js";
import { loadInode, storeInode } from "./inode-create.js";
import type { XfsLogState } from "./log.js";
import { persistLogRecovery } from "./log-recover-write.js";
import { RecoveredDevice } from "./recovered-device.js";
import { checkFeatures, VERSION_ATTRBIT } from "./sb.js";
import type { XfsStats } from "./stats.js";
import { writeAtInode } from "./write-at.js";

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const _S_IFLNK = 0o120000;
/** Changed metadata buffers kept in memory before they are written (about 8 MiB of 4 KiB blocks). */
const PENDING_BUFFERS = 2048;
/** ... or this many bytes of metadata and small file contents. */
const PENDING_BYTES = 32 * 1024 * 1024;

/** What the editor needs from the directory code to add or remove a name. */
export interface DirectoryWriter {
  /** Add `name` → `ino` (file type from `mode`) to directory `dir`; the caller stores `dir`. */
  addEntry(ed: XfsEditor, dir: XfsInode, name: Uint8Array, ino: number, mode: number): Promise<void>;
  /** Remove `name` from directory `dir`. */
  removeEntry(ed: XfsEditor, dir: XfsInode, name: Uint8Array): Promise<void>;
}

export interface XfsEditorOptions extends XfsOpenOptions {
  /** Fixed time for every timestamp the editor sets. Default: SOURCE_DATE_EPOCH when set, else the clock. */
  timestamp?: number | Date;
  ignoreSourceDateEpoch?: boolean;
  /** sync()/close() flush the device. Default true. */
  durable?: boolean;
  /** The directory writers (see DirectoryWriter); default: dir2-write.ts. */
  directories?: DirectoryWriter;
  /**
   * A dirty log (v5) is recovered before editing, as a mount would: the in-memory replay is
   * written to the device with fresh summary counters and an unmount record (default). `false`:
   * refuse a dirty log (XfsUnsupportedError "dirty-log").
   */
  recoverLog?: boolean;
}

/**
 * Extended attributes for an inode about to be created, asked for once per inode (each directory
 * `mkdir -p` makes, a new file, symlink or node; not a replaced file): `path` as the call spelled
 * it, `mode` the full st_mode. Written in the call that creates the inode; undefined: none.
 */
export type CreateXattrs = (path: string, mode: number) => Readonly<Record<string, Uint8Array>> | undefined;

export interface XfsWriteFileOptions {
  /** Attributes for the file when this call creates it (see CreateXattrs). */
  createXattrs?: CreateXattrs;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Leave all-zero blocks as holes. */
  sparse?: boolean;
  /** "w" (default) creates or replaces; "wx" fails with EEXIST. */
  flag?: "w" | "wx";
  mtime?: Date | number;
  atime?: Date | number;
}

/**
 * The LSN stamped into changed v5 metadata: the log's last record (or its tail when that is
 * older), and in any case strictly behind the head — xfs_repair reports metadata "ahead of the
 * log" otherwise. Older is harmless: after a clean unmount nothing is replayed.
 */
export function stampLsn(log: XfsLogState): bigint {
  const head = (BigInt(log.headCycle) << 32n) | BigInt(log.headBlock);
  // A log formatted with cycle > 1 (xfs_admin -U, xfs_repair) has one record at block 0 whose
  // tail points into the previous cycle; xfs_repair then counts the log as being at (cycle:0), so
  // only the tail is safely behind it.
  const last = log.tailLsn > 0n && log.tailLsn < log.lastLsn ? log.tailLsn : log.lastLsn;
  if (last < head) return last;
  if (log.headBlock > 0) return (BigInt(log.headCycle) << 32n) | BigInt(log.headBlock - 1);
  if (log.headCycle > 1) return (BigInt(log.headCycle - 1) << 32n) | BigInt(Math.max(log.logBBs - 1, 0));
  return 0n;
}

function toTimestamp(t: Date | number): XfsTimestamp {
  const ms = typeof t === "number" ? t * 1000 : t.getTime();
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: Math.round((ms - sec * 1000) * 1e6) };
}

export class XfsEditor {
  private closed = false;
  private deltaAtStart = { fdblocks: 0, icount: 0, ifree: 0 };

  private constructor(
    /**
     * The filesystem as the editor sees it: the device with the changes not yet written laid
     * over it (read-only; writes go through `ctx.bufs`).
     */
    readonly device: BlockDevice,
    readonly fs: XfsFs,
    readonly ctx: SpaceContext,
    public alloc: Allocator,
    public inodes: InodeAllocator,
    private readonly options: XfsEditorOptions,
  ) {}

  static async open(device: BlockDevice, options: XfsEditorOptions = {}): Promise<XfsEditor> {
    if (device.readOnly) throw new ReadOnlyError("the device is open read-only", { file: device.name });
    let fs = await XfsFs.open(device, options);
    const where = { file: device.name };
    const access = checkFeatures(fs.sb, where);
    if (access.writeRefusal) {
      throw new XfsUnsupportedError(
        access.writeRefusal.feature,
        `cannot edit: ${access.writeRefusal.reason}`,
        where,
      );
    }
    let log = fs.logState();
    if (
      log.state === "dirty" &&
      options.recoverLog !== false &&
      fs.replayStats &&
      fs.device instanceof RecoveredDevice
    ) {
      const view = fs.device;
      await persistLogRecovery(device, fs.geometry, log, view.sectors, fs.replayStats, (o, l) =>
        view.read(o, l),
      );
      fs = await XfsFs.open(device, options);
      log = fs.logState();
      options.onWarning?.({
        code: "ELOGRECOVERED",
        message:
          "the log was recovered before editing (its replay written, summary counters recomputed, an unmount record added), as a mount would",
      });
    }
    if (log.state !== "clean") {
      throw new XfsUnsupportedError(
        "dirty-log",
        `the log is not clean (${log.reason ?? log.state}): boot the guest once or mount and unmount the filesystem, or run xfs_repair, then edit it`,
        where,
      );
    }
    const geo = spaceGeometry(fs.geometry, device.name);
    const ctx: SpaceContext = {
      geo,
      bufs: new BufCache(device, { crc: geo.crc, lsn: stampLsn(log) }),
      delta: { fdblocks: 0, icount: 0, ifree: 0 },
    };
    // The reader the editor resolves paths with reads through the buffer cache.
    const cacheView = new CacheView(ctx.bufs);
    const view = await XfsFs.open(cacheView, options);
    // Its caches live as long as the editor: every change the cache sees is passed on to them.
    ctx.bufs.onChange = (offset, length, data, inodes) => view.invalidate(offset, length, data, inodes);
    const alloc = new Allocator(ctx);
    return new XfsEditor(cacheView, view, ctx, alloc, new InodeAllocator(alloc), options);
  }

  /** The DirectoryWriter names go through. */
  get directoryWriter(): DirectoryWriter {
    return this.options.directories ?? dir2Writer;
  }

  /** The time the editor stamps. */
  now(): XfsTimestamp {
    const o = this.options;
    if (o.timestamp !== undefined) return toTimestamp(o.timestamp);
    const env = o.ignoreSourceDateEpoch ? undefined : process.env.SOURCE_DATE_EPOCH;
    if (env && /^\d+$/.test(env)) return { sec: Number(env), nsec: 0 };
    return toTimestamp(new Date());
  }

  /**
   * Every public call starts here and ends in `finish()`. A call that threw never reached
   * `finish()`, so an open transaction here belongs to it: everything it changed is put back (the
   * buffers, the counter deltas and the space engine's decoded AG state), and the image is as it
   * was before that call.
   */
  /** @internal Opens the transaction of a call (see the class comment). */
  check(): void {
    if (this.closed) throw new Error("XfsEditor is closed");
    if (this.ctx.bufs.inTransaction) this.rollback();
    this.ctx.bufs.begin();
    this.deltaAtStart = { ...this.ctx.delta };
  }

  /** Reads first undo a call that failed half way (see check). */
  private settle(): void {
    if (this.ctx.bufs.inTransaction) this.rollback();
  }

  /** After a nested public call (which ended the transaction), open a new one for the rest. */
  /** @internal */
  restart(): void {
    this.ctx.bufs.begin();
    this.deltaAtStart = { ...this.ctx.delta };
  }

  private rollback(): void {
    this.ctx.bufs.rollback();
    Object.assign(this.ctx.delta, this.deltaAtStart);
    this.alloc = new Allocator(this.ctx);
    this.inodes = new InodeAllocator(this.alloc);
    this.fs.clearCaches();
  }

  /** A call succeeded: keep its changes; write them out once enough are pending. */
  /** @internal */
  async finish(): Promise<void> {
    this.ctx.bufs.end();
    const bufs = this.ctx.bufs;
    if (bufs.dirtyCount >= PENDING_BUFFERS || bufs.dirtyBytes >= PENDING_BYTES) await this.commit();
  }

  /** Write every change made so far and let the reader see it. */
  async commit(): Promise<void> {
    await this.alloc.commit();
  }

  /** @internal The inode a path names, read through the buffer cache. */
  async inodeOf(path: string, follow: boolean): Promise<XfsInode> {
    const ino = await this.fs.inoIfExists(path, follow);
    // A path that does not resolve: the reader's own error (ENOENT, ENOTDIR, ...).
    if (ino === undefined) await (follow ? this.fs.stat(path) : this.fs.lstat(path));
    return loadInode(this.ctx, ino as number);
  }

  private async change(path: string, follow: boolean, fn: (inode: XfsInode) => void): Promise<void> {
    this.check();
    const inode = await this.inodeOf(path, follow);
    fn(inode);
    inode.ctime = this.now();
    if (inode.version >= 3) inode.changecount++;
    await storeInode(this.ctx, inode);
    await this.finish();
  }

  async chmod(path: string, mode: number): Promise<void> {
    await this.change(path, true, (i) => {
      i.mode = (i.mode & S_IFMT) | (mode & 0o7777);
    });
  }
  async chown(path: string, uid: number, gid: number): Promise<void> {
    await this.change(path, true, (i) => Object.assign(i, { uid, gid }));
  }
  async lchown(path: string, uid: number, gid: number): Promise<void> {
    await this.change(path, false, (i) => Object.assign(i, { uid, gid }));
  }
  async utimes(path: string, atime: Date | number, mtime: Date | number): Promise<void> {
    await this.change(path, true, (i) =>
      Object.assign(i, { atime: toTimestamp(atime), mtime: toTimestamp(mtime) }),
    );
  }
  async lutimes(path: string, atime: Date | number, mtime: Date | number): Promise<void> {
    await this.change(path, false, (i) =>
      Object.assign(i, { atime: toTimestamp(atime), mtime: toTimestamp(mtime) }),
    );
  }

  /** Replace a regular file's content, or create the file (needs the directory writers). */
  async writeFile(
    path: string,
    data: string | Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: XfsWriteFileOptions = {},
  ): Promise<void> {
    // A streamed source is written as it arrives (bounded memory); if it throws, the call's
    // transaction puts everything back.
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    this.check();
    let inode: XfsInode | undefined;
    if ((await this.fs.inoIfExists(path)) !== undefined) {
      if (options.flag === "wx") throw new XfsFsError("EEXIST", "file already exists", path);
      inode = await this.inodeOf(path, true);
      if ((inode.mode & S_IFMT) !== S_IFREG) {
        throw new XfsFsError(
          (inode.mode & S_IFMT) === S_IFDIR ? "EISDIR" : "EINVAL",
          "not a regular file",
          path,
        );
      }
    } else {
      inode = await names.createFile(this, path, S_IFREG | ((options.mode ?? 0o644) & 0o7777), options);
    }
    const t = this.now();
    await writeData(this.ctx, this.alloc, inode, bytes, { sparse: options.sparse });
    if (options.mode !== undefined) inode.mode = (inode.mode & S_IFMT) | (options.mode & 0o7777);
    if (options.uid !== undefined) inode.uid = options.uid;
    if (options.gid !== undefined) inode.gid = options.gid;
    inode.mtime = options.mtime !== undefined ? toTimestamp(options.mtime) : t;
    if (options.atime !== undefined) inode.atime = toTimestamp(options.atime);
    inode.ctime = { ...t };
    if (inode.version >= 3) inode.changecount++;
    await storeInode(this.ctx, inode);
    await this.finish();
  }

  /**
   * Write `data` into an existing regular file at byte `offset`, like pwrite(2) (a final symlink
   * is followed): written blocks are overwritten where they lie, holes get new blocks, the size
   * grows when the write ends past it (see write-at.ts for what is refused).
   */
  async writeAt(path: string, offset: number, data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(offset + bytes.length))
      throw new XfsFsError("EINVAL", "invalid offset", path);
    // Bytes written in place cannot be taken back, nor be overtaken by pending older contents of
    // the same blocks: what earlier calls changed goes out first, outside this call's transaction.
    if (this.closed) throw new Error("XfsEditor is closed");
    this.settle();
    await this.commit();
    this.check();
    const inode = await this.inodeOf(path, true);
    await writeAtInode(this, inode, path, offset, bytes);
    await this.finish();
  }

  /** Cut or extend (with zeros, as a hole) a regular file to `len` bytes. */
  async truncate(path: string, len = 0): Promise<void> {
    this.check();
    const inode = await this.inodeOf(path, true);
    if ((inode.mode & S_IFMT) !== S_IFREG) throw new XfsFsError("EINVAL", "not a regular file", path);
    if (len === 0) await releaseData(this.ctx, this.alloc, inode);
    else {
      const old = await this.fs.readFile(path);
      const next = new Uint8Array(len);
      next.set(old.subarray(0, Math.min(len, old.length)));
      await writeData(this.ctx, this.alloc, inode, next, { sparse: len > old.length });
    }
    inode.size = len;
    const t = this.now();
    inode.mtime = t;
    inode.ctime = { ...t };
    await storeInode(this.ctx, inode);
    await this.finish();
  }

  /** Remove a file name; the inode goes when its last link does. */
  unlink(path: string): Promise<void> {
    return names.unlink(this, path);
  }

  /** Create a directory (with `recursive`, its missing parents too; returns the first one made). */
  mkdir(
    path: string,
    options: {
      mode?: number;
      uid?: number;
      gid?: number;
      recursive?: boolean;
      createXattrs?: CreateXattrs;
    } = {},
  ): Promise<string | undefined> {
    return names.mkdir(this, path, options);
  }

  /** Remove an empty directory. */
  rmdir(path: string): Promise<void> {
    return names.rmdir(this, path);
  }

  /** Create a symbolic link at `path` pointing to `target`. */
  symlink(
    target: string,
    path: string,
    owner: { uid?: number; gid?: number; createXattrs?: CreateXattrs } = {},
  ): Promise<void> {
    return names.symlink(this, target, path, owner);
  }

  /** A second name for a file (not a directory). */
  link(existingPath: string, newPath: string): Promise<void> {
    return names.link(this, existingPath, newPath);
  }

  /**
   * Rename a file, symlink or directory (a directory moving to another parent gets its ".." and
   * both parents' link counts updated). A name already at `newPath` is replaced as rename(2) does:
   * a file by a file, an empty directory by a directory (ENOTEMPTY otherwise).
   */
  rename(oldPath: string, newPath: string): Promise<void> {
    return names.rename(this, oldPath, newPath);
  }

  /** Create a device node, FIFO or socket (device number in the data fork, "dev" format). */
  mknod(
    path: string,
    type: "chardev" | "blockdev" | "fifo" | "socket",
    mode: number,
    major = 0,
    minor = 0,
    owner: { uid?: number; gid?: number; createXattrs?: CreateXattrs } = {},
  ): Promise<void> {
    return names.mknod(this, path, type, mode, major, minor, owner);
  }

  /** Remove a file, or with `recursive` a whole tree; `force` ignores a missing path. */
  rm(path: string, options: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    return names.rm(this, path, options);
  }

  /** Set an extended attribute (Linux name, e.g. "security.selinux"; POSIX ACLs converted). */
  async setxattr(
    path: string,
    name: string,
    value: Uint8Array | string,
    options: { follow?: boolean } = {},
  ): Promise<void> {
    const bytes = typeof value === "string" ? new TextEncoder().encode(value) : value;
    await this.attrChange(path, options.follow ?? true, async (inode) => {
      await setXattr(this, inode, name, bytes);
      await ensureVersionBit(this.ctx, VERSION_ATTRBIT);
    });
  }
  async lsetxattr(path: string, name: string, value: Uint8Array | string): Promise<void> {
    await this.setxattr(path, name, value, { follow: false });
  }
  /** Remove an extended attribute (ENODATA when absent). */
  async removexattr(path: string, name: string, options: { follow?: boolean } = {}): Promise<void> {
    await this.attrChange(path, options.follow ?? true, (inode) => removeXattr(this, inode, name));
  }

  private async attrChange(
    path: string,
    follow: boolean,
    fn: (inode: XfsInode) => Promise<void>,
  ): Promise<void> {
    this.check();
    const inode = await this.inodeOf(path, follow);
    await fn(inode);
    inode.ctime = this.now();
    if (inode.version >= 3) inode.changecount++;
    await storeInode(this.ctx, inode);
    await this.finish();
  }

  // ---- reading (through the reader, which sees every committed change) -------------------------

  stat(path: string): Promise<XfsStats> {
    this.settle();
    return this.fs.stat(path);
  }
  lstat(path: string): Promise<XfsStats> {
    this.settle();
    return this.fs.lstat(path);
  }
  readFile(path: string): Promise<Buffer> {
    this.settle();
    return this.fs.readFile(path);
  }
  readdir(path: string): Promise<string[]> {
    this.settle();
    return this.fs.readdir(path);
  }
  readlink(path: string): Promise<string> {
    this.settle();
    return this.fs.readlink(path);
  }
  exists(path: string): Promise<boolean> {
    this.settle();
    return this.fs.exists(path);
  }
  listxattr(path: string): Promise<string[]> {
    this.settle();
    return this.fs.listxattr(path);
  }
  llistxattr(path: string): Promise<string[]> {
    this.settle();
    return this.fs.llistxattr(path);
  }
  getxattr(path: string, name: string): Promise<Buffer> {
    this.settle();
    return this.fs.getxattr(path, name);
  }
  lgetxattr(path: string, name: string): Promise<Buffer> {
    this.settle();
    return this.fs.lgetxattr(path, name);
  }

  /** Write everything and flush the device (when durable). */
  async sync(): Promise<void> {
    this.check();
    this.ctx.bufs.end();
    await this.commit();
    if (this.options.durable !== false) await this.ctx.bufs.dev.flush();
  }

  /** sync(); the device stays open (the caller owns it). */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.sync();
    this.closed = true;
  }
}
