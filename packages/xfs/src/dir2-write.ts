/**
 * Directory writes for short-form and single-block directories (the editor's DirectoryWriter):
 * add and remove names the way the kernel's xfs_dir2_sf.c / xfs_dir2_block.c lay them out, so
 * xfs_repair finds the same structure the kernel would have written.
 *
 * - Short-form entries carry the offset they would have in a data block; a new entry is appended
 *   after the last one (or put in the first gap large enough), and the directory turns into a
 *   block directory when it no longer fits the inode fork or a block (xfs_dir2_sf_addname_pick).
 * - Block directories keep entries where they are; a new entry goes into the first free region
 *   that still leaves room for the larger leaf (the block is compacted when only the total fits).
 *   The leaf is kept without stale entries, the bestfree table holds the three largest free
 *   regions (longest first, earlier first on ties). When all names fit the inode again after a
 *   removal, the block goes back to short form (xfs_dir2_block_to_sf).
 * - Names that no longer fit one directory block go to leaf and node form (dir2-write-leaf.ts,
 *   dir2-write-node.ts), and come back to block and short form as names go.
 */
import { be32, setBe16, setBe32, setBe64 } from "./bytes.js";
import { decodeBlockTail } from "./dir2-block.js";
import { DIR2_BLOCK_MAGIC, DIR3_BLOCK_MAGIC, dataHeaderSize, decodeDataEntries } from "./dir2-data.js";
import { decodeSfDir, type XfsRawDirent } from "./dir2-sf.js";
import {
  compact,
  type DirGeo,
  DOT,
  DOTDOT,
  dirGeo,
  type DirEntryW as Entry,
  layoutFits,
  place,
  rmapOwner,
  sameName,
  writeDirDataBlock,
} from "./dir2-write-data.js";
import { blockToLeaf, leafAddName, leafRemoveName } from "./dir2-write-leaf.js";
import type { DirectoryWriter, XfsEditor } from "./editor.js";
import { XfsFormatError, XfsFsError, XfsUnsupportedError } from "./errors.js";
import { forkArea, packExtent, unpackExtent } from "./fork.js";
import { FMT_EXTENTS, FMT_LOCAL, S_IFMT, type XfsInode } from "./inode.js";
import { fileTypeFromMode } from "./stats.js";

const MAX_SHORT_INUM = 0xffff_ffff;

// ---------------------------------------------------------------- short form

/** Bytes of a short-form directory holding `entries` (i8: 8-byte inode numbers). */
function sfSize(entries: Entry[], i8: boolean, ftype: boolean): number {
  const isz = i8 ? 8 : 4;
  let n = 2 + isz;
  for (const e of entries) n += 3 + e.name.length + (ftype ? 1 : 0) + isz;
  return n;
}

function needsI8(parent: number, entries: Entry[]): number {
  let c = parent > MAX_SHORT_INUM ? 1 : 0;
  for (const e of entries) if (e.ino > MAX_SHORT_INUM) c++;
  return c;
}

function encodeSf(parent: number, entries: Entry[], ftype: boolean): Uint8Array {
  const i8count = needsI8(parent, entries);
  const i8 = i8count > 0;
  const isz = i8 ? 8 : 4;
  const out = new Uint8Array(sfSize(entries, i8, ftype));
  out[0] = entries.length;
  out[1] = Math.min(i8count, 255);
  const putIno = (off: number, v: number) => (i8 ? setBe64(out, off, v) : setBe32(out, off, v));
  putIno(2, parent);
  let p = 2 + isz;
  for (const e of entries) {
    out[p] = e.name.length;
    setBe16(out, p + 1, e.offset);
    out.set(e.name, p + 3);
    let q = p + 3 + e.name.length;
    if (ftype) out[q++] = e.ftype;
    putIno(q, e.ino);
    p = q + isz;
  }
  return out;
}

