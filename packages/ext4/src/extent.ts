/**
 * Extent trees: a 12-byte header, then index entries (interior nodes) or extents (leaves), 12
 * bytes each. The root lives in the inode's i_block (4 entries); other nodes fill a block and end
 * with a crc32c tail (metadata_csum) after eh_max entries.
 */
import { setU16, setU32, u16, u32 } from "./bytes.js";
import { crc32c } from "./crc32c.js";

export const EXTENT_MAGIC = 0xf30a;
export const EXTENT_HEADER_SIZE = 12;
export const EXTENT_ENTRY_SIZE = 12;
/** Longest initialised extent; lengths above this mark an uninitialised extent of (len - 32768). */
export const EXT_INIT_MAX_LEN = 32768;
/** The kernel never builds deeper trees; deeper headers are corrupt. */
export const EXT_MAX_DEPTH = 5;

export interface ExtentHeader {
  magic: number;
  entries: number;
  max: number;
  depth: number;
  generation: number;
}

export interface ExtentIndex {
  /** First logical block covered by the child. */
  block: number;
  /** Physical block of the child node. */
  leaf: number;
}

export interface Extent {
  /** First logical block. */
  block: number;
  /** Length in blocks (1..32768). */
  len: number;
  /** First physical block. */
  start: number;
  /** Uninitialised (preallocated): reads as zeros. */
  uninit: boolean;
}

export function parseExtentHeader(b: Uint8Array, off = 0): ExtentHeader {
  return {
    magic: u16(b, off),
    entries: u16(b, off + 2),
    max: u16(b, off + 4),
    depth: u16(b, off + 6),
    generation: u32(b, off + 8),
  };
}

export function encodeExtentHeader(b: Uint8Array, h: ExtentHeader, off = 0): void {
  setU16(b, off, h.magic);
  setU16(b, off + 2, h.entries);
  setU16(b, off + 4, h.max);
  setU16(b, off + 6, h.depth);
  setU32(b, off + 8, h.generation);
}

export function parseExtentIndex(b: Uint8Array, i: number): ExtentIndex {
  const o = EXTENT_HEADER_SIZE + i * EXTENT_ENTRY_SIZE;
  return { block: u32(b, o), leaf: u32(b, o + 4) + u16(b, o + 8) * 0x1_0000_0000 };
}

export function encodeExtentIndex(b: Uint8Array, i: number, e: ExtentIndex): void {
  const o = EXTENT_HEADER_SIZE + i * EXTENT_ENTRY_SIZE;
  setU32(b, o, e.block);
  setU32(b, o + 4, e.leaf >>> 0);
  setU16(b, o + 8, Math.floor(e.leaf / 0x1_0000_0000));
  setU16(b, o + 10, 0);
}

export function parseExtent(b: Uint8Array, i: number): Extent {
  const o = EXTENT_HEADER_SIZE + i * EXTENT_ENTRY_SIZE;
  const rawLen = u16(b, o + 4);
  const uninit = rawLen > EXT_INIT_MAX_LEN;
  return {
    block: u32(b, o),
    len: uninit ? rawLen - EXT_INIT_MAX_LEN : rawLen,
    start: u32(b, o + 8) + u16(b, o + 6) * 0x1_0000_0000,
    uninit,
  };
}

export function encodeExtent(b: Uint8Array, i: number, e: Extent): void {
  const o = EXTENT_HEADER_SIZE + i * EXTENT_ENTRY_SIZE;
  setU32(b, o, e.block);
  setU16(b, o + 4, e.uninit ? e.len + EXT_INIT_MAX_LEN : e.len);
  setU16(b, o + 6, Math.floor(e.start / 0x1_0000_0000));
  setU32(b, o + 8, e.start >>> 0);
}

/** Byte offset of the checksum tail in an extent block with this header. */
export function extentTailOffset(h: ExtentHeader): number {
  return EXTENT_HEADER_SIZE + h.max * EXTENT_ENTRY_SIZE;
}

/** Largest eh_max for a node of `bytes` bytes (block nodes reserve 4 bytes for the tail). */
export function extentMaxEntries(bytes: number, isRoot: boolean): number {
  return Math.floor((bytes - EXTENT_HEADER_SIZE - (isRoot ? 0 : 4)) / EXTENT_ENTRY_SIZE);
}

/** crc32c(inode seed, block bytes before the tail). */
export function extentBlockChecksum(inodeSeed: number, block: Uint8Array, h: ExtentHeader): number {
  return crc32c(inodeSeed, block, 0, extentTailOffset(h));
}

export function storedExtentChecksum(block: Uint8Array, h: ExtentHeader): number {
  return u32(block, extentTailOffset(h));
}

export function setExtentBlockChecksum(inodeSeed: number, block: Uint8Array): void {
  const h = parseExtentHeader(block);
  setU32(block, extentTailOffset(h), extentBlockChecksum(inodeSeed, block, h));
}
