/**
 * Directory leaf and free-index blocks (the hash index of leaf and node directories).
 *
 * Leaf header v4: | 0 forw | 4 back | 8 magic be16 (0xd2f1 leaf1, 0xd2ff leafn) | 10 pad |
 *                 | 12 count be16 | 14 stale be16 |                                  → 16 bytes
 * Leaf header v5: | da3 blkinfo (56: magic 0x3df1 / 0x3dff, crc @12, blkno @16, lsn @24,
 *                 |   uuid @32, owner @48) | 56 count | 58 stale | 60 pad |          → 64 bytes
 * Entries:        | hashval be32 | address be32 (byte offset in the data section / 8;
 *                 |   0 = stale) |, sorted by hash
 * Leaf1 tail:     | ... bests[bestcount] be16 (longest free region of each data block,
 *                 |   0xffff = no block) | bestcount be32 (last 4 bytes) |
 *
 * Free index header v4: | 0 magic "XD2F" | 4 firstdb | 8 nvalid | 12 nused |      → 16 bytes
 * Free index header v5: | 0 magic "XDF3" | 4 crc | 8 blkno | 16 lsn | 24 uuid | 40 owner |
 *                       | 48 firstdb | 52 nvalid | 56 nused | 60 pad |             → 64 bytes
 * followed by bests[nvalid] be16 for data blocks firstdb, firstdb+1, ...
 */
import { be16, be32, setBe16, setBe32 } from "./bytes.js";
import { XfsFormatError, type XfsLocation } from "./errors.js";

export const DIR2_LEAF1_MAGIC = 0xd2f1;
export const DIR2_LEAFN_MAGIC = 0xd2ff;
export const DIR3_LEAF1_MAGIC = 0x3df1;
export const DIR3_LEAFN_MAGIC = 0x3dff;
export const DIR2_FREE_MAGIC = 0x58443246; // XD2F
export const DIR3_FREE_MAGIC = 0x58444633; // XDF3
export const NULL_DATAOFF = 0xffff;
/** A stale leaf entry (address 0 is never an entry: the block header is there). */
export const NULL_DATAPTR = 0;

export interface LeafEntry {
  hashval: number;
  address: number;
}

export interface DirLeaf {
  magic: number;
  forw: number;
  back: number;
  ents: LeafEntry[];
  stale: number;
  /** Leaf1 only. */
  bests?: number[];
}

export function leafHeaderSize(v5: boolean): number {
  return v5 ? 64 : 16;
}

export function decodeDirLeaf(b: Uint8Array, v5: boolean, at: XfsLocation): DirLeaf {
  const hdr = leafHeaderSize(v5);
  const magic = be16(b, 8);
  const leaf1 = magic === (v5 ? DIR3_LEAF1_MAGIC : DIR2_LEAF1_MAGIC);
  const leafn = magic === (v5 ? DIR3_LEAFN_MAGIC : DIR2_LEAFN_MAGIC);
  if (!leaf1 && !leafn) throw new XfsFormatError(`bad directory leaf magic 0x${magic.toString(16)}`, at);
  const count = be16(b, v5 ? 56 : 12);
  const stale = be16(b, v5 ? 58 : 14);
  let end = b.length;
  let bests: number[] | undefined;
  if (leaf1) {
    const bestcount = be32(b, b.length - 4);
    end = b.length - 4 - bestcount * 2;
    if (bestcount > b.length / 2 || end < hdr) throw new XfsFormatError(`leaf claims ${bestcount} bests`, at);
    bests = [];
    for (let i = 0; i < bestcount; i++) bests.push(be16(b, end + i * 2));
  }
  if (hdr + count * 8 > end || stale > count) throw new XfsFormatError(`leaf claims ${count} entries`, at);
  const ents: LeafEntry[] = [];
  for (let i = 0; i < count; i++)
    ents.push({ hashval: be32(b, hdr + i * 8), address: be32(b, hdr + i * 8 + 4) });
  return { magic, forw: be32(b, 0), back: be32(b, 4), ents, stale, bests };
}

/**
 * The live entries of a leaf (leaf1 or leafn) whose hash is `hash`, found by binary search on the
 * block's bytes (xfs_dir2_leaf_search_hash) without decoding the rest; with the leaf's forward
 * link and last hash, which say whether equal hashes may continue in the next leafn.
 */
