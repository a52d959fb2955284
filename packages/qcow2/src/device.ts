import { BaseDevice, type BlockDevice, type DeviceExtent, ReadOnlyError } from "@imgpatch/disk";
import { bitmapClusters } from "./bitmaps.js";
import { uninitialized } from "./bytes.js";
import type { CachedTable } from "./cache.js";
import type { ClusterMap } from "./cluster-map.js";
import { DecompressError, decompressCluster } from "./compressed.js";
import { Qcow2FormatError } from "./errors.js";
import { EXT_BITMAPS, type Qcow2Extensions, serializeExtensions } from "./extensions.js";
import { type HeaderFieldName, headerFieldSpan, type Qcow2Header } from "./header.js";
import type { HostFile } from "./host-file.js";
import {
  ALL_SUBCLUSTERS,
  compressedClusters,
  compressedLength,
  decodeCompressed,
  encodeStd,
  FLAG_COMPRESSED,
  FLAG_COPIED,
  FLAG_ZERO,
  STD_RESERVED_LO,
  stdOffset,
  subclusterMask,
} from "./l2-entry.js";
import type { Refcounts } from "./refcount.js";
import type { Qcow2Snapshot } from "./snapshots.js";

/** Largest span mapped in one go by a read (bounds the segment list, not the I/O size). */
const READ_WINDOW = 64 * 1024 * 1024;
/** Memory for decompressed clusters kept for re-reads (see `compressedCache`). */
const COMPRESSED_CACHE_BYTES = 4 * 1024 * 1024;

/** How a stretch of guest bytes is stored in this layer. */
const K_DATA = 0;
const K_ZERO = 1;
const K_UNALLOC = 2;
const K_COMPRESSED = 3;

interface Segment {
  kind: number;
  guest: number;
  len: number;
  /** Host offset of the first byte (data), or of the guest cluster start (compressed: unused). */
  host: number;
  /** Raw L2 entry words (compressed segments). */
  hi: number;
  lo: number;
}

/** What a device knows about its backing image, for info/check/rebase tools. */
export interface BackingInfo {
  /** Name as stored in the header. */
  name: string;
  /** Resolved path (when opened from a path). */
  path?: string;
  /** Format from the backing-format extension, or as probed. */
  format?: string;
}

export interface Qcow2DeviceParts {
  name: string;
  host: HostFile;
  header: Qcow2Header;
  extensions: Qcow2Extensions;
  map: ClusterMap;
  refcounts: Refcounts | null;
  backing: BlockDevice | null;
  backingInfo: BackingInfo | null;
  snapshots: Qcow2Snapshot[];
  readOnly: boolean;
  /** Virtual size (differs from header.size for a snapshot view). */
  size: number;
  /** Close the host file with the device (false when the caller owns it). */
  ownsHost: boolean;
  /** External data file holding the guest clusters (incompatible feature bit 2), read-only. */
  dataFile?: HostFile | null;
  /** Let writes and discards free clusters/pending frees beyond this many ranges trigger a flush. */
  maxPendingFrees?: number;
}

/**
 * A qcow2 image as a BlockDevice. Reads coalesce contiguous host clusters into single large
 * reads; writes allocate in contiguous runs and copy-on-write partial clusters; metadata is
 * cached (bounded) and written back in crash-safe order on flush: data, refcounts, L2 tables,
 * L1 entries, then refcount decrements — with a sync between each step.
 */
export class Qcow2Device extends BaseDevice {
  readonly name: string;
  readonly size: number;
  readonly readOnly: boolean;
  readonly header: Qcow2Header;
  readonly extensions: Qcow2Extensions;
  readonly snapshots: readonly Qcow2Snapshot[];
  readonly backing: BlockDevice | null;
  readonly backingInfo: BackingInfo | null;
  readonly clusterSize: number;
  readonly clusterBits: number;
  readonly extendedL2: boolean;
  readonly map: ClusterMap;
  /** Null until the device is written (read-only opens never load refcounts). */
  refcounts: Refcounts | null;

  private readonly host: HostFile;
  private readonly ownsHost: boolean;
  /** External data file, when the image keeps its data outside (guest offset = data offset). */
  readonly dataFile: HostFile | null;
  private readonly subclusterSize: number;
  private readonly hasZeroFlag: boolean;
  private queue: Promise<unknown> = Promise.resolve();
  private pendingFrees: { start: number; count: number }[] = [];
  private readonly maxPendingFrees: number;
  private writeStarted = false;
  private wroteData = false;
  private failure: unknown = null;
  /**
   * Recently decompressed clusters, most recent last, keyed by their descriptor. Filesystem
   * metadata reads come back to the same few clusters of a compressed base many times (bitmaps,
   * inode tables, directories), and each miss costs a full inflate; memory stays bounded by
   * COMPRESSED_CACHE_BYTES (at least one cluster).
   */
  private readonly compressedCache = new Map<string, Uint8Array>();

