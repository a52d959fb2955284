/**
 * File data: ranges and whole files read through read-ahead windows (holes and unwritten extents
 * as zeros), streaming, inline data, symlink targets.
 */
import { Ext4FormatError, Ext4FsError, Ext4UnsupportedError } from "./errors.js";
import { INODE_FLAGS, RO_COMPAT } from "./features.js";
import type { BlockRun } from "./fs.js";
import { INLINE_DATA_XATTR_INDEX, inlineFileContent } from "./inline-data.js";
import { type Inode, inodeBlocks512, S_IFDIR, S_IFLNK, S_IFMT } from "./inode.js";
import {
  allocBytes,
  allocUninitialised,
  DATA_WINDOW,
  locate,
  PATH_MAX,
  type ReadContext,
} from "./read-context.js";
import { blockRuns, rootRuns } from "./read-map.js";
import { ibodyXattrs } from "./read-xattr.js";
import { hasRoCompat } from "./superblock.js";

const DEFAULT_MAX_READ = 2 ** 31 - 1;
/** Windows read ahead of a sequential reader. */
const PREFETCH_WINDOWS = 2;

export function checkReadable(ctx: ReadContext, inode: Inode, path?: string): void {
  if (inode.flags & INODE_FLAGS.ENCRYPT) {
    throw new Ext4UnsupportedError(
      "encrypt",
      "file contents are encrypted (fscrypt); reading them is not supported",
      {
        file: path ?? ctx.device.name,
        inode: inode.ino,
      },
    );
  }
  if (inode.flags & INODE_FLAGS.COMPR) {
    throw new Ext4UnsupportedError("compression", "file is compressed (ext2 compression is not supported)", {
      file: path ?? ctx.device.name,
      inode: inode.ino,
    });
  }
}

/** Contents of an inline-data inode. */
export async function inlineContent(ctx: ReadContext, inode: Inode): Promise<Uint8Array> {
  const entries = await ibodyXattrs(ctx, inode);
  const data = entries.find(
    (e) => e.entry.nameIndex === INLINE_DATA_XATTR_INDEX && e.entry.name === "system.data",
  );
  return inlineFileContent(inode.iBlock, data?.value, inode.size);
}

/** Read bytes [start, end) of an inode's data into a new buffer (holes and uninit extents read as zeros). */
export async function readInodeRange(
  ctx: ReadContext,
  inode: Inode,
  start: number,
  end: number,
): Promise<Uint8Array> {
  checkReadable(ctx, inode);
  end = Math.min(end, inode.size);
  if (end <= start) return new Uint8Array(0);
  if (end - start > DEFAULT_MAX_READ) {
    throw new Ext4FsError(
      "EFBIG",
      `range of ${end - start} bytes is too large to read into memory`,
      `<inode ${inode.ino}>`,
    );
  }
  if (inode.flags & INODE_FLAGS.INLINE_DATA) {
    // Bytes past the inline area (i_size larger than what the inode holds) read as zeros, as in the kernel.
    const out = new Uint8Array(end - start);
    const inline = await inlineContent(ctx, inode);
    if (start < inline.length) out.set(inline.subarray(start, Math.min(end, inline.length)));
    return out;
  }
  // Every byte is either read or explicitly zeroed (holes, uninitialised extents, the tail).
  const out = allocUninitialised(end - start);
  const flat = rootRuns(ctx, inode);
  if (flat) {
    // Most files: the runs are known without I/O, and their data is often already in a cached
    // window, in which case the whole read completes without waiting.
    const pending = copyRuns(ctx, flat, out, start, end);
    if (pending) await pending;
    return out;
  }
  const bs = ctx.blockSize;
  let pos = start;
  for await (const r of blockRuns(ctx, inode)) {
    const rStart = r.logical * bs;
    const rEnd = (r.logical + r.length) * bs;
    if (rEnd <= start) continue;
    if (rStart >= end) break;
    const from = Math.max(rStart, start);
    const to = Math.min(rEnd, end);
    if (from > pos) out.fill(0, pos - start, from - start);
    if (r.uninit) out.fill(0, from - start, to - start);
    else {
      const p = readData(ctx, r.physical * bs + (from - rStart), out, from - start, to - from);
      if (p) await p;
    }
    pos = Math.max(pos, to);
  }
  if (pos < end) out.fill(0, pos - start, end - start);
  return out;
}

