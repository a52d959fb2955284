/**
 * The XFS superblock (sector 0 of every AG; AG 0's copy is the primary), its feature sets, and the
 * geometry every other module converts addresses with.
 *
 * On-disk layout (big-endian except sb_crc; v5 fields from offset 208):
 * | off | size | field              | off | size | field                  |
 * |-----|------|--------------------|-----|------|------------------------|
 * |   0 | 4    | magicnum "XFSB"    | 128 | 8    | icount                 |
 * |   4 | 4    | blocksize          | 136 | 8    | ifree                  |
 * |   8 | 8    | dblocks            | 144 | 8    | fdblocks               |
 * |  16 | 8    | rblocks            | 152 | 8    | frextents              |
 * |  24 | 8    | rextents           | 160 | 8    | uquotino               |
 * |  32 | 16   | uuid               | 168 | 8    | gquotino               |
 * |  48 | 8    | logstart (fsblock) | 176 | 2    | qflags                 |
 * |  56 | 8    | rootino            | 178 | 1    | flags                  |
 * |  64 | 8    | rbmino             | 179 | 1    | shared_vn              |
 * |  72 | 8    | rsumino            | 180 | 4    | inoalignmt             |
 * |  80 | 4    | rextsize           | 184 | 4    | unit                   |
 * |  84 | 4    | agblocks           | 188 | 4    | width                  |
 * |  88 | 4    | agcount            | 192 | 1    | dirblklog              |
 * |  92 | 4    | rbmblocks          | 193 | 1    | logsectlog             |
 * |  96 | 4    | logblocks          | 194 | 2    | logsectsize            |
 * | 100 | 2    | versionnum         | 196 | 4    | logsunit               |
 * | 102 | 2    | sectsize           | 200 | 4    | features2              |
 * | 104 | 2    | inodesize          | 204 | 4    | bad_features2          |
 * | 106 | 2    | inopblock          | 208 | 4    | features_compat        |
 * | 108 | 12   | fname              | 212 | 4    | features_ro_compat     |
 * | 120 | 1    | blocklog           | 216 | 4    | features_incompat      |
 * | 121 | 1    | sectlog            | 220 | 4    | features_log_incompat  |
 * | 122 | 1    | inodelog           | 224 | 4    | crc (little-endian)    |
 * | 123 | 1    | inopblog           | 228 | 4    | spino_align            |
 * | 124 | 1    | agblklog           | 232 | 8    | pquotino               |
 * | 125 | 1    | rextslog           | 240 | 8    | lsn                    |
 * | 126 | 1    | inprogress         | 248 | 16   | meta_uuid              |
 * | 127 | 1    | imax_pct           |     |      |                        |
 * The v5 CRC covers one sector (sb_sectsize) with the crc field taken as zero.
 */
import { crc32c } from "@imgpatch/disk";
import { be16, be32, be64, be64big, le32, setBe16, setBe32, setBe64, setBe64big, setLe32 } from "./bytes.js";
import { XfsChecksumError, XfsFormatError, type XfsLocation, XfsUnsupportedError } from "./errors.js";

export const XFS_SB_MAGIC = 0x58465342; // "XFSB"
export const SB_CRC_OFFSET = 224;
/** Bytes of the superblock structure that carry fields (the rest of the sector is zero). */
export const SB_STRUCT_SIZE = 264;
/** NULLFSINO / NULLFSBLOCK / NULLAGBLOCK: "no such inode / block" sentinels. */
export const NULL_INO = 0xffff_ffff_ffff_ffffn;
export const NULL_AGBLOCK = 0xffff_ffff;

// sb_versionnum bits.
export const VERSION_NUMBITS = 0x000f;
export const VERSION_ATTRBIT = 0x0010;
export const VERSION_NLINKBIT = 0x0020;
export const VERSION_QUOTABIT = 0x0040;
export const VERSION_ALIGNBIT = 0x0080;
export const VERSION_DALIGNBIT = 0x0100;
export const VERSION_SHAREDBIT = 0x0200;
export const VERSION_LOGV2BIT = 0x0400;
export const VERSION_SECTORBIT = 0x0800;
export const VERSION_EXTFLGBIT = 0x1000;
export const VERSION_DIRV2BIT = 0x2000;
/** ASCII case-insensitive directory names (`mkfs.xfs -n version=ci`). */
export const VERSION_BORGBIT = 0x4000;
export const VERSION_MOREBITSBIT = 0x8000;
const VERSION_OKBITS = 0xffff & ~VERSION_SHAREDBIT;

