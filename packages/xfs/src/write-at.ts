/**
 * writeAt: pwrite(2) into an existing regular file, touching only the blocks written — what
 * `customize --scrub` needs (the old bytes overwritten where they lie).
 *
 * Blocks of written extents are overwritten in place; holes in the range get new blocks (the
 * parts of them the write does not cover are zeros), merged into the data fork's mapping, which
 * is rebuilt (extents or bmbt) when it changed; the size grows when the write ends past it.
 * Preallocated (unwritten) extents are converted where the write covers them, as
 * xfs_bmap_add_extent_unwritten_real does: the extent splits into up to three (unwritten head,
 * written middle, unwritten tail), the rmap record of the written part loses its unwritten flag,
 * and the converted blocks are written whole — zeros where the write does not reach, since their
 * old bytes were never the file's.
 * Blocks shared with another file (reflink) are never written into: they are copied to new
 * blocks with the write laid over them, and the old ones lose a reference (copyOnWrite).
 * Refused with a typed error, nothing changed: preallocated (unwritten) blocks that are shared.
 *
 * Order, for all or nothing: the editor writes out earlier calls' changes first (an in-place
 * write cannot be undone, and must not be overtaken by older pending contents of the same
 * blocks); this call then allocates and maps everything it needs — ENOSPC stops it before any
 * byte of the file changed — and only then writes the bytes in place.
 */
import { fsbToAg } from "./ag.js";
import type { XfsEditor } from "./editor.js";
import { XfsFsError, XfsUnsupportedError } from "./errors.js";
import { BlockPlacer, buildFork, dataMapping, freeBmbtBlocks } from "./file-write.js";
import { mergeExtents, type XfsExtent } from "./fork.js";
import { DIFLAG2_REFLINK, S_IFMT, type XfsInode } from "./inode.js";
import { storeInode } from "./inode-create.js";
import { sharedRanges } from "./refcount.js";
import { refcountDecrement } from "./refcount-write.js";
import { rmapMap, rmapUnmap } from "./rmap.js";

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

/**
 * The body of XfsEditor.writeAt (the editor has written out pending changes and opened the
 * call's transaction); `inode` is the file, loaded for change. The caller stores nothing: this
 * stores the inode.
 */
