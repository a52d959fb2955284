/**
 * XfsFs: a read-only, node:fs/promises-shaped view of an XFS filesystem (v4 or v5) on any
 * BlockDevice. Paths resolve inside the guest (symlinks followed there, `..` never above `/`);
 * malformed metadata raises typed errors naming the device, structure and inode.
 */
import { Readable } from "node:stream";
import { type BlockDevice, ImgpatchError } from "@imgpatch/disk";
import { linuxAttrName, POSIX_ACL_ACCESS, POSIX_ACL_DEFAULT, xfsAclToPosix } from "./attr.js";
import { ATTR_ROOT } from "./attr-leaf.js";
import { findExtent, readForkExtents } from "./bmap.js";
import { be16, be32 } from "./bytes.js";
import { dirBlockAt, dirFormOf, readDirDataEntries } from "./dir-reading.js";
import { DIR2_LEAF_OFFSET_BYTES, sameBytes } from "./dir2-data.js";
import { asciiCiEqual, asciiCiFold } from "./dir2-hash.js";
import { hashedLookup } from "./dir2-lookup.js";
import { decodeSfDir, type XfsRawDirent } from "./dir2-sf.js";
import { XfsFormatError, XfsFsError, type XfsLocation, XfsUnsupportedError } from "./errors.js";
import { type ForkKind, forkArea, forkLocalBytes, type XfsExtent } from "./fork.js";
import { attrFormOf, type ForkReadContext, readAttrs, readSymlink, type StoredAttr } from "./fork-reading.js";
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
import { Lru } from "./lru.js";
import {
  checkFeatures,
  decodeSuperblock,
  validateSuperblock,
  type XfsFeatures,
  XfsGeometry,
  type XfsSuperblock,
} from "./sb.js";
import { FT_NAMES, fileTypeFromMode, XfsDirent, XfsStats } from "./stats.js";

const MAX_SYMLINKS = 40;
const MAX_NAME_LEN = 255;
const PATH_MAX = 4096;
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

/**
 * A fork's extents as read, valid while the fork's bytes in the inode are `fork` (format and
 * count included) and none of the bmbt blocks they came from has changed (see `invalidate`).
 */
interface ForkMap {
  fork: Uint8Array;
  format: number;
  count: number;
  exts: XfsExtent[];
  /** Device byte offsets of the bmbt blocks read. */
  blocks: number[];
}

const utf8 = new TextDecoder("utf-8");
const utf8enc = new TextEncoder();

