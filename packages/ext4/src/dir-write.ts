/**
 * Block-level directory editing: inserting a record into the free space of a leaf block
 * (splitting a live record's slack like the kernel does), removing one (merging it into the
 * previous record), fresh leaf blocks, dx_root / dx_node construction. Blocks with metadata_csum
 * end with a dirent tail (leaves) or a dx_tail (index nodes); the caller sets the checksums.
 */
import { setU16, setU32, u16, u32 } from "./bytes.js";
import {
  DIRENT_HEADER,
  DIRENT_TAIL_SIZE,
  decodeRecLen,
  direntSize,
  encodeDirent,
  encodeRecLen,
} from "./dirent.js";
import { DX_ROOT_INFO_OFFSET, type DxEntry, dxLimit, encodeDxEntries, encodeDxRootInfo } from "./htree.js";

export interface LeafRecord {
  inode: number;
  name: Uint8Array;
  fileType: number;
}

/** Usable end of a leaf block (before the checksum tail). */
export function leafEnd(blockSize: number, csum: boolean): number {
  return blockSize - (csum ? DIRENT_TAIL_SIZE : 0);
}

/** Largest record that would fit into the block's free space. */
export function maxFree(buf: Uint8Array, start: number, end: number, blockSize: number, ft: boolean): number {
  let best = 0;
  let off = start;
  while (off < end) {
    const ino = u32(buf, off);
    const rec = decodeRecLen(u16(buf, off + 4), blockSize);
    if (rec < DIRENT_HEADER || off + rec > end) return 0;
    const nl = ft ? buf[off + 6] : u16(buf, off + 6);
    const used = ino ? direntSize(nl) : 0;
    if (rec - used > best) best = rec - used;
    off += rec;
  }
  return best;
}

/** Put a record into the block if there is room; returns false when it does not fit. */
export function insertIntoBlock(
  buf: Uint8Array,
  start: number,
  end: number,
  blockSize: number,
  ft: boolean,
  rec: LeafRecord,
): boolean {
  return insertFrom(buf, start, end, blockSize, ft, rec) >= 0;
}

/**
 * Like insertIntoBlock, trying from the record at `from` first: a record boundary the caller
 * knows, such as where its previous insert went (the record holding the block's slack), so
 * that filling a block costs one step per insert instead of a scan. When nothing from there on
 * has room, the whole block from `start` is tried. Returns the new record's offset, or -1.
 */
export function insertIntoBlockAt(
  buf: Uint8Array,
  start: number,
  from: number,
  end: number,
  blockSize: number,
  ft: boolean,
  rec: LeafRecord,
): number {
  if (from > start) {
    const at = insertFrom(buf, from, end, blockSize, ft, rec);
    if (at >= 0) return at;
  }
  return insertFrom(buf, start, end, blockSize, ft, rec);
}

function insertFrom(
  buf: Uint8Array,
  start: number,
  end: number,
  blockSize: number,
  ft: boolean,
  rec: LeafRecord,
): number {
  const need = direntSize(rec.name.length);
  let off = start;
  while (off < end) {
    const ino = u32(buf, off);
    const recLen = decodeRecLen(u16(buf, off + 4), blockSize);
    if (recLen < DIRENT_HEADER || off + recLen > end) return -1;
    const nl = ft ? buf[off + 6] : u16(buf, off + 6);
    const used = ino ? direntSize(nl) : 0;
    if (recLen - used >= need) {
      if (ino) {
        setU16(buf, off + 4, encodeRecLen(used, blockSize));
        off += used;
      }
      buf.fill(0, off, off + (recLen - used));
      encodeDirent(
        buf,
        off,
        { inode: rec.inode, recLen: recLen - used, name: rec.name, fileType: rec.fileType },
        blockSize,
        ft,
      );
      return off;
    }
    off += recLen;
  }
  return -1;
}

/** Remove the live record named `name`; returns false when absent. */
export function removeFromBlock(
  buf: Uint8Array,
  start: number,
  end: number,
  blockSize: number,
  ft: boolean,
  name: Uint8Array,
): boolean {
  let off = start;
  let prev = -1;
  while (off < end) {
    const ino = u32(buf, off);
    const recLen = decodeRecLen(u16(buf, off + 4), blockSize);
    if (recLen < DIRENT_HEADER || off + recLen > end) return false;
    const nl = ft ? buf[off + 6] : u16(buf, off + 6);
    if (ino && nl === name.length && sameName(buf, off + 8, name)) {
      if (prev >= 0) {
        const prevLen = decodeRecLen(u16(buf, prev + 4), blockSize);
        setU16(buf, prev + 4, encodeRecLen(prevLen + recLen, blockSize));
        buf.fill(0, off, off + Math.min(recLen, DIRENT_HEADER + nl));
      } else {
        setU32(buf, off, 0);
        buf.fill(0, off + 6, off + DIRENT_HEADER + nl);
      }
      return true;
    }
    prev = off;
    off += recLen;
  }
  return false;
}

