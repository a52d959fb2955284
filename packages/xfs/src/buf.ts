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
import { BaseDevice, type BlockDevice, crc32c, crc32cZeros } from "@imgpatch/disk";
import { le32, setBe64big, setLe32 } from "./bytes.js";
import { XfsChecksumError, XfsFormatError } from "./errors.js";
import { vouchSealedCopy } from "./sb.js";

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
  /** File contents waiting to be written: dropped from the cache once written. */
  transient = false;
  /** LSN and CRC stamped since the last `dirty()` (a view read need not stamp them again). */
  sealed = false;
  /** An inode block: changes to it are changes to the inodes in it (see ChangeListener). */
  inodes = false;
  /** When it last moved to the LRU's back (BufCache's clock). */
  used = 0;
  /**
   * The contents decoded by `decodedBy` (a btree's ops), kept while the bytes stay as they are:
   * cleared by `dirty()` and by a rollback, so a holder that changes the bytes must say so.
   */
  decoded?: object;
  decodedBy?: object;
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

/**
 * What a buffer looked like before the current transaction touched it: its bytes when it held
 * uncommitted changes, else nothing (the device has them; rolling back drops the buffer).
 */
interface PreImage {
  buf?: MetaBuf;
  data?: Uint8Array;
  dirty: boolean;
}

/**
 * Told about every change to what the cache shows of [offset, offset+length): `data` holds the
 * range's new bytes when they are known, else (reverted to the device's bytes, written around
 * the cache, or rolled back) it is undefined; `inodes` is false when the range is known to hold
 * no inode in use (a metadata or data block that is not an inode block). The editor's reader
 * keeps its caches by it.
 */
export type ChangeListener = (offset: number, length: number, data?: Uint8Array, inodes?: boolean) => void;

