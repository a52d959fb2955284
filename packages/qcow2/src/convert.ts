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
  /** Compressions in flight at once (default 16; they run on libuv's thread pool, every core). */
  parallel?: number;
  /** Bytes read from the source per step (default 8 MiB, rounded to clusters). */
  chunkBytes?: number;
  /**
   * fdatasync the output before returning (default false: like `qemu-img convert`, whose
   * default cache mode is "unsafe", leave write-back to the OS).
   */
  sync?: boolean;
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
  const src = typeof source === "string" ? await openSource(source) : source;
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

async function openSource(path: string): Promise<BlockDevice> {
  const format = await probeFormat(path);
  if (format === "qcow2") return openQcow2(path, { readOnly: true });
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

/**
 * Iterate the source chunk by chunk as runs of clusters that are all data (with their bytes,
 * one buffer per run) or all zero (never read when the mapping says so).
 */
async function* runs(
  src: BlockDevice,
  cs: number,
  chunkBytes: number,
  stats: ConvertStats,
  buffers?: BufferRing,
): AsyncGenerator<{ index: number; count: number; data: Uint8Array | null }> {
  const total = Math.ceil(src.size / cs);
  const perChunk = Math.max(1, Math.floor(chunkBytes / cs));
  let zeroFrom = -1; // pending zero run start (merged across chunks)
  // A buffer whose contents were all zeros was never handed out: read the next chunk into it
  // (fresh buffers cost a page fault per 4 KiB on first touch).
  let spare: Uint8Array | null = null;
  for (let first = 0; first < total; first += perChunk) {
    const count = Math.min(perChunk, total - first);
    const map = await dataMap(src, first, count, cs);
    let i = 0;
    while (i < count) {
      if (!map[i]) {
        if (zeroFrom < 0) zeroFrom = first + i;
        i++;
        continue;
      }
      let j = i;
      while (j < count && map[j]) j++;
      const start = (first + i) * cs;
      const len = Math.min(src.size, (first + j) * cs) - start;
      const size = (j - i) * cs;
      let full: Uint8Array;
      if (spare !== null && spare.length >= size) full = spare;
      else full = buffers ? await buffers.take(size) : new Uint8Array(size);
      spare = null;
      const buf = full.subarray(0, size);
      await src.readInto(start, buf.subarray(0, len));
      if (len < size) buf.fill(0, len);
      stats.bytesRead += len;
      const zero = new Uint8Array(j - i);
      for (let k = 0; k < j - i; k++) zero[k] = isZero(buf.subarray(k * cs, (k + 1) * cs)) ? 1 : 0;
      // split into data and all-zero runs
      let handedOut = false;
      let k = 0;
      while (k < j - i) {
        let m = k + 1;
        while (m < j - i && zero[m] === zero[k]) m++;
        if (zero[k]) {
          if (zeroFrom < 0) zeroFrom = first + i + k;
        } else {
          if (zeroFrom >= 0) {
            yield { index: zeroFrom, count: first + i + k - zeroFrom, data: null };
            zeroFrom = -1;
          }
          handedOut = true;
          yield { index: first + i + k, count: m - k, data: buf.subarray(k * cs, m * cs) };
        }
        k = m;
      }
      if (!handedOut) spare = full;
      i = j;
    }
  }
  if (zeroFrom >= 0) yield { index: zeroFrom, count: total - zeroFrom, data: null };
}

/**
 * A few reusable read buffers for a consumer that tracks which writes still use each one:
 * a buffer is handed out again only once those writes are done.
 */
class BufferRing {
  private readonly bufs: Uint8Array[] = [];
  private readonly busy: Promise<unknown>[] = [];
  private next = 0;
  constructor(private readonly n: number) {}
  async take(size: number): Promise<Uint8Array> {
    const j = this.next++ % this.n;
    await this.busy[j];
    if (!this.bufs[j] || this.bufs[j]!.length < size) this.bufs[j] = new Uint8Array(size);
    this.busy[j] = Promise.resolve();
    return this.bufs[j]!;
  }
  /** `data` (a view of one of our buffers) is in use until `done` settles. */
  track(data: Uint8Array, done: Promise<unknown>): void {
    const j = this.bufs.findIndex((b) => b.buffer === data.buffer);
    if (j >= 0) this.busy[j] = Promise.allSettled([this.busy[j], done]);
  }
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
    size: src.size,
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
  let ok = false;
  try {
    for await (const run of runs(src, cs, options.chunkBytes ?? 8 * 1024 * 1024, stats)) {
      if (run.data === null && !backing) {
        stats.zeroClusters += run.count;
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
    const ring = new BufferRing(4);
    for await (const r of runs(src, cs, options.chunkBytes ?? 8 * 1024 * 1024, stats, ring)) {
      if (r.data === null) {
        stats.zeroClusters += r.count;
        continue;
      }
      const at = r.index * cs;
      const bytes = r.data.subarray(0, Math.min(r.data.length, src.size - at));
      // keep a few writes in flight so reading the next run overlaps writing this one
      const w = writeFully(fh, bytes, at);
      w.catch(() => {}); // observed when awaited; never an unhandled rejection meanwhile
      ring.track(r.data, w);
      inFlight.push(w);
      if (inFlight.length > 3) await inFlight.shift();
      stats.dataClusters += r.count;
    }
    await Promise.all(inFlight);
    if (options.sync) await fh.datasync();
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