/** A name's bytes as a string key (one char per byte; names are at most 255 bytes). */
function nameKey(b: Uint8Array): string {
  return String.fromCharCode.apply(null, b as unknown as number[]);
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
  /** Fork extents per inode (data, attr), checked against the fork's bytes on use. */
  private readonly extentCache = new Lru<number, Map<ForkKind, ForkMap>>(1024, (ino, forks) => {
    for (const m of forks.values()) for (const b of m.blocks) this.bmbtOwners.delete(b);
  });
  /** The inode whose cached extents were read from the bmbt block at this byte offset. */
  private readonly bmbtOwners = new Map<number, number>();
  private readonly dirCache = new Lru<number, XfsRawDirent[]>(64);
  private readonly dirIndex = new Lru<number, Map<string, XfsRawDirent>>(64);
  /** Directory entry lists looked up once already (see lookup). */
  private readonly scannedOnce = new WeakSet<XfsRawDirent[]>();
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
    const area = forkArea(inode, which);
    if (!area) return [];
    const count = which === "data" ? inode.nextents : inode.anextents;
    const bytes = inode.raw.subarray(area.start, area.start + area.size);
    let forks = this.extentCache.get(inode.ino);
    const hit = forks?.get(which);
    if (hit && hit.format === area.format && hit.count === count && sameBytes(hit.fork, bytes))
      return hit.exts;
    const blocks: number[] = [];
    const exts = await readForkExtents(
      this.geometry,
      inode,
      which,
      (o, l) => {
        blocks.push(o);
        return this.readAt(o, l);
      },
      { file: this.device.name },
    );
    if (!forks) {
      forks = new Map();
      this.extentCache.set(inode.ino, forks);
    }
    if (hit) for (const b of hit.blocks) this.bmbtOwners.delete(b);
    for (const b of blocks) this.bmbtOwners.set(b, inode.ino);
    forks.set(which, { fork: bytes.slice(), format: area.format, count, exts, blocks });
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
    return readDirDataEntries(this.forkCtx, dir, at);
  }

  /** Which of the four directory forms `dir` is in (shortform, block, leaf or node). */
  async dirForm(dir: XfsInode): Promise<"shortform" | "block" | "leaf" | "node"> {
    return dirFormOf(this.forkCtx, dir);
  }

  /** Which attribute fork form `inode` has (none, shortform, leaf, or node). */
  async attrForm(inode: XfsInode): Promise<"none" | "shortform" | "leaf" | "node"> {
    return attrFormOf(this.forkCtx, inode);
  }

  /** The entry named `name` in directory `dir` (case-insensitively on ASCII-ci filesystems). */
  async lookup(dir: XfsInode, name: Uint8Array): Promise<XfsRawDirent | undefined> {
    let idx = this.dirIndex.get(dir.ino);
    // A directory already read whole (readdir, walk) is looked up in memory; otherwise leaf and
    // node directories go through their hash index.
    if (!idx && !this.dirCache.get(dir.ino) && dir.format !== FMT_LOCAL && (dir.mode & S_IFMT) === S_IFDIR) {
      // Leaf and node directories: through the hash index, without reading every data block.
      const g = this.geometry;
      const exts = await this.forkExtents(dir, "data");
      const last = exts[exts.length - 1];
      if (last && last.startoff + last.blockcount > DIR2_LEAF_OFFSET_BYTES / g.blockSize) {
        const at = this.loc("directory", { inode: dir.ino });
        const e = await hashedLookup(g, dir.ino, name, (db) => dirBlockAt(this.forkCtx, exts, db, at), at);
        if (e && !g.validIno(e.ino))
          throw new XfsFormatError(
            `entry '${utf8.decode(e.name)}' names inode ${e.ino}, outside the filesystem`,
            at,
          );
        return e;
      }
    }
    if (!idx) {
      const entries = await this.dirEntries(dir);
      // A directory looked up once since it was read (an editor changes it between lookups) is
      // scanned; one looked up again gets an index.
      if (!this.scannedOnce.has(entries)) {
        this.scannedOnce.add(entries);
        for (const e of entries) if (sameBytes(e.name, name)) return e;
        if (!this.features.asciiCi) return undefined;
        for (const e of entries) if (asciiCiEqual(e.name, name)) return e;
        return undefined;
      }
      idx = new Map();
      for (const e of entries) {
        const k = nameKey(e.name);
        if (!idx.has(k)) idx.set(k, e);
      }
      this.dirIndex.set(dir.ino, idx);
    }
    const exact = idx.get(nameKey(name));
    if (exact || !this.features.asciiCi) return exact;
    const folded = nameKey(name.map(asciiCiFold));
    for (const e of await this.dirEntries(dir)) if (nameKey(e.name.map(asciiCiFold)) === folded) return e;
    return undefined;
  }

  // ---------------------------------------------------------------- symlinks and attributes

  /** What fork-reading.ts needs from the reader. */
  private get forkCtx(): ForkReadContext {
    return {
      geometry: this.geometry,
      deviceName: this.device.name,
      readAt: this.readAt,
      forkExtents: (inode, which) => this.forkExtents(inode, which),
    };
  }

  /** Target bytes of a symlink inode (inline or in remote blocks). */
  async readSymlinkInode(inode: XfsInode): Promise<Uint8Array> {
    return readSymlink(this.forkCtx, inode);
  }

  /** All attributes of an inode as stored (namespace flags, name, value bytes). */
  async inodeAttrs(inode: XfsInode): Promise<StoredAttr[]> {
    const hit = this.attrCache.get(inode.ino);
    if (hit) return hit;
    const out = await readAttrs(this.forkCtx, inode);
    this.attrCache.set(inode.ino, out);
    return out;
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
    const r = await this.tryResolve(path, followLast);
    if (r === "ENOENT") throw new XfsFsError("ENOENT", "no such file or directory", path);
    if (r === "ENOTDIR") throw new XfsFsError("ENOTDIR", "not a directory", path);
    return r;
  }

  /** `resolve`, with a missing name or a non-directory on the way answered instead of thrown. */
  private async tryResolve(path: string, followLast: boolean): Promise<Resolved | "ENOENT" | "ENOTDIR"> {
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
      if ((cur.mode & S_IFMT) !== S_IFDIR) return "ENOTDIR";
      const nameBytes = utf8enc.encode(comp);
      if (nameBytes.length > MAX_NAME_LEN) throw new XfsFsError("ENAMETOOLONG", "name too long", path);
      const e = await this.lookup(cur, nameBytes);
      if (!e) return "ENOENT";
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
    return typeof (await this.tryResolve(path, false)) !== "string";
  }

  /** `lstat`/`stat` (by `follow`), or undefined when the path does not resolve (ENOENT, ENOTDIR). */
  async statIfExists(path: string, follow = false): Promise<XfsStats | undefined> {
    const r = await this.tryResolve(path, follow);
    return typeof r === "string" ? undefined : this.statsOf(r.inode);
  }

  /** The inode number `path` names, or undefined when it does not resolve (no stats built). */
  async inoIfExists(path: string, follow = false): Promise<number | undefined> {
    const r = await this.tryResolve(path, follow);
    return typeof r === "string" ? undefined : r.inode.ino;
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

  /**
   * The device's bytes [offset, offset+length) changed (to `data` when given): cached inode chunks
   * are patched (or dropped), and every inode stored there (unless `inodes` is false: no inode
   * in use lies there) is forgotten with what was read through it (extents, directory entries,
   * attributes). Writers that change a directory's or
   * attribute fork's blocks store its inode too, which is what drops those. Length 0: anything
   * may have changed.
   */
  invalidate(offset: number, length: number, data?: Uint8Array, inodes = true): void {
    if (length === 0) {
      this.clearCaches();
      return;
    }
    const end = offset + length;
    const gone: number[] = [];
    for (const [start, chunk] of this.chunkCache.entries()) {
      const s = Math.max(start, offset);
      const e = Math.min(start + chunk.length, end);
      if (s >= e) continue;
      if (data) chunk.set(data.subarray(s - offset, e - offset), s - start);
      else gone.push(start);
    }
    for (const start of gone) this.chunkCache.delete(start);
    if (this.bmbtOwners.size > 0) {
      const bs = this.blockSize;
      if (length / bs <= this.bmbtOwners.size) {
        for (let o = offset - (offset % bs); o < end; o += bs) {
          const ino = this.bmbtOwners.get(o);
          if (ino !== undefined) this.extentCache.delete(ino);
        }
      } else {
        for (const [o, ino] of [...this.bmbtOwners])
          if (o < end && o + bs > offset) this.extentCache.delete(ino);
      }
    }
    if (!inodes || this.inodeCache.size === 0) return;
    const g = this.geometry;
    const isz = g.inodeSize;
    if (length / isz <= 256) {
      // The inode slots the range covers (inodes never straddle blocks, blocks never AGs).
      const agBytes = g.agBlocks * g.blockSize;
      for (let o = offset - (offset % isz); o < end; o += isz) {
        const agno = Math.floor(o / agBytes);
        const inAg = o - agno * agBytes;
        const agino =
          Math.floor(inAg / g.blockSize) * g.inodesPerBlock + Math.floor((inAg % g.blockSize) / isz);
        this.forgetInode(g.aginoToIno(agno, agino));
      }
    } else {
      for (const [ino] of [...this.inodeCache.entries()]) {
        const at = g.inoToByte(ino);
        if (at < end && at + isz > offset) this.forgetInode(ino);
      }
    }
  }

  private forgetInode(ino: number): void {
    // Its cached extents stay: they are checked against the fork's bytes on use.
    this.inodeCache.delete(ino);
    this.dirCache.delete(ino);
    this.dirIndex.delete(ino);
    this.attrCache.delete(ino);
  }

  /** Drops every cache (after the device changed underneath). */
  clearCaches(): void {
    this.inodeCache.clear();
    this.chunkCache.clear();
    this.extentCache.clear();
    this.bmbtOwners.clear();
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
