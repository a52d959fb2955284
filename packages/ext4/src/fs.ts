/**
 * Ext4Fs: a read-only ext2/3/4 filesystem over any BlockDevice, with an API shaped like
 * node:fs/promises. Geometry and descriptors are loaded at open; inode table chunks, metadata
 * blocks and small directory listings are cached; file data is read in coalesced runs.
 *
 * This file is the façade: the mechanics live in the read-*.ts modules (read-open, read-inode,
 * read-map, read-data, read-dir, read-lookup, read-xattr, read-journal), plain functions over the
 * shared ReadContext, like e2fsprogs' lib/ext2fs over its ext2_filsys handle.
 */
import { Readable } from "node:stream";
import type { BlockDevice } from "@imgpatch/disk";
import { decodeName } from "./bytes.js";
import type { RawDirent } from "./dirent.js";
import { Ext4FsError } from "./errors.js";
import { COMPAT, featureNames, INCOMPAT, RO_COMPAT } from "./features.js";
import type { GroupDesc } from "./group-desc.js";
import { type Inode, S_IFDIR, S_IFLNK, S_IFMT } from "./inode.js";
import type { JournalStatus } from "./journal.js";
import type { JournalScan } from "./journal-scan.js";
import { DATA_WINDOW, type ReadContext, readBlock } from "./read-context.js";
import { isFastSymlink, iterateInode, readFileInode, readInodeRange, readSymlinkInode } from "./read-data.js";
import { dirEntries, type Ext4EntryStats, lstatEntriesInode, readdirInode, walk } from "./read-dir.js";
import { cachedInode, inodeLocation, loadInode, readInode, statsOf } from "./read-inode.js";
import { readJournalBlock, scanJournal } from "./read-journal.js";
import { lookup, resolve } from "./read-lookup.js";
import { blockRuns, mapBlock } from "./read-map.js";
import { openContext, verifyBitmaps } from "./read-open.js";
import { getxattr, inodeXattrs } from "./read-xattr.js";
import type { Ext4Dirent, Ext4Stats } from "./stats.js";
import { groupFirstBlock, type Superblock } from "./superblock.js";

export type { Ext4EntryStats } from "./read-dir.js";

export { decodeDeviceNumber } from "./stats.js";

export const ROOT_INO = 2;

export interface Ext4Warning {
  code: string;
  message: string;
}

export interface Ext4OpenOptions {
  /**
   * Checksum and structure problems that would otherwise throw are reported as warnings and
   * reading continues with the data as found (like e2fsck -n reporting without fixing).
   */
  lenient?: boolean;
  /** Use the superblock at this block number (like `e2fsck -b`; 0 = the primary only, no fallback to backups). */
  superblock?: number;
  /** Block size for `superblock` (default: tried from 1 KiB to 64 KiB). */
  blockSize?: number;
  /** Called for every warning (journal needs recovery, lenient-mode checksum failures...). */
  onWarning?: (w: Ext4Warning) => void;
  /** Verify block/inode bitmap checksums of every group while opening. */
  verifyBitmaps?: boolean;
  /** Inode-table cache budget in bytes (default 32 MiB). */
  cacheBytes?: number;
  /**
   * When the journal needs recovery, replay it in memory (nothing is written) so reads see what
   * e2fsck or the kernel would see after recovery. Default true: a journal that cannot be
   * replayed exactly (fast commits to apply, v1 checksums, an external journal, corrupt
   * descriptors) is refused with a typed error rather than read stale. `false` reads the
   * on-disk (possibly stale) state and warns.
   */
  replayJournal?: boolean;
}

/** A logical→physical run of a file; `physical` 0 with `hole` set for unmapped ranges. */
export interface BlockRun {
  logical: number;
  physical: number;
  length: number;
  /** Uninitialised extent: allocated but reads as zeros. */
  uninit: boolean;
}

export interface WalkEntry {
  /** Absolute guest path. */
  path: string;
  ino: number;
  stats: Ext4Stats;
  /** The parsed inode (shared with the cache: read-only), for the inode-level methods. */
  inode: Inode;
  /** Depth below the walk's root (root = 0). */
  depth: number;
}

export interface ReadCounters {
  /** Device read calls. */
  reads: number;
  /** Bytes read from the device. */
  bytes: number;
  /** Metadata blocks read (excluding file data). */
  metadataBlocks: number;
}

