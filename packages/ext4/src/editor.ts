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
 */
import { randomBytes } from "node:crypto";
import type { BlockDevice } from "@imgpatch/disk";
import { ImgpatchError } from "@imgpatch/disk";
import { Allocator, Ext4NoSpaceError } from "./alloc.js";
import { BlockStore } from "./block-store.js";
import { decodeName, encodeName, setU16, setU32, u16, u32 } from "./bytes.js";
import { crc32cU32 } from "./crc32c.js";
import {
  insertIntoBlock,
  insertIntoBlockAt,
  type LeafRecord,
  leafEnd,
  maxFree,
  removeFromBlock,
  retargetInBlock,
  writeDirHead,
  writeDxNode,
  writeDxRoot,
  writeLeaf,
} from "./dir-write.js";
import {
  decodeRecLen,
  direntSize,
  encodeDirent,
  encodeRecLen,
  FT,
  fileTypeFromMode,
  parseDirentBlock,
  setDirentTail,
} from "./dirent.js";
import { dxHash, effectiveHashVersion, isComputableHashVersion } from "./dx-hash.js";
import { Ext4ChecksumError, Ext4FormatError, Ext4UnsupportedError } from "./errors.js";
import { COMPAT, INCOMPAT, INODE_FLAGS, RO_COMPAT } from "./features.js";
import {
  blockMapNodesNeeded,
  extentNodesNeeded,
  type FileMap,
  type MapExtent,
  normaliseExtents,
  readBlockMap,
  readExtentMap,
  writeBlockMap,
  writeExtentRoot,
  writeExtentTree,
} from "./file-map.js";
import { Ext4Fs, type Ext4OpenOptions, ROOT_INO } from "./fs.js";
import type { GroupDesc } from "./group-desc.js";
import {
  type DxEntry,
  dxSearchBlock,
  encodeDxEntries,
  parseDxEntries,
  parseDxRootInfo,
  setDxChecksum,
} from "./htree.js";
import {
  INLINE_DATA_XATTR_INDEX,
  INLINE_DATA_XATTR_SUFFIX,
  INLINE_DIR_PARENT_SIZE,
  INLINE_IBLOCK_SIZE,
  inlineDirParent,
  inlineFileContent,
  inlineValueCapacity,
  setInlineDirParent,
} from "./inline-data.js";
import {
  encodeInode,
  encodeInodeFields,
  I_BLOCK_OFFSET,
  I_BLOCK_SIZE,
  type Inode,
  inodeChecksumMismatch,
  inodeChecksumSeed,
  parseInode,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  setInodeChecksum,
  type Timestamp,
} from "./inode.js";
import { replayJournal } from "./journal-replay.js";
import type { Ext4Dirent, Ext4Stats } from "./stats.js";
import { hasCompat, hasIncompat, hasRoCompat, parseSuperblock, type Superblock } from "./superblock.js";
import {
  decodePosixAcl,
  encodePosixAclDisk,
  isPosixAclName,
  parseXattrBlockHeader,
  parseXattrEntries,
  setXattrBlockChecksum,
  splitXattrName,
  XATTR_BLOCK_HEADER_SIZE,
  XATTR_MAGIC,
} from "./xattr.js";
import {
  planXattrs,
  writeIbodyXattrs,
  writeXattrBlock,
  type XattrItem,
  xattrItemSize,
} from "./xattr-write.js";

export { Ext4NoSpaceError };

export type EditErrorCode =
  | "EEXIST"
  | "ENOTEMPTY"
  | "EPERM"
  | "EISDIR"
  | "ENOTDIR"
  | "ENOENT"
  | "EINVAL"
  | "ELOOP"
  | "EMLINK"
  | "ENAMETOOLONG"
  | "ENODATA";

/** A path-level editing error (code like Node's: EEXIST, ENOTEMPTY...). */
export class Ext4EditError extends ImgpatchError {
  readonly path: string;
  constructor(code: EditErrorCode, message: string, path: string) {
    super(code, `${code}: ${message}, '${path}'`, { file: path });
    this.path = path;
  }
}

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

export interface OwnerOptions {
  uid?: number;
  gid?: number;
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

interface DirEntryInfo {
  ino: number;
  ft: number;
  lblk: number;
}

interface DirState {
  ino: number;
  entries: Map<string, DirEntryInfo>;
  /** Physical block of each logical block. */
  pblk: number[];
  /** Largest free record per leaf block (-1 for index blocks). */
  free: number[];
  /**
   * Per htree leaf: offset of the record the last insert wrote (a record boundary; reset to 0
   * whenever the leaf is changed otherwise), where the next insert starts looking for room.
   */
  hint: number[];
  indexed: boolean;
  /** Entries live in the inode (inline_data): i_block after the parent number, then system.data. */
  inline?: boolean;
}

const MAX_SYMLINKS = 40;
const LINK_MAX = 65000;
/** i_block of an extent-mapped inode with no extents. */
const EMPTY_EXTENT_ROOT = writeExtentTree({} as BlockStore, [], [], undefined);
/** Inode objects kept (clean ones are dropped past this) and dirty ones before they are encoded. */
const MAX_CACHED_INODES = 65536;
const MAX_DIRTY_INODES = 16384;
/** Streamed chunks this large are written from the producer's buffer; smaller ones are gathered. */
const STREAM_DIRECT = 1 << 20;
const STREAM_GATHER = 4 << 20;

const DATA_SUFFIX = new TextEncoder().encode(INLINE_DATA_XATTR_SUFFIX);
const isSystemData = (x: XattrItem) =>
  x.index === INLINE_DATA_XATTR_INDEX && decodeName(x.suffix) === INLINE_DATA_XATTR_SUFFIX;

/** Map key of a name's bytes (the last one is remembered: one operation asks several times). */
let lastKeyOf: Uint8Array | undefined;
let lastKey = "";
/** A path component's bytes: ASCII directly, anything else as UTF-8. */
function nameBytes(s: string): Uint8Array {
  const n = s.length;
  if (n > 255) return encodeName(s);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return encodeName(s);
    out[i] = c;
  }
  return out;
}

const rememberKey = (b: Uint8Array, k: string) => {
  lastKeyOf = b;
  lastKey = k;
};
const key = (b: Uint8Array) => {
  if (b !== lastKeyOf) {
    lastKey = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");
    lastKeyOf = b;
  }
  return lastKey;
};

function toTimestamp(t: Date | number): Timestamp {
  if (t instanceof Date) {
    const ms = t.getTime();
    const sec = Math.floor(ms / 1000);
    return { sec, nsec: (ms - sec * 1000) * 1e6 };
  }
  const sec = Math.floor(t);
  return { sec, nsec: Math.round((t - sec) * 1e9) % 1e9 };
}

export class Ext4Editor {
  readonly reader: Ext4Fs;
  readonly store: BlockStore;
  private readonly sb: Superblock;
  private readonly groups: GroupDesc[];
  private readonly alloc: Allocator;
  private readonly seed: number;
  private readonly csum: boolean;
  private readonly ft: boolean;
  private readonly extents: boolean;
  /** New small files, directories and symlinks are stored in the inode (inline_data). */
  private readonly inlineData: boolean;
  private readonly bs: number;
  private readonly fixedTime?: Timestamp;
  private genState: number;
  private readonly dirs = new Map<number, DirState>();
  private readonly inodes = new Map<number, Inode>();
  private readonly dirtyInodes = new Set<number>();
  /** Inode numbers of directories by the parent path they were resolved from (see resolveParent). */
  private readonly parentDirs = new Map<string, number>();
  private closed = false;
  private readonly durable: boolean;

