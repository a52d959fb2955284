/**
 * The path-level half of the reader (`XfsFs`): path resolution (symlinks followed inside the
 * guest, ELOOP/ENOTDIR/ENAMETOOLONG as the kernel gives them), stat, readdir, readFile and
 * streams, readlink, the xattr calls by path, and the tree walk. It reaches the filesystem only
 * through the few inode-level reads XfsFs implements (the abstract members below), so the
 * caches and on-disk decoding stay in fs.ts.
 */
import { Readable } from "node:stream";
import type { BlockDevice } from "@imgpatch/disk";
import { POSIX_ACL_ACCESS, POSIX_ACL_DEFAULT } from "./attr.js";
import { ATTR_ROOT } from "./attr-leaf.js";
import type { XfsRawDirent } from "./dir2-sf.js";
import { XfsFormatError, XfsFsError } from "./errors.js";
import type { StoredAttr } from "./fork-reading.js";
import { decodeRdev, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type XfsInode } from "./inode.js";
import type { XfsFeatures, XfsSuperblock } from "./sb.js";
import { FT_NAMES, fileTypeFromMode, XfsDirent, XfsStats } from "./stats.js";

const MAX_SYMLINKS = 40;
const MAX_NAME_LEN = 255;
const PATH_MAX = 4096;
const DEFAULT_MAX_READ = 2 ** 31 - 1;

const utf8 = new TextDecoder("utf-8");
const utf8enc = new TextEncoder();

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

/** A name's bytes as a string key (one char per byte; names are at most 255 bytes). */
export function nameKey(b: Uint8Array): string {
  return String.fromCharCode.apply(null, b as unknown as number[]);
}

function isDot(name: Uint8Array): boolean {
  return (
    (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)
  );
}

/** Paths over inodes: XfsFs supplies the inode-level reads (its caches stay private to it). */
export abstract class XfsPathReader {
  abstract readonly device: BlockDevice;
  abstract readonly sb: XfsSuperblock;
  abstract readonly features: XfsFeatures;
  abstract readonly blockSize: number;
  abstract readInode(ino: number): Promise<XfsInode>;
  abstract lookup(dir: XfsInode, name: Uint8Array): Promise<XfsRawDirent | undefined>;
  abstract dirEntries(dir: XfsInode): Promise<XfsRawDirent[]>;
  abstract readSymlinkInode(inode: XfsInode): Promise<Uint8Array>;
  abstract readInodeRange(inode: XfsInode, start: number, end: number): Promise<Uint8Array>;
  abstract inodeAttrs(inode: XfsInode): Promise<StoredAttr[]>;
  abstract inodeXattrs(inode: XfsInode): Promise<Map<string, Uint8Array>>;

  // ---------------------------------------------------------------- paths

  protected async resolve(path: string, followLast: boolean): Promise<Resolved> {
    const r = await this.tryResolve(path, followLast);
    if (r === "ENOENT") throw new XfsFsError("ENOENT", "no such file or directory", path);
    if (r === "ENOTDIR") throw new XfsFsError("ENOTDIR", "not a directory", path);
    return r;
  }

  /** `resolve`, with a missing name or a non-directory on the way answered instead of thrown. */
  protected async tryResolve(path: string, followLast: boolean): Promise<Resolved | "ENOENT" | "ENOTDIR"> {
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

  protected statsOf(inode: XfsInode): XfsStats {
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
        throw new XfsFormatError(`directory reached twice (at ${cur.path})`, {
          file: this.device.name,
          structure: "directory",
          inode: cur.ino,
        });
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
}
