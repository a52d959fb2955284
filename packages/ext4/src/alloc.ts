/**
 * Block and inode allocation through the group bitmaps (like e2fsprogs lib/ext2fs alloc.c):
 * goal-based first fit for blocks, inodes near the parent's group, Orlov-like spreading of new
 * top-level directories. Groups flagged BLOCK_UNINIT / INODE_UNINIT get their bitmaps built on
 * first use; free counts, used-dir counts and bg_itable_unused are kept in the descriptors and
 * the superblock. Descriptors, bitmaps (with checksums) are written by `flush`.
 */

import { ImgpatchError } from "@imgpatch/disk";
import type { BlockStore } from "./block-store.js";
import { Ext4FormatError } from "./errors.js";
import { INCOMPAT, RO_COMPAT } from "./features.js";
import {
  BG_FLAGS,
  bitmapChecksum,
  descsPerBlock,
  encodeGroupDesc,
  type GroupDesc,
  gdtBlockLocation,
  metaBgDescLocations,
  setGroupDescChecksum,
} from "./group-desc.js";
import {
  encodeSuperblock,
  groupBlockCount,
  groupFirstBlock,
  groupHasSuperblock,
  hasIncompat,
  hasRoCompat,
  SUPERBLOCK_OFFSET,
  type Superblock,
  setSuperblockChecksum,
} from "./superblock.js";
import { type BlockRun, groupMetadataRuns, uninitGroupUsedRuns } from "./uninit-group.js";

/** No space left: blocks or inodes exhausted. Nothing was changed by the failed operation. */
export class Ext4NoSpaceError extends ImgpatchError {
  constructor(what: "blocks" | "inodes", message: string, file?: string) {
    super("ENOSPC", `ENOSPC: ${message}`, { file });
    this.what = what;
  }
  readonly what: "blocks" | "inodes";
}

export interface BlockRunAlloc {
  start: number;
  len: number;
}

export class Allocator {
  private readonly dirtyGroups = new Set<number>();
  private sbDirty = false;
  private readonly csumKind: "crc32c" | "crc16" | "none";
  private readonly metaCsum: boolean;
  /** Per group: every block bit below this is in use (a scan start, never a promise of a free bit). */
  private readonly blockHint: number[] = [];
  private readonly inodeHint: number[] = [];
  /** Inode-table blocks known to hold only unused inodes (see allocInode). */
  readonly freshItable = new Set<number>();
  /** Rotating start for top-level directory placement (deterministic). */
  private orlovNext = 0;

  constructor(
    private readonly sb: Superblock,
    private readonly groups: GroupDesc[],
    private readonly store: BlockStore,
    private readonly seed: number,
  ) {
    this.metaCsum = hasRoCompat(sb, RO_COMPAT.metadata_csum);
    this.csumKind = this.metaCsum ? "crc32c" : hasRoCompat(sb, RO_COMPAT.gdt_csum) ? "crc16" : "none";
  }

  get freeBlocks(): number {
    return this.sb.freeBlocksCount;
  }
  get freeInodes(): number {
    return this.sb.freeInodesCount;
  }

  private get uninitCapable(): boolean {
    return this.csumKind !== "none";
  }

  // ---- bitmaps ----

  private async blockBitmap(g: number): Promise<Uint8Array> {
    return this.blockBitmapNow(g) ?? this.store.get(this.groups[g].blockBitmap);
  }

  /** A group's block bitmap without a read (cached, or built for a BLOCK_UNINIT group), if it can be. */
  private blockBitmapNow(g: number): Uint8Array | undefined {
    const gd = this.groups[g];
    if (this.uninitCapable && gd.flags & BG_FLAGS.blockUninit) {
      const b = this.store.fresh(gd.blockBitmap);
      this.initBlockBitmap(g, b);
      gd.flags &= ~BG_FLAGS.blockUninit;
      this.dirtyGroups.add(g);
      return b;
    }
    return this.store.peek(gd.blockBitmap);
  }

