/** writeAt: pwrite(2) into an existing file, touching only the blocks written. */
import { checkFileWritable, dropContent } from "./content.js";
import { type EditContext, timeNow } from "./edit-context.js";
import { Ext4EditError } from "./errors.js";
import { INODE_FLAGS } from "./features.js";
import type { MapExtent } from "./file-map.js";
import { readDataBlock, writeContent, writeRuns } from "./file-write.js";
import { inlineCapacity, inlineParts, storeInline } from "./inline.js";
import { inlineFileContent } from "./inline-data.js";
import { type Inode, S_IFDIR, S_IFMT, S_IFREG } from "./inode.js";
import { fileMap, nodesNeeded, setMap, usesExtents } from "./inode-map.js";
import { putInode } from "./inode-table.js";
import { resolve } from "./namei.js";

/**
 * Write `data` into an existing regular file at byte `offset`, like pwrite(2) (a final symlink
 * is followed). Only the touched blocks are written: holes in the range get new blocks,
 * unwritten (uninitialised) extents become written where the data lands (split around it),
 * and the size grows when the write ends past it — a write beyond the end leaves a hole. An
 * inline file stays inline while it fits, else its content moves to a block first.
 */
export async function writeAt(
  ctx: EditContext,
  path: string,
  offset: number,
  data: Uint8Array | string,
): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(offset + bytes.length))
    throw new Ext4EditError("EINVAL", "invalid offset", path);
  const { inode } = await resolve(ctx, path, true);
  const fmt = inode.mode & S_IFMT;
  if (fmt !== S_IFREG)
    throw new Ext4EditError(fmt === S_IFDIR ? "EISDIR" : "EINVAL", "not a regular file", path);
  checkFileWritable(inode, path);
  if (bytes.length === 0) return;
  const end = offset + bytes.length;
  const lastBlock = Math.floor((end - 1) / ctx.bs);
  const per = ctx.bs / 4;
  const limit =
    usesExtents(inode) || inode.flags & INODE_FLAGS.INLINE_DATA
      ? 2 ** 32
      : 12 + per + per * per + per * per * per;
  if (lastBlock >= limit) throw new Ext4EditError("EINVAL", "file too large", path);
  const newSize = Math.max(inode.size, end);
  if (inode.flags & INODE_FLAGS.INLINE_DATA) {
    const { value, others } = await inlineParts(ctx, inode);
    const old = inlineFileContent(inode.iBlock, value, inode.size);
    if (newSize <= inlineCapacity(ctx, inode, others)) {
      const next = new Uint8Array(newSize);
      next.set(old);
      next.set(bytes, offset);
      await storeInline(ctx, inode, next, others, path);
    } else {
      // More than the inode holds: the old content moves to a block first (as the kernel
      // converts), then the write lands on the block file.
      ctx.alloc.reserveBlocks(Math.ceil(bytes.length / ctx.bs) + 4, path);
      const size = inode.size;
      await dropContent(ctx, inode);
      await writeContent(ctx, inode, old, path, "never");
      inode.size = size;
      try {
        await writeBlocksAt(ctx, inode, offset, bytes, path);
      } catch (e) {
        // Converted but not written (e.g. ENOSPC on fragmented space): keep the converted inode.
        await putInode(ctx, inode);
        throw e;
      }
    }
  } else await writeBlocksAt(ctx, inode, offset, bytes, path);
  inode.size = newSize;
  const now = timeNow(ctx);
  inode.mtime = now;
  inode.ctime = now;
  await putInode(ctx, inode);
}

