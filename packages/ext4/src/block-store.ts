/**
 * Write-back cache of metadata blocks for the editor: bitmaps, inode-table blocks, directory,
 * extent-tree and xattr blocks are read once, modified in memory and written at flush, adjacent
 * dirty blocks coalesced into one device write. File data never goes through here (it is written
 * straight to the device); a block freed from metadata is forgotten so a stale copy can never be
 * flushed over data that later reuses it.
 */
import type { BlockDevice } from "@imgpatch/disk";

export interface WriteCounters {
  writes: number;
  bytesWritten: number;
}

/** File data up to this size is buffered as dirty blocks (see writeData). */
const SMALL_DATA = 64 * 1024;
/** Flush the store once this many blocks are dirty (bounds memory). */
const MAX_DIRTY_BLOCKS = 4096;

export class BlockStore {
  private readonly cache = new Map<number, Uint8Array>();
  private readonly dirty = new Set<number>();
  /** Dirty blocks holding file data: dropped from the cache once written. */
  private dataBlocks = new Set<number>();
  readonly counters: WriteCounters = { writes: 0, bytesWritten: 0 };

  constructor(
    readonly device: BlockDevice,
    readonly blockSize: number,
    /** Clean blocks kept at most (dirty ones stay until flushed). */
    private readonly maxClean = 8192,
  ) {}

  async get(block: number): Promise<Uint8Array> {
    const hit = this.cache.get(block);
    if (hit) return hit;
    const b = await this.device.read(block * this.blockSize, this.blockSize);
    const copy = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    if (this.cache.size >= this.maxClean + this.dirty.size) this.evictClean();
    this.cache.set(block, copy);
    return copy;
  }

  /** A fresh zeroed block that will be written at flush (no read). */
  fresh(block: number): Uint8Array {
    const b = this.slabBlock();
    this.cache.set(block, b);
    this.dirty.add(block);
    this.checksums.delete(block);
    return b;
  }

  /** Zeroed block-sized buffers cut from 1 MiB slabs (fewer small allocations). */
  private slab = new Uint8Array(0);
  private slabPos = 0;
  private slabBlock(): Uint8Array {
    if (this.slabPos + this.blockSize > this.slab.length) {
      this.slab = new Uint8Array(Math.max(this.blockSize, 1 << 20));
      this.slabPos = 0;
    }
    const b = this.slab.subarray(this.slabPos, this.slabPos + this.blockSize);
    this.slabPos += this.blockSize;
    return b;
  }

  /**
   * Checksums computed once at flush instead of after every change: `fn` gets the block's bytes.
   * Setting one again replaces it; freeing the block drops it.
   */
  private readonly checksums = new Map<number, (b: Uint8Array) => void>();
  deferChecksum(block: number, fn: (b: Uint8Array) => void): void {
    this.checksums.set(block, fn);
    this.dirty.add(block);
  }

  markDirty(block: number): void {
    if (!this.cache.has(block)) throw new Error(`block ${block} marked dirty but not cached`);
    this.dirty.add(block);
  }

  isCached(block: number): boolean {
    return this.cache.has(block);
  }

  /** Drop a block (freed or about to be overwritten as file data). */
  forget(block: number): void {
    this.checksums.delete(block);
    this.cache.delete(block);
    this.dirty.delete(block);
    this.dataBlocks.delete(block);
  }

  get dirtyCount(): number {
    return this.dirty.size;
  }

  private evictClean(): void {
    let n = 0;
    for (const k of this.cache.keys()) {
      if (this.dirty.has(k)) continue;
      this.cache.delete(k);
      if (++n >= this.maxClean / 4) break;
    }
  }

  /** Write every dirty block, adjacent ones coalesced (up to 1 MiB per write). */
  async flush(): Promise<void> {
    for (const [blk, fn] of this.checksums) {
      const b = this.cache.get(blk);
      if (b) fn(b);
    }
    this.checksums.clear();
    if (this.dirty.size === 0) return;
    // Snapshot what is dirty now; anything dirtied while the writes are in flight stays dirty
    // for the next flush.
    const blocks = [...this.dirty].filter((b) => this.cache.has(b)).sort((a, b) => a - b);
    const bufs = blocks.map((b) => this.cache.get(b) as Uint8Array);
    const data = this.dataBlocks;
    this.dirty.clear();
    this.dataBlocks = new Set();
    const maxRun = Math.max(1, (1 << 20) / this.blockSize);
    let i = 0;
    while (i < blocks.length) {
      let j = i + 1;
      while (j < blocks.length && blocks[j] === blocks[j - 1] + 1 && j - i < maxRun) j++;
      const n = j - i;
      let buf: Uint8Array;
      if (n === 1) buf = bufs[i];
      else {
        buf = new Uint8Array(n * this.blockSize);
        for (let k = 0; k < n; k++) buf.set(bufs[i + k], k * this.blockSize);
      }
      await this.device.write(blocks[i] * this.blockSize, buf);
      this.counters.writes++;
      this.counters.bytesWritten += buf.length;
      i = j;
    }
    // Written file data leaves the cache (unless rewritten meanwhile).
    for (const b of data) if (!this.dirty.has(b)) this.cache.delete(b);
  }

  /**
   * Write file data (whole blocks from `block`). Small pieces are kept as dirty blocks so that
   * many small files allocated next to each other reach the device in a few large writes; large
   * ones go straight to the device.
   */
  async writeData(block: number, data: Uint8Array): Promise<void> {
    const n = Math.ceil(data.length / this.blockSize);
    if (data.length <= SMALL_DATA) {
      for (let k = 0; k < n; k++) {
        const b = this.fresh(block + k);
        b.set(data.subarray(k * this.blockSize, Math.min(data.length, (k + 1) * this.blockSize)));
        this.dataBlocks.add(block + k);
      }
      if (this.dirty.size > MAX_DIRTY_BLOCKS) await this.flush();
      return;
    }
    for (let k = 0; k < n; k++) this.forget(block + k);
    await this.device.write(block * this.blockSize, data);
    this.counters.writes++;
    this.counters.bytesWritten += data.length;
  }
}
