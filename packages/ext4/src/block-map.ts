/**
 * ext2/ext3 indirect block maps: i_block[0..11] point at data blocks, i_block[12] at a block of
 * pointers, [13] double-indirect, [14] triple-indirect. Zero pointers are holes.
 */
import { setU32, u32 } from "./bytes.js";

export const DIRECT_BLOCKS = 12;
export const IND_BLOCK = 12;
export const DIND_BLOCK = 13;
export const TIND_BLOCK = 14;

/** The 15 block pointers of an i_block area. */
export function parseBlockMapRoot(iBlock: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < 15; i++) out.push(u32(iBlock, i * 4));
  return out;
}

export function encodeBlockMapRoot(ptrs: readonly number[]): Uint8Array {
  const b = new Uint8Array(60);
  for (let i = 0; i < 15; i++) setU32(b, i * 4, ptrs[i] ?? 0);
  return b;
}

/** Pointers held in one indirect block. */
export function parseIndirectBlock(block: Uint8Array): Uint32Array {
  const n = block.length >>> 2;
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = u32(block, i * 4);
  return out;
}

/** Logical blocks addressable through each level for a given block size. */
export function blockMapCapacity(blockSize: number): {
  direct: number;
  ind: number;
  dind: number;
  tind: number;
} {
  const p = blockSize / 4;
  return { direct: DIRECT_BLOCKS, ind: p, dind: p * p, tind: p * p * p };
}
