/**
 * Write-back cache of metadata blocks for the editor: bitmaps, inode-table blocks, directory,
 * extent-tree and xattr blocks are read once, modified in memory and written at flush, adjacent
 * dirty blocks coalesced into one device write. Large file data goes straight to the device; pieces
 * up to 256 KiB are gathered into one pending run of consecutive blocks (files allocated next to each
 * other) written as one device write, always before the metadata at flush. A block freed from
 * metadata is forgotten so a stale copy can never be flushed over data that later reuses it.
 */
import type { BlockDevice } from "@imgpatch/disk";

export interface WriteCounters {
  writes: number;
  bytesWritten: number;
}

/**
 * File data up to this size is copied into the pending run (see writeData), which is written in
 * the background while the editor goes on; larger pieces are written from the caller's buffer and
 * waited for (copying them would cost more than the wait saves).
 */
const SMALL_DATA = 256 * 1024;
/** Flush the store once this many blocks are dirty (bounds memory). */
const MAX_DIRTY_BLOCKS = 4096;
/**
 * Largest pending run of small file data (one device write when full). Two such buffers are used
 * in turn: small, because first-touching fresh memory is what costs most here.
 */
const PENDING_BYTES = 1 << 20;

export class BlockStore {
  private readonly cache = new Map<number, Uint8Array>();
  private readonly dirty = new Set<number>();
  /** Pending small file data: blocks [pendStart, pendStart + pendBlocks) held in `pend`. */
  private pend = new Uint8Array(0);
  private spare = new Uint8Array(0);
  private pendStart = 0;
  private pendBlocks = 0;
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
    if (this.inflightOverlaps(block, 1)) await this.settleInflight();
    const b = await this.device.read(block * this.blockSize, this.blockSize);
    const copy = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    if (this.cache.size >= this.maxClean + this.dirty.size) this.evictClean();
    this.cache.set(block, copy);
    return copy;
  }

  /** Read the uncached ones among `blocks` concurrently (distinct blocks: no two reads race). */
  async prefetch(blocks: readonly number[]): Promise<void> {
    const todo = [...new Set(blocks)].filter((b) => !this.cache.has(b));
    await Promise.all(todo.map((b) => this.get(b)));
  }

  /** The cached copy of a block, if any (the synchronous fast path of get). */
  peek(block: number): Uint8Array | undefined {
    return this.cache.get(block);
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

  /** A checksum is already deferred for this block (set again only if it changes). */
  hasDeferredChecksum(block: number): boolean {
    return this.checksums.has(block);
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
  }

  /** Forget `n` blocks from `start` (visits whichever is smaller: the range or the cache). */
  private forgetRange(start: number, n: number): void {
    if (n <= 8 || n <= this.cache.size) {
      for (let k = 0; k < n; k++) if (this.cache.has(start + k)) this.forget(start + k);
      return;
    }
    const end = start + n;
    for (const b of this.cache.keys()) if (b >= start && b < end) this.forget(b);
    for (const b of this.checksums.keys()) if (b >= start && b < end) this.forget(b);
  }

  /** Before reading file data from the device: wait for a pending run being written over it. */
  async beforeDataRead(block: number): Promise<void> {
    if (this.inflightOverlaps(block, 1)) await this.settleInflight();
  }

  /** A copy of a block of pending file data, or undefined when the block is not pending. */
  pendingBlock(block: number): Uint8Array | undefined {
    if (block < this.pendStart || block >= this.pendStart + this.pendBlocks) return undefined;
    const off = (block - this.pendStart) * this.blockSize;
    return this.pend.slice(off, off + this.blockSize);
  }

  /**
   * Start writing the pending run of small file data; the editor goes on with the next files
   * meanwhile (write-behind, one run in flight). What follows waits for it where order matters:
   * the next run, a direct write or read overlapping it, and flush.
   */
  private async writePending(): Promise<void> {
    if (this.pendBlocks === 0) return;
    await this.settleInflight();
    const buf = this.pend.subarray(0, this.pendBlocks * this.blockSize);
    const at = this.pendStart * this.blockSize;
    // What comes while this buffer is being written goes to the spare one.
    const full = this.pend;
    this.pend = this.spare;
    this.spare = new Uint8Array(0);
    this.inflightStart = this.pendStart;
    this.inflightBlocks = this.pendBlocks;
    this.pendBlocks = 0;
    this.counters.writes++;
    this.counters.bytesWritten += buf.length;
    this.inflight = this.device.write(at, buf).then(
      () => {
        // Pending buffers are zero past their data (the padding of a last partial block is free).
        buf.fill(0);
        this.spare = full;
      },
      (e: unknown) => {
        this.inflightError = e;
      },
    );
  }

  private inflight: Promise<void> | undefined;
  private inflightError: unknown;
  private inflightStart = 0;
  private inflightBlocks = 0;

  /** Wait for the pending run being written (and report its failure). */
  async settleInflight(): Promise<void> {
    const p = this.inflight;
    if (p) {
      await p;
      if (this.inflight === p) {
        this.inflight = undefined;
        this.inflightBlocks = 0;
      }
    }
    const e = this.inflightError;
    if (e !== undefined) {
      this.inflightError = undefined;
      throw e;
    }
  }

  private inflightOverlaps(block: number, n: number): boolean {
    return (
      this.inflight !== undefined &&
      block < this.inflightStart + this.inflightBlocks &&
      block + n > this.inflightStart
    );
  }

  /** Dirty blocks, pending file data included. */
  get dirtyCount(): number {
    return this.dirty.size + this.pendBlocks;
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
    // Data first: a block may have held file data before it was reused as metadata.
    await this.writePending();
    await this.settleInflight();
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
    this.dirty.clear();
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
  }

  /**
   * writeData without an await, when the small piece extends the pending run (the common case of
   * many small files allocated one after the other). False, and nothing done, otherwise.
   */
  writeDataNow(block: number, data: Uint8Array): boolean {
    const bs = this.blockSize;
    const n = Math.ceil(data.length / bs);
    if (n === 0 || data.length > SMALL_DATA || this.dirty.size > MAX_DIRTY_BLOCKS) return false;
    if (this.pendBlocks === 0 || block !== this.pendStart + this.pendBlocks) return false;
    if ((this.pendBlocks + n) * bs > PENDING_BYTES) return false;
    this.forgetRange(block, n);
    // Past the pending data the buffer is zero already (the last block's padding is free).
    this.pend.set(data, this.pendBlocks * bs);
    this.pendBlocks += n;
    return true;
  }

  /**
   * Write file data (whole blocks from `block`; the last one zero-padded). Small pieces join the
   * pending run when they extend it (or fall inside it), so that many small files allocated next
   * to each other reach the device in a few large writes; large ones go straight to the device
   * from the caller's buffer.
   */
  async writeData(block: number, data: Uint8Array): Promise<void> {
    const bs = this.blockSize;
    const n = Math.ceil(data.length / bs);
    if (n === 0) return;
    this.forgetRange(block, n);
    const pendEnd = this.pendStart + this.pendBlocks;
    const overlaps = this.pendBlocks > 0 && block < pendEnd && block + n > this.pendStart;
    if (data.length <= SMALL_DATA) {
      const inside = overlaps && block >= this.pendStart && block + n <= pendEnd;
      const extends_ =
        this.pendBlocks > 0 && block === pendEnd && (this.pendBlocks + n) * bs <= PENDING_BYTES;
      if (!inside && !extends_) {
        await this.writePending();
        this.pendStart = block;
      }
      if (this.pend.length === 0) this.pend = new Uint8Array(PENDING_BYTES);
      const off = (block - this.pendStart) * bs;
      this.pend.set(data, off);
      // Past the pending data the buffer is zero already; inside it the old bytes are cleared.
      if (inside) this.pend.fill(0, off + data.length, off + n * bs);
      this.pendBlocks = Math.max(this.pendBlocks, block - this.pendStart + n);
      if (this.dirty.size > MAX_DIRTY_BLOCKS) await this.flush();
      return;
    }
    // Older pending data for these blocks must not land after the new data.
    if (overlaps) await this.writePending();
    if (this.inflightOverlaps(block, n)) await this.settleInflight();
    await this.device.write(block * bs, data);
    this.counters.writes++;
    this.counters.bytesWritten += data.length;
  }
}
