/**
 * The ext2/3/4 superblock: 1024 bytes at byte 1024 of the filesystem (backups at the start of
 * some block groups). Parsing keeps the raw bytes so encoding rewrites only known fields and
 * preserves everything else bit for bit.
 */
import { cString, type FieldTable, readFields, setCString, u32, writeFields } from "./bytes.js";
import { crc32c } from "./crc32c.js";
import { Ext4FormatError } from "./errors.js";
import { COMPAT, INCOMPAT, RO_COMPAT } from "./features.js";

export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_SIZE = 1024;
export const EXT4_MAGIC = 0xef53;
/** Offset of s_checksum; the superblock checksum covers the bytes before it. */
export const SB_CHECKSUM_OFFSET = 0x3fc;

const FIELDS = [
  ["inodesCount", 0x0, "u32"],
  ["blocksCountLo", 0x4, "u32"],
  ["rBlocksCountLo", 0x8, "u32"],
  ["freeBlocksCountLo", 0xc, "u32"],
  ["freeInodesCount", 0x10, "u32"],
  ["firstDataBlock", 0x14, "u32"],
  ["logBlockSize", 0x18, "u32"],
  ["logClusterSize", 0x1c, "u32"],
  ["blocksPerGroup", 0x20, "u32"],
  ["clustersPerGroup", 0x24, "u32"],
  ["inodesPerGroup", 0x28, "u32"],
  ["mtime", 0x2c, "u32"],
  ["wtime", 0x30, "u32"],
  ["mntCount", 0x34, "u16"],
  ["maxMntCount", 0x36, "u16"],
  ["magic", 0x38, "u16"],
  ["state", 0x3a, "u16"],
  ["errors", 0x3c, "u16"],
  ["minorRevLevel", 0x3e, "u16"],
  ["lastcheck", 0x40, "u32"],
  ["checkinterval", 0x44, "u32"],
  ["creatorOs", 0x48, "u32"],
  ["revLevel", 0x4c, "u32"],
  ["defResuid", 0x50, "u16"],
  ["defResgid", 0x52, "u16"],
  ["firstIno", 0x54, "u32"],
  ["inodeSizeRaw", 0x58, "u16"],
  ["blockGroupNr", 0x5a, "u16"],
  ["featureCompat", 0x5c, "u32"],
  ["featureIncompat", 0x60, "u32"],
  ["featureRoCompat", 0x64, "u32"],
  ["algorithmUsageBitmap", 0xc8, "u32"],
  ["preallocBlocks", 0xcc, "u8"],
  ["preallocDirBlocks", 0xcd, "u8"],
  ["reservedGdtBlocks", 0xce, "u16"],
  ["journalInum", 0xe0, "u32"],
  ["journalDev", 0xe4, "u32"],
  ["lastOrphan", 0xe8, "u32"],
  ["hashSeed0", 0xec, "u32"],
  ["hashSeed1", 0xf0, "u32"],
  ["hashSeed2", 0xf4, "u32"],
  ["hashSeed3", 0xf8, "u32"],
  ["defHashVersion", 0xfc, "u8"],
  ["jnlBackupType", 0xfd, "u8"],
  ["descSizeRaw", 0xfe, "u16"],
  ["defaultMountOpts", 0x100, "u32"],
  ["firstMetaBg", 0x104, "u32"],
  ["mkfsTime", 0x108, "u32"],
  ["blocksCountHi", 0x150, "u32"],
  ["rBlocksCountHi", 0x154, "u32"],
  ["freeBlocksCountHi", 0x158, "u32"],
  ["minExtraIsize", 0x15c, "u16"],
  ["wantExtraIsize", 0x15e, "u16"],
  ["flags", 0x160, "u32"],
  ["raidStride", 0x164, "u16"],
  ["mmpInterval", 0x166, "u16"],
  ["mmpBlock", 0x168, "u64"],
  ["raidStripeWidth", 0x170, "u32"],
  ["logGroupsPerFlex", 0x174, "u8"],
  ["checksumType", 0x175, "u8"],
  ["encryptionLevel", 0x176, "u8"],
  ["kbytesWritten", 0x178, "u64"],
  ["snapshotInum", 0x180, "u32"],
  ["errorCount", 0x194, "u32"],
  ["usrQuotaInum", 0x240, "u32"],
  ["grpQuotaInum", 0x244, "u32"],
  ["overheadClusters", 0x248, "u32"],
  ["backupBgs0", 0x24c, "u32"],
  ["backupBgs1", 0x250, "u32"],
  ["lpfIno", 0x268, "u32"],
  ["prjQuotaInum", 0x26c, "u32"],
  ["checksumSeed", 0x270, "u32"],
  ["wtimeHi", 0x274, "u8"],
  ["mtimeHi", 0x275, "u8"],
  ["mkfsTimeHi", 0x276, "u8"],
  ["lastcheckHi", 0x277, "u8"],
  ["encoding", 0x27c, "u16"],
  ["encodingFlags", 0x27e, "u16"],
  ["orphanFileInum", 0x280, "u32"],
  ["checksum", 0x3fc, "u32"],
] as const satisfies FieldTable<string>;