  constructor(parts: Qcow2DeviceParts) {
    super();
    this.name = parts.name;
    this.host = parts.host;
    this.header = parts.header;
    this.extensions = parts.extensions;
    this.map = parts.map;
    this.refcounts = parts.refcounts;
    this.backing = parts.backing;
    this.backingInfo = parts.backingInfo;
    this.snapshots = parts.snapshots;
    this.readOnly = parts.readOnly;
    this.size = parts.size;
    this.ownsHost = parts.ownsHost;
    this.dataFile = parts.dataFile ?? null;
    this.clusterBits = parts.header.clusterBits;
    this.clusterSize = 2 ** this.clusterBits;
    this.extendedL2 = parts.map.extendedL2;
    this.subclusterSize = this.clusterSize / 32;
    this.hasZeroFlag = parts.header.version >= 3 && !this.extendedL2;
    this.maxPendingFrees = parts.maxPendingFrees ?? 4096;
  }

  /** The container file (for tools that inspect raw metadata). */
  get hostFile(): HostFile {
    return this.host;
  }

  /** Run `fn` after every earlier operation: calls are serialised, so metadata never races. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  // ---------------------------------------------------------------- mapping

  private fail(field: string, message: string, offset?: number): never {
    throw new Qcow2FormatError(field, message, { file: this.host.name, offset });
  }

  /** Describe [offset, offset+length) as merged segments (data runs are host-contiguous). */
  private async segments(offset: number, length: number): Promise<Segment[]> {
    const segs: Segment[] = [];
    const cs = this.clusterSize;
    const l2n = this.map.l2Entries;
    const end = offset + length;
    const push = (kind: number, guest: number, len: number, host: number, hi = 0, lo = 0) => {
      const last = segs[segs.length - 1];
      if (
        last !== undefined &&
        kind !== K_COMPRESSED &&
        last.kind === kind &&
        last.guest + last.len === guest &&
        (kind !== K_DATA || last.host + last.len === host)
      ) {
        last.len += len;
        return;
      }
      segs.push({ kind, guest, len, host, hi, lo });
    };
    let g = offset;
    while (g < end) {
      const l1i = Math.floor(g / cs / l2n);
      const tableEnd = Math.min(end, (l1i + 1) * l2n * cs);
      const t = await this.map.l2(l1i);
      if (t === null) {
        push(K_UNALLOC, g, tableEnd - g, 0);
        g = tableEnd;
        continue;
      }
      const view = t.view;
      while (g < tableEnd) {
        const ci = Math.floor(g / cs);
        const inC = g - ci * cs;
        const n = Math.min(cs - inC, tableEnd - g);
        const idx = ci - l1i * l2n;
        const at = idx * this.map.entryBytes;
        const hi = view.getUint32(at);
        const lo = view.getUint32(at + 4);
        if (hi & FLAG_COMPRESSED) {
          if (this.dataFile !== null) {
            this.fail(
              `L2[${idx}] of L1[${l1i}]`,
              "compressed cluster in an image with an external data file",
              t.offset + at,
            );
          }
          push(K_COMPRESSED, g, n, 0, hi, lo);
        } else {
          const off = stdOffset(hi, lo);
          if (lo & STD_RESERVED_LO || (hi & 0x3f00_0000) !== 0) {
            this.fail(
              `L2[${idx}] of L1[${l1i}]`,
              "reserved bits set or cluster offset misaligned",
              t.offset + at,
            );
          }
          if (off % cs !== 0) {
            this.fail(
              `L2[${idx}] of L1[${l1i}]`,
              `cluster offset ${off} is not cluster aligned`,
              t.offset + at,
            );
          }
          // with an external data file, offset 0 is a real cluster when COPIED is set
          const present = off !== 0 || (this.dataFile !== null && (hi & FLAG_COPIED) !== 0);
          if (!this.extendedL2) {
            if (lo & FLAG_ZERO && this.hasZeroFlag) push(K_ZERO, g, n, 0);
            else if (!present) push(K_UNALLOC, g, n, 0);
            else push(K_DATA, g, n, off + inC);
          } else {
            const zeroBm = view.getUint32(at + 8);
            const allocBm = view.getUint32(at + 12);
            if ((zeroBm & allocBm) !== 0 || (allocBm !== 0 && !present)) {
              this.fail(`L2[${idx}] of L1[${l1i}]`, "invalid subcluster bitmap", t.offset + at + 8);
            }
            if (allocBm === ALL_SUBCLUSTERS) push(K_DATA, g, n, off + inC);
            else if (zeroBm === ALL_SUBCLUSTERS) push(K_ZERO, g, n, 0);
            else if (allocBm === 0 && zeroBm === 0) push(K_UNALLOC, g, n, 0);
            else {
              const sc = this.subclusterSize;
              let p = inC;
              const stop = inC + n;
              while (p < stop) {
                const s = Math.floor(p / sc);
                const m = Math.min((s + 1) * sc, stop) - p;
                const bit = 1 << s;
                if (allocBm & bit) push(K_DATA, ci * cs + p, m, off + p);
                else if (zeroBm & bit) push(K_ZERO, ci * cs + p, m, 0);
                else push(K_UNALLOC, ci * cs + p, m, 0);
                p += m;
              }
            }
          }
        }
        g += n;
      }
    }
    return segs;
  }

