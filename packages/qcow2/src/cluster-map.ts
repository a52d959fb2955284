import { setU64, viewOf } from "./bytes.js";
import { type CachedTable, TableCache } from "./cache.js";
import { Qcow2FormatError } from "./errors.js";
import { MAX_L1_BYTES } from "./header.js";
import type { HostFile } from "./host-file.js";
import { FLAG_COPIED, OFFSET_MASK_HI, stdOffset } from "./l2-entry.js";
import type { Refcounts } from "./refcount.js";

export interface L1Contents {
  offsets: Float64Array;
  copied: Uint8Array;
}

/**
 * Read and validate an L1 table (the active one or a snapshot's). `field` names it in errors.
 * Each entry must point to a cluster-aligned L2 table inside the file.
 */
export async function loadL1(
  host: HostFile,
  offset: number,
  size: number,
  clusterSize: number,
  field: string,
): Promise<L1Contents> {
  const file = host.name;
  if (size * 8 > MAX_L1_BYTES) {
    throw new Qcow2FormatError(field, `${size} entries exceed the 32 MiB L1 limit`, { file, offset });
  }
  const offsets = new Float64Array(size);
  const copied = new Uint8Array(size);
  if (size === 0) return { offsets, copied };
  if (offset % clusterSize !== 0 || offset === 0) {
    throw new Qcow2FormatError(field, `table offset ${offset} is not a valid cluster offset`, {
      file,
      offset,
    });
  }
  const raw = new Uint8Array(size * 8);
  const n = await host.read(offset, raw);
  if (n < raw.length) {
    throw new Qcow2FormatError(field, `table (${raw.length} bytes) runs past the end of the file`, {
      file,
      offset,
    });
  }
  const view = viewOf(raw);
  for (let i = 0; i < size; i++) {
    const hi = view.getUint32(i * 8);
    const lo = view.getUint32(i * 8 + 4);
    const off = stdOffset(hi, lo);
    if ((hi & OFFSET_MASK_HI) > 0x1f_ffff) {
      throw new Qcow2FormatError(`${field}[${i}]`, "L2 offset beyond 2^53", { file, offset: offset + i * 8 });
    }
    if (off !== 0) {
      if (off % clusterSize !== 0) {
        throw new Qcow2FormatError(`${field}[${i}]`, `L2 table offset ${off} is not cluster aligned`, {
          file,
          offset: offset + i * 8,
        });
      }
      if (off + clusterSize > host.length) {
        throw new Qcow2FormatError(`${field}[${i}]`, `L2 table at ${off} lies past the end of the file`, {
          file,
          offset: offset + i * 8,
        });
      }
    }
    offsets[i] = off;
    copied[i] = off !== 0 && (hi & FLAG_COPIED) !== 0 ? 1 : 0;
  }
  return { offsets, copied };
}

/**
 * Guest→host mapping tables: the L1 table (in memory) and a bounded cache of L2 tables.
 * Allocation-aware operations (new L2 tables, copy-on-write of shared ones, L1 growth) take the
 * refcount allocator as a parameter.
 */
export class ClusterMap {
  readonly clusterSize: number;
  /** Guest clusters per L2 table. */
  readonly l2Entries: number;
  readonly entryBytes: 8 | 16;
  readonly l2Cache: TableCache;
  private readonly dirty = new Set<number>();

  constructor(
    private readonly host: HostFile,
    readonly clusterBits: number,
    readonly extendedL2: boolean,
    public l1Offset: number,
    public l1: L1Contents,
    cacheTables: number,
    beforeL2WriteBack: () => Promise<void>,
  ) {
    this.clusterSize = 2 ** clusterBits;
    this.entryBytes = extendedL2 ? 16 : 8;
    this.l2Entries = this.clusterSize / this.entryBytes;
    this.l2Cache = new TableCache(host, this.clusterSize, cacheTables, "L2 table", beforeL2WriteBack);
  }

  get l1Size(): number {
    return this.l1.offsets.length;
  }

  /** The L2 table for L1 index `i`, or null when unallocated. */
  async l2(i: number): Promise<CachedTable | null> {
    if (i >= this.l1.offsets.length) return null;
    const off = this.l1.offsets[i]!;
    if (off === 0) return null;
    return this.l2Cache.get(off, `L1[${i}]`);
  }

