/**
 * The fast-commit area of an ext4 journal: does it hold fast commits recovery would replay?
 *
 * The area is the journal's last s_num_fc_blks blocks (see journalGeometry). It is a stream of
 * little-endian tag-length-value records, each starting on the byte after the previous one:
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 2 | fc_tag (1 ADD_RANGE, 2 DEL_RANGE, 3 CREAT, 4 LINK, 5 UNLINK, 6 INODE, 7 PAD, 8 TAIL, 9 HEAD) |
 * | 2 | 2 | fc_len: bytes of value that follow |
 * | 4 | fc_len | value. HEAD: le32 features (must be 0), le32 tid. TAIL: le32 tid, le32 crc |
 *
 * A fast commit is HEAD, tags, TAIL; the TAIL's crc is crc32c (from 0, running over every
 * record since the previous TAIL, the TAIL itself up to its crc field). The first block must
 * open with a HEAD whose tid is the one after the last committed jbd2 transaction, else there
 * is nothing to replay. Replay would apply the tags up to the last TAIL whose tid and crc
 * match. This module only decides that; replaying the tags is not implemented.
 */
import { crc32c } from "./crc32c.js";
import type { JournalSuperblock } from "./journal.js";
import { journalGeometry } from "./journal-scan.js";

export const FC_TAG = {
  addRange: 1,
  delRange: 2,
  creat: 3,
  link: 4,
  unlink: 5,
  inode: 6,
  pad: 7,
  tail: 8,
  head: 9,
} as const;

export interface FastCommitScan {
  /** Tags covered by valid TAILs: what replay would apply (0 = nothing to replay). */
  replayTags: number;
  /** Why the area cannot be judged replayable or not (recovery would fail on it). */
  problem?: string;
  /** A HEAD for an older tid: stale, ignored by the kernel (e2fsck 1.47 fails recovery on it). */
  staleHead?: number;
}

function le16(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}
function le32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

/** Scan the fast-commit area for commits with tid `expectedTid` (the scan pass of recovery). */
export async function scanFastCommits(
  jsb: JournalSuperblock,
  read: (i: number) => Promise<Uint8Array>,
  expectedTid: number,
): Promise<FastCommitScan> {
  const { fcFirst, fcEnd } = journalGeometry(jsb);
  let crc = 0;
  let curTag = 0;
  let replayTags = 0;
  for (let blk = fcFirst; blk < fcEnd; blk++) {
    const b = await read(blk);
    if (blk === fcFirst && le16(b, 0) !== FC_TAG.head) return { replayTags: 0 };
    const end = b.length - 1;
    for (let cur = 0; cur < end; ) {
      if (cur + 4 > b.length) return { replayTags, problem: `fast-commit record crosses block ${blk}` };
      const tag = le16(b, cur);
      const len = le16(b, cur + 2);
      const val = cur + 4;
      if (val + len > b.length) {
        if (replayTags) return { replayTags };
        return { replayTags, problem: `fast-commit record at block ${blk} byte ${cur} runs past the block` };
      }
      switch (tag) {
        case FC_TAG.addRange:
        case FC_TAG.delRange:
        case FC_TAG.link:
        case FC_TAG.unlink:
        case FC_TAG.creat:
        case FC_TAG.inode:
        case FC_TAG.pad:
          curTag++;
          crc = crc32c(crc, b, cur, val + len);
          break;
        case FC_TAG.tail: {
          if (len < 8) return { replayTags, problem: `fast-commit tail at block ${blk} is too short` };
          curTag++;
          crc = crc32c(crc, b, cur, val + 4);
          if (le32(b, val) === expectedTid && le32(b, val + 4) === crc >>> 0) replayTags = curTag;
          else if (replayTags) return { replayTags };
          else return { replayTags, problem: `fast-commit tail at block ${blk} fails its tid or crc check` };
          crc = 0;
          break;
        }
        case FC_TAG.head: {
          if (len < 8) return { replayTags, problem: `fast-commit head at block ${blk} is too short` };
          if (le32(b, val) !== 0)
            return {
              replayTags,
              problem: `fast-commit head uses unknown features 0x${le32(b, val).toString(16)}`,
            };
          const tid = le32(b, val + 4);
          if (tid !== expectedTid) return replayTags ? { replayTags } : { replayTags, staleHead: tid };
          curTag++;
          crc = crc32c(crc, b, cur, val + len);
          break;
        }
        default:
          if (replayTags) return { replayTags };
          return { replayTags, problem: `unknown fast-commit tag ${tag} at block ${blk}` };
      }
      cur = val + len;
    }
  }
  return { replayTags };
}
