/**
 * Metadata buffers and the write transaction of the space engine.
 *
 * A `BufCache` hands out `MetaBuf`s (one per metadata block or sector, keyed by byte offset on the
 * device). Code that changes a buffer calls `dirty(buf, layout)`; `commit()` then stamps every
 * dirty v5 buffer with the LSN and its CRC32C and writes them back in ascending offset order.
 * Clean buffers are kept in an LRU bounded by `maxCleanBytes`; dirty ones stay until the commit
 * (callers commit after each operation, so that set is small). Freed blocks are `forget`-ten so a
 * stale copy never overwrites the block's new owner.
 *
 * CRC convention (xfs_cksum.h): crc32c seeded with ~0 over the whole buffer with the CRC field
 * taken as zero, stored inverted and little-endian.
 */
import { type BlockDevice, crc32c, crc32cZeros } from "@imgpatch/disk";
import { le32, setBe64big, setLe32 } from "./bytes.js";
import { XfsChecksumError, XfsFormatError } from "./errors.js";

/** Where a buffer keeps its v5 self-describing fields (byte offsets inside the buffer). */
export interface BufLayout {
  /** Offset of the little-endian CRC32C field, or undefined for buffers without one (v4). */
  crcOffset?: number;
  /** Offset of the big-endian 64-bit LSN field stamped at commit, if any. */
  lsnOffset?: number;
}

export class MetaBuf {
  dirty = false;
  /** Contents verified (or created) by this process: the CRC on disk no longer needs checking. */
  checked = false;
  /** Never evicted (long-lived holders such as the AG headers). */
  pinned = false;
  layout: BufLayout = {};
  constructor(
    /** Byte offset on the device. */
    readonly offset: number,
    readonly data: Uint8Array,
  ) {}
  get length(): number {
    return this.data.length;
  }
}

/** The XFS CRC32C of `data` with the 4-byte field at `crcOffset` taken as zero. */
export function xfsCrc(data: Uint8Array, crcOffset: number): number {
  let c = crc32c(0xffffffff, data, 0, crcOffset);
  c = crc32cZeros(c, 4);
  c = crc32c(c, data, crcOffset + 4, data.length);
  return ~c >>> 0;
}

/** Store the CRC of `data` in its CRC field. */
export function stampCrc(data: Uint8Array, crcOffset: number): void {
  setLe32(data, crcOffset, xfsCrc(data, crcOffset));
}

/** Throw XfsChecksumError unless the stored CRC matches. */
export function verifyCrc(
  data: Uint8Array,
  crcOffset: number,
  where: { structure: string; file?: string; offset?: number; agno?: number; block?: number },
): void {
  const stored = le32(data, crcOffset);
  const actual = xfsCrc(data, crcOffset);
  if (stored !== actual) throw new XfsChecksumError("CRC mismatch", stored, actual, where);
}

export interface BufCacheOptions {
  /** v5 filesystem: stamp LSN and CRC on commit. */
  crc: boolean;
  /** LSN stamped into dirty v5 buffers (cycle << 32 | block); must not be ahead of the log head. */
  lsn?: bigint;
  /** Bound on the bytes of clean buffers kept (default 16 MiB). */
  maxCleanBytes?: number;
}

export class BufCache {
  private readonly bufs = new Map<number, MetaBuf>();
  private cleanBytes = 0;
  private readonly maxClean: number;
  readonly crc: boolean;
  lsn: bigint;
  /** Device reads and writes done (tests and benchmarks look at these). */
  reads = 0;
  writes = 0;

  constructor(
    readonly dev: BlockDevice,
    opts: BufCacheOptions,
  ) {
    this.crc = opts.crc;
    this.lsn = opts.lsn ?? 0n;
    this.maxClean = opts.maxCleanBytes ?? 16 * 1024 * 1024;
  }

