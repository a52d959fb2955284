/**
 * On-disk inodes: the 128-byte base, the extra fields up to 128 + i_extra_isize, and the in-inode
 * xattr area after that. Timestamps carry nanoseconds and two epoch bits that extend seconds past
 * 2038 (seconds = signed 32-bit base + epoch × 2^32).
 */
import { type FieldTable, isAllZero, u16, u32 } from "./bytes.js";
import { crc32c, crc32cU32 } from "./crc32c.js";
import { INODE_FLAGS } from "./features.js";

export const GOOD_OLD_INODE_SIZE = 128;

/** The base inode fields: [name, offset, type] (encodeInodeFields writes these offsets). */
export const INODE_BASE_FIELDS = [
  ["mode", 0x0, "u16"],
  ["uidLo", 0x2, "u16"],
  ["sizeLo", 0x4, "u32"],
  ["atimeRaw", 0x8, "u32"],
  ["ctimeRaw", 0xc, "u32"],
  ["mtimeRaw", 0x10, "u32"],
  ["dtime", 0x14, "u32"],
  ["gidLo", 0x18, "u16"],
  ["linksCount", 0x1a, "u16"],
  ["blocksLo", 0x1c, "u32"],
  ["flags", 0x20, "u32"],
  ["version", 0x24, "u32"],
  ["generation", 0x64, "u32"],
  ["fileAclLo", 0x68, "u32"],
  ["sizeHi", 0x6c, "u32"],
  ["blocksHi", 0x74, "u16"],
  ["fileAclHi", 0x76, "u16"],
  ["uidHi", 0x78, "u16"],
  ["gidHi", 0x7a, "u16"],
  ["checksumLo", 0x7c, "u16"],
] as const satisfies FieldTable<string>;

/** Extra fields: [name, offset, type]; present only when 128 + i_extra_isize covers them. */
export const INODE_EXTRA_FIELDS = [
  ["extraIsize", 0x80, "u16"],
  ["checksumHi", 0x82, "u16"],
  ["ctimeExtra", 0x84, "u32"],
  ["mtimeExtra", 0x88, "u32"],
  ["atimeExtra", 0x8c, "u32"],
  ["crtimeRaw", 0x90, "u32"],
  ["crtimeExtra", 0x94, "u32"],
  ["versionHi", 0x98, "u32"],
  ["projid", 0x9c, "u32"],
] as const satisfies FieldTable<string>;

export const I_BLOCK_OFFSET = 0x28;
export const I_BLOCK_SIZE = 60;
const CSUM_LO = 0x7c;
const CSUM_HI = 0x82;

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export interface Timestamp {
  /** Seconds since the Unix epoch (may be negative, may exceed 2^31 with the epoch bits). */
  sec: number;
  nsec: number;
}

export interface Inode {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linksCount: number;
  /** i_blocks as stored (units depend on huge_file / HUGE_FILE_FL; see inodeBlocks512). */
  blocksRaw: number;
  flags: number;
  generation: number;
  fileAcl: number;
  dtime: number;
  version: number;
  atime: Timestamp;
  mtime: Timestamp;
  ctime: Timestamp;
  /** Creation time, when the inode has room for it. */
  crtime?: Timestamp;
  extraIsize: number;
  projid?: number;
  /** The 60-byte i_block area (extent root, block map, inline data or fast symlink). */
  iBlock: Uint8Array;
  /** The whole on-disk inode (inode_size bytes; a private copy). */
  raw: Uint8Array;
}

/** Decode an (seconds, extra) pair: extra = nsec << 2 | epoch bits. */
export function decodeTime(secRaw: number, extra: number | undefined): Timestamp {
  const base = secRaw | 0; // signed 32-bit
  if (extra === undefined) return { sec: base, nsec: 0 };
  const epoch = extra & 3;
  return { sec: base + epoch * 0x1_0000_0000, nsec: extra >>> 2 };
}

