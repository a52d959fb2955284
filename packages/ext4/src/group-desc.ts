/**
 * Block group descriptors: 32 bytes (classic) or s_desc_size bytes (64bit feature), packed into
 * the group descriptor table (GDT). With meta_bg the table is split into one block per meta
 * group, stored in that meta group's first, second and last group.
 */
import { type FieldTable, readFields, u16, writeFields } from "./bytes.js";
import { crc16 } from "./crc16.js";
import { crc32c, crc32cU32 } from "./crc32c.js";
import { INCOMPAT, RO_COMPAT } from "./features.js";
import {
  checksumSeed,
  groupFirstBlock,
  groupHasSuperblock,
  hasIncompat,
  hasRoCompat,
  type Superblock,
} from "./superblock.js";

const FIELDS_LO = [
  ["blockBitmapLo", 0x0, "u32"],
  ["inodeBitmapLo", 0x4, "u32"],
  ["inodeTableLo", 0x8, "u32"],
  ["freeBlocksCountLo", 0xc, "u16"],
  ["freeInodesCountLo", 0xe, "u16"],
  ["usedDirsCountLo", 0x10, "u16"],
  ["flags", 0x12, "u16"],
  ["excludeBitmapLo", 0x14, "u32"],
  ["blockBitmapCsumLo", 0x18, "u16"],
  ["inodeBitmapCsumLo", 0x1a, "u16"],
  ["itableUnusedLo", 0x1c, "u16"],
  ["checksum", 0x1e, "u16"],
] as const satisfies FieldTable<string>;

const FIELDS_HI = [
  ["blockBitmapHi", 0x20, "u32"],
  ["inodeBitmapHi", 0x24, "u32"],
  ["inodeTableHi", 0x28, "u32"],
  ["freeBlocksCountHi", 0x2c, "u16"],
  ["freeInodesCountHi", 0x2e, "u16"],
  ["usedDirsCountHi", 0x30, "u16"],
  ["itableUnusedHi", 0x32, "u16"],
  ["excludeBitmapHi", 0x34, "u32"],
  ["blockBitmapCsumHi", 0x38, "u16"],
  ["inodeBitmapCsumHi", 0x3a, "u16"],
] as const satisfies FieldTable<string>;

export const BG_FLAGS = { inodeUninit: 0x1, blockUninit: 0x2, itableZeroed: 0x4 } as const;
const BG_CHECKSUM_OFFSET = 0x1e;

/** A group descriptor with the lo/hi halves already combined. */
export interface GroupDesc {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  freeBlocksCount: number;
  freeInodesCount: number;
  usedDirsCount: number;
  flags: number;
  excludeBitmap: number;
  blockBitmapCsum: number;
  inodeBitmapCsum: number;
  itableUnused: number;
  checksum: number;
  /** The descriptor's bytes (desc_size long; a private copy). */
  raw: Uint8Array;
}

export function parseGroupDesc(bytes: Uint8Array, offset: number, descSize: number): GroupDesc {
  const raw = bytes.slice(offset, offset + descSize);
  const lo = readFields(raw, 0, FIELDS_LO);
  const big = descSize >= 64;
  const hi = big
    ? readFields(raw, 0, FIELDS_HI)
    : {
        blockBitmapHi: 0,
        inodeBitmapHi: 0,
        inodeTableHi: 0,
        freeBlocksCountHi: 0,
        freeInodesCountHi: 0,
        usedDirsCountHi: 0,
        itableUnusedHi: 0,
        excludeBitmapHi: 0,
        blockBitmapCsumHi: 0,
        inodeBitmapCsumHi: 0,
      };
  const join32 = (l: number, h: number) => l + h * 0x1_0000_0000;
  return {
    blockBitmap: join32(lo.blockBitmapLo, hi.blockBitmapHi),
    inodeBitmap: join32(lo.inodeBitmapLo, hi.inodeBitmapHi),
    inodeTable: join32(lo.inodeTableLo, hi.inodeTableHi),
    freeBlocksCount: lo.freeBlocksCountLo + hi.freeBlocksCountHi * 0x10000,
    freeInodesCount: lo.freeInodesCountLo + hi.freeInodesCountHi * 0x10000,
    usedDirsCount: lo.usedDirsCountLo + hi.usedDirsCountHi * 0x10000,
    flags: lo.flags,
    excludeBitmap: join32(lo.excludeBitmapLo, hi.excludeBitmapHi),
    blockBitmapCsum: lo.blockBitmapCsumLo + (big ? hi.blockBitmapCsumHi * 0x10000 : 0),
    inodeBitmapCsum: lo.inodeBitmapCsumLo + (big ? hi.inodeBitmapCsumHi * 0x10000 : 0),
    itableUnused: lo.itableUnusedLo + hi.itableUnusedHi * 0x10000,
    checksum: lo.checksum,
    raw,
  };
}