  private async readHost(offset: number, target: Uint8Array, what: string): Promise<void> {
    const n = await this.host.read(offset, target);
    if (n < target.length) this.fail(what, `data at ${offset + n} lies past the end of the file`, offset + n);
  }

  private async readBacking(guest: number, target: Uint8Array): Promise<void> {
    const b = this.backing;
    const avail = b === null ? 0 : Math.max(0, Math.min(target.length, b.size - guest));
    if (avail > 0) await b!.readInto(guest, target.subarray(0, avail));
    if (avail < target.length) target.fill(0, avail);
  }

  private async compressedCluster(hi: number, lo: number): Promise<Uint8Array> {
    const key = `${hi}:${lo}`;
    const hit = this.compressedCache.get(key);
    if (hit !== undefined) {
      this.compressedCache.delete(key);
      this.compressedCache.set(key, hit);
      return hit;
    }
    const ref = decodeCompressed(hi, lo, this.clusterBits);
    const field = "compressed cluster descriptor";
    if (ref.offset < this.clusterSize || ref.offset >= this.host.length) {
      this.fail(field, `offset ${ref.offset} lies outside the file (size ${this.host.length})`, ref.offset);
    }
    const len = Math.min(compressedLength(ref), this.host.length - ref.offset);
    const raw = new Uint8Array(len);
    await this.readHost(ref.offset, raw, field);
    const out = new Uint8Array(this.clusterSize);
    try {
      decompressCluster(raw, out, this.header.compressionType);
    } catch (err) {
      if (err instanceof DecompressError) {
        throw new Qcow2FormatError(field, `cannot decompress: ${err.message}`, {
          file: this.host.name,
          offset: ref.offset,
        });
      }
      throw err;
    }
    const room = Math.max(1, Math.floor(COMPRESSED_CACHE_BYTES / this.clusterSize));
    while (this.compressedCache.size >= room) {
      const oldest = this.compressedCache.keys().next().value as string;
      this.compressedCache.delete(oldest);
    }
    this.compressedCache.set(key, out);
    return out;
  }

  /** Read guest bytes without taking the queue (callers hold it). */
  private async readGuest(offset: number, target: Uint8Array): Promise<void> {
    // Map at most READ_WINDOW bytes at a time so the segment list stays small on fragmented images.
    for (let done = 0; done < target.length; done += READ_WINDOW) {
      const n = Math.min(READ_WINDOW, target.length - done);
      await this.readWindow(offset + done, target.subarray(done, done + n));
    }
  }

  private async readWindow(offset: number, target: Uint8Array): Promise<void> {
    const segs = await this.segments(offset, target.length);
    for (const s of segs) {
      const sub = target.subarray(s.guest - offset, s.guest - offset + s.len);
      switch (s.kind) {
        case K_DATA:
          if (this.dataFile !== null) {
            // the data file is a plain file: what lies past its end reads as zeros
            const got = await this.dataFile.read(s.host, sub);
            if (got < sub.length) sub.fill(0, got);
          } else await this.readHost(s.host, sub, "data cluster");
          break;
        case K_ZERO:
          sub.fill(0);
          break;
        case K_UNALLOC:
          await this.readBacking(s.guest, sub);
          break;
        default: {
          const data = await this.compressedCluster(s.hi, s.lo);
          const inC = s.guest % this.clusterSize;
          sub.set(data.subarray(inC, inC + s.len));
        }
      }
    }
  }

