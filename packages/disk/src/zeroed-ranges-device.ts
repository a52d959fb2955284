/**
 * A read-only view of a device in which given byte ranges read as zeros and are mapped as "zero"
 * extents — what a filesystem reports free. Copying through it (convert, sparsify) never reads
 * those ranges and leaves them unallocated in the output; everything else passes through as it is.
 */
import type { BlockDevice, DeviceExtent } from "./block-device.js";
import { ReadOnlyError } from "./errors.js";
import { WrappedDevice } from "./wrapped-device.js";

export interface ZeroRange {
  offset: number;
  length: number;
}

export class ZeroedRangesDevice extends WrappedDevice implements BlockDevice {
  private readonly starts: number[];
  private readonly ends: number[];

  /** `ranges` may be unsorted and overlapping; they are clipped to the device. */
  constructor(inner: BlockDevice, ranges: readonly ZeroRange[]) {
    super(inner);
    const sorted = ranges
      .map((r) => ({ start: Math.max(0, r.offset), end: Math.min(inner.size, r.offset + r.length) }))
      .filter((r) => r.end > r.start)
      .sort((a, b) => a.start - b.start);
    this.starts = [];
    this.ends = [];
    for (const r of sorted) {
      const n = this.ends.length;
      if (n > 0 && r.start <= this.ends[n - 1]!) this.ends[n - 1] = Math.max(this.ends[n - 1]!, r.end);
      else {
        this.starts.push(r.start);
        this.ends.push(r.end);
      }
    }
  }

  override get readOnly(): boolean {
    return true;
  }

  /** Bytes that read as zeros because of the ranges. */
  get zeroedBytes(): number {
    let n = 0;
    for (let i = 0; i < this.starts.length; i++) n += this.ends[i]! - this.starts[i]!;
    return n;
  }

  /** Index of the first range ending after `offset`. */
  private firstAfter(offset: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    await this.inner.readInto(offset, target);
    const end = offset + target.length;
    for (let i = this.firstAfter(offset); i < this.starts.length && this.starts[i]! < end; i++) {
      target.fill(0, Math.max(this.starts[i]!, offset) - offset, Math.min(this.ends[i]!, end) - offset);
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(offset, out);
    return out;
  }

  async mapExtents(offset: number, length: number): Promise<DeviceExtent[]> {
    const out: DeviceExtent[] = [];
    const add = (e: DeviceExtent) => {
      if (e.length <= 0) return;
      const last = out[out.length - 1];
      if (last && last.kind === e.kind && last.offset + last.length === e.offset) last.length += e.length;
      else out.push({ ...e });
    };
    for (const e of await this.inner.mapExtents(offset, length)) {
      if (e.kind !== "data") {
        add(e);
        continue;
      }
      let at = e.offset;
      const end = e.offset + e.length;
      for (let i = this.firstAfter(at); i < this.starts.length && this.starts[i]! < end; i++) {
        const zs = Math.max(this.starts[i]!, at);
        const ze = Math.min(this.ends[i]!, end);
        add({ offset: at, length: zs - at, kind: "data" });
        add({ offset: zs, length: ze - zs, kind: "zero" });
        at = ze;
      }
      add({ offset: at, length: end - at, kind: "data" });
    }
    return out;
  }

  private refuse(): never {
    throw new ReadOnlyError("a zeroed-ranges view is read-only", { file: this.name });
  }
  write(): Promise<void> {
    this.refuse();
  }
  writeZeroes(): Promise<void> {
    this.refuse();
  }
  discard(): Promise<void> {
    this.refuse();
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  /** Does not close the inner device (the view is borrowed over it). */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
