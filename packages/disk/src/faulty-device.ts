import type { BlockDevice, DeviceExtent } from "./block-device.js";
import { IoError } from "./errors.js";
import { WrappedDevice } from "./wrapped-device.js";

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
  /**
   * Model a power loss instead of a killed process: writes are held back (but visible to reads
   * through this device) until flush(), and everything not yet flushed when the fault hits is
   * lost. This is what catches a missing flush between two writes that must be ordered.
   * Default false (every successful write reaches the inner device at once).
   */
  dropUnflushed?: boolean;
}

/** The error a FaultyDevice throws, so tests can tell the injected fault from a real bug. */
export class SimulatedFaultError extends IoError {}

interface Pending {
  offset: number;
  /** Bytes to write; null = zeros of `length`. */
  data: Uint8Array | null;
  length: number;
}

/**
 * Wraps a device and fails every modifying operation after the N-th, for crash-safety tests:
 * run an edit once with `failAfterWrites: Infinity` to learn how many writes it makes
 * (`writesSeen`), then for each n in 0..writesSeen run it again with `failAfterWrites: n` and
 * check that the image left on the inner device is still consistent. Reads always work.
 * Closing closes the inner device (what reached it before the fault stays, as after a crash).
 */
export class FaultyDevice extends WrappedDevice implements BlockDevice {
  /** Modifying operations attempted so far (including the failing ones). */
  writesSeen = 0;
  /** True once an operation has been refused. */
  faulted = false;
  private readonly failAfter: number;
  private readonly tornBytes: number;
  private readonly failFlush: boolean;
  private readonly dropUnflushed: boolean;
  private pending: Pending[] = [];

  constructor(inner: BlockDevice, options: FaultyDeviceOptions) {
    super(inner);
    if (!(options.failAfterWrites >= 0)) throw new RangeError("failAfterWrites must be ≥ 0");
    this.failAfter = options.failAfterWrites;
    this.tornBytes = Math.max(0, options.tornBytes ?? 0);
    this.failFlush = options.failFlushAfterFault ?? true;
    this.dropUnflushed = options.dropUnflushed ?? false;
  }

  /** Writes held back until the next flush (dropUnflushed mode). */
  get unflushedWrites(): number {
    return this.pending.length;
  }

  /** Count one modifying operation; true if it must fail. */
  private shouldFail(): boolean {
    this.writesSeen++;
    if (this.faulted || this.writesSeen > this.failAfter) {
      if (!this.faulted) this.pending = []; // power lost: the volatile cache is gone
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

  /** Whether a modification can be held back; invalid ones go to the inner device to fail there. */
  private holdable(offset: number, length: number): boolean {
    return (
      this.dropUnflushed &&
      !this.readOnly &&
      Number.isSafeInteger(offset) &&
      Number.isSafeInteger(length) &&
      offset >= 0 &&
      length >= 0 &&
      offset + length <= this.size
    );
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    await this.inner.readInto(offset, target);
    this.overlay(offset, target);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const data = await this.inner.read(offset, length);
    this.overlay(offset, data);
    return data;
  }

  /** Apply held-back writes to data just read from the inner device. */
  private overlay(offset: number, target: Uint8Array): void {
    const end = offset + target.length;
    for (const p of this.pending) {
      const s = Math.max(offset, p.offset);
      const e = Math.min(end, p.offset + p.length);
      if (s >= e) continue;
      if (p.data) target.set(p.data.subarray(s - p.offset, e - p.offset), s - offset);
      else target.fill(0, s - offset, e - offset);
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const firstFault = !this.faulted;
    if (this.shouldFail()) {
      if (firstFault && this.tornBytes > 0 && data.length > 0) {
        await this.inner.write(offset, data.subarray(0, Math.min(this.tornBytes, data.length)));
      }
      throw this.fault("write", offset);
    }
    if (this.holdable(offset, data.length)) {
      this.pending.push({ offset, data: data.slice(), length: data.length });
      return;
    }
    await this.inner.write(offset, data);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    if (this.shouldFail()) throw this.fault("writeZeroes", offset);
    if (this.holdable(offset, length)) {
      this.pending.push({ offset, data: null, length });
      return;
    }
    await this.inner.writeZeroes(offset, length);
  }

  async discard(offset: number, length: number): Promise<void> {
    if (this.shouldFail()) throw this.fault("discard", offset);
    if (this.holdable(offset, length)) {
      this.pending.push({ offset, data: null, length });
      return;
    }
    await this.inner.discard(offset, length);
  }

  async mapExtents(offset: number, length: number): Promise<DeviceExtent[]> {
    const ext = await this.inner.mapExtents(offset, length);
    if (this.pending.length === 0) return ext;
    // Held-back writes make their ranges data; report the whole range as data to stay truthful.
    return [{ offset, length, kind: "data" }];
  }

  async flush(): Promise<void> {
    if (this.faulted && this.failFlush) throw this.fault("flush", 0);
    await this.applyPending();
    await this.inner.flush();
  }

  async close(): Promise<void> {
    // An orderly close (no fault) loses nothing; after a fault the held-back writes are gone.
    if (!this.faulted) await this.applyPending();
    await this.inner.close();
  }

  private async applyPending(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) {
      if (p.data) await this.inner.write(p.offset, p.data);
      else await this.inner.writeZeroes(p.offset, p.length);
    }
  }
}