  protected async doRead(offset: number, target: Uint8Array): Promise<void> {
    await this.exclusive(() => this.readGuest(offset, target));
  }

  protected override async doMapExtents(offset: number, length: number): Promise<DeviceExtent[]> {
    const segs = await this.exclusive(() => this.segments(offset, length));
    const out: DeviceExtent[] = [];
    for (const s of segs) {
      const kind = s.kind === K_ZERO ? "zero" : s.kind === K_UNALLOC ? "unallocated" : "data";
      const last = out[out.length - 1];
      if (last && last.kind === kind) last.length += s.len;
      else out.push({ offset: s.guest, length: s.len, kind });
    }
    return out;
  }

  /** Host offset and kind of one guest cluster (for tools). */
  async clusterInfo(
    guestCluster: number,
  ): Promise<{ hi: number; lo: number; bitmap?: [number, number] } | null> {
    return this.exclusive(async () => {
      const l1i = Math.floor(guestCluster / this.map.l2Entries);
      const t = await this.map.l2(l1i);
      if (!t) return null;
      const at = (guestCluster - l1i * this.map.l2Entries) * this.map.entryBytes;
      const hi = t.view.getUint32(at);
      const lo = t.view.getUint32(at + 4);
      if (!this.extendedL2) return { hi, lo };
      return { hi, lo, bitmap: [t.view.getUint32(at + 8), t.view.getUint32(at + 12)] };
    });
  }

  // ---------------------------------------------------------------- writing

  private async beginWrite(): Promise<Refcounts> {
    if (this.failure !== null) {
      throw new ReadOnlyError(`image is unusable after an earlier error: ${String(this.failure)}`, {
        file: this.name,
      });
    }
    if (this.refcounts === null)
      throw new ReadOnlyError("image was opened without refcounts", { file: this.name });
    if (!this.writeStarted) {
      // Unknown (and bitmaps) autoclear bits must be cleared before the first modification.
      const bitmaps = this.extensions.bitmaps;
      const bitmapClusterList = bitmaps ? await bitmapClusters(this.host, bitmaps, this.clusterSize) : [];
      if (this.header.autoclearFeatures !== 0n) {
        this.header.autoclearFeatures = 0n;
        await this.writeHeaderFields(["autoclear_features"]);
      }
      if (bitmaps) {
        // Stale bitmaps are useless to everyone: drop the extension, then release its clusters.
        const keep = this.extensions.all.filter((e) => e.type !== EXT_BITMAPS);
        const area = new Uint8Array(this.extensions.end - this.header.headerLength);
        area.set(serializeExtensions(keep));
        await this.host.write(this.header.headerLength, area);
        await this.host.sync();
        this.extensions.all = keep;
        this.extensions.bitmaps = undefined;
        for (const c of bitmapClusterList) this.queueFree(c, 1);
      }
      this.writeStarted = true;
    }
    return this.refcounts;
  }

  /** Write named header fields (from `this.header`) and sync. */
  async writeHeaderFields(names: readonly HeaderFieldName[]): Promise<void> {
    const span = headerFieldSpan(this.header, names);
    await this.host.write(span.offset, span.bytes);
    await this.host.sync();
  }

  private queueFree(start: number, count: number): void {
    const last = this.pendingFrees[this.pendingFrees.length - 1];
    if (last && last.start + last.count === start) last.count += count;
    else this.pendingFrees.push({ start, count });
  }

  /** Queue the release of whatever host clusters an L2 entry holds. */
  private releaseEntry(hi: number, lo: number): void {
    if (hi & FLAG_COMPRESSED) {
      const { first, count } = compressedClusters(
        decodeCompressed(hi, lo, this.clusterBits),
        this.clusterSize,
      );
      this.queueFree(first, count);
      // its host bytes may be reused: never serve this descriptor from memory again
      this.compressedCache.delete(`${hi}:${lo}`);
      return;
    }
    const off = stdOffset(hi, lo);
    if (off !== 0) this.queueFree(off / this.clusterSize, 1);
  }

  private async guarded<T>(fn: () => Promise<T>): Promise<T> {
    try {
      const r = await fn();
      if (this.pendingFrees.length > this.maxPendingFrees) await this.flushMetadata();
      return r;
    } catch (err) {
      // In-memory metadata may be half-updated: refuse further writes. What is on disk is
      // consistent (ordered updates), at worst with leaked clusters.
      this.failure ??= err;
      throw err;
    }
  }