function writeSf(dir: XfsInode, parent: number, entries: Entry[], ftype: boolean): void {
  const area = forkArea(dir, "data");
  if (!area) throw new XfsFormatError("directory without a data fork", { inode: dir.ino });
  const bytes = encodeSf(parent, entries, ftype);
  if (bytes.length > area.size) throw new Error("short-form directory does not fit");
  dir.raw.fill(0, area.start, area.start + area.size);
  dir.raw.set(bytes, area.start);
  dir.format = FMT_LOCAL;
  dir.size = bytes.length;
  dir.nextents = 0;
}

function readSf(ed: XfsEditor, dir: XfsInode): { parent: number; entries: Entry[] } {
  const area = forkArea(dir, "data");
  if (!area) throw new XfsFormatError("directory without a data fork", { inode: dir.ino });
  const sf = decodeSfDir(dir.raw.slice(area.start, area.start + dir.size), ed.fs.features.ftype, {
    file: ed.device.name,
    inode: dir.ino,
  });
  return { parent: sf.parent, entries: sf.entries.map((e: XfsRawDirent) => ({ ...e })) };
}

// ---------------------------------------------------------------- block form

interface BlockDir {
  fsb: number;
  entries: Entry[];
}

/** The single directory block's location (contiguous fs blocks) and live entries. */
/** Is the directory in single-block form (one directory block mapped at offset 0)? */
function isSingleBlock(dir: XfsInode, dg: DirGeo): boolean {
  return dir.format === FMT_EXTENTS && dir.nextents === 1 && dir.size === dg.blksize;
}

async function readBlockDir(ed: XfsEditor, dir: XfsInode, dg: DirGeo): Promise<BlockDir> {
  const area = forkArea(dir, "data");
  const at = { file: ed.device.name, inode: dir.ino, structure: "block directory" };
  if (!area || dir.format !== FMT_EXTENTS || dir.nextents !== 1)
    throw new XfsUnsupportedError(
      "dir-leaf-write",
      "only short-form and single-block directories can be changed yet",
      at,
    );
  const e = unpackExtent(dir.raw, area.start);
  if (e.startoff !== 0 || e.blockcount !== dg.g.dirBlockFsbs || dir.size !== dg.blksize)
    throw new XfsUnsupportedError(
      "dir-leaf-write",
      "only short-form and single-block directories can be changed yet",
      at,
    );
  const buf = await ed.ctx.bufs.read(dg.g.fsbToByte(e.startblock), dg.blksize, "directory block");
  const b = buf.data;
  const magic = be32(b, 0);
  if (magic !== (dg.v5 ? DIR3_BLOCK_MAGIC : DIR2_BLOCK_MAGIC))
    throw new XfsFormatError(`bad block directory magic 0x${magic.toString(16)}`, at);
  const tail = decodeBlockTail(b, dg.hdr, at);
  const entries = decodeDataEntries(b, dg.v5, tail.leafStart, dg.ftype, 0, at).map((x) => ({ ...x }));
  return { fsb: e.startblock, entries };
}

/**
 * xfs_bmap_add_attrfork_local for a directory: a short-form directory that would not fit beside a
 * new attribute fork becomes a single-block directory first.
 */
export async function dirLocalToBlock(ed: XfsEditor, dir: XfsInode): Promise<void> {
  const { parent, entries } = readSf(ed, dir);
  await sfToBlock(ed, dir, dirGeo(ed), parent, entries);
}

async function sfToBlock(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  parent: number,
  entries: Entry[],
): Promise<BlockDir> {
  const g = dg.g;
  const n = g.dirBlockFsbs;
  const agno = g.inoToAgno(dir.ino);
  const r = await ed.alloc.alloc(agno, {
    minlen: n,
    maxlen: n,
    near: g.inoToAgbno(dir.ino),
    owner: rmapOwner(dir, 0),
  });
  if (!r) throw new XfsFsError("ENOSPC", "no space for a directory block", `<inode ${dir.ino}>`);
  const fsb = g.agbToFsb(r.agno, r.ext.agbno);
  const all: Entry[] = [
    { name: DOT, ino: dir.ino, ftype: 2, offset: dg.hdr },
    { name: DOTDOT, ino: parent, ftype: 2, offset: dg.hdr + dg.entsize(1) },
    ...entries,
  ];
  if (!layoutFits(all, dg)) compact(all, dg);
  await writeDirDataBlock(ed, dir, dg, fsb, all, true, "block");
  const area = forkArea(dir, "data");
  if (!area) throw new XfsFormatError("directory without a data fork", { inode: dir.ino });
  dir.raw.fill(0, area.start, area.start + area.size);
  packExtent(dir.raw, area.start, { startoff: 0, startblock: fsb, blockcount: n, unwritten: false });
  dir.format = FMT_EXTENTS;
  dir.nextents = 1;
  dir.nblocks += n;
  dir.size = dg.blksize;
  return { fsb, entries: all };
}

