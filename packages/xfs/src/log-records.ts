/**
 * Log records from the tail to the head, cut into committed transactions and their items, as
 * log recovery's first stage does (xlog_do_recovery_pass + xlog_recover_process_ophdr).
 *
 * A record is a header block (plus extended header blocks for records over 32 KiB) and its data.
 * The first word of every data block was replaced in the log by the cycle number; the original
 * words are kept in the header's cycle_data (64 per header block) and put back here.
 *
 * Record header (big-endian, see log.ts): | 0 magic | 4 cycle | 8 version | 12 len | 16 lsn |
 * | 24 tail_lsn | 32 crc (LE) | 36 prev_block | 40 num_logops | 44 cycle_data[64] | 300 fmt |
 * | 304 fs_uuid | 320 size |. Extended header: | 0 cycle | 4 cycle_data[64] |.
 * Op header (big-endian, 12 bytes): | 0 tid | 4 len | 8 clientid | 9 flags | 10 pad |.
 * Transaction header (host order — little-endian on the x86 and arm64 hosts that write logs):
 * | 0 magic "TRAN" | 4 type | 8 tid | 12 num_items |. Each item is a list of regions, the first of
 * which starts | 0 type u16 | 2 region count u16 | (host order).
 */

import type { ReadAt } from "./bmap.js";
import { be32, be64big, le32 } from "./bytes.js";
import { XfsFormatError, type XfsLocation } from "./errors.js";
import { logRecordCrc, type XfsLogState, XLOG_HEADER_MAGIC } from "./log.js";
import type { XfsGeometry } from "./sb.js";

const BB = 512;
const HEADER_CYCLE_SIZE = 32 * 1024;
const MAX_RECORD_BYTES = 256 * 1024;
const OP_HEADER = 12;
const TRANS_HEADER = 16;
const TRANS_MAGIC = 0x5452414e;
const CLIENT_TRANSACTION = 0x69;
const CLIENT_LOG = 0xaa;
const START_TRANS = 0x01;
const COMMIT_TRANS = 0x02;
const CONTINUE_TRANS = 0x04;
const WAS_CONT_TRANS = 0x08;
const END_TRANS = 0x10;
const UNMOUNT_TRANS = 0x20;
/** The kernel checks the last XLOG_MAX_ICLOGS records for torn writes and drops them. */
const MAX_ICLOGS = 8;
/** Regions an item may declare (an inode item has ≤ 4; a buffer one per dirty run of a 64 KiB block). */
const MAX_REGIONS = 1024;

export interface LogItem {
  /** XFS_LI_* from the first region. */
  type: number;
  regions: Uint8Array[];
  /** Region count the item declared. */
  total: number;
}

export interface LogTransaction {
  tid: number;
  /** LSN of the record the transaction started in (what recovery compares metadata LSNs with). */
  lsn: bigint;
  items: LogItem[];
}

interface OpenTransaction extends LogTransaction {
  header: Uint8Array;
  headerLen: number;
}