  protected async doWrite(offset: number, data: Uint8Array): Promise<void> {
    await this.exclusive(() =>
      this.guarded(async () => {
        await this.beginWrite();
        await this.writeInternal(offset, data);
      }),
    );
  }

  private async writeInternal(offset: number, data: Uint8Array): Promise<void> {
    const span = this.map.l2Entries * this.clusterSize;
    let pos = 0;
    while (pos < data.length) {
      const g = offset + pos;
      const l1i = Math.floor(g / span);
      const sliceEnd = Math.min(data.length, (l1i + 1) * span - offset);
      await this.writeSlice(l1i, g, data.subarray(pos, sliceEnd));
      pos = sliceEnd;
    }
    this.wroteData = true;
  }

  private async writableL2(l1i: number): Promise<CachedTable> {
    return this.map.writableL2(l1i, this.refcounts!, (s, c) => this.queueFree(s, c));
  }

  /** Whether a cluster may be written where it is: standard, allocated, refcount 1. */
  private inPlace(hi: number, lo: number): boolean {
    if (hi & FLAG_COMPRESSED || !(hi & FLAG_COPIED)) return false;
    if (this.hasZeroFlag && lo & FLAG_ZERO) return false;
    return stdOffset(hi, lo) !== 0;
  }

  /** Write `data` at guest `g0`; the range lies within the L2 table of L1 index `l1i`. */
  private async writeSlice(l1i: number, g0: number, data: Uint8Array): Promise<void> {
    const cs = this.clusterSize;
    const l2n = this.map.l2Entries;
    const eb = this.map.entryBytes;
    const t = await this.writableL2(l1i);
    t.pins++;
    const out = new WriteBatch(this.host);
    try {
      let pos = 0;
      while (pos < data.length) {
        const g = g0 + pos;
        const ci = Math.floor(g / cs);
        const inC = g - ci * cs;
        const n = Math.min(cs - inC, data.length - pos);
        const at = (ci - l1i * l2n) * eb;
        const hi = t.view.getUint32(at);
        const lo = t.view.getUint32(at + 4);
        if (this.inPlace(hi, lo)) {
          const off = stdOffset(hi, lo);
          if (this.extendedL2)
            await this.writeSubclustersInPlace(t, at, ci, off, inC, data.subarray(pos, pos + n), out);
          else await out.add(off + inC, data.subarray(pos, pos + n));
          pos += n;
          continue;
        }
        // A run of clusters that all need new host clusters.
        let k = 1;
        for (let p = pos + n; p < data.length; p += cs) {
          const a = at + k * eb;
          if (this.inPlace(t.view.getUint32(a), t.view.getUint32(a + 4))) break;
          k++;
        }
        while (k > 0) {
          const { start, count } = await this.refcounts!.allocate(k);
          for (let j = 0; j < count; j++) {
            const gj = g0 + pos;
            const cj = Math.floor(gj / cs);
            const inJ = gj - cj * cs;
            const nj = Math.min(cs - inJ, data.length - pos);
            const aj = (cj - l1i * l2n) * eb;
            await this.fillNewCluster(t, aj, cj, (start + j) * cs, inJ, data.subarray(pos, pos + nj), out);
            pos += nj;
          }
          k -= count;
        }
      }
      await out.flush();
    } finally {
      t.pins--;
    }
  }