export class Ext4Fs {
  readonly device: BlockDevice;
  readonly sb: Superblock;
  readonly warnings: Ext4Warning[];
  /** Reasons the filesystem must not be written (unknown ro_compat features...). Empty = writable as far as the reader knows. */
  readonly readOnlyReasons: string[];
  readonly counters: ReadCounters;
  readonly journal: JournalStatus;
  readonly groups: GroupDesc[];
  readonly seed: number;
  readonly blockSize: number;
  /** Block number of the superblock in use (the primary's is s_first_data_block... see superblockOffset). */
  readonly superblockOffset: number;
  private readonly ctx: ReadContext;

  private constructor(ctx: ReadContext) {
    this.ctx = ctx;
    this.warnings = ctx.warnings;
    this.readOnlyReasons = ctx.readOnlyReasons;
    this.counters = ctx.counters;
    this.journal = ctx.journal;
    this.groups = ctx.groups;
    this.seed = ctx.seed;
    this.blockSize = ctx.blockSize;
    this.superblockOffset = ctx.superblockOffset;
    this.device = ctx.device;
    this.sb = ctx.sb;
  }

  /** Open a filesystem. Tries backup superblocks when the primary is damaged (unless `superblock` is given). */
  static async open(device: BlockDevice, options: Ext4OpenOptions = {}): Promise<Ext4Fs> {
    return new Ext4Fs(await openContext(device, options));
  }

  // ---------------------------------------------------------------- inode-level API

  /** Read a metadata block through the cache. */
  readBlock(block: number, what = "metadata block", inode?: number): Promise<Uint8Array> {
    return readBlock(this.ctx, block, what, inode);
  }

  /** Read and verify one inode. The returned object is shared with the cache: treat it as read-only. */
  readInode(ino: number): Promise<Inode> {
    return readInode(this.ctx, ino);
  }

  /**
   * The file's mapped runs in logical order, adjacent runs coalesced. Validates extent trees
   * (magic, depth, counts, ordering, node reuse) and block maps; holes are simply absent.
   */
  blockRuns(inode: Inode): AsyncGenerator<BlockRun> {
    return blockRuns(this.ctx, inode);
  }

  /** Physical block for logical block `lblk` (0 for a hole), descending the extent tree or block map directly. */
  mapBlock(inode: Inode, lblk: number): Promise<{ physical: number; uninit: boolean }> {
    return mapBlock(this.ctx, inode, lblk);
  }

  /** Read bytes [start, end) of an inode's data into a new buffer (holes and uninit extents read as zeros). */
  readInodeRange(inode: Inode, start: number, end: number): Promise<Uint8Array> {
    return readInodeRange(this.ctx, inode, start, end);
  }

  /** Stream an inode's data in chunks without holding the file. */
  iterateInode(inode: Inode, start = 0, end = inode.size, chunkSize = 1 << 20): AsyncGenerator<Uint8Array> {
    return iterateInode(this.ctx, inode, start, end, chunkSize);
  }

  /** All entries of a directory inode ("." and ".." included where stored). */
  dirEntries(inode: Inode): AsyncGenerator<RawDirent> {
    return dirEntries(this.ctx, inode);
  }

  /** Find `name` in directory `dir`: through the htree index when there is one. */
  lookup(dir: Inode, name: Uint8Array): Promise<RawDirent | undefined> {
    return lookup(this.ctx, dir, name);
  }

  /** All xattrs of an inode, in-inode first, then the external block. Values as stored on disk. */
  inodeXattrs(inode: Inode): Promise<Map<string, Uint8Array>> {
    return inodeXattrs(this.ctx, inode);
  }

  /** Target of a symlink inode (fast, slow or inline). */
  readSymlinkInode(inode: Inode): Promise<Uint8Array> {
    return readSymlinkInode(this.ctx, inode);
  }

  /** Fast symlinks keep the target in i_block and own no data blocks (an xattr block does not count). */
  isFastSymlink(inode: Inode): boolean {
    return isFastSymlink(this.ctx, inode);
  }

  // ---------------------------------------------------------------- public fs-like API

  async stat(path: string): Promise<Ext4Stats> {
    return statsOf(this.ctx, (await resolve(this.ctx, path, true)).inode);
  }

  async lstat(path: string): Promise<Ext4Stats> {
    return statsOf(this.ctx, (await resolve(this.ctx, path, false)).inode);
  }

  /** Stat by inode number. */
  async statInode(ino: number): Promise<Ext4Stats> {
    return statsOf(this.ctx, await readInode(this.ctx, ino));
  }

  /** Whether `path` exists (without following a final symlink). */
  async exists(path: string): Promise<boolean> {
    try {
      await resolve(this.ctx, path, false);
      return true;
    } catch (e) {
      if (e instanceof Ext4FsError && (e.code === "ENOENT" || e.code === "ENOTDIR")) return false;
      throw e;
    }
  }