// sb_features2 bits (v4; v5 implies lazy counters, attr2, projid32 and ftype via incompat).
export const FEATURES2_LAZYSBCOUNT = 0x0002;
export const FEATURES2_ATTR2 = 0x0008;
export const FEATURES2_PARENT = 0x0010;
export const FEATURES2_PROJID32 = 0x0080;
export const FEATURES2_CRC = 0x0100;
export const FEATURES2_FTYPE = 0x0200;
const FEATURES2_OKBITS = FEATURES2_LAZYSBCOUNT | FEATURES2_ATTR2 | FEATURES2_PROJID32 | FEATURES2_FTYPE;

// v5 feature masks.
export const RO_COMPAT_FINOBT = 1 << 0;
export const RO_COMPAT_RMAPBT = 1 << 1;
export const RO_COMPAT_REFLINK = 1 << 2;
export const RO_COMPAT_INOBTCNT = 1 << 3;
const RO_COMPAT_KNOWN = 0xf;
export const INCOMPAT_FTYPE = 1 << 0;
export const INCOMPAT_SPINODES = 1 << 1;
export const INCOMPAT_META_UUID = 1 << 2;
export const INCOMPAT_BIGTIME = 1 << 3;
export const INCOMPAT_NEEDSREPAIR = 1 << 4;
export const INCOMPAT_NREXT64 = 1 << 5;
const INCOMPAT_KNOWN = 0x3f;
export const LOG_INCOMPAT_XATTRS = 1 << 0;
const LOG_INCOMPAT_KNOWN = 0x1;

/** Decoded superblock fields (names follow the on-disk ones without the `sb_` prefix). */
export interface XfsSuperblock {
  magicnum: number;
  blocksize: number;
  dblocks: number;
  rblocks: number;
  rextents: number;
  uuid: Uint8Array;
  logstart: number;
  rootino: number;
  rbmino: bigint;
  rsumino: bigint;
  rextsize: number;
  agblocks: number;
  agcount: number;
  rbmblocks: number;
  logblocks: number;
  versionnum: number;
  sectsize: number;
  inodesize: number;
  inopblock: number;
  fname: Uint8Array;
  blocklog: number;
  sectlog: number;
  inodelog: number;
  inopblog: number;
  agblklog: number;
  rextslog: number;
  inprogress: number;
  imaxPct: number;
  icount: number;
  ifree: number;
  fdblocks: number;
  frextents: number;
  uquotino: bigint;
  gquotino: bigint;
  qflags: number;
  flags: number;
  sharedVn: number;
  inoalignmt: number;
  unit: number;
  width: number;
  dirblklog: number;
  logsectlog: number;
  logsectsize: number;
  logsunit: number;
  features2: number;
  badFeatures2: number;
  featuresCompat: number;
  featuresRoCompat: number;
  featuresIncompat: number;
  featuresLogIncompat: number;
  crc: number;
  spinoAlign: number;
  pquotino: bigint;
  lsn: bigint;
  metaUuid: Uint8Array;
}