  /**
   * Put one guest cluster's new contents into freshly allocated host cluster `host`, copying
   * what the write does not cover from the cluster's current contents (backing file, shared
   * cluster, compressed cluster, zeros), then point the L2 entry at it.
   */
  private async fillNewCluster(
    t: CachedTable,
    at: number,
    ci: number,
    host: number,
    inC: number,
    piece: Uint8Array,
    out: WriteBatch,
  ): Promise<void> {
    const cs = this.clusterSize;
    const view = t.view;
    const hi = view.getUint32(at);
    const lo = view.getUint32(at + 4);
    const n = piece.length;
    let alloc = ALL_SUBCLUSTERS;
    let zero = 0;
    if (inC === 0 && n === cs) {
      await out.add(host, piece);
    } else if (!this.extendedL2) {
      const buf = uninitialized(cs); // every byte is read or overwritten below
      await out.flush();
      // one read of the whole old cluster (then overlay the piece): half the round trips of
      // reading the head and the tail separately
      await this.readGuest(ci * cs, buf);
      buf.set(piece, inC);
      await out.add(host, buf);
    } else {
      const sc = this.subclusterSize;
      const oldZero = view.getUint32(at + 8);
      const oldAlloc = view.getUint32(at + 12);
      const s0 = Math.floor(inC / sc);
      const s1 = Math.floor((inC + n - 1) / sc);
      const touched = subclusterMask(s0, s1);
      await out.flush();
      if (hi & FLAG_COMPRESSED || (oldAlloc & ~touched) !== 0) {
        // old data must move with us: copy the whole cluster (every byte is read or overwritten)
        const buf = uninitialized(cs);
        await this.readGuest(ci * cs, buf.subarray(0, inC));
        await this.readGuest(ci * cs + inC + n, buf.subarray(inC + n));
        buf.set(piece, inC);
        await out.add(host, buf);
        alloc = hi & FLAG_COMPRESSED ? ALL_SUBCLUSTERS : (oldAlloc | touched) >>> 0;
        zero = hi & FLAG_COMPRESSED ? 0 : (oldZero & ~touched) >>> 0;
      } else {
        const A = s0 * sc;
        const B = (s1 + 1) * sc;
        const buf = new Uint8Array(B - A);
        await this.readGuest(ci * cs + A, buf.subarray(0, inC - A));
        await this.readGuest(ci * cs + inC + n, buf.subarray(inC + n - A));
        buf.set(piece, inC - A);
        await out.add(host + A, buf);
        alloc = touched;
        zero = (oldZero & ~touched) >>> 0;
      }
    }
    const e = encodeStd(host, true);
    view.setUint32(at, e.hi);
    view.setUint32(at + 4, e.lo);
    if (this.extendedL2) {
      view.setUint32(at + 8, zero);
      view.setUint32(at + 12, alloc);
    }
    t.dirty = true;
    this.releaseEntry(hi, lo);
  }

  /** Extended L2, cluster owned by us: write in place, filling partial unallocated subclusters. */
  private async writeSubclustersInPlace(
    t: CachedTable,
    at: number,
    ci: number,
    off: number,
    inC: number,
    piece: Uint8Array,
    out: WriteBatch,
  ): Promise<void> {
    const sc = this.subclusterSize;
    const cs = this.clusterSize;
    const n = piece.length;
    const zero = t.view.getUint32(at + 8);
    const alloc = t.view.getUint32(at + 12);
    const s0 = Math.floor(inC / sc);
    const s1 = Math.floor((inC + n - 1) / sc);
    const touched = subclusterMask(s0, s1);
    const headFill = inC % sc !== 0 && !(alloc & (1 << s0));
    const tailFill = (inC + n) % sc !== 0 && !(alloc & (1 << s1));
    if (!headFill && !tailFill) {
      await out.add(off + inC, piece);
    } else {
      const A = headFill ? s0 * sc : inC;
      const B = tailFill ? (s1 + 1) * sc : inC + n;
      const buf = new Uint8Array(B - A);
      await out.flush();
      await this.readGuest(ci * cs + A, buf.subarray(0, inC - A));
      await this.readGuest(ci * cs + inC + n, buf.subarray(inC + n - A));
      buf.set(piece, inC - A);
      await out.add(off + A, buf);
    }
    if ((alloc & touched) !== touched || (zero & touched) !== 0) {
      t.view.setUint32(at + 8, (zero & ~touched) >>> 0);
      t.view.setUint32(at + 12, (alloc | touched) >>> 0);
      t.dirty = true;
    }
  }

  // ---------------------------------------------------------------- zeroing and discard

  protected override async doWriteZeroes(offset: number, length: number): Promise<void> {
    if (length === 0) return;
    await this.exclusive(() =>
      this.guarded(async () => {
        await this.beginWrite();
        await this.zeroRange(offset, length, false);
      }),
    );
  }

  protected override async doDiscard(offset: number, length: number): Promise<void> {
    if (length === 0) return;
    await this.exclusive(() =>
      this.guarded(async () => {
        await this.beginWrite();
        await this.zeroRange(offset, length, true);
      }),
    );
  }

  /** Whether the backing image has bytes in [guest, guest+len). */
  private backingCovers(guest: number): boolean {
    return this.backing !== null && guest < this.backing.size;
  }

  private async zeroRange(offset: number, length: number, discard: boolean): Promise<void> {
    const cs = this.clusterSize;
    const span = this.map.l2Entries * cs;
    const end = offset + length;
    let g = offset;
    while (g < end) {
      const inC = g % cs;
      if (inC === 0 && end - g >= cs) {
        const l1i = Math.floor(g / span);
        const wholeEnd = Math.min(Math.floor(end / cs) * cs, (l1i + 1) * span);
        await this.zeroClusters(l1i, g / cs, (wholeEnd - g) / cs, discard);
        g = wholeEnd;
        continue;
      }
      const n = Math.min(cs - inC, end - g);
      await this.zeroPartial(g, n);
      g += n;
    }
  }

