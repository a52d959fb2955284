/**
 * Making a replayed log permanent before an edit, as a kernel mount + unmount would: the sectors
 * the in-memory replay produced (log-replay.ts) are written to the device, the superblock's summary
 * counters are recomputed from the AG headers (with lazy counters the kernel recomputes them after
 * an unclean mount; a clean log tells it to trust them), and an unmount record is written at the
 * log head so the next mount finds a clean log.
 *
 * Refused (XfsUnsupportedError "dirty-log") when recovery leaves work only the kernel finishes:
 * unfinished free-space/rmap/refcount intents, inodes on an AGI unlinked list, a log head too near
 * the end of the ring for a two-block record.
 *
 * Unmount record: header block (see log.ts) with cycle C at head H, lsn = tail_lsn = (C, H),
 * prev_block = the last record's block, num_logops 1, fmt 1 (little-endian host), h_size 32 KiB;
 * one data block: op header | tid | len 8 | client 0xaa (log) | flags 0x20 (unmount) | and the
 * unmount payload | magic 0x556e (host order) | pad |, zero to the block's end; the block's first
 * word is replaced by C and kept in cycle_data[0].
 */

import type { BlockDevice } from "@imgpatch/disk";
import { xfsCrc } from "./buf.js";
import { be32, setBe32, setBe64big, setLe32 } from "./bytes.js";
import { XfsUnsupportedError } from "./errors.js";
import { logRecordCrc, type XfsLogState, XLOG_HEADER_MAGIC } from "./log.js";
import type { LogReplayStats } from "./log-replay.js";
import type { XfsGeometry } from "./sb.js";

const BB = 512;
const NULL_AGINO = 0xffff_ffff;
const UNMOUNT_TID = 0x696d6770; // any id: recovery only looks at the flags of a lone op

/** Writes `sectors` (replayed) to `device` in runs of consecutive sectors. */
async function writeSectors(device: BlockDevice, sectors: ReadonlyMap<number, Uint8Array>): Promise<void> {
  const order = [...sectors.keys()].sort((a, b) => a - b);
  for (let i = 0; i < order.length; ) {
    let j = i + 1;
    while (j < order.length && order[j] === order[j - 1] + 1 && j - i < 2048) j++;
    const run = new Uint8Array((j - i) * BB);
    for (let k = i; k < j; k++) run.set(sectors.get(order[k]) as Uint8Array, (k - i) * BB);
    await device.write(order[i] * BB, run);
    i = j;
  }
}

/**
 * Checks that nothing is left for the kernel, then writes the replay, fresh summary counters and
 * an unmount record. `read` reads the replayed view.
 */
export async function persistLogRecovery(
  device: BlockDevice,
  geo: XfsGeometry,
  log: XfsLogState,
  sectors: ReadonlyMap<number, Uint8Array>,
  stats: LogReplayStats,
  read: (offset: number, length: number) => Promise<Uint8Array>,
): Promise<void> {
  const where = { file: device.name, offset: geo.fsbToByte(geo.logStart), structure: "log" };
  const refuse = (why: string): never => {
    throw new XfsUnsupportedError(
      "dirty-log",
      `the log is not clean and ${why}: boot the guest once (or mount and unmount the filesystem), then edit it`,
      where,
    );
  };
  if (stats.pendingIntents > 0)
    refuse(`recovery leaves ${stats.pendingIntents} unfinished intents that the kernel completes`);
  // Summary counters from the AG headers, and no inode waiting on an unlinked list.
  let icount = 0n;
  let ifree = 0n;
  let fdblocks = 0n;
  for (let agno = 0; agno < geo.agCount; agno++) {
    const agStart = geo.agbToByte(agno, 0);
    const agf = await read(agStart + geo.sectSize, BB);
    const agi = await read(agStart + 2 * geo.sectSize, BB);
    if (be32(agf, 0) !== 0x58414746 || be32(agi, 0) !== 0x58414749)
      refuse(`AG ${agno}'s headers are unreadable after replay`);
    for (let i = 0; i < 64; i++)
      if (be32(agi, 40 + 4 * i) !== NULL_AGINO)
        refuse(`AG ${agno} has inodes on its unlinked list (files deleted while open)`);
    icount += BigInt(be32(agi, 16));
    ifree += BigInt(be32(agi, 28));
    fdblocks += BigInt(be32(agf, 52)) + BigInt(be32(agf, 48)) + BigInt(be32(agf, 60));
  }
  const H = log.headBlock;
  const C = log.headCycle;
  if (H + 2 > log.logBBs) refuse("its head is at the end of the log ring");

  await writeSectors(device, sectors);

  const sb = await read(0, geo.sectSize);
  setBe64big(sb, 128, icount);
  setBe64big(sb, 136, ifree);
  setBe64big(sb, 144, fdblocks);
  if (geo.v5) {
    setLe32(sb, 224, xfsCrc(sb, 224));
  }
  await device.write(0, sb);

  const rec = new Uint8Array(2 * BB);
  const lsn = (BigInt(C) << 32n) | BigInt(H);
  setBe32(rec, 0, XLOG_HEADER_MAGIC);
  setBe32(rec, 4, C);
  setBe32(rec, 8, 2);
  setBe32(rec, 12, BB);
  setBe64big(rec, 16, lsn);
  setBe64big(rec, 24, lsn);
  setBe32(rec, 36, Number(log.lastLsn & 0xffff_ffffn));
  setBe32(rec, 40, 1);
  setBe32(rec, 300, 1);
  rec.set(geo.sb.uuid, 304);
  setBe32(rec, 320, 32 * 1024);
  // The op and its payload in the data block.
  setBe32(rec, BB, UNMOUNT_TID);
  setBe32(rec, BB + 4, 8);
  rec[BB + 8] = 0xaa;
  rec[BB + 9] = 0x20;
  rec[BB + 12] = 0x6e;
  rec[BB + 13] = 0x55;
  rec.set(rec.subarray(BB, BB + 4), 44);
  setBe32(rec, BB, C);
  setLe32(rec, 32, logRecordCrc(rec, 328, 1, BB));
  await device.write(geo.fsbToByte(geo.logStart) + H * BB, rec);
  await device.flush();
}