/** Decodes the superblock fields from the first 264 bytes of `buf` (no validation). */
export function decodeSuperblock(buf: Uint8Array): XfsSuperblock {
  if (buf.length < SB_STRUCT_SIZE) throw new XfsFormatError("superblock buffer too short");
  return {
    magicnum: be32(buf, 0),
    blocksize: be32(buf, 4),
    dblocks: be64(buf, 8),
    rblocks: be64(buf, 16),
    rextents: be64(buf, 24),
    uuid: buf.slice(32, 48),
    logstart: be64(buf, 48),
    rootino: be64(buf, 56),
    rbmino: be64big(buf, 64),
    rsumino: be64big(buf, 72),
    rextsize: be32(buf, 80),
    agblocks: be32(buf, 84),
    agcount: be32(buf, 88),
    rbmblocks: be32(buf, 92),
    logblocks: be32(buf, 96),
    versionnum: be16(buf, 100),
    sectsize: be16(buf, 102),
    inodesize: be16(buf, 104),
    inopblock: be16(buf, 106),
    fname: buf.slice(108, 120),
    blocklog: buf[120],
    sectlog: buf[121],
    inodelog: buf[122],
    inopblog: buf[123],
    agblklog: buf[124],
    rextslog: buf[125],
    inprogress: buf[126],
    imaxPct: buf[127],
    icount: be64(buf, 128),
    ifree: be64(buf, 136),
    fdblocks: be64(buf, 144),
    frextents: be64(buf, 152),
    uquotino: be64big(buf, 160),
    gquotino: be64big(buf, 168),
    qflags: be16(buf, 176),
    flags: buf[178],
    sharedVn: buf[179],
    inoalignmt: be32(buf, 180),
    unit: be32(buf, 184),
    width: be32(buf, 188),
    dirblklog: buf[192],
    logsectlog: buf[193],
    logsectsize: be16(buf, 194),
    logsunit: be32(buf, 196),
    features2: be32(buf, 200),
    badFeatures2: be32(buf, 204),
    featuresCompat: be32(buf, 208),
    featuresRoCompat: be32(buf, 212),
    featuresIncompat: be32(buf, 216),
    featuresLogIncompat: be32(buf, 220),
    crc: le32(buf, 224),
    spinoAlign: be32(buf, 228),
    pquotino: be64big(buf, 232),
    lsn: be64big(buf, 240),
    metaUuid: buf.slice(248, 264),
  };
}

/**
 * Writes every field of `sb` into `buf` (one sector; bytes past the structure are left as they
 * are) and, on v5, recomputes the CRC over the sector.
 */
export function encodeSuperblock(sb: XfsSuperblock, buf: Uint8Array): void {
  setBe32(buf, 0, sb.magicnum);
  setBe32(buf, 4, sb.blocksize);
  setBe64(buf, 8, sb.dblocks);
  setBe64(buf, 16, sb.rblocks);
  setBe64(buf, 24, sb.rextents);
  buf.set(sb.uuid.subarray(0, 16), 32);
  setBe64(buf, 48, sb.logstart);
  setBe64(buf, 56, sb.rootino);
  setBe64big(buf, 64, sb.rbmino);
  setBe64big(buf, 72, sb.rsumino);
  setBe32(buf, 80, sb.rextsize);
  setBe32(buf, 84, sb.agblocks);
  setBe32(buf, 88, sb.agcount);
  setBe32(buf, 92, sb.rbmblocks);
  setBe32(buf, 96, sb.logblocks);
  setBe16(buf, 100, sb.versionnum);
  setBe16(buf, 102, sb.sectsize);
  setBe16(buf, 104, sb.inodesize);
  setBe16(buf, 106, sb.inopblock);
  buf.set(sb.fname.subarray(0, 12), 108);
  buf[120] = sb.blocklog;
  buf[121] = sb.sectlog;
  buf[122] = sb.inodelog;
  buf[123] = sb.inopblog;
  buf[124] = sb.agblklog;
  buf[125] = sb.rextslog;
  buf[126] = sb.inprogress;
  buf[127] = sb.imaxPct;
  setBe64(buf, 128, sb.icount);
  setBe64(buf, 136, sb.ifree);
  setBe64(buf, 144, sb.fdblocks);
  setBe64(buf, 152, sb.frextents);
  setBe64big(buf, 160, sb.uquotino);
  setBe64big(buf, 168, sb.gquotino);
  setBe16(buf, 176, sb.qflags);
  buf[178] = sb.flags;
  buf[179] = sb.sharedVn;
  setBe32(buf, 180, sb.inoalignmt);
  setBe32(buf, 184, sb.unit);
  setBe32(buf, 188, sb.width);
  buf[192] = sb.dirblklog;
  buf[193] = sb.logsectlog;
  setBe16(buf, 194, sb.logsectsize);
  setBe32(buf, 196, sb.logsunit);
  setBe32(buf, 200, sb.features2);
  setBe32(buf, 204, sb.badFeatures2);
  if ((sb.versionnum & VERSION_NUMBITS) === 5) {
    setBe32(buf, 208, sb.featuresCompat);
    setBe32(buf, 212, sb.featuresRoCompat);
    setBe32(buf, 216, sb.featuresIncompat);
    setBe32(buf, 220, sb.featuresLogIncompat);
    setBe32(buf, 228, sb.spinoAlign);
    setBe64big(buf, 232, sb.pquotino);
    setBe64big(buf, 240, sb.lsn);
    buf.set(sb.metaUuid.subarray(0, 16), 248);
    const crc = sectorCrc(buf, sb.sectsize, SB_CRC_OFFSET);
    setLe32(buf, SB_CRC_OFFSET, crc);
    sb.crc = crc;
  }
}

