/**
 * In-place edits of the blocks of leaf and node directories, the way the kernel edits them
 * (xfs_dir2_data_use_free, xfs_dir2_data_make_free, xfs_dir2_data_freescan,
 * xfs_dir3_leaf_find_entry): a name added or removed changes a few bytes of one data block and
 * one leaf block instead of decoding both into objects and encoding them again. The decoded forms
 * (dir2-leaf.ts, dir2-data.ts) stay for reads and for the structural changes (splits,
 * conversions, relayouts).
 *
 * Data block (layout in dir2-data.ts): bestfree[3] at byte 4 (v4) or 48 (v5), each
 * | offset be16 | length be16 |, the three longest unused regions, longest first, earlier first
 * on ties, zeros for missing ones. Leaf block (layout in dir2-leaf.ts): hash-sorted entries
 * after the header, count and stale in the header; leaf1 keeps bests[bestcount] be16 right
 * before its last 4 bytes (bestcount be32), growing downwards towards the entries.
 */
import { be16, be32, setBe16, setBe32, setBe64 } from "./bytes.js";
import { DATA_FREE_TAG } from "./dir2-data.js";
import { asciiCiEqual } from "./dir2-hash.js";
import {
  DIR2_LEAF1_MAGIC,
  DIR2_LEAFN_MAGIC,
  DIR3_LEAF1_MAGIC,
  DIR3_LEAFN_MAGIC,
  leafHeaderSize,
  NULL_DATAOFF,
  NULL_DATAPTR,
} from "./dir2-leaf.js";
import type { DirEntryW, DirGeo } from "./dir2-write-data.js";
import { XfsFormatError, type XfsLocation } from "./errors.js";

/** Byte offset of the bestfree table in a data block header. */
function bestfreeOffset(v5: boolean): number {
  return v5 ? 48 : 4;
}

/**
 * Rebuilds a data block's bestfree table from its unused regions (xfs_dir2_data_freescan) and
 * returns the longest region's length. Checks every entry and region on the way: a damaged block
 * gets a typed error, not a write through a bad length.
 */
export function dataFreeScan(b: Uint8Array, dg: DirGeo, at: XfsLocation): number {
  let o0 = 0;
  let l0 = 0;
  let o1 = 0;
  let l1 = 0;
  let o2 = 0;
  let l2 = 0;
  const end = b.length;
  let p = dg.hdr;
  while (p < end) {
    if (p + 8 > end) throw new XfsFormatError(`directory entry at ${p} truncated`, at);
    if (be16(b, p) === DATA_FREE_TAG) {
      const len = be16(b, p + 2);
      if (len < 8 || len % 8 !== 0 || p + len > end || be16(b, p + len - 2) !== p)
        throw new XfsFormatError(`bad unused region of ${len} bytes at ${p}`, at);
      // Regions come in offset order: a later one displaces only a strictly shorter one.
      if (len > l0) {
        o2 = o1;
        l2 = l1;
        o1 = o0;
        l1 = l0;
        o0 = p;
        l0 = len;
      } else if (len > l1) {
        o2 = o1;
        l2 = l1;
        o1 = p;
        l1 = len;
      } else if (len > l2) {
        o2 = p;
        l2 = len;
      }
      p += len;
      continue;
    }
    const size = dg.entsize(b[p + 8]);
    if (b[p + 8] === 0 || p + size > end || be16(b, p + size - 2) !== p)
      throw new XfsFormatError(`directory entry at ${p} is malformed`, at);
    p += size;
  }
  const bf = bestfreeOffset(dg.v5);
  setBe16(b, bf, o0);
  setBe16(b, bf + 2, l0);
  setBe16(b, bf + 4, o1);
  setBe16(b, bf + 6, l1);
  setBe16(b, bf + 8, o2);
  setBe16(b, bf + 10, l2);
  return l0;
}

/**
 * Puts `e` at the start of the data block's longest unused region (as the kernel's addname
 * does), the rest of the region staying unused; sets `e.offset` and returns the block's new
 * longest free region.
 */
export function dataAddInPlace(b: Uint8Array, dg: DirGeo, e: DirEntryW, at: XfsLocation): number {
  const bf = bestfreeOffset(dg.v5);
  const off = be16(b, bf);
  const len = be16(b, bf + 2);
  const size = dg.entsize(e.name.length);
  if (
    len < size ||
    off < dg.hdr ||
    off + len > b.length ||
    be16(b, off) !== DATA_FREE_TAG ||
    be16(b, off + 2) !== len
  )
    throw new XfsFormatError("directory data block's bestfree does not match its unused regions", at);
  b.fill(0, off, off + size);
  setBe64(b, off, e.ino);
  b[off + 8] = e.name.length;
  b.set(e.name, off + 9);
  if (dg.ftype) b[off + 9 + e.name.length] = e.ftype;
  setBe16(b, off + size - 2, off);
  if (len > size) {
    const r = off + size;
    setBe16(b, r, DATA_FREE_TAG);
    setBe16(b, r + 2, len - size);
    setBe16(b, off + len - 2, r);
  }
  e.offset = off;
  return dataFreeScan(b, dg, at);
}

