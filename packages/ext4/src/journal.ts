/**
 * jbd2 journal detection. The journal is an inode (s_journal_inum) or an external device; its
 * first block is a big-endian journal superblock. An unreplayed journal (incompat "recover",
 * s_start != 0) means the filesystem's metadata may be stale until replay.
 */
import { be32 } from "./bytes.js";

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
  };
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
}
