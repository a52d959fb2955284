import { alignUp, getU64, setU64, viewOf } from "./bytes.js";
import { type CachedTable, TableCache } from "./cache.js";
import { Qcow2FormatError } from "./errors.js";
import { MAX_REFTABLE_BYTES } from "./header.js";
import type { HostFile } from "./host-file.js";

/**
 * Cluster reference counts: a contiguous refcount table of 64-bit pointers to one-cluster
 * refcount blocks, each an array of `1 << refcount_order`-bit counters (sub-byte widths put
 * entry 0 in the least significant bits). Blocks are cached (bounded); the table itself is held
 * in memory (at most 8 MiB, qemu's limit).
 *
 * Also the cluster allocator: first-fit from a moving hint, handing out contiguous runs so
 * sequential writes land in sequential clusters.
 */
export class Refcounts {
  readonly clusterSize: number;
  readonly bits: number;
  /** Refcount entries per block. */
  readonly perBlock: number;
  readonly maxRefcount: number;
  private table: Float64Array;
  private readonly dirtyEntries = new Set<number>();
  readonly cache: TableCache;
  /** Lowest cluster index that may be free. */
  private hint = 0;
  /** One past the highest cluster this session allocated (placed clusters may not be written yet). */
  private highWater = 0;

  private constructor(
    private readonly host: HostFile,
    clusterBits: number,
    readonly order: number,
    private tableOffset: number,
    private tableClusters: number,
    table: Float64Array,
    cacheTables: number,
    /** Persist a moved refcount table in the header (and sync). */
    private readonly onTableMoved: (offset: number, clusters: number) => Promise<void>,
  ) {
    this.clusterSize = 2 ** clusterBits;
    this.bits = 2 ** order;
    this.perBlock = (this.clusterSize * 8) / this.bits;
    this.maxRefcount = this.bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.bits - 1;
    this.table = table;
    this.cache = new TableCache(host, this.clusterSize, cacheTables, "refcount block");
  }

  /** Read and validate the refcount table. */
  static async load(
    host: HostFile,
    opts: {
      clusterBits: number;
      refcountOrder: number;
      tableOffset: number;
      tableClusters: number;
      cacheTables: number;
      onTableMoved: (offset: number, clusters: number) => Promise<void>;
    },
  ): Promise<Refcounts> {
    const cs = 2 ** opts.clusterBits;
    const file = host.name;
    const bytes = opts.tableClusters * cs;
    if (opts.tableClusters === 0 || bytes > MAX_REFTABLE_BYTES) {
      throw new Qcow2FormatError(
        "refcount_table_clusters",
        `${opts.tableClusters} clusters is out of range (1..${MAX_REFTABLE_BYTES / cs})`,
        { file, offset: 56 },
      );
    }
    if (opts.tableOffset % cs !== 0 || opts.tableOffset === 0) {
      throw new Qcow2FormatError(
        "refcount_table_offset",
        `${opts.tableOffset} is not a valid cluster offset`,
        {
          file,
          offset: 48,
        },
      );
    }
    const raw = new Uint8Array(bytes);
    const n = await host.read(opts.tableOffset, raw);
    if (n < bytes) {
      throw new Qcow2FormatError("refcount_table_offset", "refcount table lies past the end of the file", {
        file,
        offset: opts.tableOffset,
      });
    }
    const view = viewOf(raw);
    const entries = bytes / 8;
    const table = new Float64Array(entries);
    for (let i = 0; i < entries; i++) {
      const v = getU64(view, i * 8);
      const at = opts.tableOffset + i * 8;
      if (v < 0 || v % cs !== 0) {
        throw new Qcow2FormatError(`refcount_table[${i}]`, "refcount block offset is invalid or misaligned", {
          file,
          offset: at,
        });
      }
      if (v !== 0 && v + cs > host.length) {
        throw new Qcow2FormatError(
          `refcount_table[${i}]`,
          `refcount block at ${v} lies past the end of the file`,
          {
            file,
            offset: at,
          },
        );
      }
      table[i] = v;
    }
    return new Refcounts(
      host,
      opts.clusterBits,
      opts.refcountOrder,
      opts.tableOffset,
      opts.tableClusters,
      table,
      opts.cacheTables,
      opts.onTableMoved,
    );
  }

  get tableLocation(): { offset: number; clusters: number } {
    return { offset: this.tableOffset, clusters: this.tableClusters };
  }

  /** Refcount table entries (refcount block offsets; 0 = none). */
  tableEntries(): readonly number[] {
    return Array.from(this.table);
  }

  private readEntry(t: CachedTable, i: number): number {
    const bits = this.bits;
    if (bits === 16) return t.view.getUint16(i * 2);
    if (bits === 32) return t.view.getUint32(i * 4);
    if (bits === 64) {
      const v = getU64(t.view, i * 8);
      if (v < 0)
        throw new Qcow2FormatError("refcount", "refcount exceeds 2^53", {
          file: this.host.name,
          offset: t.offset + i * 8,
        });
      return v;
    }
    if (bits === 8) return t.bytes[i]!;
    const bit = i * bits;
    return (t.bytes[bit >> 3]! >> (bit & 7)) & ((1 << bits) - 1);
  }