export async function writeAtInode(
  ed: XfsEditor,
  inode: XfsInode,
  path: string,
  offset: number,
  bytes: Uint8Array,
): Promise<void> {
  const fmt = inode.mode & S_IFMT;
  if (fmt !== S_IFREG)
    throw new XfsFsError(fmt === S_IFDIR ? "EISDIR" : "EINVAL", "not a regular file", path);
  if (bytes.length === 0) return;
  const ctx = ed.ctx;
  const geo = ctx.geo;
  const bs = geo.blockSize;
  // Past the end: the rest of the old last block must read as zeros (as xfs_zero_eof makes it).
  if (offset > inode.size && inode.size % bs !== 0) {
    const upTo = Math.min(offset, Math.ceil(inode.size / bs) * bs);
    await writeAtInode(ed, inode, path, inode.size, new Uint8Array(upTo - inode.size));
  }
  const end = offset + bytes.length;
  const first = Math.floor(offset / bs);
  const last = Math.floor((end - 1) / bs);
  if (last >= 2 ** 52) throw new XfsFsError("EFBIG", "write past the largest file offset", path);
  const map = await dataMapping(ctx, ed.alloc, inode);
  // What the range covers: parts of existing extents (checked first), and holes.
  const inPlace: { fileBlock: number; fsb: number; count: number; unwritten: boolean }[] = [];
  const holes: [number, number][] = [];
  const cow: { fileBlock: number; fsb: number; count: number }[] = [];
  let at = first;
  for (const e of map.extents) {
    const s = Math.max(e.startoff, first);
    const t = Math.min(e.startoff + e.blockcount, last + 1);
    if (s >= t) continue;
    if (s > at) holes.push([at, s]);
    at = t;
    const fsb = e.startblock + (s - e.startoff);
    if (geo.reflink && (inode.flags2 & DIFLAG2_REFLINK) !== 0n) {
      const { agno, agbno } = fsbToAg(geo, fsb);
      const ag = await ed.alloc.ag(agno);
      const shared = await sharedRanges(geo, ctx.bufs, agno, ag.agf, agbno, t - s);
      if (shared.length > 0 && e.unwritten)
        throw new XfsUnsupportedError(
          "reflink-shared",
          "the range shares preallocated blocks with another file (reflink): not written",
          { inode: inode.ino, file: geo.file },
        );
      // Shared blocks are copied (cow), the rest is written in place.
      let cur = s;
      for (const sh of shared) {
        const shStart = s + (sh.agbno - agbno);
        if (shStart > cur)
          inPlace.push({ fileBlock: cur, fsb: fsb + (cur - s), count: shStart - cur, unwritten: false });
        cow.push({ fileBlock: shStart, fsb: fsb + (shStart - s), count: sh.len });
        cur = shStart + sh.len;
      }
      if (cur < t) inPlace.push({ fileBlock: cur, fsb: fsb + (cur - s), count: t - cur, unwritten: false });
      continue;
    }
    inPlace.push({ fileBlock: s, fsb, count: t - s, unwritten: e.unwritten });
  }
  if (at <= last) holes.push([at, last + 1]);
  const converted = inPlace.filter((p) => p.unwritten);
  let extents = map.extents;
  if (converted.length > 0) {
    extents = splitWritten(extents, converted);
    if (geo.rmapbt) for (const p of converted) await rmapWritten(ed, inode, p.fileBlock, p.fsb, p.count);
  }

  if (cow.length > 0) extents = await copyOnWrite(ed, inode, extents, cow, offset, bytes);

  // New blocks for the holes, with their bytes (zeros where the write does not reach).
  if (holes.length > 0 || converted.length > 0 || cow.length > 0) {
    const placer = new BlockPlacer(ctx, ed.alloc, inode, false);
    for (const [s, t] of holes) {
      const buf = new Uint8Array((t - s) * bs);
      const from = Math.max(offset, s * bs);
      const to = Math.min(end, t * bs);
      buf.set(bytes.subarray(from - offset, to - offset), from - s * bs);
      await placer.put(s, buf, buf.length);
    }
    const added = placer.extents;
    inode.nblocks += added.reduce((n, x) => n + x.blockcount, 0);
    if (map.bmbtBlocks.length > 0) await freeBmbtBlocks(ctx, ed.alloc, inode, map.bmbtBlocks);
    await buildFork(ctx, ed.alloc, inode, mergeExtents([...extents, ...added]));
  }

  // Last, the bytes over existing blocks; partial end blocks are read, patched and written whole.
  for (const p of inPlace) {
    const dev = ed.fs.geometry.fsbToByte(p.fsb);
    const from = Math.max(offset, p.fileBlock * bs);
    const to = Math.min(end, (p.fileBlock + p.count) * bs);
    const headBlock = Math.floor(from / bs);
    const tailBlock = Math.floor((to - 1) / bs);
    const devOf = (fileByte: number) => dev + fileByte - p.fileBlock * bs;
    const patchBlock = async (fb: number) => {
      const blockAt = devOf(fb * bs);
      const b = await ed.device.read(blockAt, bs);
      const s = Math.max(from, fb * bs);
      const e = Math.min(to, (fb + 1) * bs);
      b.set(bytes.subarray(s - offset, e - offset), s - fb * bs);
      await ctx.bufs.writeThrough(blockAt, b);
    };
    if (p.unwritten) {
      // Whole blocks: the write's bytes over zeros.
      const blocks = new Uint8Array((tailBlock + 1 - headBlock) * bs);
      blocks.set(bytes.subarray(from - offset, to - offset), from - headBlock * bs);
      await ctx.bufs.writeThrough(devOf(headBlock * bs), blocks);
      continue;
    }
    let wholeFrom = headBlock;
    let wholeTo = tailBlock + 1;
    if (from % bs !== 0) {
      await patchBlock(headBlock);
      wholeFrom = headBlock + 1;
    }
    if (to % bs !== 0 && tailBlock >= wholeFrom) {
      await patchBlock(tailBlock);
      wholeTo = tailBlock;
    }
    if (wholeTo > wholeFrom)
      await ctx.bufs.writeThrough(
        devOf(wholeFrom * bs),
        bytes.subarray(wholeFrom * bs - offset, wholeTo * bs - offset),
      );
  }

  inode.size = Math.max(inode.size, end);
  const t = ed.now();
  inode.mtime = t;
  inode.ctime = { ...t };
  if (inode.version >= 3) inode.changecount++;
  await storeInode(ctx, inode);
}

