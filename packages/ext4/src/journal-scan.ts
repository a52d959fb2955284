/**
 * Which journal blocks recovery writes, decided the way jbd2 recovery (kernel fs/jbd2/recovery.c,
 * copied into e2fsck) decides in its scan and revoke passes:
 *
 * - the log runs from s_start through blocks [s_first, last) and wraps at `last`, which is
 *   s_maxlen less the fast-commit area when the journal has one;
 * - each block must carry the jbd2 magic and the expected sequence, else the log ends there;
 * - descriptor blocks list tags (32/64-bit block numbers, v2 16-bit or v3 32-bit data
 *   checksums, a 16-byte UUID unless SAME_UUID) followed by the logged blocks;
 * - a commit block closes a transaction. With checksums v2/v3 a commit block whose checksum is
 *   wrong ends the log before that transaction (also with async_commit: later passes stop at
 *   it); a bad descriptor or revoke tail ends the log at the next commit when that commit is
 *   older than the previous one (a stale transaction left in the log), and makes recovery fail
 *   otherwise (refused here with a typed error, as e2fsck reports the journal corrupt);
 * - revoke records apply to logged copies from transactions up to and including the revoking
 *   one (sequences compared modulo 2^32);
 * - a logged block whose data checksum is wrong is not written (counted in `badChecksums`).
 *
 * Journals with the v1 compat checksum (no v2/v3): the commit block carries h_chksum_type 1,
 * h_chksum_size 4 and h_chksum[0] = big-endian crc32 (from ~0) over each descriptor block and
 * the blocks it logs (not revoke blocks); a commit whose sum or type is wrong ends the log like
 * a bad v2/v3 commit checksum. Type 0 / size 0 / sum 0 is accepted (unchecked).
 */
import { be32 } from "./bytes.js";
import { Ext4FormatError, type Ext4Location } from "./errors.js";
import {
  hasCsumV2V3,
  JBD2_BLOCKTYPE,
  JBD2_FEATURE,
  JBD2_MAGIC,
  JBD2_TAG_FLAG,
  type JournalSuperblock,
  type JournalTag,
  journalChecksumSeed,
  journalDataChecksum,
  parseDescriptorTags,
  parseJournalHeader,
  parseRevokeBlock,
  verifyBlockTail,
  verifyCommitBlock,
} from "./journal.js";

/** jbd2's default fast-commit area when s_num_fc_blks is 0. */
const DEFAULT_FC_BLOCKS = 256;

/** One replayable block: filesystem block ← journal block (logical index in the journal). */
export interface ReplayEntry {
  fsBlock: number;
  journalBlock: number;
  /** The logged block had its first 4 bytes escaped (they were the jbd2 magic). */
  escaped: boolean;
  sequence: number;
}

export interface JournalScan {
  /** Committed transactions found, first..last sequence. */
  transactions: number;
  firstSequence: number;
  /** Sequence after the last committed transaction (the tid a fast commit would carry). */
  endSequence: number;
  /** Latest copy of each block to write, revokes applied, in no particular order. */
  replay: Map<number, ReplayEntry>;
  /** Logged blocks skipped because their checksum did not match. */
  badChecksums: number;
  /** Why the log ended early, when a checksum ended it (for a warning). */
  endedBy?: string;
}

/** The log's wrap point and the fast-commit area [fcFirst, fcEnd) behind it. */
export function journalGeometry(jsb: JournalSuperblock): { last: number; fcFirst: number; fcEnd: number } {
  if (!(jsb.featureIncompat & JBD2_FEATURE.incompatFastCommit))
    return { last: jsb.maxLen, fcFirst: jsb.maxLen, fcEnd: jsb.maxLen };
  const fc = jsb.numFcBlocks || DEFAULT_FC_BLOCKS;
  const last = jsb.maxLen - fc;
  // jbd2: j_fc_first = j_last + 1, j_fc_last = s_maxlen (the block at s_maxlen is never read).
  return { last, fcFirst: last + 1, fcEnd: jsb.maxLen };
}

