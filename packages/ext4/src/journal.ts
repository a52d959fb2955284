/**
 * jbd2 journal detection. The journal is an inode (s_journal_inum) or an external device; its
 * first block is a big-endian journal superblock. An unreplayed journal (incompat "recover",
 * s_start != 0) means the filesystem's metadata may be stale until replay.
 */
import { be32, setBe32 } from "./bytes.js";
import { crc32c } from "./crc32c.js";

export const JBD2_MAGIC = 0xc03b3998;
export const JBD2_BLOCKTYPE = {
  descriptor: 1,
  commit: 2,
  superblockV1: 3,
  superblockV2: 4,
  revoke: 5,
} as const;

export interface JournalSuperblock {
  blockType: number;
  blockSize: number;
  maxLen: number;
  first: number;
  sequence: number;
  /** Block of the first transaction to replay; 0 = the journal is clean. */
  start: number;
  errno: number;
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
  uuid: Uint8Array;
  checksumType: number;
  /** s_checksum (v2/v3 journals). */
  checksum: number;
  /** The 1024 bytes parsed (a private copy), for re-encoding. */
  raw: Uint8Array;
}

/** Parse a jbd2 superblock; undefined if the magic or block type is wrong. */
export function parseJournalSuperblock(b: Uint8Array): JournalSuperblock | undefined {
  if (b.length < 1024 || be32(b, 0) !== JBD2_MAGIC) return undefined;
  const blockType = be32(b, 4);
  if (blockType !== JBD2_BLOCKTYPE.superblockV1 && blockType !== JBD2_BLOCKTYPE.superblockV2)
    return undefined;
  const v2 = blockType === JBD2_BLOCKTYPE.superblockV2;
  return {
    blockType,
    blockSize: be32(b, 0xc),
    maxLen: be32(b, 0x10),
    first: be32(b, 0x14),
    sequence: be32(b, 0x18),
    start: be32(b, 0x1c),
    errno: be32(b, 0x20) | 0,
    featureCompat: v2 ? be32(b, 0x24) : 0,
    featureIncompat: v2 ? be32(b, 0x28) : 0,
    featureRoCompat: v2 ? be32(b, 0x2c) : 0,
    uuid: b.slice(0x30, 0x40),
    checksumType: b[0x50],
    checksum: be32(b, JSB_CHECKSUM_OFFSET),
    raw: b.slice(0, 1024),
  };
}

const JSB_CHECKSUM_OFFSET = 0xfc;

/** jbd2 superblock checksum (v2/v3): crc32c(~0, the 1024 bytes with s_checksum zeroed). */
export function journalSuperblockChecksum(raw: Uint8Array): number {
  const c = crc32c(0xffffffff, raw, 0, JSB_CHECKSUM_OFFSET);
  return crc32c(crc32c(c, new Uint8Array(4)), raw, JSB_CHECKSUM_OFFSET + 4, 1024);
}

/**
 * Encode the mutable fields (s_sequence, s_start, s_errno) over the raw superblock and refresh
 * the checksum when the journal is checksummed — what marking a journal replayed/empty needs.
 */
export function encodeJournalSuperblock(jsb: JournalSuperblock): Uint8Array {
  const out = jsb.raw.slice();
  setBe32(out, 0x18, jsb.sequence);
  setBe32(out, 0x1c, jsb.start);
  setBe32(out, 0x20, jsb.errno >>> 0);
  if (jsb.featureIncompat & (0x8 | 0x10)) setBe32(out, JSB_CHECKSUM_OFFSET, journalSuperblockChecksum(out));
  return out;
}

export interface JournalStatus {
  /** has_journal is set. */
  hasJournal: boolean;
  /** The journal lives on another device (s_journal_dev / journal UUID). */
  external: boolean;
  journalInode: number;
  /** The superblock says the journal must be replayed (incompat "recover"). */
  needsRecovery: boolean;
  /** Parsed jbd2 superblock of an internal journal, when readable. */
  superblock?: JournalSuperblock;
  /** Set when the journal was replayed in memory at open (`replayJournal`). */
  replayed?: { transactions: number; blocks: number; badChecksums: number };
}