  private constructor(reader: Ext4Fs, options: Ext4EditorOptions) {
    this.reader = reader;
    this.sb = parseSuperblock(reader.sb.raw);
    // Private copies (the reader's stay as read): plain number fields and the raw bytes.
    this.groups = reader.groups.map((g) => ({ ...g, raw: g.raw.slice() }));
    this.bs = this.sb.blockSize;
    this.store = new BlockStore(reader.device, this.bs);
    this.seed = reader.seed;
    this.alloc = new Allocator(this.sb, this.groups, this.store, this.seed);
    this.csum = hasRoCompat(this.sb, RO_COMPAT.metadata_csum);
    this.ft = hasIncompat(this.sb, INCOMPAT.filetype);
    this.extents = hasIncompat(this.sb, INCOMPAT.extent);
    this.inlineData = hasIncompat(this.sb, INCOMPAT.inline_data) && this.sb.inodeSize > 128;
    this.durable = options.durable ?? true;
    this.kbytesBase = this.sb.kbytesWritten;
    let t = options.timestamp;
    if (t === undefined && !options.ignoreSourceDateEpoch && process.env.SOURCE_DATE_EPOCH) {
      const n = Number(process.env.SOURCE_DATE_EPOCH);
      if (Number.isFinite(n)) t = n;
    }
    if (t !== undefined) {
      this.fixedTime = toTimestamp(t);
      this.genState = crc32cU32(this.seed, this.fixedTime.sec >>> 0);
    } else this.genState = randomBytes(4).readUInt32LE(0);
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
    if (hasRoCompat(sb, RO_COMPAT.quota)) refuse("quota", "quota files would not be updated");
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

  // ------------------------------------------------------------ time and generations

  private now(): Timestamp {
    if (this.fixedTime) return { ...this.fixedTime };
    return toTimestamp(new Date());
  }

  private nextGeneration(): number {
    if (this.fixedTime) {
      this.genState = crc32cU32(this.genState, 0x9e3779b9);
      return this.genState >>> 0;
    }
    return randomBytes(4).readUInt32LE(0);
  }

  // ------------------------------------------------------------ inodes

  private inodePos(ino: number): { block: number; offset: number } {
    if (ino < 1 || ino > this.sb.inodesCount)
      throw new Ext4EditError("EINVAL", `inode ${ino} out of range`, `<inode ${ino}>`);
    const g = Math.floor((ino - 1) / this.sb.inodesPerGroup);
    const idx = (ino - 1) % this.sb.inodesPerGroup;
    const byte = idx * this.sb.inodeSize;
    return { block: this.groups[g].inodeTable + Math.floor(byte / this.bs), offset: byte % this.bs };
  }

  /** A copy of an inode as it is now (pending changes included). */
  async getInode(ino: number): Promise<Inode> {
    const pending = this.dirtyInodes.has(ino) ? this.inodes.get(ino) : undefined;
    if (pending) {
      await this.writeInode(pending);
      this.dirtyInodes.delete(ino);
    }
    const { block, offset } = this.inodePos(ino);
    const b = await this.store.get(block);
    return parseInode(ino, b.subarray(offset, offset + this.sb.inodeSize), this.sb.inodeSize);
  }

  /**
   * The editor's one object for an inode: every operation sees the changes of the previous ones.
   * putInode marks it dirty; it is encoded into its inode-table block by flushInodes (once, however
   * many operations touched it, e.g. a directory receiving thousands of names).
   */
  private async inodeRef(ino: number): Promise<Inode> {
    const hit = this.inodes.get(ino);
    if (hit) return hit;
    const { block, offset } = this.inodePos(ino);
    const b = await this.store.get(block);
    const bytes = b.subarray(offset, offset + this.sb.inodeSize);
    // Never edit on top of a damaged inode (the reader checks the same way).
    const bad = this.csum ? inodeChecksumMismatch(this.seed, ino, bytes) : undefined;
    if (bad)
      throw new Ext4ChecksumError("inode checksum mismatch", bad.stored, bad.computed, {
        file: this.reader.device.name,
        structure: "inode",
        inode: ino,
        block,
        offset: block * this.bs + offset,
      });
    const inode = this.parseInodeFrom(ino, bytes);
    if (this.inodes.size >= MAX_CACHED_INODES) {
      for (const k of this.inodes.keys()) if (!this.dirtyInodes.has(k)) this.inodes.delete(k);
    }
    this.inodes.set(ino, inode);
    return inode;
  }

  /**
   * Mark an inode changed (encoded later by flushInodes; the dirty ones are bounded at each path
   * resolution, which every public operation starts with).
   */
  private putInode(inode: Inode): void {
    this.inodes.set(inode.ino, inode);
    this.dirtyInodes.add(inode.ino);
  }

  /** Encode every dirty inode into the block cache. */
  private async flushInodes(): Promise<void> {
    for (const ino of this.dirtyInodes) {
      const inode = this.inodes.get(ino);
      if (!inode) continue;
      const { block, offset } = this.inodePos(ino);
      this.encodeInodeInto(inode, block, this.itableBlockNow(block) ?? (await this.store.get(block)), offset);
    }
    this.dirtyInodes.clear();
  }

  private async writeInode(inode: Inode): Promise<void> {
    const { block, offset } = this.inodePos(inode.ino);
    this.encodeInodeInto(inode, block, this.itableBlockNow(block) ?? (await this.store.get(block)), offset);
  }

  /** An inode-table block without a read: cached, or wholly unused so far (a zeroed block). */
  private itableBlockNow(block: number): Uint8Array | undefined {
    if (this.alloc.freshItable.has(block)) {
      this.alloc.freshItable.delete(block);
      return this.store.peek(block) ?? this.store.fresh(block);
    }
    return this.store.peek(block);
  }

  private encodeInodeInto(inode: Inode, block: number, b: Uint8Array, offset: number): void {
    const n = this.sb.inodeSize;
    let raw = inode.raw;
    if (raw.length !== n) {
      raw = new Uint8Array(n);
      raw.set(inode.raw.subarray(0, n));
      inode.raw = raw;
    }
    // Encoded in the inode's own (private) bytes, then copied into its table block.
    encodeInodeFields(inode, raw, 0, n);
    if (this.csum) setInodeChecksum(this.seed, inode.ino, raw);
    const ib = inode.iBlock;
    if (ib.buffer !== raw.buffer || ib.byteOffset !== raw.byteOffset + I_BLOCK_OFFSET)
      inode.iBlock = raw.subarray(I_BLOCK_OFFSET, I_BLOCK_OFFSET + I_BLOCK_SIZE);
    b.set(raw, offset);
    this.store.markDirty(block);
  }

  private inodeSeed(inode: Inode): number | undefined {
    return this.csum ? inodeChecksumSeed(this.seed, inode.ino, inode.generation) : undefined;
  }

  /** inode_size-byte pieces of 1 MiB slabs (one small off-heap buffer per inode costs). */
  private inodeSlab = new Uint8Array(0);
  private inodeSlabPos = 0;
  private inodeBytes(): Uint8Array {
    const n = this.sb.inodeSize;
    if (this.inodeSlabPos + n > this.inodeSlab.length) {
      this.inodeSlab = new Uint8Array(Math.max(n, 1 << 20));
      this.inodeSlabPos = 0;
    }
    this.inodeSlabPos += n;
    return this.inodeSlab.subarray(this.inodeSlabPos - n, this.inodeSlabPos);
  }

  /** An inode read from bytes, its raw copy in a slab. */
  private parseInodeFrom(ino: number, bytes: Uint8Array): Inode {
    const raw = this.inodeBytes();
    raw.set(bytes);
    return parseInode(ino, raw, this.sb.inodeSize, false);
  }

  private blankInode(ino: number, mode: number, uid: number, gid: number): Inode {
    const raw = this.inodeBytes();
    const extraIsize = this.sb.inodeSize >= 160 ? 32 : 0;
    if (extraIsize) raw[0x80] = extraIsize;
    const now = this.now();
    // What parseInode gives for these bytes (same fields in the same order: one object shape),
    // without decoding zeros first.
    return {
      ino,
      mode,
      uid: uid >>> 0,
      gid: gid >>> 0,
      size: 0,
      linksCount: 0,
      blocksRaw: 0,
      flags: 0,
      generation: this.nextGeneration(),
      fileAcl: 0,
      dtime: 0,
      version: 0,
      atime: now,
      mtime: now,
      ctime: now,
      crtime: extraIsize >= 24 ? now : undefined,
      extraIsize,
      projid: extraIsize >= 32 ? 0 : undefined,
      iBlock: raw.subarray(I_BLOCK_OFFSET, I_BLOCK_OFFSET + I_BLOCK_SIZE),
      raw,
    };
  }

  private emptyMapRoot(inode: Inode): void {
    if (this.extents) {
      inode.flags |= INODE_FLAGS.EXTENTS;
      inode.iBlock = EMPTY_EXTENT_ROOT.slice();
    } else inode.iBlock = new Uint8Array(60);
  }

  private usesExtents(inode: Inode): boolean {
    return (inode.flags & INODE_FLAGS.EXTENTS) !== 0;
  }

  private async fileMap(inode: Inode): Promise<FileMap> {
    if (inode.flags & INODE_FLAGS.INLINE_DATA) return { extents: [], metaBlocks: [] };
    const t = inode.mode & S_IFMT;
    if (t === S_IFCHR || t === S_IFBLK || t === S_IFIFO || t === S_IFSOCK)
      return { extents: [], metaBlocks: [] };
    if (t === S_IFLNK && this.isFastSymlink(inode)) return { extents: [], metaBlocks: [] };
    if (this.usesExtents(inode))
      return readExtentMap(this.store, inode.iBlock, inode.ino, this.sb.blocksCount);
    return readBlockMap(this.store, inode.iBlock, this.bs, this.sb.blocksCount);
  }

  private isFastSymlink(inode: Inode): boolean {
    return this.reader.isFastSymlink(inode);
  }

  private nodesNeeded(inode: Inode, extents: MapExtent[]): number {
    return this.usesExtents(inode)
      ? extentNodesNeeded(extents.length, this.bs)
      : blockMapNodesNeeded(extents, this.bs);
  }

  /**
   * Replace an inode's map with `extents` (already allocated data), freeing the old tree nodes
   * and allocating new ones. Updates i_block and i_blocks (not the size). Throws ENOSPC before
   * changing anything when the nodes cannot be allocated.
   */
  private async setMap(inode: Inode, extents: MapExtent[], oldMeta: number[], path?: string): Promise<void> {
    const norm = normaliseExtents([...extents].sort((a, b) => a.lblk - b.lblk));
    if (!this.usesExtents(inode) && norm.some((e) => e.uninit))
      throw new Error("uninit extent in a block map");
    const need = this.nodesNeeded(inode, norm);
    if (need > this.alloc.freeBlocks + oldMeta.length) this.alloc.reserveBlocks(need - oldMeta.length, path);
    for (const b of oldMeta) await this.alloc.freeBlocksRange(b, 1);
    const goal = norm.length ? norm[0].pblk : this.alloc.goalFor(inode.ino);
    const runs = need ? await this.alloc.allocBlocks(need, goal, path) : [];
    const nodes: number[] = [];
    for (const r of runs) for (let k = 0; k < r.len; k++) nodes.push(r.start + k);
    const root = this.usesExtents(inode)
      ? writeExtentTree(this.store, norm, nodes, this.inodeSeed(inode))
      : writeBlockMap(this.store, norm, nodes);
    inode.iBlock = root;
    const data = norm.reduce((n, e) => n + e.len, 0);
    this.setBlocks(inode, data + nodes.length + (inode.fileAcl ? 1 : 0));
  }

  private setBlocks(inode: Inode, blocks: number): void {
    inode.blocksRaw = blocks * (this.bs / 512);
    inode.flags &= ~INODE_FLAGS.HUGE_FILE;
    if (inode.blocksRaw >= 2 ** 48) throw new Error("file too large");
  }

  private async freeFileBlocks(inode: Inode): Promise<void> {
    await this.freeMap(await this.fileMap(inode));
  }

  /** Free a file map's data blocks and its tree nodes / indirect blocks. */
  private async freeMap(map: { extents: MapExtent[]; metaBlocks: number[] }): Promise<void> {
    for (const e of map.extents) await this.alloc.freeBlocksRange(e.pblk, e.len);
    for (const b of map.metaBlocks) await this.alloc.freeBlocksRange(b, 1);
  }

  // ------------------------------------------------------------ inline data

  /**
   * Most bytes this inode can hold inline (i_block, then the largest system.data value the inode
   * body has room for next to its other attributes), or -1 when it cannot hold inline data.
   */
  private inlineCapacity(inode: Inode, others: XattrItem[]): number {
    if (!this.inlineData) return -1;
    const ibody = this.sb.inodeSize - 128 - inode.extraIsize;
    const cap = inlineValueCapacity(
      ibody,
      others.reduce((n, x) => n + xattrItemSize(x), 0),
    );
    return cap < 0 ? -1 : INLINE_IBLOCK_SIZE + cap;
  }

  /** An inode's system.data value and its other attributes. */
  private async inlineParts(inode: Inode): Promise<{ value: Uint8Array; others: XattrItem[] }> {
    const items = await this.loadXattrs(inode);
    return {
      value: items.find(isSystemData)?.value ?? new Uint8Array(0),
      others: items.filter((x) => !isSystemData(x)),
    };
  }

  /**
   * Store `data` in the inode like the kernel's inline_data: the first 60 bytes in i_block, the
   * rest as the system.data value (present, maybe empty). Data blocks must already be freed;
   * the inode is written by the caller.
   */
  private async storeInline(
    inode: Inode,
    data: Uint8Array,
    others: XattrItem[],
    path: string,
  ): Promise<void> {
    const { flags, iBlock } = inode;
    inode.flags = (inode.flags | INODE_FLAGS.INLINE_DATA) & ~INODE_FLAGS.EXTENTS;
    inode.iBlock = new Uint8Array(INLINE_IBLOCK_SIZE);
    inode.iBlock.set(data.subarray(0, INLINE_IBLOCK_SIZE));
    const value = data.slice(Math.min(data.length, INLINE_IBLOCK_SIZE));
    try {
      await this.storeXattrs(
        inode,
        [...others, { index: INLINE_DATA_XATTR_INDEX, suffix: DATA_SUFFIX, value }],
        path,
      );
    } catch (e) {
      // storeXattrs changes nothing when it fails (e.g. no block for the other attributes).
      inode.flags = flags;
      inode.iBlock = iBlock;
      throw e;
    }
    inode.size = data.length;
  }

  private async storeInlineDirValue(
    dir: Inode,
    value: Uint8Array,
    others: XattrItem[],
    path: string,
  ): Promise<void> {
    await this.storeXattrs(
      dir,
      [...others, { index: INLINE_DATA_XATTR_INDEX, suffix: DATA_SUFFIX, value }],
      path,
    );
    dir.size = INLINE_IBLOCK_SIZE + value.length;
  }

  /** The live entries of an inline directory: i_block after the parent number, then system.data. */
  private inlineDirEntries(
    dir: Inode,
    value: Uint8Array,
  ): { inode: number; name: Uint8Array; fileType: number }[] {
    const a = parseDirentBlock(dir.iBlock, INLINE_DIR_PARENT_SIZE, INLINE_IBLOCK_SIZE, this.bs, this.ft);
    const b = value.length ? parseDirentBlock(value, 0, value.length, this.bs, this.ft) : { entries: [] };
    const problem = a.problem ?? b.problem;
    if (problem)
      throw new Ext4EditError("EINVAL", `corrupt inline directory: ${problem.message}`, `<inode ${dir.ino}>`);
    return [...a.entries, ...b.entries];
  }

  /**
   * Add an entry to an inline directory as the kernel does: into i_block's free space, else into
   * system.data's, growing an empty system.data once to all the room the inode body has. False
   * when it does not fit (the directory must move to a block).
   */
  private async inlineDirInsert(dir: Inode, rec: LeafRecord, path: string): Promise<boolean> {
    const ib = dir.iBlock.slice(0, INLINE_IBLOCK_SIZE);
    if (insertIntoBlock(ib, INLINE_DIR_PARENT_SIZE, INLINE_IBLOCK_SIZE, this.bs, this.ft, rec)) {
      dir.iBlock = ib;
      return true;
    }
    const { value, others } = await this.inlineParts(dir);
    let v = value.slice();
    if (v.length === 0) {
      const cap = this.inlineCapacity(dir, others) - INLINE_IBLOCK_SIZE;
      if (cap <= direntSize(1)) return false;
      v = new Uint8Array(cap);
      encodeDirent(v, 0, { inode: 0, recLen: cap, name: new Uint8Array(0), fileType: 0 }, this.bs, this.ft);
    }
    if (!insertIntoBlock(v, 0, v.length, this.bs, this.ft, rec)) return false;
    await this.storeInlineDirValue(dir, v, others, path);
    return true;
  }

  /** Apply `edit` to the inline region holding the entry (i_block first); false when absent. */
  private async inlineDirEdit(
    dir: Inode,
    path: string,
    edit: (buf: Uint8Array, start: number, end: number) => boolean,
  ): Promise<boolean> {
    const ib = dir.iBlock.slice(0, INLINE_IBLOCK_SIZE);
    if (edit(ib, INLINE_DIR_PARENT_SIZE, INLINE_IBLOCK_SIZE)) {
      dir.iBlock = ib;
      return true;
    }
    const { value, others } = await this.inlineParts(dir);
    const v = value.slice();
    if (!v.length || !edit(v, 0, v.length)) return false;
    await this.storeInlineDirValue(dir, v, others, path);
    return true;
  }

  // ------------------------------------------------------------ data

  /** Allocate and write `data` as logical blocks from `lblk`; returns the extents. */
  private async writeBlocks(
    data: Uint8Array,
    lblk: number,
    goal: number,
    path: string,
  ): Promise<MapExtent[]> {
    const n = Math.ceil(data.length / this.bs);
    if (n === 0) return [];
    const runs = await this.alloc.allocBlocks(n, goal, path);
    const out: MapExtent[] = [];
    let pos = 0;
    for (const r of runs) {
      out.push({ lblk: lblk + pos / this.bs, pblk: r.start, len: r.len, uninit: false });
      pos += r.len * this.bs;
    }
    await this.writeRuns(runs, data);
    return out;
  }

  /** Write the whole content of a (regular or symlink) inode whose old blocks are already freed. */
  private async writeContent(
    inode: Inode,
    data: Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    path: string,
    /**
     * "new": inline when 1 byte up to what the inode holds (a new inode: the kernel makes an
     * empty file a block file); "keep": also when empty (the inode was inline: the kernel keeps
     * a truncated inline file inline); "never".
     */
    inline: "new" | "keep" | "never" = "new",
  ): Promise<void> {
    const goal = this.alloc.goalFor(inode.ino);
    // With inline_data, content that fits the inode is stored there (an empty file is not inline).
    const others = inline !== "never" && this.inlineData ? (await this.inlineParts(inode)).others : [];
    const cap = inline !== "never" ? this.inlineCapacity(inode, others) : -1;
    const min = inline === "keep" ? 0 : 1;
    if (data instanceof Uint8Array && data.length >= min && data.length <= cap) {
      await this.storeInline(inode, data, others, path);
      return;
    }
    if (data instanceof Uint8Array) {
      const n = Math.ceil(data.length / this.bs);
      // Data, tree nodes (a few runs at most when there is room), one spare for directory growth.
      this.alloc.reserveBlocks(n + 1, path);
      let ext: MapExtent[];
      const runs = n > 0 && data.length <= 65536 ? await this.alloc.allocBlocks(n, goal, path) : undefined;
      if (runs?.length === 1) {
        // The common small file: one run, buffered in the store (fewer async layers per file).
        ext = [{ lblk: 0, pblk: runs[0].start, len: n, uninit: false }];
        await this.store.writeData(runs[0].start, data);
        if (this.usesExtents(inode)) {
          // One extent fits the root: no tree node to allocate, none to free (the map was empty).
          inode.iBlock = writeExtentTree(this.store, ext, [], undefined);
          this.setBlocks(inode, n + (inode.fileAcl ? 1 : 0));
          inode.size = data.length;
          return;
        }
      } else if (runs) {
        ext = [];
        let pos = 0;
        for (const r of runs) {
          ext.push({ lblk: pos / this.bs, pblk: r.start, len: r.len, uninit: false });
          pos += r.len * this.bs;
        }
        await this.writeRuns(runs, data);
      } else ext = await this.writeBlocks(data, 0, goal, path);
      try {
        await this.setMap(inode, ext, [], path);
      } catch (e) {
        for (const x of ext) await this.alloc.freeBlocksRange(x.pblk, x.len);
        throw e;
      }
      inode.size = data.length;
      return;
    }
    const r = await this.streamBlocks(data, goal, path, inline === "keep" ? 0 : 1, cap);
    if (r.small) {
      await this.storeInline(inode, r.small, others, path);
      return;
    }
    try {
      await this.setMap(inode, r.extents, [], path);
    } catch (e) {
      for (const x of r.extents) await this.alloc.freeBlocksRange(x.pblk, x.len);
      throw e;
    }
    inode.size = r.size;
  }

  /**
   * Write a stream of chunks into newly allocated data blocks (from `goal` on); no inode is
   * touched. Content of `min`..`cap` bytes is returned whole as `small` instead (nothing
   * allocated: the caller stores it inline). On any failure — ENOSPC, or the source throwing —
   * every block allocated here is freed before the error propagates.
   */
  private async streamBlocks(
    data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    goal: number,
    path: string,
    min: number,
    cap: number,
  ): Promise<{ extents: MapExtent[]; size: number; small?: Uint8Array }> {
    const all: MapExtent[] = [];
    let size = 0;
    let next = goal;
    // Chunks of at least STREAM_DIRECT bytes are written straight from the producer's buffer
    // (block-aligned part; the unaligned rest is gathered); smaller ones are gathered into
    // STREAM_GATHER-sized writes. Every write is awaited before the next chunk is pulled, so a
    // producer may reuse what it yielded.
    let gather = new Uint8Array(0);
    let g = 0;
    const bs = this.bs;
    const emit = async (bytes: Uint8Array) => {
      const runs = await this.alloc.allocBlocks(Math.ceil(bytes.length / bs), next, path);
      let pos = 0;
      for (const r of runs) {
        all.push({ lblk: (size + pos) / bs, pblk: r.start, len: r.len, uninit: false });
        pos += r.len * bs;
      }
      const last = runs[runs.length - 1];
      next = last.start + last.len;
      size += bytes.length;
      await this.writeRuns(runs, bytes);
    };
    try {
      for await (const raw of data as AsyncIterable<Uint8Array>) {
        const chunk = typeof raw === "string" ? new TextEncoder().encode(raw) : raw;
        let off = 0;
        while (off < chunk.length) {
          const rest = chunk.length - off;
          if (rest >= STREAM_DIRECT && g % bs === 0) {
            if (g) await emit(gather.subarray(0, g));
            g = 0;
            const n = rest - (rest % bs);
            await emit(chunk.subarray(off, off + n));
            off += n;
            continue;
          }
          if (gather.length === 0) gather = new Uint8Array(STREAM_GATHER);
          // Before a large remainder, gather only up to the block boundary.
          const take = Math.min(rest, gather.length - g, rest >= STREAM_DIRECT ? bs - (g % bs) : rest);
          gather.set(chunk.subarray(off, off + take), g);
          g += take;
          off += take;
          if (g === gather.length) {
            await emit(gather);
            g = 0;
          }
        }
      }
      if (all.length === 0 && g >= min && g <= cap)
        return { extents: [], size: g, small: gather.slice(0, g) };
      if (g) await emit(gather.subarray(0, g));
    } catch (e) {
      for (const x of all) await this.alloc.freeBlocksRange(x.pblk, x.len);
      throw e;
    }
    return { extents: all, size };
  }

  /** Write `data` over consecutive runs (the last block zero-padded). */
  private async writeRuns(runs: { start: number; len: number }[], data: Uint8Array): Promise<void> {
    if (runs.length === 1 && data.length <= 65536) {
      // Small: buffered in the store (the last block is zero-padded there).
      await this.store.writeData(runs[0].start, data);
      return;
    }
    let pos = 0;
    for (const r of runs) {
      const bytes = r.len * this.bs;
      const chunk = data.subarray(pos, Math.min(data.length, pos + bytes));
      if (chunk.length < bytes) {
        const full = Math.floor(chunk.length / this.bs) * this.bs;
        if (full > 0) await this.store.writeData(r.start, chunk.subarray(0, full));
        const tail = new Uint8Array(this.bs);
        tail.set(chunk.subarray(full));
        await this.store.writeData(r.start + full / this.bs, tail);
      } else await this.store.writeData(r.start, chunk);
      pos += bytes;
    }
  }

  // ------------------------------------------------------------ paths

  private split(path: string): string[] {
    if (typeof path !== "string") throw new Ext4EditError("EINVAL", "path must be a string", String(path));
    return path.split("/").filter((c) => c !== "" && c !== ".");
  }

  /** Resolve a guest path; symlinks are followed inside the guest. */
  private async resolve(path: string, followLast: boolean): Promise<{ ino: number; inode: Inode }> {
    const r = await this.lookupPath(path, followLast);
    if (!r) throw new Ext4EditError("ENOENT", "no such file or directory", path);
    return r;
  }

  /** resolve, but undefined when a component does not exist (no exception on the common miss). */
  private async lookupPath(
    path: string,
    followLast: boolean,
  ): Promise<{ ino: number; inode: Inode } | undefined> {
    if (this.dirtyInodes.size >= MAX_DIRTY_INODES) await this.flushInodes();
    let todo = this.split(path);
    const stack: number[] = [];
    let links = 0;
    let cur = await this.inodeRef(ROOT_INO);
    while (todo.length) {
      const comp = todo.shift() as string;
      if (comp === "..") {
        stack.pop();
        cur = await this.inodeRef(stack.length ? stack[stack.length - 1] : ROOT_INO);
        continue;
      }
      if ((cur.mode & S_IFMT) !== S_IFDIR) throw new Ext4EditError("ENOTDIR", "not a directory", path);
      const name = nameBytes(comp);
      if (name.length > 255) throw new Ext4EditError("ENAMETOOLONG", "name too long", path);
      const e = (this.dirs.get(cur.ino) ?? (await this.dir(cur))).entries.get(key(name));
      if (!e) return undefined;
      const child = await this.inodeRef(e.ino);
      if ((child.mode & S_IFMT) === S_IFLNK && (todo.length > 0 || followLast)) {
        if (++links > MAX_SYMLINKS)
          throw new Ext4EditError("ELOOP", "too many levels of symbolic links", path);
        const target = decodeName(await this.readLink(child));
        if (target.startsWith("/")) stack.length = 0;
        todo = [...this.split(target), ...todo];
        cur = await this.inodeRef(stack.length ? stack[stack.length - 1] : ROOT_INO);
        continue;
      }
      stack.push(e.ino);
      cur = child;
    }
    return { ino: stack.length ? stack[stack.length - 1] : ROOT_INO, inode: cur };
  }

  /** The directory that will hold the last component, and that component. */
  private async resolveParent(path: string): Promise<{ dir: Inode; name: Uint8Array; nameStr: string }> {
    const p = this.lastComponent(path);
    const dir = this.knownParentNow(p.parentPath, path) ?? (await this.parentDir(p.parentPath, path));
    return { dir, name: p.name, nameStr: p.nameStr };
  }

  /** A path's parent path and checked last component. */
  private lastComponent(path: string): { parentPath: string; name: Uint8Array; nameStr: string } {
    const parts = this.split(path);
    const last = parts.pop();
    if (last === undefined) throw new Ext4EditError("EINVAL", "invalid path", path);
    return { parentPath: parts.join("/"), name: this.checkedName(last, path), nameStr: last };
  }

  /** The bytes of a new entry's name, checked. */
  private checkedName(last: string, path: string): Uint8Array {
    if (last === "..") throw new Ext4EditError("EINVAL", "invalid path", path);
    const name = nameBytes(last);
    if (name.length > 255) throw new Ext4EditError("ENAMETOOLONG", "name too long", path);
    if (name.includes(0)) throw new Ext4EditError("EINVAL", "name contains NUL", path);
    // As many UTF-8 bytes as UTF-16 units: all ASCII, so the latin1 key is the string itself.
    if (name.length === last.length) rememberKey(name, last);
    return name;
  }

  /** Remember what a directory path resolves to (see knownParentNow). */
  private rememberParent(parentPath: string, ino: number): void {
    if (this.parentDirs.size >= 4096) this.parentDirs.clear();
    this.parentDirs.set(parentPath, ino);
  }

  /**
   * Many operations in a row go to the same few directories: their inode numbers are kept by
   * parent path, and forgotten whenever a name is removed or replaced (nothing else can change
   * what an existing path resolves to). The cached directory inode, when that needs no await.
   */
  private knownParentNow(parentPath: string, path: string): Inode | undefined {
    if (this.dirtyInodes.size >= MAX_DIRTY_INODES) return undefined;
    const known = this.parentDirs.get(parentPath);
    const inode = known === undefined ? undefined : this.inodes.get(known);
    if (inode && (inode.mode & S_IFMT) !== S_IFDIR)
      throw new Ext4EditError("ENOTDIR", "not a directory", path);
    return inode;
  }

  private async parentDir(parentPath: string, path: string): Promise<Inode> {
    const known = this.parentDirs.get(parentPath);
    let inode: Inode;
    if (known !== undefined) {
      if (this.dirtyInodes.size >= MAX_DIRTY_INODES) await this.flushInodes();
      inode = this.inodes.get(known) ?? (await this.inodeRef(known));
    } else {
      const r = await this.resolve(`/${parentPath}`, true);
      inode = r.inode;
      if ((inode.mode & S_IFMT) === S_IFDIR) this.rememberParent(parentPath, r.ino);
    }
    if ((inode.mode & S_IFMT) !== S_IFDIR) throw new Ext4EditError("ENOTDIR", "not a directory", path);
    return inode;
  }

  /** A data block as it is now: small writes may still be buffered in the store. */
  private async readDataBlock(block: number): Promise<Uint8Array> {
    const pending = this.store.pendingBlock(block);
    if (pending) return pending;
    if (this.store.isCached(block)) return (await this.store.get(block)).slice();
    await this.store.beforeDataRead(block);
    return this.reader.device.read(block * this.bs, this.bs);
  }

  private async readLink(inode: Inode): Promise<Uint8Array> {
    if (inode.size > 4096)
      throw new Ext4EditError("EINVAL", "symlink target too long", `<inode ${inode.ino}>`);
    if (inode.flags & INODE_FLAGS.INLINE_DATA || this.isFastSymlink(inode)) {
      if (inode.size <= 60) return inode.iBlock.slice(0, inode.size);
      const rest = (await this.loadXattrs(inode)).find(
        (x) => x.index === 7 && decodeName(x.suffix) === "data",
      );
      const out = new Uint8Array(inode.size);
      out.set(inode.iBlock.subarray(0, 60));
      if (rest) out.set(rest.value.subarray(0, inode.size - 60), 60);
      return out;
    }
    const map = await this.fileMap(inode);
    const out = new Uint8Array(inode.size);
    for (const e of map.extents) {
      for (let k = 0; k < e.len; k++) {
        const off = (e.lblk + k) * this.bs;
        if (off >= inode.size) break;
        const b = await this.readDataBlock(e.pblk + k);
        out.set(b.subarray(0, Math.min(this.bs, inode.size - off)), off);
      }
    }
    return out;
  }

  // ------------------------------------------------------------ directories

  /** Check a directory can be edited. */
  private async prepareDir(dir: Inode, path: string): Promise<void> {
    this.checkDirWritable(dir, path);
  }

  /**
   * Move an inline-data directory into a fresh block as the kernel does when it overflows: "."
   * and ".." (12 bytes each), then the inline records copied as they lie (i_block after the
   * parent number, then system.data), the last record stretched to the end of the block;
   * system.data removed, INLINE_DATA cleared.
   */
  private async convertInlineDir(dir: Inode, path: string): Promise<void> {
    this.alloc.reserveBlocks(Ext4Editor.DIR_INSERT_RESERVE, path);
    const { value, others } = await this.inlineParts(dir);
    this.inlineDirEntries(dir, value); // validates both regions
    const parent = inlineDirParent(dir.iBlock);
    const end = leafEnd(this.bs, this.csum);
    const head = 2 * direntSize(2);
    const used = head + INLINE_IBLOCK_SIZE - INLINE_DIR_PARENT_SIZE + value.length;
    if (used > end)
      throw new Ext4UnsupportedError("inline_data", `inline directory '${path}' does not fit in one block`);
    const [run] = await this.alloc.allocBlocks(1, this.alloc.goalFor(dir.ino), path);
    const buf = this.store.fresh(run.start);
    const dirFt = this.ft ? FT.dir : 0;
    encodeDirent(
      buf,
      0,
      { inode: dir.ino, recLen: 12, name: encodeName("."), fileType: dirFt },
      this.bs,
      this.ft,
    );
    encodeDirent(
      buf,
      12,
      { inode: parent, recLen: 12, name: encodeName(".."), fileType: dirFt },
      this.bs,
      this.ft,
    );
    buf.set(dir.iBlock.subarray(INLINE_DIR_PARENT_SIZE, INLINE_IBLOCK_SIZE), head);
    buf.set(value, head + INLINE_IBLOCK_SIZE - INLINE_DIR_PARENT_SIZE);
    let last = 0;
    for (let off = 0; off < used; ) {
      last = off;
      off += Math.max(8, decodeRecLen(u16(buf, off + 4), this.bs)); // validated above
    }
    setU16(buf, last + 4, encodeRecLen(end - last, this.bs));
    const entries = new Map<string, DirEntryInfo>();
    for (const d of parseDirentBlock(buf, 0, end, this.bs, this.ft).entries) {
      const k = key(d.name);
      if (k !== "." && k !== "..") entries.set(k, { ino: d.inode, ft: d.fileType, lblk: 0 });
    }
    dir.flags &= ~INODE_FLAGS.INLINE_DATA;
    await this.storeXattrs(dir, others, path);
    this.emptyMapRoot(dir);
    dir.size = this.bs;
    await this.setMap(dir, [{ lblk: 0, pblk: run.start, len: 1, uninit: false }], [], path);
    this.finishLeaf(dir, run.start, buf);
    this.putInode(dir);
    this.dirs.set(dir.ino, {
      ino: dir.ino,
      entries,
      pblk: [run.start],
      free: [maxFree(buf, 0, end, this.bs, this.ft)],
      hint: [],
      indexed: false,
    });
  }

  private checkDirWritable(dir: Inode, path: string): void {
    if (dir.flags & INODE_FLAGS.ENCRYPT)
      throw new Ext4UnsupportedError("encrypt", `cannot edit encrypted directory '${path}'`);
    if (dir.flags & INODE_FLAGS.CASEFOLD)
      throw new Ext4UnsupportedError("casefold", `cannot edit case-folded directory '${path}'`);
  }

  private async dir(dirInode: Inode): Promise<DirState> {
    const cached = this.dirs.get(dirInode.ino);
    if (cached) return cached;
    const st: DirState = {
      ino: dirInode.ino,
      entries: new Map(),
      pblk: [],
      free: [],
      hint: [],
      indexed: false,
    };
    if (dirInode.flags & INODE_FLAGS.INLINE_DATA) {
      const { value } = await this.inlineParts(dirInode);
      for (const e of this.inlineDirEntries(dirInode, value))
        st.entries.set(key(e.name), { ino: e.inode, ft: e.fileType, lblk: -1 });
      st.inline = true;
      this.dirs.set(dirInode.ino, st);
      return st;
    }
    const map = await this.fileMap(dirInode);
    const nblocks = Math.ceil(dirInode.size / this.bs);
    // Every block up to i_size is mapped in a sound directory (e2fsck fills holes): a size past
    // the mapped blocks is damage, and must not size the tables below.
    const mapped = map.extents.reduce((n, e) => Math.max(n, e.lblk + e.len), 0);
    if (nblocks > mapped)
      throw new Ext4FormatError(
        `directory size ${dirInode.size} bytes (${nblocks} blocks) but only ${mapped} blocks mapped`,
        { file: this.reader.device.name, structure: "directory", inode: dirInode.ino },
      );
    st.pblk = new Array(nblocks).fill(0);
    for (const e of map.extents)
      for (let k = 0; k < e.len; k++) if (e.lblk + k < nblocks) st.pblk[e.lblk + k] = e.pblk + k;
    st.indexed = (dirInode.flags & INODE_FLAGS.INDEX) !== 0 && hasCompat(this.sb, COMPAT.dir_index);
    const dxBlocks = new Set<number>();
    if (st.indexed) {
      dxBlocks.add(0);
      const root = await this.store.get(st.pblk[0]);
      const info = parseDxRootInfo(root);
      let level = [0];
      let off = 0x18 + info.infoLength;
      for (let d = 0; d <= info.indirectLevels && d < 3; d++) {
        const next: number[] = [];
        for (const l of level) {
          const b = await this.store.get(st.pblk[l]);
          const node = parseDxEntries(b, l === 0 ? off : 8);
          for (const e of node.entries) next.push(e.block);
        }
        if (d < info.indirectLevels) for (const l of next) dxBlocks.add(l);
        level = next;
        off = 8;
      }
    }
    const end = leafEnd(this.bs, this.csum);
    for (let l = 0; l < nblocks; l++) {
      if (dxBlocks.has(l) || st.pblk[l] === 0) {
        st.free[l] = -1;
        continue;
      }
      const b = await this.store.get(st.pblk[l]);
      const { entries, problem } = parseDirentBlock(b, 0, end, this.bs, this.ft);
      if (problem)
        throw new Ext4EditError(
          "EINVAL",
          `corrupt directory block ${l}: ${problem.message}`,
          `<inode ${dirInode.ino}>`,
        );
      for (const e of entries) {
        const k = key(e.name);
        if (k === "." || k === "..") continue;
        st.entries.set(k, { ino: e.inode, ft: e.fileType, lblk: l });
      }
      st.free[l] = maxFree(b, 0, end, this.bs, this.ft);
    }
    this.dirs.set(dirInode.ino, st);
    return st;
  }

  private finishLeaf(dirInode: Inode, pblk: number, buf: Uint8Array): void {
    this.store.markDirty(pblk);
    if (this.csum && !this.store.hasDeferredChecksum(pblk)) {
      const seed = this.inodeSeed(dirInode) as number;
      this.store.deferChecksum(pblk, (b) => setDirentTail(seed, b));
    }
    void buf;
  }

  private finishDx(dirInode: Inode, pblk: number, buf: Uint8Array, off: number): void {
    this.store.markDirty(pblk);
    if (this.csum) {
      const seed = this.inodeSeed(dirInode) as number;
      this.store.deferChecksum(pblk, (b) => setDxChecksum(seed, b, parseDxEntries(b, off)));
    }
    void buf;
  }

  /** Blocks a directory insert may need in the worst case (leaf split, index levels, tree nodes). */
  private static readonly DIR_INSERT_RESERVE = 8;

  /** Append a fresh block to a directory; returns its logical number. */
  private async appendDirBlock(
    dirInode: Inode,
    st: DirState,
    path: string,
  ): Promise<{ lblk: number; buf: Uint8Array; pblk: number }> {
    const lblk = st.pblk.length;
    const last = st.pblk[lblk - 1];
    const [run] = await this.alloc.allocBlocks(1, last ? last + 1 : this.alloc.goalFor(dirInode.ino), path);
    const map = await this.fileMap(dirInode);
    try {
      await this.setMap(
        dirInode,
        [...map.extents, { lblk, pblk: run.start, len: 1, uninit: false }],
        map.metaBlocks,
        path,
      );
    } catch (e) {
      await this.alloc.freeBlocksRange(run.start, 1);
      throw e;
    }
    dirInode.size = (lblk + 1) * this.bs;
    st.pblk.push(run.start);
    st.free.push(0);
    const buf = this.store.fresh(run.start);
    return { lblk, buf, pblk: run.start };
  }

  private hashVersion(): number {
    return this.sb.defHashVersion;
  }

  private hashOf(name: Uint8Array, rootVersion: number): number {
    // From an htree root or s_def_hash_version: siphash (casefold+encrypt) or garbage is refused.
    if (!isComputableHashVersion(rootVersion))
      throw new Ext4UnsupportedError("dir_hash", `htree hash version ${rootVersion} is not supported`, {
        file: this.reader.device.name,
        structure: "htree root",
      });
    return dxHash(name, effectiveHashVersion(rootVersion, this.sb.flags), this.sb.hashSeed).hash;
  }

  /**
   * dirInsert without an await, for an indexed directory whose root, index and target leaf are
   * cached and whose leaf has room (no split). False, and nothing done, otherwise.
   */
  private dirInsertNow(dirInode: Inode, name: Uint8Array, ino: number, ft: number): boolean {
    if (dirInode.flags & (INODE_FLAGS.INLINE_DATA | INODE_FLAGS.ENCRYPT | INODE_FLAGS.CASEFOLD)) return false;
    const st = this.dirs.get(dirInode.ino);
    if (!st?.indexed) return false;
    const root = this.store.peek(st.pblk[0]);
    if (!root) return false;
    const info = parseDxRootInfo(root);
    if (info.unusedFlags & 1) return false;
    const hash = this.hashOf(name, info.hashVersion);
    let lblk = 0;
    let off = 0x18 + info.infoLength;
    for (let d = 0; d <= info.indirectLevels; d++) {
      const b = this.store.peek(st.pblk[lblk]);
      if (!b) return false;
      const slot = dxSearchBlock(b, off, hash);
      if (!slot) return false;
      lblk = slot.lblk;
      off = 8;
    }
    const leafBuf = this.store.peek(st.pblk[lblk]);
    if (!leafBuf) return false;
    const rec: LeafRecord = { inode: ino, name, fileType: this.ft ? ft : 0 };
    const end = leafEnd(this.bs, this.csum);
    const at = insertIntoBlockAt(leafBuf, 0, st.hint[lblk] ?? 0, end, this.bs, this.ft, rec);
    if (at < 0) return false;
    st.hint[lblk] = at;
    this.finishLeaf(dirInode, st.pblk[lblk], leafBuf);
    st.entries.set(key(name), { ino, ft: rec.fileType, lblk });
    const now = this.now();
    dirInode.mtime = now;
    dirInode.ctime = now;
    return true;
  }

  /** Insert a name into a directory (dir inode is written by the caller). */
  private async dirInsert(
    dirInode: Inode,
    name: Uint8Array,
    ino: number,
    ft: number,
    path: string,
  ): Promise<void> {
    this.checkDirWritable(dirInode, path);
    let st = this.dirs.get(dirInode.ino) ?? (await this.dir(dirInode));
    const rec: LeafRecord = { inode: ino, name, fileType: this.ft ? ft : 0 };
    const end = leafEnd(this.bs, this.csum);
    const need = 8 + ((name.length + 3) & ~3);
    if (st.inline) {
      if (await this.inlineDirInsert(dirInode, rec, path)) {
        st.entries.set(key(name), { ino, ft, lblk: -1 });
        const now = this.now();
        dirInode.mtime = now;
        dirInode.ctime = now;
        return;
      }
      await this.convertInlineDir(dirInode, path);
      st = await this.dir(dirInode);
    }
    if (st.indexed) {
      await this.dxInsert(dirInode, st, rec, path);
    } else {
      let done = false;
      for (let l = 0; l < st.pblk.length; l++) {
        if (st.free[l] < need) continue;
        const b = await this.store.get(st.pblk[l]);
        if (insertIntoBlock(b, 0, end, this.bs, this.ft, rec)) {
          st.free[l] = maxFree(b, 0, end, this.bs, this.ft);
          this.finishLeaf(dirInode, st.pblk[l], b);
          st.entries.set(key(name), { ino, ft, lblk: l });
          done = true;
          break;
        }
      }
      if (!done) {
        if (
          st.pblk.length === 1 &&
          hasCompat(this.sb, COMPAT.dir_index) &&
          !(dirInode.flags & INODE_FLAGS.INDEX)
        ) {
          await this.makeIndexed(dirInode, st, path);
          await this.dxInsert(dirInode, st, rec, path);
        } else {
          const { lblk, buf, pblk } = await this.appendDirBlock(dirInode, st, path);
          writeLeaf(buf, end, this.bs, this.ft, [rec]);
          st.free[lblk] = maxFree(buf, 0, end, this.bs, this.ft);
          this.finishLeaf(dirInode, pblk, buf);
          st.entries.set(key(name), { ino, ft, lblk });
        }
      }
    }
    const now = this.now();
    dirInode.mtime = now;
    dirInode.ctime = now;
  }

  /** Turn a full one-block linear directory into an htree: root in block 0, entries in block 1. */
  private async makeIndexed(dirInode: Inode, st: DirState, path: string): Promise<void> {
    const end = leafEnd(this.bs, this.csum);
    const b0 = await this.store.get(st.pblk[0]);
    const { entries } = parseDirentBlock(b0, 0, end, this.bs, this.ft);
    const dot = entries.find((e) => key(e.name) === ".");
    const dotdot = entries.find((e) => key(e.name) === "..");
    const recs: LeafRecord[] = entries
      .filter((e) => e !== dot && e !== dotdot)
      .map((e) => ({ inode: e.inode, name: e.name, fileType: e.fileType }));
    const version = this.hashVersion();
    recs.sort((a, b) => this.hashOf(a.name, version) - this.hashOf(b.name, version));
    const leaf = await this.appendDirBlock(dirInode, st, path);
    writeLeaf(leaf.buf, end, this.bs, this.ft, recs);
    st.free[leaf.lblk] = maxFree(leaf.buf, 0, end, this.bs, this.ft);
    this.finishLeaf(dirInode, leaf.pblk, leaf.buf);
    for (const r of recs) {
      const e = st.entries.get(key(r.name));
      if (e) e.lblk = leaf.lblk;
    }
    const root = await this.store.get(st.pblk[0]);
    const { off } = writeDxRoot(
      root,
      this.bs,
      this.ft,
      dirInode.ino,
      dotdot?.inode ?? ROOT_INO,
      this.ft ? FT.dir : 0,
      version,
      0,
      [{ hash: 0, block: leaf.lblk }],
      this.csum,
    );
    this.finishDx(dirInode, st.pblk[0], root, off);
    st.free[0] = -1;
    st.indexed = true;
    dirInode.flags |= INODE_FLAGS.INDEX;
  }

  private async dxInsert(dirInode: Inode, st: DirState, rec: LeafRecord, path: string): Promise<void> {
    const end = leafEnd(this.bs, this.csum);
    const root = this.store.peek(st.pblk[0]) ?? (await this.store.get(st.pblk[0]));
    const info = parseDxRootInfo(root);
    if (info.unusedFlags & 1)
      throw new Ext4UnsupportedError("htree", `directory '${path}' has an unsupported index`);
    const version = info.hashVersion;
    const hash = this.hashOf(rec.name, version);
    // Path from the root to the leaf.
    interface Level {
      lblk: number;
      off: number;
      at: number;
    }
    const levels: Level[] = [];
    let lblk = 0;
    let off = 0x18 + info.infoLength;
    for (let d = 0; d <= info.indirectLevels; d++) {
      const b = this.store.peek(st.pblk[lblk]) ?? (await this.store.get(st.pblk[lblk]));
      const slot = dxSearchBlock(b, off, hash);
      if (!slot) throw new Ext4EditError("EINVAL", "empty directory index node", path);
      levels.push({ lblk, off, at: slot.at });
      lblk = slot.lblk;
      off = 8;
    }
    const leafL = lblk;
    const leafBuf = this.store.peek(st.pblk[leafL]) ?? (await this.store.get(st.pblk[leafL]));
    // (st.free is only consulted for linear directories: not kept up to date here.)
    const at = insertIntoBlockAt(leafBuf, 0, st.hint[leafL] ?? 0, end, this.bs, this.ft, rec);
    if (at >= 0) {
      st.hint[leafL] = at;
      this.finishLeaf(dirInode, st.pblk[leafL], leafBuf);
      st.entries.set(key(rec.name), { ino: rec.inode, ft: rec.fileType, lblk: leafL });
      return;
    }
    // Split the leaf: entries sorted by hash, the upper half moves to a new block.
    const { entries } = parseDirentBlock(leafBuf, 0, end, this.bs, this.ft);
    const all = [...entries.map((e) => ({ inode: e.inode, name: e.name, fileType: e.fileType })), rec].map(
      (r) => ({
        r,
        h: this.hashOf(r.name, version),
      }),
    );
    all.sort((a, b) => a.h - b.h);
    const sizes = all.map((x) => 8 + ((x.r.name.length + 3) & ~3));
    const total = sizes.reduce((a, b) => a + b, 0);
    const acc = 0;
    let cut = -1;
    const candidates: number[] = [];
    for (let i = 1; i < all.length; i++) if (all[i].h !== all[i - 1].h) candidates.push(i);
    // Split point nearest the middle by size whose halves both fit.
    let best = Number.POSITIVE_INFINITY;
    const prefix: number[] = [0];
    for (const s of sizes) prefix.push(prefix[prefix.length - 1] + s);
    for (const i of candidates) {
      const left = prefix[i];
      const right = total - left;
      if (left > end || right > end) continue;
      const d = Math.abs(left - right);
      if (d < best) {
        best = d;
        cut = i;
      }
    }
    void acc;
    if (cut < 0)
      throw new Ext4UnsupportedError("htree", `cannot split a directory leaf of '${path}' (hash collisions)`);
    const splitHash = all[cut].h;
    // An index full at every level with no level left to add: fail before anything is allocated.
    await this.checkDxRoom(st, levels, info.indirectLevels, path);
    // Make room in the parent first (may add a level or split index nodes).
    const newLeaf = await this.appendDirBlock(dirInode, st, path);
    await this.dxAddEntry(
      dirInode,
      st,
      levels,
      levels.length - 1,
      { hash: splitHash, block: newLeaf.lblk },
      info.indirectLevels,
      path,
    );
    const lower = all.slice(0, cut).map((x) => x.r);
    const upper = all.slice(cut).map((x) => x.r);
    writeLeaf(leafBuf, end, this.bs, this.ft, lower);
    writeLeaf(newLeaf.buf, end, this.bs, this.ft, upper);
    st.hint[leafL] = 0;
    st.hint[newLeaf.lblk] = 0;
    this.finishLeaf(dirInode, st.pblk[leafL], leafBuf);
    this.finishLeaf(dirInode, newLeaf.pblk, newLeaf.buf);
    // The names moved to the new leaf keep their old lblk: it is only a hint (see inLeaf), and
    // rewriting it would cost a map lookup per moved name on every split.
    st.entries.set(key(rec.name), {
      ino: rec.inode,
      ft: rec.fileType,
      lblk: cut <= all.findIndex((x) => x.r === rec) ? newLeaf.lblk : leafL,
    });
  }

  private async checkDxRoom(
    st: DirState,
    levels: { lblk: number; off: number }[],
    indirect: number,
    path: string,
  ): Promise<void> {
    for (let i = levels.length - 1; i >= 0; i--) {
      const node = parseDxEntries(await this.store.get(st.pblk[levels[i].lblk]), levels[i].off);
      if (node.count < node.limit) return;
    }
    const maxIndirect = hasIncompat(this.sb, INCOMPAT.large_dir) ? 2 : 1;
    if (indirect >= maxIndirect)
      throw new Ext4NoSpaceError("blocks", `directory index of '${path}' is full`, path);
  }

  /** Insert (hash → block) after levels[i].at in index node i, splitting or adding a level as needed. */
  private async dxAddEntry(
    dirInode: Inode,
    st: DirState,
    levels: { lblk: number; off: number; at: number }[],
    i: number,
    entry: DxEntry,
    indirect: number,
    path: string,
  ): Promise<void> {
    const lv = levels[i];
    const buf = await this.store.get(st.pblk[lv.lblk]);
    const node = parseDxEntries(buf, lv.off);
    if (node.count < node.limit) {
      const entries = [...node.entries];
      entries.splice(lv.at + 1, 0, entry);
      this.writeDxEntries(dirInode, st, lv.lblk, buf, lv.off, node.limit, entries);
      return;
    }
    const maxIndirect = hasIncompat(this.sb, INCOMPAT.large_dir) ? 2 : 1;
    if (i === 0) {
      if (indirect >= maxIndirect)
        throw new Ext4NoSpaceError("blocks", `directory index of '${path}' is full`, path);
      // Add a level: the root's entries move to a new index node.
      const child = await this.appendDirBlock(dirInode, st, path);
      st.free[child.lblk] = -1;
      const moved = [...node.entries];
      moved.splice(lv.at + 1, 0, entry);
      const { off: coff } = writeDxNode(child.buf, this.bs, moved, this.csum);
      this.finishDx(dirInode, child.pblk, child.buf, coff);
      const info = parseDxRootInfo(buf);
      const { off } = writeDxRoot(
        buf,
        this.bs,
        this.ft,
        dirInode.ino,
        u32(buf, 12),
        this.ft ? FT.dir : 0,
        info.hashVersion,
        indirect + 1,
        [{ hash: 0, block: child.lblk }],
        this.csum,
      );
      this.finishDx(dirInode, st.pblk[0], buf, off);
      if (moved.length > parseDxEntries(child.buf, coff).limit) throw new Error("dx node overflow");
      return;
    }
    // Split an interior node in two; the upper half's first hash goes up.
    const entries = [...node.entries];
    entries.splice(lv.at + 1, 0, entry);
    const half = entries.length >> 1;
    const lower = entries.slice(0, half);
    const upper = entries.slice(half);
    const right = await this.appendDirBlock(dirInode, st, path);
    st.free[right.lblk] = -1;
    await this.dxAddEntry(
      dirInode,
      st,
      levels,
      i - 1,
      { hash: upper[0].hash, block: right.lblk },
      indirect,
      path,
    );
    this.writeDxEntries(dirInode, st, lv.lblk, buf, lv.off, node.limit, lower);
    const { off: roff } = writeDxNode(right.buf, this.bs, upper, this.csum);
    this.finishDx(dirInode, right.pblk, right.buf, roff);
  }

  private writeDxEntries(
    dirInode: Inode,
    st: DirState,
    lblk: number,
    buf: Uint8Array,
    off: number,
    limit: number,
    entries: DxEntry[],
  ): void {
    // entries[0]'s hash slot holds limit/count.
    encodeDxEntries(buf, off, { limit, entries });
    this.finishDx(dirInode, st.pblk[lblk], buf, off);
  }

  /**
   * Apply `edit` to the leaf holding a name: the entry's lblk first (a hint: names moved by a
   * leaf split keep the old one), then every other leaf. Returns the leaf, or -1.
   */
  private async inLeaf(st: DirState, e: DirEntryInfo, edit: (b: Uint8Array) => boolean): Promise<number> {
    if (e.lblk >= 0 && e.lblk < st.pblk.length && st.pblk[e.lblk] && st.free[e.lblk] !== -1) {
      if (edit(await this.store.get(st.pblk[e.lblk]))) return e.lblk;
    }
    for (let l = 0; l < st.pblk.length; l++) {
      if (l === e.lblk || st.free[l] === -1 || st.pblk[l] === 0) continue;
      if (edit(await this.store.get(st.pblk[l]))) {
        e.lblk = l;
        return l;
      }
    }
    return -1;
  }

  private async dirRemove(dirInode: Inode, name: Uint8Array, path: string): Promise<void> {
    await this.prepareDir(dirInode, path);
    const st = await this.dir(dirInode);
    const e = st.entries.get(key(name));
    if (!e) throw new Ext4EditError("ENOENT", "no such file or directory", path);
    this.parentDirs.clear();
    if (st.inline) {
      const ok = await this.inlineDirEdit(dirInode, path, (buf, start, end) =>
        removeFromBlock(buf, start, end, this.bs, this.ft, name),
      );
      if (!ok) throw new Ext4EditError("EINVAL", "directory entry vanished", path);
    } else {
      const end = leafEnd(this.bs, this.csum);
      const l = await this.inLeaf(st, e, (b) => removeFromBlock(b, 0, end, this.bs, this.ft, name));
      if (l < 0) throw new Ext4EditError("EINVAL", "directory entry vanished", path);
      // Records merged: the insert hint may no longer be a record boundary.
      st.hint[l] = 0;
      const b = await this.store.get(st.pblk[l]);
      st.free[l] = maxFree(b, 0, end, this.bs, this.ft);
      this.finishLeaf(dirInode, st.pblk[l], b);
    }
    st.entries.delete(key(name));
    const now = this.now();
    dirInode.mtime = now;
    dirInode.ctime = now;
  }

  private async dirRetarget(
    dirInode: Inode,
    name: Uint8Array,
    ino: number,
    ft: number,
    path: string,
  ): Promise<void> {
    const st = await this.dir(dirInode);
    const e = st.entries.get(key(name));
    if (!e) throw new Ext4EditError("ENOENT", "no such file or directory", path);
    this.parentDirs.clear();
    if (st.inline) {
      const ok = await this.inlineDirEdit(dirInode, path, (buf, start, end) =>
        retargetInBlock(buf, start, end, this.bs, this.ft, name, ino, this.ft ? ft : 0),
      );
      if (!ok) throw new Ext4EditError("EINVAL", "directory entry vanished", path);
    } else {
      const end = leafEnd(this.bs, this.csum);
      const l = await this.inLeaf(st, e, (b) =>
        retargetInBlock(b, 0, end, this.bs, this.ft, name, ino, this.ft ? ft : 0),
      );
      if (l < 0) throw new Ext4EditError("EINVAL", "directory entry vanished", path);
      this.finishLeaf(dirInode, st.pblk[l], await this.store.get(st.pblk[l]));
    }
    e.ino = ino;
    e.ft = ft;
  }

  /** Point a directory's ".." at a new parent. */
  private async setDotDot(child: Inode, parent: number): Promise<void> {
    if (child.flags & INODE_FLAGS.INLINE_DATA) {
      setInlineDirParent(child.iBlock, parent);
      this.putInode(child);
      return;
    }
    const st = await this.dir(child);
    const b = await this.store.get(st.pblk[0]);
    setU32(b, 12, parent);
    if (st.indexed) {
      const info = parseDxRootInfo(b);
      this.finishDx(child, st.pblk[0], b, 0x18 + info.infoLength);
    } else this.finishLeaf(child, st.pblk[0], b);
  }

  // ------------------------------------------------------------ link counts

  private incDirLinks(dir: Inode): void {
    if (dir.linksCount === 1) return;
    if (dir.linksCount + 1 >= LINK_MAX) {
      if (!hasRoCompat(this.sb, RO_COMPAT.dir_nlink))
        throw new Ext4EditError("EMLINK", "too many subdirectories", `<inode ${dir.ino}>`);
      dir.linksCount = 1;
      return;
    }
    dir.linksCount++;
  }

  private decDirLinks(dir: Inode): void {
    if (dir.linksCount > 2) dir.linksCount--;
  }

  // ------------------------------------------------------------ creation helpers

  private async createInode(
    parent: Inode,
    name: Uint8Array,
    mode: number,
    owner: OwnerOptions,
    path: string,
    fill: (inode: Inode) => Promise<void> | undefined,
    /**
     * The inode is complete once filled (a new file, a symlink, a device): encode it into its
     * table block now instead of keeping the object dirty until flush. Thousands of new files
     * then leave no objects behind for the garbage collector to carry.
     */
    final = false,
  ): Promise<Inode> {
    if (parent.flags & INODE_FLAGS.INLINE_DATA) await this.prepareDir(parent, path);
    else this.checkDirWritable(parent, path);
    const st = this.dirs.get(parent.ino) ?? (await this.dir(parent));
    if (st.entries.has(key(name))) throw new Ext4EditError("EEXIST", "file already exists", path);
    const isDir = (mode & S_IFMT) === S_IFDIR;
    this.alloc.reserveInodes(1, path);
    this.alloc.reserveBlocks(Ext4Editor.DIR_INSERT_RESERVE + (isDir ? 1 : 0), path);
    const topLevel = isDir && parent.ino === ROOT_INO;
    const ino =
      this.alloc.allocInodeNow(parent.ino, isDir, topLevel, path) ||
      (await this.alloc.allocInode(parent.ino, isDir, topLevel, path));
    const inode = this.blankInode(ino, mode, owner.uid ?? 0, owner.gid ?? 0);
    try {
      const pending = fill(inode);
      if (pending) await pending;
    } catch (e) {
      await this.alloc.freeInode(ino, isDir);
      throw e;
    }
    if (final) {
      // A former inode of this number (freed in this session) must not be flushed over it.
      this.inodes.delete(ino);
      this.dirtyInodes.delete(ino);
      await this.writeInode(inode);
    } else this.putInode(inode);
    const ft = fileTypeFromMode(mode);
    if (!this.dirInsertNow(parent, name, ino, ft)) await this.dirInsert(parent, name, ino, ft, path);
    if (isDir) this.incDirLinks(parent);
    this.putInode(parent);
    return inode;
  }

  // ------------------------------------------------------------ public API: creation

  async mkdir(path: string, options: MkdirOptions = {}): Promise<string | undefined> {
    const mode = (options.mode ?? 0o755) & 0o7777;
    if (options.recursive) {
      const parts = this.split(path);
      // The longest existing prefix, looked up from the end: `mkdir -p` of one new level (the
      // common case) costs two lookups, not one per level.
      let have = parts.length;
      let cur: Inode | undefined;
      for (; have > 0; have--) {
        const p = `/${parts.slice(0, have).join("/")}`;
        const r = await this.lookupPath(p, true);
        if (!r) continue;
        if ((r.inode.mode & S_IFMT) !== S_IFDIR) throw new Ext4EditError("ENOTDIR", "not a directory", p);
        cur = r.inode;
        break;
      }
      cur ??= await this.inodeRef(ROOT_INO);
      const first = have < parts.length ? `/${parts.slice(0, have + 1).join("/")}` : undefined;
      for (let i = have; i < parts.length; i++) {
        const p = `/${parts.slice(0, i + 1).join("/")}`;
        // After a directory we just made, ".." is its parent, which exists.
        if (parts[i] === "..") cur = (await this.resolve(p, true)).inode;
        else cur = await this.mkdirIn(cur, this.checkedName(parts[i], p), p, mode, options);
        this.rememberParent(parts.slice(0, i + 1).join("/"), cur.ino);
      }
      return first;
    }
    const { dir, name } = await this.resolveParent(path);
    await this.mkdirIn(dir, name, path, mode, options);
    return undefined;
  }

  /** Make directory `name` in `dir` (`path` names it in errors); its inode. */
  private mkdirIn(
    dir: Inode,
    name: Uint8Array,
    path: string,
    mode: number,
    owner: OwnerOptions,
  ): Promise<Inode> {
    return this.createInode(dir, name, S_IFDIR | mode, owner, path, async (inode) => {
      if (this.inlineCapacity(inode, []) >= INLINE_IBLOCK_SIZE) {
        // inline_data: the parent's number, then one empty record over the rest of i_block.
        inode.linksCount = 2;
        inode.iBlock = new Uint8Array(INLINE_IBLOCK_SIZE);
        setInlineDirParent(inode.iBlock, dir.ino);
        const rest = INLINE_IBLOCK_SIZE - INLINE_DIR_PARENT_SIZE;
        encodeDirent(
          inode.iBlock,
          INLINE_DIR_PARENT_SIZE,
          { inode: 0, recLen: rest, name: new Uint8Array(0), fileType: 0 },
          this.bs,
          this.ft,
        );
        inode.flags |= INODE_FLAGS.INLINE_DATA;
        await this.storeInlineDirValue(inode, new Uint8Array(0), [], path);
        this.dirs.set(inode.ino, {
          ino: inode.ino,
          entries: new Map(),
          pblk: [],
          free: [],
          hint: [],
          indexed: false,
          inline: true,
        });
        return;
      }
      this.emptyMapRoot(inode);
      const [run] = await this.alloc.allocBlocks(1, this.alloc.goalFor(inode.ino), path);
      const buf = this.store.fresh(run.start);
      const end = leafEnd(this.bs, this.csum);
      writeDirHead(buf, end, this.bs, this.ft, inode.ino, dir.ino, this.ft ? FT.dir : 0);
      inode.linksCount = 2;
      inode.size = this.bs;
      try {
        await this.setMap(inode, [{ lblk: 0, pblk: run.start, len: 1, uninit: false }], [], path);
      } catch (e) {
        await this.alloc.freeBlocksRange(run.start, 1);
        throw e;
      }
      this.finishLeaf(inode, run.start, buf);
      this.dirs.set(inode.ino, {
        ino: inode.ino,
        entries: new Map(),
        pblk: [run.start],
        free: [maxFree(buf, 0, end, this.bs, this.ft)],
        hint: [],
        indexed: false,
      });
    });
  }

  async writeFile(
    path: string,
    data: string | Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: WriteFileOptions = {},
  ): Promise<void> {
    const content = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const { parentPath, name } = this.lastComponent(path);
    const dir = this.knownParentNow(parentPath, path) ?? (await this.parentDir(parentPath, path));
    const st = this.dirs.get(dir.ino) ?? (await this.dir(dir));
    const existing = st.entries.get(key(name));
    if (existing) return this.overwriteFile(existing.ino, path, content, options);
    const mode = S_IFREG | ((options.mode ?? 0o644) & 0o7777);
    await this.createInode(
      dir,
      name,
      mode,
      options,
      path,
      (inode) => {
        if (this.extents) {
          // A blank inode's i_block is a view of its own zeroed bytes: the root is written there.
          inode.flags |= INODE_FLAGS.EXTENTS;
          writeExtentRoot(inode.iBlock, []);
        } else this.emptyMapRoot(inode);
        inode.linksCount = 1;
        if (options.mtime !== undefined) inode.mtime = toTimestamp(options.mtime);
        if (options.atime !== undefined) inode.atime = toTimestamp(options.atime);
        const now = content instanceof Uint8Array ? this.writeSmallNow(inode, content, path) : false;
        return now === false ? this.writeContent(inode, content, path) : now;
      },
      true,
    );
  }

  /** writeFile over an existing name (its own function: writeFile's frame stays small). */
  private async overwriteFile(
    ino: number,
    path: string,
    content: Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: WriteFileOptions,
  ): Promise<void> {
    if (options.flag === "wx") throw new Ext4EditError("EEXIST", "file already exists", path);
    let inode = await this.inodeRef(ino);
    if ((inode.mode & S_IFMT) === S_IFLNK) {
      // Follow a final symlink like node does.
      try {
        inode = (await this.resolve(path, true)).inode;
      } catch (e) {
        if (e instanceof Ext4EditError && e.code === "ENOENT") {
          const target = decodeName(await this.readLink(inode));
          const base = target.startsWith("/")
            ? target
            : `${this.split(path).slice(0, -1).join("/")}/${target}`;
          return this.writeFile(`/${base}`, content, options);
        }
        throw e;
      }
    }
    if ((inode.mode & S_IFMT) === S_IFDIR) throw new Ext4EditError("EISDIR", "is a directory", path);
    if ((inode.mode & S_IFMT) !== S_IFREG) throw new Ext4EditError("EINVAL", "not a regular file", path);
    this.checkFileWritable(inode, path);
    await this.replaceContent(inode, content, path);
    if (options.mode !== undefined) inode.mode = (inode.mode & S_IFMT) | (options.mode & 0o7777);
    if (options.uid !== undefined) inode.uid = options.uid >>> 0;
    if (options.gid !== undefined) inode.gid = options.gid >>> 0;
    const now = this.now();
    inode.mtime = options.mtime !== undefined ? toTimestamp(options.mtime) : now;
    inode.ctime = now;
    if (options.atime !== undefined) inode.atime = toTimestamp(options.atime);
    this.putInode(inode);
  }

  /**
   * writeContent's small-file case for a new inode (an empty extent root in i_block, written
   * over in place) without an await when its blocks
   * are one run in the goal group (bitmap at hand): the data joins the pending run when it can.
   * False when that does not apply (nothing done).
   */
  private writeSmallNow(inode: Inode, data: Uint8Array, path: string): Promise<void> | undefined | false {
    const n = Math.ceil(data.length / this.bs);
    if (n === 0 || data.length > 65536 || !this.usesExtents(inode)) return false;
    // Content the new inode can hold inline (inline_data) is writeContent's.
    if (data.length <= this.inlineCapacity(inode, [])) return false;
    // Data, and one spare for directory growth (as writeContent reserves).
    this.alloc.reserveBlocks(n + 1, path);
    const runs = this.alloc.allocBlocksNow(n, this.alloc.goalFor(inode.ino), path, true);
    if (!runs) return false;
    const start = runs[0].start;
    // One extent fits the root (written over the empty one): no tree node to allocate.
    writeExtentRoot(inode.iBlock, [{ lblk: 0, pblk: start, len: n, uninit: false }]);
    this.setBlocks(inode, n + (inode.fileAcl ? 1 : 0));
    inode.size = data.length;
    return this.store.writeDataNow(start, data) ? undefined : this.store.writeData(start, data);
  }

  /**
   * Write `data` into an existing regular file at byte `offset`, like pwrite(2) (a final symlink
   * is followed). Only the touched blocks are written: holes in the range get new blocks,
   * unwritten (uninitialised) extents become written where the data lands (split around it),
   * and the size grows when the write ends past it — a write beyond the end leaves a hole. An
   * inline file stays inline while it fits, else its content moves to a block first.
   */
  async writeAt(path: string, offset: number, data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(offset + bytes.length))
      throw new Ext4EditError("EINVAL", "invalid offset", path);
    const { inode } = await this.resolve(path, true);
    const fmt = inode.mode & S_IFMT;
    if (fmt !== S_IFREG)
      throw new Ext4EditError(fmt === S_IFDIR ? "EISDIR" : "EINVAL", "not a regular file", path);
    this.checkFileWritable(inode, path);
    if (bytes.length === 0) return;
    const end = offset + bytes.length;
    const lastBlock = Math.floor((end - 1) / this.bs);
    const per = this.bs / 4;
    const limit =
      this.usesExtents(inode) || inode.flags & INODE_FLAGS.INLINE_DATA
        ? 2 ** 32
        : 12 + per + per * per + per * per * per;
    if (lastBlock >= limit) throw new Ext4EditError("EINVAL", "file too large", path);
    const newSize = Math.max(inode.size, end);
    if (inode.flags & INODE_FLAGS.INLINE_DATA) {
      const { value, others } = await this.inlineParts(inode);
      const old = inlineFileContent(inode.iBlock, value, inode.size);
      if (newSize <= this.inlineCapacity(inode, others)) {
        const next = new Uint8Array(newSize);
        next.set(old);
        next.set(bytes, offset);
        await this.storeInline(inode, next, others, path);
      } else {
        // More than the inode holds: the old content moves to a block first (as the kernel
        // converts), then the write lands on the block file.
        this.alloc.reserveBlocks(Math.ceil(bytes.length / this.bs) + 4, path);
        const size = inode.size;
        await this.dropContent(inode);
        await this.writeContent(inode, old, path, "never");
        inode.size = size;
        try {
          await this.writeBlocksAt(inode, offset, bytes, path);
        } catch (e) {
          // Converted but not written (e.g. ENOSPC on fragmented space): keep the converted inode.
          await this.putInode(inode);
          throw e;
        }
      }
    } else await this.writeBlocksAt(inode, offset, bytes, path);
    inode.size = newSize;
    const now = this.now();
    inode.mtime = now;
    inode.ctime = now;
    await this.putInode(inode);
  }