export interface LogRecords {
  /** Committed transactions in commit order. */
  transactions: LogTransaction[];
  records: number;
  /** Records dropped at the head because their checksum failed (a torn write, as the kernel drops). */
  tornRecords: number;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

interface RawRecord {
  block: number;
  lsn: bigint;
  data: Uint8Array;
  numOps: number;
  crcOk: boolean;
}

/**
 * Reads every record between the log tail and head of a dirty log and returns its committed
 * transactions. Throws XfsFormatError (naming the device and byte offset) for anything a kernel
 * would refuse to recover.
 */
export async function readLogTransactions(
  geo: XfsGeometry,
  readAt: ReadAt,
  log: XfsLogState,
  where: XfsLocation,
): Promise<LogRecords> {
  const logBBs = log.logBBs;
  const base = geo.fsbToByte(geo.logStart);
  const at = (bb: number): XfsLocation => ({ ...where, structure: "log record", offset: base + bb * BB });
  const readRing = async (bb: number, count: number): Promise<Uint8Array> => {
    const out = new Uint8Array(count * BB);
    for (let done = 0; done < count; ) {
      const i = (bb + done) % logBBs;
      const n = Math.min(count - done, logBBs - i);
      out.set(await readAt(base + i * BB, n * BB), done * BB);
      done += n;
    }
    return out;
  };
  const tail = Number(log.tailLsn & 0xffff_ffffn);
  const head = log.headBlock;
  if (tail >= logBBs || head >= logBBs)
    throw new XfsFormatError(`log tail ${tail} or head ${head} outside the log`, at(0));

  // 1. The records, tail to head.
  const raw: RawRecord[] = [];
  let b = tail;
  let walked = 0;
  while (b !== head) {
    if (walked >= logBBs)
      throw new XfsFormatError("log records do not lead from the tail to the head", at(b));
    const h = await readRing(b, 1);
    if (be32(h, 0) !== XLOG_HEADER_MAGIC)
      throw new XfsFormatError("no log record header where one must start", at(b));
    const version = be32(h, 8);
    const len = be32(h, 12);
    const size = be32(h, 320);
    if ((version & ~3) !== 0 || version === 0)
      throw new XfsFormatError(`log record version ${version}`, at(b));
    if (len > MAX_RECORD_BYTES || len % 4 !== 0) throw new XfsFormatError(`log record length ${len}`, at(b));
    const hblks = version & 2 && size > HEADER_CYCLE_SIZE ? Math.ceil(size / HEADER_CYCLE_SIZE) : 1;
    if (hblks > MAX_RECORD_BYTES / HEADER_CYCLE_SIZE)
      throw new XfsFormatError(`log record size ${size}`, at(b));
    const dataBBs = Math.ceil(len / BB);
    const rec = await readRing(b, hblks + dataBBs);
    const stored = le32(rec, 32);
    const crcOk = !geo.v5 || [328, 324].some((hsize) => logRecordCrc(rec, hsize, hblks, len) === stored);
    const data = rec.slice(hblks * BB, hblks * BB + len);
    // Put back the first word of each data block.
    for (let i = 0; i < dataBBs; i++) {
      const j = Math.floor(i / 64);
      const k = i % 64;
      const src = j === 0 ? 44 + 4 * k : j * BB + 4 + 4 * k;
      if (i * BB + 4 <= data.length) data.set(rec.subarray(src, src + 4), i * BB);
    }
    raw.push({ block: b, lsn: be64big(h, 16), data, numOps: be32(h, 40), crcOk });
    b = (b + hblks + dataBBs) % logBBs;
    walked += hblks + dataBBs;
  }
  // A torn write at the head: drop from the first bad record among the last few; earlier ones are corruption.
  let keep = raw.length;
  for (let i = Math.max(0, raw.length - MAX_ICLOGS); i < raw.length; i++) {
    if (!raw[i].crcOk) {
      keep = i;
      break;
    }
  }
  for (let i = 0; i < keep; i++)
    if (!raw[i].crcOk) throw new XfsFormatError("log record checksum mismatch", at(raw[i].block));

  // 2. Ops into transactions.
  const open = new Map<number, OpenTransaction>();
  const committed: LogTransaction[] = [];
  for (let r = 0; r < keep; r++) {
    const rec = raw[r];
    const d = rec.data;
    let p = 0;
    for (let n = 0; n < rec.numOps; n++) {
      if (p + OP_HEADER > d.length) throw new XfsFormatError("log op header past its record", at(rec.block));
      const tid = be32(d, p);
      const len = be32(d, p + 4);
      const client = d[p + 8];
      let flags = d[p + 9];
      p += OP_HEADER;
      if (len > d.length - p)
        throw new XfsFormatError(`log op of ${len} bytes past its record`, at(rec.block));
      const body = d.subarray(p, p + len);
      p += len;
      if (client !== CLIENT_TRANSACTION && client !== CLIENT_LOG)
        throw new XfsFormatError(`log op with client id 0x${client.toString(16)}`, at(rec.block));
      const t = open.get(tid);
      if (!t) {
        // Ops of a transaction that began before the tail are skipped, as recovery does.
        if (flags & START_TRANS)
          open.set(tid, { tid, lsn: rec.lsn, items: [], header: new Uint8Array(TRANS_HEADER), headerLen: 0 });
        continue;
      }
      flags &= ~END_TRANS;
      if (flags & WAS_CONT_TRANS) flags &= ~CONTINUE_TRANS;
      switch (flags) {
        case 0:
        case CONTINUE_TRANS:
          addRegion(t, body, at(rec.block));
          break;
        case WAS_CONT_TRANS:
          continueRegion(t, body, at(rec.block));
          break;
        case COMMIT_TRANS:
          open.delete(tid);
          committed.push({ tid, lsn: t.lsn, items: t.items });
          break;
        case UNMOUNT_TRANS:
          break;
        default:
          throw new XfsFormatError(
            `log op flags 0x${flags.toString(16)} in an open transaction`,
            at(rec.block),
          );
      }
    }
  }
  return { transactions: committed, records: keep, tornRecords: raw.length - keep };
}

function addRegion(t: OpenTransaction, body: Uint8Array, where: XfsLocation): void {
  if (body.length === 0) return;
  if (t.headerLen < TRANS_HEADER && t.items.length === 0) {
    // The transaction header comes first (possibly split over ops).
    const n = Math.min(body.length, TRANS_HEADER - t.headerLen);
    t.header.set(body.subarray(0, n), t.headerLen);
    t.headerLen += n;
    if (t.headerLen >= 4 && le32(t.header, 0) !== TRANS_MAGIC)
      throw new XfsFormatError("log transaction header has a bad magic number", where);
    if (n === body.length) return;
    body = body.subarray(n);
  }
  let item = t.items[t.items.length - 1];
  if (!item || item.regions.length >= item.total) {
    if (body.length < 4) throw new XfsFormatError("log item shorter than its type and size", where);
    const total = body[2] | (body[3] << 8);
    if (total === 0 || total > MAX_REGIONS)
      throw new XfsFormatError(`log item declares ${total} regions`, where);
    item = { type: body[0] | (body[1] << 8), regions: [], total };
    t.items.push(item);
  }
  item.regions.push(body.slice());
}

function continueRegion(t: OpenTransaction, body: Uint8Array, where: XfsLocation): void {
  const item = t.items[t.items.length - 1];
  if (!item) {
    // A transaction header split across ops.
    addRegion(t, body, where);
    return;
  }
  const last = item.regions.length - 1;
  if (last < 0) throw new XfsFormatError("log op continues a region that never started", where);
  if (item.regions[last].length + body.length > 64 * 1024 + 4096)
    throw new XfsFormatError("log region larger than any item can log", where);
  item.regions[last] = concat(item.regions[last], body);
}
