/**
 * XfsFs: a read-only, node:fs/promises-shaped view of an XFS filesystem (v4 or v5) on any
 * BlockDevice. Paths resolve inside the guest (symlinks followed there, `..` never above `/`);
 * malformed metadata raises typed errors naming the device, structure and inode.
 */
import { Readable } from "node:stream";
import { type BlockDevice, ImgpatchError } from "@imgpatch/disk";
import { linuxAttrName, POSIX_ACL_ACCESS, POSIX_ACL_DEFAULT, xfsAclToPosix } from "./attr.js";
import { ATTR_LEAF_MAGIC, ATTR_ROOT, ATTR3_LEAF_MAGIC, decodeAttrLeaf } from "./attr-leaf.js";
import { assembleRemoteValue, remoteBlocks } from "./attr-remote.js";
import { decodeSfAttrs, type XfsRawAttr } from "./attr-sf.js";
import { findExtent, readForkExtents } from "./bmap.js";
import { be16, be32, be64, le32 } from "./bytes.js";
import { checkDa3Block, DA_NODE_MAGIC, DA_NODE_MAXDEPTH, DA3_NODE_MAGIC, decodeDaNode } from "./da-btree.js";
import { decodeBlockTail } from "./dir2-block.js";
import {
  checkDir3Header,
  DIR2_BLOCK_MAGIC,
  DIR2_DATA_MAGIC,
  DIR2_FREE_OFFSET_BYTES,
  DIR2_LEAF_OFFSET_BYTES,
  DIR3_BLOCK_MAGIC,
  DIR3_DATA_MAGIC,
  dataHeaderSize,
  decodeDataEntries,
} from "./dir2-data.js";
import { asciiCiFold } from "./dir2-hash.js";
import { hashedLookup } from "./dir2-lookup.js";
import { decodeSfDir, type XfsRawDirent } from "./dir2-sf.js";
import {
  XfsChecksumError,
  XfsFormatError,
  XfsFsError,
  type XfsLocation,
  XfsUnsupportedError,
} from "./errors.js";
import { type ForkKind, forkArea, forkLocalBytes, type XfsExtent } from "./fork.js";
import {
  DIFLAG_REALTIME,
  decodeInode,
  decodeRdev,
  FMT_BTREE,
  FMT_DEV,
  FMT_EXTENTS,
  FMT_LOCAL,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  type XfsInode,
} from "./inode.js";
import { readLogState, type XfsLogState } from "./log.js";
import {
  checkFeatures,
  crcMatches,
  decodeSuperblock,
  sectorCrc,
  validateSuperblock,
  type XfsFeatures,
  XfsGeometry,
  type XfsSuperblock,
} from "./sb.js";
import { FT_NAMES, fileTypeFromMode, XfsDirent, XfsStats } from "./stats.js";

const MAX_SYMLINKS = 40;
const MAX_NAME_LEN = 255;
const PATH_MAX = 4096;
/** XFS_SYMLINK_MAXLEN. */
const SYMLINK_MAXLEN = 1024;
const SYMLINK_MAGIC = 0x58534c4d; // "XSLM"
/**
 * v5 remote symlink header, once per mapped extent: magic, offset, bytes, crc (over the whole
 * extent), uuid (16), owner @32, blkno @40, lsn @48.
 */
const SYMLINK_HDR = 56;
const XATTR_SIZE_MAX = 65536;
const DEFAULT_MAX_READ = 2 ** 31 - 1;
/** Largest single device read issued for file data. */
const READ_CHUNK = 4 << 20;

export interface XfsWarning {
  code: string;
  message: string;
}

export interface XfsOpenOptions {
  /** Called for every warning (dirty log, read-only reasons...). */
  onWarning?: (w: XfsWarning) => void;
  /** Number of inodes kept decoded (default 4096). */
  inodeCache?: number;
}

export interface XfsWalkEntry {
  path: string;
  ino: number;
  stats: XfsStats;
  inode: XfsInode;
  depth: number;
}

interface Resolved {
  ino: number;
  inode: XfsInode;
  path: string;
}

interface StoredAttr {
  flags: number;
  name: Uint8Array;
  value: Uint8Array;
}

class Lru<K, V> {
  private readonly map = new Map<K, V>();
  constructor(private readonly max: number) {}
  get(k: K): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }
  set(k: K, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K);
  }
  clear(): void {
    this.map.clear();
  }
}

const utf8 = new TextDecoder("utf-8");
const utf8enc = new TextEncoder();
function nameKey(b: Uint8Array): string {
  return Buffer.from(b).toString("latin1");
}

export class XfsFs {
  readonly warnings: XfsWarning[] = [];
  /** Reasons the filesystem must not be written (unknown ro_compat bits, realtime, external or dirty log). */
  readonly readOnlyReasons: string[] = [];
  readonly geometry: XfsGeometry;
  readonly features: XfsFeatures;
  readonly blockSize: number;
  private readonly onWarning?: (w: XfsWarning) => void;
  private readonly inodeCache: Lru<number, XfsInode>;
  private readonly extentCache = new Lru<string, XfsExtent[]>(1024);
  private readonly dirCache = new Lru<number, XfsRawDirent[]>(64);
  private readonly dirIndex = new Lru<number, Map<string, XfsRawDirent>>(64);
  private readonly attrCache = new Lru<number, StoredAttr[]>(256);
  /** Raw inode chunks by device offset. */
  private readonly chunkCache = new Lru<number, Uint8Array>(64);
  private log?: XfsLogState;