/**
 * XFS metadata CRC: crc32c seeded with ~0 over `len` bytes with the 4-byte crc field at `crcOff`
 * taken as zero, stored inverted (little-endian). Shared by every v5 structure.
 */
export function sectorCrc(buf: Uint8Array, len: number, crcOff: number): number {
  let c = crc32c(0xffffffff, buf, 0, crcOff);
  c = crc32c(c, ZERO4, 0, 4);
  c = crc32c(c, buf, crcOff + 4, len);
  return (c ^ 0xffffffff) >>> 0;
}
const ZERO4 = new Uint8Array(4);

/** True when the stored little-endian CRC at `crcOff` matches the bytes `[0, len)`. */
export function crcMatches(buf: Uint8Array, len: number, crcOff: number): boolean {
  if (len === buf.length && sealedCopies.has(buf)) return true;
  return le32(buf, crcOff) === sectorCrc(buf, len, crcOff);
}

/**
 * Copies of whole metadata blocks that the editor's buffer cache holds changed (see CacheView):
 * their CRC is the cache's to stamp at commit, and checking it would only recompute what it writes.
 */
const sealedCopies = new WeakSet<Uint8Array>();
export function vouchSealedCopy(buf: Uint8Array): void {
  sealedCopies.add(buf);
}

/** Feature set of a filesystem, v4 and v5 folded into one view. */
export interface XfsFeatures {
  /** v5: metadata CRCs, UUID/owner/blkno/LSN in every metadata block, v3 inodes. */
  crc: boolean;
  ftype: boolean;
  finobt: boolean;
  sparseInodes: boolean;
  reflink: boolean;
  rmapbt: boolean;
  bigtime: boolean;
  inobtcount: boolean;
  nrext64: boolean;
  metaUuid: boolean;
  needsRepair: boolean;
  /** ASCII case-insensitive names (version=ci). */
  asciiCi: boolean;
  attr: boolean;
  attr2: boolean;
  lazyCount: boolean;
  projid32: boolean;
  quota: boolean;
  logv2: boolean;
  realtime: boolean;
  externalLog: boolean;
  /** Log-incompat bits set (logged xattrs): the log must be recovered by a kernel first. */
  logIncompat: number;
}

export function featuresOf(sb: XfsSuperblock): XfsFeatures {
  const v5 = (sb.versionnum & VERSION_NUMBITS) === 5;
  const more = (sb.versionnum & VERSION_MOREBITSBIT) !== 0;
  // Old kernels wrote features2 at the misaligned bad_features2 slot; the kernel ORs the two.
  const f2 = more ? (sb.features2 | sb.badFeatures2) >>> 0 : 0;
  const ro = v5 ? sb.featuresRoCompat : 0;
  const inc = v5 ? sb.featuresIncompat : 0;
  return {
    crc: v5,
    ftype: v5 ? (inc & INCOMPAT_FTYPE) !== 0 : (f2 & FEATURES2_FTYPE) !== 0,
    finobt: (ro & RO_COMPAT_FINOBT) !== 0,
    sparseInodes: (inc & INCOMPAT_SPINODES) !== 0,
    reflink: (ro & RO_COMPAT_REFLINK) !== 0,
    rmapbt: (ro & RO_COMPAT_RMAPBT) !== 0,
    bigtime: (inc & INCOMPAT_BIGTIME) !== 0,
    inobtcount: (ro & RO_COMPAT_INOBTCNT) !== 0,
    nrext64: (inc & INCOMPAT_NREXT64) !== 0,
    metaUuid: (inc & INCOMPAT_META_UUID) !== 0,
    needsRepair: (inc & INCOMPAT_NEEDSREPAIR) !== 0,
    asciiCi: (sb.versionnum & VERSION_BORGBIT) !== 0,
    attr: v5 || (sb.versionnum & VERSION_ATTRBIT) !== 0,
    attr2: v5 || (f2 & FEATURES2_ATTR2) !== 0,
    lazyCount: v5 || (f2 & FEATURES2_LAZYSBCOUNT) !== 0,
    projid32: v5 || (f2 & FEATURES2_PROJID32) !== 0,
    quota: (sb.versionnum & VERSION_QUOTABIT) !== 0,
    logv2: v5 || (sb.versionnum & VERSION_LOGV2BIT) !== 0,
    realtime: sb.rblocks !== 0,
    externalLog: sb.logstart === 0,
    logIncompat: v5 ? sb.featuresLogIncompat : 0,
  };
}