// ---------------------------------------------------------------- transactions (for replay)

export const JBD2_FEATURE = {
  compatChecksum: 0x1,
  incompatRevoke: 0x1,
  incompat64bit: 0x2,
  incompatAsyncCommit: 0x4,
  incompatCsumV2: 0x8,
  incompatCsumV3: 0x10,
  incompatFastCommit: 0x20,
} as const;

export const JBD2_TAG_FLAG = { escape: 1, sameUuid: 2, deleted: 4, lastTag: 8 } as const;

const JBD2_HEADER_SIZE = 12;

export interface JournalBlockHeader {
  magic: number;
  blockType: number;
  sequence: number;
}

export function parseJournalHeader(b: Uint8Array): JournalBlockHeader {
  return { magic: be32(b, 0), blockType: be32(b, 4), sequence: be32(b, 8) };
}

function hasCsumV2V3(jsb: JournalSuperblock): boolean {
  return (jsb.featureIncompat & (JBD2_FEATURE.incompatCsumV2 | JBD2_FEATURE.incompatCsumV3)) !== 0;
}

/** Bytes per descriptor tag for this journal's features. */
export function journalTagBytes(jsb: JournalSuperblock): number {
  if (jsb.featureIncompat & JBD2_FEATURE.incompatCsumV3) return 16;
  let sz = 12;
  if (jsb.featureIncompat & JBD2_FEATURE.incompatCsumV2) sz += 2;
  return jsb.featureIncompat & JBD2_FEATURE.incompat64bit ? sz : sz - 4;
}

export interface JournalTag {
  /** Filesystem block the logged block belongs to. */
  blockNr: number;
  flags: number;
  /** Stored data-block checksum (v2: 16 bits, v3: 32 bits; 0 without checksums). */
  checksum: number;
}

/**
 * Parse the tags of a descriptor block. Stops at LAST_TAG or when the next tag would overlap
 * the block tail (checksummed journals keep 4 bytes for it).
 */
export function parseDescriptorTags(block: Uint8Array, jsb: JournalSuperblock): JournalTag[] {
  const tagBytes = journalTagBytes(jsb);
  const csum3 = (jsb.featureIncompat & JBD2_FEATURE.incompatCsumV3) !== 0;
  const b64 = (jsb.featureIncompat & JBD2_FEATURE.incompat64bit) !== 0;
  const end = block.length - (hasCsumV2V3(jsb) ? 4 : 0);
  const tags: JournalTag[] = [];
  let off = JBD2_HEADER_SIZE;
  while (off + tagBytes <= end) {
    const lo = be32(block, off);
    let flags: number;
    let hi = 0;
    let checksum = 0;
    if (csum3) {
      flags = be32(block, off + 4);
      if (b64) hi = be32(block, off + 8);
      checksum = be32(block, off + 12);
    } else {
      checksum = (block[off + 4] << 8) | block[off + 5];
      flags = (block[off + 6] << 8) | block[off + 7];
      if (b64) hi = be32(block, off + 8);
    }
    tags.push({ blockNr: lo + hi * 0x1_0000_0000, flags, checksum });
    off += tagBytes;
    if (!(flags & JBD2_TAG_FLAG.sameUuid)) off += 16;
    if (flags & JBD2_TAG_FLAG.lastTag) break;
  }
  return tags;
}

/** Block numbers listed in a revoke block. */
export function parseRevokeBlock(block: Uint8Array, jsb: JournalSuperblock): number[] | undefined {
  const count = be32(block, JBD2_HEADER_SIZE);
  const rec = jsb.featureIncompat & JBD2_FEATURE.incompat64bit ? 8 : 4;
  const limit = block.length - (hasCsumV2V3(jsb) ? 4 : 0);
  if (count < 16 || count > limit) return undefined;
  const out: number[] = [];
  for (let off = 16; off + rec <= count; off += rec) {
    out.push(rec === 8 ? be32(block, off) * 0x1_0000_0000 + be32(block, off + 4) : be32(block, off));
  }
  return out;
}

