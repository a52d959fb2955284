/**
 * Ext4Fs: a read-only ext2/3/4 filesystem over any BlockDevice, with an API shaped like
 * node:fs/promises. Geometry and descriptors are loaded at open; inode table chunks, metadata
 * blocks and small directory listings are cached; file data is read in coalesced runs.
 */
import { Readable } from "node:stream";
import type { BlockDevice } from "@imgpatch/disk";
import { ImgpatchError } from "@imgpatch/disk";
import { parseBlockMapRoot } from "./block-map.js";
import { decodeName, encodeName, u32 } from "./bytes.js";
import {
  DIRENT_TAIL_SIZE,
  direntName,
  direntTailChecksum,
  fileTypeFromMode,
  hasDirentTail,
  parseDirentBlock,
  type RawDirent,
  storedDirentTailChecksum,
} from "./dirent.js";
import { dxHash, effectiveHashVersion, isComputableHashVersion } from "./dx-hash.js";
import {
  Ext4ChecksumError,
  Ext4FormatError,
  Ext4FsError,
  type Ext4Location,
  Ext4UnsupportedError,
} from "./errors.js";
import {
  EXT_MAX_DEPTH,
  EXTENT_HEADER_SIZE,
  EXTENT_MAGIC,
  type ExtentHeader,
  extentBlockChecksum,
  extentMaxEntries,
  parseExtent,
  parseExtentHeader,
  parseExtentIndex,
  storedExtentChecksum,
} from "./extent.js";
import {
  COMPAT,
  featureNames,
  INCOMPAT,
  INODE_FLAGS,
  KNOWN_RO_COMPAT,
  READER_INCOMPAT,
  RO_COMPAT,
} from "./features.js";
import {
  BG_FLAGS,
  bitmapChecksum,
  bitmapChecksumMatches,
  type GroupDesc,
  gdtBlockCount,
  gdtBlockLocation,
  groupDescChecksum,
  groupDescCsumKind,
  parseGroupDesc,
  primarySuperblockBlock,
} from "./group-desc.js";
import {
  DX_NODE_ENTRIES_OFFSET,
  DX_ROOT_INFO_OFFSET,
  type DxNode,
  dxChecksum,
  dxNodeProblem,
  dxTailOffset,
  looksLikeDxNode,
  parseDxEntries,
  parseDxRootInfo,
  storedDxChecksum,
} from "./htree.js";
import { INLINE_DATA_XATTR_INDEX, INLINE_DIR_PARENT_SIZE, inlineFileContent } from "./inline-data.js";
import {
  type Inode,
  inodeBlocks512,
  inodeChecksumMismatch,
  inodeChecksumSeed,
  inodeXattrOffset,
  parseInode,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
} from "./inode.js";
import { type JournalScan, type JournalStatus, parseJournalSuperblock, scanJournal } from "./journal.js";
import { Lru } from "./lru.js";
import { JournalReplayDevice } from "./replay-device.js";
import { Ext4Dirent, Ext4Stats } from "./stats.js";
import {
  checksumSeed,
  groupFirstBlock,
  hasCompat,
  hasIncompat,
  hasRoCompat,
  parseSuperblock,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
  type Superblock,
  superblockChecksum,
} from "./superblock.js";
import {
  decodePosixAcl,
  encodePosixAclXattr,
  isPosixAclName,
  parseXattrBlockHeader,
  parseXattrEntries,
  XATTR_BLOCK_HEADER_SIZE,
  XATTR_MAGIC,
  type XattrEntry,
  xattrBlockChecksum,
} from "./xattr.js";

export const ROOT_INO = 2;
const MAX_SYMLINKS = 40;
const MAX_NAME_LEN = 255;
const PATH_MAX = 4096;
/** Largest xattr value (Linux XATTR_SIZE_MAX). */
const XATTR_SIZE_MAX = 65536;
const DEFAULT_MAX_READ = 2 ** 31 - 1;
/** Read-ahead window for small file data reads. */
const DATA_WINDOW = 512 * 1024;
/** Windows read ahead of a sequential reader. */
const PREFETCH_WINDOWS = 2;

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
   * the kernel would see after mounting. Default false: read the on-disk state and warn.
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

interface Resolved {
  ino: number;
  inode: Inode;
  path: string;
}

export class Ext4Fs {
  readonly warnings: Ext4Warning[] = [];
  /** Reasons the filesystem must not be written (unknown ro_compat features...). Empty = writable as far as the reader knows. */
  readonly readOnlyReasons: string[] = [];
  readonly counters: ReadCounters = { reads: 0, bytes: 0, metadataBlocks: 0 };
  readonly journal: JournalStatus;
  readonly groups: GroupDesc[];
  readonly seed: number;
  readonly blockSize: number;
  /** Block number of the superblock in use (the primary's is s_first_data_block... see superblockOffset). */
  readonly superblockOffset: number;

  private readonly lenient: boolean;
  private readonly openOptions: Ext4OpenOptions;
  private readonly onWarning?: (w: Ext4Warning) => void;
  private readonly itableCache: Lru<number, Uint8Array>;
  private readonly blockCache = new Lru<number, Uint8Array>(2048);
  private readonly inodeCache = new Lru<number, Inode>(2048);
  private readonly dirCache = new Lru<number, Map<string, RawDirent>>(64);
  /**
   * Evicted windows are recycled (external-memory churn drives GC during tree walks). Safe: a
   * window is evicted only after 64 newer windows were stored, and every reader copies out of
   * a window in the microtask right after obtaining it, before any other read can complete.
   */
  private readonly windowPool: Uint8Array[] = [];
  private readonly dataCache = new Lru<number, Uint8Array>(64, (buf) => {
    if (buf.length === DATA_WINDOW && this.windowPool.length < 8) this.windowPool.push(buf);
  });
  private readonly windowsInFlight = new Map<number, Promise<Uint8Array>>();
  private lastWindow = -1;
  /** End offset of the previous small data read (-1: none yet). */
  private lastEnd = -1;
  private readonly itableChunkBlocks: number;
  private readonly csum: boolean;
  private readonly hasFileType: boolean;

  private constructor(
    readonly device: BlockDevice,
    readonly sb: Superblock,
    groups: GroupDesc[],
    sbOffset: number,
    options: Ext4OpenOptions,
    warnings: Ext4Warning[],
    replayed?: JournalStatus["replayed"],
  ) {
    this.groups = groups;
    this.blockSize = sb.blockSize;
    this.superblockOffset = sbOffset;
    this.lenient = options.lenient ?? false;
    this.openOptions = options;
    this.onWarning = options.onWarning;
    this.seed = checksumSeed(sb);
    this.csum = hasRoCompat(sb, RO_COMPAT.metadata_csum);
    this.hasFileType = hasIncompat(sb, INCOMPAT.filetype);
    this.itableChunkBlocks = Math.max(1, Math.floor(65536 / sb.blockSize));
    const chunkBytes = this.itableChunkBlocks * sb.blockSize;
    this.itableCache = new Lru(Math.max(8, Math.floor((options.cacheBytes ?? 32 << 20) / chunkBytes)));
    for (const w of warnings) this.warn(w.code, w.message);
    const unknownRo = sb.featureRoCompat & ~KNOWN_RO_COMPAT;
    if (unknownRo)
      this.readOnlyReasons.push(`unknown ro_compat features ${featureNames(RO_COMPAT, unknownRo).join(",")}`);
    this.journal = {
      hasJournal: hasCompat(sb, COMPAT.has_journal),
      external: hasCompat(sb, COMPAT.has_journal) && sb.journalInum === 0,
      journalInode: sb.journalInum,
      needsRecovery: hasIncompat(sb, INCOMPAT.recover),
      replayed,
    };
    if (this.journal.needsRecovery) this.readOnlyReasons.push("the journal needs recovery");
    if (this.journal.needsRecovery && !replayed) {
      this.warn(
        "EJOURNAL",
        "the journal needs recovery (filesystem was not cleanly unmounted): data read may be stale until it is replayed",
      );
    }
  }

  /** Open a filesystem. Tries backup superblocks when the primary is damaged (unless `superblock` is given). */
  static async open(device: BlockDevice, options: Ext4OpenOptions = {}): Promise<Ext4Fs> {
    const warnings: Ext4Warning[] = [];
    const candidates: { offset: number; sbBlock?: number; group?: number }[] = [];
    if (options.superblock !== undefined) {
      const sizes = options.blockSize ? [options.blockSize] : [1024, 2048, 4096, 8192, 16384, 32768, 65536];
      if (options.superblock === 0) candidates.push({ offset: SUPERBLOCK_OFFSET });
      else
        for (const bs of sizes)
          candidates.push({ offset: options.superblock * bs, sbBlock: options.superblock });
    } else {
      candidates.push({ offset: SUPERBLOCK_OFFSET });
      for (const bs of [1024, 2048, 4096, 8192, 16384, 32768, 65536]) {
        const bpg = bs * 8;
        for (const g of [1, 3, 5, 7, 9]) {
          const block = g * bpg + (bs === 1024 ? 1 : 0);
          candidates.push({ offset: block * bs, sbBlock: block, group: g });
        }
      }
    }
    let firstError: unknown;
    for (const c of candidates) {
      if (c.offset + SUPERBLOCK_SIZE > device.size) continue;
      try {
        let fs = await Ext4Fs.tryOpen(device, options, c.offset, c.sbBlock, warnings);
        if (options.replayJournal && fs.journal.needsRecovery)
          fs = await fs.replayedView(c.offset, c.sbBlock);
        if (c.offset !== SUPERBLOCK_OFFSET && options.superblock === undefined) {
          fs.warn(
            "EBACKUPSB",
            `primary superblock unusable (${firstError instanceof Error ? firstError.message : String(firstError)}); using the backup at byte ${c.offset}`,
          );
        }
        return fs;
      } catch (e) {
        if (!(e instanceof ImgpatchError)) throw e;
        // Refusals are about the filesystem, not about a damaged copy: do not look further.
        if (e instanceof Ext4UnsupportedError) throw e;
        if (firstError === undefined) firstError = e;
      }
    }
    throw firstError ?? new Ext4FormatError("no ext2/3/4 superblock found", { file: device.name });
  }