/** tid_geq: a is b or later, modulo 2^32. */
function tidGeq(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/**
 * Walk an unreplayed journal from s_start as recovery does. `read(i)` reads logical block i of
 * the journal. Bounded by the journal length: a corrupt journal cannot loop.
 */
export async function scanJournal(
  jsb: JournalSuperblock,
  read: (i: number) => Promise<Uint8Array>,
  where: Ext4Location,
): Promise<JournalScan> {
  const scan: JournalScan = {
    transactions: 0,
    firstSequence: jsb.sequence,
    endSequence: jsb.sequence,
    replay: new Map(),
    badChecksums: 0,
  };
  if (jsb.start === 0) return scan;
  const csum = hasCsumV2V3(jsb);
  // jbd2 checks v1 sums only while no v2/v3 problem is pending (need_check_commit_time).
  const csumV1 = !csum && (jsb.featureCompat & JBD2_FEATURE.compatChecksum) !== 0;
  let sumV1 = 0xffffffff;
  const { first, maxLen } = jsb;
  const { last } = journalGeometry(jsb);
  if (first === 0 || first >= last || last > maxLen || jsb.start < first || jsb.start >= last) {
    throw new Ext4FormatError(
      `journal geometry invalid (first ${first}, start ${jsb.start}, log end ${last}, length ${maxLen})`,
      where,
    );
  }
  const wrap = (i: number) => (i >= last ? i - (last - first) : i);
  const seed = journalChecksumSeed(jsb);
  const csum3 = (jsb.featureIncompat & JBD2_FEATURE.incompatCsumV3) !== 0;
  interface Tx {
    sequence: number;
    logged: { tag: JournalTag; at: number }[];
    revoked: number[];
  }
  const txs: Tx[] = [];
  let pos = jsb.start;
  let seq = jsb.sequence;
  let current: Tx = { sequence: seq, logged: [], revoked: [] };
  let needCheckCommitTime = false;
  let lastCommitTime = 0n;
  const budget = last - first;
  for (let steps = 0; steps < budget; steps++) {
    const at = pos;
    const b = await read(at);
    pos = wrap(pos + 1);
    const h = parseJournalHeader(b);
    if (h.magic !== JBD2_MAGIC || h.sequence !== seq) break;
    if (h.blockType === JBD2_BLOCKTYPE.descriptor) {
      if (csum && !verifyBlockTail(b, seed)) needCheckCommitTime = true;
      const tags = parseDescriptorTags(b, jsb);
      if (csumV1) sumV1 = crc32be(sumV1, b);
      for (const tag of tags) {
        current.logged.push({ tag, at: pos });
        if (csumV1) sumV1 = crc32be(sumV1, await read(pos));
        pos = wrap(pos + 1);
      }
      steps += tags.length;
      continue;
    }
    if (h.blockType === JBD2_BLOCKTYPE.revoke) {
      if (csum && !verifyBlockTail(b, seed)) needCheckCommitTime = true;
      const list = parseRevokeBlock(b, jsb);
      if (!list) throw new Ext4FormatError(`journal revoke block ${at} has an invalid record count`, where);
      current.revoked.push(...list);
      continue;
    }
    if (h.blockType === JBD2_BLOCKTYPE.commit) {
      const commitTime = (BigInt(be32(b, 0x30)) << 32n) | BigInt(be32(b, 0x34));
      if (needCheckCommitTime) {
        if (commitTime >= lastCommitTime)
          throw new Ext4FormatError(
            `journal transaction ${seq} has a descriptor or revoke block with a bad checksum (recovery fails on it: run e2fsck)`,
            where,
          );
        scan.endedBy = `transaction ${seq} is stale (bad block checksum, older commit time)`;
        break;
      }
      if (csumV1) {
        const type = b[12];
        const size = b[13];
        const found = be32(b, 16);
        const ok =
          (found === sumV1 >>> 0 && type === 1 && size === 4) || (type === 0 && size === 0 && found === 0);
        sumV1 = 0xffffffff;
        if (!ok) {
          if (commitTime >= lastCommitTime)
            scan.endedBy = `the commit block of transaction ${seq} fails its v1 checksum`;
          break;
        }
      }
      if (csum && !verifyCommitBlock(b, seed)) {
        scan.endedBy = `the commit block of transaction ${seq} fails its checksum`;
        break;
      }
      lastCommitTime = commitTime;
      txs.push(current);
      seq = (seq + 1) >>> 0;
      current = { sequence: seq, logged: [], revoked: [] };
      continue;
    }
    break; // unknown block type: end of the log
  }
  // Revokes: block → newest revoking sequence.
  const revoked = new Map<number, number>();
  for (const t of txs)
    for (const r of t.revoked) {
      const had = revoked.get(r);
      if (had === undefined || tidGeq(t.sequence, had)) revoked.set(r, t.sequence);
    }
  for (const t of txs) {
    for (const { tag, at } of t.logged) {
      const rs = revoked.get(tag.blockNr);
      if (rs !== undefined && tidGeq(rs, t.sequence)) continue;
      if (csum) {
        const data = await read(at);
        const c = journalDataChecksum(seed, t.sequence, data);
        if ((csum3 ? c >>> 0 : c & 0xffff) !== tag.checksum) {
          scan.badChecksums++;
          continue;
        }
      }
      scan.replay.set(tag.blockNr, {
        fsBlock: tag.blockNr,
        journalBlock: at,
        escaped: (tag.flags & JBD2_TAG_FLAG.escape) !== 0,
        sequence: t.sequence,
      });
    }
  }
  scan.transactions = txs.length;
  scan.endSequence = seq;
  return scan;
}

let CRC32_BE: Uint32Array | undefined;

/** Big-endian (non-reflected) CRC-32, polynomial 0x04c11db7, no final inversion: crc32_be. */
function crc32be(crc: number, data: Uint8Array): number {
  if (!CRC32_BE) {
    CRC32_BE = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i << 24;
      for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
      CRC32_BE[i] = c >>> 0;
    }
  }
  const t = CRC32_BE;
  let c = crc >>> 0;
  for (let i = 0; i < data.length; i++) c = (t[((c >>> 24) ^ data[i]) & 0xff] ^ (c << 8)) >>> 0;
  return c;
}
