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
  /** s_num_fc_blks: blocks at the end of the journal kept for fast commits (0 = the default 256). */
  numFcBlocks: number;
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
    numFcBlocks: v2 ? be32(b, 0x54) : 0,
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

export function hasCsumV2V3(jsb: JournalSuperblock): boolean {
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

/**
 * Block numbers listed in a revoke block (header, be32 r_count = bytes used including the
 * 16-byte header, then be32 or be64 block numbers). Undefined when r_count is out of range
 * (jbd2 recovery fails with EINVAL there).
 */
export function parseRevokeBlock(block: Uint8Array, jsb: JournalSuperblock): number[] | undefined {
  const count = be32(block, JBD2_HEADER_SIZE);
  const rec = jsb.featureIncompat & JBD2_FEATURE.incompat64bit ? 8 : 4;
  const limit = block.length - (hasCsumV2V3(jsb) ? 4 : 0);
  if (count > limit) return undefined;
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

/**
 * Descriptor and revoke blocks of v2/v3 journals end in a 4-byte tail: be32
 * crc32c(journal seed, the whole block with the tail zeroed).
 */
export function verifyBlockTail(block: Uint8Array, seed: number): boolean {
  const at = block.length - 4;
  const c = crc32c(crc32c(seed, block, 0, at), new Uint8Array(4));
  return c >>> 0 === be32(block, at);
}

/**
 * Commit block (v2/v3): h_chksum[0] (be32 at byte 16) = crc32c(journal seed, the whole block
 * with h_chksum[0] zeroed).
 */
export function verifyCommitBlock(block: Uint8Array, seed: number): boolean {
  const c0 = crc32c(seed, block, 0, 16);
  const c = crc32c(crc32c(c0, new Uint8Array(4)), block, 20, block.length);
  return c >>> 0 === be32(block, 16);
}
