import type { BlockDevice, DeviceExtent } from "./block-device.js";
import { WrappedDevice } from "./wrapped-device.js";

export interface IoCounts {
  /** readInto/read calls that reached the inner device. */
  reads: number;
  bytesRead: number;
  writes: number;
  bytesWritten: number;
  /** writeZeroes calls and the bytes they covered. */
  zeroWrites: number;
  bytesZeroed: number;
  discards: number;
  bytesDiscarded: number;
  flushes: number;
  mapExtents: number;
}

export interface IoRecord {
  op: "read" | "write" | "writeZeroes" | "discard" | "flush" | "mapExtents";
  offset: number;
  length: number;
}

const zeroCounts = (): IoCounts => ({
  reads: 0,
  bytesRead: 0,
  writes: 0,
  bytesWritten: 0,
  zeroWrites: 0,
  bytesZeroed: 0,
  discards: 0,
  bytesDiscarded: 0,
  flushes: 0,
  mapExtents: 0,
});

/**
 * A transparent wrapper that counts every operation (and optionally logs it), so tests and
 * benchmarks can prove that an edit costs I/O proportional to the change, not to the image.
 * Only successful operations are counted. Closing it closes the inner device.
 */
export class CountingDevice extends WrappedDevice implements BlockDevice {
  private c: IoCounts = zeroCounts();
  /** Every operation in order, when constructed with `{ log: true }`. */
  readonly log: IoRecord[] = [];
  private readonly logging: boolean;

  constructor(inner: BlockDevice, options: { log?: boolean } = {}) {
    super(inner);
    this.logging = options.log ?? false;
  }

  /** A snapshot of the counters. */
  get counts(): IoCounts {
    return { ...this.c };
  }

  /** Zero the counters and clear the log. */
  reset(): void {
    this.c = zeroCounts();
    this.log.length = 0;
  }

  private record(op: IoRecord["op"], offset: number, length: number): void {
    if (this.logging) this.log.push({ op, offset, length });
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    await this.inner.readInto(offset, target);
    this.c.reads++;
    this.c.bytesRead += target.length;
    this.record("read", offset, target.length);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const data = await this.inner.read(offset, length);
    this.c.reads++;
    this.c.bytesRead += length;
    this.record("read", offset, length);
    return data;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.inner.write(offset, data);
    this.c.writes++;
    this.c.bytesWritten += data.length;
    this.record("write", offset, data.length);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    await this.inner.writeZeroes(offset, length);
    this.c.zeroWrites++;
    this.c.bytesZeroed += length;
    this.record("writeZeroes", offset, length);
  }

  async discard(offset: number, length: number): Promise<void> {
    await this.inner.discard(offset, length);
    this.c.discards++;
    this.c.bytesDiscarded += length;
    this.record("discard", offset, length);
  }

  async mapExtents(offset: number, length: number): Promise<DeviceExtent[]> {
    const ext = await this.inner.mapExtents(offset, length);
    this.c.mapExtents++;
    this.record("mapExtents", offset, length);
    return ext;
  }

  async flush(): Promise<void> {
    await this.inner.flush();
    this.c.flushes++;
    this.record("flush", 0, 0);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
