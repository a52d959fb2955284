import { rm } from "node:fs/promises";
import { UnsupportedError } from "@imgpatch/disk";
import { setU64, viewOf } from "./bytes.js";
import {
  DEFAULT_FEATURE_NAMES,
  EXT_BACKING_FORMAT,
  featureTableExtension,
  serializeExtensions,
  stringExtension,
} from "./extensions.js";
import {
  INCOMPAT_EXTL2,
  MAX_BACKING_NAME,
  MAX_CLUSTER_BITS,
  MAX_L1_BYTES,
  MAX_REFTABLE_BYTES,
  MIN_CLUSTER_BITS,
  type Qcow2Header,
  serializeHeader,
  V2_HEADER_LENGTH,
  V3_HEADER_LENGTH,
} from "./header.js";
import { NodeHostFile } from "./host-file.js";
import { ALL_SUBCLUSTERS, encodeCompressed, encodeStd, FLAG_ZERO } from "./l2-entry.js";

export interface StreamWriterOptions {
  size: number;
  clusterSize?: number;
  version?: 2 | 3;
  extendedL2?: boolean;
  backing?: { path: string; format?: "qcow2" | "raw" };
  /** fdatasync before and after writing the header (default true). */
  sync?: boolean;
}

const noop = (): void => {};

/**
 * Bytes of data gathered before one vectored write. 2 MiB, as qemu-img's buffer: the source
 * buffers come back for reuse sooner, and a few small ones stay in the CPU cache between the read
 * that fills them and the write that empties them (8 MiB cost ~1.5x the system time).
 */
const BATCH_BYTES = 2 * 1024 * 1024;

/**
 * Writes a NEW qcow2 image front to back, for convert: guest clusters arrive in increasing
 * order; data (plain or compressed) is appended, each L2 table is appended once its range is
 * done, and the L1 table, refcount blocks, refcount table and finally the header go at the end.
 * Nothing is read back and nothing is written twice, so it runs at the speed of the disk.
 * Memory: one L2 table, the L1 table, and a refcount per host cluster (4 bytes each).
 *
 * The image is only valid once `finish` has written the header (cluster 0 stays zero until
 * then, so an interrupted convert leaves a file no one mistakes for a qcow2).
 */
export class Qcow2StreamWriter {
  readonly clusterSize: number;
  readonly clusterBits: number;
  readonly version: 2 | 3;
  readonly extendedL2: boolean;
  private readonly entryBytes: number;
  private readonly l2Entries: number;
  private readonly l1: Float64Array;
  private l2: Uint8Array;
  private l2View: DataView;
  private l2Index = -1;
  private l2Dirty = false;
  /** Next free host byte (data clusters align it up; compressed streams pack at byte granularity). */
  private cursor: number;
  private refs = new Uint32Array(1024);
  private batchStart = -1;
  private batchEnd = -1;
  private batch: Uint8Array[] = [];
  /** Settled once the current batch's write has finished (created only when someone asks). */
  private batchReleased: { promise: Promise<void>; settle: () => void } | null = null;
  private lastGuest = -1;

  private constructor(
    private readonly host: NodeHostFile,
    private readonly opts: StreamWriterOptions,
  ) {
    const cs = opts.clusterSize ?? 65536;
    const bits = Math.log2(cs);
    if (!Number.isInteger(bits) || bits < MIN_CLUSTER_BITS || bits > MAX_CLUSTER_BITS) {
      throw new UnsupportedError(`cluster size ${cs} must be a power of two between 512 and 2 MiB`);
    }
    this.clusterSize = cs;
    this.clusterBits = bits;
    this.version = opts.version ?? 3;
    this.extendedL2 = opts.extendedL2 ?? false;
    if (this.extendedL2 && (this.version !== 3 || cs < 16384)) {
      throw new UnsupportedError("extended L2 needs version 3 and clusters >= 16 KiB");
    }
    this.entryBytes = this.extendedL2 ? 16 : 8;
    this.l2Entries = cs / this.entryBytes;
    const l1Size = Math.ceil(opts.size / cs / this.l2Entries);
    if (l1Size * 8 > MAX_L1_BYTES) throw new UnsupportedError("image too large for this cluster size");
    this.l1 = new Float64Array(l1Size);
    this.l2 = new Uint8Array(cs);
    this.l2View = viewOf(this.l2);
    this.cursor = cs; // cluster 0: header, written last
    this.refs[0] = 1;
  }