  private constructor(
    readonly device: BlockDevice,
    readonly sb: XfsSuperblock,
    options: XfsOpenOptions,
  ) {
    this.geometry = new XfsGeometry(sb);
    this.features = this.geometry.features;
    this.blockSize = sb.blocksize;
    this.onWarning = options.onWarning;
    this.inodeCache = new Lru(options.inodeCache ?? 4096);
  }

  /** Opens the filesystem from its primary superblock; refuses unknown incompatible features. */
  static async open(device: BlockDevice, options: XfsOpenOptions = {}): Promise<XfsFs> {
    const where = { file: device.name, offset: 0, structure: "superblock" };
    if (device.size < 512) throw new XfsFormatError("device too small for an XFS superblock", where);
    const head = await device.read(0, 512);
    if (be32(head, 0) !== 0x58465342) throw new XfsFormatError("no XFS superblock (bad magic)", where);
    const sectSize = be16(head, 102);
    if (sectSize < 512 || sectSize > 32768 || (sectSize & (sectSize - 1)) !== 0 || sectSize > device.size)
      throw new XfsFormatError(`bad sector size ${sectSize}`, where);
    const sector = sectSize === 512 ? head : await device.read(0, sectSize);
    const sb = decodeSuperblock(sector);
    validateSuperblock(sb, sector, where);
    const access = checkFeatures(sb, where);
    if (sb.dblocks * sb.blocksize > device.size)
      throw new XfsFormatError(
        `filesystem of ${sb.dblocks} blocks (${sb.dblocks * sb.blocksize} bytes) is larger than the device (${device.size} bytes)`,
        where,
      );
    const fs = new XfsFs(device, sb, options);
    if (access.writeRefusal) fs.readOnlyReasons.push(access.writeRefusal.reason);
    if (!fs.features.externalLog) {
      fs.log = await readLogState(fs.geometry, (o, l) => device.read(o, l));
      if (fs.log.state !== "clean") {
        const why = fs.log.reason ?? fs.log.state;
        fs.readOnlyReasons.push(`the log is not clean (${why}): boot the guest once or run xfs_repair`);
        fs.warn(
          "ELOGDIRTY",
          `the log is not clean (${why}): the filesystem was not unmounted cleanly and data read may be stale`,
        );
      }
    }
    const root = await fs.readInode(sb.rootino);
    if ((root.mode & S_IFMT) !== S_IFDIR)
      throw new XfsFormatError("root inode is not a directory", fs.loc("inode", { inode: sb.rootino }));
    return fs;
  }

  /** Clean/dirty state of the internal log and its head (for LSN stamping). */
  logState(): XfsLogState {
    if (!this.log)
      return {
        state: "unknown",
        reason: "external log",
        headCycle: 0,
        headBlock: 0,
        lastLsn: 0n,
        tailLsn: 0n,
        logBBs: 0,
      };
    return this.log;
  }

  // ---------------------------------------------------------------- plumbing

  private warn(code: string, message: string): void {
    const w = { code, message };
    if (this.warnings.length < 10000) this.warnings.push(w);
    this.onWarning?.(w);
  }

  private loc(
    structure: string,
    extra: { block?: number; inode?: number; offset?: number } = {},
  ): XfsLocation {
    return { file: this.device.name, structure, ...extra };
  }

  private readAt = async (offset: number, len: number): Promise<Uint8Array> => {
    if (offset < 0 || offset + len > this.device.size || !Number.isSafeInteger(offset))
      throw new XfsFormatError(`read of ${len} bytes at ${offset} lies outside the device`, {
        file: this.device.name,
        offset,
      });
    return this.device.read(offset, len);
  };

  /** Reads and decodes inode `ino` (cached). */
  async readInode(ino: number): Promise<XfsInode> {
    const hit = this.inodeCache.get(ino);
    if (hit) return hit;
    const g = this.geometry;
    if (!g.validIno(ino))
      throw new XfsFormatError(
        `inode number ${ino} is outside the filesystem`,
        this.loc("inode", { inode: ino }),
      );
    const offset = g.inoToByte(ino);
    // Inodes are read a 64-inode chunk at a time (the allocation unit: a walk touches its
    // neighbours next), clipped to the AG.
    const agno = g.inoToAgno(ino);
    const agino = g.inoToAgino(ino);
    const first = agino - (agino % 64);
    const agEnd = g.agbToByte(agno, g.agSize(agno));
    const chunkStart = g.agbToByte(agno, Math.floor(first / g.inodesPerBlock));
    const chunkLen = Math.min(64 * g.inodeSize, agEnd - chunkStart);
    let chunk = this.chunkCache.get(chunkStart);
    if (!chunk || chunk.length !== chunkLen) {
      chunk = await this.readAt(chunkStart, chunkLen);
      this.chunkCache.set(chunkStart, chunk);
    }
    const rel = offset - chunkStart;
    const raw = chunk.subarray(rel, rel + g.inodeSize);
    const inode = decodeInode(raw, 0, g.inodeSize, ino, g.v5, { file: this.device.name, offset });
    this.checkForks(inode, offset);
    this.inodeCache.set(ino, inode);
    return inode;
  }