/** Encode a timestamp into (seconds field, extra field). */
export function encodeTime(t: Timestamp): { raw: number; extra: number } {
  const epoch = Math.floor((t.sec + 0x8000_0000) / 0x1_0000_0000);
  const raw = (t.sec - epoch * 0x1_0000_0000) | 0;
  return { raw: raw >>> 0, extra: (((t.nsec & 0x3fffffff) << 2) | (epoch & 3)) >>> 0 };
}

function extraHas(extraIsize: number, off: number, size: number): boolean {
  return GOOD_OLD_INODE_SIZE + extraIsize >= off + size;
}

/**
 * Parse an inode from `bytes` (inode_size long). Does not verify the checksum (see
 * verifyInodeChecksum). Throws nothing: structural checks happen where fields are used.
 * With `copy` false, `raw` and `iBlock` alias `bytes` (for callers whose buffers never change).
 */
export function parseInode(ino: number, bytes: Uint8Array, inodeSize: number, copy = true): Inode {
  // Direct reads at the offsets of the BASE/EXTRA tables (this runs once per inode of a walk).
  const raw = copy ? bytes.slice(0, inodeSize) : bytes.subarray(0, inodeSize);
  let extraIsize = 0;
  if (inodeSize > GOOD_OLD_INODE_SIZE) {
    extraIsize = u16(raw, 0x80);
    // An extra size that overflows the inode (or is misaligned) is treated as absent.
    if (GOOD_OLD_INODE_SIZE + extraIsize > inodeSize || extraIsize & 3) extraIsize = 0;
  }
  // Extra fields exist when 128 + i_extra_isize covers them (0x84..0xa0: ctime..projid extras).
  const room = GOOD_OLD_INODE_SIZE + extraIsize;
  const crtimeRaw = room >= 0x94 ? u32(raw, 0x90) : undefined;
  return {
    ino,
    mode: u16(raw, 0x0),
    uid: (u16(raw, 0x2) | (u16(raw, 0x78) << 16)) >>> 0,
    gid: (u16(raw, 0x18) | (u16(raw, 0x7a) << 16)) >>> 0,
    size: u32(raw, 0x4) + u32(raw, 0x6c) * 0x1_0000_0000,
    linksCount: u16(raw, 0x1a),
    blocksRaw: u32(raw, 0x1c) + u16(raw, 0x74) * 0x1_0000_0000,
    flags: u32(raw, 0x20),
    generation: u32(raw, 0x64),
    fileAcl: u32(raw, 0x68) + u16(raw, 0x76) * 0x1_0000_0000,
    dtime: u32(raw, 0x14),
    version: u32(raw, 0x24),
    atime: decodeTime(u32(raw, 0x8), room >= 0x90 ? u32(raw, 0x8c) : undefined),
    mtime: decodeTime(u32(raw, 0x10), room >= 0x8c ? u32(raw, 0x88) : undefined),
    ctime: decodeTime(u32(raw, 0xc), room >= 0x88 ? u32(raw, 0x84) : undefined),
    crtime:
      crtimeRaw !== undefined ? decodeTime(crtimeRaw, room >= 0x98 ? u32(raw, 0x94) : undefined) : undefined,
    extraIsize,
    projid: room >= 0xa0 ? u32(raw, 0x9c) : undefined,
    iBlock: raw.subarray(I_BLOCK_OFFSET, I_BLOCK_OFFSET + I_BLOCK_SIZE),
    raw,
  };
}

/**
 * Serialise an inode over its raw bytes: every decoded field, timestamps (extra fields only
 * when the inode has room), i_block. Checksum is left as is (call setInodeChecksum).
 */
export function encodeInode(inode: Inode, inodeSize = inode.raw.length): Uint8Array {
  const out = new Uint8Array(inodeSize);
  out.set(inode.raw.subarray(0, inodeSize));
  encodeInodeFields(inode, out, 0, inodeSize);
  return out;
}