  private writeEntry(t: CachedTable, i: number, value: number): void {
    const bits = this.bits;
    if (bits === 16) t.view.setUint16(i * 2, value);
    else if (bits === 32) t.view.setUint32(i * 4, value);
    else if (bits === 64) setU64(t.view, i * 8, value);
    else if (bits === 8) t.bytes[i] = value;
    else {
      const bit = i * bits;
      const mask = ((1 << bits) - 1) << (bit & 7);
      const b = bit >> 3;
      t.bytes[b] = (t.bytes[b]! & ~mask) | ((value << (bit & 7)) & mask);
    }
    t.dirty = true;
  }

  private async block(ti: number): Promise<CachedTable | null> {
    if (ti >= this.table.length) return null;
    const off = this.table[ti]!;
    if (off === 0) return null;
    return this.cache.get(off, `refcount_table[${ti}]`);
  }

  /** The refcount of a cluster (0 when no block covers it). */
  async get(cluster: number): Promise<number> {
    const ti = Math.floor(cluster / this.perBlock);
    const blk = await this.block(ti);
    return blk ? this.readEntry(blk, cluster - ti * this.perBlock) : 0;
  }

  /** Add `delta` (±) to the refcounts of `count` clusters from `start`. */
  async update(start: number, count: number, delta: number): Promise<void> {
    for (let c = start; c < start + count; c++) {
      const ti = Math.floor(c / this.perBlock);
      let blk = await this.block(ti);
      if (!blk) {
        if (delta < 0) {
          throw new Qcow2FormatError("refcount", `freeing cluster ${c} whose refcount is already 0`, {
            file: this.host.name,
            offset: c * this.clusterSize,
          });
        }
        await this.ensureBlock(ti, start, count);
        blk = (await this.block(ti))!;
      }
      const i = c - ti * this.perBlock;
      const v = this.readEntry(blk, i) + delta;
      if (v < 0 || v > this.maxRefcount) {
        throw new Qcow2FormatError(
          "refcount",
          `refcount of cluster ${c} would become ${v} (range 0..${this.maxRefcount})`,
          { file: this.host.name, offset: c * this.clusterSize },
        );
      }
      this.writeEntry(blk, i, v);
      if (v === 0 && c < this.hint) this.hint = c;
    }
    if (delta > 0) this.highWater = Math.max(this.highWater, start + count);
  }

  async free(start: number, count: number): Promise<void> {
    await this.update(start, count, -1);
  }

  /**
   * Create the refcount block for table index `ti`. Every cluster it covers is free (no block
   * means refcount 0), so it goes in the first of them — and counts itself (the
   * self-referencing case) — unless that cluster is in [avoidStart, avoidStart+avoidCount).
   */
  private async ensureBlock(ti: number, avoidStart = -1, avoidCount = 0): Promise<void> {
    if (ti >= this.table.length) {
      await this.growTable(ti + 1);
      if (this.table[ti] !== 0) return;
    }
    if (this.table[ti] !== 0) return;
    let c = ti * this.perBlock;
    if (c >= avoidStart && c < avoidStart + avoidCount) c = avoidStart + avoidCount;
    if (c >= (ti + 1) * this.perBlock) {
      throw new Qcow2FormatError("refcount", `no room for refcount block ${ti}`, { file: this.host.name });
    }
    const blk = await this.cache.create(c * this.clusterSize);
    this.writeEntry(blk, c - ti * this.perBlock, 1);
    this.table[ti] = c * this.clusterSize;
    this.dirtyEntries.add(ti);
    this.highWater = Math.max(this.highWater, c + 1);
  }

  /**
   * Allocate up to `maxCount` contiguous free clusters (at least one) and set their refcount
   * to 1. Returns the first cluster index and how many were taken.
   */
  async allocate(maxCount: number): Promise<{ start: number; count: number }> {
    const E = this.perBlock;
    for (;;) {
      let c = this.hint;
      let restart = false;
      for (;;) {
        const ti = Math.floor(c / E);
        const blk = await this.block(ti);
        if (!blk) {
          await this.ensureBlock(ti);
          restart = true;
          break;
        }
        const base = ti * E;
        let i = c - base;
        while (i < E && this.readEntry(blk, i) !== 0) i++;
        if (i < E) {
          c = base + i;
          break;
        }
        c = base + E;
      }
      if (restart) continue;
      this.hint = c;
      let n = 1;
      while (n < maxCount) {
        const d = c + n;
        const ti = Math.floor(d / E);
        const blk = await this.block(ti);
        if (!blk || this.readEntry(blk, d - ti * E) !== 0) break;
        n++;
      }
      await this.update(c, n, 1);
      this.hint = c + n;
      return { start: c, count: n };
    }
  }