  /** The block part of writeAt: map updates and data writes for a block-mapped file. */
  private async writeBlocksAt(inode: Inode, offset: number, bytes: Uint8Array, path: string): Promise<void> {
    const bs = this.bs;
    const end = offset + bytes.length;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    const oldSize = inode.size;
    const map = await this.fileMap(inode);
    const exts = [...map.extents].sort((a, b) => a.lblk - b.lblk);
    // The range [first, last] as pieces: mapped (written or unwritten) or holes.
    interface Piece {
      lblk: number;
      len: number;
      pblk: number;
      /** Existing blocks whose content counts (written extents); false for holes and unwritten. */
      keep: boolean;
    }
    const pieces: Piece[] = [];
    const holes: { lblk: number; len: number }[] = [];
    let at = first;
    const untouched: MapExtent[] = [];
    for (const e of exts) {
      const eEnd = e.lblk + e.len;
      if (eEnd <= first || e.lblk > last) {
        untouched.push(e);
        continue;
      }
      if (e.lblk > at) holes.push({ lblk: at, len: e.lblk - at });
      const s = Math.max(e.lblk, first);
      const t = Math.min(eEnd, last + 1);
      // Parts of the extent outside the range keep their state; the covered part becomes written.
      if (e.lblk < s) untouched.push({ ...e, len: s - e.lblk });
      if (eEnd > t) untouched.push({ ...e, lblk: t, pblk: e.pblk + (t - e.lblk), len: eEnd - t });
      pieces.push({ lblk: s, len: t - s, pblk: e.pblk + (s - e.lblk), keep: !e.uninit });
      at = t;
    }
    if (at <= last) holes.push({ lblk: at, len: last + 1 - at });
    const holeBlocks = holes.reduce((n, h) => n + h.len, 0);
    // New blocks plus the tree nodes of the map-to-be (holes counted as one extent each; if they
    // end up fragmented, setMap's own check still fails before anything stays allocated).
    const provisional: MapExtent[] = [
      ...untouched,
      ...pieces.map((p) => ({ lblk: p.lblk, pblk: p.pblk, len: p.len, uninit: false })),
      ...holes.map((h) => ({ ...h, pblk: 0, uninit: false })),
    ].sort((a, b) => a.lblk - b.lblk);
    const nodes = this.nodesNeeded(inode, provisional);
    if (holeBlocks + nodes > this.alloc.freeBlocks + map.metaBlocks.length)
      this.alloc.reserveBlocks(holeBlocks + nodes - map.metaBlocks.length, path);
    const allocated: MapExtent[] = [];
    try {
      for (const h of holes) {
        // Goal: right after the block mapped just before the hole (contiguous growth).
        let goal = this.alloc.goalFor(inode.ino);
        for (const e of exts) if (e.lblk < h.lblk) goal = e.pblk + (h.lblk - e.lblk);
        const runs = await this.alloc.allocBlocks(h.len, goal, path);
        let l = h.lblk;
        for (const r of runs) {
          allocated.push({ lblk: l, pblk: r.start, len: r.len, uninit: false });
          pieces.push({ lblk: l, len: r.len, pblk: r.start, keep: false });
          l += r.len;
        }
      }
      const written = pieces.map((p) => ({ lblk: p.lblk, pblk: p.pblk, len: p.len, uninit: false }));
      await this.setMap(inode, [...untouched, ...written], map.metaBlocks, path);
    } catch (e) {
      for (const x of allocated) await this.alloc.freeBlocksRange(x.pblk, x.len);
      throw e;
    }
    // Data: each piece is physically contiguous. Partial edge blocks of written extents are
    // read first; bytes past the old end of file read as zeros.
    for (const p of pieces.sort((a, b) => a.lblk - b.lblk)) {
      const buf = new Uint8Array(p.len * bs);
      if (p.keep) {
        for (const k of new Set([0, p.len - 1])) {
          const lb = p.lblk + k;
          const s = lb * bs;
          if (s >= offset && s + bs <= end) continue;
          const b = await this.readDataBlock(p.pblk + k);
          buf.set(b, k * bs);
          if (s + bs > oldSize) buf.fill(0, k * bs + Math.max(0, oldSize - s), (k + 1) * bs);
        }
      }
      const from = Math.max(offset, p.lblk * bs);
      const to = Math.min(end, (p.lblk + p.len) * bs);
      buf.set(bytes.subarray(from - offset, to - offset), from - p.lblk * bs);
      await this.writeRuns([{ start: p.pblk, len: p.len }], buf);
    }
    // Growing past a partial last block: its bytes after the old end must read as zeros.
    const tailBlock = Math.floor(oldSize / bs);
    if (offset > oldSize && oldSize % bs && tailBlock < first) {
      const e = untouched.find((x) => x.lblk <= tailBlock && tailBlock < x.lblk + x.len && !x.uninit);
      if (e) {
        const p = e.pblk + (tailBlock - e.lblk);
        const copy = new Uint8Array(await this.readDataBlock(p));
        copy.fill(0, oldSize % bs);
        await this.store.writeData(p, copy);
      }
    }
  }

