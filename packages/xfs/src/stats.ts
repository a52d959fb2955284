/** fs.Stats-like views of XFS inodes and directory entries (shaped like the ext4 package's). */
import {
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  type XfsInode,
  type XfsTimestamp,
} from "./inode.js";

function ms(t: XfsTimestamp): number {
  return t.sec * 1000 + t.nsec / 1e6;
}
function ns(t: XfsTimestamp): bigint {
  return BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
}

export class XfsStats {
  readonly ino: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly nlink: number;
  /** 512-byte blocks allocated (st_blocks: data, attribute and bmbt blocks). */
  readonly blocks: number;
  readonly blksize: number;
  /** Inode flags (di_flags). */
  readonly flags: number;
  readonly generation: number;
  readonly projid: number;
  /** Device number for character/block devices, encoded like glibc's makedev (0 otherwise). */
  readonly rdev: number;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
  readonly atimeSpec: XfsTimestamp;
  readonly mtimeSpec: XfsTimestamp;
  readonly ctimeSpec: XfsTimestamp;
  /** Creation time (v3 inodes only). */
  readonly crtimeSpec?: XfsTimestamp;

  constructor(inode: XfsInode, blockSize: number, dev: { major: number; minor: number }) {
    this.ino = inode.ino;
    this.mode = inode.mode;
    this.uid = inode.uid;
    this.gid = inode.gid;
    this.size = inode.size;
    this.nlink = inode.nlink;
    this.blocks = inode.nblocks * (blockSize / 512);
    this.blksize = 4096;
    this.flags = inode.flags;
    this.generation = inode.gen;
    this.projid = inode.projid;
    this.rdevMajor = dev.major;
    this.rdevMinor = dev.minor;
    this.rdev =
      Math.floor(dev.major / 4096) * 2 ** 44 +
      (dev.major % 4096) * 256 +
      Math.floor(dev.minor / 256) * 1048576 +
      (dev.minor % 256);
    this.atimeSpec = inode.atime;
    this.mtimeSpec = inode.mtime;
    this.ctimeSpec = inode.ctime;
    this.crtimeSpec = inode.crtime;
  }

  get atimeMs(): number {
    return ms(this.atimeSpec);
  }
  get mtimeMs(): number {
    return ms(this.mtimeSpec);
  }
  get ctimeMs(): number {
    return ms(this.ctimeSpec);
  }
  get birthtimeMs(): number | undefined {
    return this.crtimeSpec ? ms(this.crtimeSpec) : undefined;
  }
  get atimeNs(): bigint {
    return ns(this.atimeSpec);
  }
  get mtimeNs(): bigint {
    return ns(this.mtimeSpec);
  }
  get ctimeNs(): bigint {
    return ns(this.ctimeSpec);
  }
  get birthtimeNs(): bigint | undefined {
    return this.crtimeSpec ? ns(this.crtimeSpec) : undefined;
  }
  get atime(): Date {
    return new Date(this.atimeMs);
  }
  get mtime(): Date {
    return new Date(this.mtimeMs);
  }
  get ctime(): Date {
    return new Date(this.ctimeMs);
  }
  get birthtime(): Date | undefined {
    return this.crtimeSpec ? new Date(ms(this.crtimeSpec)) : undefined;
  }
  /** Permission bits (mode & 0o7777). */
  get permissions(): number {
    return this.mode & 0o7777;
  }
  isFile(): boolean {
    return (this.mode & S_IFMT) === S_IFREG;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === S_IFLNK;
  }
  isCharacterDevice(): boolean {
    return (this.mode & S_IFMT) === S_IFCHR;
  }
  isBlockDevice(): boolean {
    return (this.mode & S_IFMT) === S_IFBLK;
  }
  isFIFO(): boolean {
    return (this.mode & S_IFMT) === S_IFIFO;
  }
  isSocket(): boolean {
    return (this.mode & S_IFMT) === S_IFSOCK;
  }
}

export type XfsDirentType = "file" | "dir" | "chrdev" | "blkdev" | "fifo" | "sock" | "symlink" | "unknown";

/** XFS_DIR3_FT_* codes (the same numbering as ext4's). */
export const FT_NAMES: readonly XfsDirentType[] = [
  "unknown",
  "file",
  "dir",
  "chrdev",
  "blkdev",
  "fifo",
  "sock",
  "symlink",
];

export function fileTypeFromMode(mode: number): number {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 1;
    case S_IFDIR:
      return 2;
    case S_IFCHR:
      return 3;
    case S_IFBLK:
      return 4;
    case S_IFIFO:
      return 5;
    case S_IFSOCK:
      return 6;
    case S_IFLNK:
      return 7;
    default:
      return 0;
  }
}

export class XfsDirent {
  constructor(
    readonly name: string,
    /** The name's bytes as stored (names need not be valid UTF-8). */
    readonly nameBytes: Uint8Array,
    readonly ino: number,
    readonly type: XfsDirentType,
    /** Directory path the entry was read from. */
    readonly parentPath: string,
  ) {}
  isFile(): boolean {
    return this.type === "file";
  }
  isDirectory(): boolean {
    return this.type === "dir";
  }
  isSymbolicLink(): boolean {
    return this.type === "symlink";
  }
  isCharacterDevice(): boolean {
    return this.type === "chrdev";
  }
  isBlockDevice(): boolean {
    return this.type === "blkdev";
  }
  isFIFO(): boolean {
    return this.type === "fifo";
  }
  isSocket(): boolean {
    return this.type === "sock";
  }
}