  /** Bits for a BLOCK_UNINIT group: its superblock/GDT copy and any group's bitmaps/tables inside it. */
  private initBlockBitmap(g: number, b: Uint8Array): void {
    const count = groupBlockCount(this.sb, g);
    setBitRuns(b, [{ start: count, len: this.sb.blockSize * 8 - count }]);
    this.metadataRuns ??= groupMetadataRuns(this.sb, this.groups);
    setBitRuns(b, uninitGroupUsedRuns(this.sb, g, this.metadataRuns));
  }
  /** Every group's bitmaps and inode table (they never move while the editor runs). */
  private metadataRuns?: BlockRun[];

  private async inodeBitmap(g: number): Promise<Uint8Array> {
    return this.inodeBitmapNow(g) ?? this.store.get(this.groups[g].inodeBitmap);
  }

  /** A group's inode bitmap without a read (cached, or built for an INODE_UNINIT group), if it can be. */
  private inodeBitmapNow(g: number): Uint8Array | undefined {
    const gd = this.groups[g];
    if (this.uninitCapable && gd.flags & BG_FLAGS.inodeUninit) {
      const b = this.store.fresh(gd.inodeBitmap);
      for (let i = this.sb.inodesPerGroup; i < this.sb.blockSize * 8; i++) b[i >> 3] |= 1 << (i & 7);
      gd.flags &= ~BG_FLAGS.inodeUninit;
      this.dirtyGroups.add(g);
      return b;
    }
    return this.store.peek(gd.inodeBitmap);
  }

  /** An initialised bitmap already in the cache (the synchronous fast path). */
  private cachedBitmap(gd: GroupDesc, uninitFlag: number, block: number): Uint8Array | undefined {
    if (this.uninitCapable && gd.flags & uninitFlag) return undefined;
    return this.store.peek(block);
  }

  // ---- blocks ----

  /** Is block `blk` in use? */
  async blockInUse(blk: number): Promise<boolean> {
    const { g, rel } = this.blockPos(blk);
    const b = await this.blockBitmap(g);
    return (b[rel >> 3] & (1 << (rel & 7))) !== 0;
  }

  private blockPos(blk: number): { g: number; rel: number } {
    const rel0 = blk - this.sb.firstDataBlock;
    const g = Math.floor(rel0 / this.sb.blocksPerGroup);
    return { g, rel: rel0 - g * this.sb.blocksPerGroup };
  }

  /** Throws Ext4NoSpaceError unless `n` blocks are free. */
  reserveBlocks(n: number, path?: string): void {
    if (n > this.sb.freeBlocksCount)
      throw new Ext4NoSpaceError("blocks", `need ${n} blocks, ${this.sb.freeBlocksCount} free`, path);
  }

  /**
   * allocBlocks without an await, for the common case: all `count` blocks found in the goal
   * group from the goal (as one run with `oneRun`), its bitmap at hand. Otherwise undefined, and
   * nothing is allocated (allocBlocks then gives the same blocks).
   */
  allocBlocksNow(count: number, goal: number, path?: string, oneRun = false): BlockRunAlloc[] | undefined {
    this.reserveBlocks(count, path);
    const sb = this.sb;
    if (count === 0 || goal < sb.firstDataBlock || goal >= sb.blocksCount) return undefined;
    const { g, rel: r0 } = this.blockPos(goal);
    const gd = this.groups[g];
    if (gd.freeBlocksCount < count) return undefined;
    const bm = this.blockBitmapNow(g);
    if (!bm) return undefined;
    const hint = this.blockHint[g] ?? 0;
    const from = Math.max(r0, hint);
    const to = groupBlockCount(sb, g);
    // First fit, as allocBlocks' first step does.
    const scan = scanFreeBits(bm, from, to, count);
    if (scan.found < count || (oneRun && scan.runs.length > 1)) return undefined;
    setBitRuns(bm, scan.runs);
    const first = groupFirstBlock(sb, g);
    const runs = scan.runs.map((r) => ({ start: r.start + first, len: r.len }));
    if (r0 <= hint) this.blockHint[g] = scan.end;
    gd.freeBlocksCount -= count;
    this.store.markDirty(gd.blockBitmap);
    this.dirtyGroups.add(g);
    sb.freeBlocksCount -= count;
    this.sbDirty = true;
    return runs;
  }