export class BufCache {
  private readonly bufs = new Map<number, MetaBuf>();
  /** See ChangeListener; `rollback` calls it with length 0 for "anything may have changed". */
  onChange?: ChangeListener;
  private readonly dirtySet = new Set<MetaBuf>();
  private dirtyTotal = 0;
  /** Counts moves to the LRU's back. */
  private clock = 0;
  private cleanBytes = 0;
  private readonly maxClean: number;
  private tx: Map<number, PreImage> | null = null;
  /** Pre-image arrays for reuse, by length (see copyOf). */
  private readonly spare = new Map<number, Uint8Array[]>();
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
    // LRU: move to the back — unless it is among the most recently used quarter already
    // (re-inserting into a Map on every hit costs more than the lookup itself).
    if (this.clock - b.used > this.bufs.size >> 2) {
      this.bufs.delete(offset);
      this.bufs.set(offset, b);
      b.used = ++this.clock;
    }
    return b;
  }

  // ---- transactions: undo of everything one editor call changed --------------------------------

  /** Start remembering pre-images, so that `rollback` can undo what follows. */
  begin(): void {
    this.tx = new Map();
  }
  /** Forget the pre-images: what was done stays (committed or not). */
  end(): void {
    if (this.tx) this.recycle(this.tx);
    this.tx = null;
  }
  get inTransaction(): boolean {
    return this.tx !== null;
  }
  private note(offset: number, b: MetaBuf | undefined): void {
    if (!this.tx || this.tx.has(offset)) return;
    // A clean buffer equals the device: undoing means dropping it (no copy). Only a buffer with
    // changes of earlier, not yet written calls needs its bytes kept.
    if (b?.dirty) this.tx.set(offset, { buf: b, data: this.copyOf(b.data), dirty: true });
    else this.tx.set(offset, { dirty: false });
  }
  /**
   * Pre-image copies come from arrays of earlier transactions: most calls copy the same dozen
   * dirty btree, directory and inode blocks, and fresh arrays each time cost more than the copy.
   */
  private copyOf(data: Uint8Array): Uint8Array {
    const c = this.spare.get(data.length)?.pop() ?? new Uint8Array(data.length);
    c.set(data);
    return c;
  }
  private recycle(tx: Map<number, PreImage>): void {
    for (const pre of tx.values()) {
      if (!pre.data) continue;
      let list = this.spare.get(pre.data.length);
      if (!list) {
        list = [];
        this.spare.set(pre.data.length, list);
      }
      if (list.length < 256) list.push(pre.data);
    }
  }
  /** Callers that change a buffer they hold across calls (AG headers) say so before changing it. */
  willChange(b: MetaBuf): void {
    this.note(b.offset, b);
  }
  /** Put every buffer the transaction touched back as it was, and end the transaction. */
  rollback(): void {
    const tx = this.tx;
    this.tx = null;
    if (!tx) return;
    for (const [offset, pre] of tx) {
      const cur = this.bufs.get(offset);
      if (cur) {
        this.dropDirty(cur);
        this.bufs.delete(offset);
      }
      if (cur) cur.decoded = undefined;
      if (pre.buf && pre.data) {
        pre.buf.decoded = undefined;
        pre.buf.data.set(pre.data);
        pre.buf.dirty = pre.dirty;
        pre.buf.sealed = false;
        this.bufs.set(offset, pre.buf);
        if (pre.dirty) this.addDirty(pre.buf);
      }
    }
    this.recycle(tx);
    this.cleanBytes = 0;
    for (const b of this.bufs.values()) if (!b.dirty) this.cleanBytes += b.length;
    this.onChange?.(0, 0);
  }

  // ---- buffers ---------------------------------------------------------------------------------

  /** The buffer at [offset, offset+length), read from the device unless cached. */
  async read(offset: number, length: number, structure = "metadata"): Promise<MetaBuf> {
    this.checkRange(offset, length, structure);
    const hit = this.lookup(offset, length, structure);
    if (hit) {
      this.note(offset, hit);
      return hit;
    }
    const data = new Uint8Array(length);
    await this.dev.readInto(offset, data);
    this.reads++;
    // Another read of the same block may have finished while this one waited.
    const raced = this.lookup(offset, length, structure);
    if (raced) {
      this.note(offset, raced);
      return raced;
    }
    const b = new MetaBuf(offset, data);
    this.bufs.set(offset, b);
    this.cleanBytes += length;
    this.note(offset, b);
    this.evict();
    return b;
  }

  /** A zero-filled buffer for a freshly allocated block (not read: its old content is garbage). */
  fresh(offset: number, length: number, structure = "metadata"): MetaBuf {
    this.checkRange(offset, length, structure);
    const old = this.bufs.get(offset);
    this.note(offset, old);
    if (old) {
      if (!old.dirty) this.cleanBytes -= old.length;
      this.dropDirty(old);
      this.bufs.delete(offset);
    }
    const b = new MetaBuf(offset, new Uint8Array(length));
    b.checked = true;
    this.bufs.set(offset, b);
    this.cleanBytes += length;
    this.onChange?.(offset, length, b.data, false);
    return b;
  }

  /**
   * Mark a buffer changed; `layout` says where its CRC and LSN live (v5). `start`/`length` narrow
   * the bytes that changed (an inode in its block), for the change listener.
   */
  dirty(b: MetaBuf, layout: BufLayout = b.layout, start = 0, length = b.length - start): void {
    b.layout = layout;
    b.sealed = false;
    b.decoded = undefined;
    this.onChange?.(b.offset + start, length, b.data.subarray(start, start + length), b.inodes);
    const cached = this.bufs.get(b.offset);
    if (cached !== b) {
      // Evicted while its holder kept it: take it back (a clean copy read since is older).
      if (cached?.dirty) throw new Error(`two changed buffers for byte ${b.offset}`);
      this.note(b.offset, cached);
      if (cached) this.cleanBytes -= cached.length;
      this.bufs.set(b.offset, b);
      b.dirty = true;
      this.addDirty(b);
      return;
    }
    if (!b.dirty) {
      b.dirty = true;
      this.cleanBytes -= b.length;
      this.addDirty(b);
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
    this.note(offset, b);
    if (!b.dirty) this.cleanBytes -= b.length;
    this.dropDirty(b);
    this.bufs.delete(offset);
    if (b.dirty) this.onChange?.(offset, b.length, undefined, true);
  }

  /** Write bytes straight to the device (large file contents), telling the listener. */
  async writeThrough(offset: number, data: Uint8Array): Promise<void> {
    this.checkRange(offset, data.length, "file data");
    await this.dev.write(offset, data);
    this.writes++;
    this.onChange?.(offset, data.length, undefined, true);
  }

  /** Stamp a changed v5 buffer's LSN and CRC now (commit does it too), so readers can verify it. */
  seal(b: MetaBuf): void {
    if (!this.crc || !b.dirty || b.sealed) return;
    if (b.layout.lsnOffset !== undefined) setBe64big(b.data, b.layout.lsnOffset, this.lsn);
    if (b.layout.crcOffset !== undefined) stampCrc(b.data, b.layout.crcOffset);
    b.sealed = true;
  }

  /** Drop every changed buffer inside [offset, offset+length) (freed file blocks). */
  forgetRange(offset: number, length: number): void {
    const end = offset + length;
    for (const b of [...this.dirtySet]) {
      if (b.offset >= offset && b.offset + b.length <= end) this.forget(b.offset);
    }
  }

  /** Copy the uncommitted changes overlapping [offset, offset+target.length) over `target`. */
  overlay(offset: number, target: Uint8Array): void {
    const end = offset + target.length;
    for (const b of this.dirtySet) {
      const s = Math.max(offset, b.offset);
      const e = Math.min(end, b.offset + b.length);
      if (s < e) {
        this.seal(b);
        target.set(b.data.subarray(s - b.offset, e - b.offset), s - offset);
      }
    }
  }

  /**
   * A cached buffer holding all of [offset, offset+length), if any (no device read). Buffers start
   * at multiples of their power-of-two size, so the candidates are the range's start rounded down
   * to 512 B ... 64 KiB.
   */
  peek(offset: number, length: number): { buf: MetaBuf; at: number } | undefined {
    for (let size = 512; size <= 65536; size *= 2) {
      const start = offset - (offset % size);
      const b = this.bufs.get(start);
      if (b && b.offset + b.length >= offset + length) return { buf: b, at: offset - start };
    }
    return undefined;
  }

  /** Number of buffers waiting for `commit`. */
  get dirtyCount(): number {
    return this.dirtySet.size;
  }
  /** Bytes waiting for `commit`. */
  get dirtyBytes(): number {
    return this.dirtyTotal;
  }
  private addDirty(b: MetaBuf): void {
    if (this.dirtySet.has(b)) return;
    this.dirtySet.add(b);
    this.dirtyTotal += b.length;
  }
  private dropDirty(b: MetaBuf): void {
    if (this.dirtySet.delete(b)) this.dirtyTotal -= b.length;
  }

  /** Stamp LSN and CRC on every dirty buffer and write them in offset order. */
  async commit(): Promise<void> {
    const dirty = [...this.dirtySet].sort((a, b) => a.offset - b.offset);
    for (const b of dirty) {
      if (this.crc) {
        if (b.layout.lsnOffset !== undefined) setBe64big(b.data, b.layout.lsnOffset, this.lsn);
        if (b.layout.crcOffset !== undefined) stampCrc(b.data, b.layout.crcOffset);
      }
    }
    // Adjacent buffers go out as one write; the runs are written concurrently (each is a
    // distinct range, and the device has no ordering to keep without a journal).
    const runs: MetaBuf[][] = [];
    for (const b of dirty) {
      const last = runs[runs.length - 1];
      const prev = last?.[last.length - 1];
      if (prev && prev.offset + prev.length === b.offset) last.push(b);
      else runs.push([b]);
    }
    const writeRun = async (run: MetaBuf[]): Promise<void> => {
      if (run.length === 1) {
        await this.dev.write(run[0].offset, run[0].data);
      } else {
        const total = run.reduce((n, b) => n + b.length, 0);
        const joined = new Uint8Array(total);
        let at = 0;
        for (const b of run) {
          joined.set(b.data, at);
          at += b.length;
        }
        await this.dev.write(run[0].offset, joined);
      }
      this.writes++;
    };
    for (let i = 0; i < runs.length; i += 16) await Promise.all(runs.slice(i, i + 16).map(writeRun));
    for (const b of dirty) {
      b.dirty = false;
      if (b.transient) this.bufs.delete(b.offset);
      else this.cleanBytes += b.length;
    }
    this.dirtySet.clear();
    this.dirtyTotal = 0;
    this.evict();
  }

  private evict(): void {
    if (this.cleanBytes <= this.maxClean) return;
    for (const [off, b] of this.bufs) {
      if (this.cleanBytes <= this.maxClean) break;
      if (b.dirty || b.pinned) continue;
      // A buffer the open transaction may restore stays.
      if (this.tx?.has(off)) continue;
      this.bufs.delete(off);
      this.cleanBytes -= b.length;
    }
  }
}

