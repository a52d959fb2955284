/**
 * The on-disk inode (xfs_dinode): core decode and encode for versions 1, 2 and 3, the v3 CRC,
 * bigtime timestamps and the nrext64 extent counters. Forks are in fork.ts.
 *
 * | off | size | field                                  | off | size | field (v3 only)      |
 * |-----|------|----------------------------------------|-----|------|----------------------|
 * |   0 | 2    | magic "IN"                             |  96 | 4    | next_unlinked (v2+)  |
 * |   2 | 2    | mode                                   | 100 | 4    | crc (little-endian)  |
 * |   4 | 1    | version (1, 2, 3)                      | 104 | 8    | changecount          |
 * |   5 | 1    | format (data fork)                     | 112 | 8    | lsn                  |
 * |   6 | 2    | onlink (v1 link count)                 | 120 | 8    | flags2               |
 * |   8 | 4    | uid                                    | 128 | 4    | cowextsize           |
 * |  12 | 4    | gid                                    | 132 | 12   | pad                  |
 * |  16 | 4    | nlink (v2+)                            | 144 | 8    | crtime               |
 * |  20 | 2+2  | projid lo, hi                          | 152 | 8    | ino                  |
 * |  24 | 8    | big_nextents (nrext64) / pad+flushiter | 160 | 16   | uuid                 |
 * |  32 | 8×3  | atime, mtime, ctime                    |     |      |                      |
 * |  56 | 8    | size                                   |     |      |                      |
 * |  64 | 8    | nblocks                                |     |      |                      |
 * |  72 | 4    | extsize                                |     |      |                      |
 * |  76 | 4    | nextents / big_anextents (nrext64)     |     |      |                      |
 * |  80 | 2    | anextents / pad (nrext64)              |     |      |                      |
 * |  82 | 1    | forkoff (attr fork offset, 8-byte units)|    |      |                      |
 * |  83 | 1    | aformat                                |     |      |                      |
 * |  84 | 4+2  | dmevmask, dmstate                      |     |      |                      |
 * |  90 | 2    | flags                                  |     |      |                      |
 * |  92 | 4    | gen                                    |     |      |                      |
 * The literal area (forks) starts at 100 on v1/v2 inodes and at 176 on v3 inodes.
 * Timestamps: seconds (signed) + nanoseconds, or with bigtime one u64 of nanoseconds since
 * 1901-12-13T20:45:52Z (the Unix epoch minus 2^31 s).
 */
import { be16, be32, be64, be64big, le32, setBe16, setBe32, setBe64, setBe64big, setLe32 } from "./bytes.js";
import { XfsChecksumError, XfsFormatError, type XfsLocation } from "./errors.js";
import { sectorCrc } from "./sb.js";

export const XFS_DINODE_MAGIC = 0x494e; // "IN"
export const DINODE_CRC_OFFSET = 100;
export const V2_CORE_SIZE = 100;
export const V3_CORE_SIZE = 176;

// di_format / di_aformat.
export const FMT_DEV = 0;
export const FMT_LOCAL = 1;
export const FMT_EXTENTS = 2;
export const FMT_BTREE = 3;
export const FMT_UUID = 4;

// di_flags.
export const DIFLAG_REALTIME = 1 << 0;
export const DIFLAG_PREALLOC = 1 << 1;
export const DIFLAG_NEWRTBM = 1 << 2;
export const DIFLAG_IMMUTABLE = 1 << 3;
export const DIFLAG_APPEND = 1 << 4;
export const DIFLAG_SYNC = 1 << 5;
export const DIFLAG_NOATIME = 1 << 6;
export const DIFLAG_NODUMP = 1 << 7;
export const DIFLAG_RTINHERIT = 1 << 8;
export const DIFLAG_PROJINHERIT = 1 << 9;
export const DIFLAG_NOSYMLINKS = 1 << 10;
export const DIFLAG_EXTSIZE = 1 << 11;
export const DIFLAG_EXTSZINHERIT = 1 << 12;
export const DIFLAG_NODEFRAG = 1 << 13;
export const DIFLAG_FILESTREAM = 1 << 14;
// di_flags2.
export const DIFLAG2_DAX = 1n << 0n;
export const DIFLAG2_REFLINK = 1n << 1n;
export const DIFLAG2_COWEXTSIZE = 1n << 2n;
export const DIFLAG2_BIGTIME = 1n << 3n;
export const DIFLAG2_NREXT64 = 1n << 4n;

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