  /**
   * Allocate `count` blocks, first fit from `goal` (wrapping around), as few runs as the free
   * space allows. Checks the free count first: on ENOSPC nothing is allocated.
   */
  async allocBlocks(count: number, goal: number, path?: string): Promise<BlockRunAlloc[]> {
    this.reserveBlocks(count, path);
    const runs: BlockRunAlloc[] = [];
    if (count === 0) return runs;
    const sb = this.sb;
    if (goal < sb.firstDataBlock || goal >= sb.blocksCount) goal = sb.firstDataBlock;
    const { g: g0, rel: r0 } = this.blockPos(goal);
    let left = count;
    // Goal group from the goal, every other group, then the goal group's head.
    for (let step = 0; step <= sb.groupCount && left > 0; step++) {
      const g = (g0 + step) % sb.groupCount;
      const gd = this.groups[g];
      if (gd.freeBlocksCount === 0) continue;
      const n = groupBlockCount(sb, g);
      const hint = this.blockHint[g] ?? 0;
      const from0 = step === 0 ? r0 : 0;
      const from = Math.max(from0, hint);
      const to = step === sb.groupCount ? r0 : n;
      const bm = this.cachedBitmap(gd, BG_FLAGS.blockUninit, gd.blockBitmap) ?? (await this.blockBitmap(g));
      const scan = scanFreeBits(bm, from, to, left);
      setBitRuns(bm, scan.runs);
      const base = groupFirstBlock(sb, g);
      for (const r of scan.runs) {
        const last = runs[runs.length - 1];
        if (last && last.start + last.len === base + r.start) last.len += r.len;
        else runs.push({ start: base + r.start, len: r.len });
      }
      const taken = scan.found;
      left -= taken;
      if (from0 <= hint) this.blockHint[g] = scan.end;
      if (taken) {
        gd.freeBlocksCount -= taken;
        this.store.markDirty(gd.blockBitmap);
        this.dirtyGroups.add(g);
      }
    }
    this.sb.freeBlocksCount -= count - left;
    this.sbDirty = true;
    if (left > 0) {
      await this.freeRuns(runs);
      throw new Ext4NoSpaceError("blocks", "free block count disagrees with the bitmaps", path);
    }
    return runs;
  }

  async freeRuns(runs: readonly BlockRunAlloc[]): Promise<void> {
    for (const r of runs) await this.freeBlocksRange(r.start, r.len);
  }

  async freeBlocksRange(start: number, len: number): Promise<void> {
    if (start < this.sb.firstDataBlock || start + len > this.sb.blocksCount || len < 0)
      throw new Ext4FormatError(`cannot free blocks ${start}+${len}: outside the filesystem`, {
        structure: "block bitmap",
      });
    let blk = start;
    let left = len;
    while (left > 0) {
      const { g, rel } = this.blockPos(blk);
      const n = Math.min(left, this.sb.blocksPerGroup - rel);
      const bm = await this.blockBitmap(g);
      if ((this.blockHint[g] ?? 0) > rel) this.blockHint[g] = rel;
      let freed = 0;
      for (let i = rel; i < rel + n; i++) {
        if (bm[i >> 3] & (1 << (i & 7))) {
          bm[i >> 3] &= ~(1 << (i & 7));
          freed++;
        }
        this.store.forget(blk + i - rel);
      }
      const gd = this.groups[g];
      gd.freeBlocksCount += freed;
      this.sb.freeBlocksCount += freed;
      this.store.markDirty(gd.blockBitmap);
      this.dirtyGroups.add(g);
      this.sbDirty = true;
      blk += n;
      left -= n;
    }
  }