  private checkForks(inode: XfsInode, offset: number): void {
    const at = { file: this.device.name, offset, structure: "inode", inode: inode.ino };
    const t = inode.mode & S_IFMT;
    const f = inode.format;
    const ok =
      t === S_IFDIR || t === S_IFLNK
        ? f === FMT_LOCAL || f === FMT_EXTENTS || f === FMT_BTREE
        : t === S_IFREG
          ? f === FMT_EXTENTS || f === FMT_BTREE
          : f === FMT_DEV;
    if (!ok) throw new XfsFormatError(`data fork format ${f} does not suit file type 0o${t.toString(8)}`, at);
    if (inode.forkoff && ![FMT_LOCAL, FMT_EXTENTS, FMT_BTREE].includes(inode.aformat))
      throw new XfsFormatError(`attribute fork format ${inode.aformat}`, at);
  }

  /** Extents of a fork (validated, cached per inode and fork). */
  async forkExtents(inode: XfsInode, which: ForkKind = "data"): Promise<XfsExtent[]> {
    const key = `${inode.ino}:${which}:${inode.crc}:${inode.nextents}`;
    const hit = this.extentCache.get(key);
    if (hit) return hit;
    const exts = await readForkExtents(this.geometry, inode, which, this.readAt, { file: this.device.name });
    this.extentCache.set(key, exts);
    return exts;
  }

  /** Bytes [start, end) of a fork's logical space (holes and unwritten extents read as zeros). */
  private async readForkRange(
    inode: XfsInode,
    which: ForkKind,
    start: number,
    end: number,
  ): Promise<Uint8Array> {
    const out = new Uint8Array(Math.max(0, end - start));
    if (end <= start) return out;
    const exts = await this.forkExtents(inode, which);
    const bs = this.blockSize;
    const firstBlock = Math.floor(start / bs);
    let i = findExtent(exts, firstBlock);
    if (i < 0) {
      i = 0;
      while (i < exts.length && exts[i].startoff + exts[i].blockcount <= firstBlock) i++;
    }
    for (; i < exts.length; i++) {
      const e = exts[i];
      const eStart = e.startoff * bs;
      const eEnd = (e.startoff + e.blockcount) * bs;
      if (eStart >= end) break;
      if (e.unwritten) continue;
      const from = Math.max(start, eStart);
      const to = Math.min(end, eEnd);
      let pos = from;
      while (pos < to) {
        const n = Math.min(READ_CHUNK, to - pos);
        const dev = this.geometry.fsbToByte(e.startblock) + (pos - eStart);
        out.set(await this.readAt(dev, n), pos - start);
        pos += n;
      }
    }
    return out;
  }

  /** Content bytes [start, end) of a regular file or symlink inode. */
  async readInodeRange(inode: XfsInode, start: number, end: number): Promise<Uint8Array> {
    if (inode.flags & DIFLAG_REALTIME)
      throw new XfsUnsupportedError(
        "realtime",
        "file data on the realtime device cannot be read",
        this.loc("inode", { inode: inode.ino }),
      );
    const stop = Math.min(end, inode.size);
    if (inode.format === FMT_LOCAL)
      return forkLocalBytes(inode, "data", { file: this.device.name }).slice(start, stop);
    return this.readForkRange(inode, "data", start, stop);
  }

  // ---------------------------------------------------------------- directories

  /** Every entry of a directory inode, "." and ".." included, in on-disk order. */
  async dirEntries(dir: XfsInode): Promise<XfsRawDirent[]> {
    const hit = this.dirCache.get(dir.ino);
    if (hit) return hit;
    const at = this.loc("directory", { inode: dir.ino });
    if ((dir.mode & S_IFMT) !== S_IFDIR) throw new XfsFormatError("not a directory inode", at);
    const ftype = this.features.ftype;
    let out: XfsRawDirent[];
    if (dir.format === FMT_LOCAL) {
      const sf = decodeSfDir(forkLocalBytes(dir, "data", at), ftype, at);
      out = [
        { name: Uint8Array.of(0x2e), ino: dir.ino, ftype: 2, offset: 0 },
        { name: Uint8Array.of(0x2e, 0x2e), ino: sf.parent, ftype: 2, offset: 0 },
        ...sf.entries,
      ];
    } else {
      out = await this.dirBlockEntries(dir, at);
    }
    for (const e of out)
      if (!this.geometry.validIno(e.ino))
        throw new XfsFormatError(
          `entry '${utf8.decode(e.name)}' names inode ${e.ino}, outside the filesystem`,
          at,
        );
    this.dirCache.set(dir.ino, out);
    return out;
  }

