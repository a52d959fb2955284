/**
 * Single-block directories: one directory block holding the data entries, then the leaf array
 * (hashval be32, address be32 per entry, sorted by hash) and a tail at the very end of the block:
 * | blocksize-8: count be32 | blocksize-4: stale be32 |
 * `address` is the entry's byte offset / 8 in the data section.
 */
import { be32 } from "./bytes.js";
import { XfsFormatError, type XfsLocation } from "./errors.js";

export interface BlockLeafEntry {
  hashval: number;
  address: number;
}

export interface BlockTail {
  count: number;
  stale: number;
  /** Byte offset where the leaf array starts (the data region ends there). */
  leafStart: number;
}

export function decodeBlockTail(b: Uint8Array, headerSize: number, at: XfsLocation): BlockTail {
  const count = be32(b, b.length - 8);
  const stale = be32(b, b.length - 4);
  const leafStart = b.length - 8 - count * 8;
  if (count > b.length / 8 || leafStart < headerSize || stale > count)
    throw new XfsFormatError(`block directory tail claims ${count} leaf entries`, at);
  return { count, stale, leafStart };
}

export function decodeBlockLeaf(b: Uint8Array, tail: BlockTail): BlockLeafEntry[] {
  const out: BlockLeafEntry[] = [];
  for (let i = 0; i < tail.count; i++) {
    const p = tail.leafStart + i * 8;
    out.push({ hashval: be32(b, p), address: be32(b, p + 4) });
  }
  return out;
}