/**
 * A read-only device that sees the device as the cache does: cached buffers (committed or not)
 * answer reads they cover, other reads go to the device with uncommitted changes laid over them.
 * The reader (XfsFs) runs on it, so it sees the editor's changes without a commit.
 */
export class CacheView extends BaseDevice {
  readonly readOnly = true;
  override readonly sectorSize: number;
  constructor(readonly cache: BufCache) {
    super();
    this.sectorSize = cache.dev.sectorSize;
  }
  get name(): string {
    return this.cache.dev.name;
  }
  get size(): number {
    return this.cache.dev.size;
  }
  protected async doRead(offset: number, target: Uint8Array): Promise<void> {
    const hit = this.cache.peek(offset, target.length);
    if (hit) {
      // A whole changed buffer is vouched for as it is (the reader's CRC checks accept the copy
      // without a CRC; stamping it on every read of a block changed per call cost a CRC each);
      // a part of one (an inode in its cluster) is stamped first, as its checks read the bytes.
      const whole = hit.at === 0 && target.length === hit.buf.length;
      if (!(whole && hit.buf.dirty)) this.cache.seal(hit.buf);
      target.set(hit.buf.data.subarray(hit.at, hit.at + target.length));
      if (hit.buf.dirty && whole) vouchSealedCopy(target);
      return;
    }
    await this.cache.dev.readInto(offset, target);
    this.cache.overlay(offset, target);
  }
  protected async doWrite(): Promise<void> {
    throw new Error("CacheView is read-only");
  }
  protected async doFlush(): Promise<void> {}
  protected async doClose(): Promise<void> {}
}