  /** Canonical absolute path inside the guest: symlinks resolved in the guest, `..` never above `/`. */
  async realpath(path: string): Promise<string> {
    return (await resolve(this.ctx, path, true)).path;
  }

  async readdir(path: string): Promise<string[]>;
  async readdir(path: string, options: { withFileTypes: true }): Promise<Ext4Dirent[]>;
  async readdir(path: string, options?: { withFileTypes?: boolean }): Promise<string[] | Ext4Dirent[]> {
    const r = await resolve(this.ctx, path, true);
    if ((r.inode.mode & S_IFMT) !== S_IFDIR) throw new Ext4FsError("ENOTDIR", "not a directory", path);
    const list = await readdirInode(this.ctx, r.inode, r.path);
    return options?.withFileTypes ? list : list.map((d) => d.name);
  }

  /**
   * Entries of a directory (following symlinks to it; without "." and "..") with each entry's lstat,
   * read by inode number: what a tree walk needs, in one call per directory.
   */
  async lstatEntries(path: string): Promise<Ext4EntryStats[]> {
    const r = await resolve(this.ctx, path, true);
    if ((r.inode.mode & S_IFMT) !== S_IFDIR) throw new Ext4FsError("ENOTDIR", "not a directory", path);
    return lstatEntriesInode(this.ctx, r.inode);
  }

  /** lstatEntries of the directory with inode number `ino` (a walk that already has it skips the path lookup). */
  async lstatEntriesOfInode(ino: number): Promise<Ext4EntryStats[]> {
    const inode = await readInode(this.ctx, ino);
    if ((inode.mode & S_IFMT) !== S_IFDIR)
      throw new Ext4FsError("ENOTDIR", "not a directory", `<inode ${ino}>`);
    return lstatEntriesInode(this.ctx, inode);
  }

  /** Entries of a directory inode, without "." and "..". */
  readdirInode(dir: Inode, parentPath = `<inode ${dir.ino}>`): Promise<Ext4Dirent[]> {
    return readdirInode(this.ctx, dir, parentPath);
  }

  async readFile(path: string, options: { maxSize?: number } = {}): Promise<Buffer> {
    const r = await resolve(this.ctx, path, true);
    return readFileInode(this.ctx, r.inode, path, options);
  }

  /**
   * Whole content of the file with inode number `ino` (a walk that listed it reads it without a
   * path lookup); `path` names it in errors. The inode is not kept in the inode cache.
   */
  async readFileOfInode(
    ino: number,
    path = `<inode ${ino}>`,
    options: { maxSize?: number } = {},
  ): Promise<Buffer> {
    const inode = cachedInode(this.ctx, ino, false) ?? (await loadInode(this.ctx, ino, false));
    return readFileInode(this.ctx, inode, path, options);
  }

  /** Whole content of a regular file (or symlink/other) inode. */
  readFileInode(
    inode: Inode,
    path = `<inode ${inode.ino}>`,
    options: { maxSize?: number } = {},
  ): Promise<Buffer> {
    return readFileInode(this.ctx, inode, path, options);
  }

  /** A Readable over the file, read in chunks (holes are produced as zeros, never allocated whole). */
  createReadStream(
    path: string,
    options: { start?: number; end?: number; highWaterMark?: number } = {},
  ): Readable {
    const ctx = this.ctx;
    async function* gen() {
      const r = await resolve(ctx, path, true);
      if ((r.inode.mode & S_IFMT) === S_IFDIR)
        throw new Ext4FsError("EISDIR", "illegal operation on a directory", path);
      const end = options.end !== undefined ? options.end + 1 : r.inode.size; // `end` is inclusive, as in node:fs
      for await (const chunk of iterateInode(
        ctx,
        r.inode,
        options.start ?? 0,
        end,
        options.highWaterMark ?? 1 << 20,
      )) {
        yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      }
    }
    return Readable.from(gen(), { objectMode: false });
  }

  async readlink(path: string): Promise<string> {
    const r = await resolve(this.ctx, path, false);
    if ((r.inode.mode & S_IFMT) !== S_IFLNK) throw new Ext4FsError("EINVAL", "not a symbolic link", path);
    return decodeName(await readSymlinkInode(this.ctx, r.inode));
  }

  /** Attribute names (follows a final symlink, like listxattr(2)). */
  async listxattr(path: string): Promise<string[]> {
    return [...(await inodeXattrs(this.ctx, (await resolve(this.ctx, path, true)).inode)).keys()];
  }
  /** Attribute names of the link itself (llistxattr(2)). */
  async llistxattr(path: string): Promise<string[]> {
    return [...(await inodeXattrs(this.ctx, (await resolve(this.ctx, path, false)).inode)).keys()];
  }

