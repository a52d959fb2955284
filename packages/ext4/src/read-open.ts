/**
 * Opening a filesystem: the superblock (primary, or a backup when it is damaged), features,
 * the group descriptor table, and the optional bitmap checksum check.
 */

import { type BlockDevice, ImgpatchError } from "@imgpatch/disk";
import { Ext4ChecksumError, Ext4FormatError, type Ext4Location, Ext4UnsupportedError } from "./errors.js";
import { featureNames, INCOMPAT, READER_INCOMPAT, RO_COMPAT } from "./features.js";
import type { Ext4OpenOptions, Ext4Warning } from "./fs.js";
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
import type { JournalStatus } from "./journal.js";
import { locate, ReadContext, readBlock, reportProblem, warn } from "./read-context.js";
import { loadJournalStatus, replayedView } from "./read-journal.js";
import {
  checksumSeed,
  hasRoCompat,
  parseSuperblock,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
  type Superblock,
  superblockChecksum,
} from "./superblock.js";

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

/** Open a filesystem. Tries backup superblocks when the primary is damaged (unless `superblock` is given). */
export async function openContext(device: BlockDevice, options: Ext4OpenOptions = {}): Promise<ReadContext> {
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
    let fs: ReadContext;
    try {
      fs = await tryOpen(device, options, c.offset, c.sbBlock, warnings);
    } catch (e) {
      if (!(e instanceof ImgpatchError)) throw e;
      // Refusals are about the filesystem, not about a damaged copy: do not look further.
      if (e instanceof Ext4UnsupportedError) throw e;
      if (firstError === undefined) firstError = e;
      continue;
    }
    // A journal that cannot be replayed is not a reason to try an older superblock (that
    // would read the stale blocks the journal supersedes): its error propagates.
    if (options.replayJournal !== false && fs.journal.needsRecovery)
      fs = await replayedView(fs, c.offset, c.sbBlock);
    if (c.offset !== SUPERBLOCK_OFFSET && options.superblock === undefined) {
      warn(
        fs,
        "EBACKUPSB",
        `primary superblock unusable (${firstError instanceof Error ? firstError.message : String(firstError)}); using the backup at byte ${c.offset}`,
      );
    }
    return fs;
  }
  throw firstError ?? new Ext4FormatError("no ext2/3/4 superblock found", { file: device.name });
}

/** Open with the superblock at byte `offset`: checksum, features, size, the descriptor table. */
export async function tryOpen(
  device: BlockDevice,
  options: Ext4OpenOptions,
  offset: number,
  sbBlockHint: number | undefined,
  warnings: Ext4Warning[],
  replayed?: JournalStatus["replayed"],
): Promise<ReadContext> {
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
  const fs = new ReadContext(device, sb, groups, offset, options, warnings, replayed);
  if (fs.journal.hasJournal && !fs.journal.external) await loadJournalStatus(fs);
  if (options.verifyBitmaps) await verifyBitmaps(fs);
  return fs;
}

/** Verify every initialised group's block and inode bitmap checksums (metadata_csum). */
export async function verifyBitmaps(ctx: ReadContext): Promise<void> {
  if (!ctx.csum) return;
  const bs = ctx.blockSize;
  const bbBytes = ctx.sb.clustersPerGroup / 8;
  const ibBytes = ctx.sb.inodesPerGroup / 8;
  for (let g = 0; g < ctx.groups.length; g++) {
    const gd = ctx.groups[g];
    if (!(gd.flags & BG_FLAGS.blockUninit)) {
      const b = await readBlock(ctx, gd.blockBitmap, `block bitmap of group ${g}`);
      const c = bitmapChecksum(ctx.seed, b, Math.min(bbBytes, bs));
      if (!bitmapChecksumMatches(gd.blockBitmapCsum, c, ctx.sb.descSize)) {
        reportProblem(
          ctx,
          new Ext4ChecksumError(
            `block bitmap checksum mismatch (group ${g})`,
            gd.blockBitmapCsum,
            c,
            locate(ctx, "block bitmap", { block: gd.blockBitmap }),
          ),
        );
      }
    }
    if (!(gd.flags & BG_FLAGS.inodeUninit)) {
      const b = await readBlock(ctx, gd.inodeBitmap, `inode bitmap of group ${g}`);
      const c = bitmapChecksum(ctx.seed, b, Math.min(ibBytes, bs));
      if (!bitmapChecksumMatches(gd.inodeBitmapCsum, c, ctx.sb.descSize)) {
        reportProblem(
          ctx,
          new Ext4ChecksumError(
            `inode bitmap checksum mismatch (group ${g})`,
            gd.inodeBitmapCsum,
            c,
            locate(ctx, "inode bitmap", { block: gd.inodeBitmap }),
          ),
        );
      }
    }
  }
}