async function addEntry(
  ed: XfsEditor,
  dir: XfsInode,
  name: Uint8Array,
  ino: number,
  mode: number,
  dg: DirGeo,
): Promise<void> {
  const ftype = dg.ftype ? fileTypeFromMode(mode & S_IFMT) : 0;
  const path = `<inode ${dir.ino}>/${Buffer.from(name).toString()}`;
  if (name.length === 0 || name.length > 255) throw new XfsFsError("EINVAL", "bad name length", path);
  const entry: Entry = { name, ino, ftype, offset: 0 };
  if (dir.format === FMT_LOCAL) {
    const { parent, entries } = readSf(ed, dir);
    if (entries.some((e) => sameName(e.name, name))) throw new XfsFsError("EEXIST", "name exists", path);
    const area = forkArea(dir, "data");
    const room = area ? area.size : 0;
    // xfs_dir2_sf_addname_pick: append after the last entry, or use the first gap that fits.
    const size = dg.entsize(name.length);
    let offset = dg.firstOffset;
    let hole = -1;
    entries.forEach((e, i) => {
      if (hole < 0 && offset + size <= e.offset) hole = i;
      offset = e.offset + dg.entsize(e.name.length);
    });
    const used = offset + (entries.length + 3) * 8 + 8;
    const next = [...entries];
    let fitsBlock = true;
    if (used + size <= dg.blksize) {
      next.push({ ...entry, offset });
    } else if (hole >= 0 && used <= dg.blksize) {
      let prevEnd = dg.firstOffset;
      if (hole > 0) prevEnd = entries[hole - 1].offset + dg.entsize(entries[hole - 1].name.length);
      next.splice(hole, 0, { ...entry, offset: prevEnd });
    } else fitsBlock = false;
    if (fitsBlock && sfSize(next, needsI8(parent, next) > 0, dg.ftype) <= room && next.length <= 255) {
      writeSf(dir, parent, next, dg.ftype);
      return;
    }
    const blk = await sfToBlock(ed, dir, dg, parent, entries);
    await blockAdd(ed, dir, dg, blk, entry);
    return;
  }
  if (!isSingleBlock(dir, dg)) {
    await leafAddName(ed, dir, dg, entry, path);
    return;
  }
  const blk = await readBlockDir(ed, dir, dg);
  if (blk.entries.some((e) => sameName(e.name, name))) throw new XfsFsError("EEXIST", "name exists", path);
  await blockAdd(ed, dir, dg, blk, entry);
}

async function blockAdd(
  ed: XfsEditor,
  dir: XfsInode,
  dg: DirGeo,
  blk: BlockDir,
  entry: Entry,
): Promise<void> {
  const entries = blk.entries;
  if (!place(entries, entry, dg)) {
    const total = dg.hdr + [...entries, entry].reduce((n, e) => n + dg.entsize(e.name.length), 0);
    if (total + (entries.length + 1) * 8 + 8 > dg.blksize) {
      // Outgrows the block: it becomes the first data block of a leaf directory.
      await blockToLeaf(ed, dir, dg, blk.fsb, entries);
      await leafAddName(ed, dir, dg, entry, `<inode ${dir.ino}>`);
      return;
    }
    compact(entries, dg);
    if (!place(entries, entry, dg)) throw new Error("compacted block has no room");
  }
  await writeDirDataBlock(ed, dir, dg, blk.fsb, [...entries, entry], false, "block");
}