/** Overwrite the inode number (and type) of the live record named `name`. */
export function retargetInBlock(
  buf: Uint8Array,
  start: number,
  end: number,
  blockSize: number,
  ft: boolean,
  name: Uint8Array,
  inode: number,
  fileType: number,
): boolean {
  let off = start;
  while (off < end) {
    const ino = u32(buf, off);
    const recLen = decodeRecLen(u16(buf, off + 4), blockSize);
    if (recLen < DIRENT_HEADER || off + recLen > end) return false;
    const nl = ft ? buf[off + 6] : u16(buf, off + 6);
    if (ino && nl === name.length && sameName(buf, off + 8, name)) {
      setU32(buf, off, inode);
      if (ft) buf[off + 7] = fileType;
      return true;
    }
    off += recLen;
  }
  return false;
}

function sameName(buf: Uint8Array, off: number, name: Uint8Array): boolean {
  for (let i = 0; i < name.length; i++) if (buf[off + i] !== name[i]) return false;
  return true;
}

/** Fill a leaf block with `records` packed from the start; the last record takes the slack. */
export function writeLeaf(
  buf: Uint8Array,
  end: number,
  blockSize: number,
  ft: boolean,
  records: LeafRecord[],
): void {
  buf.fill(0, 0, end);
  let off = 0;
  if (records.length === 0) {
    encodeDirent(buf, 0, { inode: 0, recLen: end, name: new Uint8Array(0), fileType: 0 }, blockSize, ft);
    return;
  }
  records.forEach((r, i) => {
    const len = i === records.length - 1 ? end - off : direntSize(r.name.length);
    off = encodeDirent(
      buf,
      off,
      { inode: r.inode, recLen: len, name: r.name, fileType: r.fileType },
      blockSize,
      ft,
    );
  });
  if (off !== end) throw new Error("directory leaf overflow");
}

const DOT = new Uint8Array([0x2e]);
const DOTDOT = new Uint8Array([0x2e, 0x2e]);

/** First block of a new linear directory: ".", "..". */
export function writeDirHead(
  buf: Uint8Array,
  end: number,
  blockSize: number,
  ft: boolean,
  self: number,
  parent: number,
  dirFt: number,
): void {
  buf.fill(0, 0, end);
  encodeDirent(buf, 0, { inode: self, recLen: 12, name: DOT, fileType: dirFt }, blockSize, ft);
  encodeDirent(buf, 12, { inode: parent, recLen: end - 12, name: DOTDOT, fileType: dirFt }, blockSize, ft);
}

/** dx_root block: ".", ".." spanning the block, dx_root_info, entries. Returns the entries offset. */
export function writeDxRoot(
  buf: Uint8Array,
  blockSize: number,
  ft: boolean,
  self: number,
  parent: number,
  dirFt: number,
  hashVersion: number,
  levels: number,
  entries: DxEntry[],
  csum: boolean,
): { off: number; limit: number } {
  buf.fill(0);
  encodeDirent(buf, 0, { inode: self, recLen: 12, name: DOT, fileType: dirFt }, blockSize, ft);
  encodeDirent(
    buf,
    12,
    { inode: parent, recLen: blockSize - 12, name: DOTDOT, fileType: dirFt },
    blockSize,
    ft,
  );
  encodeDxRootInfo(buf, { hashVersion, infoLength: 8, indirectLevels: levels, unusedFlags: 0 });
  const off = DX_ROOT_INFO_OFFSET + 8;
  const limit = dxLimit(blockSize, off, csum);
  encodeDxEntries(buf, off, { limit, entries });
  return { off, limit };
}

/** dx_node block: a fake empty record spanning the block, then entries. */
export function writeDxNode(
  buf: Uint8Array,
  blockSize: number,
  entries: DxEntry[],
  csum: boolean,
): { off: number; limit: number } {
  buf.fill(0);
  setU32(buf, 0, 0);
  setU16(buf, 4, encodeRecLen(blockSize, blockSize));
  const off = 8;
  const limit = dxLimit(blockSize, off, csum);
  encodeDxEntries(buf, off, { limit, entries });
  return { off, limit };
}
