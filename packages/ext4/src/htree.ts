/**
 * Hashed directory index (htree). Block 0 of an indexed directory is the dx_root: fake "." and
 * ".." entries, dx_root_info, then a count/limit header and (hash, block) pairs sorted by hash.
 * Interior dx_node blocks start with a fake empty entry spanning the block. With metadata_csum
 * the last 8 bytes after `limit` entries hold a dx_tail checksum.
 */
import { setU16, setU32, u16, u32 } from "./bytes.js";
import { crc32c } from "./crc32c.js";

export const DX_ROOT_INFO_OFFSET = 0x18;
export const DX_ROOT_ENTRIES_OFFSET = 0x20;
export const DX_NODE_ENTRIES_OFFSET = 0x8;
export const DX_ENTRY_SIZE = 8;
export const DX_TAIL_SIZE = 8;

export interface DxRootInfo {
  hashVersion: number;
  infoLength: number;
  indirectLevels: number;
  unusedFlags: number;
}

export interface DxEntry {
  /** Lowest hash in the child (entry 0 has an implicit 0). */
  hash: number;
  /** Logical block of the child inside the directory. */
  block: number;
}

export interface DxNode {
  limit: number;
  count: number;
  entries: DxEntry[];
  /** Offset of the count/limit header inside the block. */
  entriesOffset: number;
}

export function parseDxRootInfo(block: Uint8Array): DxRootInfo {
  const o = DX_ROOT_INFO_OFFSET;
  return {
    hashVersion: block[o + 4],
    infoLength: block[o + 5],
    indirectLevels: block[o + 6],
    unusedFlags: block[o + 7],
  };
}

export function encodeDxRootInfo(block: Uint8Array, info: DxRootInfo): void {
  const o = DX_ROOT_INFO_OFFSET;
  setU32(block, o, 0);
  block[o + 4] = info.hashVersion;
  block[o + 5] = info.infoLength;
  block[o + 6] = info.indirectLevels;
  block[o + 7] = info.unusedFlags;
}

/** Offset of count/limit in a dx_root (after dx_root_info, whose length is recorded in it). */
export function dxRootEntriesOffset(block: Uint8Array): number {
  return DX_ROOT_INFO_OFFSET + parseDxRootInfo(block).infoLength;
}

/**
 * Read count/limit and the entries at `off`. Does not validate; callers check count <= limit
 * and that the entries fit in the block (see dxNodeProblem).
 */
export function parseDxEntries(block: Uint8Array, off: number): DxNode {
  const limit = u16(block, off);
  const count = u16(block, off + 2);
  const entries: DxEntry[] = [];
  const n = Math.min(count, Math.floor((block.length - off) / DX_ENTRY_SIZE));
  for (let i = 0; i < n; i++) {
    const e = off + i * DX_ENTRY_SIZE;
    entries.push({ hash: i === 0 ? 0 : u32(block, e), block: u32(block, e + 4) });
  }
  return { limit, count, entries, entriesOffset: off };
}

/**
 * The entry covering `hash` in the index whose count/limit sit at `off`: the last entry whose hash
 * is <= `hash` (entry 0 covers everything below entry 1). Searches the raw block, without building
 * entry objects (the editor's insert path); the count is clamped to what the block holds.
 * Returns the entry's index and the logical block it points to, or undefined for an empty index.
 */
export function dxSearchBlock(
  block: Uint8Array,
  off: number,
  hash: number,
): { at: number; lblk: number } | undefined {
  const count = Math.min(u16(block, off + 2), Math.floor((block.length - off) / DX_ENTRY_SIZE));
  if (count === 0) return undefined;
  let lo = 1;
  let hi = count - 1;
  let at = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (u32(block, off + mid * DX_ENTRY_SIZE) > hash) hi = mid - 1;
    else {
      at = mid;
      lo = mid + 1;
    }
  }
  return { at, lblk: u32(block, off + at * DX_ENTRY_SIZE + 4) };
}

/** Write count/limit and entries at `off` (entry 0's hash slot holds count/limit). */
export function encodeDxEntries(
  block: Uint8Array,
  off: number,
  node: { limit: number; entries: DxEntry[] },
): void {
  setU16(block, off, node.limit);
  setU16(block, off + 2, node.entries.length);
  node.entries.forEach((e, i) => {
    const o = off + i * DX_ENTRY_SIZE;
    if (i > 0) setU32(block, o, e.hash);
    setU32(block, o + 4, e.block);
  });
}

/** Maximum number of entries for a node whose entries start at `off`. */
export function dxLimit(blockSize: number, off: number, withTail: boolean): number {
  return Math.floor((blockSize - off - (withTail ? DX_TAIL_SIZE : 0)) / DX_ENTRY_SIZE);
}

/** A reason this node cannot be trusted, or undefined. */
export function dxNodeProblem(block: Uint8Array, node: DxNode, withTail: boolean): string | undefined {
  const max = dxLimit(block.length, node.entriesOffset, withTail);
  if (node.limit > max) return `dx limit ${node.limit} exceeds the room in the block (${max})`;
  if (node.count === 0) return "dx count is 0";
  if (node.count > node.limit) return `dx count ${node.count} exceeds limit ${node.limit}`;
  for (let i = 2; i < node.entries.length; i++) {
    if (node.entries[i].hash < node.entries[i - 1].hash) return `dx entry ${i} hashes out of order`;
  }
  return undefined;
}

/** crc32c(inode seed, block[0 : entries + count*8]), then the dx_tail with its checksum as zero. */
export function dxChecksum(inodeSeed: number, block: Uint8Array, node: DxNode): number {
  const size = node.entriesOffset + node.count * DX_ENTRY_SIZE;
  const tail = node.entriesOffset + node.limit * DX_ENTRY_SIZE;
  const c = crc32c(inodeSeed, block, 0, size);
  return crc32c(crc32c(c, block, tail, tail + 4), ZERO4);
}
const ZERO4 = new Uint8Array(4);

export function dxTailOffset(node: DxNode): number {
  return node.entriesOffset + node.limit * DX_ENTRY_SIZE;
}

export function storedDxChecksum(block: Uint8Array, node: DxNode): number {
  return u32(block, dxTailOffset(node) + 4);
}

export function setDxChecksum(inodeSeed: number, block: Uint8Array, node: DxNode): void {
  const t = dxTailOffset(node);
  setU32(block, t, 0);
  setU32(block, t + 4, dxChecksum(inodeSeed, block, node));
}

/** Is this directory block a dx_node (an empty fake entry spanning the whole block)? */
export function looksLikeDxNode(block: Uint8Array, blockSize: number): boolean {
  const recLen = u16(block, 4);
  return (
    u32(block, 0) === 0 &&
    (recLen === blockSize || (blockSize === 65536 && (recLen === 0 || recLen === 65535)))
  );
}