  private async dirBlockEntries(dir: XfsInode, at: XfsLocation): Promise<XfsRawDirent[]> {
    const g = this.geometry;
    const exts = await this.forkExtents(dir, "data");
    const dirFsbs = g.dirBlockFsbs;
    const leafFsb = DIR2_LEAF_OFFSET_BYTES / g.blockSize;
    if (dir.size % g.dirBlockSize !== 0 || dir.size > DIR2_LEAF_OFFSET_BYTES)
      throw new XfsFormatError(`directory size ${dir.size} is not a whole number of directory blocks`, at);
    const maxDb = dir.size / g.dirBlockSize;
    const dbs: number[] = [];
    for (const e of exts) {
      if (e.startoff >= leafFsb) break;
      const first = Math.floor(e.startoff / dirFsbs);
      const last = Math.floor((Math.min(e.startoff + e.blockcount, leafFsb) - 1) / dirFsbs);
      for (let db = first; db <= last; db++) {
        if (db >= maxDb) throw new XfsFormatError(`directory block ${db} lies beyond the directory size`, at);
        if (dbs.length === 0 || dbs[dbs.length - 1] !== db) dbs.push(db);
      }
    }
    // Single-block form: nothing mapped past the first directory block (xfs_dir2_isblock).
    const lastEnd = exts.length ? exts[exts.length - 1].startoff + exts[exts.length - 1].blockcount : 0;
    const single = maxDb === 1 && lastEnd === dirFsbs;
    const out: XfsRawDirent[] = [];
    const v5 = g.v5;
    for (const db of dbs) {
      const b = await this.readDirBlock(exts, db, at);
      const fsb = exts[findExtent(exts, db * dirFsbs)];
      const daddr = g.fsbToDaddr(fsb.startblock + (db * dirFsbs - fsb.startoff));
      const bat = { ...at, offset: g.fsbToByte(fsb.startblock + (db * dirFsbs - fsb.startoff)) };
      const magics = single
        ? [v5 ? DIR3_BLOCK_MAGIC : DIR2_BLOCK_MAGIC]
        : [v5 ? DIR3_DATA_MAGIC : DIR2_DATA_MAGIC];
      checkDir3Header(b, magics, { v5, daddr, owner: dir.ino, uuid: g.metaUuid }, bat);
      const end = single ? decodeBlockTail(b, dataHeaderSize(v5), bat).leafStart : b.length;
      for (const e of decodeDataEntries(b, v5, end, this.features.ftype, db * g.dirBlockSize, bat))
        out.push(e);
    }
    return out;
  }

  /** Directory block `db` with the daddr of its first fs block (for v5 checks). */
  private async dirBlockAt(
    exts: XfsExtent[],
    db: number,
    at: XfsLocation,
  ): Promise<{ b: Uint8Array; daddr: number }> {
    const g = this.geometry;
    const i = findExtent(exts, db * g.dirBlockFsbs);
    if (i < 0) throw new XfsFormatError(`directory block ${db} is not mapped`, at);
    const e = exts[i];
    const fsb = e.startblock + (db * g.dirBlockFsbs - e.startoff);
    return { b: await this.readDirBlock(exts, db, at), daddr: g.fsbToDaddr(fsb) };
  }

  /** One directory block (dirBlockFsbs fs blocks, possibly split across extents). */
  private async readDirBlock(exts: XfsExtent[], db: number, at: XfsLocation): Promise<Uint8Array> {
    const g = this.geometry;
    const n = g.dirBlockFsbs;
    const out = new Uint8Array(g.dirBlockSize);
    let k = 0;
    while (k < n) {
      const fblock = db * n + k;
      const i = findExtent(exts, fblock);
      if (i < 0) throw new XfsFormatError(`directory block ${db} has a hole`, at);
      const e = exts[i];
      if (e.unwritten) throw new XfsFormatError(`directory block ${db} is unwritten`, at);
      const run = Math.min(n - k, e.startoff + e.blockcount - fblock);
      const dev = g.fsbToByte(e.startblock + (fblock - e.startoff));
      out.set(await this.readAt(dev, run * g.blockSize), k * g.blockSize);
      k += run;
    }
    return out;
  }

  /** Which of the four directory forms `dir` is in (shortform, block, leaf or node). */
  async dirForm(dir: XfsInode): Promise<"shortform" | "block" | "leaf" | "node"> {
    if (dir.format === FMT_LOCAL) return "shortform";
    const g = this.geometry;
    const exts = await this.forkExtents(dir, "data");
    const last = exts[exts.length - 1];
    if (last && last.startoff + last.blockcount === g.dirBlockFsbs) return "block";
    const freeFsb = DIR2_FREE_OFFSET_BYTES / g.blockSize;
    return exts.some((e) => e.startoff + e.blockcount > freeFsb) ? "node" : "leaf";
  }

  /** Which attribute fork form `inode` has (none, shortform, leaf, or node). */
  async attrForm(inode: XfsInode): Promise<"none" | "shortform" | "leaf" | "node"> {
    const area = forkArea(inode, "attr");
    if (!area) return "none";
    if (area.format === FMT_LOCAL) return "shortform";
    const exts = await this.forkExtents(inode, "attr");
    if (exts.length === 0) return "none";
    const { b } = await this.attrBlock(exts, 0, this.loc("attribute fork", { inode: inode.ino }));
    const magic = be16(b, 8);
    return magic === DA_NODE_MAGIC || magic === DA3_NODE_MAGIC ? "node" : "leaf";
  }