/**
 * Fill `out` (bytes [start, end) of the file) from in-order runs; holes and uninitialised runs
 * become zeros. Undefined when everything came from cached windows, else a promise for the reads
 * still under way (issued together).
 */
export function copyRuns(
  ctx: ReadContext,
  runs: BlockRun[],
  out: Uint8Array,
  start: number,
  end: number,
): Promise<unknown> | undefined {
  const bs = ctx.blockSize;
  let pos = start;
  let pending: Promise<void>[] | undefined;
  for (const r of runs) {
    const rStart = r.logical * bs;
    const rEnd = (r.logical + r.length) * bs;
    if (rEnd <= start) continue;
    if (rStart >= end) break;
    const from = Math.max(rStart, start);
    const to = Math.min(rEnd, end);
    if (from > pos) out.fill(0, pos - start, from - start);
    if (r.uninit) out.fill(0, from - start, to - start);
    else {
      const p = readData(ctx, r.physical * bs + (from - rStart), out, from - start, to - from);
      if (p) {
        pending ??= [];
        pending.push(p);
      }
    }
    if (to > pos) pos = to;
  }
  if (pos < end) out.fill(0, pos - start, end - start);
  if (!pending) return undefined;
  return pending.length === 1 ? pending[0] : Promise.all(pending);
}

/**
 * Copy device bytes [offset, offset + len) into target[at, at + len). Small reads go through a
 * read-ahead window cache: files written together sit together on disk, so one window read
 * serves many small files (tree walks are latency-bound otherwise). Returns undefined when the
 * bytes were copied from cached windows (no waiting), else a promise.
 */
export function readData(
  ctx: ReadContext,
  offset: number,
  target: Uint8Array,
  at = 0,
  len = target.length - at,
): Promise<void> | undefined {
  const W = DATA_WINDOW;
  if (len > W / 8) return readLarge(ctx, offset, target, at, len);
  const win = offset - (offset % W);
  if (offset + len > win + W) {
    // Straddles two windows: one piece from each.
    const first = win + W - offset;
    const a = readData(ctx, offset, target, at, first);
    const b = readData(ctx, win + W, target, at + first, len - first);
    return a && b ? Promise.all([a, b]).then(() => {}) : (a ?? b);
  }
  // A read far from the previous one (random access) whose window is not cached is served
  // alone: loading a whole window for one small file would read up to 128 times its size.
  // Reads near the previous one (a tree walk, a file read in pieces) go through the windows.
  const near = ctx.lastEnd >= 0 && offset + W >= ctx.lastEnd && offset <= ctx.lastEnd + W;
  ctx.lastEnd = offset + len;
  if (!near && !ctx.dataCache.has(win) && !ctx.windowsInFlight.has(win)) {
    ctx.lastWindow = win;
    return readIntoCounted(ctx, offset, target.subarray(at, at + len));
  }
  if (win !== ctx.lastWindow) enterWindow(ctx, win);
  return copyFromWindow(ctx, win, offset, target, at, len);
}

/** Copy [offset, offset + len) from window `win` (which holds all of it) to target[at...]. */
export function copyFromWindow(
  ctx: ReadContext,
  win: number,
  offset: number,
  target: Uint8Array,
  at: number,
  len: number,
): Promise<void> | undefined {
  const hit = ctx.dataCache.get(win);
  if (hit) {
    target.set(hit.subarray(offset - win, offset - win + len), at);
    return undefined;
  }
  // The copy runs in the continuation of the window's read, before any other read completes
  // (recycled windows depend on it: see windowPool).
  return loadWindow(ctx, win).then((buf) => target.set(buf.subarray(offset - win, offset - win + len), at));
}

/** Copy from the window cache when one window holds all of the range; false otherwise. */
export function copyIfCached(ctx: ReadContext, offset: number, target: Uint8Array): boolean {
  const win = offset - (offset % DATA_WINDOW);
  if (offset + target.length > win + DATA_WINDOW) return false;
  const hit = ctx.dataCache.peek(win);
  if (!hit) return false;
  target.set(hit.subarray(offset - win, offset - win + target.length));
  return true;
}