export type SuperblockFieldName = (typeof FIELDS)[number][0];
export type SuperblockFields = Record<SuperblockFieldName, number>;

export interface Superblock extends SuperblockFields {
  /** The 1024 bytes this was parsed from (a private copy). */
  raw: Uint8Array;
  uuid: Uint8Array;
  journalUuid: Uint8Array;
  volumeName: string;
  lastMounted: string;
  /** s_jnl_blocks: i_block copy of the journal inode plus its size (17 words). */
  jnlBlocks: number[];
  // Derived geometry.
  blockSize: number;
  clusterSize: number;
  blocksCount: number;
  freeBlocksCount: number;
  rBlocksCount: number;
  inodeSize: number;
  descSize: number;
  groupCount: number;
  hashSeed: [number, number, number, number];
}

/** s_flags bits. */
export const SB_FLAGS = { signedHash: 0x1, unsignedHash: 0x2, testFs: 0x4 } as const;
/** s_state bits. */
export const SB_STATE = { valid: 0x1, error: 0x2, orphans: 0x4 } as const;

export function hasCompat(sb: Pick<Superblock, "featureCompat">, bit: number): boolean {
  return (sb.featureCompat & bit) !== 0;
}
export function hasIncompat(sb: Pick<Superblock, "featureIncompat">, bit: number): boolean {
  return (sb.featureIncompat & bit) !== 0;
}
export function hasRoCompat(sb: Pick<Superblock, "featureRoCompat">, bit: number): boolean {
  return (sb.featureRoCompat & bit) !== 0;
}
export function is64bit(sb: Pick<Superblock, "featureIncompat">): boolean {
  return hasIncompat(sb, INCOMPAT["64bit"]);
}
export function hasMetadataCsum(sb: Pick<Superblock, "featureRoCompat">): boolean {
  return hasRoCompat(sb, RO_COMPAT.metadata_csum);
}

/**
 * Parse and sanity-check a superblock. Throws Ext4FormatError on bad magic or impossible
 * geometry (so a garbage superblock cannot drive huge allocations later).
 */