  /** Make whole clusters read as zero without storing data (except v2 over a backing file). */
  private async zeroClusters(l1i: number, first: number, count: number, discard: boolean): Promise<void> {
    const cs = this.clusterSize;
    const l2n = this.map.l2Entries;
    const eb = this.map.entryBytes;
    const v2 = this.header.version < 3;
    for (let c = first; c < first + count; c++) {
      const at = (c - l1i * l2n) * eb;
      const src = await this.map.l2(l1i);
      const hi = src ? src.view.getUint32(at) : 0;
      const lo = src ? src.view.getUint32(at + 4) : 0;
      const zeroBm = src && this.extendedL2 ? src.view.getUint32(at + 8) : 0;
      const allocBm = src && this.extendedL2 ? src.view.getUint32(at + 12) : 0;
      const covered = this.backingCovers(c * cs);
      const compressed = (hi & FLAG_COMPRESSED) !== 0;
      const holds = compressed || stdOffset(hi, lo) !== 0 || allocBm !== 0;
      const zeroFlagged = this.extendedL2
        ? zeroBm === ALL_SUBCLUSTERS
        : this.hasZeroFlag && (lo & FLAG_ZERO) !== 0;
      if (!holds && (zeroFlagged || !covered)) continue; // already reads as zero, stores nothing
      if (v2 && covered) {
        // v2 cannot say "zero" over a backing file: store real zeros.
        await this.writeInternal(c * cs, new Uint8Array(cs));
        continue;
      }
      const t = await this.writableL2(l1i);
      const unalloc = !covered && (discard || v2);
      t.view.setUint32(at, 0);
      t.view.setUint32(at + 4, unalloc || this.extendedL2 ? 0 : FLAG_ZERO);
      if (this.extendedL2) {
        t.view.setUint32(at + 8, unalloc ? 0 : ALL_SUBCLUSTERS);
        t.view.setUint32(at + 12, 0);
      }
      t.dirty = true;
      this.releaseEntry(hi, lo);
    }
  }

  /** Zero part of one cluster. */
  private async zeroPartial(g: number, n: number): Promise<void> {
    const cs = this.clusterSize;
    const ci = Math.floor(g / cs);
    const inC = g - ci * cs;
    const l1i = Math.floor(ci / this.map.l2Entries);
    const at = (ci - l1i * this.map.l2Entries) * this.map.entryBytes;
    const existing = await this.map.l2(l1i);
    const hi = existing ? existing.view.getUint32(at) : 0;
    const lo = existing ? existing.view.getUint32(at + 4) : 0;
    if (!this.extendedL2) {
      const unalloc = !(hi & FLAG_COMPRESSED) && stdOffset(hi, lo) === 0;
      if (this.hasZeroFlag && !(hi & FLAG_COMPRESSED) && lo & FLAG_ZERO) return;
      if (unalloc && !this.backingCovers(g)) return;
      await this.writeInternal(g, new Uint8Array(n));
      return;
    }
    // Extended L2: whole subclusters become zero subclusters, edges are written as data.
    const sc = this.subclusterSize;
    const a = Math.ceil(inC / sc) * sc;
    const b = Math.floor((inC + n) / sc) * sc;
    if (a >= b || hi & FLAG_COMPRESSED) {
      await this.zeroBytesIfNeeded(g, n);
      return;
    }
    const allocBm = existing ? existing.view.getUint32(at + 12) : 0;
    if (stdOffset(hi, lo) === 0 && allocBm === 0 && !this.backingCovers(ci * cs)) return; // reads zero already
    if (a > inC) await this.zeroBytesIfNeeded(g, a - inC);
    const t = await this.writableL2(l1i);
    const mask = subclusterMask(a / sc, b / sc - 1);
    const zero = t.view.getUint32(at + 8);
    const alloc = t.view.getUint32(at + 12);
    t.view.setUint32(at + 8, (zero | mask) >>> 0);
    t.view.setUint32(at + 12, (alloc & ~mask) >>> 0);
    t.dirty = true;
    if (b < inC + n) await this.zeroBytesIfNeeded(ci * cs + b, inC + n - b);
  }