export function leafHashMatches(
  b: Uint8Array,
  v5: boolean,
  hash: number,
  at: XfsLocation,
): { addresses: number[]; forw: number; lastHash: number | undefined } {
  const hdr = leafHeaderSize(v5);
  const magic = be16(b, 8);
  const leaf1 = magic === (v5 ? DIR3_LEAF1_MAGIC : DIR2_LEAF1_MAGIC);
  if (!leaf1 && magic !== (v5 ? DIR3_LEAFN_MAGIC : DIR2_LEAFN_MAGIC))
    throw new XfsFormatError(`bad directory leaf magic 0x${magic.toString(16)}`, at);
  const count = be16(b, v5 ? 56 : 12);
  let end = b.length;
  if (leaf1) {
    const bestcount = be32(b, b.length - 4);
    end = b.length - 4 - bestcount * 2;
    if (bestcount > b.length / 2 || end < hdr) throw new XfsFormatError(`leaf claims ${bestcount} bests`, at);
  }
  if (hdr + count * 8 > end || be16(b, v5 ? 58 : 14) > count)
    throw new XfsFormatError(`leaf claims ${count} entries`, at);
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (be32(b, hdr + mid * 8) < hash) lo = mid + 1;
    else hi = mid;
  }
  const addresses: number[] = [];
  for (let i = lo; i < count && be32(b, hdr + i * 8) === hash; i++) {
    const address = be32(b, hdr + i * 8 + 4);
    if (address !== NULL_DATAPTR) addresses.push(address);
  }
  return { addresses, forw: be32(b, 0), lastHash: count ? be32(b, hdr + (count - 1) * 8) : undefined };
}

/** Room left for entries in a leaf with these contents. */
export function leafFits(
  blksize: number,
  v5: boolean,
  nents: number,
  bestcount: number | undefined,
): boolean {
  const tail = bestcount === undefined ? 0 : 4 + bestcount * 2;
  return leafHeaderSize(v5) + nents * 8 + tail <= blksize;
}

/** Writes the leaf fields (the v5 self-description is left to the caller). */
export function encodeDirLeaf(b: Uint8Array, v5: boolean, leaf: DirLeaf): void {
  const hdr = leafHeaderSize(v5);
  b.fill(0, hdr);
  setBe32(b, 0, leaf.forw);
  setBe32(b, 4, leaf.back);
  setBe16(b, 8, leaf.magic);
  const stale = leaf.ents.filter((e) => e.address === NULL_DATAPTR).length;
  setBe16(b, v5 ? 56 : 12, leaf.ents.length);
  setBe16(b, v5 ? 58 : 14, stale);
  leaf.ents.forEach((e, i) => {
    setBe32(b, hdr + i * 8, e.hashval);
    setBe32(b, hdr + i * 8 + 4, e.address);
  });
  if (leaf.bests) {
    const n = leaf.bests.length;
    setBe32(b, b.length - 4, n);
    leaf.bests.forEach((v, i) => {
      setBe16(b, b.length - 4 - n * 2 + i * 2, v);
    });
  }
}

export interface DirFree {
  firstdb: number;
  bests: number[];
}

export function freeHeaderSize(v5: boolean): number {
  return v5 ? 64 : 16;
}

export function decodeDirFree(b: Uint8Array, v5: boolean, at: XfsLocation): DirFree {
  const magic = be32(b, 0);
  if (magic !== (v5 ? DIR3_FREE_MAGIC : DIR2_FREE_MAGIC))
    throw new XfsFormatError(`bad directory free block magic 0x${magic.toString(16)}`, at);
  const o = v5 ? 48 : 4;
  const firstdb = be32(b, o);
  const nvalid = be32(b, o + 4);
  const hdr = freeHeaderSize(v5);
  if (hdr + nvalid * 2 > b.length) throw new XfsFormatError(`free block claims ${nvalid} entries`, at);
  const bests: number[] = [];
  for (let i = 0; i < nvalid; i++) bests.push(be16(b, hdr + i * 2));
  return { firstdb, bests };
}

export function encodeDirFree(b: Uint8Array, v5: boolean, f: DirFree): void {
  const hdr = freeHeaderSize(v5);
  b.fill(0, hdr);
  setBe32(b, 0, v5 ? DIR3_FREE_MAGIC : DIR2_FREE_MAGIC);
  const o = v5 ? 48 : 4;
  setBe32(b, o, f.firstdb);
  setBe32(b, o + 4, f.bests.length);
  setBe32(b, o + 8, f.bests.filter((v) => v !== NULL_DATAOFF).length);
  f.bests.forEach((v, i) => {
    setBe16(b, hdr + i * 2, v);
  });
}