async function removeEntry(ed: XfsEditor, dir: XfsInode, name: Uint8Array, dg: DirGeo): Promise<void> {
  const path = `<inode ${dir.ino}>/${Buffer.from(name).toString()}`;
  if (dir.format === FMT_LOCAL) {
    const { parent, entries } = readSf(ed, dir);
    const i = entries.findIndex((e) => sameName(e.name, name));
    if (i < 0) throw new XfsFsError("ENOENT", "no such name", path);
    entries.splice(i, 1);
    writeSf(dir, parent, entries, dg.ftype);
    return;
  }
  if (!isSingleBlock(dir, dg)) {
    await leafRemoveName(ed, dir, dg, name, path);
    // A leaf directory that just became a block directory may fit the inode already.
    if (isSingleBlock(dir, dg)) await blockToSfIfFits(ed, dir, dg, await readBlockDir(ed, dir, dg));
    return;
  }
  const blk = await readBlockDir(ed, dir, dg);
  const i = blk.entries.findIndex((e) => sameName(e.name, name));
  if (i < 0 || sameName(name, DOT) || sameName(name, DOTDOT))
    throw new XfsFsError("ENOENT", "no such name", path);
  blk.entries.splice(i, 1);
  if (await blockToSfIfFits(ed, dir, dg, blk)) return;
  await writeDirDataBlock(ed, dir, dg, blk.fsb, blk.entries, false, "block");
}

/** xfs_dir2_block_to_sf: back to short form when every name fits the inode. */
async function blockToSfIfFits(ed: XfsEditor, dir: XfsInode, dg: DirGeo, blk: BlockDir): Promise<boolean> {
  const parent = blk.entries.find((e) => sameName(e.name, DOTDOT))?.ino ?? dir.ino;
  const rest = blk.entries.filter((e) => !sameName(e.name, DOT) && !sameName(e.name, DOTDOT));
  const area = forkArea(dir, "data");
  if (!area || sfSize(rest, needsI8(parent, rest) > 0, dg.ftype) > area.size || rest.length > 255)
    return false;
  const g = dg.g;
  const n = g.dirBlockFsbs;
  ed.ctx.bufs.forget(g.fsbToByte(blk.fsb));
  await ed.alloc.free(g.fsbToAgno(blk.fsb), g.fsbToAgbno(blk.fsb), n, rmapOwner(dir, 0));
  dir.nblocks -= n;
  // Short-form entries keep the offsets they had in the block.
  writeSf(
    dir,
    parent,
    rest.sort((a, b) => a.offset - b.offset),
    dg.ftype,
  );
  return true;
}

function writer(geo: (ed: XfsEditor) => DirGeo): DirectoryWriter {
  return {
    addEntry: (ed, dir, name, ino, mode) => addEntry(ed, dir, name, ino, mode, geo(ed)),
    removeEntry: (ed, dir, name) => removeEntry(ed, dir, name, geo(ed)),
  };
}

/** The DirectoryWriter for XfsEditor: every directory form. */
export const dir2Writer: DirectoryWriter = writer(dirGeo);

/**
 * A DirectoryWriter whose dabtree nodes hold at most `nodeEntries` entries and whose leafn
 * blocks split past `leafEntries` (valid on disk, as the format sets only the maximum): tests
 * reach deep trees with few names this way.
 */
export function dir2WriterWith(limits: { nodeEntries?: number; leafEntries?: number }): DirectoryWriter {
  return writer((ed) => {
    const dg = dirGeo(ed);
    return {
      ...dg,
      nodeMax: Math.max(2, Math.min(limits.nodeEntries ?? dg.nodeMax, dg.nodeMax)),
      leafMax: Math.max(4, limits.leafEntries ?? dg.leafMax),
    };
  });
}

/** Exposed for tests: the on-disk name list of a block directory block as written. */
export function blockDirNames(b: Uint8Array, v5: boolean, ftype: boolean): string[] {
  const hdr = dataHeaderSize(v5);
  const tail = decodeBlockTail(b, hdr, {});
  return decodeDataEntries(b, v5, tail.leafStart, ftype, 0, {}).map((e) => Buffer.from(e.name).toString());
}