/** The mapping with the written blocks `done` (parts of unwritten extents) split out as written. */
function splitWritten(extents: XfsExtent[], done: { fileBlock: number; count: number }[]): XfsExtent[] {
  const out: XfsExtent[] = [];
  for (const e of extents) {
    const end = e.startoff + e.blockcount;
    const hit = e.unwritten ? done.find((d) => d.fileBlock >= e.startoff && d.fileBlock < end) : undefined;
    if (!hit) {
      out.push(e);
      continue;
    }
    const s = hit.fileBlock;
    const t = s + hit.count;
    const at = (off: number) => e.startblock + (off - e.startoff);
    if (s > e.startoff) out.push({ ...e, blockcount: s - e.startoff });
    out.push({ startoff: s, startblock: at(s), blockcount: t - s, unwritten: false });
    if (t < end) out.push({ ...e, startoff: t, startblock: at(t), blockcount: end - t });
  }
  return out;
}

/** The reverse map of converted blocks: the unwritten record's part becomes a written one. */
async function rmapWritten(
  ed: XfsEditor,
  inode: XfsInode,
  fileBlock: number,
  fsb: number,
  count: number,
): Promise<void> {
  const { agno, agbno } = fsbToAg(ed.ctx.geo, fsb);
  const ag = await ed.alloc.ag(agno);
  if (!ag.rmap) return;
  // Record splits and merges can grow or shrink the rmapbt: the AGFL must cover them first.
  await ag.fixFreelist();
  const owner = { owner: BigInt(inode.ino), offset: BigInt(fileBlock) };
  await rmapUnmap(ag.rmap, agbno, count, { ...owner, unwritten: true });
  await rmapMap(ag.rmap, agbno, count, { ...owner, unwritten: false });
}

/**
 * Copy-on-write of shared blocks (xfs_reflink_end_cow, done in one step): each shared run gets
 * new blocks holding its old bytes with the write laid over them, the file's rmap record on the
 * old blocks goes, and the old blocks lose one reference (refcount-write.ts) — the other file
 * keeps them. Returns the mapping with the runs moved to their new blocks.
 */
async function copyOnWrite(
  ed: XfsEditor,
  inode: XfsInode,
  extents: XfsExtent[],
  cow: { fileBlock: number; fsb: number; count: number }[],
  offset: number,
  bytes: Uint8Array,
): Promise<XfsExtent[]> {
  const geo = ed.ctx.geo;
  const bs = geo.blockSize;
  const end = offset + bytes.length;
  const placer = new BlockPlacer(ed.ctx, ed.alloc, inode, false);
  let out = extents;
  for (const c of cow) {
    const data = await ed.device.read(ed.fs.geometry.fsbToByte(c.fsb), c.count * bs);
    const from = Math.max(offset, c.fileBlock * bs);
    const to = Math.min(end, (c.fileBlock + c.count) * bs);
    data.set(bytes.subarray(from - offset, to - offset), from - c.fileBlock * bs);
    await placer.put(c.fileBlock, data, data.length);
    const { agno, agbno } = fsbToAg(geo, c.fsb);
    const ag = await ed.alloc.ag(agno);
    if (ag.rmap) {
      await ag.fixFreelist();
      await rmapUnmap(ag.rmap, agbno, c.count, { owner: BigInt(inode.ino), offset: BigInt(c.fileBlock) });
    }
    await refcountDecrement(ag, agbno, c.count);
    out = cutRange(out, c.fileBlock, c.count);
  }
  return [...out, ...placer.extents].sort((a, b) => a.startoff - b.startoff);
}

/** The mapping without file blocks [start, start+count). */
function cutRange(extents: XfsExtent[], start: number, count: number): XfsExtent[] {
  const stop = start + count;
  const out: XfsExtent[] = [];
  for (const e of extents) {
    const eEnd = e.startoff + e.blockcount;
    if (eEnd <= start || e.startoff >= stop) {
      out.push(e);
      continue;
    }
    if (e.startoff < start) out.push({ ...e, blockcount: start - e.startoff });
    if (eEnd > stop)
      out.push({
        ...e,
        startoff: stop,
        startblock: e.startblock + (stop - e.startoff),
        blockcount: eEnd - stop,
      });
  }
  return out;
}
