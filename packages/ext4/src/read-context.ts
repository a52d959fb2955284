/**
 * The reader's shared state, like libext2fs's `ext2_filsys` handle: geometry, descriptors, the
 * caches (inode-table chunks, metadata blocks, inodes, directory listings, data windows) and the
 * counters; every reader module is a set of plain functions taking it first. Also warnings,
 * lenient-mode problem reporting and checked metadata block reads.
 */

import type { BlockDevice } from "@imgpatch/disk";
import type { RawDirent } from "./dirent.js";
import { type Ext4ChecksumError, Ext4FormatError, type Ext4Location } from "./errors.js";
import { COMPAT, featureNames, INCOMPAT, KNOWN_RO_COMPAT, RO_COMPAT } from "./features.js";
import type { Ext4OpenOptions, Ext4Warning, ReadCounters } from "./fs.js";
import type { GroupDesc } from "./group-desc.js";
import type { Inode } from "./inode.js";
import type { JournalStatus } from "./journal.js";
import { Lru } from "./lru.js";
import { checksumSeed, hasCompat, hasIncompat, hasRoCompat, type Superblock } from "./superblock.js";

/** Read-ahead window for small file data reads. */
export const DATA_WINDOW = 512 * 1024;
export const PATH_MAX = 4096;

/** The reader's state shared by its modules (one per Ext4Fs; the façade exposes its public parts). */
export class ReadContext {
  readonly warnings: Ext4Warning[] = [];
  /** Reasons the filesystem must not be written (unknown ro_compat features...). */
  readonly readOnlyReasons: string[] = [];
  readonly counters: ReadCounters = { reads: 0, bytes: 0, metadataBlocks: 0 };
  readonly journal: JournalStatus;
  readonly groups: GroupDesc[];
  readonly seed: number;
  readonly blockSize: number;
  /** Byte offset of the superblock in use (SUPERBLOCK_OFFSET for the primary). */
  readonly superblockOffset: number;

  readonly lenient: boolean;
  readonly openOptions: Ext4OpenOptions;
  readonly onWarning?: (w: Ext4Warning) => void;
  readonly itableCache: Lru<number, Uint8Array>;
  readonly blockCache = new Lru<number, Uint8Array>(2048);
  readonly inodeCache = new Lru<number, Inode>(2048);
  readonly dirCache = new Lru<number, Map<string, RawDirent>>(64);
  /**
   * Directory blocks read ahead for a walk (readAheadDirBlocks), by block number, until the
   * directory is listed: each is taken out when used, so they do not compete with the block cache.
   * Bounded by DIR_AHEAD_MAX (oldest dropped first).
   */
  readonly dirAhead = new Map<number, Uint8Array>();
  /**
   * Evicted windows are recycled (external-memory churn drives GC during tree walks). Safe: a
   * window is evicted only after 64 newer windows were stored, and every reader copies out of
   * a window in the microtask right after obtaining it, before any other read can complete.
   */
  readonly windowPool: Uint8Array[] = [];
  readonly dataCache = new Lru<number, Uint8Array>(64, (buf) => {
    if (buf.length === DATA_WINDOW && this.windowPool.length < 8) this.windowPool.push(buf);
  });
  readonly windowsInFlight = new Map<number, Promise<Uint8Array>>();
  lastWindow = -1;
  /** End offset of the previous small data read (-1: none yet). */
  lastEnd = -1;
  readonly itableChunkBlocks: number;
  readonly csum: boolean;
  readonly hasFileType: boolean;

  constructor(
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
    for (const w of warnings) warn(this, w.code, w.message);
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
      warn(
        this,
        "EJOURNAL",
        "the journal needs recovery (filesystem was not cleanly unmounted): data read may be stale until it is replayed",
      );
    }
  }
}

/** A buffer whose contents the caller overwrites completely (skips zero-filling). */
export function allocUninitialised(n: number): Buffer {
  return Buffer.allocUnsafeSlow(n);
}

/** The same as a plain Uint8Array (for internal buffers: its subarray is cheaper than Buffer's). */
export function allocBytes(n: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(n);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function warn(ctx: ReadContext, code: string, message: string): void {
  const w = { code, message };
  if (ctx.warnings.length < 10000) ctx.warnings.push(w);
  ctx.onWarning?.(w);
}

/** Structural problem: throw, or in lenient mode record and carry on. */
export function reportProblem(ctx: ReadContext, err: Ext4FormatError | Ext4ChecksumError): void {
  if (!ctx.lenient) throw err;
  warn(ctx, err.code, err.message);
}

/** Where a problem is: the device, the structure, and its block (as a byte offset) or inode. */
export function locate(
  ctx: ReadContext,
  structure: string,
  extra: { block?: number; inode?: number } = {},
): Ext4Location {
  const offset = extra.block !== undefined ? extra.block * ctx.blockSize : undefined;
  return { file: ctx.device.name, offset, structure, ...extra };
}

export async function readRaw(ctx: ReadContext, offset: number, length: number): Promise<Uint8Array> {
  ctx.counters.reads++;
  ctx.counters.bytes += length;
  return ctx.device.read(offset, length);
}

/** A typed error for a pointer outside the filesystem (damaged metadata). */
export function checkBlockRange(
  ctx: ReadContext,
  block: number,
  count: number,
  what: string,
  inode?: number,
): void {
  if (!Number.isSafeInteger(block) || block < ctx.sb.firstDataBlock || block + count > ctx.sb.blocksCount) {
    throw new Ext4FormatError(
      `${what} points at blocks ${block}+${count}, outside the filesystem (${ctx.sb.blocksCount} blocks)`,
      { file: ctx.device.name, structure: what, block, inode },
    );
  }
}

/** Read a metadata block through the cache. */
export async function readBlock(
  ctx: ReadContext,
  block: number,
  what = "metadata block",
  inode?: number,
): Promise<Uint8Array> {
  const hit = ctx.blockCache.get(block);
  if (hit) return hit;
  checkBlockRange(ctx, block, 1, what, inode);
  const b = await readRaw(ctx, block * ctx.blockSize, ctx.blockSize);
  ctx.counters.metadataBlocks++;
  ctx.blockCache.set(block, b);
  return b;
}
