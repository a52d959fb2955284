import type { BlockDevice, DeviceExtent } from "./block-device.js";
import { IoError } from "./errors.js";

export interface FaultyDeviceOptions {
  /**
   * How many modifying operations (write, writeZeroes, discard) succeed. The next one fails, and
   * so does every later one: the device behaves like a disk that died, or a process that was
   * killed, at that point. Use Infinity to only count (see `writesSeen`).
   */
  failAfterWrites: number;
  /**
   * Of the failing write(), this many leading bytes still reach the inner device, to model a
   * torn write. Default 0 (nothing of the failing write lands).
   */
  tornBytes?: number;
  /** Whether flush() fails once the fault has happened. Default true. */
  failFlushAfterFault?: boolean;
}

/** The error a FaultyDevice throws, so tests can tell the injected fault from a real bug. */
export class SimulatedFaultError extends IoError {
  constructor(message: string, where: { file?: string; offset?: number } = {}) {
    super(message, where);
  }
}

/**
 * Wraps a device and fails every modifying operation after the N-th, for crash-safety tests:
 * run an edit once through a FaultyDevice with `failAfterWrites: Infinity` to learn how many
 * writes it makes, then for each n in 0..writesSeen run it again with `failAfterWrites: n` and
 * check that the image on the inner device is still consistent. Reads always pass through.
 * Closing it closes the inner device (data written before the fault stays, as after a crash).
 */
export class FaultyDevice implements BlockDevice {
  /** Modifying operations attempted so far (including the failing ones). */
  writesSeen = 0;
  /** True once an operation has been refused. */
  faulted = false;
  private readonly failAfter: number;
  private readonly tornBytes: number;
  private readonly failFlush: boolean;

  constructor(
    readonly inner: BlockDevice,
    options: FaultyDeviceOptions,
  ) {
    if (!(options.failAfterWrites >= 0)) throw new RangeError("failAfterWrites must be ≥ 0");
    this.failAfter = options.failAfterWrites;
    this.tornBytes = Math.max(0, options.tornBytes ?? 0);
    this.failFlush = options.failFlushAfterFault ?? true;
  }

  get name(): string {
    return this.inner.name;
  }
  get size(): number {
    return this.inner.size;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get sectorSize(): number {
    return this.inner.sectorSize;
  }

  /** Count one modifying operation; true if it must fail. */
  private shouldFail(): boolean {
    this.writesSeen++;
    if (this.faulted || this.writesSeen > this.failAfter) {
      this.faulted = true;
      return true;
    }
    return false;
  }

  private fault(op: string, offset: number): SimulatedFaultError {
    return new SimulatedFaultError(
      `simulated failure of ${op} #${this.writesSeen} (after ${this.failAfter})`,
      {
        file: this.name,
        offset,
      },
    );
  }

  readInto(offset: number, target: Uint8Array): Promise<void> {
    return this.inner.readInto(offset, target);
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.inner.read(offset, length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const firstFault = !this.faulted;
    if (this.shouldFail()) {
      if (firstFault && this.tornBytes > 0 && data.length > 0) {
        await this.inner.write(offset, data.subarray(0, Math.min(this.tornBytes, data.length)));
      }
      throw this.fault("write", offset);
    }
    await this.inner.write(offset, data);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    if (this.shouldFail()) throw this.fault("writeZeroes", offset);
    await this.inner.writeZeroes(offset, length);
  }

  async discard(offset: number, length: number): Promise<void> {
    if (this.shouldFail()) throw this.fault("discard", offset);
    await this.inner.discard(offset, length);
  }

  mapExtents(offset: number, length: number): Promise<DeviceExtent[]> {
    return this.inner.mapExtents(offset, length);
  }

  async flush(): Promise<void> {
    if (this.faulted && this.failFlush) throw this.fault("flush", 0);
    await this.inner.flush();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
