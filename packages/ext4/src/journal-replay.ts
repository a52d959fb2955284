/**
 * Journal recovery written to the device (what the kernel or e2fsck does before using a
 * filesystem that was not cleanly unmounted): the newest committed copy of every logged block
 * not revoked (jbd2 descriptor / revoke / commit blocks, checksums v2/v3 verified by the scan)
 * is written to its place, the journal is marked empty (s_start = 0, next sequence), and the
 * needs_recovery flag is cleared. Superblock free counts are recomputed from the descriptors,
 * which the kernel does not keep current in the superblock.
 */
import type { BlockDevice } from "@imgpatch/disk";
import { setBe32 } from "./bytes.js";
import { Ext4FormatError, Ext4UnsupportedError } from "./errors.js";
import { INCOMPAT } from "./features.js";
import { Ext4Fs } from "./fs.js";
import { encodeJournalSuperblock, JBD2_MAGIC } from "./journal.js";
import {
  encodeSuperblock,
  parseSuperblock,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
  setSuperblockChecksum,
} from "./superblock.js";

export interface ReplayResult {
  transactions: number;
  blocks: number;
  badChecksums: number;
}

/** Replay an internal journal that needs recovery. A clean filesystem is left untouched. */
export async function replayJournal(device: BlockDevice): Promise<ReplayResult> {
  const fs = await Ext4Fs.open(device, { superblock: 0, replayJournal: false });
  if (!fs.journal.needsRecovery) return { transactions: 0, blocks: 0, badChecksums: 0 };
  if (!fs.journal.hasJournal || fs.journal.external || !fs.sb.journalInum)
    throw new Ext4UnsupportedError("journal_dev", "cannot replay an external journal", { file: device.name });
  const jsb = fs.journal.superblock;
  if (!jsb)
    throw new Ext4FormatError("journal superblock unreadable", { file: device.name, structure: "journal" });
  const scan = await fs.scanJournal();
  const bs = fs.blockSize;
  // Journal blocks are read before anything is written (a replayed block may be journal metadata).
  const writes: { block: number; data: Uint8Array }[] = [];
  for (const e of [...scan.replay.values()].sort((a, b) => a.fsBlock - b.fsBlock)) {
    if (e.fsBlock >= fs.sb.blocksCount)
      throw new Ext4FormatError(`journal logs block ${e.fsBlock} past the end of the filesystem`, {
        file: device.name,
        structure: "journal",
      });
    const data = (await fs.readJournalBlock(e.journalBlock)).slice();
    if (e.escaped) setBe32(data, 0, JBD2_MAGIC);
    writes.push({ block: e.fsBlock, data });
  }
  const jsbBlock = await fs.mapBlock(await fs.readInode(fs.sb.journalInum), 0);
  for (const w of writes) await device.write(w.block * bs, w.data);
  // Journal now empty.
  // Like jbd2 recovery: the next transaction gets a sequence past the last replayed one.
  const jraw = encodeJournalSuperblock({ ...jsb, start: 0, sequence: (scan.endSequence + 1) >>> 0 });
  await device.write(jsbBlock.physical * bs, jraw);
  // Superblock (possibly just replayed): clear needs_recovery, free counts from the descriptors.
  const fresh = await Ext4Fs.open(device, { superblock: 0, lenient: true, replayJournal: false });
  const sb = parseSuperblock(await device.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE));
  sb.featureIncompat &= ~INCOMPAT.recover;
  sb.freeBlocksCount = fresh.groups.reduce((n, g) => n + g.freeBlocksCount, 0);
  sb.freeInodesCount = fresh.groups.reduce((n, g) => n + g.freeInodesCount, 0);
  const enc = encodeSuperblock(sb);
  setSuperblockChecksum(enc);
  await device.write(SUPERBLOCK_OFFSET, enc);
  await device.flush();
  return { transactions: scan.transactions, blocks: writes.length, badChecksums: scan.badChecksums };
}