  /** The entry named `name` in directory `dir` (case-insensitively on ASCII-ci filesystems). */
  async lookup(dir: XfsInode, name: Uint8Array): Promise<XfsRawDirent | undefined> {
    let idx = this.dirIndex.get(dir.ino);
    if (!idx && dir.format !== FMT_LOCAL && (dir.mode & S_IFMT) === S_IFDIR) {
      // Leaf and node directories: through the hash index, without reading every data block.
      const g = this.geometry;
      const exts = await this.forkExtents(dir, "data");
      const last = exts[exts.length - 1];
      if (last && last.startoff + last.blockcount > DIR2_LEAF_OFFSET_BYTES / g.blockSize) {
        const at = this.loc("directory", { inode: dir.ino });
        const e = await hashedLookup(g, dir.ino, name, (db) => this.dirBlockAt(exts, db, at), at);
        if (e && !g.validIno(e.ino))
          throw new XfsFormatError(
            `entry '${utf8.decode(e.name)}' names inode ${e.ino}, outside the filesystem`,
            at,
          );
        return e;
      }
    }
    if (!idx) {
      idx = new Map();
      for (const e of await this.dirEntries(dir)) if (!idx.has(nameKey(e.name))) idx.set(nameKey(e.name), e);
      this.dirIndex.set(dir.ino, idx);
    }
    const exact = idx.get(nameKey(name));
    if (exact || !this.features.asciiCi) return exact;
    const folded = nameKey(name.map(asciiCiFold));
    for (const e of await this.dirEntries(dir)) if (nameKey(e.name.map(asciiCiFold)) === folded) return e;
    return undefined;
  }

  // ---------------------------------------------------------------- symlinks

  /** Target bytes of a symlink inode (inline or in remote blocks). */
  async readSymlinkInode(inode: XfsInode): Promise<Uint8Array> {
    const at = this.loc("symlink", { inode: inode.ino });
    if ((inode.mode & S_IFMT) !== S_IFLNK) throw new XfsFormatError("not a symlink inode", at);
    if (inode.size <= 0 || inode.size > SYMLINK_MAXLEN)
      throw new XfsFormatError(`symlink length ${inode.size}`, at);
    if (inode.format === FMT_LOCAL) return forkLocalBytes(inode, "data", at);
    const g = this.geometry;
    const exts = await this.forkExtents(inode, "data");
    const out = new Uint8Array(inode.size);
    let pos = 0;
    // One header (v5) per mapped extent, its CRC covering the whole extent (xfs_readlink_bmap).
    let next = 0;
    for (const e of exts) {
      if (pos >= inode.size) break;
      if (e.startoff !== next || e.blockcount > 8)
        throw new XfsFormatError(`symlink mapping at file block ${e.startoff} is not contiguous`, at);
      next = e.startoff + e.blockcount;
      const offset = g.fsbToByte(e.startblock);
      const b = await this.readAt(offset, e.blockcount * g.blockSize);
      const space = g.v5 ? b.length - SYMLINK_HDR : b.length;
      const n = Math.min(space, inode.size - pos);
      if (g.v5) {
        const bat = { ...at, offset };
        if (be32(b, 0) !== SYMLINK_MAGIC) throw new XfsFormatError("bad remote symlink magic", bat);
        if (!crcMatches(b, b.length, 12))
          throw new XfsChecksumError(
            "remote symlink block CRC mismatch",
            le32(b, 12),
            sectorCrc(b, b.length, 12),
            bat,
          );
        if (
          be32(b, 4) !== pos ||
          be32(b, 8) !== n ||
          be64(b, 32) !== inode.ino ||
          be64(b, 40) !== g.fsbToDaddr(e.startblock)
        )
          throw new XfsFormatError("remote symlink block header does not match", bat);
        out.set(b.subarray(SYMLINK_HDR, SYMLINK_HDR + n), pos);
      } else out.set(b.subarray(0, n), pos);
      pos += n;
    }
    if (pos < inode.size) throw new XfsFormatError(`symlink blocks hold ${pos} of ${inode.size} bytes`, at);
    return out;
  }

  // ---------------------------------------------------------------- attributes

  /** All attributes of an inode as stored (namespace flags, name, value bytes). */
  async inodeAttrs(inode: XfsInode): Promise<StoredAttr[]> {
    const hit = this.attrCache.get(inode.ino);
    if (hit) return hit;
    const at = this.loc("attribute fork", { inode: inode.ino });
    const area = forkArea(inode, "attr");
    let raw: XfsRawAttr[] = [];
    if (!area) raw = [];
    else if (area.format === FMT_LOCAL) raw = decodeSfAttrs(forkLocalBytes(inode, "attr", at), at);
    else if (inode.anextents > 0) raw = await this.attrLeafEntries(inode, at);
    const out: StoredAttr[] = [];
    for (const a of raw) {
      let value = a.value;
      if (!value) {
        const r = a.remote;
        if (!r || r.len > XATTR_SIZE_MAX)
          throw new XfsFormatError(`remote attribute value of ${r?.len} bytes`, at);
        value = await this.readRemoteValue(inode, r.blk, r.len, at);
      }
      out.push({ flags: a.flags, name: a.name, value });
    }
    this.attrCache.set(inode.ino, out);
    return out;
  }

