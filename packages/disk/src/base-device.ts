import type { BlockDevice, DeviceExtent } from "./block-device.js";
import { OutOfRangeError, ReadOnlyError } from "./errors.js";

const ZERO_CHUNK = 1 << 20;

/**
 * Shared plumbing for BlockDevice implementations: range checks, read-only enforcement and the
 * generic forms of read/writeZeroes/discard/mapExtents. Subclasses implement the `do*` hooks,
 * which are only ever called with in-range arguments.
 */
export abstract class BaseDevice implements BlockDevice {
  abstract readonly name: string;
  abstract readonly size: number;
  abstract readonly readOnly: boolean;
  readonly sectorSize: number = 512;
  protected closed = false;

  protected abstract doRead(offset: number, target: Uint8Array): Promise<void>;
  protected abstract doWrite(offset: number, data: Uint8Array): Promise<void>;
  protected abstract doFlush(): Promise<void>;
  protected abstract doClose(): Promise<void>;

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    this.checkRange(offset, target.length, "read");
    if (target.length === 0) return;
    await this.doRead(offset, target);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.checkRange(offset, length, "read");
    const buf = new Uint8Array(length);
    if (length > 0) await this.doRead(offset, buf);
    return buf;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, data.length, "write");
    if (data.length === 0) return;
    await this.doWrite(offset, data);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length, "write");
    await this.doWriteZeroes(offset, length);
  }

  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length, "discard");
    await this.doDiscard(offset, length);
  }

  async mapExtents(offset: number, length: number): Promise<DeviceExtent[]> {
    this.checkRange(offset, length, "map");
    if (length === 0) return [];
    return this.doMapExtents(offset, length);
  }

  async flush(): Promise<void> {
    this.checkOpen();
    await this.doFlush();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.doFlush();
    this.closed = true;
    await this.doClose();
  }

  /** Default: write real zero bytes in bounded chunks. */
  protected async doWriteZeroes(offset: number, length: number): Promise<void> {
    const chunk = new Uint8Array(Math.min(length, ZERO_CHUNK));
    for (let done = 0; done < length; ) {
      const n = Math.min(chunk.length, length - done);
      await this.doWrite(offset + done, n === chunk.length ? chunk : chunk.subarray(0, n));
      done += n;
    }
  }

  /** Default: discard is writing zeros (the contract promises zeros afterwards). */
  protected async doDiscard(offset: number, length: number): Promise<void> {
    await this.doWriteZeroes(offset, length);
  }

  /** Default: everything is data. */
  protected async doMapExtents(offset: number, length: number): Promise<DeviceExtent[]> {
    return [{ offset, length, kind: "data" }];
  }

  protected checkOpen(): void {
    if (this.closed) throw new ReadOnlyError("device is closed", { file: this.name });
  }

  protected checkWritable(): void {
    this.checkOpen();
    if (this.readOnly) throw new ReadOnlyError("device is read-only", { file: this.name });
  }

  protected checkRange(offset: number, length: number, what: string): void {
    this.checkOpen();
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new OutOfRangeError(`invalid ${what} range (offset ${offset}, length ${length})`, {
        file: this.name,
      });
    }
    if (offset + length > this.size) {
      throw new OutOfRangeError(`${what} of ${length} bytes past the end of the device (size ${this.size})`, {
        file: this.name,
        offset,
      });
    }
  }
}