/** The entry at byte `off` of a data block, if one starts there (bounds checked). */
export function dataEntryAt(
  b: Uint8Array,
  dg: DirGeo,
  off: number,
): { name: Uint8Array; size: number } | undefined {
  if (off < dg.hdr || off + 9 > b.length || be16(b, off) === DATA_FREE_TAG) return undefined;
  const namelen = b[off + 8];
  const size = dg.entsize(namelen);
  if (namelen === 0 || off + size > b.length || be16(b, off + size - 2) !== off) return undefined;
  return { name: b.subarray(off + 9, off + 9 + namelen), size };
}

/** Does the entry at byte `off` carry `name` (ASCII-ci: equal ignoring case)? */
export function dataNameAt(b: Uint8Array, dg: DirGeo, off: number, name: Uint8Array): boolean {
  const e = dataEntryAt(b, dg, off);
  if (!e) return false;
  if (e.name.length === name.length) {
    let same = true;
    for (let i = 0; i < name.length && same; i++) same = e.name[i] === name[i];
    if (same) return true;
  }
  return dg.ci && asciiCiEqual(e.name, name);
}

/**
 * Turns the entry at byte `off` into unused space merged with unused neighbours
 * (xfs_dir2_data_make_free); returns the new longest region and whether the block is now empty.
 */
export function dataRemoveInPlace(
  b: Uint8Array,
  dg: DirGeo,
  off: number,
  at: XfsLocation,
): { longest: number; empty: boolean } {
  const e = dataEntryAt(b, dg, off);
  if (!e) throw new XfsFormatError(`no directory entry at ${off}`, at);
  let start = off;
  let end = off + e.size;
  if (start > dg.hdr) {
    // The tag before the entry is the start of whatever precedes it.
    const prev = be16(b, start - 2);
    if (
      prev >= dg.hdr &&
      prev < start &&
      be16(b, prev) === DATA_FREE_TAG &&
      prev + be16(b, prev + 2) === start
    )
      start = prev;
  }
  if (end + 4 <= b.length && be16(b, end) === DATA_FREE_TAG) {
    const len = be16(b, end + 2);
    if (len >= 8 && end + len <= b.length && be16(b, end + len - 2) === end) end += len;
  }
  b.fill(0, start, end);
  setBe16(b, start, DATA_FREE_TAG);
  setBe16(b, start + 2, end - start);
  setBe16(b, end - 2, start);
  const longest = dataFreeScan(b, dg, at);
  return { longest, empty: start === dg.hdr && end === b.length };
}

// ---------------------------------------------------------------- leaf blocks

export interface LeafHead {
  leaf1: boolean;
  count: number;
  stale: number;
  /** Leaf1: entries in the bests table (0 for leafn). */
  bestcount: number;
}

export function leafHead(b: Uint8Array, v5: boolean, at: XfsLocation): LeafHead {
  const magic = be16(b, 8);
  const leaf1 = magic === (v5 ? DIR3_LEAF1_MAGIC : DIR2_LEAF1_MAGIC);
  if (!leaf1 && magic !== (v5 ? DIR3_LEAFN_MAGIC : DIR2_LEAFN_MAGIC))
    throw new XfsFormatError(`bad directory leaf magic 0x${magic.toString(16)}`, at);
  const count = be16(b, v5 ? 56 : 12);
  const stale = be16(b, v5 ? 58 : 14);
  const bestcount = leaf1 ? be32(b, b.length - 4) : 0;
  const end = b.length - (leaf1 ? 4 + bestcount * 2 : 0);
  if (bestcount > b.length / 2 || leafHeaderSize(v5) + count * 8 > end || stale > count)
    throw new XfsFormatError(`leaf claims ${count} entries and ${bestcount} bests`, at);
  return { leaf1, count, stale, bestcount };
}

function setCounts(b: Uint8Array, v5: boolean, count: number, stale: number): void {
  setBe16(b, v5 ? 56 : 12, count);
  setBe16(b, v5 ? 58 : 14, stale);
}

/** Drops the stale entries of a leaf, keeping the order of the others (xfs_dir3_leaf_compact). */
export function leafCompactStale(b: Uint8Array, v5: boolean, at: XfsLocation): void {
  const h = leafHead(b, v5, at);
  if (h.stale === 0) return;
  const hdr = leafHeaderSize(v5);
  let to = 0;
  for (let i = 0; i < h.count; i++) {
    if (be32(b, hdr + i * 8 + 4) === NULL_DATAPTR) continue;
    if (to !== i) b.copyWithin(hdr + to * 8, hdr + i * 8, hdr + i * 8 + 8);
    to++;
  }
  b.fill(0, hdr + to * 8, hdr + h.count * 8);
  setCounts(b, v5, to, 0);
}