  private checkFileWritable(inode: Inode, path: string): void {
    if (inode.flags & INODE_FLAGS.VERITY)
      throw new Ext4UnsupportedError("verity", `cannot modify verity file '${path}'`);
    if (inode.flags & INODE_FLAGS.ENCRYPT)
      throw new Ext4UnsupportedError("encrypt", `cannot modify encrypted file '${path}'`);
    if (inode.flags & (INODE_FLAGS.IMMUTABLE | INODE_FLAGS.APPEND))
      throw new Ext4EditError("EPERM", "file is immutable or append-only", path);
  }

  /**
   * Replace an inode's content. A byte buffer's size is known: the space it needs is checked
   * first, then the old content is freed and the new one written (in the room the old one left).
   * A stream is written aside first (replaceFromStream), so a failure leaves the old content.
   */
  private async replaceContent(
    inode: Inode,
    content: Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    path: string,
  ): Promise<void> {
    if (!(content instanceof Uint8Array)) return this.replaceFromStream(inode, content, path);
    // Like the kernel, a file already in blocks stays there; an inline one stays inline if it fits.
    const wasInline = (inode.flags & INODE_FLAGS.INLINE_DATA) !== 0;
    // The old content is dropped before the new one is written: check first that the new one
    // fits, data and map blocks. A block map's indirect blocks depend on the size alone; an
    // extent tree's nodes on how fragmented the free space is: counted as if every block were an
    // extent of its own (the most it can take), so the write after the drop cannot fail.
    const inline =
      wasInline && content.length <= this.inlineCapacity(inode, (await this.inlineParts(inode)).others);
    const old = await this.fileMap(inode);
    const oldBlocks = old.extents.reduce((n, e) => n + e.len, 0) + old.metaBlocks.length;
    const n = inline ? 0 : Math.ceil(content.length / this.bs);
    const map = Math.max(
      1,
      this.extents
        ? extentNodesNeeded(n, this.bs)
        : blockMapNodesNeeded([{ lblk: 0, pblk: 0, len: n, uninit: false }], this.bs),
    );
    if (n) this.alloc.reserveBlocks(Math.max(0, n + map - oldBlocks), path);
    await this.dropContent(inode);
    this.putInode(inode);
    await this.writeContent(inode, content, path, wasInline ? "keep" : "never");
  }