  private static async tryOpen(
    device: BlockDevice,
    options: Ext4OpenOptions,
    offset: number,
    sbBlockHint: number | undefined,
    warnings: Ext4Warning[],
    replayed?: JournalStatus["replayed"],
  ): Promise<Ext4Fs> {
    const where = { file: device.name, offset };
    const raw = await device.read(offset, SUPERBLOCK_SIZE);
    const sb = parseSuperblock(raw, where);
    const sbBlock = sbBlockHint ?? primarySuperblockBlock(sb);
    if (offset !== SUPERBLOCK_OFFSET && offset !== sbBlock * sb.blockSize) {
      throw new Ext4FormatError("backup superblock block size does not match its position", where);
    }
    if (hasRoCompat(sb, RO_COMPAT.metadata_csum)) {
      if (sb.checksumType !== 1) {
        throw new Ext4FormatError(`unknown checksum type ${sb.checksumType}`, {
          ...where,
          structure: "superblock",
        });
      }
      const computed = superblockChecksum(sb.raw);
      if (computed !== sb.checksum) {
        const err = new Ext4ChecksumError("superblock checksum mismatch", sb.checksum, computed, {
          ...where,
          structure: "superblock",
        });
        if (!options.lenient) throw err;
        warnings.push({ code: "ECHECKSUM", message: err.message });
      }
    }
    // Features are judged only on a superblock whose checksum holds (a flipped bit must not
    // look like an unknown feature and stop the search for a good backup).
    checkFeatures(sb, where);
    if (sb.blocksCount * sb.blockSize > device.size) {
      throw new Ext4FormatError(
        `filesystem of ${sb.blocksCount} blocks (${sb.blocksCount * sb.blockSize} bytes) is larger than the device (${device.size} bytes)`,
        { ...where, structure: "superblock" },
      );
    }
    // Group descriptors.
    const seed = checksumSeed(sb);
    const nBlocks = gdtBlockCount(sb);
    const perBlock = sb.blockSize / sb.descSize;
    const groups: GroupDesc[] = [];
    const locs: number[] = [];
    for (let i = 0; i < nBlocks; i++) locs.push(gdtBlockLocation(sb, i, sbBlock));
    let i = 0;
    while (i < nBlocks) {
      let j = i + 1;
      while (j < nBlocks && locs[j] === locs[j - 1] + 1 && j - i < 256) j++;
      const first = locs[i];
      if (first + (j - i) > sb.blocksCount) {
        throw new Ext4FormatError("group descriptor table lies outside the filesystem", {
          ...where,
          structure: "group descriptor table",
          block: first,
        });
      }
      const buf = await device.read(first * sb.blockSize, (j - i) * sb.blockSize);
      for (let k = 0; k < j - i; k++) {
        for (let d = 0; d < perBlock; d++) {
          const g = (i + k) * perBlock + d;
          if (g >= sb.groupCount) break;
          const off = k * sb.blockSize + d * sb.descSize;
          const gd = parseGroupDesc(buf, off, sb.descSize);
          const loc: Ext4Location = {
            file: device.name,
            offset: (first + k) * sb.blockSize + d * sb.descSize,
            structure: `group descriptor ${g}`,
            block: first + k,
          };
          if (groupDescCsumKind(sb) !== "none") {
            const c = groupDescChecksum(sb, g, gd.raw, seed);
            if (c !== gd.checksum) {
              const err = new Ext4ChecksumError("group descriptor checksum mismatch", gd.checksum, c, loc);
              if (!options.lenient) throw err;
              warnings.push({ code: "ECHECKSUM", message: err.message });
            }
          }
          const itBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
          for (const [what, blk, n] of [
            ["block bitmap", gd.blockBitmap, 1],
            ["inode bitmap", gd.inodeBitmap, 1],
            ["inode table", gd.inodeTable, itBlocks],
          ] as const) {
            if (blk < sb.firstDataBlock || blk + n > sb.blocksCount) {
              const uninit = what !== "inode table" && groupDescCsumKind(sb) !== "none";
              if (uninit && blk === 0) continue;
              const err = new Ext4FormatError(`${what} at block ${blk} lies outside the filesystem`, loc);
              if (!options.lenient) throw err;
              warnings.push({ code: "EFORMAT", message: err.message });
            }
          }
          groups.push(gd);
        }
      }
      i = j;
    }
    const fs = new Ext4Fs(device, sb, groups, offset, options, warnings, replayed);
    if (fs.journal.hasJournal && !fs.journal.external) await fs.loadJournalStatus();
    if (options.verifyBitmaps) await fs.verifyBitmaps();
    return fs;
  }

  // ---------------------------------------------------------------- warnings & errors

  private warn(code: string, message: string): void {
    const w = { code, message };
    if (this.warnings.length < 10000) this.warnings.push(w);
    this.onWarning?.(w);
  }

  /** Structural problem: throw, or in lenient mode record and carry on. */
  private problem(err: Ext4FormatError | Ext4ChecksumError): void {
    if (!this.lenient) throw err;
    this.warn(err.code, err.message);
  }

  private loc(structure: string, extra: { block?: number; inode?: number } = {}): Ext4Location {
    const offset = extra.block !== undefined ? extra.block * this.blockSize : undefined;
    return { file: this.device.name, offset, structure, ...extra };
  }

  // ---------------------------------------------------------------- raw I/O

  private async readRaw(offset: number, length: number): Promise<Uint8Array> {
    this.counters.reads++;
    this.counters.bytes += length;
    return this.device.read(offset, length);
  }

  private checkBlockRange(block: number, count: number, what: string, inode?: number): void {
    if (
      !Number.isSafeInteger(block) ||
      block < this.sb.firstDataBlock ||
      block + count > this.sb.blocksCount
    ) {
      throw new Ext4FormatError(
        `${what} points at blocks ${block}+${count}, outside the filesystem (${this.sb.blocksCount} blocks)`,
        { file: this.device.name, structure: what, block, inode },
      );
    }
  }

  /** Read a metadata block through the cache. */
  async readBlock(block: number, what = "metadata block", inode?: number): Promise<Uint8Array> {
    const hit = this.blockCache.get(block);
    if (hit) return hit;
    this.checkBlockRange(block, 1, what, inode);
    const b = await this.readRaw(block * this.blockSize, this.blockSize);
    this.counters.metadataBlocks++;
    this.blockCache.set(block, b);
    return b;
  }

  // ---------------------------------------------------------------- inodes

