/** Inode-table reads: inode-table chunks cached, inodes verified (checksum) and parsed; stat. */
import { Ext4ChecksumError, Ext4FormatError } from "./errors.js";
import { RO_COMPAT } from "./features.js";
import { BG_FLAGS, type GroupDesc, groupDescCsumKind } from "./group-desc.js";
import {
  type Inode,
  inodeBlocks512,
  inodeChecksumMismatch,
  inodeChecksumSeed,
  parseInode,
  S_IFBLK,
  S_IFCHR,
  S_IFMT,
} from "./inode.js";
import { checkBlockRange, locate, type ReadContext, readRaw, reportProblem } from "./read-context.js";
import { decodeDeviceNumber, Ext4Stats } from "./stats.js";
import { hasRoCompat } from "./superblock.js";

const NO_DEVICE = Object.freeze({ major: 0, minor: 0 });

export function inodeLocation(
  ctx: ReadContext,
  ino: number,
): { group: number; index: number; gd: GroupDesc } {
  if (!Number.isSafeInteger(ino) || ino < 1 || ino > ctx.sb.inodesCount) {
    throw new Ext4FormatError(`inode number ${ino} is out of range (1..${ctx.sb.inodesCount})`, {
      file: ctx.device.name,
      structure: "inode",
      inode: ino,
    });
  }
  const group = Math.floor((ino - 1) / ctx.sb.inodesPerGroup);
  return { group, index: (ino - 1) % ctx.sb.inodesPerGroup, gd: ctx.groups[group] };
}

/** Read and verify one inode. The returned object is shared with the cache: treat it as read-only. */
export async function readInode(ctx: ReadContext, ino: number): Promise<Inode> {
  return cachedInode(ctx, ino) ?? loadInode(ctx, ino);
}

/**
 * The inode when it (or its inode-table chunk) is cached: no I/O, no waiting. `remember` false
 * keeps a freshly parsed inode out of the inode cache (a tree walk visits each inode once).
 */
export function cachedInode(ctx: ReadContext, ino: number, remember = true): Inode | undefined {
  const cached = ctx.inodeCache.get(ino);
  if (cached) return cached;
  const { group, index } = inodeLocation(ctx, ino);
  const blockInTable = Math.floor(index / (ctx.blockSize / ctx.sb.inodeSize));
  const chunk = Math.floor(blockInTable / ctx.itableChunkBlocks);
  const buf = ctx.itableCache.get(group * 0x10000 + chunk);
  if (!buf || (blockInTable - chunk * ctx.itableChunkBlocks + 1) * ctx.blockSize > buf.length)
    return undefined;
  return inodeFromChunk(ctx, ino, buf, remember);
}

/** The inode-table chunk (the itableCache key) holding inode `ino`. */
export function itableChunkKey(ctx: ReadContext, ino: number): number {
  const { group, index } = inodeLocation(ctx, ino);
  const blockInTable = Math.floor(index / (ctx.blockSize / ctx.sb.inodeSize));
  return group * 0x10000 + Math.floor(blockInTable / ctx.itableChunkBlocks);
}

export async function loadInode(ctx: ReadContext, ino: number, remember = true): Promise<Inode> {
  const { group, index, gd } = inodeLocation(ctx, ino);
  const isz = ctx.sb.inodeSize;
  const blockInTable = Math.floor(index / (ctx.blockSize / isz));
  const itBlocks = Math.ceil((ctx.sb.inodesPerGroup * isz) / ctx.blockSize);
  const chunk = Math.floor(blockInTable / ctx.itableChunkBlocks);
  const key = group * 0x10000 + chunk;
  const chunkStart = chunk * ctx.itableChunkBlocks;
  let buf = ctx.itableCache.get(key);
  // A chunk cut short at the used part of the table does not hold inodes past it.
  if (buf && (blockInTable - chunkStart + 1) * ctx.blockSize > buf.length) buf = undefined;
  if (!buf) {
    let n = Math.min(ctx.itableChunkBlocks, itBlocks - chunkStart);
    const csumKind = groupDescCsumKind(ctx.sb);
    if (csumKind !== "none") {
      // With group checksums the inodes past bg_itable_unused have never been used: read the
      // table only up to there (but always up to the inode asked for).
      const usedBlocks = Math.ceil(((ctx.sb.inodesPerGroup - gd.itableUnused) * isz) / ctx.blockSize);
      n = Math.min(n, Math.max(usedBlocks - chunkStart, blockInTable - chunkStart + 1));
    }
    checkBlockRange(ctx, gd.inodeTable + chunkStart, n, `inode table of group ${group}`, ino);
    if (gd.flags & BG_FLAGS.inodeUninit && csumKind !== "none") {
      buf = new Uint8Array(n * ctx.blockSize); // never initialised: all inodes free
    } else {
      buf = await readRaw(ctx, (gd.inodeTable + chunkStart) * ctx.blockSize, n * ctx.blockSize);
      ctx.counters.metadataBlocks += n;
    }
    ctx.itableCache.set(key, buf);
  }
  return inodeFromChunk(ctx, ino, buf, remember);
}

/** Verify and parse inode `ino` out of its cached inode-table chunk. */
export function inodeFromChunk(ctx: ReadContext, ino: number, buf: Uint8Array, remember: boolean): Inode {
  const { index, gd } = inodeLocation(ctx, ino);
  const isz = ctx.sb.inodeSize;
  const perBlock = ctx.blockSize / isz;
  const blockInTable = Math.floor(index / perBlock);
  const chunkStart = Math.floor(blockInTable / ctx.itableChunkBlocks) * ctx.itableChunkBlocks;
  const off = (blockInTable - chunkStart) * ctx.blockSize + (index % perBlock) * isz;
  const bytes = buf.subarray(off, off + isz);
  const bad = ctx.csum ? inodeChecksumMismatch(ctx.seed, ino, bytes) : undefined;
  if (bad) {
    reportProblem(
      ctx,
      new Ext4ChecksumError("inode checksum mismatch", bad.stored, bad.computed, {
        ...locate(ctx, "inode", { inode: ino, block: gd.inodeTable + blockInTable }),
        offset: (gd.inodeTable + chunkStart) * ctx.blockSize + off,
      }),
    );
  }
  // `raw` aliases the cached inode-table chunk: chunks are never modified in place (invalidate()
  // drops them), and the inode cache bounds how many chunks stay pinned.
  const inode = parseInode(ino, bytes, isz, false);
  if (remember) ctx.inodeCache.set(ino, inode);
  return inode;
}

export function inodeSeed(ctx: ReadContext, inode: Inode): number {
  return inodeChecksumSeed(ctx.seed, inode.ino, inode.generation);
}

/** fs.Stats-like view of an inode. */
export function statsOf(ctx: ReadContext, inode: Inode): Ext4Stats {
  const blocks = inodeBlocks512(inode, hasRoCompat(ctx.sb, RO_COMPAT.huge_file), ctx.blockSize);
  const t = inode.mode & S_IFMT;
  const dev = t === S_IFCHR || t === S_IFBLK ? decodeDeviceNumber(inode) : NO_DEVICE;
  return new Ext4Stats(inode, blocks, ctx.blockSize, dev);
}