  /**
   * Replace an inode's content from a stream, all or nothing (its size is unknown until the end,
   * so it cannot be checked first): the new content is written into a fresh map of a scratch copy
   * of the inode (same ino and generation: extent-tree checksums hold), and only once the whole
   * stream is in place is the old content freed and the new map moved onto the inode. On any
   * failure (ENOSPC, the source throwing) everything allocated for the new content is freed and
   * the inode — map, size, i_blocks, xattrs — is left as it was. Old and new content occupy
   * blocks together meanwhile (as a write to a temporary file then rename would).
   *
   * An inline file (inline_data) stays inline when the whole new content fits the inode (the
   * kernel keeps a truncated inline file inline), else it moves to blocks; a block file stays in
   * blocks. Hard links share the inode: every name sees the new content, or on failure the old.
   */
  private async replaceFromStream(
    inode: Inode,
    content: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    path: string,
  ): Promise<void> {
    const wasInline = (inode.flags & INODE_FLAGS.INLINE_DATA) !== 0;
    // Everything read from the old content comes first: a corrupt map fails before any allocation.
    const old = wasInline ? undefined : await this.fileMap(inode);
    const others = wasInline ? (await this.inlineParts(inode)).others : [];
    const cap = wasInline ? this.inlineCapacity(inode, others) : -1;
    const r = await this.streamBlocks(content, this.alloc.goalFor(inode.ino), path, 0, cap);
    if (r.small) {
      // Inline to inline; storeInline changes nothing when it fails.
      await this.storeInline(inode, r.small, others, path);
      this.putInode(inode);
      return;
    }
    const scratch: Inode = {
      ...inode,
      flags: inode.flags & ~INODE_FLAGS.INLINE_DATA,
      size: 0,
      raw: inode.raw.slice(),
    };
    this.emptyMapRoot(scratch);
    let mapped = false;
    try {
      // Tree nodes (extents) or indirect blocks (block map) for the new map.
      await this.setMap(scratch, r.extents, [], path);
      mapped = true;
      if (wasInline) {
        // Drop system.data (the other attributes stay). storeXattrs changes nothing when it fails.
        inode.flags &= ~INODE_FLAGS.INLINE_DATA;
        try {
          await this.storeXattrs(inode, others, path);
        } catch (e) {
          inode.flags |= INODE_FLAGS.INLINE_DATA;
          throw e;
        }
      }
    } catch (e) {
      if (mapped) await this.freeFileBlocks(scratch);
      else for (const x of r.extents) await this.alloc.freeBlocksRange(x.pblk, x.len);
      throw e;
    }
    // Committed: free the old blocks, move the new map onto the inode.
    if (old) {
      await this.freeMap(old);
    }
    const moved = INODE_FLAGS.EXTENTS | INODE_FLAGS.INLINE_DATA | INODE_FLAGS.HUGE_FILE;
    inode.flags = (inode.flags & ~moved) | (scratch.flags & moved);
    inode.iBlock = scratch.iBlock;
    inode.size = r.size;
    const perBlock = this.bs / 512;
    const owned = scratch.blocksRaw / perBlock - (scratch.fileAcl ? 1 : 0);
    this.setBlocks(inode, owned + (inode.fileAcl ? 1 : 0));
    this.putInode(inode);
  }