/** The block part of writeAt: map updates and data writes for a block-mapped file. */
export async function writeBlocksAt(
  ctx: EditContext,
  inode: Inode,
  offset: number,
  bytes: Uint8Array,
  path: string,
): Promise<void> {
  const bs = ctx.bs;
  const end = offset + bytes.length;
  const first = Math.floor(offset / bs);
  const last = Math.floor((end - 1) / bs);
  const oldSize = inode.size;
  const map = await fileMap(ctx, inode);
  const exts = [...map.extents].sort((a, b) => a.lblk - b.lblk);
  // The range [first, last] as pieces: mapped (written or unwritten) or holes.
  interface Piece {
    lblk: number;
    len: number;
    pblk: number;
    /** Existing blocks whose content counts (written extents); false for holes and unwritten. */
    keep: boolean;
  }
  const pieces: Piece[] = [];
  const holes: { lblk: number; len: number }[] = [];
  let at = first;
  const untouched: MapExtent[] = [];
  for (const e of exts) {
    const eEnd = e.lblk + e.len;
    if (eEnd <= first || e.lblk > last) {
      untouched.push(e);
      continue;
    }
    if (e.lblk > at) holes.push({ lblk: at, len: e.lblk - at });
    const s = Math.max(e.lblk, first);
    const t = Math.min(eEnd, last + 1);
    // Parts of the extent outside the range keep their state; the covered part becomes written.
    if (e.lblk < s) untouched.push({ ...e, len: s - e.lblk });
    if (eEnd > t) untouched.push({ ...e, lblk: t, pblk: e.pblk + (t - e.lblk), len: eEnd - t });
    pieces.push({ lblk: s, len: t - s, pblk: e.pblk + (s - e.lblk), keep: !e.uninit });
    at = t;
  }
  if (at <= last) holes.push({ lblk: at, len: last + 1 - at });
  const holeBlocks = holes.reduce((n, h) => n + h.len, 0);
  // New blocks plus the tree nodes of the map-to-be (holes counted as one extent each; if they
  // end up fragmented, setMap's own check still fails before anything stays allocated).
  const provisional: MapExtent[] = [
    ...untouched,
    ...pieces.map((p) => ({ lblk: p.lblk, pblk: p.pblk, len: p.len, uninit: false })),
    ...holes.map((h) => ({ ...h, pblk: 0, uninit: false })),
  ].sort((a, b) => a.lblk - b.lblk);
  const nodes = nodesNeeded(ctx, inode, provisional);
  if (holeBlocks + nodes > ctx.alloc.freeBlocks + map.metaBlocks.length)
    ctx.alloc.reserveBlocks(holeBlocks + nodes - map.metaBlocks.length, path);
  const allocated: MapExtent[] = [];
  try {
    for (const h of holes) {
      // Goal: right after the block mapped just before the hole (contiguous growth).
      let goal = ctx.alloc.goalFor(inode.ino);
      for (const e of exts) if (e.lblk < h.lblk) goal = e.pblk + (h.lblk - e.lblk);
      const runs = await ctx.alloc.allocBlocks(h.len, goal, path);
      let l = h.lblk;
      for (const r of runs) {
        allocated.push({ lblk: l, pblk: r.start, len: r.len, uninit: false });
        pieces.push({ lblk: l, len: r.len, pblk: r.start, keep: false });
        l += r.len;
      }
    }
    const written = pieces.map((p) => ({ lblk: p.lblk, pblk: p.pblk, len: p.len, uninit: false }));
    await setMap(ctx, inode, [...untouched, ...written], map.metaBlocks, path);
  } catch (e) {
    for (const x of allocated) await ctx.alloc.freeBlocksRange(x.pblk, x.len);
    throw e;
  }
  // Data: each piece is physically contiguous. Partial edge blocks of written extents are
  // read first; bytes past the old end of file read as zeros.
  for (const p of pieces.sort((a, b) => a.lblk - b.lblk)) {
    const buf = new Uint8Array(p.len * bs);
    if (p.keep) {
      for (const k of new Set([0, p.len - 1])) {
        const lb = p.lblk + k;
        const s = lb * bs;
        if (s >= offset && s + bs <= end) continue;
        const b = await readDataBlock(ctx, p.pblk + k);
        buf.set(b, k * bs);
        if (s + bs > oldSize) buf.fill(0, k * bs + Math.max(0, oldSize - s), (k + 1) * bs);
      }
    }
    const from = Math.max(offset, p.lblk * bs);
    const to = Math.min(end, (p.lblk + p.len) * bs);
    buf.set(bytes.subarray(from - offset, to - offset), from - p.lblk * bs);
    await writeRuns(ctx, [{ start: p.pblk, len: p.len }], buf);
  }
  // Growing past a partial last block: its bytes after the old end must read as zeros.
  const tailBlock = Math.floor(oldSize / bs);
  if (offset > oldSize && oldSize % bs && tailBlock < first) {
    const e = untouched.find((x) => x.lblk <= tailBlock && tailBlock < x.lblk + x.len && !x.uninit);
    if (e) {
      const p = e.pblk + (tailBlock - e.lblk);
      const copy = new Uint8Array(await readDataBlock(ctx, p));
      copy.fill(0, oldSize % bs);
      await ctx.store.writeData(p, copy);
    }
  }
}
