import type { BlockDevice } from "./block-device.js";

/**
 * Base of devices that interpose on another one (counting, fault injection): the identity of the
 * device — name, size, read-only flag, sector size — is always the inner device's.
 */
export abstract class WrappedDevice {
  constructor(readonly inner: BlockDevice) {}

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
}