  /**
   * An L2 table for L1 index `i` that may be modified: allocated (zeroed) if missing, copied
   * if shared with a snapshot (no COPIED flag). The old shared table's reference goes to
   * `queueFree`, to be dropped once the new L1 entry is on disk.
   */
  async writableL2(i: number, rc: Refcounts, queueFree: (cluster: number, count: number) => void) {
    if (i >= this.l1.offsets.length) {
      throw new Qcow2FormatError(`L1[${i}]`, "write beyond the L1 table", { file: this.host.name });
    }
    const off = this.l1.offsets[i]!;
    if (off !== 0 && this.l1.copied[i]) return this.l2Cache.get(off, `L1[${i}]`);
    let contents: Uint8Array | undefined;
    if (off !== 0) {
      const old = await this.l2Cache.get(off, `L1[${i}]`);
      contents = old.bytes.slice(); // entries copied verbatim: their refcounts already count both walks
    }
    const { start } = await rc.allocate(1);
    const t = await this.l2Cache.create(start * this.clusterSize, contents);
    this.l1.offsets[i] = start * this.clusterSize;
    this.l1.copied[i] = 1;
    this.dirty.add(i);
    if (off !== 0) queueFree(off / this.clusterSize, 1);
    return t;
  }

  hasDirtyL1(): boolean {
    return this.dirty.size > 0;
  }

  /** Write changed L1 entries (grouped into contiguous spans). */
  async writeDirtyL1(): Promise<boolean> {
    if (this.dirty.size === 0) return false;
    const sorted = [...this.dirty].sort((a, b) => a - b);
    let i = 0;
    while (i < sorted.length) {
      let j = i;
      while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
      const first = sorted[i]!;
      const n = j - i + 1;
      const buf = this.encodeL1(first, n);
      await this.host.write(this.l1Offset + first * 8, buf);
      i = j + 1;
    }
    this.dirty.clear();
    return true;
  }

  encodeL1(first: number, count: number): Uint8Array {
    const buf = new Uint8Array(count * 8);
    const v = viewOf(buf);
    for (let k = 0; k < count; k++) {
      const off = this.l1.offsets[first + k]!;
      setU64(v, k * 8, off);
      if (this.l1.copied[first + k]) v.setUint32(k * 8, v.getUint32(k * 8) | FLAG_COPIED);
    }
    return buf;
  }

  /**
   * Grow the L1 table to `minEntries` (the caller flushed all metadata first). The new table is
   * written and synced, the header switched by `writeHeader` (one write of l1_size and
   * l1_table_offset, which are adjacent), then the old table's clusters are freed.
   */
  async grow(
    minEntries: number,
    rc: Refcounts,
    writeHeader: (offset: number, size: number) => Promise<void>,
  ) {
    if (minEntries <= this.l1Size) return;
    if (minEntries * 8 > MAX_L1_BYTES) {
      throw new Qcow2FormatError("l1_size", `${minEntries} entries exceed the 32 MiB L1 limit`, {
        file: this.host.name,
      });
    }
    const cs = this.clusterSize;
    const clusters = Math.ceil((minEntries * 8) / cs);
    const start = await rc.allocateContiguous(clusters);
    const offsets = new Float64Array(minEntries);
    const copied = new Uint8Array(minEntries);
    offsets.set(this.l1.offsets);
    copied.set(this.l1.copied);
    const oldOffset = this.l1Offset;
    const oldClusters = Math.ceil((this.l1Size * 8) / cs);
    this.l1 = { offsets, copied };
    this.l1Offset = start * cs;
    this.dirty.clear();
    const table = new Uint8Array(clusters * cs);
    table.set(this.encodeL1(0, minEntries));
    await this.host.write(this.l1Offset, table);
    if (await rc.writeDirty()) await this.host.sync();
    await this.host.sync();
    await writeHeader(this.l1Offset, minEntries);
    if (oldOffset !== 0 && oldClusters > 0) await rc.free(oldOffset / cs, oldClusters);
  }
}