  // ---- inodes ----

  reserveInodes(n: number, path?: string): void {
    if (n > this.sb.freeInodesCount)
      throw new Ext4NoSpaceError("inodes", `no free inodes (${this.sb.freeInodesCount} left)`, path);
  }

  /** Pick a group and allocate an inode there. Top-level directories are spread across groups. */
  async allocInode(parentIno: number, isDir: boolean, topLevelDir: boolean, path?: string): Promise<number> {
    this.reserveInodes(1, path);
    const sb = this.sb;
    const ngroups = sb.groupCount;
    let start = Math.floor((parentIno - 1) / sb.inodesPerGroup);
    if (topLevelDir) {
      // Orlov-like: a group with at least average free inodes and blocks and few directories.
      const avgI = sb.freeInodesCount / ngroups;
      const avgB = sb.freeBlocksCount / ngroups;
      let best = -1;
      for (let k = 0; k < ngroups; k++) {
        const g = (this.orlovNext + k) % ngroups;
        const gd = this.groups[g];
        if (gd.freeInodesCount < avgI || gd.freeBlocksCount < avgB || gd.freeInodesCount === 0) continue;
        if (best < 0 || gd.usedDirsCount < this.groups[best].usedDirsCount) best = g;
      }
      if (best >= 0) start = best;
      this.orlovNext = (this.orlovNext + 1) % ngroups;
    }
    for (let k = 0; k < ngroups; k++) {
      const g = (start + k) % ngroups;
      const gd = this.groups[g];
      if (gd.freeInodesCount === 0) continue;
      const ino = this.takeInode(g, this.inodeBitmapNow(g) ?? (await this.inodeBitmap(g)), isDir);
      if (ino) return ino;
    }
    throw new Ext4NoSpaceError("inodes", "inode bitmaps are full although counts say otherwise", path);
  }

  /**
   * allocInode without an await: a file (not a top-level directory) whose candidate groups'
   * inode bitmaps are at hand. Otherwise 0, and nothing is allocated.
   */
  allocInodeNow(parentIno: number, isDir: boolean, topLevelDir: boolean, path?: string): number {
    this.reserveInodes(1, path);
    if (topLevelDir) return 0;
    const sb = this.sb;
    const ngroups = sb.groupCount;
    const start = Math.floor((parentIno - 1) / sb.inodesPerGroup);
    for (let k = 0; k < ngroups; k++) {
      const g = (start + k) % ngroups;
      if (this.groups[g].freeInodesCount === 0) continue;
      const bm = this.inodeBitmapNow(g);
      if (!bm) return 0;
      const ino = this.takeInode(g, bm, isDir);
      if (ino) return ino;
    }
    return 0;
  }

  /** Take the first free inode of group `g` at or after its hint (0 when the bitmap is full). */
  private takeInode(g: number, bm: Uint8Array, isDir: boolean): number {
    const sb = this.sb;
    const gd = this.groups[g];
    const firstIdx = Math.max(g === 0 ? sb.firstIno - 1 : 0, this.inodeHint[g] ?? 0);
    for (let i = firstIdx; i < sb.inodesPerGroup; i++) {
      if ((i & 7) === 0 && bm[i >> 3] === 0xff) {
        i += 7;
        continue;
      }
      if (bm[i >> 3] & (1 << (i & 7))) continue;
      bm[i >> 3] |= 1 << (i & 7);
      this.inodeHint[g] = i + 1;
      this.store.markDirty(gd.inodeBitmap);
      gd.freeInodesCount--;
      if (isDir) gd.usedDirsCount++;
      if (this.uninitCapable) {
        const used = sb.inodesPerGroup - gd.itableUnused;
        if (i + 1 > used) gd.itableUnused = sb.inodesPerGroup - (i + 1);
        // An inode-table block wholly past the old high-water mark holds no live inode: it
        // need not be read (its other slots are written as zeros).
        const perBlock = sb.blockSize / sb.inodeSize;
        const first = i - (i % perBlock);
        if (first >= used) this.freshItable.add(gd.inodeTable + first / perBlock);
      }
      this.dirtyGroups.add(g);
      sb.freeInodesCount--;
      this.sbDirty = true;
      return g * sb.inodesPerGroup + i + 1;
    }
    return 0;
  }