/** Seconds between the bigtime epoch and the Unix epoch (2^31). */
export const BIGTIME_EPOCH_OFFSET = 2 ** 31;

export interface XfsTimestamp {
  /** Seconds since the Unix epoch (may be negative). */
  sec: number;
  nsec: number;
}

/** Decoded inode core. Fork bytes stay in `raw` (see fork.ts). */
export interface XfsInode {
  ino: number;
  /** The whole on-disk inode (inodesize bytes, a private copy). */
  raw: Uint8Array;
  mode: number;
  version: number;
  format: number;
  uid: number;
  gid: number;
  nlink: number;
  projid: number;
  flushiter: number;
  atime: XfsTimestamp;
  mtime: XfsTimestamp;
  ctime: XfsTimestamp;
  size: number;
  nblocks: number;
  extsize: number;
  /** Data fork extent count. */
  nextents: number;
  /** Attribute fork extent count. */
  anextents: number;
  /** Attribute fork offset in 8-byte units from the literal area (0: no attribute fork). */
  forkoff: number;
  aformat: number;
  dmevmask: number;
  dmstate: number;
  flags: number;
  gen: number;
  nextUnlinked: number;
  // v3
  crc: number;
  changecount: bigint;
  lsn: bigint;
  flags2: bigint;
  cowextsize: number;
  crtime?: XfsTimestamp;
  /** di_ino as stored (v3). */
  storedIno: number;
  uuid?: Uint8Array;
}

export function isBigtime(inode: Pick<XfsInode, "version" | "flags2">): boolean {
  return inode.version >= 3 && (inode.flags2 & DIFLAG2_BIGTIME) !== 0n;
}
export function isNrext64(inode: Pick<XfsInode, "version" | "flags2">): boolean {
  return inode.version >= 3 && (inode.flags2 & DIFLAG2_NREXT64) !== 0n;
}

const NS = 1_000_000_000;

/**
 * A bigtime timestamp is a 64-bit count of nanoseconds; it is split into 16-bit steps so every
 * intermediate stays below 2^53 (exact in a double) without BigInt, which cost an allocation per
 * field on every inode load and store.
 */
function decodeTime(b: Uint8Array, off: number, bigtime: boolean): XfsTimestamp {
  if (bigtime) {
    const hi = be32(b, off);
    const lo = be32(b, off + 4);
    const r = hi % NS;
    const t = r * 65536 + (lo >>> 16);
    const rest = (t % NS) * 65536 + (lo & 0xffff);
    const sec = ((hi - r) / NS) * 2 ** 32 + Math.floor(t / NS) * 65536 + Math.floor(rest / NS);
    return { sec: sec - BIGTIME_EPOCH_OFFSET, nsec: rest % NS };
  }
  return { sec: be32(b, off) | 0, nsec: be32(b, off + 4) };
}

function encodeTime(b: Uint8Array, off: number, t: XfsTimestamp, bigtime: boolean): void {
  if (bigtime) {
    // ns = S·10^9 + nsec with S = sec + 2^31 < 2^34, built as mid·2^16 + low16.
    const s = t.sec + BIGTIME_EPOCH_OFFSET;
    const sl = s % 65536;
    const a = sl * NS + t.nsec;
    const mid = ((s - sl) / 65536) * NS + Math.floor(a / 65536);
    setBe32(b, off, Math.floor(mid / 65536));
    setBe32(b, off + 4, ((mid % 65536) * 65536 + (a % 65536)) >>> 0);
  } else {
    setBe32(b, off, t.sec >>> 0);
    setBe32(b, off + 4, t.nsec);
  }
}

