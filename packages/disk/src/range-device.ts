import { BaseDevice } from "./base-device.js";
import type { BlockDevice, DeviceExtent } from "./block-device.js";
import { OutOfRangeError } from "./errors.js";

/**
 * A byte-range view of another device (a partition). Accesses are bounds-checked against the
 * view, so a filesystem inside a partition can never touch bytes outside it. Closing the view
 * does not close the parent.
 */
export class RangeDevice extends BaseDevice {
  readonly name: string;
  readonly readOnly: boolean;
  override readonly sectorSize: number;

  constructor(
    readonly parent: BlockDevice,
    readonly start: number,
    readonly size: number,
    options: { name?: string; readOnly?: boolean } = {},
  ) {
    super();
    this.name = options.name ?? `${parent.name}[${start}+${size}]`;
    this.readOnly = (options.readOnly ?? false) || parent.readOnly;
    this.sectorSize = parent.sectorSize;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || start < 0 || size < 0) {
      throw new OutOfRangeError(`invalid range ${start}+${size}`, { file: parent.name });
    }
    if (start + size > parent.size) {
      throw new OutOfRangeError(`range ${start}+${size} ends past the device (size ${parent.size})`, {
        file: parent.name,
        offset: start,
      });
    }
  }

  protected doRead(offset: number, target: Uint8Array): Promise<void> {
    return this.parent.readInto(this.start + offset, target);
  }

  protected doWrite(offset: number, data: Uint8Array): Promise<void> {
    return this.parent.write(this.start + offset, data);
  }

  protected override doWriteZeroes(offset: number, length: number): Promise<void> {
    return this.parent.writeZeroes(this.start + offset, length);
  }

  protected override doDiscard(offset: number, length: number): Promise<void> {
    return this.parent.discard(this.start + offset, length);
  }

  protected override async doMapExtents(offset: number, length: number): Promise<DeviceExtent[]> {
    const ext = await this.parent.mapExtents(this.start + offset, length);
    return ext.map((e) => ({ ...e, offset: e.offset - this.start }));
  }

  protected doFlush(): Promise<void> {
    return this.parent.flush();
  }

  protected async doClose(): Promise<void> {}
}