/**
 * Inserts (hash, address) after the entries with hashes up to `hash`, moving the later ones up
 * by one. The caller has made room (leafFits with one entry more).
 */
export function leafInsertInPlace(
  b: Uint8Array,
  v5: boolean,
  hash: number,
  address: number,
  at: XfsLocation,
): void {
  const h = leafHead(b, v5, at);
  const hdr = leafHeaderSize(v5);
  const end = b.length - (h.leaf1 ? 4 + h.bestcount * 2 : 0);
  if (hdr + (h.count + 1) * 8 > end) throw new XfsFormatError("directory leaf has no room for an entry", at);
  let lo = 0;
  let hi = h.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (be32(b, hdr + mid * 8) <= hash) lo = mid + 1;
    else hi = mid;
  }
  b.copyWithin(hdr + (lo + 1) * 8, hdr + lo * 8, hdr + h.count * 8);
  setBe32(b, hdr + lo * 8, hash);
  setBe32(b, hdr + lo * 8 + 4, address);
  setCounts(b, v5, h.count + 1, h.stale);
}

/** Marks the live entry with this hash and address stale; false when there is none. */
export function leafStaleInPlace(
  b: Uint8Array,
  v5: boolean,
  hash: number,
  address: number,
  at: XfsLocation,
): boolean {
  const h = leafHead(b, v5, at);
  const hdr = leafHeaderSize(v5);
  let lo = 0;
  let hi = h.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (be32(b, hdr + mid * 8) < hash) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < h.count && be32(b, hdr + i * 8) === hash; i++) {
    if (be32(b, hdr + i * 8 + 4) !== address) continue;
    setBe32(b, hdr + i * 8 + 4, NULL_DATAPTR);
    setCounts(b, v5, h.count, h.stale + 1);
    return true;
  }
  return false;
}

/** The last entry's hash (the leaf's key in its parent dabtree node), if any. */
export function leafLastHash(b: Uint8Array, v5: boolean, at: XfsLocation): number | undefined {
  const h = leafHead(b, v5, at);
  return h.count ? be32(b, leafHeaderSize(v5) + (h.count - 1) * 8) : undefined;
}

/**
 * A leaf1 block's bests table read and written in place (the leaf1 counterpart of the node
 * form's free index). Growing the table moves it down by two bytes per new data block; stale
 * entries are compacted first when the entries reach it.
 */
export function leafBestsInPlace(b: Uint8Array, v5: boolean, at: XfsLocation) {
  const tail = b.length - 4;
  const n = () => be32(b, tail);
  const slot = (db: number) => tail - (n() - db) * 2;
  return {
    get: (db: number) => (db < n() ? be16(b, slot(db)) : NULL_DATAOFF),
    set: async (db: number, v: number) => {
      const old = n();
      if (db >= old) {
        const grow = db + 1 - old;
        const start = tail - old * 2;
        let h = leafHead(b, v5, at);
        if (leafHeaderSize(v5) + h.count * 8 > start - grow * 2) {
          leafCompactStale(b, v5, at);
          h = leafHead(b, v5, at);
          if (leafHeaderSize(v5) + h.count * 8 > start - grow * 2)
            throw new XfsFormatError("directory leaf has no room for another best", at);
        }
        b.copyWithin(start - grow * 2, start, tail);
        for (let i = old; i <= db; i++) setBe16(b, tail - (db + 1 - i) * 2, NULL_DATAOFF);
        setBe32(b, tail, db + 1);
      }
      setBe16(b, slot(db), v);
    },
    count: n,
    find: (size: number) => {
      const c = n();
      const base = tail - c * 2;
      for (let i = 0; i < c; i++) {
        const v = be16(b, base + i * 2);
        if (v !== NULL_DATAOFF && v >= size) return i;
      }
      return -1;
    },
    firstUnused: () => {
      const c = n();
      const base = tail - c * 2;
      for (let i = 0; i < c; i++) if (be16(b, base + i * 2) === NULL_DATAOFF) return i;
      return c;
    },
    /** Drops trailing unused bests (a leaf1 table ends with its last data block). */
    trim: () => {
      let c = n();
      const start = tail - c * 2;
      let k = c;
      while (k > 0 && be16(b, tail - (c - k + 1) * 2) === NULL_DATAOFF) k--;
      if (k === c) return;
      // bests[0..k) move up to end at the tail
      b.copyWithin(tail - k * 2, start, start + k * 2);
      b.fill(0, start, tail - k * 2);
      c = k;
      setBe32(b, tail, c);
    },
  };
}
