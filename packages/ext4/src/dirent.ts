/**
 * Linear directory entries (ext4_dir_entry_2): inode u32, rec_len u16, name_len u8, file_type u8,
 * name. Blocks with metadata_csum end with a 12-byte fake entry holding a crc32c ("dirent tail").
 */
import { decodeName, setU16, setU32, u16, u32 } from "./bytes.js";
import { crc32c } from "./crc32c.js";

export const DIRENT_HEADER = 8;
export const DIRENT_TAIL_SIZE = 12;
const TAIL_FT = 0xde;

/** Directory entry file types (with the filetype feature). */
export const FT = {
  unknown: 0,
  file: 1,
  dir: 2,
  chrdev: 3,
  blkdev: 4,
  fifo: 5,
  sock: 6,
  symlink: 7,
} as const;

export type DirentType = "file" | "dir" | "chrdev" | "blkdev" | "fifo" | "sock" | "symlink" | "unknown";
const FT_NAMES: DirentType[] = ["unknown", "file", "dir", "chrdev", "blkdev", "fifo", "sock", "symlink"];
export function fileTypeName(ft: number): DirentType {
  return FT_NAMES[ft] ?? "unknown";
}
/** File type code for an inode mode. */
export function fileTypeFromMode(mode: number): number {
  switch (mode & 0o170000) {
    case 0o100000:
      return FT.file;
    case 0o040000:
      return FT.dir;
    case 0o020000:
      return FT.chrdev;
    case 0o060000:
      return FT.blkdev;
    case 0o010000:
      return FT.fifo;
    case 0o140000:
      return FT.sock;
    case 0o120000:
      return FT.symlink;
    default:
      return FT.unknown;
  }
}

/**
 * A name as a string (UTF-8, invalid sequences replaced like decodeName). Short ASCII names, most
 * of them, are built directly: cheaper than a TextDecoder call per directory entry.
 */
export function direntName(b: Uint8Array): string {
  const n = b.length;
  if (n > 64) return decodeName(b);
  let s = "";
  for (let i = 0; i < n; i++) {
    const c = b[i];
    if (c >= 0x80) return decodeName(b);
    s += String.fromCharCode(c);
  }
  return s;
}

export interface RawDirent {
  inode: number;
  recLen: number;
  nameLen: number;
  fileType: number;
  /** Byte offset of the record inside its block/buffer. */
  offset: number;
  name: Uint8Array;
}

/** The rec_len encoding for 64 KiB blocks stores 65536 as 0 or 65535. */
export function decodeRecLen(v: number, blockSize: number): number {
  if (blockSize < 65536) return v;
  if (v === 65535 || v === 0) return blockSize;
  return (v & 65532) | ((v & 3) << 16);
}
export function encodeRecLen(len: number, blockSize: number): number {
  if (blockSize < 65536) return len;
  if (len === 65536) return 65535;
  return (len & 65532) | ((len >> 16) & 3);
}

export function direntSize(nameLen: number): number {
  return (DIRENT_HEADER + nameLen + 3) & ~3;
}

export interface DirentProblem {
  offset: number;
  message: string;
}

/**
 * Parse the records in buf[start, end). Stops at the first malformed record and reports it
 * (rec_len 0 or misaligned, record past the end, name longer than the record) instead of
 * guessing. Entries with inode 0 (deleted/unused space) are skipped. The checksum tail, if any,
 * must be excluded by the caller (pass end = blockSize - 12).
 */
export function parseDirentBlock(
  buf: Uint8Array,
  start: number,
  end: number,
  blockSize: number,
  hasFileType: boolean,
): { entries: RawDirent[]; problem?: DirentProblem } {
  const entries: RawDirent[] = [];
  let off = start;
  while (off < end) {
    if (end - off < DIRENT_HEADER)
      return { entries, problem: { offset: off, message: "truncated record header" } };
    const inode = u32(buf, off);
    const recLen = decodeRecLen(u16(buf, off + 4), blockSize);
    const nameLen = hasFileType ? buf[off + 6] : u16(buf, off + 6);
    const fileType = hasFileType ? buf[off + 7] : 0;
    if (recLen < DIRENT_HEADER || recLen & 3) {
      return { entries, problem: { offset: off, message: `rec_len ${recLen} is invalid` } };
    }
    if (off + recLen > end) {
      return {
        entries,
        problem: { offset: off, message: `rec_len ${recLen} runs past the end of the block` },
      };
    }
    if (DIRENT_HEADER + nameLen > recLen) {
      return { entries, problem: { offset: off, message: `name_len ${nameLen} exceeds rec_len ${recLen}` } };
    }
    if (inode !== 0) {
      if (nameLen === 0) return { entries, problem: { offset: off, message: "entry with empty name" } };
      entries.push({
        inode,
        recLen,
        nameLen,
        fileType,
        offset: off,
        name: buf.slice(off + 8, off + 8 + nameLen),
      });
    }
    off += recLen;
  }
  return { entries };
}

/** Write one record at `off`; returns the offset after it. */
export function encodeDirent(
  buf: Uint8Array,
  off: number,
  e: { inode: number; recLen: number; name: Uint8Array; fileType: number },
  blockSize: number,
  hasFileType = true,
): number {
  setU32(buf, off, e.inode);
  setU16(buf, off + 4, encodeRecLen(e.recLen, blockSize));
  if (hasFileType) {
    buf[off + 6] = e.name.length;
    buf[off + 7] = e.fileType;
  } else setU16(buf, off + 6, e.name.length);
  buf.set(e.name, off + 8);
  return off + e.recLen;
}

/** True when the block ends with a well-formed dirent tail. */
export function hasDirentTail(block: Uint8Array): boolean {
  const o = block.length - DIRENT_TAIL_SIZE;
  return (
    u32(block, o) === 0 &&
    u16(block, o + 4) === DIRENT_TAIL_SIZE &&
    block[o + 6] === 0 &&
    block[o + 7] === TAIL_FT
  );
}

export function direntTailChecksum(inodeSeed: number, block: Uint8Array): number {
  return crc32c(inodeSeed, block, 0, block.length - DIRENT_TAIL_SIZE);
}

export function storedDirentTailChecksum(block: Uint8Array): number {
  return u32(block, block.length - 4);
}

/** Write a fresh tail (fake entry + checksum) into the last 12 bytes of a directory block. */
export function setDirentTail(inodeSeed: number, block: Uint8Array): void {
  const o = block.length - DIRENT_TAIL_SIZE;
  setU32(block, o, 0);
  setU16(block, o + 4, DIRENT_TAIL_SIZE);
  block[o + 6] = 0;
  block[o + 7] = TAIL_FT;
  setU32(block, o + 8, direntTailChecksum(inodeSeed, block));
}
