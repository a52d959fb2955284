/**
 * A read-only view of a device with the sectors that in-memory log recovery produced laid over
 * it (log-replay.ts): what the kernel would see after replaying the log, without writing it.
 */

import { type BlockDevice, type DeviceExtent, ReadOnlyError } from "@imgpatch/disk";

const BB = 512;

export class RecoveredDevice implements BlockDevice {
  readonly readOnly = true;
  constructor(
    readonly inner: BlockDevice,
    /** Replayed sectors by 512-byte sector number. */
    readonly sectors: ReadonlyMap<number, Uint8Array>,
  ) {}

  get name(): string {
    return this.inner.name;
  }
  get size(): number {
    return this.inner.size;
  }
  get sectorSize(): number {
    return this.inner.sectorSize;
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    await this.inner.readInto(offset, target);
    this.overlay(offset, target);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const b = await this.inner.read(offset, length);
    this.overlay(offset, b);
    return b;
  }

  private overlay(offset: number, b: Uint8Array): void {
    if (this.sectors.size === 0 || b.length === 0) return;
    const first = Math.floor(offset / BB);
    const last = Math.floor((offset + b.length - 1) / BB);
    // Few replayed sectors: walk them when the read spans more sectors than they are.
    if (last - first + 1 > this.sectors.size) {
      for (const [s, data] of this.sectors) if (s >= first && s <= last) this.place(s, data, offset, b);
      return;
    }
    for (let s = first; s <= last; s++) {
      const data = this.sectors.get(s);
      if (data) this.place(s, data, offset, b);
    }
  }

  private place(s: number, data: Uint8Array, offset: number, b: Uint8Array): void {
    const start = Math.max(s * BB, offset);
    const end = Math.min((s + 1) * BB, offset + b.length);
    b.set(data.subarray(start - s * BB, end - s * BB), start - offset);
  }

  private refuse(): never {
    throw new ReadOnlyError("this view replays the XFS log in memory and cannot be written", {
      file: this.inner.name,
    });
  }
  async write(_offset: number, _data: Uint8Array): Promise<void> {
    this.refuse();
  }
  async writeZeroes(_offset: number, _length: number): Promise<void> {
    this.refuse();
  }
  async discard(_offset: number, _length: number): Promise<void> {
    this.refuse();
  }
  mapExtents(offset: number, length: number): Promise<DeviceExtent[]> {
    return this.inner.mapExtents(offset, length);
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {
    await this.inner.close();
  }
}