  private checkRange(offset: number, length: number, structure: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length <= 0 || offset + length > this.dev.size) {
      throw new XfsFormatError(`${structure} at byte ${offset} (+${length}) lies outside the device`, {
        file: this.dev.name,
        offset,
        structure,
      });
    }
  }

  private lookup(offset: number, length: number, structure: string): MetaBuf | undefined {
    const b = this.bufs.get(offset);
    if (b === undefined) return undefined;
    if (b.length !== length) {
      throw new XfsFormatError(`${structure} at byte ${offset} overlaps a ${b.length}-byte buffer`, {
        file: this.dev.name,
        offset,
        structure,
      });
    }
    // LRU: move to the back.
    this.bufs.delete(offset);
    this.bufs.set(offset, b);
    return b;
  }

  /** The buffer at [offset, offset+length), read from the device unless cached. */
  async read(offset: number, length: number, structure = "metadata"): Promise<MetaBuf> {
    this.checkRange(offset, length, structure);
    const hit = this.lookup(offset, length, structure);
    if (hit) return hit;
    const data = new Uint8Array(length);
    await this.dev.readInto(offset, data);
    this.reads++;
    // Another read of the same block may have finished while this one waited.
    const raced = this.lookup(offset, length, structure);
    if (raced) return raced;
    const b = new MetaBuf(offset, data);
    this.bufs.set(offset, b);
    this.cleanBytes += length;
    this.evict();
    return b;
  }

  /** A zero-filled buffer for a freshly allocated block (not read: its old content is garbage). */
  fresh(offset: number, length: number, structure = "metadata"): MetaBuf {
    this.checkRange(offset, length, structure);
    const old = this.bufs.get(offset);
    if (old) {
      if (!old.dirty) this.cleanBytes -= old.length;
      this.bufs.delete(offset);
    }
    const b = new MetaBuf(offset, new Uint8Array(length));
    b.checked = true;
    this.bufs.set(offset, b);
    this.cleanBytes += length;
    return b;
  }

  /** Mark a buffer changed; `layout` says where its CRC and LSN live (v5). */
  dirty(b: MetaBuf, layout: BufLayout = b.layout): void {
    b.layout = layout;
    const cached = this.bufs.get(b.offset);
    if (cached !== b) {
      // Evicted while its holder kept it: take it back (a clean copy read since is older).
      if (cached?.dirty) throw new Error(`two changed buffers for byte ${b.offset}`);
      if (cached) this.cleanBytes -= cached.length;
      this.bufs.set(b.offset, b);
      b.dirty = true;
      return;
    }
    if (!b.dirty) {
      b.dirty = true;
      this.cleanBytes -= b.length;
    }
  }

  /** Keep a buffer cached for good (AG headers and the superblock, held by their owners). */
  pin(b: MetaBuf): void {
    b.pinned = true;
  }

  /** Drop a buffer (its block was freed): pending changes are discarded. */
  forget(offset: number): void {
    const b = this.bufs.get(offset);
    if (!b) return;
    if (!b.dirty) this.cleanBytes -= b.length;
    this.bufs.delete(offset);
  }

  /** Number of buffers waiting for `commit`. */
  get dirtyCount(): number {
    let n = 0;
    for (const b of this.bufs.values()) if (b.dirty) n++;
    return n;
  }

  /** Stamp LSN and CRC on every dirty buffer and write them in offset order. */
  async commit(): Promise<void> {
    const dirty = [...this.bufs.values()].filter((b) => b.dirty).sort((a, b) => a.offset - b.offset);
    for (const b of dirty) {
      if (this.crc) {
        if (b.layout.lsnOffset !== undefined) setBe64big(b.data, b.layout.lsnOffset, this.lsn);
        if (b.layout.crcOffset !== undefined) stampCrc(b.data, b.layout.crcOffset);
      }
    }
    for (const b of dirty) {
      await this.dev.write(b.offset, b.data);
      this.writes++;
      b.dirty = false;
      this.cleanBytes += b.length;
    }
    this.evict();
  }

  private evict(): void {
    if (this.cleanBytes <= this.maxClean) return;
    for (const [off, b] of this.bufs) {
      if (this.cleanBytes <= this.maxClean) break;
      if (b.dirty || b.pinned) continue;
      this.bufs.delete(off);
      this.cleanBytes -= b.length;
    }
  }
}
