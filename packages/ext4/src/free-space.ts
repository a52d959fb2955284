/**
 * Free space as the block bitmaps record it, for copying only what a filesystem uses (sparsify).
 *
 * Conservative by construction: a block counts as free only when its group's bitmap checks out
 * (checksum, when metadata_csum) and says so, or, for a BLOCK_UNINIT group (never allocated from),
 * when it is not the group's superblock/descriptor copy nor any group's bitmap or inode table.
 * Bigalloc filesystems and filesystems whose journal needs recovery (a committed transaction may
 * allocate blocks the on-disk bitmaps still show free) report nothing free: they are copied whole.
 */
import { Ext4FormatError } from "./errors.js";
import { RO_COMPAT } from "./features.js";
import type { Ext4Fs } from "./fs.js";
import { BG_FLAGS, bitmapChecksum, bitmapChecksumMatches } from "./group-desc.js";
import { groupBlockCount, groupFirstBlock, hasRoCompat } from "./superblock.js";
import { type BlockRun, groupMetadataRuns, uninitGroupUsedRuns } from "./uninit-group.js";

/** A byte range of the filesystem's device. */
export interface ByteRange {
  offset: number;
  length: number;
}

export interface FreeSpace {
  /** Free ranges in bytes from the start of the filesystem's device, sorted and merged. */
  free: ByteRange[];
  freeBytes: number;
  /** Why some or all of the filesystem is treated as used (for reports). */
  notes: string[];
}

export async function ext4FreeSpace(fs: Ext4Fs): Promise<FreeSpace> {
  const sb = fs.sb;
  const bs = sb.blockSize;
  const notes: string[] = [];
  const free: ByteRange[] = [];
  let freeBytes = 0;
  if (hasRoCompat(sb, RO_COMPAT.bigalloc)) return { free, freeBytes, notes: ["bigalloc: copied whole"] };
  if (fs.journal.needsRecovery)
    return { free, freeBytes, notes: ["the journal needs recovery: copied whole"] };
  const csum = hasRoCompat(sb, RO_COMPAT.metadata_csum);
  const bitmapBytes = Math.ceil(sb.blocksPerGroup / 8);
  let uninit = 0;
  let metadata: BlockRun[] | undefined;
  const push = (block: number, count: number) => {
    const offset = block * bs;
    const length = count * bs;
    const last = free[free.length - 1];
    if (last && last.offset + last.length === offset) last.length += length;
    else free.push({ offset, length });
    freeBytes += length;
  };
  for (let g = 0; g < fs.groups.length; g++) {
    const gd = fs.groups[g]!;
    if (gd.flags & BG_FLAGS.blockUninit) {
      uninit++;
      metadata ??= groupMetadataRuns(sb, fs.groups);
      const first = groupFirstBlock(sb, g);
      let at = 0;
      for (const r of uninitGroupUsedRuns(sb, g, metadata)) {
        if (r.start > at) push(first + at, r.start - at);
        at = Math.max(at, r.start + r.len);
      }
      const count = groupBlockCount(sb, g);
      if (count > at) push(first + at, count - at);
      continue;
    }
    if (gd.blockBitmap <= 0 || gd.blockBitmap >= sb.blocksCount) {
      throw new Ext4FormatError(`group ${g}: block bitmap at block ${gd.blockBitmap} is out of range`, {
        file: fs.device.name,
      });
    }
    const bitmap = await fs.device.read(gd.blockBitmap * bs, bs);
    if (
      csum &&
      !bitmapChecksumMatches(gd.blockBitmapCsum, bitmapChecksum(fs.seed, bitmap, bitmapBytes), sb.descSize)
    ) {
      notes.push(`group ${g}: block bitmap checksum mismatch: copied whole`);
      continue;
    }
    const first = groupFirstBlock(sb, g);
    const count = groupBlockCount(sb, g);
    let runStart = -1;
    for (let i = 0; i < count; i++) {
      const byte = bitmap[i >>> 3]!;
      // Whole bytes at a time where possible: most of a bitmap is all-used or all-free.
      if ((i & 7) === 0 && i + 8 <= count && (byte === 0 || byte === 0xff)) {
        if (byte === 0 && runStart < 0) runStart = i;
        if (byte === 0xff && runStart >= 0) {
          push(first + runStart, i - runStart);
          runStart = -1;
        }
        i += 7;
        continue;
      }
      const used = (byte >>> (i & 7)) & 1;
      if (!used && runStart < 0) runStart = i;
      if (used && runStart >= 0) {
        push(first + runStart, i - runStart);
        runStart = -1;
      }
    }
    if (runStart >= 0) push(first + runStart, count - runStart);
  }
  if (uninit > 0)
    notes.push(`${uninit} groups never allocated from (BLOCK_UNINIT): only their metadata copied`);
  return { free, freeBytes, notes };
}