/** Size of the inode core (where the literal area starts). */
export function coreSize(version: number): number {
  return version >= 3 ? V3_CORE_SIZE : V2_CORE_SIZE;
}

/**
 * Decodes an inode from `buf[off, off + inodeSize)`. Checks the magic, version against the
 * filesystem (v3 iff v5), the CRC and di_ino on v3; throws XfsFormatError/XfsChecksumError.
 */
export function decodeInode(
  buf: Uint8Array,
  off: number,
  inodeSize: number,
  ino: number,
  v5: boolean,
  where: XfsLocation = {},
): XfsInode {
  const raw = buf.slice(off, off + inodeSize);
  const at = { ...where, structure: "inode", inode: ino };
  if (raw.length < inodeSize) throw new XfsFormatError("inode buffer too short", at);
  const magic = be16(raw, 0);
  if (magic !== XFS_DINODE_MAGIC) throw new XfsFormatError(`bad inode magic 0x${magic.toString(16)}`, at);
  const version = raw[4];
  if (v5 ? version !== 3 : version !== 1 && version !== 2)
    throw new XfsFormatError(`inode version ${version} on a ${v5 ? "v5" : "v4"} filesystem`, at);
  let crc = 0;
  let storedIno = ino;
  if (version === 3) {
    crc = le32(raw, DINODE_CRC_OFFSET);
    const computed = sectorCrc(raw, inodeSize, DINODE_CRC_OFFSET);
    if (crc !== computed) throw new XfsChecksumError("inode CRC mismatch", crc, computed, at);
    storedIno = be64(raw, 152);
    if (storedIno !== ino) throw new XfsFormatError(`inode records number ${storedIno}`, at);
  }
  const flags2 = version === 3 ? be64big(raw, 120) : 0n;
  const bigtime = version === 3 && (flags2 & DIFLAG2_BIGTIME) !== 0n;
  const nrext64 = version === 3 && (flags2 & DIFLAG2_NREXT64) !== 0n;
  const inode: XfsInode = {
    ino,
    raw,
    mode: be16(raw, 2),
    version,
    format: raw[5],
    uid: be32(raw, 8),
    gid: be32(raw, 12),
    nlink: version === 1 ? be16(raw, 6) : be32(raw, 16),
    projid: version === 1 ? 0 : be16(raw, 20) | (be16(raw, 22) << 16),
    flushiter: nrext64 ? 0 : be16(raw, 30),
    atime: decodeTime(raw, 32, bigtime),
    mtime: decodeTime(raw, 40, bigtime),
    ctime: decodeTime(raw, 48, bigtime),
    size: be64(raw, 56),
    nblocks: be64(raw, 64),
    extsize: be32(raw, 72),
    nextents: nrext64 ? be64(raw, 24) : be32(raw, 76),
    anextents: nrext64 ? be32(raw, 76) : be16(raw, 80),
    forkoff: raw[82],
    aformat: raw[83],
    dmevmask: be32(raw, 84),
    dmstate: be16(raw, 88),
    flags: be16(raw, 90),
    gen: be32(raw, 92),
    nextUnlinked: version >= 2 ? be32(raw, 96) : 0xffffffff,
    crc,
    changecount: version === 3 ? be64big(raw, 104) : 0n,
    lsn: version === 3 ? be64big(raw, 112) : 0n,
    flags2,
    cowextsize: version === 3 ? be32(raw, 128) : 0,
    crtime: version === 3 ? decodeTime(raw, 144, bigtime) : undefined,
    storedIno,
    uuid: version === 3 ? raw.slice(160, 176) : undefined,
  };
  if (raw[1] === 0 && inode.mode === 0 && inode.format !== FMT_EXTENTS && inode.format !== FMT_DEV)
    throw new XfsFormatError(`free inode has data fork format ${inode.format}`, at);
  if (inode.size > Number.MAX_SAFE_INTEGER || inode.size < 0)
    throw new XfsFormatError("inode size out of range", at);
  const lit = inodeSize - coreSize(version);
  if (inode.forkoff * 8 >= lit)
    throw new XfsFormatError(`attribute fork offset ${inode.forkoff} too large`, at);
  return inode;
}

