import { TWO_POW_32 } from "./bytes.js";

/**
 * L1/L2 entry encodings (docs/interop/qcow2.txt, "Cluster mapping"). Entries are 64-bit; we read
 * them as two 32-bit halves (hi = bits 32..63, lo = bits 0..31) to stay in fast integer paths.
 *
 *   bit 63      COPIED: refcount is exactly 1, so the cluster may be written in place
 *   bit 62      COMPRESSED (L2 only)
 *   bits 9..55  host cluster offset (standard clusters)
 *   bit 0       reads as zero (v3 standard clusters without extended L2)
 *
 * Extended L2 entries add a second 64-bit word: bits 0..31 "subcluster allocated",
 * bits 32..63 "subcluster reads as zero" (so hi word = zero bitmap, lo word = alloc bitmap).
 */
export const FLAG_COPIED = 0x8000_0000; // in hi
export const FLAG_COMPRESSED = 0x4000_0000; // in hi
export const FLAG_ZERO = 1; // in lo
/** Reserved bits of a standard descriptor: lo bits 1..8, hi bits 56..61. */
export const STD_RESERVED_LO = 0x1fe;
export const STD_RESERVED_HI = 0x3f00_0000;
export const OFFSET_MASK_HI = 0x00ff_ffff;
export const OFFSET_MASK_LO = 0xffff_fe00;
export const SUBCLUSTERS = 32;
export const ALL_SUBCLUSTERS = 0xffff_ffff;

export function stdOffset(hi: number, lo: number): number {
  return (hi & OFFSET_MASK_HI) * TWO_POW_32 + ((lo & OFFSET_MASK_LO) >>> 0);
}

export function encodeStd(offset: number, copied: boolean, zero = false): { hi: number; lo: number } {
  const hi = ((Math.floor(offset / TWO_POW_32) & OFFSET_MASK_HI) | (copied ? FLAG_COPIED : 0)) >>> 0;
  const lo = ((offset >>> 0) | (zero ? FLAG_ZERO : 0)) >>> 0;
  return { hi, lo };
}

/** A compressed cluster descriptor decoded for a given cluster_bits. */
export interface CompressedRef {
  /** Host byte offset where the compressed stream starts (not aligned). */
  offset: number;
  /** Number of 512-byte sectors the stream touches (the field stores this minus one). */
  sectors: number;
}

export function decodeCompressed(hi: number, lo: number, clusterBits: number): CompressedRef {
  const x = 70 - clusterBits; // 62 - (cluster_bits - 8); always >= 49
  const hiBits = x - 32;
  const offHi = hi & ((1 << hiBits) - 1);
  const offset = offHi * TWO_POW_32 + (lo >>> 0);
  const sectors = ((hi >>> hiBits) & ((1 << (clusterBits - 8)) - 1)) + 1;
  return { offset, sectors };
}

export function encodeCompressed(
  offset: number,
  sectors: number,
  clusterBits: number,
): { hi: number; lo: number } {
  const x = 70 - clusterBits;
  const hiBits = x - 32;
  const hi = (FLAG_COMPRESSED | ((sectors - 1) << hiBits) | Math.floor(offset / TWO_POW_32)) >>> 0;
  return { hi, lo: offset >>> 0 };
}

/** Bytes to read for a compressed cluster: from its offset to the end of its last sector. */
export function compressedLength(ref: CompressedRef): number {
  return ref.sectors * 512 - (ref.offset % 512);
}

/** The host clusters a compressed cluster holds a reference on (first and count). */
export function compressedClusters(
  ref: CompressedRef,
  clusterSize: number,
): { first: number; count: number } {
  const start = ref.offset - (ref.offset % 512);
  const first = Math.floor(start / clusterSize);
  const last = Math.floor((start + ref.sectors * 512 - 1) / clusterSize);
  return { first, count: last - first + 1 };
}

/** Bitmask of subclusters [first, last] (inclusive). */
export function subclusterMask(first: number, last: number): number {
  const n = last - first + 1;
  if (n >= 32) return ALL_SUBCLUSTERS;
  return (((1 << n) - 1) << first) >>> 0;
}