  /** Extended L2: zero bytes within one subcluster unless they already read as zero. */
  private async zeroBytesIfNeeded(g: number, n: number): Promise<void> {
    const segs = await this.segments(g, n);
    if (segs.every((s) => s.kind === K_ZERO || (s.kind === K_UNALLOC && !this.backingCovers(s.guest))))
      return;
    await this.writeInternal(g, new Uint8Array(n));
  }

  // ---------------------------------------------------------------- flushing

  /** Whether metadata changes are waiting to be written. */
  get hasPendingMetadata(): boolean {
    return (
      this.pendingFrees.length > 0 ||
      this.map.hasDirtyL1() ||
      this.map.l2Cache.hasDirty() ||
      (this.refcounts?.hasDirty() ?? false)
    );
  }

  /** Refcount writeback that must precede writing any L2 table (eviction hook). */
  async beforeL2WriteBack(): Promise<void> {
    await this.host.sync();
    if (this.refcounts && (await this.refcounts.writeDirty())) await this.host.sync();
  }

  private async flushMetadata(): Promise<void> {
    const rc = this.refcounts;
    if (!this.hasPendingMetadata) {
      if (this.wroteData) await this.host.sync();
      this.wroteData = false;
      return;
    }
    await this.host.sync(); // data before anything that points to it
    if (rc && (await rc.writeDirty())) await this.host.sync();
    if (await this.map.l2Cache.writeDirty()) await this.host.sync();
    if (await this.map.writeDirtyL1()) await this.host.sync();
    if (rc && this.pendingFrees.length > 0) {
      const frees = this.pendingFrees;
      this.pendingFrees = [];
      for (const f of frees) {
        await rc.free(f.start, f.count);
        for (let c = f.start; c < f.start + f.count; c++) {
          if ((await rc.get(c)) === 0) this.map.l2Cache.forget(c * this.clusterSize);
        }
      }
      if (await rc.writeDirty()) await this.host.sync();
    }
    this.wroteData = false;
  }

  protected async doFlush(): Promise<void> {
    if (this.readOnly) return;
    await this.exclusive(async () => {
      if (this.failure !== null) {
        // The disk holds the last ordered state; what was written since is not durable.
        throw new ReadOnlyError(`cannot flush after an earlier error: ${String(this.failure)}`, {
          file: this.name,
        });
      }
      try {
        await this.flushMetadata();
      } catch (err) {
        this.failure ??= err;
        throw err;
      }
    });
  }

  /** Flush (unless an earlier error made the image unusable) and release every handle. */
  override async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (this.failure === null) await this.doFlush();
    } finally {
      this.closed = true;
      await this.doClose();
    }
  }

  protected async doClose(): Promise<void> {
    try {
      if (this.backing) await this.backing.close();
      if (this.dataFile) await this.dataFile.close();
    } finally {
      if (this.ownsHost) await this.host.close();
    }
  }

  /** Grow the active L1 table (used by create and resize). Flushes first. */
  async growL1(minEntries: number): Promise<void> {
    await this.exclusive(() =>
      this.guarded(async () => {
        const rc = await this.beginWrite();
        await this.flushMetadata();
        await this.map.grow(minEntries, rc, async (offset, size) => {
          this.header.l1TableOffset = offset;
          this.header.l1Size = size;
          await this.writeHeaderFields(["l1_size", "l1_table_offset"]);
        });
      }),
    );
  }
}

/** Accumulates host writes, merging host-contiguous pieces into one vectored write. */
class WriteBatch {
  private start = -1;
  private end = -1;
  private parts: Uint8Array[] = [];
  constructor(private readonly host: HostFile) {}

  async add(host: number, data: Uint8Array): Promise<void> {
    if (this.parts.length > 0 && host === this.end && this.parts.length < 512) {
      const last = this.parts[this.parts.length - 1]!;
      if (last.buffer === data.buffer && last.byteOffset + last.length === data.byteOffset) {
        // neighbouring views of the caller's buffer: one view, no copy
        this.parts[this.parts.length - 1] = new Uint8Array(
          last.buffer,
          last.byteOffset,
          last.length + data.length,
        );
      } else this.parts.push(data);
      this.end += data.length;
      return;
    }
    await this.flush();
    this.start = host;
    this.end = host + data.length;
    this.parts = [data];
  }

  async flush(): Promise<void> {
    if (this.parts.length === 0) return;
    const parts = this.parts;
    const start = this.start;
    this.parts = [];
    if (parts.length === 1) await this.host.write(start, parts[0]!);
    else if (this.host.writev) await this.host.writev(start, parts);
    else {
      let pos = start;
      for (const p of parts) {
        await this.host.write(pos, p);
        pos += p.length;
      }
    }
  }
}
