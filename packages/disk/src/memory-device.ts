import { BaseDevice } from "./base-device.js";

/** A device held in memory: for tests, and for small scratch images. */
export class MemoryDevice extends BaseDevice {
  readonly readOnly: boolean;
  readonly size: number;
  readonly bytes: Uint8Array;

  constructor(
    sizeOrBytes: number | Uint8Array,
    options: { readOnly?: boolean; name?: string } = {},
    readonly name: string = options.name ?? "memory",
  ) {
    super();
    this.bytes = typeof sizeOrBytes === "number" ? new Uint8Array(sizeOrBytes) : sizeOrBytes;
    this.size = this.bytes.length;
    this.readOnly = options.readOnly ?? false;
  }

  protected async doRead(offset: number, target: Uint8Array): Promise<void> {
    target.set(this.bytes.subarray(offset, offset + target.length));
  }

  protected async doWrite(offset: number, data: Uint8Array): Promise<void> {
    this.bytes.set(data, offset);
  }

  protected override async doWriteZeroes(offset: number, length: number): Promise<void> {
    this.bytes.fill(0, offset, offset + length);
  }

  protected async doFlush(): Promise<void> {}
  protected async doClose(): Promise<void> {}
}