/** A sequential reader moved to window `win`: start reading the next windows ahead of it. */
export function enterWindow(ctx: ReadContext, win: number): void {
  const W = DATA_WINDOW;
  const sequential = win === ctx.lastWindow + W;
  ctx.lastWindow = win;
  if (!sequential) return;
  const fsEnd = ctx.sb.blocksCount * ctx.blockSize;
  for (let k = 1; k <= PREFETCH_WINDOWS && win + k * W < fsEnd; k++) {
    if (!ctx.dataCache.has(win + k * W)) loadWindow(ctx, win + k * W).catch(() => {});
  }
}

/**
 * Large reads go straight into the target, except for the windows at their start that a
 * read-ahead already fetched (or is fetching) and the window at their end, which is loaded into
 * the cache because the next small file usually starts in it.
 */
export async function readLarge(
  ctx: ReadContext,
  offset: number,
  target: Uint8Array,
  at: number,
  len: number,
): Promise<void> {
  const W = DATA_WINDOW;
  const end = offset + len;
  ctx.lastEnd = end;
  let pos = offset;
  while (pos < end) {
    const win = pos - (pos % W);
    const buf = ctx.dataCache.get(win) ?? (await ctx.windowsInFlight.get(win));
    if (!buf) break;
    const n = Math.min(end, win + buf.length) - pos;
    target.set(buf.subarray(pos - win, pos - win + n), at + pos - offset);
    pos += n;
  }
  if (pos >= end) return;
  const lastWin = end - 1 - ((end - 1) % W);
  let tail: Promise<void> | undefined;
  let directEnd = end;
  if (lastWin > pos) {
    // Continue the read-ahead past the tail window as a sequential reader would.
    ctx.lastWindow = lastWin - W;
    enterWindow(ctx, lastWin);
    tail = copyFromWindow(ctx, lastWin, lastWin, target, at + lastWin - offset, end - lastWin);
    // Awaited below; handled now so that a failure of the direct read does not leave it unobserved.
    tail?.catch(() => {});
    directEnd = lastWin;
  }
  await readIntoCounted(ctx, pos, target.subarray(at + pos - offset, at + directEnd - offset));
  if (tail) await tail;
}

export function loadWindow(ctx: ReadContext, win: number): Promise<Uint8Array> {
  const hit = ctx.dataCache.get(win);
  if (hit) return Promise.resolve(hit);
  let p = ctx.windowsInFlight.get(win);
  if (!p) {
    p = (async () => {
      const fsEnd = ctx.sb.blocksCount * ctx.blockSize;
      // Uninitialised memory is fine: the read fills every byte or throws.
      const len = Math.min(DATA_WINDOW, fsEnd - win, ctx.device.size - win);
      const buf = (len === DATA_WINDOW && ctx.windowPool.pop()) || allocBytes(len);
      await readIntoCounted(ctx, win, buf);
      ctx.dataCache.set(win, buf);
      return buf;
    })().finally(() => ctx.windowsInFlight.delete(win));
    ctx.windowsInFlight.set(win, p);
  }
  return p;
}

export async function readIntoCounted(ctx: ReadContext, offset: number, target: Uint8Array): Promise<void> {
  // Large runs are read in bounded pieces so one call never asks the device for gigabytes.
  const MAX = 64 << 20;
  for (let done = 0; done < target.length; done += MAX) {
    const piece = target.subarray(done, Math.min(target.length, done + MAX));
    ctx.counters.reads++;
    ctx.counters.bytes += piece.length;
    await ctx.device.readInto(offset + done, piece);
  }
}