  private async attrBlock(
    exts: XfsExtent[],
    lblk: number,
    at: XfsLocation,
  ): Promise<{ b: Uint8Array; daddr: number }> {
    const i = findExtent(exts, lblk);
    if (i < 0) throw new XfsFormatError(`attribute block ${lblk} is not mapped`, at);
    const e = exts[i];
    const fsb = e.startblock + (lblk - e.startoff);
    const g = this.geometry;
    return { b: await this.readAt(g.fsbToByte(fsb), g.blockSize), daddr: g.fsbToDaddr(fsb) };
  }

  private async attrLeafEntries(inode: XfsInode, at: XfsLocation): Promise<XfsRawAttr[]> {
    const g = this.geometry;
    const exts = await this.forkExtents(inode, "attr");
    const chk = { owner: inode.ino, uuid: g.metaUuid };
    // Descend from block 0 to the leftmost leaf, then follow the leaf chain.
    let lblk = 0;
    let { b, daddr } = await this.attrBlock(exts, lblk, at);
    let level = Number.POSITIVE_INFINITY;
    for (let depth = 0; ; depth++) {
      const magic = be16(b, 8);
      if (magic !== DA_NODE_MAGIC && magic !== DA3_NODE_MAGIC) break;
      const bat = { ...at, structure: "attribute node", block: lblk };
      if (depth >= DA_NODE_MAXDEPTH || magic !== (g.v5 ? DA3_NODE_MAGIC : DA_NODE_MAGIC))
        throw new XfsFormatError("bad attribute node", bat);
      if (g.v5) checkDa3Block(b, { ...chk, daddr }, bat);
      const node = decodeDaNode(b, g.v5, bat);
      if (node.level >= level) throw new XfsFormatError("attribute node levels do not decrease", bat);
      level = node.level;
      lblk = node.entries[0].before;
      ({ b, daddr } = await this.attrBlock(exts, lblk, at));
    }
    const out: XfsRawAttr[] = [];
    const seen = new Set<number>();
    for (;;) {
      const bat = { ...at, structure: "attribute leaf", block: lblk };
      if (seen.has(lblk)) throw new XfsFormatError("attribute leaf chain loops", bat);
      seen.add(lblk);
      if (be16(b, 8) !== (g.v5 ? ATTR3_LEAF_MAGIC : ATTR_LEAF_MAGIC))
        throw new XfsFormatError(`bad attribute leaf magic 0x${be16(b, 8).toString(16)}`, bat);
      if (g.v5) checkDa3Block(b, { ...chk, daddr }, bat);
      const leaf = decodeAttrLeaf(b, g.v5, bat);
      for (const e of leaf.entries) out.push(e);
      if (leaf.forw === 0) break;
      lblk = leaf.forw;
      ({ b, daddr } = await this.attrBlock(exts, lblk, at));
    }
    return out;
  }

  private async readRemoteValue(
    inode: XfsInode,
    blk: number,
    len: number,
    at: XfsLocation,
  ): Promise<Uint8Array> {
    const g = this.geometry;
    const exts = await this.forkExtents(inode, "attr");
    const n = remoteBlocks(len, g.blockSize, g.v5);
    const blocks: { data: Uint8Array; daddr: number }[] = [];
    for (let k = 0; k < n; k++) {
      const { b, daddr } = await this.attrBlock(exts, blk + k, at);
      blocks.push({ data: b, daddr });
    }
    return assembleRemoteValue(blocks, len, g.v5, inode.ino, g.metaUuid, at);
  }