/** What a filesystem allows this package to do, decided from its feature bits alone. */
export interface XfsAccess {
  /** Why writes are refused (unknown ro_compat bits, realtime, external log), or undefined. */
  writeRefusal?: { feature: string; reason: string };
}

/**
 * Checks the feature masks: unknown incompat bits, `needsrepair` and unknown log-incompat bits
 * refuse the filesystem outright (XfsUnsupportedError); unknown ro_compat bits, a realtime
 * subvolume or an external log make it read-only.
 */
export function checkFeatures(sb: XfsSuperblock, where: XfsLocation = {}): XfsAccess {
  const at = { ...where, structure: "superblock" };
  const f = featuresOf(sb);
  if (f.crc) {
    const unknown = sb.featuresIncompat & ~INCOMPAT_KNOWN;
    if (unknown)
      throw new XfsUnsupportedError(
        `incompat:0x${unknown.toString(16)}`,
        `unknown incompatible feature bits 0x${unknown.toString(16)}`,
        at,
      );
    if (f.needsRepair)
      throw new XfsUnsupportedError(
        "needsrepair",
        "the filesystem is marked as needing repair; run xfs_repair on it first",
        at,
      );
    const unknownLog = sb.featuresLogIncompat & ~LOG_INCOMPAT_KNOWN;
    if (unknownLog)
      throw new XfsUnsupportedError(
        `log-incompat:0x${unknownLog.toString(16)}`,
        `unknown log-incompatible feature bits 0x${unknownLog.toString(16)}`,
        at,
      );
    const unknownRo = sb.featuresRoCompat & ~RO_COMPAT_KNOWN;
    if (unknownRo)
      return {
        writeRefusal: {
          feature: `ro-compat:0x${unknownRo.toString(16)}`,
          reason: `unknown read-only-compatible feature bits 0x${unknownRo.toString(16)}`,
        },
      };
  }
  if (f.realtime)
    return { writeRefusal: { feature: "realtime", reason: "the filesystem has a realtime subvolume" } };
  if (f.externalLog)
    return { writeRefusal: { feature: "external-log", reason: "the filesystem has an external log" } };
  return {};
}

/**
 * Validates the superblock like the kernel's mount-time checks (geometry consistent, version
 * supported) and its CRC on v5. Throws XfsFormatError / XfsChecksumError / XfsUnsupportedError.
 * `sector` is the raw sector the superblock was decoded from (for the CRC).
 */
