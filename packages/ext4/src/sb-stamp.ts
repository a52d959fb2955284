/**
 * Flushing the editor's state: dirty inodes, the superblock stamp (s_wtime, s_kbytes_written),
 * bitmaps and descriptors, the block cache; and refreshing the reader after writes.
 */
import { type EditContext, timeNow } from "./edit-context.js";
import { RO_COMPAT } from "./features.js";
import { flushInodes } from "./inode-table.js";
import { computeQuotaUsage, quotaInodes, updateQuotaFiles } from "./quota.js";
import { hasRoCompat } from "./superblock.js";

/**
 * Before metadata is flushed after changes: s_wtime from the editor's clock and
 * s_kbytes_written advanced by what this editor wrote (the blocks about to be flushed included).
 */
export function stampSuperblock(ctx: EditContext): void {
  const written = ctx.store.counters.bytesWritten;
  if (!ctx.alloc.dirty && !ctx.store.dirtyCount && written === ctx.stampedBytes) return;
  // The superblock block itself is written too.
  const pending = (ctx.store.dirtyCount + 1) * ctx.bs;
  const kb = ctx.kbytesBase ? ctx.kbytesBase + Math.floor((written + pending) / 1024) : undefined;
  // Never in the future: e2fsck reports a superblock written in the future as a problem, so an
  // explicit timestamp or SOURCE_DATE_EPOCH ahead of the real clock is capped at the real clock
  // (file times keep the requested value; reproducibility holds for every past epoch).
  ctx.alloc.stampWrite(Math.min(timeNow(ctx).sec, Math.floor(Date.now() / 1000)), kb);
}

/** Inodes into their blocks, the superblock stamp, bitmaps and descriptors, then the block cache. */
async function flushMetadata(ctx: EditContext): Promise<void> {
  if (
    ctx.dirtyInodes.size ||
    ctx.alloc.dirty ||
    ctx.store.dirtyCount ||
    ctx.store.counters.bytesWritten !== ctx.stampedBytes
  )
    ctx.quotaStale = true;
  await flushInodes(ctx);
  stampSuperblock(ctx);
  await ctx.alloc.flush();
  await ctx.store.flush();
  ctx.stampedBytes = ctx.store.counters.bytesWritten;
}

/** Before a read through the reader: pending changes flushed, the reader's caches refreshed. */
export async function settle(ctx: EditContext): Promise<void> {
  if (
    ctx.dirtyInodes.size ||
    ctx.alloc.dirty ||
    ctx.store.dirtyCount ||
    ctx.store.counters.bytesWritten !== ctx.stampedBytes
  ) {
    await flushMetadata(ctx);
    ctx.readerStale = true;
  }
  if (ctx.readerStale) refreshReader(ctx);
}

/** The reader keeps its own descriptors (uninit flags decide what it reads) and caches. */
export function refreshReader(ctx: EditContext): void {
  ctx.groups.forEach((g, i) => {
    Object.assign(ctx.reader.groups[i], g);
  });
  ctx.reader.clearCaches();
  ctx.readerStale = false;
}

/** Write all pending metadata (bitmaps, descriptors, superblocks, inodes, directories). */
export async function sync(ctx: EditContext): Promise<void> {
  await flushMetadata(ctx);
  if (ctx.quotaStale && hasRoCompat(ctx.sb, RO_COMPAT.quota) && quotaInodes(ctx).some((n) => n !== 0)) {
    // Usage is counted from the inode tables just flushed; rewriting the quota files changes
    // only the quota inodes, which are not counted.
    refreshReader(ctx);
    await updateQuotaFiles(ctx, await computeQuotaUsage(ctx, ctx.reader.device));
    await flushMetadata(ctx);
  }
  ctx.quotaStale = false;
  if (ctx.durable) await ctx.reader.device.flush();
  refreshReader(ctx);
}