  /** Create `path` (replacing it when `overwrite`) and return a writer for it. */
  static async create(path: string, opts: StreamWriterOptions & { overwrite?: boolean }) {
    if (opts.overwrite) await rm(path, { force: true });
    const host = await NodeHostFile.open(path, { create: true });
    return new Qcow2StreamWriter(host, opts);
  }

  get guestClusters(): number {
    return Math.ceil(this.opts.size / this.clusterSize);
  }

  private ref(cluster: number): void {
    if (cluster >= this.refs.length) {
      const grown = new Uint32Array(Math.max(cluster + 1, this.refs.length * 2));
      grown.set(this.refs);
      this.refs = grown;
    }
    this.refs[cluster]!++;
  }

  private async entry(guestCluster: number): Promise<number> {
    if (guestCluster <= this.lastGuest) throw new RangeError("guest clusters must be written in order");
    this.lastGuest = guestCluster;
    const idx = Math.floor(guestCluster / this.l2Entries);
    if (idx !== this.l2Index) {
      await this.flushL2();
      this.l2Index = idx;
    }
    this.l2Dirty = true;
    return (guestCluster - idx * this.l2Entries) * this.entryBytes;
  }

  private async flushL2(): Promise<void> {
    if (this.l2Index < 0 || !this.l2Dirty) return;
    const at = this.allocClusters(1);
    await this.append(at, this.l2);
    this.l1[this.l2Index] = at;
    this.l2 = new Uint8Array(this.clusterSize);
    this.l2View = viewOf(this.l2);
    this.l2Dirty = false;
  }

  /** Reserve `n` cluster-aligned clusters at the end; returns their host offset. */
  private allocClusters(n: number): number {
    const cs = this.clusterSize;
    const at = Math.ceil(this.cursor / cs) * cs;
    for (let k = 0; k < n; k++) this.ref(at / cs + k);
    this.cursor = at + n * cs;
    return at;
  }

  private async append(at: number, data: Uint8Array): Promise<void> {
    if (this.batch.length > 0 && at === this.batchEnd && this.batchEnd - this.batchStart < BATCH_BYTES) {
      this.batch.push(data);
      this.batchEnd += data.length;
      return;
    }
    await this.flushBatch();
    this.batchStart = at;
    this.batchEnd = at + data.length;
    this.batch = [data];
  }

  /**
   * The write in flight (at most one): the next batch is gathered, and the source read, while it
   * runs. One at a time, as qemu-img writes in order: buffered writes to one file serialize on its
   * inode lock anyway, and a second writer waiting for it only burns a core.
   */
  private inFlight: Promise<void>[] = [];

  private async flushBatch(): Promise<void> {
    if (this.batch.length === 0) return;
    const parts = this.batch;
    this.batch = [];
    const start = this.batchStart;
    const released = this.batchReleased;
    this.batchReleased = null;
    while (this.inFlight.length > 0) await this.inFlight.shift();
    const w = parts.length === 1 ? this.host.write(start, parts[0]!) : this.host.writev(start, parts);
    // Settles either way: a failed write is reported through inFlight, not through the release.
    if (released) w.then(released.settle, released.settle);
    this.inFlight.push(w);
  }

  /**
   * A promise settled when everything appended so far no longer needs its caller's buffers: the
   * writes in flight and the batch being gathered (whose write is issued later).
   */
  private released(): Promise<void> {
    const waits = this.inFlight.map((w) => w.then(noop, noop));
    if (this.batch.length > 0) {
      if (!this.batchReleased) {
        let settle!: () => void;
        const promise = new Promise<void>((r) => {
          settle = r;
        });
        this.batchReleased = { promise, settle };
      }
      waits.push(this.batchReleased.promise);
    }
    return Promise.all(waits).then(noop);
  }

  private async drainWrites(): Promise<void> {
    const all = this.inFlight;
    this.inFlight = [];
    await Promise.all(all);
  }