export function validateSuperblock(sb: XfsSuperblock, sector: Uint8Array, where: XfsLocation = {}): void {
  const at = { ...where, structure: where.structure ?? "superblock" };
  const bad = (msg: string): never => {
    throw new XfsFormatError(msg, at);
  };
  if (sb.magicnum !== XFS_SB_MAGIC) bad(`bad magic 0x${sb.magicnum.toString(16)} (not XFS)`);
  const version = sb.versionnum & VERSION_NUMBITS;
  if (version !== 4 && version !== 5)
    throw new XfsUnsupportedError(`version:${version}`, `superblock version ${version} is not supported`, at);
  if (version === 4) {
    if (sb.versionnum & ~VERSION_OKBITS) bad("unknown v4 version bits");
    if (sb.versionnum & VERSION_MOREBITSBIT && (sb.features2 | sb.badFeatures2) & ~FEATURES2_OKBITS)
      throw new XfsUnsupportedError(
        `features2:0x${(sb.features2 & ~FEATURES2_OKBITS).toString(16)}`,
        "unknown v4 features2 bits",
        at,
      );
    if (!(sb.versionnum & VERSION_DIRV2BIT)) bad("v4 filesystem without v2 directories");
    if (!(sb.versionnum & VERSION_EXTFLGBIT)) bad("v4 filesystem without unwritten-extent support");
  }
  if (sb.sectlog < 9 || sb.sectlog > 15 || sb.sectsize !== 1 << sb.sectlog) bad("bad sector size");
  if (sb.blocklog < 9 || sb.blocklog > 16 || sb.blocksize !== 2 ** sb.blocklog) bad("bad block size");
  if (version === 5 && sb.blocksize < 1024) bad("block size below 1024 on a v5 filesystem");
  if (sb.blocksize < sb.sectsize) bad("block size smaller than sector size");
  if (sb.dirblklog + sb.blocklog > 16) bad("directory block size above 64 KiB");
  if (sb.inodelog < 8 || sb.inodelog > 11 || sb.inodesize !== 1 << sb.inodelog) bad("bad inode size");
  if (version === 5 && sb.inodesize < 512) bad("inode size below 512 on a v5 filesystem");
  if (sb.inodesize > sb.blocksize) bad("inode size larger than the block size");
  if (sb.inopblock !== sb.blocksize / sb.inodesize || sb.blocklog - sb.inodelog !== sb.inopblog)
    bad("inodes-per-block fields disagree");
  if (sb.agblocks < 64 || sb.agblocks * sb.blocksize > 2 ** 40) bad("bad AG size");
  if (sb.agblklog !== 32 - Math.clz32(sb.agblocks - 1)) bad("agblklog does not match agblocks");
  if (sb.agcount === 0 || sb.dblocks === 0 || !Number.isSafeInteger(sb.dblocks)) bad("bad data size");
  if (Math.ceil(sb.dblocks / sb.agblocks) !== sb.agcount) bad("agcount does not match dblocks/agblocks");
  if (sb.agblklog + sb.inopblog > 32) bad("AG inode numbers do not fit 32 bits");
  if (sb.logblocks === 0 && sb.logstart !== 0) bad("internal log with no blocks");
  if (sb.logstart !== 0 && (!Number.isSafeInteger(sb.logstart) || !inAgRange(sb, sb.logstart, sb.logblocks)))
    bad("internal log outside the data device");
  if (sb.inprogress) bad("mkfs did not finish on this filesystem (sb_inprogress)");
  if (sb.sharedVn !== 0) bad("shared_vn is not zero");
  if (version === 5) {
    const stored = le32(sector, SB_CRC_OFFSET);
    const computed = sectorCrc(sector, sb.sectsize, SB_CRC_OFFSET);
    if (stored !== computed) throw new XfsChecksumError("superblock CRC mismatch", stored, computed, at);
  }
}

function inAgRange(sb: XfsSuperblock, fsb: number, len: number): boolean {
  const agno = Math.floor(fsb / 2 ** sb.agblklog);
  const agbno = fsb % 2 ** sb.agblklog;
  return agno < sb.agcount && agbno + len <= sb.agblocks;
}

/**
 * Address arithmetic of one filesystem. Three address spaces:
 * - fsblock: `agno << agblklog | agbno` (bmbt records, inode forks, sb_logstart);
 * - AG block (agno, agbno): linear position `agno * agblocks + agbno`;
 * - byte offset on the device (what BlockDevice reads take) = linear block << blocklog.
 * Inode numbers: `agno << (agblklog + inopblog) | agbno << inopblog | slot`.
 */
export class XfsGeometry {
  readonly blockSize: number;
  readonly blockLog: number;
  readonly sectSize: number;
  readonly inodeSize: number;
  readonly inodeLog: number;
  readonly inodesPerBlock: number;
  readonly inopblog: number;
  readonly agBlocks: number;
  readonly agCount: number;
  readonly agblklog: number;
  readonly dblocks: number;
  readonly dirBlockSize: number;
  readonly dirBlockFsbs: number;
  readonly logStart: number;
  readonly logBlocks: number;
  readonly v5: boolean;
  readonly features: XfsFeatures;
  readonly rootIno: number;
  /** UUID stamped into v5 metadata blocks (meta_uuid when that feature is set). */
  readonly metaUuid: Uint8Array;