/**
 * Write an inode's decoded fields at `off` in `out` (the INODE_BASE_FIELDS/INODE_EXTRA_FIELDS tables' offsets, written
 * directly: this runs once per created inode). Bytes no field covers (in-inode xattrs, unused
 * space) are left as they are, so `out` may be the inode's own raw bytes.
 */
export function encodeInodeFields(inode: Inode, out: Uint8Array, off: number, inodeSize: number): void {
  // Through a DataView: its setters are builtins, fast even before the JIT has warmed up (an
  // edit encodes hundreds of inodes, each once, mostly in the interpreter).
  const v = new DataView(out.buffer, out.byteOffset + off, inodeSize);
  const sizeHi = Math.floor(inode.size / 0x1_0000_0000);
  const blocksHi = Math.floor(inode.blocksRaw / 0x1_0000_0000);
  const aclHi = Math.floor(inode.fileAcl / 0x1_0000_0000);
  v.setUint16(0x0, inode.mode, true); // mode
  v.setUint16(0x2, inode.uid & 0xffff, true); // uidLo
  v.setUint32(0x4, inode.size >>> 0, true); // sizeLo
  v.setUint32(0x8, timeRaw(inode.atime), true); // atimeRaw
  v.setUint32(0xc, timeRaw(inode.ctime), true); // ctimeRaw
  v.setUint32(0x10, timeRaw(inode.mtime), true); // mtimeRaw
  v.setUint32(0x14, inode.dtime, true); // dtime
  v.setUint16(0x18, inode.gid & 0xffff, true); // gidLo
  v.setUint16(0x1a, inode.linksCount, true); // linksCount
  v.setUint32(0x1c, inode.blocksRaw >>> 0, true); // blocksLo
  v.setUint32(0x20, inode.flags, true); // flags
  v.setUint32(0x24, inode.version, true); // version
  const ib = inode.iBlock;
  // Skipped when i_block is a view of these very bytes (a parsed or blank inode's own raw).
  if (ib.buffer !== out.buffer || ib.byteOffset !== out.byteOffset + off + I_BLOCK_OFFSET)
    out.set(ib.subarray(0, I_BLOCK_SIZE), off + I_BLOCK_OFFSET);
  v.setUint32(0x64, inode.generation, true); // generation
  v.setUint32(0x68, inode.fileAcl >>> 0, true); // fileAclLo
  v.setUint32(0x6c, sizeHi >>> 0, true); // sizeHi
  v.setUint16(0x74, blocksHi & 0xffff, true); // blocksHi
  v.setUint16(0x76, aclHi & 0xffff, true); // fileAclHi
  v.setUint16(0x78, inode.uid >>> 16, true); // uidHi
  v.setUint16(0x7a, inode.gid >>> 16, true); // gidHi
  if (inodeSize <= GOOD_OLD_INODE_SIZE) return;
  const ex = inode.extraIsize;
  v.setUint16(0x80, ex, true); // extraIsize
  if (extraHas(ex, 0x84, 4)) v.setUint32(0x84, timeExtra(inode.ctime), true); // ctimeExtra
  if (extraHas(ex, 0x88, 4)) v.setUint32(0x88, timeExtra(inode.mtime), true); // mtimeExtra
  if (extraHas(ex, 0x8c, 4)) v.setUint32(0x8c, timeExtra(inode.atime), true); // atimeExtra
  if (inode.crtime && extraHas(ex, 0x94, 4)) {
    v.setUint32(0x90, timeRaw(inode.crtime), true); // crtimeRaw
    v.setUint32(0x94, timeExtra(inode.crtime), true); // crtimeExtra
  }
  if (inode.projid !== undefined && extraHas(ex, 0x9c, 4)) v.setUint32(0x9c, inode.projid, true); // projid
}