/** Serialise a descriptor over its raw bytes (checksum field written as stored in `gd.checksum`). */
export function encodeGroupDesc(gd: GroupDesc, descSize: number): Uint8Array {
  const out = new Uint8Array(descSize);
  out.set(gd.raw.subarray(0, descSize));
  const lo32 = (v: number) => v >>> 0;
  const hi32 = (v: number) => Math.floor(v / 0x1_0000_0000) >>> 0;
  writeFields(out, 0, FIELDS_LO, {
    blockBitmapLo: lo32(gd.blockBitmap),
    inodeBitmapLo: lo32(gd.inodeBitmap),
    inodeTableLo: lo32(gd.inodeTable),
    freeBlocksCountLo: gd.freeBlocksCount & 0xffff,
    freeInodesCountLo: gd.freeInodesCount & 0xffff,
    usedDirsCountLo: gd.usedDirsCount & 0xffff,
    flags: gd.flags,
    excludeBitmapLo: lo32(gd.excludeBitmap),
    blockBitmapCsumLo: gd.blockBitmapCsum & 0xffff,
    inodeBitmapCsumLo: gd.inodeBitmapCsum & 0xffff,
    itableUnusedLo: gd.itableUnused & 0xffff,
    checksum: gd.checksum,
  });
  if (descSize >= 64) {
    writeFields(out, 0, FIELDS_HI, {
      blockBitmapHi: hi32(gd.blockBitmap),
      inodeBitmapHi: hi32(gd.inodeBitmap),
      inodeTableHi: hi32(gd.inodeTable),
      freeBlocksCountHi: gd.freeBlocksCount >>> 16,
      freeInodesCountHi: gd.freeInodesCount >>> 16,
      usedDirsCountHi: gd.usedDirsCount >>> 16,
      itableUnusedHi: gd.itableUnused >>> 16,
      excludeBitmapHi: hi32(gd.excludeBitmap),
      blockBitmapCsumHi: gd.blockBitmapCsum >>> 16,
      inodeBitmapCsumHi: gd.inodeBitmapCsum >>> 16,
    });
  }
  return out;
}

/** Which checksum scheme protects group descriptors. */
export function groupDescCsumKind(sb: Superblock): "crc32c" | "crc16" | "none" {
  if (hasRoCompat(sb, RO_COMPAT.metadata_csum)) return "crc32c";
  if (hasRoCompat(sb, RO_COMPAT.gdt_csum)) return "crc16";
  return "none";
}

/**
 * Checksum of descriptor bytes `desc` (desc_size long) for group `g`: with metadata_csum the low
 * 16 bits of crc32c(seed, group, desc with checksum zeroed); with gdt_csum crc16 over uuid,
 * group and the descriptor minus its checksum field.
 */
export function groupDescChecksum(
  sb: Superblock,
  g: number,
  desc: Uint8Array,
  seed = checksumSeed(sb),
): number {
  const kind = groupDescCsumKind(sb);
  if (kind === "crc32c") {
    let c = crc32cU32(seed, g);
    c = crc32c(c, desc, 0, BG_CHECKSUM_OFFSET);
    c = crc32c(c, ZERO2);
    c = crc32c(c, desc, BG_CHECKSUM_OFFSET + 2, desc.length);
    return c & 0xffff;
  }
  if (kind === "crc16") {
    let c = crc16(0xffff, sb.uuid);
    const gb = new Uint8Array([g & 0xff, (g >>> 8) & 0xff, (g >>> 16) & 0xff, (g >>> 24) & 0xff]);
    c = crc16(c, gb);
    c = crc16(c, desc, 0, BG_CHECKSUM_OFFSET);
    if (desc.length > BG_CHECKSUM_OFFSET + 2) c = crc16(c, desc, BG_CHECKSUM_OFFSET + 2, desc.length);
    return c;
  }
  return 0;
}
const ZERO2 = new Uint8Array(2);

