import { type FileHandle, open, rm } from "node:fs/promises";
import { deflateRaw, constants as zc } from "node:zlib";
import { type BlockDevice, FileDevice, UnsupportedError } from "@imgpatch/disk";
import { probeFormat, resolveBackingPath } from "./backing.js";
import { Qcow2Device } from "./device.js";
import { openQcow2 } from "./open.js";
import { Qcow2StreamWriter } from "./stream-writer.js";

export interface ConvertOptions {
  /** Output format (default "qcow2"). */
  format?: "qcow2" | "raw";
  /** qcow2 output: 2 or 3 (default 3). */
  version?: 2 | 3;
  /** qcow2 output cluster size (default 64 KiB). */
  clusterSize?: number;
  extendedL2?: boolean;
  /**
   * qcow2 output: store data clusters compressed. Only "deflate" (qemu's zlib type: raw deflate,
   * 4 KiB window) — Node has no zstd encoder we could use without a native build.
   */
  compress?: boolean | "deflate";
  /**
   * Make the output an overlay of this image (qemu-img convert -B): only clusters whose content
   * differs from the backing image are stored; `path` is recorded as given (relative names are
   * relative to the output). Without it the source is flattened (its whole chain is read).
   */
  backing?: { path: string; format?: "qcow2" | "raw" };
  /** Replace an existing output file (default: fail if it exists). */
  overwrite?: boolean;
  /** A source given by path: the backing policy of its chain (see OpenQcow2Options.allowBacking). */
  allowBacking?: readonly string[];
  /** Compressions in flight at once (default 16; they run on libuv's thread pool, every core). */
  parallel?: number;
  /** Bytes read from the source per step (default 2 MiB, rounded to clusters; see stream-writer.ts). */
  chunkBytes?: number;
  /**
   * fdatasync the output before returning (default false: like `qemu-img convert`, whose
   * default cache mode is "unsafe", leave write-back to the OS).
   */
  sync?: boolean;
  /**
   * Called as the source is consumed with (guest bytes done, virtual size): `done` only grows, and
   * the last call (after the output is complete) has done === total. For progress displays.
   */
  onProgress?: (done: number, total: number) => void;
}

export interface ConvertStats {
  /** Guest clusters stored as data (plain or compressed). */
  dataClusters: number;
  compressedClusters: number;
  /** Guest clusters left unallocated or stored as zero clusters. */
  zeroClusters: number;
  /** Clusters skipped because they equal the new backing image. */
  sameAsBacking: number;
  /** Bytes read from the source (zero/unallocated extents are never read). */
  bytesRead: number;
}

/**
 * Convert an image (qcow2 with its backing chain, or raw — probed from the file) into a new
 * qcow2 or raw file. Zero and unallocated ranges of the source are found from its mapping
 * (`mapExtents`, following backing files) without reading them, and data clusters that turn
 * out to be all zeros are dropped too, so sparse areas stay sparse.
 */
export async function convertImage(
  source: string | BlockDevice,
  target: string,
  options: ConvertOptions = {},
): Promise<ConvertStats> {
  const src = typeof source === "string" ? await openSource(source, options.allowBacking) : source;
  try {
    if ((options.format ?? "qcow2") === "raw") {
      if (options.compress || options.backing) {
        throw new UnsupportedError("raw output supports neither compression nor a backing file");
      }
      return await toRaw(src, target, options);
    }
    return await toQcow2(src, target, options);
  } finally {
    if (typeof source === "string") await src.close();
  }
}

/** A monotonic, clamped wrapper around `onProgress` (a no-op without one). */
function progressReporter(total: number, cb: ConvertOptions["onProgress"]): (done: number) => void {
  if (!cb) return () => {};
  let last = -1;
  return (done) => {
    const d = Math.min(total, Math.max(0, done));
    if (d > last) {
      last = d;
      cb(d, total);
    }
  };
}

async function openSource(path: string, allowBacking?: readonly string[]): Promise<BlockDevice> {
  const format = await probeFormat(path);
  if (format === "qcow2") return openQcow2(path, { readOnly: true, allowBacking });
  return FileDevice.open(path, { readOnly: true });
}

/**
 * Per cluster of [first, first+count): 1 if it may hold data, 0 if it surely reads as zeros.
 * Unallocated ranges of a qcow2 layer are looked up in its backing image.
 */
export async function dataMap(
  dev: BlockDevice,
  first: number,
  count: number,
  cs: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(count);
  const start = first * cs;
  const end = Math.min(dev.size, (first + count) * cs);
  await markData(dev, start, end - start, out, start, cs);
  return out;
}

