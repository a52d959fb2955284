/**
 * Shared pieces of the directory writers: the geometry they need, entry placement inside a data
 * block, and writing a whole directory data block (block form with leaf and tail, or a plain data
 * block of a leaf/node directory) with its unused regions, bestfree table and v5 header.
 */
import { setBe16, setBe32, setBe64 } from "./bytes.js";
import { daNodeEntries } from "./da-btree-write.js";
import {
  DATA_FREE_TAG,
  DIR2_BLOCK_MAGIC,
  DIR2_DATA_MAGIC,
  DIR3_BLOCK_MAGIC,
  DIR3_DATA_MAGIC,
  dataEntrySize,
  dataHeaderSize,
} from "./dir2-data.js";
import { dirHashName } from "./dir2-hash.js";
import type { XfsEditor } from "./editor.js";
import type { XfsInode } from "./inode.js";

export interface DirEntryW {
  name: Uint8Array;
  ino: number;
  ftype: number;
  /** Byte offset in its data block (short form: the recorded offset). */
  offset: number;
}

export function sameName(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export const DOT = Uint8Array.of(0x2e);
export const DOTDOT = Uint8Array.of(0x2e, 0x2e);

/** Directory geometry the writers need. */
export function dirGeo(ed: XfsEditor) {
  const g = ed.fs.geometry;
  const hdr = dataHeaderSize(g.v5);
  const ftype = g.features.ftype;
  return {
    g,
    v5: g.v5,
    ftype,
    hdr,
    blksize: g.dirBlockSize,
    entsize: (n: number) => dataEntrySize(n, ftype),
    firstOffset: hdr + dataEntrySize(1, ftype) + dataEntrySize(2, ftype),
    ci: g.features.asciiCi,
    /** File block offsets of the leaf and free sections (32 GiB and 64 GiB). */
    leafFsb: 2 ** 35 / g.blockSize,
    freeFsb: 2 ** 36 / g.blockSize,
    /** Entries per dabtree node (a writer made for tests may use fewer). */
    nodeMax: daNodeEntries(g.dirBlockSize, g.v5),
    /** Entries after which a leafn splits (a writer made for tests may use fewer). */
    leafMax: Number.POSITIVE_INFINITY,
  };
}
export type DirGeo = ReturnType<typeof dirGeo>;

export type DataKind = "block" | "data";

/** End of the entry area: before the leaf and tail in block form, the block end otherwise. */
function areaEnd(dg: DirGeo, kind: DataKind, nents: number): number {
  return kind === "block" ? dg.blksize - 8 - nents * 8 : dg.blksize;
}

/** Do entries at their current offsets fit without overlap (and before the leaf)? */
export function layoutFits(entries: DirEntryW[], dg: DirGeo, kind: DataKind = "block"): boolean {
  const end0 = areaEnd(dg, kind, entries.length);
  let end = dg.hdr;
  for (const e of [...entries].sort((a, b) => a.offset - b.offset)) {
    if (e.offset < end) return false;
    end = e.offset + dg.entsize(e.name.length);
  }
  return end <= end0;
}

/** New offsets for all entries, packed in their current order. */
export function compact(entries: DirEntryW[], dg: DirGeo): void {
  let pos = dg.hdr;
  for (const e of [...entries].sort((a, b) => a.offset - b.offset)) {
    e.offset = pos;
    pos += dg.entsize(e.name.length);
  }
}

/** Puts `e` in the first gap among `entries` that fits (block form: leaving room for one more leaf entry). */
export function place(entries: DirEntryW[], e: DirEntryW, dg: DirGeo, kind: DataKind = "block"): boolean {
  const end = areaEnd(dg, kind, entries.length + 1);
  const size = dg.entsize(e.name.length);
  let pos = dg.hdr;
  for (const x of [...entries].sort((a, b) => a.offset - b.offset)) {
    if (x.offset - pos >= size) {
      e.offset = pos;
      return true;
    }
    pos = x.offset + dg.entsize(x.name.length);
  }
  if (end - pos >= size) {
    e.offset = pos;
    return true;
  }
  return false;
}

/** The longest free region a data block would have with these entries. */
export function longestFree(entries: DirEntryW[], dg: DirGeo, kind: DataKind): number {
  let best = 0;
  let pos = dg.hdr;
  for (const x of [...entries].sort((a, b) => a.offset - b.offset)) {
    best = Math.max(best, x.offset - pos);
    pos = x.offset + dg.entsize(x.name.length);
  }
  return Math.max(best, areaEnd(dg, kind, entries.length) - pos);
}

/**
 * Writes a whole directory data block at `fsb` (dirBlockSize bytes, contiguous): entries at their
 * offsets, unused regions between them, bestfree (three longest, longest first, earlier first on
 * ties) and, in block form, the hash-sorted leaf and the tail. Returns the longest free region.
 * `dbAddr` is the block's byte position in the data section (leaf addresses are relative to it).
 */
export async function writeDirDataBlock(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  fsb: number,
  entries: DirEntryW[],
  fresh: boolean,
  kind: DataKind,
): Promise<number> {
  const g = dg.g;
  const offset = g.fsbToByte(fsb);
  const bufs = ed.ctx.bufs;
  const buf = fresh
    ? bufs.fresh(offset, dg.blksize, "directory block")
    : await bufs.read(offset, dg.blksize, "directory block");
  const b = buf.data;
  b.fill(0);
  const magic =
    kind === "block"
      ? dg.v5
        ? DIR3_BLOCK_MAGIC
        : DIR2_BLOCK_MAGIC
      : dg.v5
        ? DIR3_DATA_MAGIC
        : DIR2_DATA_MAGIC;
  setBe32(b, 0, magic);
  if (dg.v5) {
    setBe64(b, 8, g.fsbToDaddr(fsb));
    b.set(g.metaUuid.subarray(0, 16), 24);
    setBe64(b, 40, dir.ino);
  }
  const sorted = [...entries].sort((a, c) => a.offset - c.offset);
  const end = areaEnd(dg, kind, sorted.length);
  const free: { off: number; len: number }[] = [];
  let pos = dg.hdr;
  const gap = (to: number) => {
    if (to > pos) {
      setBe16(b, pos, DATA_FREE_TAG);
      setBe16(b, pos + 2, to - pos);
      setBe16(b, to - 2, pos);
      free.push({ off: pos, len: to - pos });
    }
  };
  for (const e of sorted) {
    gap(e.offset);
    const p = e.offset;
    setBe64(b, p, e.ino);
    b[p + 8] = e.name.length;
    b.set(e.name, p + 9);
    if (dg.ftype) b[p + 9 + e.name.length] = e.ftype;
    const size = dg.entsize(e.name.length);
    setBe16(b, p + size - 2, p);
    pos = p + size;
  }
  gap(end);
  if (kind === "block") {
    const leaf = sorted
      .map((e) => ({ hash: dirHashName(e.name, dg.ci), addr: e.offset / 8 }))
      .sort((x, y) => x.hash - y.hash || x.addr - y.addr);
    leaf.forEach((l, i) => {
      setBe32(b, end + i * 8, l.hash);
      setBe32(b, end + i * 8 + 4, l.addr);
    });
    setBe32(b, dg.blksize - 8, sorted.length);
    setBe32(b, dg.blksize - 4, 0);
  }
  const best = [...free].sort((x, y) => y.len - x.len || x.off - y.off).slice(0, 3);
  const bfOff = dg.v5 ? 48 : 4;
  best.forEach((f, i) => {
    setBe16(b, bfOff + i * 4, f.off);
    setBe16(b, bfOff + i * 4 + 2, f.len);
  });
  bufs.dirty(buf, dg.v5 ? { crcOffset: 4, lsnOffset: 16 } : {});
  return best.length ? best[0].len : 0;
}

export function rmapOwner(dir: XfsInode, off: number) {
  return { owner: BigInt(dir.ino), offset: BigInt(off) };
}