export function parseSuperblock(
  bytes: Uint8Array,
  where: { file?: string; offset?: number } = {},
): Superblock {
  if (bytes.length < SUPERBLOCK_SIZE) {
    throw new Ext4FormatError("superblock is truncated", { ...where, structure: "superblock" });
  }
  const raw = bytes.slice(0, SUPERBLOCK_SIZE);
  const f = readFields(raw, 0, FIELDS);
  const loc = { ...where, structure: "superblock" };
  if (f.magic !== EXT4_MAGIC) {
    throw new Ext4FormatError(`bad magic 0x${f.magic.toString(16)} (not ext2/3/4)`, loc);
  }
  if (f.logBlockSize > 6) throw new Ext4FormatError(`block size 2^(10+${f.logBlockSize}) is invalid`, loc);
  const blockSize = 1024 << f.logBlockSize;
  const bigalloc = (f.featureRoCompat & RO_COMPAT.bigalloc) !== 0;
  if (bigalloc && (f.logClusterSize < f.logBlockSize || f.logClusterSize > 29)) {
    throw new Ext4FormatError(`cluster size 2^(10+${f.logClusterSize}) is invalid`, loc);
  }
  const clusterSize = bigalloc ? 1024 * 2 ** f.logClusterSize : blockSize;
  const b64 = (f.featureIncompat & INCOMPAT["64bit"]) !== 0;
  const blocksCount = f.blocksCountLo + (b64 ? f.blocksCountHi * 0x1_0000_0000 : 0);
  const freeBlocksCount = f.freeBlocksCountLo + (b64 ? f.freeBlocksCountHi * 0x1_0000_0000 : 0);
  const rBlocksCount = f.rBlocksCountLo + (b64 ? f.rBlocksCountHi * 0x1_0000_0000 : 0);
  const inodeSize = f.revLevel === 0 ? 128 : f.inodeSizeRaw;
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) {
    throw new Ext4FormatError(`inode size ${inodeSize} is invalid`, loc);
  }
  let descSize = 32;
  if (b64) {
    descSize = f.descSizeRaw;
    if (descSize < 32 || descSize > 1024 || (descSize & (descSize - 1)) !== 0 || descSize > blockSize) {
      throw new Ext4FormatError(`group descriptor size ${descSize} is invalid`, loc);
    }
  }
  if (f.blocksPerGroup === 0 || f.blocksPerGroup > blockSize * 8 * (clusterSize / blockSize)) {
    throw new Ext4FormatError(`blocks per group ${f.blocksPerGroup} is invalid`, loc);
  }
  if (f.inodesPerGroup === 0 || f.inodesPerGroup > blockSize * 8) {
    throw new Ext4FormatError(`inodes per group ${f.inodesPerGroup} is invalid`, loc);
  }
  if (f.firstDataBlock >= blocksCount || f.firstDataBlock > 1) {
    throw new Ext4FormatError(`first data block ${f.firstDataBlock} is invalid`, loc);
  }
  if (!Number.isSafeInteger(blocksCount * blockSize)) {
    throw new Ext4FormatError(`block count ${blocksCount} is too large`, loc);
  }
  const groupCount = Math.ceil((blocksCount - f.firstDataBlock) / f.blocksPerGroup);
  if (groupCount === 0 || groupCount * f.inodesPerGroup !== f.inodesCount) {
    throw new Ext4FormatError(
      `inode count ${f.inodesCount} does not match ${groupCount} groups × ${f.inodesPerGroup} inodes`,
      loc,
    );
  }
  if (f.revLevel > 0 && f.firstIno < 11)
    throw new Ext4FormatError(`first inode ${f.firstIno} is invalid`, loc);
  const jnlBlocks: number[] = [];
  for (let i = 0; i < 17; i++) jnlBlocks.push(u32(raw, 0x10c + 4 * i));
  return {
    ...f,
    raw,
    uuid: raw.slice(0x68, 0x78),
    journalUuid: raw.slice(0xd0, 0xe0),
    volumeName: cString(raw, 0x78, 16),
    lastMounted: cString(raw, 0x88, 64),
    jnlBlocks,
    blockSize,
    clusterSize,
    blocksCount,
    freeBlocksCount,
    rBlocksCount,
    inodeSize,
    descSize,
    groupCount,
    hashSeed: [f.hashSeed0, f.hashSeed1, f.hashSeed2, f.hashSeed3],
  };
}

/**
 * Serialise a superblock: the raw bytes it was parsed from, with every table field, the derived
 * 64-bit counts (split into lo/hi), UUIDs and names written back. Does not update the checksum
 * (call setSuperblockChecksum).
 */
