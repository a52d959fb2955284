export { BaseDevice } from "./base-device.js";
export type { BlockDevice, DeviceExtent, ExtentKind } from "./block-device.js";
export { CountingDevice, type IoCounts, type IoRecord } from "./counting-device.js";
export { crc32c, crc32cU32, crc32cZeros } from "./crc32c.js";
export {
  assertSupportedFilesystem,
  assertSupportedImageFormat,
  type DiskInspection,
  detectFilesystem,
  detectImageFormat,
  type FilesystemInfo,
  type FilesystemType,
  type ImageFormat,
  type ImageFormatInfo,
  inspectDisk,
  type SelectedVolume,
  type SelectVolumeOptions,
  selectVolume,
  type VolumeInspection,
} from "./detect.js";
export {
  ChecksumError,
  type ErrorLocation,
  FormatError,
  ImgpatchError,
  IoError,
  OutOfRangeError,
  PartitionNotFoundError,
  PartitionOverlapError,
  PartitionRangeError,
  ReadOnlyError,
  UnsafeImageError,
  type UnsafeLinkReason,
  UnsupportedError,
  UnsupportedFormatError,
} from "./errors.js";
export { FaultyDevice, type FaultyDeviceOptions, SimulatedFaultError } from "./faulty-device.js";
export { FileDevice, type OpenFileOptions } from "./file-device.js";
export { MAX_GPT_ENTRY_ARRAY_BYTES } from "./gpt.js";
export { formatGuid, formatUuid, parseGuid } from "./guid.js";
export { type HostDataRange, hostDataRanges, parseFilefrag } from "./host-extents.js";
export {
  type HostLink,
  type HostLinkPolicy,
  type HostLinkVerdict,
  hostLinkPolicy,
  inspectHostLink,
  isProtocolName,
  NEVER_FOLLOWED,
  type OpenedHostLink,
  openHostLink,
  resolveLinkPath,
} from "./host-policy.js";
export {
  type ImageFileReference,
  imageFileReferences,
  vmdkDescriptorReferences,
} from "./image-references.js";
export { MAX_LOGICAL_PARTITIONS } from "./mbr.js";
export { MemoryDevice } from "./memory-device.js";
export type {
  GptInfo,
  Partition,
  PartitionKind,
  PartitionTable,
  ProtectiveMbrInfo,
  ReadPartitionTableOptions,
} from "./partition.js";
export { type OpenPartitionOptions, openPartition, readPartitionTable } from "./partition-table.js";
export { GPT_TYPE_NAMES, gptTypeName, MBR_TYPE_NAMES, mbrTypeName } from "./partition-types.js";
export { RangeDevice } from "./range-device.js";
export { type HeldKind, type HeldSink, UNDO_HOLD_LIMIT, UndoWriteBuffer } from "./undo-buffer.js";
export {
  type ReadOriginal,
  type RollbackResult,
  readUndoHeader,
  rollbackUndo,
  UNDO_CHUNK,
  UndoDevice,
  type UndoHeader,
  UndoLog,
  UndoPendingError,
  undoPathFor,
} from "./undo-device.js";
export { ZeroedRangesDevice, type ZeroRange } from "./zeroed-ranges-device.js";