/** encodeTime's two halves without the pair object. */
function timeEpoch(t: Timestamp): number {
  return Math.floor((t.sec + 0x8000_0000) / 0x1_0000_0000);
}
function timeRaw(t: Timestamp): number {
  return (t.sec - timeEpoch(t) * 0x1_0000_0000) >>> 0;
}
function timeExtra(t: Timestamp): number {
  return (((t.nsec & 0x3fffffff) << 2) | (timeEpoch(t) & 3)) >>> 0;
}

function hasCsumHi(raw: Uint8Array): boolean {
  if (raw.length <= GOOD_OLD_INODE_SIZE) return false;
  const ex = u16(raw, 0x80);
  return GOOD_OLD_INODE_SIZE + ex <= raw.length && extraHas(ex, CSUM_HI, 2);
}

/** Per-inode checksum seed: crc32c(fs seed, inode number, generation). Also seeds extent/dir/xattr-in-inode checksums. */
export function inodeChecksumSeed(fsSeed: number, ino: number, generation: number): number {
  return crc32cU32(crc32cU32(fsSeed, ino), generation);
}

/** crc32c over the whole inode with both checksum fields taken as zero. */
export function inodeChecksum(fsSeed: number, ino: number, raw: Uint8Array): number {
  const gen = u32(raw, 0x64);
  const hi = hasCsumHi(raw);
  let c = crc32c(inodeChecksumSeed(fsSeed, ino, gen), raw, 0, CSUM_LO);
  c = crc32c(c, ZERO2);
  if (hi) {
    c = crc32c(c, raw, CSUM_LO + 2, CSUM_HI);
    c = crc32c(c, ZERO2);
    c = crc32c(c, raw, CSUM_HI + 2, raw.length);
  } else c = crc32c(c, raw, CSUM_LO + 2, raw.length);
  return hi ? c >>> 0 : c & 0xffff;
}
const ZERO2 = new Uint8Array(2);

export function storedInodeChecksum(raw: Uint8Array): number {
  const lo = u16(raw, CSUM_LO);
  return hasCsumHi(raw) ? (lo | (u16(raw, CSUM_HI) << 16)) >>> 0 : lo;
}

export function verifyInodeChecksum(fsSeed: number, ino: number, raw: Uint8Array): boolean {
  return storedInodeChecksum(raw) === inodeChecksum(fsSeed, ino, raw);
}

/**
 * The stored and computed checksums of an inode's bytes when they differ, else undefined (an
 * all-zero inode — never written — has no checksum to hold).
 */
export function inodeChecksumMismatch(
  fsSeed: number,
  ino: number,
  raw: Uint8Array,
): { stored: number; computed: number } | undefined {
  const stored = storedInodeChecksum(raw);
  const computed = inodeChecksum(fsSeed, ino, raw);
  if (stored === computed || isAllZero(raw)) return undefined;
  return { stored, computed };
}

export function setInodeChecksum(fsSeed: number, ino: number, raw: Uint8Array): void {
  const c = inodeChecksum(fsSeed, ino, raw);
  raw[CSUM_LO] = c & 0xff;
  raw[CSUM_LO + 1] = (c >>> 8) & 0xff;
  if (hasCsumHi(raw)) {
    raw[CSUM_HI] = (c >>> 16) & 0xff;
    raw[CSUM_HI + 1] = (c >>> 24) & 0xff;
  }
}

/** i_blocks in 512-byte units (the stat st_blocks unit). */
export function inodeBlocks512(inode: Inode, hugeFileFeature: boolean, blockSize: number): number {
  if (!hugeFileFeature) return inode.blocksRaw % 0x1_0000_0000;
  if (inode.flags & INODE_FLAGS.HUGE_FILE) return inode.blocksRaw * (blockSize / 512);
  return inode.blocksRaw;
}

/** Offset inside the inode where the in-inode xattr area starts (after the extra fields). */
export function inodeXattrOffset(inode: Inode): number {
  return GOOD_OLD_INODE_SIZE + inode.extraIsize;
}

export function fileType(mode: number): number {
  return mode & S_IFMT;
}