  /** Free data and inline data; the inode ends up empty (size 0) with an empty map. */
  private async dropContent(inode: Inode): Promise<void> {
    if (inode.flags & INODE_FLAGS.INLINE_DATA) {
      const items = (await this.loadXattrs(inode)).filter(
        (x) => !(x.index === 7 && decodeName(x.suffix) === "data"),
      );
      inode.flags &= ~INODE_FLAGS.INLINE_DATA;
      await this.storeXattrs(inode, items, "<inline>");
    } else await this.freeFileBlocks(inode);
    const acl = inode.fileAcl;
    this.emptyMapRoot(inode);
    inode.size = 0;
    this.setBlocks(inode, acl ? 1 : 0);
  }

  async symlink(target: string, path: string, owner: OwnerOptions = {}): Promise<void> {
    const t = encodeName(target);
    if (t.length === 0 || t.length > 4095)
      throw new Ext4EditError("ENAMETOOLONG", "symlink target length", path);
    const { dir, name } = await this.resolveParent(path);
    await this.createInode(
      dir,
      name,
      S_IFLNK | 0o777,
      owner,
      path,
      async (inode) => {
        inode.linksCount = 1;
        if (t.length < 60) {
          inode.iBlock = new Uint8Array(60);
          inode.iBlock.set(t);
          inode.size = t.length;
          return;
        }
        this.emptyMapRoot(inode);
        await this.writeContent(inode, t, path);
      },
      true,
    );
  }