async function markData(
  dev: BlockDevice,
  offset: number,
  length: number,
  out: Uint8Array,
  base: number,
  cs: number,
): Promise<void> {
  if (length <= 0) return;
  for (const e of await dev.mapExtents(offset, length)) {
    if (e.kind === "data") {
      const a = Math.floor((e.offset - base) / cs);
      const b = Math.floor((e.offset + e.length - 1 - base) / cs);
      out.fill(1, a, b + 1);
    } else if (e.kind === "unallocated" && dev instanceof Qcow2Device && dev.backing) {
      const bEnd = Math.min(e.offset + e.length, dev.backing.size);
      await markData(dev.backing, e.offset, bEnd - e.offset, out, base, cs);
    }
  }
}

const ZERO_CHUNK = Buffer.alloc(2 * 1024 * 1024);

/** Source bytes read per step (2 MiB: see BATCH_BYTES in stream-writer.ts). */
const DEFAULT_CHUNK = 2 * 1024 * 1024;

/** Whether `d` is all zeros (native memcmp against a zero buffer). */
export function isZero(d: Uint8Array): boolean {
  let pos = 0;
  while (pos < d.length) {
    const n = Math.min(ZERO_CHUNK.length, d.length - pos);
    const view = Buffer.from(d.buffer, d.byteOffset + pos, n);
    if (!view.equals(n === ZERO_CHUNK.length ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, n))) return false;
    pos += n;
  }
  return true;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

/** Raw deflate as qemu writes it (zlib level 6, window 2^12, memLevel 9). */
function deflateCluster(data: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    deflateRaw(
      data,
      { level: zc.Z_DEFAULT_COMPRESSION, windowBits: 12, memLevel: 9, strategy: zc.Z_DEFAULT_STRATEGY },
      (err, out) => (err ? reject(err) : resolve(out)),
    );
  });
}

/** One step of the plan: a run of clusters known to read as zeros, or one to read. */
type PlanItem = { index: number; count: number; read: boolean };

/** Clusters whose mapping is looked up at once (the reads stay `perChunk` long). */
const MAP_WINDOW_CHUNKS = 32;

/**
 * Cluster runs in order, from the source's mapping looked up a window of chunks at a time
 * (bounded memory, few mapExtents calls); runs to read are cut to `perChunk` clusters.
 */
async function* plan(src: BlockDevice, cs: number, perChunk: number): AsyncGenerator<PlanItem> {
  const total = Math.ceil(src.size / cs);
  const window = perChunk * MAP_WINDOW_CHUNKS;
  for (let first = 0; first < total; first += window) {
    const count = Math.min(window, total - first);
    const map = await dataMap(src, first, count, cs);
    let i = 0;
    while (i < count) {
      const read = map[i] === 1;
      let j = i + 1;
      const limit = read ? Math.min(count, i + perChunk) : count;
      while (j < limit && map[j] === map[i]) j++;
      yield { index: first + i, count: j - i, read };
      i = j;
    }
  }
}

/** What `runs` yields: all-zero clusters (no data), or data with a way to hand the buffer back. */
interface Run {
  index: number;
  count: number;
  data: Uint8Array | null;
  /** Call (optional) with a promise that settles when `data` is no longer used: its buffer is then reused. */
  recycle?: (done: Promise<unknown>) => void;
}

/**
 * Iterate the source as runs of clusters that are all data (with their bytes) or all zero
 * (never read when the mapping says so; or read and found to be zeros). Reads run ahead of
 * the consumer (two in flight, so the thread pool reads while the main thread scans), and
 * buffers come back through `recycle` — fresh buffers cost a page fault per 4 KiB.
 */