export function verifyGroupDesc(sb: Superblock, g: number, desc: Uint8Array, seed?: number): boolean {
  if (groupDescCsumKind(sb) === "none") return true;
  return u16(desc, BG_CHECKSUM_OFFSET) === groupDescChecksum(sb, g, desc, seed);
}

/** Compute and store the checksum into encoded descriptor bytes. */
export function setGroupDescChecksum(sb: Superblock, g: number, desc: Uint8Array, seed?: number): void {
  if (groupDescCsumKind(sb) === "none") return;
  writeFields(desc, 0, [["c", BG_CHECKSUM_OFFSET, "u16"]], { c: groupDescChecksum(sb, g, desc, seed) });
}

export function descsPerBlock(sb: Superblock): number {
  return sb.blockSize / sb.descSize;
}

export function gdtBlockCount(sb: Superblock): number {
  return Math.ceil(sb.groupCount / descsPerBlock(sb));
}

/** Block holding the primary superblock (byte 1024): 1 with 1 KiB blocks, else 0 — even when
 * s_first_data_block is 0 (bigalloc with 1 KiB blocks). */
export function primarySuperblockBlock(sb: Superblock): number {
  return Math.floor(1024 / sb.blockSize);
}

/**
 * Block number of GDT block `i`, for the copy next to the superblock at block `sbBlock`
 * (the primary: the block holding byte 1024; a backup: the first block of its group).
 */
export function gdtBlockLocation(sb: Superblock, i: number, sbBlock = primarySuperblockBlock(sb)): number {
  const metaBg = hasIncompat(sb, INCOMPAT.meta_bg);
  if (!metaBg || i < sb.firstMetaBg) return sbBlock + i + 1;
  const g = i * descsPerBlock(sb);
  let hasSuper = groupHasSuperblock(sb, g) ? 1 : 0;
  let blk = groupFirstBlock(sb, g);
  // Opened from a backup superblock, meta_bg descriptors are read from the meta group's second
  // group (as libext2fs does), whose own superblock backup may or may not be there.
  if (sbBlock !== primarySuperblockBlock(sb) && blk + hasSuper + sb.blocksPerGroup < sb.blocksCount) {
    blk += sb.blocksPerGroup;
    hasSuper = groupHasSuperblock(sb, g + 1) ? 1 : 0;
    return blk + hasSuper;
  }
  // With 1 KiB blocks and first_data_block 0 (bigalloc), block 0 holds the boot sector + superblock.
  const zeroAdjust = g === 0 && sb.blockSize === 1024 && sb.firstDataBlock === 0 ? 1 : 0;
  return blk + hasSuper + zeroAdjust;
}

/**
 * Every copy of meta_bg descriptor block `i` (i >= s_first_meta_bg): the first block after any
 * superblock backup in the first, second and last group of meta group i (those that exist).
 * The first is the primary.
 */
export function metaBgDescLocations(sb: Superblock, i: number): number[] {
  const per = descsPerBlock(sb);
  const out: number[] = [];
  for (const r of [0, 1, per - 1]) {
    const g = i * per + r;
    if (g >= sb.groupCount) continue;
    const zeroAdjust = g === 0 && sb.blockSize === 1024 && sb.firstDataBlock === 0 ? 1 : 0;
    const blk = groupFirstBlock(sb, g) + (groupHasSuperblock(sb, g) ? 1 : 0) + zeroAdjust;
    if (!out.includes(blk)) out.push(blk);
  }
  return out;
}

/** Checksum of a block/inode bitmap (metadata_csum): crc32c(seed, bitmap bytes). */
export function bitmapChecksum(seed: number, bitmap: Uint8Array, bytes: number): number {
  return crc32c(seed, bitmap, 0, bytes);
}

/** Bitmap checksums are stored as 16 bits in 32-byte descriptors and 32 bits in 64-byte ones. */
export function bitmapChecksumMatches(stored: number, computed: number, descSize: number): boolean {
  return descSize >= 64 ? stored === computed >>> 0 : stored === (computed & 0xffff);
}