  /** Allocate exactly `count` contiguous clusters (for multi-cluster tables). */
  async allocateContiguous(count: number): Promise<number> {
    const E = this.perBlock;
    let c = this.hint;
    outer: for (;;) {
      // make sure blocks exist for the candidate range, then test it
      for (let d = c; d < c + count; d++) {
        const ti = Math.floor(d / E);
        const blk = await this.block(ti);
        if (!blk) {
          await this.ensureBlock(ti);
          continue outer; // the new block may sit inside the range: re-test from c
        }
        if (this.readEntry(blk, d - ti * E) !== 0) {
          c = d + 1;
          continue outer;
        }
      }
      await this.update(c, count, 1);
      return c;
    }
  }

  /**
   * Grow the refcount table to at least `minEntries` entries. The new table and the refcount
   * blocks needed to count it are placed past everything in use, written, synced, and only then
   * does the header switch to them; the old table is freed last. A crash at any point leaves
   * either the old consistent table or the new one (plus leaks).
   */
  private async growTable(minEntries: number): Promise<void> {
    const cs = this.clusterSize;
    const E = this.perBlock;
    const P = cs / 8;
    let newEntries = alignUp(Math.max(minEntries, Math.ceil(this.table.length * 1.5), P), P);
    const L = Math.max(Math.ceil(this.host.length / cs), this.highWater);
    let nTab = 0;
    let missing: number[] = [];
    for (;;) {
      nTab = newEntries / P;
      let nBlk = 0;
      for (;;) {
        const end = L + nTab + nBlk;
        missing = [];
        for (let ti = Math.floor(L / E); ti <= Math.floor((end - 1) / E); ti++) {
          if (ti >= this.table.length || this.table[ti] === 0) missing.push(ti);
        }
        if (missing.length === nBlk) break;
        nBlk = missing.length;
      }
      const lastTi = Math.floor((L + nTab + nBlk - 1) / E);
      if (lastTi < newEntries) break;
      newEntries = alignUp(lastTi + 1, P);
    }
    if (newEntries * 8 > MAX_REFTABLE_BYTES) {
      throw new Qcow2FormatError("refcount_table_clusters", "refcount table would exceed 8 MiB", {
        file: this.host.name,
      });
    }
    const total = nTab + missing.length;
    const newTable = new Float64Array(newEntries);
    newTable.set(this.table);
    const fresh = new Map<number, CachedTable>();
    for (let k = 0; k < missing.length; k++) {
      const ti = missing[k]!;
      const off = (L + nTab + k) * cs;
      newTable[ti] = off;
      const blk = await this.cache.create(off);
      blk.pins++; // must survive until written below
      fresh.set(ti, blk);
    }
    // Count the new table and blocks: in the fresh blocks or in existing ones.
    this.table = newTable;
    for (let c = L; c < L + total; c++) {
      const ti = Math.floor(c / E);
      const blk = fresh.get(ti) ?? (await this.block(ti))!;
      this.writeEntry(blk, c - ti * E, this.readEntry(blk, c - ti * E) + 1);
    }
    this.highWater = Math.max(this.highWater, L + total);
    // Blocks first, then the table, then the header.
    await this.cache.writeDirty();
    for (const blk of fresh.values()) blk.pins--;
    const tb = new Uint8Array(nTab * cs);
    const tv = viewOf(tb);
    for (let i = 0; i < newEntries; i++) setU64(tv, i * 8, newTable[i]!);
    await this.host.write(L * cs, tb);
    await this.host.sync();
    const old = { offset: this.tableOffset, clusters: this.tableClusters };
    this.tableOffset = L * cs;
    this.tableClusters = nTab;
    this.dirtyEntries.clear();
    await this.onTableMoved(this.tableOffset, nTab);
    await this.free(old.offset / cs, old.clusters);
  }

  hasDirty(): boolean {
    return this.dirtyEntries.size > 0 || this.cache.hasDirty();
  }

  /**
   * Write dirty refcount blocks, then (after a barrier) the table entries that point to new
   * blocks. Returns whether anything was written; the caller syncs afterwards.
   */
  async writeDirty(): Promise<boolean> {
    const wroteBlocks = await this.cache.writeDirty();
    if (this.dirtyEntries.size === 0) return wroteBlocks;
    if (wroteBlocks) await this.host.sync();
    const sorted = [...this.dirtyEntries].sort((a, b) => a - b);
    let i = 0;
    while (i < sorted.length) {
      let j = i;
      while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
      const first = sorted[i]!;
      const n = j - i + 1;
      const buf = new Uint8Array(n * 8);
      const v = viewOf(buf);
      for (let k = 0; k < n; k++) setU64(v, k * 8, this.table[first + k]!);
      await this.host.write(this.tableOffset + first * 8, buf);
      i = j + 1;
    }
    this.dirtyEntries.clear();
    return true;
  }
}
