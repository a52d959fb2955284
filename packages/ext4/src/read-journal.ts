/** The journal at open: its superblock and status, scanning, and the in-memory replayed view. */

import { ImgpatchError } from "@imgpatch/disk";
import { Ext4FormatError, Ext4UnsupportedError } from "./errors.js";
import { JBD2_FEATURE, parseJournalSuperblock } from "./journal.js";
import { scanFastCommits } from "./journal-fc.js";
import { type JournalScan, scanJournal as scanTransactions } from "./journal-scan.js";
import { locate, type ReadContext, readBlock, warn } from "./read-context.js";
import { readInode } from "./read-inode.js";
import { mapBlock } from "./read-map.js";
import { tryOpen } from "./read-open.js";
import { JournalReplayDevice } from "./replay-device.js";

/** Logical block i of the internal journal. */
export async function readJournalBlock(ctx: ReadContext, i: number): Promise<Uint8Array> {
  const ji = await readInode(ctx, ctx.sb.journalInum);
  const m = await mapBlock(ctx, ji, i);
  if (m.physical === 0) {
    throw new Ext4FormatError(`journal block ${i} is not mapped`, locate(ctx, "journal", { inode: ji.ino }));
  }
  return readBlock(ctx, m.physical, "journal block", ji.ino);
}

/**
 * Scan the journal for committed transactions that recovery would replay. A fast-commit area
 * holding commits to replay is refused (fast-commit replay is not implemented), as is an
 * external journal: reading the filesystem without them would show stale blocks.
 */
export async function scanJournal(ctx: ReadContext): Promise<JournalScan> {
  const where = locate(ctx, "journal");
  if (ctx.journal.external)
    throw new Ext4UnsupportedError(
      "journal_dev",
      "the journal that needs recovery is on another device: replay it with e2fsck or the kernel first",
      where,
    );
  const jsb = ctx.journal.superblock;
  if (!jsb) throw new Ext4FormatError("no readable internal journal", where);
  if (jsb.blockSize !== ctx.blockSize) {
    throw new Ext4UnsupportedError(
      "journal",
      `journal block size ${jsb.blockSize} differs from the filesystem's`,
      where,
    );
  }
  if (jsb.featureIncompat & ~0x3f) {
    throw new Ext4UnsupportedError(
      "journal",
      `journal uses unknown features 0x${jsb.featureIncompat.toString(16)}`,
      where,
    );
  }
  const read = (i: number) => readJournalBlock(ctx, i);
  const scan = await scanTransactions(jsb, read, where);
  if (jsb.featureIncompat & JBD2_FEATURE.incompatFastCommit && jsb.start !== 0) {
    const fc = await scanFastCommits(jsb, read, scan.endSequence);
    if (fc.replayTags > 0)
      throw new Ext4UnsupportedError(
        "fast_commit",
        `the journal's fast-commit area holds ${fc.replayTags} records for transaction ${scan.endSequence} that recovery would replay; fast-commit replay is not implemented (mount the image with the kernel once to recover it)`,
        where,
      );
    if (fc.problem)
      throw new Ext4FormatError(`fast-commit area: ${fc.problem} (recovery fails on it)`, where);
  }
  return scan;
}

/** A new reader state over a view of the device with the journal replayed in memory. */
export async function replayedView(
  ctx: ReadContext,
  offset: number,
  sbBlock: number | undefined,
): Promise<ReadContext> {
  const scan = await scanJournal(ctx);
  const replayed = {
    transactions: scan.transactions,
    blocks: scan.replay.size,
    badChecksums: scan.badChecksums,
  };
  const view = new JournalReplayDevice(ctx.device, ctx.blockSize, scan.replay, (i) =>
    readJournalBlock(ctx, i),
  );
  const fs = await tryOpen(view, { ...ctx.openOptions, replayJournal: false }, offset, sbBlock, [], replayed);
  if (scan.endedBy) warn(fs, "EJOURNAL", `journal replay stopped early: ${scan.endedBy}`);
  if (scan.badChecksums > 0) {
    warn(fs, "EJOURNAL", `${scan.badChecksums} journal blocks failed their checksum and were not replayed`);
  }
  return fs;
}

/** Read the internal journal's superblock into `journal` (problems become warnings). */
export async function loadJournalStatus(ctx: ReadContext): Promise<void> {
  try {
    const ji = await readInode(ctx, ctx.sb.journalInum);
    const m = await mapBlock(ctx, ji, 0);
    if (m.physical === 0)
      throw new Ext4FormatError(
        "journal inode has no first block",
        locate(ctx, "journal", { inode: ji.ino }),
      );
    const b = await readBlock(ctx, m.physical, "journal superblock", ji.ino);
    const jsb = parseJournalSuperblock(b);
    if (!jsb) {
      warn(ctx, "EJOURNAL", "journal superblock is missing or invalid");
      return;
    }
    ctx.journal.superblock = jsb;
    if (jsb.start !== 0 && !ctx.journal.needsRecovery) {
      warn(
        ctx,
        "EJOURNAL",
        "the journal holds transactions to replay (s_start != 0) although the superblock does not say so",
      );
    }
  } catch (e) {
    if (!(e instanceof ImgpatchError)) throw e;
    warn(ctx, "EJOURNAL", `cannot read the journal: ${e.message}`);
  }
}