/** Checksum of a logged data block (csum v2/v3): crc32c(journal seed, be32 sequence, data). */
export function journalDataChecksum(journalSeed: number, sequence: number, data: Uint8Array): number {
  const seq = new Uint8Array(4);
  setBe32(seq, 0, sequence);
  return crc32c(crc32c(journalSeed, seq), data);
}

/** The journal checksum seed: crc32c(~0, journal uuid). */
export function journalChecksumSeed(jsb: JournalSuperblock): number {
  return crc32c(0xffffffff, jsb.uuid);
}

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
  /** Sequence after the last committed transaction. */
  endSequence: number;
  /** Latest copy of each block to write, revokes applied, in no particular order. */
  replay: Map<number, ReplayEntry>;
  /** Logged blocks skipped because their checksum did not match. */
  badChecksums: number;
}

/**
 * Walk an (unreplayed) journal the way recovery does: scan committed transactions from s_start,
 * collect revokes, then keep the newest logged copy of each block not revoked by a later or
 * equal transaction. `readJournalBlock(i)` reads logical block i of the journal. Bounded by the
 * journal length (a corrupt journal cannot loop).
 */
export async function scanJournal(
  jsb: JournalSuperblock,
  readJournalBlock: (i: number) => Promise<Uint8Array>,
): Promise<JournalScan> {
  const scan: JournalScan = {
    transactions: 0,
    firstSequence: jsb.sequence,
    endSequence: jsb.sequence,
    replay: new Map(),
    badChecksums: 0,
  };
  if (jsb.start === 0) return scan;
  const first = jsb.first;
  const maxLen = jsb.maxLen;
  if (first === 0 || first >= maxLen || jsb.start < first || jsb.start >= maxLen) {
    throw new RangeError(`journal geometry invalid (first ${first}, start ${jsb.start}, length ${maxLen})`);
  }
  const next = (i: number) => (i + 1 >= maxLen ? first : i + 1);
  const seed = journalChecksumSeed(jsb);
  const csum = hasCsumV2V3(jsb);
  const csum3 = (jsb.featureIncompat & JBD2_FEATURE.incompatCsumV3) !== 0;
  interface Logged {
    tag: JournalTag;
    at: number;
  }
  const txs: { sequence: number; logged: Logged[]; revoked: number[] }[] = [];
  let pos = jsb.start;
  let seq = jsb.sequence;
  let current: { sequence: number; logged: Logged[]; revoked: number[] } = {
    sequence: seq,
    logged: [],
    revoked: [],
  };
  const budget = maxLen - first;
  for (let steps = 0; steps < budget; steps++) {
    const b = await readJournalBlock(pos);
    const h = parseJournalHeader(b);
    if (h.magic !== JBD2_MAGIC || h.sequence !== seq) break;
    if (h.blockType === JBD2_BLOCKTYPE.descriptor) {
      const tags = parseDescriptorTags(b, jsb);
      let at = next(pos);
      for (const tag of tags) {
        current.logged.push({ tag, at });
        at = next(at);
      }
      steps += tags.length;
      pos = at;
      continue;
    }
    if (h.blockType === JBD2_BLOCKTYPE.revoke) {
      const list = parseRevokeBlock(b, jsb);
      if (list) current.revoked.push(...list);
      pos = next(pos);
      continue;
    }
    if (h.blockType === JBD2_BLOCKTYPE.commit) {
      txs.push(current);
      seq = (seq + 1) >>> 0;
      current = { sequence: seq, logged: [], revoked: [] };
      pos = next(pos);
      continue;
    }
    break; // unknown block type: end of the log
  }
  // Revokes: block → newest revoking sequence.
  const revoked = new Map<number, number>();
  for (const t of txs) for (const r of t.revoked) revoked.set(r, t.sequence);
  for (const t of txs) {
    for (const { tag, at } of t.logged) {
      const rs = revoked.get(tag.blockNr);
      if (rs !== undefined && rs >= t.sequence) continue;
      if (csum) {
        const data = await readJournalBlock(at);
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