  private inodeLocation(ino: number): { group: number; index: number; gd: GroupDesc } {
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > this.sb.inodesCount) {
      throw new Ext4FormatError(`inode number ${ino} is out of range (1..${this.sb.inodesCount})`, {
        file: this.device.name,
        structure: "inode",
        inode: ino,
      });
    }
    const group = Math.floor((ino - 1) / this.sb.inodesPerGroup);
    return { group, index: (ino - 1) % this.sb.inodesPerGroup, gd: this.groups[group] };
  }

  /** Read and verify one inode. The returned object is shared with the cache: treat it as read-only. */
  async readInode(ino: number): Promise<Inode> {
    return this.cachedInode(ino) ?? this.loadInode(ino);
  }

  /**
   * The inode when it (or its inode-table chunk) is cached: no I/O, no waiting. `remember` false
   * keeps a freshly parsed inode out of the inode cache (a tree walk visits each inode once).
   */
  private cachedInode(ino: number, remember = true): Inode | undefined {
    const cached = this.inodeCache.get(ino);
    if (cached) return cached;
    const { group, index } = this.inodeLocation(ino);
    const blockInTable = Math.floor(index / (this.blockSize / this.sb.inodeSize));
    const chunk = Math.floor(blockInTable / this.itableChunkBlocks);
    const buf = this.itableCache.get(group * 0x10000 + chunk);
    if (!buf || (blockInTable - chunk * this.itableChunkBlocks + 1) * this.blockSize > buf.length)
      return undefined;
    return this.inodeFromChunk(ino, buf, remember);
  }

  private async loadInode(ino: number, remember = true): Promise<Inode> {
    const { group, index, gd } = this.inodeLocation(ino);
    const isz = this.sb.inodeSize;
    const blockInTable = Math.floor(index / (this.blockSize / isz));
    const itBlocks = Math.ceil((this.sb.inodesPerGroup * isz) / this.blockSize);
    const chunk = Math.floor(blockInTable / this.itableChunkBlocks);
    const key = group * 0x10000 + chunk;
    const chunkStart = chunk * this.itableChunkBlocks;
    let buf = this.itableCache.get(key);
    // A chunk cut short at the used part of the table does not hold inodes past it.
    if (buf && (blockInTable - chunkStart + 1) * this.blockSize > buf.length) buf = undefined;
    if (!buf) {
      let n = Math.min(this.itableChunkBlocks, itBlocks - chunkStart);
      const csumKind = groupDescCsumKind(this.sb);
      if (csumKind !== "none") {
        // With group checksums the inodes past bg_itable_unused have never been used: read the
        // table only up to there (but always up to the inode asked for).
        const usedBlocks = Math.ceil(((this.sb.inodesPerGroup - gd.itableUnused) * isz) / this.blockSize);
        n = Math.min(n, Math.max(usedBlocks - chunkStart, blockInTable - chunkStart + 1));
      }
      this.checkBlockRange(gd.inodeTable + chunkStart, n, `inode table of group ${group}`, ino);
      if (gd.flags & BG_FLAGS.inodeUninit && csumKind !== "none") {
        buf = new Uint8Array(n * this.blockSize); // never initialised: all inodes free
      } else {
        buf = await this.readRaw((gd.inodeTable + chunkStart) * this.blockSize, n * this.blockSize);
        this.counters.metadataBlocks += n;
      }
      this.itableCache.set(key, buf);
    }
    return this.inodeFromChunk(ino, buf, remember);
  }

  /** Verify and parse inode `ino` out of its cached inode-table chunk. */
  private inodeFromChunk(ino: number, buf: Uint8Array, remember: boolean): Inode {
    const { index, gd } = this.inodeLocation(ino);
    const isz = this.sb.inodeSize;
    const perBlock = this.blockSize / isz;
    const blockInTable = Math.floor(index / perBlock);
    const chunkStart = Math.floor(blockInTable / this.itableChunkBlocks) * this.itableChunkBlocks;
    const off = (blockInTable - chunkStart) * this.blockSize + (index % perBlock) * isz;
    const bytes = buf.subarray(off, off + isz);
    const bad = this.csum ? inodeChecksumMismatch(this.seed, ino, bytes) : undefined;
    if (bad) {
      this.problem(
        new Ext4ChecksumError("inode checksum mismatch", bad.stored, bad.computed, {
          ...this.loc("inode", { inode: ino, block: gd.inodeTable + blockInTable }),
          offset: (gd.inodeTable + chunkStart) * this.blockSize + off,
        }),
      );
    }
    // `raw` aliases the cached inode-table chunk: chunks are never modified in place (invalidate()
    // drops them), and the inode cache bounds how many chunks stay pinned.
    const inode = parseInode(ino, bytes, isz, false);
    if (remember) this.inodeCache.set(ino, inode);
    return inode;
  }

  private inodeSeed(inode: Inode): number {
    return inodeChecksumSeed(this.seed, inode.ino, inode.generation);
  }

  // ---------------------------------------------------------------- block mapping

  /**
   * The file's mapped runs in logical order, adjacent runs coalesced. Validates extent trees
   * (magic, depth, counts, ordering, node reuse) and block maps; holes are simply absent.
   */
  async *blockRuns(inode: Inode): AsyncGenerator<BlockRun> {
    const flat = this.rootRuns(inode);
    if (flat) {
      yield* flat;
      return;
    }
    let pending: BlockRun | undefined;
    const source = inode.flags & INODE_FLAGS.EXTENTS ? this.extentRuns(inode) : this.blockMapRuns(inode);
    for await (const r of source) {
      if (
        pending &&
        pending.uninit === r.uninit &&
        pending.logical + pending.length === r.logical &&
        pending.physical + pending.length === r.physical
      ) {
        pending.length += r.length;
        continue;
      }
      if (pending) yield pending;
      pending = { ...r };
    }
    if (pending) yield pending;
  }

  /**
   * Runs of a file whose extent tree is just the root in i_block (most files): computed without
   * async machinery, with the same checks as the tree walk. Undefined for deeper trees and maps.
   */
  private rootRuns(inode: Inode): BlockRun[] | undefined {
    if (!(inode.flags & INODE_FLAGS.EXTENTS)) return undefined;
    const h = this.checkExtentHeader(inode, inode.iBlock, undefined, undefined);
    if (h.depth !== 0) return undefined;
    const out: BlockRun[] = [];
    let next = 0;
    for (let i = 0; i < h.entries; i++) {
      const e = parseExtent(inode.iBlock, i);
      if (e.len === 0) throw this.extentProblem(inode, undefined, `extent ${i} has length 0`);
      if (e.block < next)
        throw this.extentProblem(
          inode,
          undefined,
          `extent ${i} (logical ${e.block}) overlaps or is out of order`,
        );
      if (e.block + e.len > 2 ** 32)
        throw this.extentProblem(inode, undefined, `extent ${i} runs past 2^32 blocks`);
      this.checkBlockRange(e.start, e.len, "extent", inode.ino);
      next = e.block + e.len;
      const last = out[out.length - 1];
      if (
        last &&
        last.uninit === e.uninit &&
        last.logical + last.length === e.block &&
        last.physical + last.length === e.start
      ) {
        last.length += e.len;
      } else out.push({ logical: e.block, physical: e.start, length: e.len, uninit: e.uninit });
    }
    return out;
  }

  private extentProblem(inode: Inode, block: number | undefined, msg: string): Ext4FormatError {
    return new Ext4FormatError(
      msg,
      this.loc(block === undefined ? "extent root" : "extent block", { inode: inode.ino, block }),
    );
  }

  /** Validate an extent node header; returns it. */
  private checkExtentHeader(
    inode: Inode,
    node: Uint8Array,
    block: number | undefined,
    expectedDepth: number | undefined,
  ): ExtentHeader {
    const h = parseExtentHeader(node);
    if (h.magic !== EXTENT_MAGIC)
      throw this.extentProblem(inode, block, `bad extent magic 0x${h.magic.toString(16)}`);
    const cap = extentMaxEntries(node.length, block === undefined);
    if (h.max > cap || h.max === 0)
      throw this.extentProblem(inode, block, `eh_max ${h.max} exceeds the node's room (${cap})`);
    if (h.entries > h.max)
      throw this.extentProblem(inode, block, `eh_entries ${h.entries} exceeds eh_max ${h.max}`);
    if (h.depth > EXT_MAX_DEPTH)
      throw this.extentProblem(inode, block, `extent depth ${h.depth} is too deep`);
    if (expectedDepth !== undefined && h.depth !== expectedDepth) {
      throw this.extentProblem(inode, block, `extent node depth ${h.depth}, expected ${expectedDepth}`);
    }
    if (block !== undefined && this.csum) {
      const stored = storedExtentChecksum(node, h);
      const computed = extentBlockChecksum(this.inodeSeed(inode), node, h);
      if (stored !== computed) {
        this.problem(
          new Ext4ChecksumError(
            "extent block checksum mismatch",
            stored,
            computed,
            this.loc("extent block", { inode: inode.ino, block }),
          ),
        );
      }
    }
    return h;
  }

  private async *extentRuns(inode: Inode): AsyncGenerator<BlockRun> {
    const visited = new Set<number>();
    let nextLogical = 0;
    const self = this;
    async function* visit(
      node: Uint8Array,
      block: number | undefined,
      depth: number | undefined,
    ): AsyncGenerator<BlockRun> {
      const h = self.checkExtentHeader(inode, node, block, depth);
      if (h.depth === 0) {
        for (let i = 0; i < h.entries; i++) {
          const e = parseExtent(node, i);
          if (e.len === 0) throw self.extentProblem(inode, block, `extent ${i} has length 0`);
          if (e.block < nextLogical) {
            throw self.extentProblem(
              inode,
              block,
              `extent ${i} (logical ${e.block}) overlaps or is out of order`,
            );
          }
          if (e.block + e.len > 2 ** 32)
            throw self.extentProblem(inode, block, `extent ${i} runs past 2^32 blocks`);
          self.checkBlockRange(e.start, e.len, "extent", inode.ino);
          nextLogical = e.block + e.len;
          yield { logical: e.block, physical: e.start, length: e.len, uninit: e.uninit };
        }
        return;
      }
      for (let i = 0; i < h.entries; i++) {
        const ix = parseExtentIndex(node, i);
        if (ix.block < nextLogical && i > 0) {
          throw self.extentProblem(inode, block, `index entry ${i} (logical ${ix.block}) is out of order`);
        }
        if (visited.has(ix.leaf))
          throw self.extentProblem(inode, block, `extent node ${ix.leaf} is referenced twice (cycle)`);
        visited.add(ix.leaf);
        const child = await self.readBlock(ix.leaf, "extent block", inode.ino);
        yield* visit(child, ix.leaf, h.depth - 1);
      }
    }
    yield* visit(inode.iBlock, undefined, undefined);
  }

  private async *blockMapRuns(inode: Inode): AsyncGenerator<BlockRun> {
    const bs = this.blockSize;
    const ptrsPer = bs / 4;
    const nBlocks = Math.ceil(inode.size / bs);
    const root = parseBlockMapRoot(inode.iBlock);
    const visited = new Set<number>();
    const self = this;
    async function* level(ptr: number, depth: number, base: number): AsyncGenerator<BlockRun> {
      // depth 0: ptr is a data block at logical `base`.
      if (base >= nBlocks || ptr === 0) return;
      if (depth === 0) {
        self.checkBlockRange(ptr, 1, "data block", inode.ino);
        yield { logical: base, physical: ptr, length: 1, uninit: false };
        return;
      }
      if (visited.has(ptr)) {
        throw new Ext4FormatError(
          `indirect block ${ptr} is referenced twice`,
          self.loc("indirect block", { inode: inode.ino, block: ptr }),
        );
      }
      visited.add(ptr);
      const blk = await self.readBlock(ptr, "indirect block", inode.ino);
      const span = ptrsPer ** (depth - 1);
      for (let i = 0; i < ptrsPer; i++) {
        const lb = base + i * span;
        if (lb >= nBlocks) break;
        const p = u32(blk, i * 4);
        if (p === 0) continue;
        if (depth === 1) {
          self.checkBlockRange(p, 1, "data block", inode.ino);
          yield { logical: lb, physical: p, length: 1, uninit: false };
        } else yield* level(p, depth - 1, lb);
      }
    }
    for (let i = 0; i < 12; i++) yield* level(root[i], 0, i);
    yield* level(root[12], 1, 12);
    yield* level(root[13], 2, 12 + ptrsPer);
    yield* level(root[14], 3, 12 + ptrsPer + ptrsPer * ptrsPer);
  }

  /** Physical block for logical block `lblk` (0 for a hole), descending the extent tree or block map directly. */
  async mapBlock(inode: Inode, lblk: number): Promise<{ physical: number; uninit: boolean }> {
    if (inode.flags & INODE_FLAGS.EXTENTS) {
      let node = inode.iBlock;
      let block: number | undefined;
      let depth: number | undefined;
      for (let guard = 0; guard <= EXT_MAX_DEPTH + 1; guard++) {
        const h = this.checkExtentHeader(inode, node, block, depth);
        if (h.depth === 0) {
          // Binary search the last extent starting at or before lblk.
          let lo = 0;
          let hi = h.entries - 1;
          let found = -1;
          while (lo <= hi) {
            const mid = (lo + hi) >> 1;
            if (u32(node, EXTENT_HEADER_SIZE + mid * 12) <= lblk) {
              found = mid;
              lo = mid + 1;
            } else hi = mid - 1;
          }
          if (found < 0) return { physical: 0, uninit: false };
          const e = parseExtent(node, found);
          if (lblk >= e.block + e.len) return { physical: 0, uninit: false };
          this.checkBlockRange(e.start, e.len, "extent", inode.ino);
          return { physical: e.start + (lblk - e.block), uninit: e.uninit };
        }
        let found = -1;
        for (let i = 0; i < h.entries; i++) {
          if (u32(node, EXTENT_HEADER_SIZE + i * 12) <= lblk) found = i;
          else break;
        }
        if (found < 0) return { physical: 0, uninit: false };
        const ix = parseExtentIndex(node, found);
        depth = h.depth - 1;
        block = ix.leaf;
        node = await this.readBlock(ix.leaf, "extent block", inode.ino);
      }
      throw this.extentProblem(inode, block, "extent tree too deep");
    }
    const ptrsPer = this.blockSize / 4;
    const root = parseBlockMapRoot(inode.iBlock);
    let rel = lblk;
    const path: number[] = [];
    let start: number;
    if (rel < 12) return { physical: this.checkedData(inode, root[rel]), uninit: false };
    rel -= 12;
    const dind = rel - ptrsPer;
    if (rel < ptrsPer) {
      start = root[12];
      path.push(rel);
    } else if (dind < ptrsPer * ptrsPer) {
      start = root[13];
      path.push(Math.floor(dind / ptrsPer), dind % ptrsPer);
    } else {
      rel = dind - ptrsPer * ptrsPer;
      if (rel >= ptrsPer ** 3) return { physical: 0, uninit: false };
      start = root[14];
      path.push(Math.floor(rel / (ptrsPer * ptrsPer)), Math.floor(rel / ptrsPer) % ptrsPer, rel % ptrsPer);
    }
    let ptr = start;
    for (const idx of path) {
      if (ptr === 0) return { physical: 0, uninit: false };
      const blk = await this.readBlock(ptr, "indirect block", inode.ino);
      ptr = u32(blk, idx * 4);
    }
    return { physical: this.checkedData(inode, ptr), uninit: false };
  }

  private checkedData(inode: Inode, p: number): number {
    if (p !== 0) this.checkBlockRange(p, 1, "data block", inode.ino);
    return p;
  }

  // ---------------------------------------------------------------- file data

  private checkReadable(inode: Inode, path?: string): void {
    if (inode.flags & INODE_FLAGS.ENCRYPT) {
      throw new Ext4UnsupportedError(
        "encrypt",
        "file contents are encrypted (fscrypt); reading them is not supported",
        {
          file: path ?? this.device.name,
          inode: inode.ino,
        },
      );
    }
    if (inode.flags & INODE_FLAGS.COMPR) {
      throw new Ext4UnsupportedError(
        "compression",
        "file is compressed (ext2 compression is not supported)",
        {
          file: path ?? this.device.name,
          inode: inode.ino,
        },
      );
    }
  }

  /** Contents of an inline-data inode. */
  private async inlineContent(inode: Inode): Promise<Uint8Array> {
    const entries = await this.ibodyXattrs(inode);
    const data = entries.find(
      (e) => e.entry.nameIndex === INLINE_DATA_XATTR_INDEX && e.entry.name === "system.data",
    );
    return inlineFileContent(inode.iBlock, data?.value, inode.size);
  }

  /** Read bytes [start, end) of an inode's data into a new buffer (holes and uninit extents read as zeros). */
  async readInodeRange(inode: Inode, start: number, end: number): Promise<Uint8Array> {
    this.checkReadable(inode);
    end = Math.min(end, inode.size);
    if (end <= start) return new Uint8Array(0);
    if (end - start > DEFAULT_MAX_READ) {
      throw new Ext4FsError(
        "EFBIG",
        `range of ${end - start} bytes is too large to read into memory`,
        `<inode ${inode.ino}>`,
      );
    }
    if (inode.flags & INODE_FLAGS.INLINE_DATA) {
      // Bytes past the inline area (i_size larger than what the inode holds) read as zeros, as in the kernel.
      const out = new Uint8Array(end - start);
      const inline = await this.inlineContent(inode);
      if (start < inline.length) out.set(inline.subarray(start, Math.min(end, inline.length)));
      return out;
    }
    // Every byte is either read or explicitly zeroed (holes, uninitialised extents, the tail).
    const out = allocUninitialised(end - start);
    const flat = this.rootRuns(inode);
    if (flat) {
      // Most files: the runs are known without I/O, and their data is often already in a cached
      // window, in which case the whole read completes without waiting.
      const pending = this.copyRuns(flat, out, start, end);
      if (pending) await pending;
      return out;
    }
    const bs = this.blockSize;
    let pos = start;
    for await (const r of this.blockRuns(inode)) {
      const rStart = r.logical * bs;
      const rEnd = (r.logical + r.length) * bs;
      if (rEnd <= start) continue;
      if (rStart >= end) break;
      const from = Math.max(rStart, start);
      const to = Math.min(rEnd, end);
      if (from > pos) out.fill(0, pos - start, from - start);
      if (r.uninit) out.fill(0, from - start, to - start);
      else {
        const p = this.readData(r.physical * bs + (from - rStart), out, from - start, to - from);
        if (p) await p;
      }
      pos = Math.max(pos, to);
    }
    if (pos < end) out.fill(0, pos - start, end - start);
    return out;
  }

  /**
   * Fill `out` (bytes [start, end) of the file) from in-order runs; holes and uninitialised runs
   * become zeros. Undefined when everything came from cached windows, else a promise for the reads
   * still under way (issued together).
   */
  private copyRuns(
    runs: BlockRun[],
    out: Uint8Array,
    start: number,
    end: number,
  ): Promise<unknown> | undefined {
    const bs = this.blockSize;
    let pos = start;
    let pending: Promise<void>[] | undefined;
    for (const r of runs) {
      const rStart = r.logical * bs;
      const rEnd = (r.logical + r.length) * bs;
      if (rEnd <= start) continue;
      if (rStart >= end) break;
      const from = Math.max(rStart, start);
      const to = Math.min(rEnd, end);
      if (from > pos) out.fill(0, pos - start, from - start);
      if (r.uninit) out.fill(0, from - start, to - start);
      else {
        const p = this.readData(r.physical * bs + (from - rStart), out, from - start, to - from);
        if (p) {
          pending ??= [];
          pending.push(p);
        }
      }
      if (to > pos) pos = to;
    }
    if (pos < end) out.fill(0, pos - start, end - start);
    if (!pending) return undefined;
    return pending.length === 1 ? pending[0] : Promise.all(pending);
  }

  /**
   * Copy device bytes [offset, offset + len) into target[at, at + len). Small reads go through a
   * read-ahead window cache: files written together sit together on disk, so one window read
   * serves many small files (tree walks are latency-bound otherwise). Returns undefined when the
   * bytes were copied from cached windows (no waiting), else a promise.
   */
  private readData(
    offset: number,
    target: Uint8Array,
    at = 0,
    len = target.length - at,
  ): Promise<void> | undefined {
    const W = DATA_WINDOW;
    if (len > W / 8) return this.readLarge(offset, target, at, len);
    const win = offset - (offset % W);
    if (offset + len > win + W) {
      // Straddles two windows: one piece from each.
      const first = win + W - offset;
      const a = this.readData(offset, target, at, first);
      const b = this.readData(win + W, target, at + first, len - first);
      return a && b ? Promise.all([a, b]).then(() => {}) : (a ?? b);
    }
    // A read far from the previous one (random access) whose window is not cached is served
    // alone: loading a whole window for one small file would read up to 128 times its size.
    // Reads near the previous one (a tree walk, a file read in pieces) go through the windows.
    const near = this.lastEnd >= 0 && offset + W >= this.lastEnd && offset <= this.lastEnd + W;
    this.lastEnd = offset + len;
    if (!near && !this.dataCache.has(win) && !this.windowsInFlight.has(win)) {
      this.lastWindow = win;
      return this.readIntoCounted(offset, target.subarray(at, at + len));
    }
    if (win !== this.lastWindow) this.enterWindow(win);
    return this.copyFromWindow(win, offset, target, at, len);
  }

  /** Copy [offset, offset + len) from window `win` (which holds all of it) to target[at...]. */
  private copyFromWindow(
    win: number,
    offset: number,
    target: Uint8Array,
    at: number,
    len: number,
  ): Promise<void> | undefined {
    const hit = this.dataCache.get(win);
    if (hit) {
      target.set(hit.subarray(offset - win, offset - win + len), at);
      return undefined;
    }
    // The copy runs in the continuation of the window's read, before any other read completes
    // (recycled windows depend on it: see windowPool).
    return this.loadWindow(win).then((buf) => target.set(buf.subarray(offset - win, offset - win + len), at));
  }

  /** Copy from the window cache when one window holds all of the range; false otherwise. */
  private copyIfCached(offset: number, target: Uint8Array): boolean {
    const win = offset - (offset % DATA_WINDOW);
    if (offset + target.length > win + DATA_WINDOW) return false;
    const hit = this.dataCache.peek(win);
    if (!hit) return false;
    target.set(hit.subarray(offset - win, offset - win + target.length));
    return true;
  }

  /** A sequential reader moved to window `win`: start reading the next windows ahead of it. */
  private enterWindow(win: number): void {
    const W = DATA_WINDOW;
    const sequential = win === this.lastWindow + W;
    this.lastWindow = win;
    if (!sequential) return;
    const fsEnd = this.sb.blocksCount * this.blockSize;
    for (let k = 1; k <= PREFETCH_WINDOWS && win + k * W < fsEnd; k++) {
      if (!this.dataCache.has(win + k * W)) this.loadWindow(win + k * W).catch(() => {});
    }
  }

  /**
   * Large reads go straight into the target, except for the windows at their start that a
   * read-ahead already fetched (or is fetching) and the window at their end, which is loaded into
   * the cache because the next small file usually starts in it.
   */
  private async readLarge(offset: number, target: Uint8Array, at: number, len: number): Promise<void> {
    const W = DATA_WINDOW;
    const end = offset + len;
    this.lastEnd = end;
    let pos = offset;
    while (pos < end) {
      const win = pos - (pos % W);
      const buf = this.dataCache.get(win) ?? (await this.windowsInFlight.get(win));
      if (!buf) break;
      const n = Math.min(end, win + buf.length) - pos;
      target.set(buf.subarray(pos - win, pos - win + n), at + pos - offset);
      pos += n;
    }
    if (pos >= end) return;
    const lastWin = end - 1 - ((end - 1) % W);
    let tail: Promise<void> | undefined;
    let directEnd = end;
    if (lastWin > pos) {
      // Continue the read-ahead past the tail window as a sequential reader would.
      this.lastWindow = lastWin - W;
      this.enterWindow(lastWin);
      tail = this.copyFromWindow(lastWin, lastWin, target, at + lastWin - offset, end - lastWin);
      // Awaited below; handled now so that a failure of the direct read does not leave it unobserved.
      tail?.catch(() => {});
      directEnd = lastWin;
    }
    await this.readIntoCounted(pos, target.subarray(at + pos - offset, at + directEnd - offset));
    if (tail) await tail;
  }

  private loadWindow(win: number): Promise<Uint8Array> {
    const hit = this.dataCache.get(win);
    if (hit) return Promise.resolve(hit);
    let p = this.windowsInFlight.get(win);
    if (!p) {
      p = (async () => {
        const fsEnd = this.sb.blocksCount * this.blockSize;
        // Uninitialised memory is fine: the read fills every byte or throws.
        const len = Math.min(DATA_WINDOW, fsEnd - win, this.device.size - win);
        const buf = (len === DATA_WINDOW && this.windowPool.pop()) || allocBytes(len);
        await this.readIntoCounted(win, buf);
        this.dataCache.set(win, buf);
        return buf;
      })().finally(() => this.windowsInFlight.delete(win));
      this.windowsInFlight.set(win, p);
    }
    return p;
  }

  private async readIntoCounted(offset: number, target: Uint8Array): Promise<void> {
    // Large runs are read in bounded pieces so one call never asks the device for gigabytes.
    const MAX = 64 << 20;
    for (let done = 0; done < target.length; done += MAX) {
      const piece = target.subarray(done, Math.min(target.length, done + MAX));
      this.counters.reads++;
      this.counters.bytes += piece.length;
      await this.device.readInto(offset + done, piece);
    }
  }

  /** Stream an inode's data in chunks without holding the file. */
  async *iterateInode(
    inode: Inode,
    start = 0,
    end = inode.size,
    chunkSize = 1 << 20,
  ): AsyncGenerator<Uint8Array> {
    this.checkReadable(inode);
    end = Math.min(end, inode.size);
    if (end <= start) return;
    const zeros = (n: number) => new Uint8Array(n);
    let pos = start;
    if (inode.flags & INODE_FLAGS.INLINE_DATA) {
      const inline = await this.inlineContent(inode);
      if (pos < inline.length) {
        yield inline.slice(pos, Math.min(end, inline.length));
        pos = Math.min(end, inline.length);
      }
      for (; pos < end; pos += chunkSize) yield zeros(Math.min(chunkSize, end - pos));
      return;
    }
    const bs = this.blockSize;
    for await (const r of this.blockRuns(inode)) {
      const rStart = r.logical * bs;
      const rEnd = Math.min((r.logical + r.length) * bs, end);
      if (rEnd <= pos) continue;
      if (rStart >= end) break;
      // Hole before this run.
      while (pos < rStart) {
        const n = Math.min(chunkSize, rStart - pos);
        yield zeros(n);
        pos += n;
      }
      while (pos < rEnd) {
        const n = Math.min(chunkSize, rEnd - pos);
        if (r.uninit) yield zeros(n);
        else {
          const buf = new Uint8Array(n);
          await this.readData(r.physical * bs + (pos - rStart), buf);
          yield buf;
        }
        pos += n;
      }
    }
    while (pos < end) {
      const n = Math.min(chunkSize, end - pos);
      yield zeros(n);
      pos += n;
    }
  }

  // ---------------------------------------------------------------- directories

  private dirProblem(inode: Inode, block: number | undefined, msg: string): Ext4FormatError {
    return new Ext4FormatError(msg, this.loc("directory block", { inode: inode.ino, block }));
  }

  /** Verify the checksum of a directory block (leaf tail or dx node tail). */
  private verifyDirBlock(
    inode: Inode,
    block: Uint8Array,
    blockNr: number,
    logical: number,
  ): "leaf" | "index" {
    const isIndexed = (inode.flags & INODE_FLAGS.INDEX) !== 0;
    const indexBlock = isIndexed && (logical === 0 || looksLikeDxNode(block, this.blockSize));
    if (!this.csum) return indexBlock ? "index" : "leaf";
    if (indexBlock) {
      const off =
        logical === 0 ? DX_ROOT_INFO_OFFSET + block[DX_ROOT_INFO_OFFSET + 5] : DX_NODE_ENTRIES_OFFSET;
      if (off + 4 <= block.length) {
        const node = parseDxEntries(block, off);
        if (dxTailOffset(node) + 8 <= block.length && node.count <= node.limit) {
          const stored = storedDxChecksum(block, node);
          const computed = dxChecksum(this.inodeSeed(inode), block, node);
          if (stored !== computed) {
            this.problem(
              new Ext4ChecksumError(
                "htree node checksum mismatch",
                stored,
                computed,
                this.loc("htree node", { inode: inode.ino, block: blockNr }),
              ),
            );
          }
          return "index";
        }
      }
      this.problem(this.dirProblem(inode, blockNr, "htree node has no room for its checksum tail"));
      return "index";
    }
    if (!hasDirentTail(block)) {
      this.problem(this.dirProblem(inode, blockNr, "directory block has no checksum tail"));
      return "leaf";
    }
    const stored = storedDirentTailChecksum(block);
    const computed = direntTailChecksum(this.inodeSeed(inode), block);
    if (stored !== computed) {
      this.problem(
        new Ext4ChecksumError(
          "directory block checksum mismatch",
          stored,
          computed,
          this.loc("directory block", { inode: inode.ino, block: blockNr }),
        ),
      );
    }
    return "leaf";
  }

  /** Parse the entries of one directory leaf block (excluding the checksum tail). */
  private parseDirLeaf(inode: Inode, block: Uint8Array, blockNr: number, logical: number): RawDirent[] {
    const kind = this.verifyDirBlock(inode, block, blockNr, logical);
    if (kind === "index" && logical !== 0) return [];
    const end = this.csum && hasDirentTail(block) ? block.length - DIRENT_TAIL_SIZE : block.length;
    // dx_root: the ".." entry's rec_len spans the index, so a linear parse sees just "." and "..".
    const { entries, problem } = parseDirentBlock(block, 0, end, this.blockSize, this.hasFileType);
    if (problem) {
      this.problem(this.dirProblem(inode, blockNr, `${problem.message} at byte ${problem.offset}`));
    }
    return entries;
  }

  /** All entries of a directory inode ("." and ".." included where stored). */
  async *dirEntries(inode: Inode): AsyncGenerator<RawDirent> {
    yield* await this.dirEntryList(inode);
  }

  /** The entries of dirEntries as one array (no asynchronous step per entry). */
  private async dirEntryList(inode: Inode): Promise<RawDirent[]> {
    if ((inode.mode & S_IFMT) !== S_IFDIR) {
      throw new Ext4FormatError("not a directory", this.loc("inode", { inode: inode.ino }));
    }
    if (inode.flags & INODE_FLAGS.ENCRYPT) {
      throw new Ext4UnsupportedError(
        "encrypt",
        "directory names are encrypted (fscrypt); listing is not supported",
        {
          file: this.device.name,
          inode: inode.ino,
        },
      );
    }
    const out: RawDirent[] = [];
    if (inode.flags & INODE_FLAGS.INLINE_DATA) {
      for await (const e of this.inlineDirEntries(inode)) out.push(e);
      return out;
    }
    const bs = this.blockSize;
    const nBlocks = Math.ceil(inode.size / bs);
    let runs = this.rootRuns(inode);
    if (!runs) {
      runs = [];
      for await (const r of this.blockRuns(inode)) {
        if (r.logical >= nBlocks) break;
        runs.push(r);
      }
    }
    for (const r of runs) {
      if (r.logical >= nBlocks) break;
      const n = Math.min(r.length, nBlocks - r.logical);
      if (r.uninit) continue;
      // Whole runs are read at once (directories of many blocks are usually contiguous). A
      // directory block often sits next to its files' data: when a data window holding it is
      // cached, it is copied from there; otherwise it is read alone (a walk that does not read
      // file contents must not pull the data in through the read-ahead).
      const CH = 64;
      for (let k = 0; k < n; k += CH) {
        const cnt = Math.min(CH, n - k);
        const first = r.physical + k;
        this.checkBlockRange(first, cnt, "directory block", inode.ino);
        this.counters.metadataBlocks += cnt;
        let buf = cnt === 1 ? this.blockCache.get(first) : undefined;
        if (!buf) {
          buf = allocBytes(cnt * bs);
          if (!this.copyIfCached(first * bs, buf)) {
            this.counters.reads++;
            this.counters.bytes += buf.length;
            await this.device.readInto(first * bs, buf);
          }
        }
        for (let j = 0; j < cnt; j++) {
          const blk = buf.subarray(j * bs, (j + 1) * bs);
          for (const e of this.parseDirLeaf(inode, blk, first + j, r.logical + k + j)) out.push(e);
        }
      }
    }
    return out;
  }

  private async *inlineDirEntries(inode: Inode): AsyncGenerator<RawDirent> {
    const parent = u32(inode.iBlock, 0);
    yield { inode: inode.ino, recLen: 0, nameLen: 1, fileType: 2, offset: -1, name: encodeName(".") };
    yield { inode: parent, recLen: 0, nameLen: 2, fileType: 2, offset: -1, name: encodeName("..") };
    const a = parseDirentBlock(
      inode.iBlock,
      INLINE_DIR_PARENT_SIZE,
      inode.iBlock.length,
      this.blockSize,
      this.hasFileType,
    );
    if (a.problem) this.problem(this.dirProblem(inode, undefined, `inline directory: ${a.problem.message}`));
    yield* a.entries;
    const x = (await this.ibodyXattrs(inode)).find((e) => e.entry.name === "system.data");
    if (x && x.value.length > 0) {
      const b = parseDirentBlock(x.value, 0, x.value.length, this.blockSize, this.hasFileType);
      if (b.problem)
        this.problem(
          this.dirProblem(inode, undefined, `inline directory (xattr part): ${b.problem.message}`),
        );
      yield* b.entries;
    }
  }

  /** Find `name` in directory `dir`: through the htree index when there is one. */
  async lookup(dir: Inode, name: Uint8Array): Promise<RawDirent | undefined> {
    if ((dir.mode & S_IFMT) !== S_IFDIR) return undefined;
    if (dir.flags & INODE_FLAGS.ENCRYPT) {
      throw new Ext4UnsupportedError("encrypt", "cannot look up names in an encrypted directory", {
        file: this.device.name,
        inode: dir.ino,
      });
    }
    // Listing cache keys are the raw bytes (latin1 is a bijection), so names that are not valid
    // UTF-8 never collide.
    const key = Buffer.from(name.buffer, name.byteOffset, name.byteLength).toString("latin1");
    if (
      dir.flags & INODE_FLAGS.INDEX &&
      !(dir.flags & INODE_FLAGS.INLINE_DATA) &&
      !(dir.flags & INODE_FLAGS.CASEFOLD) &&
      hasCompat(this.sb, COMPAT.dir_index)
    ) {
      try {
        return await this.htreeLookup(dir, name);
      } catch (e) {
        if (!this.lenient || !(e instanceof Ext4FormatError || e instanceof Ext4ChecksumError)) throw e;
        this.warn(e.code, `${e.message}; falling back to a linear scan`);
      }
    }
    let map = this.dirCache.get(dir.ino);
    if (!map) {
      map = new Map();
      for await (const e of this.dirEntries(dir)) {
        const k = Buffer.from(e.name.buffer, e.name.byteOffset, e.name.byteLength).toString("latin1");
        if (!map.has(k)) map.set(k, e);
      }
      this.dirCache.set(dir.ino, map);
    }
    const hit = map.get(key);
    if (hit && sameBytes(hit.name, name)) return hit;
    if (!hit && dir.flags & INODE_FLAGS.CASEFOLD) {
      // Exact-case names are found above; other spellings would need Unicode casefolding.
      for (const e of map.values()) {
        if (decodeName(e.name).toLowerCase() === decodeName(name).toLowerCase()) {
          throw new Ext4UnsupportedError(
            "casefold",
            `'${decodeName(name)}' differs from an entry only by case in a casefolded directory; case-insensitive lookup is not supported`,
            { file: this.device.name, inode: dir.ino },
          );
        }
      }
    }
    return undefined;
  }

  private async readDirBlock(dir: Inode, logical: number): Promise<{ block: Uint8Array; blockNr: number }> {
    const nBlocks = Math.ceil(dir.size / this.blockSize);
    if (logical >= nBlocks) {
      throw new Ext4FormatError(
        `htree points at block ${logical}, past the directory end (${nBlocks} blocks)`,
        this.loc("htree node", { inode: dir.ino }),
      );
    }
    const m = await this.mapBlock(dir, logical);
    if (m.physical === 0 || m.uninit) {
      throw new Ext4FormatError(
        `htree points at unmapped directory block ${logical}`,
        this.loc("htree node", { inode: dir.ino }),
      );
    }
    return { block: await this.readBlock(m.physical, "directory block", dir.ino), blockNr: m.physical };
  }

  private async htreeLookup(dir: Inode, name: Uint8Array): Promise<RawDirent | undefined> {
    const root = await this.readDirBlock(dir, 0);
    const rb = root.block;
    const info = parseDxRootInfo(rb);
    const loc = this.loc("htree root", { inode: dir.ino, block: root.blockNr });
    if (u32(rb, DX_ROOT_INFO_OFFSET) !== 0 || info.infoLength !== 8) {
      throw new Ext4FormatError(`bad dx_root_info (length ${info.infoLength})`, loc);
    }
    const maxLevels = hasIncompat(this.sb, INCOMPAT.large_dir) ? 3 : 2;
    if (info.indirectLevels >= maxLevels) {
      throw new Ext4FormatError(`htree depth ${info.indirectLevels + 1} exceeds the limit ${maxLevels}`, loc);
    }
    if (!isComputableHashVersion(info.hashVersion)) {
      throw new Ext4UnsupportedError(
        "dir_hash",
        `htree hash version ${info.hashVersion} is not supported`,
        loc,
      );
    }
    const version = effectiveHashVersion(info.hashVersion, this.sb.flags);
    const { hash } = dxHash(name, version, this.sb.hashSeed);
    this.verifyDirBlock(dir, rb, root.blockNr, 0);
    // path[k] = (node, index chosen) at level k.
    const path: { node: DxNode; at: number; blockNr: number }[] = [];
    let node = parseDxEntries(rb, DX_ROOT_INFO_OFFSET + 8);
    let blockNr = root.blockNr;
    const seen = new Set<number>([0]);
    let nodeBlock = rb;
    for (let level = 0; ; level++) {
      const problem = dxNodeProblem(nodeBlock, node, this.csum);
      if (problem) {
        throw new Ext4FormatError(
          problem,
          this.loc(level === 0 ? "htree root" : "htree node", { inode: dir.ino, block: blockNr }),
        );
      }
      const at = dxFind(node, hash);
      path.push({ node, at, blockNr });
      if (level === info.indirectLevels) break;
      const child = node.entries[at].block;
      if (seen.has(child)) {
        throw new Ext4FormatError(
          `htree node ${child} is referenced twice (cycle)`,
          this.loc("htree node", { inode: dir.ino, block: blockNr }),
        );
      }
      seen.add(child);
      const c = await this.readDirBlock(dir, child);
      if (!looksLikeDxNode(c.block, this.blockSize)) {
        throw new Ext4FormatError(
          `htree interior block ${child} is not a dx node`,
          this.loc("htree node", { inode: dir.ino, block: c.blockNr }),
        );
      }
      this.verifyDirBlock(dir, c.block, c.blockNr, child);
      node = parseDxEntries(c.block, DX_NODE_ENTRIES_OFFSET);
      blockNr = c.blockNr;
      nodeBlock = c.block;
    }
    // Scan leaves; continue into following leaves while the hash chain continues (collisions).
    for (let guard = 0; guard < 1 << 20; guard++) {
      const leaf = path[path.length - 1];
      const leafLogical = leaf.node.entries[leaf.at].block;
      const lb = await this.readDirBlock(dir, leafLogical);
      if (looksLikeDxNode(lb.block, this.blockSize) && this.blockSize > 12) {
        throw new Ext4FormatError(
          `htree leaf ${leafLogical} is an index block`,
          this.loc("htree leaf", { inode: dir.ino, block: lb.blockNr }),
        );
      }
      for (const e of this.parseDirLeaf(dir, lb.block, lb.blockNr, leafLogical)) {
        if (sameBytes(e.name, name)) return e;
      }
      // Advance to the next leaf in hash order.
      let k = path.length - 1;
      while (k >= 0 && path[k].at + 1 >= path[k].node.entries.length) k--;
      if (k < 0) return undefined;
      const nextHash = path[k].node.entries[path[k].at + 1].hash;
      if ((nextHash & ~1) >>> 0 !== hash) return undefined;
      path[k].at++;
      for (let j = k + 1; j < path.length; j++) {
        const child = path[j - 1].node.entries[path[j - 1].at].block;
        const c = await this.readDirBlock(dir, child);
        this.verifyDirBlock(dir, c.block, c.blockNr, child);
        const n = parseDxEntries(c.block, DX_NODE_ENTRIES_OFFSET);
        const pr = dxNodeProblem(c.block, n, this.csum);
        if (pr) throw new Ext4FormatError(pr, this.loc("htree node", { inode: dir.ino, block: c.blockNr }));
        path[j] = { node: n, at: 0, blockNr: c.blockNr };
      }
    }
    throw new Ext4FormatError("htree hash chain does not end", this.loc("htree", { inode: dir.ino }));
  }

  // ---------------------------------------------------------------- xattrs

  /** Entries and values from the inode body. */
  private async ibodyXattrs(inode: Inode): Promise<{ entry: XattrEntry; value: Uint8Array }[]> {
    const start = inodeXattrOffset(inode);
    const raw = inode.raw;
    if (raw.length <= 128 || start + 4 > raw.length || u32(raw, start) !== XATTR_MAGIC) return [];
    const first = start + 4;
    const { entries, problem } = parseXattrEntries(raw, first, raw.length, first);
    if (problem)
      this.problem(
        new Ext4FormatError(`in-inode xattrs: ${problem}`, this.loc("inode xattrs", { inode: inode.ino })),
      );
    const out: { entry: XattrEntry; value: Uint8Array }[] = [];
    for (const e of entries) out.push({ entry: e, value: await this.xattrValue(inode, e, raw, first) });
    return out;
  }

  private async xattrValue(
    inode: Inode,
    e: XattrEntry,
    region: Uint8Array,
    base: number,
  ): Promise<Uint8Array> {
    if (e.valueInum === 0) return region.slice(base + e.valueOffset, base + e.valueOffset + e.valueSize);
    // ea_inode: the value is the content of another inode.
    if (!hasIncompat(this.sb, INCOMPAT.ea_inode)) {
      this.problem(
        new Ext4FormatError(
          `xattr ${e.name} refers to value inode ${e.valueInum} without ea_inode`,
          this.loc("xattr", { inode: inode.ino }),
        ),
      );
      return new Uint8Array(0);
    }
    if (e.valueSize > XATTR_SIZE_MAX) {
      throw new Ext4FormatError(
        `xattr ${e.name} value of ${e.valueSize} bytes is too large`,
        this.loc("xattr", { inode: inode.ino }),
      );
    }
    const vi = await this.readInode(e.valueInum);
    if (!(vi.flags & INODE_FLAGS.EA_INODE) || vi.size !== e.valueSize) {
      throw new Ext4FormatError(
        `xattr value inode ${e.valueInum} is invalid`,
        this.loc("xattr", { inode: inode.ino }),
      );
    }
    return this.readInodeRange(vi, 0, vi.size);
  }

  /** All xattrs of an inode, in-inode first, then the external block. Values as stored on disk. */
  async inodeXattrs(inode: Inode): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>();
    for (const { entry, value } of await this.ibodyXattrs(inode)) {
      if (entry.name === "system.data") continue; // inline data payload, not a user-visible attribute
      out.set(entry.name, value);
    }
    if (inode.fileAcl !== 0) {
      const blockNr = inode.fileAcl;
      const block = await this.readBlock(blockNr, "xattr block", inode.ino);
      const h = parseXattrBlockHeader(block);
      const loc = this.loc("xattr block", { inode: inode.ino, block: blockNr });
      if (h.magic !== XATTR_MAGIC)
        throw new Ext4FormatError(`bad xattr block magic 0x${h.magic.toString(16)}`, loc);
      if (h.blocks !== 1) throw new Ext4FormatError(`xattr block spans ${h.blocks} blocks`, loc);
      if (this.csum) {
        const computed = xattrBlockChecksum(this.seed, blockNr, block);
        if (computed !== h.checksum)
          this.problem(new Ext4ChecksumError("xattr block checksum mismatch", h.checksum, computed, loc));
      }
      const { entries, problem } = parseXattrEntries(block, XATTR_BLOCK_HEADER_SIZE, block.length, 0);
      if (problem) this.problem(new Ext4FormatError(problem, loc));
      for (const e of entries)
        if (!out.has(e.name)) out.set(e.name, await this.xattrValue(inode, e, block, 0));
    }
    return out;
  }

  // ---------------------------------------------------------------- symlinks

  /** Target of a symlink inode (fast, slow or inline). */
  async readSymlinkInode(inode: Inode): Promise<Uint8Array> {
    if ((inode.mode & S_IFMT) !== S_IFLNK)
      throw new Ext4FormatError("not a symlink", this.loc("inode", { inode: inode.ino }));
    if (inode.size > PATH_MAX) {
      throw new Ext4FormatError(
        `symlink target of ${inode.size} bytes is too long`,
        this.loc("symlink", { inode: inode.ino }),
      );
    }
    this.checkReadable(inode);
    if (inode.flags & INODE_FLAGS.INLINE_DATA) return this.inlineContent(inode);
    if (this.isFastSymlink(inode)) {
      if (inode.size >= 60) {
        throw new Ext4FormatError(
          `fast symlink claims ${inode.size} bytes`,
          this.loc("symlink", { inode: inode.ino }),
        );
      }
      return inode.iBlock.slice(0, inode.size);
    }
    return this.readInodeRange(inode, 0, inode.size);
  }

  /** Fast symlinks keep the target in i_block and own no data blocks (an xattr block does not count). */
  isFastSymlink(inode: Inode): boolean {
    const blocks = inodeBlocks512(inode, hasRoCompat(this.sb, RO_COMPAT.huge_file), this.blockSize);
    const ea = inode.fileAcl !== 0 ? this.sb.clusterSize / 512 : 0;
    return blocks - ea === 0;
  }

  // ---------------------------------------------------------------- paths

  private async resolve(path: string, followLast: boolean): Promise<Resolved> {
    if (typeof path !== "string") throw new Ext4FsError("EINVAL", "path must be a string", String(path));
    if (path.length > PATH_MAX * 4) throw new Ext4FsError("ENAMETOOLONG", "path too long", path.slice(0, 64));
    let links = 0;
    const stack: { ino: number; name: string }[] = [];
    let todo = path.split("/").filter((c) => c !== "" && c !== ".");
    let cur = await this.readInode(ROOT_INO);
    if ((cur.mode & S_IFMT) !== S_IFDIR)
      throw new Ext4FormatError("root inode is not a directory", this.loc("inode", { inode: ROOT_INO }));
    const dirAt = async () =>
      stack.length ? this.readInode(stack[stack.length - 1].ino) : this.readInode(ROOT_INO);
    while (todo.length > 0) {
      const comp = todo.shift()!;
      if (comp === "..") {
        stack.pop();
        cur = await dirAt();
        continue;
      }
      if ((cur.mode & S_IFMT) !== S_IFDIR) throw new Ext4FsError("ENOTDIR", "not a directory", path);
      const nameBytes = encodeName(comp);
      if (nameBytes.length > MAX_NAME_LEN) throw new Ext4FsError("ENAMETOOLONG", "name too long", path);
      const e = await this.lookup(cur, nameBytes);
      if (!e) throw new Ext4FsError("ENOENT", "no such file or directory", path);
      const child = await this.readInode(e.inode);
      const isLast = todo.length === 0;
      if ((child.mode & S_IFMT) === S_IFLNK && (!isLast || followLast)) {
        if (++links > MAX_SYMLINKS) throw new Ext4FsError("ELOOP", "too many levels of symbolic links", path);
        const target = decodeName(await this.readSymlinkInode(child));
        if (target.startsWith("/")) stack.length = 0;
        todo = [...target.split("/").filter((c) => c !== "" && c !== "."), ...todo];
        cur = await dirAt();
        continue;
      }
      stack.push({ ino: e.inode, name: comp });
      cur = child;
    }
    const ino = stack.length ? stack[stack.length - 1].ino : ROOT_INO;
    return { ino, inode: cur, path: "/" + stack.map((s) => s.name).join("/") };
  }

  private statsOf(inode: Inode): Ext4Stats {
    const blocks = inodeBlocks512(inode, hasRoCompat(this.sb, RO_COMPAT.huge_file), this.blockSize);
    const t = inode.mode & S_IFMT;
    const dev = t === S_IFCHR || t === S_IFBLK ? decodeDeviceNumber(inode) : NO_DEVICE;
    return new Ext4Stats(inode, blocks, this.blockSize, dev);
  }

  // ---------------------------------------------------------------- public fs-like API

  async stat(path: string): Promise<Ext4Stats> {
    return this.statsOf((await this.resolve(path, true)).inode);
  }

  async lstat(path: string): Promise<Ext4Stats> {
    return this.statsOf((await this.resolve(path, false)).inode);
  }

  /** Stat by inode number. */
  async statInode(ino: number): Promise<Ext4Stats> {
    return this.statsOf(await this.readInode(ino));
  }

  /** Whether `path` exists (without following a final symlink). */
  async exists(path: string): Promise<boolean> {
    try {
      await this.resolve(path, false);
      return true;
    } catch (e) {
      if (e instanceof Ext4FsError && (e.code === "ENOENT" || e.code === "ENOTDIR")) return false;
      throw e;
    }
  }

  /** Canonical absolute path inside the guest: symlinks resolved in the guest, `..` never above `/`. */
  async realpath(path: string): Promise<string> {
    return (await this.resolve(path, true)).path;
  }

  async readdir(path: string): Promise<string[]>;
  async readdir(path: string, options: { withFileTypes: true }): Promise<Ext4Dirent[]>;
  async readdir(path: string, options?: { withFileTypes?: boolean }): Promise<string[] | Ext4Dirent[]> {
    const r = await this.resolve(path, true);
    if ((r.inode.mode & S_IFMT) !== S_IFDIR) throw new Ext4FsError("ENOTDIR", "not a directory", path);
    const list = await this.readdirInode(r.inode, r.path);
    return options?.withFileTypes ? list : list.map((d) => d.name);
  }

  /** Entries of a directory inode, without "." and "..". */
  async readdirInode(dir: Inode, parentPath = `<inode ${dir.ino}>`): Promise<Ext4Dirent[]> {
    const out: Ext4Dirent[] = [];
    for (const e of await this.dirEntryList(dir)) {
      if (isDotOrDotDot(e.name)) continue;
      let ft = e.fileType;
      if (!this.hasFileType || ft === 0 || ft > 7)
        ft = fileTypeFromMode((await this.readInode(e.inode)).mode);
      out.push(Ext4Dirent.fromFileType(direntName(e.name), e.name, e.inode, ft, parentPath));
    }
    return out;
  }

  async readFile(path: string, options: { maxSize?: number } = {}): Promise<Buffer> {
    const r = await this.resolve(path, true);
    return this.readFileInode(r.inode, path, options);
  }

  /** Whole content of a regular file (or symlink/other) inode. */
  async readFileInode(
    inode: Inode,
    path = `<inode ${inode.ino}>`,
    options: { maxSize?: number } = {},
  ): Promise<Buffer> {
    if ((inode.mode & S_IFMT) === S_IFDIR)
      throw new Ext4FsError("EISDIR", "illegal operation on a directory", path);
    const max = Math.min(options.maxSize ?? DEFAULT_MAX_READ, DEFAULT_MAX_READ);
    if (inode.size > max)
      throw new Ext4FsError("EFBIG", `file of ${inode.size} bytes exceeds the ${max}-byte limit`, path);
    // Most files (an extent root in the inode, no inline data): filled here directly, without
    // the general range reader's extra asynchronous step.
    if (
      inode.size > 0 &&
      !(inode.flags & (INODE_FLAGS.INLINE_DATA | INODE_FLAGS.ENCRYPT | INODE_FLAGS.COMPR))
    ) {
      const flat = this.rootRuns(inode);
      if (flat) {
        const out = allocUninitialised(inode.size);
        const pending = this.copyRuns(flat, out, 0, inode.size);
        if (pending) await pending;
        return out;
      }
    }
    const data = await this.readInodeRange(inode, 0, inode.size);
    return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  }

  /** A Readable over the file, read in chunks (holes are produced as zeros, never allocated whole). */
  createReadStream(
    path: string,
    options: { start?: number; end?: number; highWaterMark?: number } = {},
  ): Readable {
    const self = this;
    async function* gen() {
      const r = await self.resolve(path, true);
      if ((r.inode.mode & S_IFMT) === S_IFDIR)
        throw new Ext4FsError("EISDIR", "illegal operation on a directory", path);
      const end = options.end !== undefined ? options.end + 1 : r.inode.size; // `end` is inclusive, as in node:fs
      for await (const chunk of self.iterateInode(
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
    const r = await this.resolve(path, false);
    if ((r.inode.mode & S_IFMT) !== S_IFLNK) throw new Ext4FsError("EINVAL", "not a symbolic link", path);
    return decodeName(await this.readSymlinkInode(r.inode));
  }

  /** Attribute names (follows a final symlink, like listxattr(2)). */
  async listxattr(path: string): Promise<string[]> {
    return [...(await this.inodeXattrs((await this.resolve(path, true)).inode)).keys()];
  }
  /** Attribute names of the link itself (llistxattr(2)). */
  async llistxattr(path: string): Promise<string[]> {
    return [...(await this.inodeXattrs((await this.resolve(path, false)).inode)).keys()];
  }

  /**
   * One attribute value, as getxattr(2) returns it: POSIX ACLs are converted from the ext4 disk
   * form to the xattr API form (pass `raw: true` for the stored bytes).
   */
  async getxattr(
    path: string,
    name: string,
    options: { raw?: boolean; noFollow?: boolean } = {},
  ): Promise<Buffer> {
    const r = await this.resolve(path, !options.noFollow);
    const all = await this.inodeXattrs(r.inode);
    const v = all.get(name);
    if (v === undefined) throw new Ext4FsError("ENODATA", `no attribute ${name}`, path);
    let out = v;
    if (!options.raw && isPosixAclName(name)) {
      try {
        out = encodePosixAclXattr(decodePosixAcl(v));
      } catch (e) {
        throw new Ext4FormatError(
          `invalid ACL in ${name}: ${(e as Error).message}`,
          this.loc("xattr", { inode: r.ino }),
        );
      }
    }
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  }

  async lgetxattr(path: string, name: string, options: { raw?: boolean } = {}): Promise<Buffer> {
    return this.getxattr(path, name, { ...options, noFollow: true });
  }

  /**
   * Depth-first pre-order walk below `root` (included). Directories are entered once (a
   * directory reachable twice is corrupt: error, or skipped in lenient mode); symlinks are not
   * followed.
   */
  async *walk(root = "/"): AsyncGenerator<WalkEntry> {
    const r = await this.resolve(root, true);
    const seen = new Set<number>();
    // Iterative pre-order DFS (recursive async generators cost O(depth) per yielded entry).
    const stack: { ino: number; inode: Inode; path: string; depth: number }[] = [
      { ino: r.ino, inode: r.inode, path: r.path, depth: 0 },
    ];
    while (stack.length > 0) {
      const cur = stack.pop()!;
      yield {
        path: cur.path,
        ino: cur.ino,
        stats: this.statsOf(cur.inode),
        inode: cur.inode,
        depth: cur.depth,
      };
      if ((cur.inode.mode & S_IFMT) !== S_IFDIR) continue;
      if (seen.has(cur.ino)) {
        this.problem(
          new Ext4FormatError(
            `directory reached twice (at ${cur.path})`,
            this.loc("directory", { inode: cur.ino }),
          ),
        );
        continue;
      }
      seen.add(cur.ino);
      const entries = await this.dirEntryList(cur.inode);
      const prefix = cur.path === "/" ? "/" : `${cur.path}/`;
      const base = stack.length;
      for (const d of entries) {
        if (isDotOrDotDot(d.name)) continue;
        const child = this.cachedInode(d.inode, false) ?? (await this.loadInode(d.inode, false));
        stack.push({ ino: d.inode, inode: child, path: prefix + direntName(d.name), depth: cur.depth + 1 });
      }
      // Children were pushed in directory order; reverse them so they pop in that order.
      for (let i = base, j = stack.length - 1; i < j; i++, j--) {
        const t = stack[i];
        stack[i] = stack[j];
        stack[j] = t;
      }
    }
  }

  // ---------------------------------------------------------------- checks

  /** Verify every initialised group's block and inode bitmap checksums (metadata_csum). */
  async verifyBitmaps(): Promise<void> {
    if (!this.csum) return;
    const bs = this.blockSize;
    const bbBytes = this.sb.clustersPerGroup / 8;
    const ibBytes = this.sb.inodesPerGroup / 8;
    for (let g = 0; g < this.groups.length; g++) {
      const gd = this.groups[g];
      if (!(gd.flags & BG_FLAGS.blockUninit)) {
        const b = await this.readBlock(gd.blockBitmap, `block bitmap of group ${g}`);
        const c = bitmapChecksum(this.seed, b, Math.min(bbBytes, bs));
        if (!bitmapChecksumMatches(gd.blockBitmapCsum, c, this.sb.descSize)) {
          this.problem(
            new Ext4ChecksumError(
              `block bitmap checksum mismatch (group ${g})`,
              gd.blockBitmapCsum,
              c,
              this.loc("block bitmap", { block: gd.blockBitmap }),
            ),
          );
        }
      }
      if (!(gd.flags & BG_FLAGS.inodeUninit)) {
        const b = await this.readBlock(gd.inodeBitmap, `inode bitmap of group ${g}`);
        const c = bitmapChecksum(this.seed, b, Math.min(ibBytes, bs));
        if (!bitmapChecksumMatches(gd.inodeBitmapCsum, c, this.sb.descSize)) {
          this.problem(
            new Ext4ChecksumError(
              `inode bitmap checksum mismatch (group ${g})`,
              gd.inodeBitmapCsum,
              c,
              this.loc("inode bitmap", { block: gd.inodeBitmap }),
            ),
          );
        }
      }
    }
  }

  /** Logical block i of the internal journal. */
  async readJournalBlock(i: number): Promise<Uint8Array> {
    const ji = await this.readInode(this.sb.journalInum);
    const m = await this.mapBlock(ji, i);
    if (m.physical === 0) {
      throw new Ext4FormatError(`journal block ${i} is not mapped`, this.loc("journal", { inode: ji.ino }));
    }
    return this.readBlock(m.physical, "journal block", ji.ino);
  }

  /** Scan the journal for committed transactions that recovery would replay. */
  async scanJournal(): Promise<JournalScan> {
    const jsb = this.journal.superblock;
    if (!jsb) throw new Ext4FormatError("no readable internal journal", this.loc("journal"));
    if (jsb.blockSize !== this.blockSize) {
      throw new Ext4UnsupportedError(
        "journal",
        `journal block size ${jsb.blockSize} differs from the filesystem's`,
        this.loc("journal"),
      );
    }
    if (jsb.featureIncompat & ~0x1f) {
      throw new Ext4UnsupportedError(
        "journal",
        `journal uses unknown features 0x${jsb.featureIncompat.toString(16)}`,
        this.loc("journal"),
      );
    }
    try {
      return await scanJournal(jsb, (i) => this.readJournalBlock(i));
    } catch (e) {
      if (e instanceof RangeError) throw new Ext4FormatError(e.message, this.loc("journal"));
      throw e;
    }
  }

  /** A new Ext4Fs over a view of the device with the journal replayed in memory. */
  private async replayedView(offset: number, sbBlock: number | undefined): Promise<Ext4Fs> {
    const scan = await this.scanJournal();
    const replayed = {
      transactions: scan.transactions,
      blocks: scan.replay.size,
      badChecksums: scan.badChecksums,
    };
    const view = new JournalReplayDevice(this.device, this.blockSize, scan.replay, (i) =>
      this.readJournalBlock(i),
    );
    const fs = await Ext4Fs.tryOpen(
      view,
      { ...this.openOptions, replayJournal: false },
      offset,
      sbBlock,
      [],
      replayed,
    );
    if (scan.badChecksums > 0) {
      fs.warn("EJOURNAL", `${scan.badChecksums} journal blocks failed their checksum and were not replayed`);
    }
    return fs;
  }

  private async loadJournalStatus(): Promise<void> {
    try {
      const ji = await this.readInode(this.sb.journalInum);
      const m = await this.mapBlock(ji, 0);
      if (m.physical === 0)
        throw new Ext4FormatError("journal inode has no first block", this.loc("journal", { inode: ji.ino }));
      const b = await this.readBlock(m.physical, "journal superblock", ji.ino);
      const jsb = parseJournalSuperblock(b);
      if (!jsb) {
        this.warn("EJOURNAL", "journal superblock is missing or invalid");
        return;
      }
      this.journal.superblock = jsb;
      if (jsb.start !== 0 && !this.journal.needsRecovery) {
        this.warn(
          "EJOURNAL",
          "the journal holds transactions to replay (s_start != 0) although the superblock does not say so",
        );
      }
    } catch (e) {
      if (!(e instanceof ImgpatchError)) throw e;
      this.warn("EJOURNAL", `cannot read the journal: ${e.message}`);
    }
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
    const hex = Buffer.from(this.sb.uuid).toString("hex");
    return {
      blockSize: this.blockSize,
      blocks: this.sb.blocksCount,
      freeBlocks: this.sb.freeBlocksCount,
      reservedBlocks: this.sb.rBlocksCount,
      inodes: this.sb.inodesCount,
      freeInodes: this.sb.freeInodesCount,
      uuid: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
      volumeName: this.sb.volumeName,
      lastMounted: this.sb.lastMounted,
    };
  }

  /** Feature names, for display. */
  features(): { compat: string[]; incompat: string[]; roCompat: string[] } {
    return {
      compat: featureNames(COMPAT, this.sb.featureCompat),
      incompat: featureNames(INCOMPAT, this.sb.featureIncompat),
      roCompat: featureNames(RO_COMPAT, this.sb.featureRoCompat),
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
      this.inodeCache.delete(what.inode);
      const { group, index } = this.inodeLocation(what.inode);
      const blockInTable = Math.floor(index / (this.blockSize / this.sb.inodeSize));
      this.itableCache.delete(group * 0x10000 + Math.floor(blockInTable / this.itableChunkBlocks));
      this.dirCache.delete(what.inode);
    }
    if (what.block !== undefined) {
      this.blockCache.delete(what.block);
      this.dataCache.delete(Math.floor((what.block * this.blockSize) / DATA_WINDOW) * DATA_WINDOW);
    }
    if (what.dir !== undefined) this.dirCache.delete(what.dir);
  }

  /** Drop every cache (after an external change to the device). */
  clearCaches(): void {
    this.itableCache.clear();
    this.blockCache.clear();
    this.inodeCache.clear();
    this.dirCache.clear();
    this.dataCache.clear();
  }

  /** Close the underlying device. */
  async close(): Promise<void> {
    await this.device.close();
  }
}

/**
 * Device numbers of character/block inodes: the old 16-bit encoding in i_block[0], or the new
 * 32-bit one in i_block[1] (minor split around the major, as Linux new_encode_dev does).
 */
export function decodeDeviceNumber(inode: Inode): { major: number; minor: number } {
  const t = inode.mode & S_IFMT;
  if (t !== S_IFCHR && t !== S_IFBLK) return { major: 0, minor: 0 };
  const old = u32(inode.iBlock, 0);
  if (old !== 0) return { major: (old >>> 8) & 0xff, minor: old & 0xff };
  const n = u32(inode.iBlock, 4);
  return { major: (n & 0xfff00) >>> 8, minor: ((n & 0xff) | ((n >>> 12) & 0xfff00)) >>> 0 };
}

const NO_DEVICE = Object.freeze({ major: 0, minor: 0 });

/** A buffer whose contents the caller overwrites completely (skips zero-filling). */
function allocUninitialised(n: number): Buffer {
  return Buffer.allocUnsafeSlow(n);
}

/** The same as a plain Uint8Array (for internal buffers: its subarray is cheaper than Buffer's). */
function allocBytes(n: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(n);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function checkFeatures(sb: Superblock, where: { file?: string; offset?: number }): void {
  const unknown = sb.featureIncompat & ~READER_INCOMPAT;
  if (unknown) {
    const names = featureNames(INCOMPAT, unknown);
    throw new Ext4UnsupportedError(
      names[0],
      `filesystem uses incompatible features this reader does not support: ${names.join(", ")}`,
      {
        ...where,
        structure: "superblock",
      },
    );
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function isDotOrDotDot(n: Uint8Array): boolean {
  return (n.length === 1 && n[0] === 0x2e) || (n.length === 2 && n[0] === 0x2e && n[1] === 0x2e);
}

/** Index of the last entry whose hash is <= target (entry 0 covers everything below entry 1). */
function dxFind(node: DxNode, hash: number): number {
  let lo = 1;
  let hi = node.entries.length - 1;
  let at = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (node.entries[mid].hash > hash) hi = mid - 1;
    else {
      at = mid;
      lo = mid + 1;
    }
  }
  return at;
}
