/**
 * The data path: allocate blocks and write content into them (bytes or a stream), and read a
 * data block as it is now; `writeContent` fills a whole (regular or symlink) inode.
 */
import type { EditContext } from "./edit-context.js";
import { type MapExtent, writeExtentTree } from "./file-map.js";
import { inlineCapacity, inlineParts, storeInline } from "./inline.js";
import type { Inode } from "./inode.js";
import { setBlocks, setMap, usesExtents } from "./inode-map.js";

/** Streamed chunks this large are written from the producer's buffer; smaller ones are gathered. */
const STREAM_DIRECT = 1 << 20;
const STREAM_GATHER = 4 << 20;

/** Allocate and write `data` as logical blocks from `lblk`; returns the extents. */
export async function writeBlocks(
  ctx: EditContext,
  data: Uint8Array,
  lblk: number,
  goal: number,
  path: string,
): Promise<MapExtent[]> {
  const n = Math.ceil(data.length / ctx.bs);
  if (n === 0) return [];
  const runs = await ctx.alloc.allocBlocks(n, goal, path);
  const out: MapExtent[] = [];
  let pos = 0;
  for (const r of runs) {
    out.push({ lblk: lblk + pos / ctx.bs, pblk: r.start, len: r.len, uninit: false });
    pos += r.len * ctx.bs;
  }
  await writeRuns(ctx, runs, data);
  return out;
}

/** Write the whole content of a (regular or symlink) inode whose old blocks are already freed. */
export async function writeContent(
  ctx: EditContext,
  inode: Inode,
  data: Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  path: string,
  /**
   * "new": inline when 1 byte up to what the inode holds (a new inode: the kernel makes an
   * empty file a block file); "keep": also when empty (the inode was inline: the kernel keeps
   * a truncated inline file inline); "never".
   */
  inline: "new" | "keep" | "never" = "new",
): Promise<void> {
  const goal = ctx.alloc.goalFor(inode.ino);
  // With inline_data, content that fits the inode is stored there (an empty file is not inline).
  const others = inline !== "never" && ctx.inlineData ? (await inlineParts(ctx, inode)).others : [];
  const cap = inline !== "never" ? inlineCapacity(ctx, inode, others) : -1;
  const min = inline === "keep" ? 0 : 1;
  if (data instanceof Uint8Array && data.length >= min && data.length <= cap) {
    await storeInline(ctx, inode, data, others, path);
    return;
  }
  if (data instanceof Uint8Array) {
    const n = Math.ceil(data.length / ctx.bs);
    // Data, tree nodes (a few runs at most when there is room), one spare for directory growth.
    ctx.alloc.reserveBlocks(n + 1, path);
    let ext: MapExtent[];
    const runs = n > 0 && data.length <= 65536 ? await ctx.alloc.allocBlocks(n, goal, path) : undefined;
    if (runs?.length === 1) {
      // The common small file: one run, buffered in the store (fewer async layers per file).
      ext = [{ lblk: 0, pblk: runs[0].start, len: n, uninit: false }];
      await ctx.store.writeData(runs[0].start, data);
      if (usesExtents(inode)) {
        // One extent fits the root: no tree node to allocate, none to free (the map was empty).
        inode.iBlock = writeExtentTree(ctx.store, ext, [], undefined);
        setBlocks(ctx, inode, n + (inode.fileAcl ? 1 : 0));
        inode.size = data.length;
        return;
      }
    } else if (runs) {
      ext = [];
      let pos = 0;
      for (const r of runs) {
        ext.push({ lblk: pos / ctx.bs, pblk: r.start, len: r.len, uninit: false });
        pos += r.len * ctx.bs;
      }
      await writeRuns(ctx, runs, data);
    } else ext = await writeBlocks(ctx, data, 0, goal, path);
    try {
      await setMap(ctx, inode, ext, [], path);
    } catch (e) {
      for (const x of ext) await ctx.alloc.freeBlocksRange(x.pblk, x.len);
      throw e;
    }
    inode.size = data.length;
    return;
  }
  const r = await streamBlocks(ctx, data, goal, path, inline === "keep" ? 0 : 1, cap);
  if (r.small) {
    await storeInline(ctx, inode, r.small, others, path);
    return;
  }
  try {
    await setMap(ctx, inode, r.extents, [], path);
  } catch (e) {
    for (const x of r.extents) await ctx.alloc.freeBlocksRange(x.pblk, x.len);
    throw e;
  }
  inode.size = r.size;
}