  constructor(readonly sb: XfsSuperblock) {
    this.blockSize = sb.blocksize;
    this.blockLog = sb.blocklog;
    this.sectSize = sb.sectsize;
    this.inodeSize = sb.inodesize;
    this.inodeLog = sb.inodelog;
    this.inodesPerBlock = sb.inopblock;
    this.inopblog = sb.inopblog;
    this.agBlocks = sb.agblocks;
    this.agCount = sb.agcount;
    this.agblklog = sb.agblklog;
    this.dblocks = sb.dblocks;
    this.dirBlockFsbs = 2 ** sb.dirblklog;
    this.dirBlockSize = sb.blocksize * this.dirBlockFsbs;
    this.logStart = sb.logstart;
    this.logBlocks = sb.logblocks;
    this.features = featuresOf(sb);
    this.v5 = this.features.crc;
    this.rootIno = sb.rootino;
    this.metaUuid = this.features.metaUuid ? sb.metaUuid : sb.uuid;
  }

  fsbToAgno(fsb: number): number {
    return Math.floor(fsb / 2 ** this.agblklog);
  }
  fsbToAgbno(fsb: number): number {
    return fsb % 2 ** this.agblklog;
  }
  agbToFsb(agno: number, agbno: number): number {
    return agno * 2 ** this.agblklog + agbno;
  }
  /** True when `len` blocks starting at fsblock `fsb` lie inside one AG of the data device. */
  validFsbRange(fsb: number, len = 1): boolean {
    if (!Number.isSafeInteger(fsb) || fsb < 0 || len < 1) return false;
    const agno = this.fsbToAgno(fsb);
    const agbno = this.fsbToAgbno(fsb);
    if (agno >= this.agCount || agbno + len > this.agBlocks) return false;
    return agno * this.agBlocks + agbno + len <= this.dblocks;
  }
  /** Byte offset on the device of AG block (agno, agbno). */
  agbToByte(agno: number, agbno: number): number {
    return (agno * this.agBlocks + agbno) * this.blockSize;
  }
  /** Byte offset on the device of fsblock `fsb`. */
  fsbToByte(fsb: number): number {
    return this.agbToByte(this.fsbToAgno(fsb), this.fsbToAgbno(fsb));
  }
  /** 512-byte "daddr" of fsblock `fsb` (stamped as blkno into v5 metadata headers). */
  fsbToDaddr(fsb: number): number {
    return this.fsbToByte(fsb) / 512;
  }
  agbToDaddr(agno: number, agbno: number): number {
    return this.agbToByte(agno, agbno) / 512;
  }

  inoToAgno(ino: number): number {
    return Math.floor(ino / 2 ** (this.agblklog + this.inopblog));
  }
  /** AG-relative inode number (agbno << inopblog | slot). */
  inoToAgino(ino: number): number {
    return ino % 2 ** (this.agblklog + this.inopblog);
  }
  inoToAgbno(ino: number): number {
    return Math.floor(this.inoToAgino(ino) / this.inodesPerBlock);
  }
  inoToSlot(ino: number): number {
    return ino % this.inodesPerBlock;
  }
  aginoToIno(agno: number, agino: number): number {
    return agno * 2 ** (this.agblklog + this.inopblog) + agino;
  }
  /** True when `ino` names an inode slot inside the data device. */
  validIno(ino: number): boolean {
    if (!Number.isSafeInteger(ino) || ino <= 0) return false;
    const agno = this.inoToAgno(ino);
    const agbno = this.inoToAgbno(ino);
    if (agno >= this.agCount || agbno >= this.agBlocks) return false;
    return agno * this.agBlocks + agbno < this.dblocks;
  }
  /** Byte offset on the device of inode `ino`. */
  inoToByte(ino: number): number {
    return this.agbToByte(this.inoToAgno(ino), this.inoToAgbno(ino)) + this.inoToSlot(ino) * this.inodeSize;
  }
  /** Blocks in AG `agno` (the last AG may be shorter). */
  agSize(agno: number): number {
    return agno < this.agCount - 1 ? this.agBlocks : this.dblocks - (this.agCount - 1) * this.agBlocks;
  }
}
