/**
 * The block-device contract every layer speaks: raw files, partitions (views), qcow2 images and
 * in-memory buffers all implement it, so the filesystem code never knows what it sits on.
 *
 * Offsets and lengths are byte counts held in JS numbers (exact up to 2^53 bytes = 8 PiB).
 * Calls are async and meant for large, coalesced I/O: callers read whole blocks/clusters/runs,
 * never single bytes.
 */
export interface BlockDevice {
  /** Human-readable name (usually a path) used in error messages. */
  readonly name: string;
  /** Size in bytes. Fixed for the life of the handle. */
  readonly size: number;
  /** True when writes are refused with ReadOnlyError. */
  readonly readOnly: boolean;
  /** Logical sector size in bytes (512 unless the device says otherwise). */
  readonly sectorSize: number;

  /** Fill `target` with the bytes at [offset, offset + target.length). Throws OutOfRangeError past the end. */
  readInto(offset: number, target: Uint8Array): Promise<void>;
  /** Convenience: read `length` bytes at `offset` into a new buffer. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Write `data` at `offset`. Throws ReadOnlyError on a read-only device, OutOfRangeError past the end. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /**
   * Make [offset, offset + length) read as zeros. Formats that can represent zeros without
   * storing them (qcow2 zero clusters, sparse files) do so.
   */
  writeZeroes(offset: number, length: number): Promise<void>;
  /** Hint that the range's contents are no longer needed; afterwards it reads as zeros. */
  discard(offset: number, length: number): Promise<void>;
  /**
   * Describe which parts of [offset, offset + length) hold data, read as zeros, or are not
   * allocated in this layer (so fall through to a backing image). Devices that cannot tell
   * report a single "data" extent. Extents are sorted, contiguous and cover the range exactly.
   */
  mapExtents(offset: number, length: number): Promise<DeviceExtent[]>;
  /** Push buffered writes and metadata to the underlying storage. */
  flush(): Promise<void>;
  /** Flush and release the handle. Further calls fail. */
  close(): Promise<void>;
}

export type ExtentKind = "data" | "zero" | "unallocated";

export interface DeviceExtent {
  offset: number;
  length: number;
  kind: ExtentKind;
}