  async freeInode(ino: number, isDir: boolean): Promise<void> {
    const sb = this.sb;
    const g = Math.floor((ino - 1) / sb.inodesPerGroup);
    const i = (ino - 1) % sb.inodesPerGroup;
    const bm = await this.inodeBitmap(g);
    if (!(bm[i >> 3] & (1 << (i & 7)))) return;
    bm[i >> 3] &= ~(1 << (i & 7));
    if ((this.inodeHint[g] ?? 0) > i) this.inodeHint[g] = i;
    const gd = this.groups[g];
    this.store.markDirty(gd.inodeBitmap);
    gd.freeInodesCount++;
    if (isDir) gd.usedDirsCount--;
    this.dirtyGroups.add(g);
    sb.freeInodesCount++;
    this.sbDirty = true;
  }

  /** Goal block for data of inode `ino`: the start of its group. */
  goalFor(ino: number): number {
    const g = Math.floor((ino - 1) / this.sb.inodesPerGroup);
    return groupFirstBlock(this.sb, g);
  }

  /**
   * Record a write in the superblock, as the kernel and libext2fs do when they write it back:
   * s_wtime (with its high byte) and, when the filesystem counts them, s_kbytes_written.
   */
  stampWrite(wtime: number, kbytesWritten: number | undefined): void {
    const sb = this.sb;
    sb.wtime = wtime % 2 ** 32;
    sb.wtimeHi = Math.floor(wtime / 2 ** 32) & 0xff;
    if (kbytesWritten !== undefined) sb.kbytesWritten = kbytesWritten;
    this.sbDirty = true;
  }

  get dirty(): boolean {
    return this.sbDirty || this.dirtyGroups.size > 0;
  }