/** Stream an inode's data in chunks without holding the file. */
export async function* iterateInode(
  ctx: ReadContext,
  inode: Inode,
  start = 0,
  end = inode.size,
  chunkSize = 1 << 20,
): AsyncGenerator<Uint8Array> {
  checkReadable(ctx, inode);
  end = Math.min(end, inode.size);
  if (end <= start) return;
  const zeros = (n: number) => new Uint8Array(n);
  let pos = start;
  if (inode.flags & INODE_FLAGS.INLINE_DATA) {
    const inline = await inlineContent(ctx, inode);
    if (pos < inline.length) {
      yield inline.slice(pos, Math.min(end, inline.length));
      pos = Math.min(end, inline.length);
    }
    for (; pos < end; pos += chunkSize) yield zeros(Math.min(chunkSize, end - pos));
    return;
  }
  const bs = ctx.blockSize;
  for await (const r of blockRuns(ctx, inode)) {
    const rStart = r.logical * bs;
    const rEnd = Math.min((r.logical + r.length) * bs, end);
    if (rEnd <= pos) continue;
    if (rStart >= end) break;
    // Hole before this run.
    while (pos < rStart) {
      const n = Math.min(chunkSize, rStart - pos);
      yield zeros(n);
      pos += n;
    }
    while (pos < rEnd) {
      const n = Math.min(chunkSize, rEnd - pos);
      if (r.uninit) yield zeros(n);
      else {
        const buf = new Uint8Array(n);
        await readData(ctx, r.physical * bs + (pos - rStart), buf);
        yield buf;
      }
      pos += n;
    }
  }
  while (pos < end) {
    const n = Math.min(chunkSize, end - pos);
    yield zeros(n);
    pos += n;
  }
}

/** Whole content of a regular file (or symlink/other) inode. */
export async function readFileInode(
  ctx: ReadContext,
  inode: Inode,
  path = `<inode ${inode.ino}>`,
  options: { maxSize?: number } = {},
): Promise<Buffer> {
  if ((inode.mode & S_IFMT) === S_IFDIR)
    throw new Ext4FsError("EISDIR", "illegal operation on a directory", path);
  const max = Math.min(options.maxSize ?? DEFAULT_MAX_READ, DEFAULT_MAX_READ);
  if (inode.size > max)
    throw new Ext4FsError("EFBIG", `file of ${inode.size} bytes exceeds the ${max}-byte limit`, path);
  // Most files (an extent root in the inode, no inline data): filled here directly, without
  // the general range reader's extra asynchronous step.
  if (
    inode.size > 0 &&
    !(inode.flags & (INODE_FLAGS.INLINE_DATA | INODE_FLAGS.ENCRYPT | INODE_FLAGS.COMPR))
  ) {
    const flat = rootRuns(ctx, inode);
    if (flat) {
      const out = allocUninitialised(inode.size);
      const pending = copyRuns(ctx, flat, out, 0, inode.size);
      if (pending) await pending;
      return out;
    }
  }
  const data = await readInodeRange(ctx, inode, 0, inode.size);
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Target of a symlink inode (fast, slow or inline). */
export async function readSymlinkInode(ctx: ReadContext, inode: Inode): Promise<Uint8Array> {
  if ((inode.mode & S_IFMT) !== S_IFLNK)
    throw new Ext4FormatError("not a symlink", locate(ctx, "inode", { inode: inode.ino }));
  if (inode.size > PATH_MAX) {
    throw new Ext4FormatError(
      `symlink target of ${inode.size} bytes is too long`,
      locate(ctx, "symlink", { inode: inode.ino }),
    );
  }
  checkReadable(ctx, inode);
  if (inode.flags & INODE_FLAGS.INLINE_DATA) return inlineContent(ctx, inode);
  if (isFastSymlink(ctx, inode)) {
    if (inode.size >= 60) {
      throw new Ext4FormatError(
        `fast symlink claims ${inode.size} bytes`,
        locate(ctx, "symlink", { inode: inode.ino }),
      );
    }
    return inode.iBlock.slice(0, inode.size);
  }
  return readInodeRange(ctx, inode, 0, inode.size);
}

/** Fast symlinks keep the target in i_block and own no data blocks (an xattr block does not count). */
export function isFastSymlink(ctx: ReadContext, inode: Inode): boolean {
  const blocks = inodeBlocks512(inode, hasRoCompat(ctx.sb, RO_COMPAT.huge_file), ctx.blockSize);
  const ea = inode.fileAcl !== 0 ? ctx.sb.clusterSize / 512 : 0;
  return blocks - ea === 0;
}