  /** Store one full guest cluster of data (a short last cluster is padded with zeros). */
  async putData(guestCluster: number, data: Uint8Array): Promise<void> {
    const at = await this.entry(guestCluster);
    const host = this.allocClusters(1);
    let d = data;
    if (d.length < this.clusterSize) {
      d = new Uint8Array(this.clusterSize);
      d.set(data);
    }
    await this.append(host, d);
    const e = encodeStd(host, true);
    this.l2View.setUint32(at, e.hi);
    this.l2View.setUint32(at + 4, e.lo);
    if (this.extendedL2) this.l2View.setUint32(at + 12, ALL_SUBCLUSTERS);
  }

  /**
   * Store consecutive guest clusters from `guestCluster` on, `data` holding them back to back (a
   * short last cluster is padded with zeros): one host allocation, one append and a loop of L2
   * entries per L2 table the run touches, instead of a call per cluster. The data is not copied:
   * `released` settles once the writer no longer reads `data` (its buffer may then be reused).
   */
  async putDataRun(guestCluster: number, data: Uint8Array): Promise<{ released: Promise<void> }> {
    const cs = this.clusterSize;
    const count = Math.ceil(data.length / cs);
    let k = 0;
    while (k < count) {
      const g = guestCluster + k;
      // up to the end of this cluster's L2 table: a new table is appended between the pieces
      const n = Math.min(count - k, this.l2Entries - (g % this.l2Entries));
      const at = await this.entry(g);
      this.lastGuest = g + n - 1;
      const host = this.allocClusters(n);
      let piece = data.subarray(k * cs, (k + n) * cs);
      if (piece.length < n * cs) {
        const padded = new Uint8Array(n * cs);
        padded.set(piece);
        piece = padded;
      }
      await this.append(host, piece);
      const ext = this.extendedL2;
      for (let j = 0; j < n; j++) {
        const e = encodeStd(host + j * cs, true);
        const o = at + j * this.entryBytes;
        this.l2View.setUint32(o, e.hi);
        this.l2View.setUint32(o + 4, e.lo);
        if (ext) this.l2View.setUint32(o + 12, ALL_SUBCLUSTERS);
      }
      k += n;
    }
    return { released: this.released() };
  }

  /** Store one guest cluster as a compressed stream (raw deflate with a 4 KiB window). */
  async putCompressed(guestCluster: number, stream: Uint8Array): Promise<void> {
    if (stream.length >= this.clusterSize)
      throw new RangeError("compressed stream must be smaller than a cluster");
    const at = await this.entry(guestCluster);
    const off = this.cursor;
    const first = Math.floor(off / this.clusterSize);
    const last = Math.floor((off + stream.length - 1) / this.clusterSize);
    for (let c = first; c <= last; c++) this.ref(c);
    this.cursor = off + stream.length;
    await this.append(off, stream);
    const sectors = Math.floor((off + stream.length - 1) / 512) - Math.floor(off / 512) + 1;
    const e = encodeCompressed(off, sectors, this.clusterBits);
    this.l2View.setUint32(at, e.hi);
    this.l2View.setUint32(at + 4, e.lo);
  }

  /** Mark a guest cluster as reading zeros (v3 only; over a backing file this hides its data). */
  async putZero(guestCluster: number): Promise<void> {
    if (this.version < 3) throw new UnsupportedError("version 2 images have no zero clusters");
    const at = await this.entry(guestCluster);
    if (this.extendedL2) this.l2View.setUint32(at + 8, ALL_SUBCLUSTERS);
    else this.l2View.setUint32(at + 4, FLAG_ZERO);
  }

