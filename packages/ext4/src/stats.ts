/** fs.Stats-like views of inodes and directory entries. */

import { u32 } from "./bytes.js";
import { type DirentType, fileTypeName } from "./dirent.js";
import {
  type Inode,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  type Timestamp,
} from "./inode.js";

function ms(t: Timestamp): number {
  return t.sec * 1000 + t.nsec / 1e6;
}
function ns(t: Timestamp): bigint {
  return BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
}

export class Ext4Stats {
  readonly ino: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly nlink: number;
  /** 512-byte blocks allocated (st_blocks). */
  readonly blocks: number;
  readonly blksize: number;
  /** Inode flags (i_flags, as lsattr shows them). */
  readonly flags: number;
  readonly generation: number;
  /** Device number for character/block devices, encoded like glibc's makedev (0 otherwise). */
  readonly rdev: number;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
  readonly atimeSpec: Timestamp;
  readonly mtimeSpec: Timestamp;
  readonly ctimeSpec: Timestamp;
  /** Creation time; undefined when the inode has no room for it (128-byte inodes). */
  readonly crtimeSpec?: Timestamp;

  constructor(inode: Inode, blocks512: number, blockSize: number, dev: { major: number; minor: number }) {
    this.ino = inode.ino;
    this.mode = inode.mode;
    this.uid = inode.uid;
    this.gid = inode.gid;
    this.size = inode.size;
    this.nlink = inode.linksCount;
    this.blocks = blocks512;
    this.blksize = blockSize;
    this.flags = inode.flags;
    this.generation = inode.generation;
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

export class Ext4Dirent {
  constructor(
    readonly name: string,
    /** The name's bytes as stored (names need not be valid UTF-8). */
    readonly nameBytes: Uint8Array,
    readonly ino: number,
    readonly type: DirentType,
    /** Directory path the entry was read from. */
    readonly parentPath: string,
  ) {}
  static fromFileType(
    name: string,
    nameBytes: Uint8Array,
    ino: number,
    ft: number,
    parentPath: string,
  ): Ext4Dirent {
    return new Ext4Dirent(name, nameBytes, ino, fileTypeName(ft), parentPath);
  }
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

/**
 * Device numbers of character/block inodes: the old 16-bit encoding in i_block[0], or the new
 * 32-bit one in i_block[1] (minor split around the major, as Linux new_encode_dev does).
 */
export function decodeDeviceNumber(inode: Inode): { major: number; minor: number } {
  const t = inode.mode & S_IFMT;
  if (t !== S_IFCHR && t !== S_IFBLK) return { major: 0, minor: 0 };
  const old = u32(inode.iBlock, 0);
  if (old !== 0) return { major: (old >>> 8) & 0xff, minor: old & 0xff };
  const n = u32(inode.iBlock, 4);
  return { major: (n & 0xfff00) >>> 8, minor: ((n & 0xff) | ((n >>> 12) & 0xfff00)) >>> 0 };
}
