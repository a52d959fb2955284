/**
 * The internal log, read just far enough to tell whether the filesystem was unmounted cleanly
 * (an editor must refuse a dirty log: the kernel would replay it over our changes) and where the
 * log head is (the cycle and block an editor stamps into v5 metadata LSNs).
 *
 * The log is a ring of 512-byte basic blocks. Each block's first word is the cycle number of the
 * pass that wrote it (a record header block has the magic there and the cycle in h_cycle), so the
 * head is where the cycle number drops. The record just before the head, when it holds exactly
 * one log operation flagged XLOG_UNMOUNT_TRANS, is the unmount record of a clean unmount.
 *
 * Record header (big-endian):
 * | 0 magic 0xFEEDBABE | 4 cycle | 8 version (1, 2) | 12 len (data bytes) | 16 lsn be64 |
 * | 24 tail_lsn be64 | 32 crc (LE) | 36 prev_block | 40 num_logops | 44 cycle_data[64] |
 * | 300 fmt | 304 fs_uuid | 320 size (iclog size; v2 headers span size/32 KiB blocks) |
 * Op header (start of the record's data): | 0 tid | 4 len | 8 clientid u8 | 9 flags u8 | 10 pad |
 */

import { crc32c } from "@imgpatch/disk";
import type { ReadAt } from "./bmap.js";
import { be32, be64big } from "./bytes.js";
import type { XfsGeometry } from "./sb.js";

export const XLOG_HEADER_MAGIC = 0xfeedbabe;
export const XLOG_UNMOUNT_TRANS = 0x20;
const BB = 512;
const HEADER_CYCLE_SIZE = 32 * 1024;
/** How far back from the head a record header is searched (max record 256 KiB + headers). */
const MAX_RECORD_BBS = (256 * 1024) / BB + 16;

/**
 * xlog_cksum of a record read with its header block(s) first: crc32c over the header struct
 * (`hsize` bytes: 328 as x86-64 lays it out, 324 on i386; h_crc taken as zero), the 260-byte
 * struct of each extended header block, then `dataLen` data bytes as they lie in the log; stored
 * inverted, little-endian.
 */
export function logRecordCrc(rec: Uint8Array, hsize: number, hblks: number, dataLen: number): number {
  let c = crc32c(0xffffffff, rec, 0, 32);
  c = crc32c(c, new Uint8Array(4));
  c = crc32c(c, rec, 36, hsize);
  for (let i = 1; i < hblks; i++) c = crc32c(c, rec, i * BB, i * BB + 260);
  c = crc32c(c, rec, hblks * BB, hblks * BB + dataLen);
  return (c ^ 0xffffffff) >>> 0;
}

export type LogStateKind = "clean" | "dirty" | "unknown";

export interface XfsLogState {
  state: LogStateKind;
  /** Why the log is not clean (for messages). */
  reason?: string;
  /** Cycle the next log write uses, and the basic block it starts at (the head). */
  headCycle: number;
  headBlock: number;
  /** LSN (cycle << 32 | block) of the last record before the head, and its tail LSN. */
  lastLsn: bigint;
  tailLsn: bigint;
  /** Size of the log in 512-byte basic blocks. */
  logBBs: number;
}

/** Reads the log ring of `geo` and decides clean vs dirty. Never throws on malformed logs: it says "unknown". */
export async function readLogState(geo: XfsGeometry, readAt: ReadAt): Promise<XfsLogState> {
  const logBBs = (geo.logBlocks * geo.blockSize) / BB;
  const base = geo.fsbToByte(geo.logStart);
  const result = (
    state: LogStateKind,
    reason: string | undefined,
    extra: Partial<XfsLogState> = {},
  ): XfsLogState => ({
    state,
    reason,
    headCycle: 0,
    headBlock: 0,
    lastLsn: 0n,
    tailLsn: 0n,
    logBBs,
    ...extra,
  });
  if (geo.logStart === 0 || logBBs < 2) return result("unknown", "no internal log");
  const blockCache = new Map<number, Uint8Array>();
  const readBB = async (i: number): Promise<Uint8Array> => {
    const hit = blockCache.get(i);
    if (hit) return hit;
    const b = await readAt(base + i * BB, BB);
    if (blockCache.size > 4096) blockCache.clear();
    blockCache.set(i, b);
    return b;
  };
  const cycleOf = async (i: number): Promise<number> => {
    const b = await readBB(i);
    const w = be32(b, 0);
    return w === XLOG_HEADER_MAGIC ? be32(b, 4) : w;
  };
  const first = await cycleOf(0);
  const last = await cycleOf(logBBs - 1);
  if (first === 0) return result("unknown", "the log has never been written");
  let head: number;
  let headCycle: number;
  if (first === last) {
    head = 0;
    headCycle = first + 1;
  } else {
    if (last !== first - 1) return result("dirty", `log cycles ${first}…${last} are not consecutive`);
    // Blocks [0, head) carry `first`, [head, end) carry `last`.
    let lo = 0;
    let hi = logBBs - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if ((await cycleOf(mid)) === first) lo = mid;
      else hi = mid;
    }
    head = hi;
    headCycle = first;
  }
  const extra = { headCycle, headBlock: head };
  // Find the record header closest before the head.
  let rec = -1;
  for (let k = 1; k <= Math.min(MAX_RECORD_BBS, logBBs); k++) {
    const i = (head - k + logBBs) % logBBs;
    if (be32(await readBB(i), 0) === XLOG_HEADER_MAGIC) {
      rec = i;
      break;
    }
  }
  if (rec < 0) return result("unknown", "no log record found before the head", extra);
  const h = await readBB(rec);
  const version = be32(h, 8);
  const len = be32(h, 12);
  const lastLsn = be64big(h, 16);
  const tailLsn = be64big(h, 24);
  const numOps = be32(h, 40);
  const size = be32(h, 320);
  const hblks = version & 2 && size > HEADER_CYCLE_SIZE ? Math.ceil(size / HEADER_CYCLE_SIZE) : 1;
  const dataBBs = Math.ceil(len / BB);
  const info = { ...extra, lastLsn, tailLsn };
  if ((rec + hblks + dataBBs) % logBBs !== head % logBBs)
    return result("dirty", "the last log record does not end at the log head", info);
  if (numOps !== 1 || len < 12)
    return result("dirty", "the log holds transactions after the last unmount", info);
  const op = await readBB((rec + hblks) % logBBs);
  if (!(op[9] & XLOG_UNMOUNT_TRANS))
    return result("dirty", "the last log record is not an unmount record", info);
  return result("clean", undefined, info);
}