async function* runs(
  src: BlockDevice,
  cs: number,
  chunkBytes: number,
  stats: ConvertStats,
): AsyncGenerator<Run> {
  const perChunk = Math.max(1, Math.floor(chunkBytes / cs));
  const full = perChunk * cs;
  const free: Uint8Array[] = [];
  const ahead: { item: PlanItem; buf: Uint8Array; done: Promise<void> }[] = [];
  const steps = plan(src, cs, perChunk);
  let exhausted = false;
  const z: { pending: PlanItem | null } = { pending: null };
  /** Pull plan items until two reads are in flight (zero items queue up behind them). */
  const queue: (PlanItem | { read: true; slot: (typeof ahead)[number] })[] = [];
  const fill = async () => {
    while (!exhausted && ahead.length < 2) {
      const n = await steps.next();
      if (n.done) {
        exhausted = true;
        break;
      }
      const item = n.value;
      if (!item.read) {
        queue.push(item);
        continue;
      }
      // Whole-chunk buffers are reused; a shorter run gets a buffer of its own size (a fresh
      // zeroed whole-chunk buffer per short run was most of a sparse convert's CPU). Fresh ones
      // are zeroed all the same: a device breaking the readInto contract must not leak our heap.
      const bytes = item.count * cs;
      const buf = (bytes === full ? free.pop() : undefined) ?? new Uint8Array(bytes);
      const start = item.index * cs;
      const len = Math.min(src.size, (item.index + item.count) * cs) - start;
      const view = buf.subarray(0, item.count * cs);
      const done = src.readInto(start, view.subarray(0, len)).then(() => {
        if (len < view.length) view.fill(0, len);
        stats.bytesRead += len;
      });
      done.catch(() => {}); // awaited below; never an unhandled rejection meanwhile
      const slot = { item, buf, done };
      ahead.push(slot);
      queue.push({ read: true, slot });
    }
  };
  /** Adjacent zero runs are merged; a gap or data flushes them (in order). */
  const flushZero = function* (): Generator<Run> {
    const p = z.pending;
    z.pending = null;
    if (p) yield { index: p.index, count: p.count, data: null };
  };
  const zeroFollows = (index: number) => z.pending !== null && z.pending.index + z.pending.count === index;
  const addZero = (index: number, count: number) => {
    if (z.pending && zeroFollows(index)) z.pending.count += count;
    else z.pending = { index, count, read: false };
  };
  for (;;) {
    await fill();
    const next = queue.shift();
    if (!next) break;
    if (!("slot" in next)) {
      if (z.pending && !zeroFollows(next.index)) yield* flushZero();
      addZero(next.index, next.count);
      continue;
    }
    const { item, buf, done } = next.slot;
    await done;
    ahead.splice(ahead.indexOf(next.slot), 1);
    await fill(); // keep the next reads going while this one is scanned
    const view = buf.subarray(0, item.count * cs);
    const zero = new Uint8Array(item.count);
    for (let k = 0; k < item.count; k++) zero[k] = isZero(view.subarray(k * cs, (k + 1) * cs)) ? 1 : 0;
    let out = 0;
    let returned = 0;
    const recycle = (p: Promise<unknown>) => {
      const back = () => {
        if (++returned === out && buf.length === full) free.push(buf);
      };
      p.then(back, back); // a failed write is reported by the writer, not here
    };
    const pieces: Run[] = [];
    let k = 0;
    while (k < item.count) {
      let m = k + 1;
      while (m < item.count && zero[m] === zero[k]) m++;
      if (zero[k]) pieces.push({ index: item.index + k, count: m - k, data: null });
      else {
        out++;
        pieces.push({ index: item.index + k, count: m - k, data: view.subarray(k * cs, m * cs), recycle });
      }
      k = m;
    }
    if (out === 0 && buf.length === full) free.push(buf);
    for (const p of pieces) {
      if (p.data === null) {
        if (z.pending && !zeroFollows(p.index)) yield* flushZero();
        addZero(p.index, p.count);
      } else {
        yield* flushZero();
        yield p;
      }
    }
  }
  yield* flushZero();
}