/**
 * Writes the core fields of `inode` into `buf[off, off + inodeSize)` (fork bytes are taken from
 * `inode.raw`, so a caller edits forks in `raw` first). On v3 stamps di_ino/uuid and the CRC.
 * `uuid` is the filesystem's metadata UUID.
 */
export function encodeInode(
  inode: XfsInode,
  buf: Uint8Array,
  off: number,
  inodeSize: number,
  uuid?: Uint8Array,
): void {
  const raw = inode.raw;
  const v = inode.version;
  const bigtime = isBigtime(inode);
  const nrext64 = isNrext64(inode);
  setBe16(raw, 0, XFS_DINODE_MAGIC);
  setBe16(raw, 2, inode.mode);
  raw[4] = v;
  raw[5] = inode.format;
  setBe16(raw, 6, v === 1 ? inode.nlink : 0);
  setBe32(raw, 8, inode.uid);
  setBe32(raw, 12, inode.gid);
  if (v >= 2) {
    setBe32(raw, 16, inode.nlink);
    setBe16(raw, 20, inode.projid & 0xffff);
    setBe16(raw, 22, inode.projid >>> 16);
  }
  if (nrext64) setBe64(raw, 24, inode.nextents);
  else {
    raw.fill(0, 24, 30);
    setBe16(raw, 30, inode.flushiter);
  }
  encodeTime(raw, 32, inode.atime, bigtime);
  encodeTime(raw, 40, inode.mtime, bigtime);
  encodeTime(raw, 48, inode.ctime, bigtime);
  setBe64(raw, 56, inode.size);
  setBe64(raw, 64, inode.nblocks);
  setBe32(raw, 72, inode.extsize);
  if (nrext64) {
    setBe32(raw, 76, inode.anextents);
    setBe16(raw, 80, 0);
  } else {
    setBe32(raw, 76, inode.nextents);
    setBe16(raw, 80, inode.anextents);
  }
  raw[82] = inode.forkoff;
  raw[83] = inode.aformat;
  setBe32(raw, 84, inode.dmevmask);
  setBe16(raw, 88, inode.dmstate);
  setBe16(raw, 90, inode.flags);
  setBe32(raw, 92, inode.gen);
  if (v >= 2) setBe32(raw, 96, inode.nextUnlinked);
  if (v === 3) {
    setBe64big(raw, 104, inode.changecount);
    setBe64big(raw, 112, inode.lsn);
    setBe64big(raw, 120, inode.flags2);
    setBe32(raw, 128, inode.cowextsize);
    raw.fill(0, 132, 144);
    encodeTime(raw, 144, inode.crtime ?? { sec: 0, nsec: 0 }, bigtime);
    setBe64(raw, 152, inode.ino);
    if (uuid) raw.set(uuid.subarray(0, 16), 160);
    const crc = sectorCrc(raw, inodeSize, DINODE_CRC_OFFSET);
    setLe32(raw, DINODE_CRC_OFFSET, crc);
    inode.crc = crc;
  }
  buf.set(raw.subarray(0, inodeSize), off);
}

/** Linux device number from the 32-bit XFS encoding in a device inode's data fork. */
export function decodeRdev(raw: Uint8Array, version: number): { major: number; minor: number } {
  const dev = be32(raw, coreSize(version));
  return { major: (dev >>> 18) & 0x3fff, minor: dev & 0x3ffff };
}

export function encodeRdev(major: number, minor: number): number {
  return ((major & 0x3fff) * 2 ** 18 + (minor & 0x3ffff)) >>> 0;
}