  /** Attributes under their Linux names, values as getxattr(2) returns them (ACLs converted). */
  async inodeXattrs(inode: XfsInode): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>();
    for (const a of await this.inodeAttrs(inode)) {
      const name = linuxAttrName(a.flags, a.name);
      if (name === undefined) continue;
      if (name === POSIX_ACL_ACCESS || name === POSIX_ACL_DEFAULT) {
        out.set(name, xfsAclToPosix(a.value, this.loc("ACL attribute", { inode: inode.ino })));
        // The kernel lists the stored trusted.SGI_ACL_* name too (to CAP_SYS_ADMIN).
        out.set(`trusted.${nameKey(a.name)}`, a.value);
      } else out.set(name, a.value);
    }
    return out;
  }

  // ---------------------------------------------------------------- paths

  private async resolve(path: string, followLast: boolean): Promise<Resolved> {
    if (typeof path !== "string") throw new XfsFsError("EINVAL", "path must be a string", String(path));
    if (path.length > PATH_MAX * 4) throw new XfsFsError("ENAMETOOLONG", "path too long", path.slice(0, 64));
    const rootIno = this.sb.rootino;
    let links = 0;
    const stack: { ino: number; name: string }[] = [];
    let todo = path.split("/").filter((c) => c !== "" && c !== ".");
    let cur = await this.readInode(rootIno);
    const dirAt = async () => this.readInode(stack.length ? stack[stack.length - 1].ino : rootIno);
    while (todo.length > 0) {
      const comp = todo.shift() as string;
      if (comp === "..") {
        stack.pop();
        cur = await dirAt();
        continue;
      }
      if ((cur.mode & S_IFMT) !== S_IFDIR) throw new XfsFsError("ENOTDIR", "not a directory", path);
      const nameBytes = utf8enc.encode(comp);
      if (nameBytes.length > MAX_NAME_LEN) throw new XfsFsError("ENAMETOOLONG", "name too long", path);
      const e = await this.lookup(cur, nameBytes);
      if (!e) throw new XfsFsError("ENOENT", "no such file or directory", path);
      const child = await this.readInode(e.ino);
      const isLast = todo.length === 0;
      if ((child.mode & S_IFMT) === S_IFLNK && (!isLast || followLast)) {
        if (++links > MAX_SYMLINKS) throw new XfsFsError("ELOOP", "too many levels of symbolic links", path);
        const target = utf8.decode(await this.readSymlinkInode(child));
        if (target.startsWith("/")) stack.length = 0;
        todo = [...target.split("/").filter((c) => c !== "" && c !== "."), ...todo];
        cur = await dirAt();
        continue;
      }
      stack.push({ ino: e.ino, name: utf8.decode(e.name) });
      cur = child;
    }
    const ino = stack.length ? stack[stack.length - 1].ino : rootIno;
    return { ino, inode: cur, path: `/${stack.map((s) => s.name).join("/")}` };
  }

  private statsOf(inode: XfsInode): XfsStats {
    const t = inode.mode & S_IFMT;
    const dev =
      t === S_IFCHR || t === S_IFBLK ? decodeRdev(inode.raw, inode.version) : { major: 0, minor: 0 };
    return new XfsStats(inode, this.blockSize, dev);
  }

  // ---------------------------------------------------------------- public fs-like API

  async stat(path: string): Promise<XfsStats> {
    return this.statsOf((await this.resolve(path, true)).inode);
  }

  async lstat(path: string): Promise<XfsStats> {
    return this.statsOf((await this.resolve(path, false)).inode);
  }

  async statInode(ino: number): Promise<XfsStats> {
    return this.statsOf(await this.readInode(ino));
  }

  /** Whether `path` exists (without following a final symlink). */
  async exists(path: string): Promise<boolean> {
    try {
      await this.resolve(path, false);
      return true;
    } catch (e) {
      if (e instanceof XfsFsError && (e.code === "ENOENT" || e.code === "ENOTDIR")) return false;
      throw e;
    }
  }

  /** Canonical absolute path inside the guest. */
  async realpath(path: string): Promise<string> {
    return (await this.resolve(path, true)).path;
  }

  async readdir(path: string): Promise<string[]>;
  async readdir(path: string, options: { withFileTypes: true }): Promise<XfsDirent[]>;
  async readdir(path: string, options?: { withFileTypes?: boolean }): Promise<string[] | XfsDirent[]> {
    const r = await this.resolve(path, true);
    if ((r.inode.mode & S_IFMT) !== S_IFDIR) throw new XfsFsError("ENOTDIR", "not a directory", path);
    const list = await this.readdirInode(r.inode, r.path);
    return options?.withFileTypes ? list : list.map((d) => d.name);
  }

  /** Entries of a directory inode, without "." and "..". */
  async readdirInode(dir: XfsInode, parentPath = `<inode ${dir.ino}>`): Promise<XfsDirent[]> {
    const out: XfsDirent[] = [];
    for (const e of await this.dirEntries(dir)) {
      if (isDot(e.name)) continue;
      let ft = e.ftype;
      if (!this.features.ftype || ft === 0 || ft > 7)
        ft = fileTypeFromMode((await this.readInode(e.ino)).mode);
      out.push(new XfsDirent(utf8.decode(e.name), e.name, e.ino, FT_NAMES[ft] ?? "unknown", parentPath));
    }
    return out;
  }

  async readFile(path: string, options: { maxSize?: number } = {}): Promise<Buffer> {
    const r = await this.resolve(path, true);
    return this.readFileInode(r.inode, path, options);
  }

  async readFileInode(
    inode: XfsInode,
    path = `<inode ${inode.ino}>`,
    options: { maxSize?: number } = {},
  ): Promise<Buffer> {
    if ((inode.mode & S_IFMT) === S_IFDIR)
      throw new XfsFsError("EISDIR", "illegal operation on a directory", path);
    const max = Math.min(options.maxSize ?? DEFAULT_MAX_READ, DEFAULT_MAX_READ);
    if (inode.size > max)
      throw new XfsFsError("EFBIG", `file of ${inode.size} bytes exceeds the ${max}-byte limit`, path);
    if ((inode.mode & S_IFMT) !== S_IFREG && (inode.mode & S_IFMT) !== S_IFLNK) return Buffer.alloc(0);
    if ((inode.mode & S_IFMT) === S_IFLNK) return Buffer.from(await this.readSymlinkInode(inode));
    const d = await this.readInodeRange(inode, 0, inode.size);
    return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  }

  /** A Readable over the file, read in chunks (holes produced as zeros). `end` is inclusive, as in node:fs. */
  createReadStream(
    path: string,
    options: { start?: number; end?: number; highWaterMark?: number } = {},
  ): Readable {
    const self = this;
    async function* gen() {
      const r = await self.resolve(path, true);
      if ((r.inode.mode & S_IFMT) === S_IFDIR)
        throw new XfsFsError("EISDIR", "illegal operation on a directory", path);
      const end = Math.min(options.end !== undefined ? options.end + 1 : r.inode.size, r.inode.size);
      const step = options.highWaterMark ?? 1 << 20;
      for (let pos = options.start ?? 0; pos < end; pos += step) {
        const d = await self.readInodeRange(r.inode, pos, Math.min(end, pos + step));
        yield Buffer.from(d.buffer, d.byteOffset, d.byteLength);
      }
    }
    return Readable.from(gen(), { objectMode: false });
  }

  async readlink(path: string): Promise<string> {
    const r = await this.resolve(path, false);
    if ((r.inode.mode & S_IFMT) !== S_IFLNK) throw new XfsFsError("EINVAL", "not a symbolic link", path);
    return utf8.decode(await this.readSymlinkInode(r.inode));
  }

  async listxattr(path: string): Promise<string[]> {
    return [...(await this.inodeXattrs((await this.resolve(path, true)).inode)).keys()];
  }
  async llistxattr(path: string): Promise<string[]> {
    return [...(await this.inodeXattrs((await this.resolve(path, false)).inode)).keys()];
  }

  /**
   * One attribute value as getxattr(2) returns it (POSIX ACLs converted from the XFS disk form;
   * `raw: true` gives the stored bytes).
   */
  async getxattr(
    path: string,
    name: string,
    options: { raw?: boolean; noFollow?: boolean } = {},
  ): Promise<Buffer> {
    const r = await this.resolve(path, !options.noFollow);
    let v: Uint8Array | undefined;
    if (options.raw && (name === POSIX_ACL_ACCESS || name === POSIX_ACL_DEFAULT)) {
      const stored = name === POSIX_ACL_ACCESS ? "SGI_ACL_FILE" : "SGI_ACL_DEFAULT";
      v = (await this.inodeAttrs(r.inode)).find(
        (a) => a.flags & ATTR_ROOT && nameKey(a.name) === stored,
      )?.value;
    } else v = (await this.inodeXattrs(r.inode)).get(name);
    if (v === undefined) throw new XfsFsError("ENODATA", `no attribute ${name}`, path);
    return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  }

  async lgetxattr(path: string, name: string, options: { raw?: boolean } = {}): Promise<Buffer> {
    return this.getxattr(path, name, { ...options, noFollow: true });
  }

  /**
   * Depth-first pre-order walk below `root` (included). A directory reachable twice is corrupt
   * (error); symlinks are not followed.
   */
  async *walk(root = "/"): AsyncGenerator<XfsWalkEntry> {
    const r = await this.resolve(root, true);
    const seen = new Set<number>();
    const stack: { ino: number; inode: XfsInode; path: string; depth: number }[] = [
      { ino: r.ino, inode: r.inode, path: r.path, depth: 0 },
    ];
    while (stack.length > 0) {
      const cur = stack.pop() as (typeof stack)[number];
      yield {
        path: cur.path,
        ino: cur.ino,
        stats: this.statsOf(cur.inode),
        inode: cur.inode,
        depth: cur.depth,
      };
      if ((cur.inode.mode & S_IFMT) !== S_IFDIR) continue;
      if (seen.has(cur.ino))
        throw new XfsFormatError(
          `directory reached twice (at ${cur.path})`,
          this.loc("directory", { inode: cur.ino }),
        );
      seen.add(cur.ino);
      const prefix = cur.path === "/" ? "/" : `${cur.path}/`;
      const children: typeof stack = [];
      for (const d of await this.dirEntries(cur.inode)) {
        if (isDot(d.name)) continue;
        children.push({
          ino: d.ino,
          inode: await this.readInode(d.ino),
          path: prefix + utf8.decode(d.name),
          depth: cur.depth + 1,
        });
      }
      for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]);
    }
  }

  /** Filesystem-wide figures, like statfs(2) plus identity. */
  statfs(): {
    blockSize: number;
    blocks: number;
    freeBlocks: number;
    inodes: number;
    freeInodes: number;
    uuid: string;
    volumeName: string;
    version: 4 | 5;
  } {
    const hex = Buffer.from(this.sb.uuid).toString("hex");
    let label = "";
    for (const c of this.sb.fname) {
      if (c === 0) break;
      label += String.fromCharCode(c);
    }
    return {
      blockSize: this.blockSize,
      blocks: this.sb.dblocks,
      freeBlocks: this.sb.fdblocks,
      inodes: this.sb.icount,
      freeInodes: this.sb.ifree,
      uuid: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
      volumeName: label,
      version: this.geometry.v5 ? 5 : 4,
    };
  }

  /** Drops every cache (after the device changed underneath). */
  clearCaches(): void {
    this.inodeCache.clear();
    this.chunkCache.clear();
    this.extentCache.clear();
    this.dirCache.clear();
    this.dirIndex.clear();
    this.attrCache.clear();
  }

  async close(): Promise<void> {
    this.clearCaches();
  }
}

function isDot(name: Uint8Array): boolean {
  return (
    (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)
  );
}

/** True for typed errors this package raises on malformed input (for callers that want to skip). */
export function isXfsInputError(e: unknown): boolean {
  return e instanceof ImgpatchError;
}