async function toQcow2(src: BlockDevice, target: string, options: ConvertOptions): Promise<ConvertStats> {
  const cs = options.clusterSize ?? 65536;
  const version = options.version ?? 3;
  const stats: ConvertStats = {
    dataClusters: 0,
    compressedClusters: 0,
    zeroClusters: 0,
    sameAsBacking: 0,
    bytesRead: 0,
  };
  if (options.compress && options.compress !== true && options.compress !== "deflate") {
    throw new UnsupportedError(`compression "${String(options.compress)}" is not supported (deflate only)`);
  }
  let backing: BlockDevice | null = null;
  if (options.backing) {
    const p = resolveBackingPath(options.backing.path, target);
    if (p === null) throw new UnsupportedError("cannot resolve the backing file");
    const fmt = options.backing.format ?? (await probeFormat(p));
    backing =
      fmt === "qcow2" ? await openQcow2(p, { readOnly: true }) : await FileDevice.open(p, { readOnly: true });
  }
  const writer = await Qcow2StreamWriter.create(target, {
    size: Math.ceil(src.size / 512) * 512, // whole sectors, as qemu sees a raw source
    clusterSize: cs,
    version,
    extendedL2: options.extendedL2,
    backing: options.backing
      ? {
          path: options.backing.path,
          format: options.backing.format ?? (backing instanceof Qcow2Device ? "qcow2" : "raw"),
        }
      : undefined,
    overwrite: options.overwrite,
    sync: options.sync ?? false,
  });
  const compress = options.compress === true || options.compress === "deflate";
  const parallel = Math.max(1, options.parallel ?? 16);
  const pending: { index: number; raw: Uint8Array; out: Promise<Buffer> }[] = [];
  const drain = async (limit: number) => {
    while (pending.length > limit) {
      const p = pending.shift()!;
      const c = await p.out;
      if (c.length < cs) {
        await writer.putCompressed(p.index, c);
        stats.compressedClusters++;
      } else await writer.putData(p.index, p.raw);
      stats.dataClusters++;
    }
  };
  const backingBuf = new Uint8Array(cs);
  const report = progressReporter(src.size, options.onProgress);
  let ok = false;
  try {
    for await (const run of runs(src, cs, options.chunkBytes ?? DEFAULT_CHUNK, stats)) {
      // a run is yielded once everything before it has been handed to the writer
      report(run.index * cs);
      if (run.data === null && !backing) {
        stats.zeroClusters += run.count;
        continue;
      }
      if (run.data !== null && !backing && !compress) {
        // the common case: the whole run in one call, its buffer reused once written
        const { released } = await writer.putDataRun(run.index, run.data);
        run.recycle?.(released);
        stats.dataClusters += run.count;
        continue;
      }
      for (let k = 0; k < run.count; k++) {
        const index = run.index + k;
        const data = run.data ? run.data.subarray(k * cs, (k + 1) * cs) : null;
        if (backing) {
          // overlay: store only what differs from the backing image
          const at = index * cs;
          const n = Math.max(0, Math.min(cs, backing.size - at));
          backingBuf.fill(0);
          if (n > 0) await backing.readInto(at, backingBuf.subarray(0, n));
          const want = data ?? null;
          if (want === null ? isZero(backingBuf) : sameBytes(want, backingBuf)) {
            stats.sameAsBacking++;
            continue;
          }
          if (want === null) {
            await drain(0);
            if (version >= 3) await writer.putZero(index);
            else await writer.putData(index, new Uint8Array(cs));
            stats.zeroClusters++;
            continue;
          }
        }
        if (data === null) {
          stats.zeroClusters++;
          continue;
        }
        if (compress) {
          pending.push({ index, raw: data, out: deflateCluster(data) });
          await drain(parallel);
        } else {
          await writer.putData(index, data);
          stats.dataClusters++;
        }
      }
    }
    await drain(0);
    await writer.finish();
    ok = true;
    report(src.size);
  } finally {
    if (!ok) {
      await writer.abort();
      await rm(target, { force: true });
    }
    if (backing) await backing.close();
  }
  return stats;
}

async function toRaw(src: BlockDevice, target: string, options: ConvertOptions): Promise<ConvertStats> {
  const cs = 65536;
  const stats: ConvertStats = {
    dataClusters: 0,
    compressedClusters: 0,
    zeroClusters: 0,
    sameAsBacking: 0,
    bytesRead: 0,
  };
  if (options.overwrite) await rm(target, { force: true });
  const fh = await open(target, "wx");
  const inFlight: Promise<void>[] = [];
  try {
    await fh.truncate(src.size);
    const report = progressReporter(src.size, options.onProgress);
    for await (const r of runs(src, cs, options.chunkBytes ?? DEFAULT_CHUNK, stats)) {
      report(r.index * cs);
      if (r.data === null) {
        stats.zeroClusters += r.count;
        continue;
      }
      const at = r.index * cs;
      const bytes = r.data.subarray(0, Math.min(r.data.length, src.size - at));
      // keep a few writes in flight so reading the next run overlaps writing this one
      const w = writeFully(fh, bytes, at);
      w.catch(() => {}); // observed when awaited; never an unhandled rejection meanwhile
      r.recycle?.(w);
      inFlight.push(w);
      if (inFlight.length > 3) await inFlight.shift();
      stats.dataClusters += r.count;
    }
    await Promise.all(inFlight);
    if (options.sync) await fh.datasync();
    report(src.size);
  } finally {
    await Promise.allSettled(inFlight);
    await fh.close();
  }
  return stats;
}

async function writeFully(fh: FileHandle, bytes: Uint8Array, at: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, at + done);
    done += bytesWritten;
  }
}
