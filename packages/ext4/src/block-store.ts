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

export class BlockStore {
  private readonly cache = new Map<number, Uint8Array>();
  private readonly dirty = new Set<number>();
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
    const b = new Uint8Array(this.blockSize);
    this.cache.set(block, b);
    this.dirty.add(block);
    return b;
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
    this.cache.delete(block);
    this.dirty.delete(block);
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
    if (this.dirty.size === 0) return;
    const blocks = [...this.dirty].sort((a, b) => a - b);
    const maxRun = Math.max(1, (1 << 20) / this.blockSize);
    let i = 0;
    while (i < blocks.length) {
      let j = i + 1;
      while (j < blocks.length && blocks[j] === blocks[j - 1] + 1 && j - i < maxRun) j++;
      const n = j - i;
      let buf: Uint8Array;
      if (n === 1) buf = this.cache.get(blocks[i]) as Uint8Array;
      else {
        buf = new Uint8Array(n * this.blockSize);
        for (let k = 0; k < n; k++) buf.set(this.cache.get(blocks[i + k]) as Uint8Array, k * this.blockSize);
      }
      await this.device.write(blocks[i] * this.blockSize, buf);
      this.counters.writes++;
      this.counters.bytesWritten += buf.length;
      i = j;
    }
    this.dirty.clear();
  }

  /** Write file data straight to the device (whole blocks from `block`). */
  async writeData(block: number, data: Uint8Array): Promise<void> {
    const n = Math.ceil(data.length / this.blockSize);
    for (let k = 0; k < n; k++) this.forget(block + k);
    await this.device.write(block * this.blockSize, data);
    this.counters.writes++;
    this.counters.bytesWritten += data.length;
  }
}
