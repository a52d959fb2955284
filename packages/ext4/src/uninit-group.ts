/**
 * What a BLOCK_UNINIT group holds without its bitmap ever having been written: the group's own
 * superblock and descriptor-table copy (and meta_bg descriptor blocks), plus whichever group's block
 * bitmap, inode bitmap and inode table lie inside it (with flex_bg most groups' tables live in the
 * flex group's first group). Everything else in such a group is free. Shared by the allocator (which
 * builds the bitmap when it first allocates there) and free-space reporting.
 */
import { INCOMPAT } from "./features.js";
import type { GroupDesc } from "./group-desc.js";
import { descsPerBlock, gdtBlockCount } from "./group-desc.js";
import {
  groupBlockCount,
  groupFirstBlock,
  groupHasSuperblock,
  hasIncompat,
  type Superblock,
} from "./superblock.js";

/** A run of blocks: [start, start + len). */
export interface BlockRun {
  start: number;
  len: number;
}

/** Every group's bitmaps and inode table as block runs, sorted by start (computed once per filesystem). */
export function groupMetadataRuns(sb: Superblock, groups: readonly GroupDesc[]): BlockRun[] {
  const itBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
  const runs: BlockRun[] = [];
  for (const d of groups) {
    runs.push(
      { start: d.blockBitmap, len: 1 },
      { start: d.inodeBitmap, len: 1 },
      { start: d.inodeTable, len: itBlocks },
    );
  }
  return runs.sort((a, b) => a.start - b.start);
}

/**
 * The used blocks of BLOCK_UNINIT group `g`, relative to the group's first block, sorted (runs may
 * touch but never extend past the group). `metadata` is groupMetadataRuns' result.
 */
export function uninitGroupUsedRuns(sb: Superblock, g: number, metadata: readonly BlockRun[]): BlockRun[] {
  const first = groupFirstBlock(sb, g);
  const count = groupBlockCount(sb, g);
  const out: BlockRun[] = [];
  const mark = (blk: number, n: number) => {
    const from = Math.max(blk - first, 0);
    const to = Math.min(blk + n - first, count);
    if (from < to) out.push({ start: from, len: to - from });
  };
  const meta = hasIncompat(sb, INCOMPAT.meta_bg);
  if (groupHasSuperblock(sb, g)) {
    let n = 1 + (first === 0 && sb.blockSize === 1024 ? 1 : 0);
    if (!meta) n += gdtBlockCount(sb) + sb.reservedGdtBlocks;
    mark(first, n);
  }
  if (meta) {
    const per = descsPerBlock(sb);
    const mg = Math.floor(g / per);
    if (mg >= sb.firstMetaBg) {
      const r = g % per;
      if (r === 0 || r === 1 || r === per - 1) mark(first + (groupHasSuperblock(sb, g) ? 1 : 0), 1);
    }
  }
  // Runs that can reach into the group start before its end; the longest is an inode table.
  let lo = 0;
  let hi = metadata.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (metadata[mid]!.start < first + count) lo = mid + 1;
    else hi = mid;
  }
  const maxLen = metadata.reduce((m, r) => Math.max(m, r.len), 0);
  for (let i = lo - 1; i >= 0 && metadata[i]!.start + maxLen > first; i--)
    mark(metadata[i]!.start, metadata[i]!.len);
  return out.sort((a, b) => a.start - b.start);
}