  /**
   * One attribute value, as getxattr(2) returns it: POSIX ACLs are converted from the ext4 disk
   * form to the xattr API form (pass `raw: true` for the stored bytes).
   */
  getxattr(path: string, name: string, options: { raw?: boolean; noFollow?: boolean } = {}): Promise<Buffer> {
    return getxattr(this.ctx, path, name, options);
  }

  async lgetxattr(path: string, name: string, options: { raw?: boolean } = {}): Promise<Buffer> {
    return this.getxattr(path, name, { ...options, noFollow: true });
  }

  /**
   * Depth-first pre-order walk below `root` (included). Directories are entered once (a
   * directory reachable twice is corrupt: error, or skipped in lenient mode); symlinks are not
   * followed.
   */
  walk(root = "/"): AsyncGenerator<WalkEntry> {
    return walk(this.ctx, root);
  }

  // ---------------------------------------------------------------- checks and journal

  /** Verify every initialised group's block and inode bitmap checksums (metadata_csum). */
  verifyBitmaps(): Promise<void> {
    return verifyBitmaps(this.ctx);
  }

  /** Logical block i of the internal journal. */
  readJournalBlock(i: number): Promise<Uint8Array> {
    return readJournalBlock(this.ctx, i);
  }

  /** Scan the journal for committed transactions that recovery would replay. */
  scanJournal(): Promise<JournalScan> {
    return scanJournal(this.ctx);
  }

  /** Filesystem-wide figures, like statfs(2) plus identity. */
  statfs(): {
    blockSize: number;
    blocks: number;
    freeBlocks: number;
    reservedBlocks: number;
    inodes: number;
    freeInodes: number;
    uuid: string;
    volumeName: string;
    lastMounted: string;
  } {
    const hex = Buffer.from(this.ctx.sb.uuid).toString("hex");
    return {
      blockSize: this.blockSize,
      blocks: this.ctx.sb.blocksCount,
      freeBlocks: this.ctx.sb.freeBlocksCount,
      reservedBlocks: this.ctx.sb.rBlocksCount,
      inodes: this.ctx.sb.inodesCount,
      freeInodes: this.ctx.sb.freeInodesCount,
      uuid: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
      volumeName: this.ctx.sb.volumeName,
      lastMounted: this.ctx.sb.lastMounted,
    };
  }

  /** Feature names, for display. */
  features(): { compat: string[]; incompat: string[]; roCompat: string[] } {
    return {
      compat: featureNames(COMPAT, this.ctx.sb.featureCompat),
      incompat: featureNames(INCOMPAT, this.ctx.sb.featureIncompat),
      roCompat: featureNames(RO_COMPAT, this.ctx.sb.featureRoCompat),
    };
  }

  /** First block of group g. */
  groupFirstBlock(g: number): number {
    return groupFirstBlock(this.sb, g);
  }

  /**
   * Forget cached copies of an inode, a block (metadata or data window) or a directory listing
   * after they were rewritten (the editor calls this for what it writes).
   */
  invalidate(what: { inode?: number; block?: number; dir?: number }): void {
    if (what.inode !== undefined) {
      this.ctx.inodeCache.delete(what.inode);
      const { group, index } = inodeLocation(this.ctx, what.inode);
      const blockInTable = Math.floor(index / (this.blockSize / this.ctx.sb.inodeSize));
      this.ctx.itableCache.delete(group * 0x10000 + Math.floor(blockInTable / this.ctx.itableChunkBlocks));
      this.ctx.dirCache.delete(what.inode);
    }
    if (what.block !== undefined) {
      this.ctx.blockCache.delete(what.block);
      this.ctx.dirAhead.delete(what.block);
      this.ctx.dataCache.delete(Math.floor((what.block * this.blockSize) / DATA_WINDOW) * DATA_WINDOW);
    }
    if (what.dir !== undefined) this.ctx.dirCache.delete(what.dir);
  }

  /** Drop every cache (after an external change to the device). */
  clearCaches(): void {
    this.ctx.itableCache.clear();
    this.ctx.blockCache.clear();
    this.ctx.dirAhead.clear();
    this.ctx.inodeCache.clear();
    this.ctx.dirCache.clear();
    this.ctx.dataCache.clear();
  }

  /** Close the underlying device. */
  async close(): Promise<void> {
    await this.ctx.device.close();
  }
}