export function encodeSuperblock(sb: Superblock): Uint8Array {
  const out = sb.raw.slice();
  const b64 = is64bit(sb);
  const split = (v: number) => [v >>> 0, b64 ? Math.floor(v / 0x1_0000_0000) >>> 0 : 0];
  const [bcLo, bcHi] = split(sb.blocksCount);
  const [fbLo, fbHi] = split(sb.freeBlocksCount);
  const [rbLo, rbHi] = split(sb.rBlocksCount);
  writeFields(out, 0, FIELDS, {
    ...sb,
    blocksCountLo: bcLo,
    blocksCountHi: b64 ? bcHi : sb.blocksCountHi,
    freeBlocksCountLo: fbLo,
    freeBlocksCountHi: b64 ? fbHi : sb.freeBlocksCountHi,
    rBlocksCountLo: rbLo,
    rBlocksCountHi: b64 ? rbHi : sb.rBlocksCountHi,
    hashSeed0: sb.hashSeed[0],
    hashSeed1: sb.hashSeed[1],
    hashSeed2: sb.hashSeed[2],
    hashSeed3: sb.hashSeed[3],
  });
  out.set(sb.uuid.subarray(0, 16), 0x68);
  out.set(sb.journalUuid.subarray(0, 16), 0xd0);
  setCString(out, 0x78, 16, sb.volumeName);
  setCString(out, 0x88, 64, sb.lastMounted);
  for (let i = 0; i < 17; i++)
    writeFields(out, 0x10c + 4 * i, [["v", 0, "u32"]], { v: sb.jnlBlocks[i] ?? 0 });
  return out;
}

/** crc32c(~0, bytes before s_checksum). */
export function superblockChecksum(raw: Uint8Array): number {
  return crc32c(0xffffffff, raw, 0, SB_CHECKSUM_OFFSET);
}

/** True when the stored checksum matches (always true without metadata_csum). */
export function verifySuperblockChecksum(raw: Uint8Array): boolean {
  const ro = u32(raw, 0x64);
  if ((ro & RO_COMPAT.metadata_csum) === 0) return true;
  return u32(raw, SB_CHECKSUM_OFFSET) === superblockChecksum(raw);
}

/** Store the checksum into encoded superblock bytes (no-op without metadata_csum). */
export function setSuperblockChecksum(raw: Uint8Array): void {
  if ((u32(raw, 0x64) & RO_COMPAT.metadata_csum) === 0) return;
  writeFields(raw, 0, [["c", SB_CHECKSUM_OFFSET, "u32"]], { c: superblockChecksum(raw) });
}

/** The seed for every other metadata checksum: s_checksum_seed, or crc32c(~0, uuid). */
export function checksumSeed(sb: Superblock): number {
  if (hasIncompat(sb, INCOMPAT.metadata_csum_seed)) return sb.checksumSeed;
  return crc32c(0xffffffff, sb.uuid);
}

/** Whether block group `g` holds a superblock/GDT backup (sparse_super, sparse_super2). */
export function groupHasSuperblock(sb: Superblock, g: number): boolean {
  if (g === 0) return true;
  if (hasCompat(sb, COMPAT.sparse_super2)) return g === sb.backupBgs0 || g === sb.backupBgs1;
  if (g <= 1 || !hasRoCompat(sb, RO_COMPAT.sparse_super)) return true;
  if ((g & 1) === 0) return false;
  return isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7);
}

function isPowerOf(n: number, base: number): boolean {
  let x = base;
  while (x < n) x *= base;
  return x === n;
}

/** First block of group g. */
export function groupFirstBlock(sb: Superblock, g: number): number {
  return sb.firstDataBlock + g * sb.blocksPerGroup;
}

/** Number of blocks in group g (the last group may be short). */
export function groupBlockCount(sb: Superblock, g: number): number {
  if (g === sb.groupCount - 1) return sb.blocksCount - groupFirstBlock(sb, g);
  return sb.blocksPerGroup;
}