/**
 * Write a stream of chunks into newly allocated data blocks (from `goal` on); no inode is
 * touched. Content of `min`..`cap` bytes is returned whole as `small` instead (nothing
 * allocated: the caller stores it inline). On any failure — ENOSPC, or the source throwing —
 * every block allocated here is freed before the error propagates.
 */
export async function streamBlocks(
  ctx: EditContext,
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  goal: number,
  path: string,
  min: number,
  cap: number,
): Promise<{ extents: MapExtent[]; size: number; small?: Uint8Array }> {
  const all: MapExtent[] = [];
  let size = 0;
  let next = goal;
  // Chunks of at least STREAM_DIRECT bytes are written straight from the producer's buffer
  // (block-aligned part; the unaligned rest is gathered); smaller ones are gathered into
  // STREAM_GATHER-sized writes. Every write is awaited before the next chunk is pulled, so a
  // producer may reuse what it yielded.
  let gather = new Uint8Array(0);
  let g = 0;
  const bs = ctx.bs;
  const emit = async (bytes: Uint8Array) => {
    const runs = await ctx.alloc.allocBlocks(Math.ceil(bytes.length / bs), next, path);
    let pos = 0;
    for (const r of runs) {
      all.push({ lblk: (size + pos) / bs, pblk: r.start, len: r.len, uninit: false });
      pos += r.len * bs;
    }
    const last = runs[runs.length - 1];
    next = last.start + last.len;
    size += bytes.length;
    await writeRuns(ctx, runs, bytes);
  };
  try {
    for await (const raw of data as AsyncIterable<Uint8Array>) {
      const chunk = typeof raw === "string" ? new TextEncoder().encode(raw) : raw;
      let off = 0;
      while (off < chunk.length) {
        const rest = chunk.length - off;
        if (rest >= STREAM_DIRECT && g % bs === 0) {
          if (g) await emit(gather.subarray(0, g));
          g = 0;
          const n = rest - (rest % bs);
          await emit(chunk.subarray(off, off + n));
          off += n;
          continue;
        }
        if (gather.length === 0) gather = new Uint8Array(STREAM_GATHER);
        // Before a large remainder, gather only up to the block boundary.
        const take = Math.min(rest, gather.length - g, rest >= STREAM_DIRECT ? bs - (g % bs) : rest);
        gather.set(chunk.subarray(off, off + take), g);
        g += take;
        off += take;
        if (g === gather.length) {
          await emit(gather);
          g = 0;
        }
      }
    }
    if (all.length === 0 && g >= min && g <= cap) return { extents: [], size: g, small: gather.slice(0, g) };
    if (g) await emit(gather.subarray(0, g));
  } catch (e) {
    for (const x of all) await ctx.alloc.freeBlocksRange(x.pblk, x.len);
    throw e;
  }
  return { extents: all, size };
}

/** Write `data` over consecutive runs (the last block zero-padded). */
export async function writeRuns(
  ctx: EditContext,
  runs: { start: number; len: number }[],
  data: Uint8Array,
): Promise<void> {
  if (runs.length === 1 && data.length <= 65536) {
    // Small: buffered in the store (the last block is zero-padded there).
    await ctx.store.writeData(runs[0].start, data);
    return;
  }
  let pos = 0;
  for (const r of runs) {
    const bytes = r.len * ctx.bs;
    const chunk = data.subarray(pos, Math.min(data.length, pos + bytes));
    if (chunk.length < bytes) {
      const full = Math.floor(chunk.length / ctx.bs) * ctx.bs;
      if (full > 0) await ctx.store.writeData(r.start, chunk.subarray(0, full));
      const tail = new Uint8Array(ctx.bs);
      tail.set(chunk.subarray(full));
      await ctx.store.writeData(r.start + full / ctx.bs, tail);
    } else await ctx.store.writeData(r.start, chunk);
    pos += bytes;
  }
}

/** A data block as it is now: small writes may still be buffered in the store. */
export async function readDataBlock(ctx: EditContext, block: number): Promise<Uint8Array> {
  const pending = ctx.store.pendingBlock(block);
  if (pending) return pending;
  if (ctx.store.isCached(block)) return (await ctx.store.get(block)).slice();
  await ctx.store.beforeDataRead(block);
  return ctx.reader.device.read(block * ctx.bs, ctx.bs);
}