  async link(existingPath: string, newPath: string): Promise<void> {
    const { inode } = await this.resolve(existingPath, false);
    if ((inode.mode & S_IFMT) === S_IFDIR)
      throw new Ext4EditError("EPERM", "hard link to a directory", existingPath);
    if (inode.linksCount >= LINK_MAX) throw new Ext4EditError("EMLINK", "too many links", existingPath);
    const { dir, name } = await this.resolveParent(newPath);
    await this.prepareDir(dir, newPath);
    const st = await this.dir(dir);
    if (st.entries.has(key(name))) throw new Ext4EditError("EEXIST", "file already exists", newPath);
    this.alloc.reserveBlocks(Ext4Editor.DIR_INSERT_RESERVE, newPath);
    await this.dirInsert(dir, name, inode.ino, fileTypeFromMode(inode.mode), newPath);
    this.putInode(dir);
    const fresh = await this.inodeRef(inode.ino);
    fresh.linksCount++;
    fresh.ctime = this.now();
    this.putInode(fresh);
  }

  async mknod(
    path: string,
    type: NodeType,
    mode: number,
    major = 0,
    minor = 0,
    owner: OwnerOptions = {},
  ): Promise<void> {
    const fmt = { chardev: S_IFCHR, blockdev: S_IFBLK, fifo: S_IFIFO, socket: S_IFSOCK }[type];
    if (fmt === undefined) throw new Ext4EditError("EINVAL", `unknown node type ${type}`, path);
    const { dir, name } = await this.resolveParent(path);
    await this.createInode(
      dir,
      name,
      fmt | (mode & 0o7777),
      owner,
      path,
      async (inode) => {
        inode.linksCount = 1;
        inode.iBlock = new Uint8Array(60);
        if (fmt === S_IFCHR || fmt === S_IFBLK) {
          if (major < 256 && minor < 256) setU32(inode.iBlock, 0, (major << 8) | minor);
          else setU32(inode.iBlock, 4, ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0);
        }
      },
      true,
    );
  }

  // ------------------------------------------------------------ public API: removal

  async unlink(path: string): Promise<void> {
    const { dir, name } = await this.resolveParent(path);
    const e = (await this.dir(dir)).entries.get(key(name));
    if (!e) throw new Ext4EditError("ENOENT", "no such file or directory", path);
    const inode = await this.inodeRef(e.ino);
    if ((inode.mode & S_IFMT) === S_IFDIR) throw new Ext4EditError("EISDIR", "is a directory", path);
    await this.checkReleasable(inode, path);
    await this.dirRemove(dir, name, path);
    this.putInode(dir);
    await this.dropLink(inode);
  }

  /**
   * Before a name is removed: refuse immutable files, and when this is the last link, read the
   * block map and xattrs now, so a corrupt inode fails the operation before anything changes.
   */
  private async checkReleasable(inode: Inode, path: string): Promise<void> {
    if (inode.flags & (INODE_FLAGS.IMMUTABLE | INODE_FLAGS.APPEND))
      throw new Ext4EditError("EPERM", "file is immutable or append-only", path);
    if (inode.linksCount <= 1) {
      await this.fileMap(inode);
      await this.loadXattrs(inode);
    }
  }

  /** One name fewer; frees the inode when it was the last. */
  private async dropLink(inode: Inode): Promise<void> {
    const fresh = await this.inodeRef(inode.ino);
    if (fresh.linksCount > 1) {
      fresh.linksCount--;
      fresh.ctime = this.now();
      this.putInode(fresh);
      return;
    }
    await this.releaseInode(fresh);
  }

  private async releaseInode(inode: Inode): Promise<void> {
    const isDir = (inode.mode & S_IFMT) === S_IFDIR;
    if (!(inode.flags & INODE_FLAGS.INLINE_DATA)) await this.freeFileBlocks(inode);
    if (inode.fileAcl) await this.releaseXattrBlock(inode.fileAcl);
    inode.fileAcl = 0;
    inode.linksCount = 0;
    inode.size = 0;
    inode.blocksRaw = 0;
    inode.dtime = this.now().sec >>> 0;
    inode.iBlock = new Uint8Array(60);
    inode.flags = 0;
    // Forget the in-inode xattrs too.
    const raw = encodeInode(inode, this.sb.inodeSize);
    raw.fill(0, 128 + inode.extraIsize);
    inode.raw = raw;
    this.putInode(inode);
    await this.alloc.freeInode(inode.ino, isDir);
    this.dirs.delete(inode.ino);
  }

  async rmdir(path: string): Promise<void> {
    const { dir, name } = await this.resolveParent(path);
    const e = (await this.dir(dir)).entries.get(key(name));
    if (!e) throw new Ext4EditError("ENOENT", "no such file or directory", path);
    const inode = await this.inodeRef(e.ino);
    if ((inode.mode & S_IFMT) !== S_IFDIR) throw new Ext4EditError("ENOTDIR", "not a directory", path);
    if ((await this.dir(inode)).entries.size > 0)
      throw new Ext4EditError("ENOTEMPTY", "directory not empty", path);
    await this.checkReleasable(inode, path);
    await this.dirRemove(dir, name, path);
    this.decDirLinks(dir);
    this.putInode(dir);
    await this.releaseInode(await this.inodeRef(inode.ino));
  }

  async rm(path: string, options: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    return this.rmUnder(path, options, []);
  }

  /**
   * rm below `ancestors` (the directory inodes being removed around `path`). A damaged directory
   * must not send the walk elsewhere: an entry naming an ancestor (a loop) or whose name holds
   * "/" or NUL (it would resolve to another path) is a format error, nothing more removed.
   */
  private async rmUnder(
    path: string,
    options: { recursive?: boolean; force?: boolean },
    ancestors: number[],
  ): Promise<void> {
    let found: { ino: number; inode: Inode };
    try {
      found = await this.resolve(path, false);
    } catch (e) {
      if (options.force && e instanceof Ext4EditError && e.code === "ENOENT") return;
      throw e;
    }
    const { ino, inode } = found;
    if ((inode.mode & S_IFMT) !== S_IFDIR) return this.unlink(path);
    if (!options.recursive) throw new Ext4EditError("EISDIR", "is a directory (use recursive)", path);
    const where = { file: this.reader.device.name, structure: "directory", inode: ino };
    if (ancestors.includes(ino))
      throw new Ext4FormatError(`directory loop: ${path} is one of its own ancestors`, where);
    const st = await this.dir(inode);
    // Reached from its parent: its ".." must say so (a damaged entry elsewhere must not make this
    // walk empty a directory that lives somewhere else).
    const from = ancestors[ancestors.length - 1];
    if (from !== undefined && (await this.dotdot(inode, path)) !== from)
      throw new Ext4FormatError(`${path}: its ".." is not the directory it was found in`, where);
    const below = [...ancestors, ino];
    for (const [k] of [...st.entries]) {
      if (k.includes("/") || k.includes("\0") || k === "." || k === "..")
        throw new Ext4FormatError(`entry name ${JSON.stringify(k)} in ${path} is invalid`, where);
      const child = `${path.replace(/\/+$/, "")}/${Buffer.from(k, "latin1").toString("utf8")}`;
      await this.rmUnder(child, options, below);
    }
    await this.rmdir(path);
  }

  // ------------------------------------------------------------ public API: rename

  /** The inode number a directory's ".." names (the second record of block 0, or inline). */
  private async dotdot(dirInode: Inode, path: string): Promise<number> {
    if (dirInode.flags & INODE_FLAGS.INLINE_DATA) return inlineDirParent(dirInode.iBlock);
    const st = await this.dir(dirInode);
    const b = st.pblk[0] ? await this.store.get(st.pblk[0]) : undefined;
    // To the block's end: in an htree root ".." spans the index (and a leaf's checksum tail
    // parses as an empty record).
    const { entries } = b ? parseDirentBlock(b, 0, this.bs, this.bs, this.ft) : { entries: [] };
    const e = entries[1];
    if (!e || key(e.name) !== ".." || entries[0] === undefined || key(entries[0].name) !== ".")
      throw new Ext4FormatError(`directory ${path} does not begin with "." and ".."`, {
        file: this.reader.device.name,
        structure: "directory",
        inode: dirInode.ino,
      });
    return e.inode;
  }

  async rename(oldPath: string, newPath: string): Promise<void> {
    const src = await this.resolveParent(oldPath);
    const srcEntry = (await this.dir(src.dir)).entries.get(key(src.name));
    if (!srcEntry) throw new Ext4EditError("ENOENT", "no such file or directory", oldPath);
    const dst = await this.resolveParent(newPath);
    await this.prepareDir(src.dir, oldPath);
    if (dst.dir.ino === src.dir.ino) dst.dir = src.dir;
    else await this.prepareDir(dst.dir, newPath);
    const moving = await this.inodeRef(srcEntry.ino);
    const isDir = (moving.mode & S_IFMT) === S_IFDIR;
    if (isDir) {
      // The destination must not be inside the directory being moved.
      let cur = dst.dir.ino;
      for (let guard = 0; cur !== ROOT_INO && guard < 4096; guard++) {
        if (cur === moving.ino)
          throw new Ext4EditError("EINVAL", "cannot move a directory into itself", newPath);
        cur = await this.dotdot(await this.inodeRef(cur), newPath);
      }
      if (dst.dir.ino === moving.ino)
        throw new Ext4EditError("EINVAL", "cannot move a directory into itself", newPath);
    }
    const dstState = await this.dir(dst.dir);
    const target = dstState.entries.get(key(dst.name));
    if (target && target.ino === moving.ino) return;
    this.alloc.reserveBlocks(Ext4Editor.DIR_INSERT_RESERVE, newPath);
    let replaced: Inode | undefined;
    if (target) {
      replaced = await this.inodeRef(target.ino);
      const tIsDir = (replaced.mode & S_IFMT) === S_IFDIR;
      if (isDir && !tIsDir) throw new Ext4EditError("ENOTDIR", "not a directory", newPath);
      if (!isDir && tIsDir) throw new Ext4EditError("EISDIR", "is a directory", newPath);
      await this.checkReleasable(replaced, newPath);
      if (tIsDir && (await this.dir(replaced)).entries.size > 0)
        throw new Ext4EditError("ENOTEMPTY", "directory not empty", newPath);
      await this.dirRetarget(dst.dir, dst.name, moving.ino, fileTypeFromMode(moving.mode), newPath);
      const now = this.now();
      dst.dir.mtime = now;
      dst.dir.ctime = now;
    } else {
      await this.dirInsert(dst.dir, dst.name, moving.ino, fileTypeFromMode(moving.mode), newPath);
    }
    this.putInode(dst.dir);
    // Remove the old name (re-read the source dir: it may be the same inode as dst).
    const srcDir = await this.inodeRef(src.dir.ino);
    await this.dirRemove(srcDir, src.name, oldPath);
    if (isDir && srcDir.ino !== dst.dir.ino) {
      this.decDirLinks(srcDir);
      this.putInode(srcDir);
      const dstDir = await this.inodeRef(dst.dir.ino);
      if (!(replaced && (replaced.mode & S_IFMT) === S_IFDIR)) this.incDirLinks(dstDir);
      this.putInode(dstDir);
      await this.setDotDot(await this.inodeRef(moving.ino), dst.dir.ino);
    } else {
      this.putInode(srcDir);
    }
    const mv = await this.inodeRef(moving.ino);
    mv.ctime = this.now();
    this.putInode(mv);
    if (replaced) {
      if ((replaced.mode & S_IFMT) === S_IFDIR) {
        if (srcDir.ino === dst.dir.ino || !isDir) {
          const d = await this.inodeRef(dst.dir.ino);
          this.decDirLinks(d);
          this.putInode(d);
        }
        await this.releaseInode(await this.inodeRef(replaced.ino));
      } else await this.dropLink(replaced);
    }
  }