  /** Write the L1 table, refcount structures and header; close the file. */
  async finish(): Promise<void> {
    try {
      await this.flushL2();
      const cs = this.clusterSize;
      const l1Clusters = Math.ceil((this.l1.length * 8) / cs);
      const l1At = l1Clusters > 0 ? this.allocClusters(l1Clusters) : 0;
      if (l1Clusters > 0) {
        const t = new Uint8Array(l1Clusters * cs);
        const v = viewOf(t);
        for (let i = 0; i < this.l1.length; i++) {
          if (this.l1[i]! !== 0) {
            const e = encodeStd(this.l1[i]!, true);
            v.setUint32(i * 8, e.hi);
            v.setUint32(i * 8 + 4, e.lo);
          }
        }
        await this.append(l1At, t);
      }
      // Refcount blocks then table, sized to count everything including themselves.
      const perBlock = (cs * 8) / 16;
      const used = Math.ceil(this.cursor / cs);
      let B = 1;
      let T = 1;
      for (;;) {
        const total = used + B + T;
        const nb = Math.ceil(total / perBlock);
        const nt = Math.ceil((nb * 8) / cs);
        if (nb <= B && nt <= T) break;
        B = Math.max(B, nb);
        T = Math.max(T, nt);
      }
      if (T * cs > MAX_REFTABLE_BYTES) throw new UnsupportedError("refcount table would exceed 8 MiB");
      const blocksAt = this.allocClusters(B);
      const tableAt = this.allocClusters(T);
      const blocks = new Uint8Array(B * cs);
      const bv = viewOf(blocks);
      const n = Math.ceil(this.cursor / cs);
      for (let c = 0; c < n; c++) {
        const r = this.refs[c] ?? 0;
        if (r > 0xffff) throw new UnsupportedError(`cluster ${c} has more than 65535 references`);
        bv.setUint16(c * 2, r);
      }
      await this.append(blocksAt, blocks);
      const table = new Uint8Array(T * cs);
      const tv = viewOf(table);
      for (let b = 0; b < B; b++) setU64(tv, b * 8, blocksAt + b * cs);
      await this.append(tableAt, table);
      await this.flushBatch();
      await this.drainWrites();
      const sync = this.opts.sync ?? true;
      if (sync) await this.host.sync(); // everything the header points to, before the header
      await this.host.write(0, this.headerCluster(l1At, tableAt, T));
      if (sync) await this.host.sync();
    } finally {
      await this.drainWrites().catch(() => {});
      await this.host.close();
    }
  }

  private headerCluster(l1At: number, tableAt: number, tableClusters: number): Uint8Array {
    const v3 = this.version === 3;
    const header: Qcow2Header = {
      version: this.version,
      backingFileOffset: 0,
      backingFileSize: 0,
      clusterBits: this.clusterBits,
      size: this.opts.size,
      cryptMethod: 0,
      l1Size: this.l1.length,
      l1TableOffset: l1At,
      refcountTableOffset: tableAt,
      refcountTableClusters: tableClusters,
      nbSnapshots: 0,
      snapshotsOffset: 0,
      incompatibleFeatures: this.extendedL2 ? INCOMPAT_EXTL2 : 0n,
      compatibleFeatures: 0n,
      autoclearFeatures: 0n,
      refcountOrder: 4,
      headerLength: v3 ? V3_HEADER_LENGTH : V2_HEADER_LENGTH,
      compressionType: 0,
    };
    const exts: { type: number; data: Uint8Array }[] = [];
    const backing = this.opts.backing;
    if (backing?.format) exts.push(stringExtension(EXT_BACKING_FORMAT, backing.format));
    if (v3) exts.push(featureTableExtension(DEFAULT_FEATURE_NAMES));
    const extBytes = serializeExtensions(exts);
    const name = backing ? new TextEncoder().encode(backing.path) : new Uint8Array(0);
    if (name.length > MAX_BACKING_NAME)
      throw new UnsupportedError("backing file name longer than 1023 bytes");
    const nameAt = header.headerLength + extBytes.length;
    if (nameAt + name.length > this.clusterSize) {
      throw new UnsupportedError("header, extensions and backing name do not fit in one cluster");
    }
    if (backing) {
      header.backingFileOffset = nameAt;
      header.backingFileSize = name.length;
    }
    const out = new Uint8Array(this.clusterSize);
    out.set(serializeHeader(header), 0);
    out.set(extBytes, header.headerLength);
    out.set(name, nameAt);
    return out;
  }

  /** Abandon the image (close without writing the header). */
  async abort(): Promise<void> {
    await this.drainWrites().catch(() => {});
    await this.host.close().catch(() => {});
  }
}