  /**
   * Bitmap checksums, descriptors (primary GDT and the backups next to backup superblocks), and
   * the superblock with its backups, into the store (the caller flushes the store).
   */
  async flush(): Promise<void> {
    if (!this.dirty) return;
    const sb = this.sb;
    const ds = sb.descSize;
    for (const g of this.dirtyGroups) {
      const gd = this.groups[g];
      if (this.metaCsum) {
        if (!(gd.flags & BG_FLAGS.blockUninit)) {
          const bm = await this.store.get(gd.blockBitmap);
          gd.blockBitmapCsum = bitmapChecksum(this.seed, bm, sb.clustersPerGroup / 8) >>> 0;
          if (ds < 64) gd.blockBitmapCsum &= 0xffff;
        }
        if (!(gd.flags & BG_FLAGS.inodeUninit)) {
          const bm = await this.store.get(gd.inodeBitmap);
          gd.inodeBitmapCsum = bitmapChecksum(this.seed, bm, sb.inodesPerGroup / 8) >>> 0;
          if (ds < 64) gd.inodeBitmapCsum &= 0xffff;
        }
      }
      const raw = encodeGroupDesc(gd, ds);
      setGroupDescChecksum(sb, g, raw, this.seed);
      gd.raw = raw;
    }
    // Which GDT blocks changed.
    const per = descsPerBlock(sb);
    const gdtBlocks = new Set<number>();
    for (const g of this.dirtyGroups) gdtBlocks.add(Math.floor(g / per));
    const meta = hasIncompat(sb, INCOMPAT.meta_bg);
    const sbBlocks: number[] = [];
    for (let g = 0; g < sb.groupCount; g++)
      if (groupHasSuperblock(sb, g)) sbBlocks.push(g === 0 ? -1 : groupFirstBlock(sb, g));
    for (const i of gdtBlocks) {
      const bytes = new Uint8Array(sb.blockSize);
      for (let k = 0; k < per; k++) {
        const g = i * per + k;
        if (g >= sb.groupCount) break;
        bytes.set(this.groups[g].raw.subarray(0, ds), k * ds);
      }
      const targets: number[] = [];
      if (!meta || i < sb.firstMetaBg) {
        targets.push(gdtBlockLocation(sb, i));
        for (const sbb of sbBlocks) if (sbb >= 0) targets.push(gdtBlockLocation(sb, i, sbb));
      } else targets.push(...metaBgDescLocations(sb, i));
      for (const t of targets) {
        // A whole block of descriptors: no need to read the old one.
        const b = this.store.peek(t) ?? this.store.fresh(t);
        b.set(bytes);
        this.store.markDirty(t);
      }
    }
    this.dirtyGroups.clear();
    // Superblock: primary at byte 1024, backups at the start of groups that hold one (their
    // blocks read concurrently, not one after the other).
    await this.store.prefetch(
      sbBlocks.map((b) => (b < 0 ? Math.floor(SUPERBLOCK_OFFSET / sb.blockSize) : b)),
    );
    const enc = encodeSuperblock({ ...sb, blockGroupNr: 0 });
    setSuperblockChecksum(enc);
    sb.raw = enc;
    await this.writeSuperblockAt(SUPERBLOCK_OFFSET, enc);
    for (const sbb of sbBlocks) {
      if (sbb < 0) continue;
      const g = Math.floor((sbb - sb.firstDataBlock) / sb.blocksPerGroup);
      const copy = encodeSuperblock({ ...sb, blockGroupNr: g & 0xffff });
      setSuperblockChecksum(copy);
      await this.writeSuperblockAt(sbb * sb.blockSize, copy);
    }
    this.sbDirty = false;
  }

  private async writeSuperblockAt(byteOffset: number, bytes: Uint8Array): Promise<void> {
    const bs = this.sb.blockSize;
    const blk = Math.floor(byteOffset / bs);
    const b = await this.store.get(blk);
    b.set(bytes, byteOffset - blk * bs);
    this.store.markDirty(blk);
  }
}

/**
 * First fit over a bitmap: the free (zero) bits in [from, to), as group-relative runs totalling at
 * most `want` bits, and where the scan stopped. Reads only; full and empty bytes are stepped over
 * whole.
 */
function scanFreeBits(
  bm: Uint8Array,
  from: number,
  to: number,
  want: number,
): { runs: BlockRunAlloc[]; end: number; found: number } {
  const runs: BlockRunAlloc[] = [];
  let i = from;
  let left = want;
  while (i < to && left > 0) {
    if ((i & 7) === 0 && bm[i >> 3] === 0xff) {
      i += 8;
      continue;
    }
    if (bm[i >> 3] & (1 << (i & 7))) {
      i++;
      continue;
    }
    const s = i;
    while (i < to && left > 0 && !(bm[i >> 3] & (1 << (i & 7)))) {
      if ((i & 7) === 0 && left >= 8 && i + 8 <= to && bm[i >> 3] === 0) {
        i += 8;
        left -= 8;
      } else {
        i++;
        left--;
      }
    }
    runs.push({ start: s, len: i - s });
  }
  return { runs, end: i, found: want - left };
}

/** Set the bits of group-relative `runs` (whole bytes where a run covers them). */
function setBitRuns(bm: Uint8Array, runs: readonly BlockRunAlloc[]): void {
  for (const r of runs) {
    let k = r.start;
    const end = r.start + r.len;
    while (k < end) {
      if ((k & 7) === 0 && k + 8 <= end) {
        bm[k >> 3] = 0xff;
        k += 8;
      } else {
        bm[k >> 3] |= 1 << (k & 7);
        k++;
      }
    }
  }
}