  // ------------------------------------------------------------ public API: attributes

  private async modify(path: string, follow: boolean, fn: (inode: Inode) => void): Promise<void> {
    const { inode } = await this.resolve(path, follow);
    fn(inode);
    inode.ctime = this.now();
    this.putInode(inode);
  }

  async chmod(path: string, mode: number): Promise<void> {
    await this.modify(path, true, (i) => {
      i.mode = (i.mode & S_IFMT) | (mode & 0o7777);
    });
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    await this.modify(path, true, (i) => {
      if (uid >= 0) i.uid = uid >>> 0;
      if (gid >= 0) i.gid = gid >>> 0;
    });
  }

  async lchown(path: string, uid: number, gid: number): Promise<void> {
    await this.modify(path, false, (i) => {
      if (uid >= 0) i.uid = uid >>> 0;
      if (gid >= 0) i.gid = gid >>> 0;
    });
  }

  async utimes(path: string, atime: Date | number, mtime: Date | number): Promise<void> {
    await this.modify(path, true, (i) => {
      i.atime = toTimestamp(atime);
      i.mtime = toTimestamp(mtime);
    });
  }

  async lutimes(path: string, atime: Date | number, mtime: Date | number): Promise<void> {
    await this.modify(path, false, (i) => {
      i.atime = toTimestamp(atime);
      i.mtime = toTimestamp(mtime);
    });
  }

  /** Set the size: shrinking frees blocks past the end, growing leaves a hole. */
  async truncate(path: string, len = 0): Promise<void> {
    if (!Number.isSafeInteger(len) || len < 0) throw new Ext4EditError("EINVAL", "invalid length", path);
    const { inode } = await this.resolve(path, true);
    if ((inode.mode & S_IFMT) !== S_IFREG)
      throw new Ext4EditError(
        (inode.mode & S_IFMT) === S_IFDIR ? "EISDIR" : "EINVAL",
        "not a regular file",
        path,
      );
    this.checkFileWritable(inode, path);
    if (!this.usesExtents(inode) && len > 0) {
      const per = this.bs / 4;
      if (Math.ceil(len / this.bs) > 12 + per + per * per + per * per * per)
        throw new Ext4EditError("EINVAL", "file too large for a block map", path);
    }
    if (inode.flags & INODE_FLAGS.INLINE_DATA) {
      const { value, others } = await this.inlineParts(inode);
      const data = inlineFileContent(inode.iBlock, value, inode.size);
      if (len <= this.inlineCapacity(inode, others)) {
        const next = new Uint8Array(len);
        next.set(data.subarray(0, Math.min(len, data.length)));
        await this.storeInline(inode, next, others, path);
      } else {
        // More than the inode holds: what is kept goes to a block, the rest is a hole.
        const keep = data.slice(0, Math.min(len, data.length));
        this.alloc.reserveBlocks(2, path);
        await this.dropContent(inode);
        await this.writeContent(inode, keep, path, "never");
      }
    } else if (len < inode.size) {
      const keep = Math.ceil(len / this.bs);
      const map = await this.fileMap(inode);
      const kept: MapExtent[] = [];
      for (const e of map.extents) {
        if (e.lblk >= keep) await this.alloc.freeBlocksRange(e.pblk, e.len);
        else if (e.lblk + e.len > keep) {
          const n = keep - e.lblk;
          await this.alloc.freeBlocksRange(e.pblk + n, e.len - n);
          kept.push({ ...e, len: n });
        } else kept.push(e);
      }
      await this.setMap(inode, kept, map.metaBlocks, path);
      // Zero the rest of the last partial block so growing later reads zeros.
      const tail = len % this.bs;
      if (tail) {
        const lb = Math.floor(len / this.bs);
        const e = kept.find((x) => x.lblk <= lb && lb < x.lblk + x.len && !x.uninit);
        if (e) {
          const p = e.pblk + (lb - e.lblk);
          const b = await this.readDataBlock(p);
          const copy = new Uint8Array(b);
          copy.fill(0, tail);
          await this.store.writeData(p, copy);
        }
      }
    }
    inode.size = len;
    const now = this.now();
    inode.mtime = now;
    inode.ctime = now;
    this.putInode(inode);
  }

  // ------------------------------------------------------------ xattrs

  private async loadXattrs(inode: Inode): Promise<XattrItem[]> {
    const out: XattrItem[] = [];
    const start = 128 + inode.extraIsize;
    const raw = inode.raw;
    if (raw.length > start + 4 && u32(raw, start) === XATTR_MAGIC) {
      const { entries, problem } = parseXattrEntries(raw, start + 4, raw.length, start + 4);
      if (problem) throw new Ext4EditError("EINVAL", `in-inode xattrs: ${problem}`, `<inode ${inode.ino}>`);
      for (const e of entries) {
        if (e.valueInum)
          throw new Ext4UnsupportedError(
            "ea_inode",
            `xattr values in inodes are not supported for writing (inode ${inode.ino})`,
          );
        out.push({
          index: e.nameIndex,
          suffix: e.nameSuffix,
          value: raw.slice(start + 4 + e.valueOffset, start + 4 + e.valueOffset + e.valueSize),
        });
      }
    }
    if (inode.fileAcl) {
      const b = await this.store.get(inode.fileAcl);
      const h = parseXattrBlockHeader(b);
      if (h.magic !== XATTR_MAGIC)
        throw new Ext4EditError("EINVAL", "bad xattr block", `<inode ${inode.ino}>`);
      const { entries } = parseXattrEntries(b, XATTR_BLOCK_HEADER_SIZE, b.length, 0);
      for (const e of entries) {
        if (e.valueInum)
          throw new Ext4UnsupportedError(
            "ea_inode",
            `xattr values in inodes are not supported for writing (inode ${inode.ino})`,
          );
        out.push({
          index: e.nameIndex,
          suffix: e.nameSuffix,
          value: b.slice(e.valueOffset, e.valueOffset + e.valueSize),
        });
      }
    }
    return out;
  }

  private async releaseXattrBlock(blk: number): Promise<void> {
    const b = await this.store.get(blk);
    const h = parseXattrBlockHeader(b);
    if (h.refcount > 1) {
      setU32(b, 4, h.refcount - 1);
      if (this.csum) setXattrBlockChecksum(this.seed, blk, b);
      this.store.markDirty(blk);
    } else await this.alloc.freeBlocksRange(blk, 1);
  }

  /** Lay out `items` (in-inode first, then one block); the inode is written by the caller. */
  private async storeXattrs(inode: Inode, items: XattrItem[], path: string): Promise<void> {
    const ibody = this.sb.inodeSize - 128 - inode.extraIsize;
    const plan = planXattrs(items, ibody, this.bs);
    if (!plan)
      throw new Ext4NoSpaceError("blocks", "extended attributes do not fit in the inode and one block", path);
    const oldBlock = inode.fileAcl;
    let newBlock = 0;
    if (plan.block.length) {
      let reuse = false;
      if (oldBlock) reuse = parseXattrBlockHeader(await this.store.get(oldBlock)).refcount === 1;
      if (reuse) newBlock = oldBlock;
      else {
        const [r] = await this.alloc.allocBlocks(1, this.alloc.goalFor(inode.ino), path);
        newBlock = r.start;
      }
      const b = reuse ? await this.store.get(newBlock) : this.store.fresh(newBlock);
      writeXattrBlock(b, plan.block);
      if (this.csum) setXattrBlockChecksum(this.seed, newBlock, b);
      this.store.markDirty(newBlock);
    }
    if (oldBlock && oldBlock !== newBlock) await this.releaseXattrBlock(oldBlock);
    const dataBlocks = inode.blocksRaw / (this.bs / 512) - (oldBlock ? 1 : 0);
    inode.fileAcl = newBlock;
    this.setBlocks(inode, dataBlocks + (newBlock ? 1 : 0));
    const raw = encodeInode(inode, this.sb.inodeSize);
    writeIbodyXattrs(raw, inode.extraIsize, plan.ibody);
    inode.raw = raw;
  }

  private xattrName(name: string, path: string): { index: number; suffix: Uint8Array } {
    const s = splitXattrName(name);
    if (!s || (s.index === 7 && decodeName(s.suffix) === "data") || name.length > 255)
      throw new Ext4EditError("EINVAL", `unsupported xattr name ${name}`, path);
    return s;
  }

  async setxattr(
    path: string,
    name: string,
    value: Uint8Array | string,
    options: { follow?: boolean } = {},
  ): Promise<void> {
    if (!hasCompat(this.sb, COMPAT.ext_attr))
      throw new Ext4UnsupportedError("ext_attr", "the filesystem has no ext_attr feature");
    const n = this.xattrName(name, path);
    let v = typeof value === "string" ? new TextEncoder().encode(value) : value;
    if (isPosixAclName(name)) {
      try {
        v = encodePosixAclDisk(decodePosixAcl(v));
      } catch (e) {
        throw new Ext4EditError("EINVAL", `bad POSIX ACL: ${(e as Error).message}`, path);
      }
    }
    if (v.length > 65536) throw new Ext4EditError("EINVAL", "xattr value too large", path);
    const { inode } = await this.resolve(path, options.follow ?? true);
    const items = (await this.loadXattrs(inode)).filter(
      (x) => !(x.index === n.index && key(x.suffix) === key(n.suffix)),
    );
    items.push({ index: n.index, suffix: n.suffix, value: v.slice() });
    await this.storeXattrs(inode, items, path);
    inode.ctime = this.now();
    this.putInode(inode);
  }

  async removexattr(path: string, name: string, options: { follow?: boolean } = {}): Promise<void> {
    const n = this.xattrName(name, path);
    const { inode } = await this.resolve(path, options.follow ?? true);
    const items = await this.loadXattrs(inode);
    const rest = items.filter((x) => !(x.index === n.index && key(x.suffix) === key(n.suffix)));
    if (rest.length === items.length) throw new Ext4EditError("ENODATA", `no attribute ${name}`, path);
    await this.storeXattrs(inode, rest, path);
    inode.ctime = this.now();
    this.putInode(inode);
  }

  // ------------------------------------------------------------ reads (through the reader)

  private readerStale = false;
  /** s_kbytes_written when opened (0: the filesystem does not count, leave it so). */
  private readonly kbytesBase: number;
  /** Device bytes written as of the last superblock stamp. */
  private stampedBytes = 0;

  /**
   * Before metadata is flushed after changes: s_wtime from the editor's clock and
   * s_kbytes_written advanced by what this editor wrote (the blocks about to be flushed included).
   */
  private stampSuperblock(): void {
    const written = this.store.counters.bytesWritten;
    if (!this.alloc.dirty && !this.store.dirtyCount && written === this.stampedBytes) return;
    // The superblock block itself is written too.
    const pending = (this.store.dirtyCount + 1) * this.bs;
    const kb = this.kbytesBase ? this.kbytesBase + Math.floor((written + pending) / 1024) : undefined;
    // Never in the future: e2fsck reports a superblock written in the future as a problem, so an
    // explicit timestamp or SOURCE_DATE_EPOCH ahead of the real clock is capped at the real clock
    // (file times keep the requested value; reproducibility holds for every past epoch).
    this.alloc.stampWrite(Math.min(this.now().sec, Math.floor(Date.now() / 1000)), kb);
  }

  private async settle(): Promise<void> {
    if (
      this.dirtyInodes.size ||
      this.alloc.dirty ||
      this.store.dirtyCount ||
      this.store.counters.bytesWritten !== this.stampedBytes
    ) {
      await this.flushInodes();
      this.stampSuperblock();
      await this.alloc.flush();
      await this.store.flush();
      this.stampedBytes = this.store.counters.bytesWritten;
      this.readerStale = true;
    }
    if (this.readerStale) this.refreshReader();
  }

  /** The reader keeps its own descriptors (uninit flags decide what it reads) and caches. */
  private refreshReader(): void {
    this.groups.forEach((g, i) => {
      Object.assign(this.reader.groups[i], g);
    });
    this.reader.clearCaches();
    this.readerStale = false;
  }

  async stat(path: string): Promise<Ext4Stats> {
    await this.settle();
    return this.reader.stat(path);
  }
  async lstat(path: string): Promise<Ext4Stats> {
    await this.settle();
    return this.reader.lstat(path);
  }
  async readFile(path: string): Promise<Buffer> {
    await this.settle();
    return this.reader.readFile(path);
  }
  async readdir(path: string): Promise<string[]>;
  async readdir(path: string, options: { withFileTypes: true }): Promise<Ext4Dirent[]>;
  async readdir(path: string, options?: { withFileTypes?: boolean }): Promise<string[] | Ext4Dirent[]> {
    await this.settle();
    if (options?.withFileTypes) return this.reader.readdir(path, { withFileTypes: true });
    return this.reader.readdir(path);
  }
  async readlink(path: string): Promise<string> {
    await this.settle();
    return this.reader.readlink(path);
  }
  async getxattr(path: string, name: string): Promise<Buffer> {
    await this.settle();
    return this.reader.getxattr(path, name);
  }
  async listxattr(path: string): Promise<string[]> {
    await this.settle();
    return this.reader.listxattr(path);
  }
  async exists(path: string): Promise<boolean> {
    try {
      await this.resolve(path, false);
      return true;
    } catch (e) {
      if (e instanceof Ext4EditError && (e.code === "ENOENT" || e.code === "ENOTDIR")) return false;
      throw e;
    }
  }

  /** Bytes written so far (metadata flushes and file data). */
  get writeCounters(): { writes: number; bytesWritten: number } {
    return this.store.counters;
  }

  /** Write all pending metadata (bitmaps, descriptors, superblocks, inodes, directories). */
  async sync(): Promise<void> {
    await this.flushInodes();
    this.stampSuperblock();
    await this.alloc.flush();
    await this.store.flush();
    this.stampedBytes = this.store.counters.bytesWritten;
    if (this.durable) await this.reader.device.flush();
    this.refreshReader();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.sync();
    this.closed = true;
    await this.reader.close();
  }
}
