export {
  type BackingRef,
  type BackingResolver,
  canonicalBackingPath,
  probeFormat,
  probeHostFormat,
  resolveBackingPath,
} from "./backing.js";
export { alignUp, getU64, setU64 } from "./bytes.js";
export { type CachedTable, TableCache } from "./cache.js";
export { type CheckQcow2Options, checkQcow2, type Qcow2CheckResult } from "./check.js";
export { ClusterMap, type L1Contents, loadL1 } from "./cluster-map.js";
export { DecompressError, decompressCluster, zstdFrameLength } from "./compressed.js";
export { type ConvertOptions, type ConvertStats, convertImage } from "./convert.js";
export { buildEmptyImage, type CreateQcow2Options, createOverlay, createQcow2 } from "./create.js";
export { type BackingInfo, Qcow2Device, type Qcow2DeviceParts } from "./device.js";
export { Qcow2BackingLoopError, Qcow2FormatError, Qcow2UnsupportedError } from "./errors.js";
export * from "./extensions.js";
export * from "./header.js";
export { DeviceHostFile, type HostFile, isHostFile, MemoryHostFile, NodeHostFile } from "./host-file.js";
export {
  combineBackingPath,
  type ImageInfo,
  type InfoOptions,
  imageInfo,
  type Qcow2FormatInfo,
  type QemuJson,
  qcow2Info,
  type SnapshotInfo,
  toQemuJson,
} from "./info.js";
export * from "./l2-entry.js";
export { type OpenQcow2Options, openBackingImage, openQcow2 } from "./open.js";
export {
  type CommitOptions,
  commitQcow2,
  type NewBacking,
  type RebaseStats,
  rebaseQcow2,
  setBackingFile,
} from "./rebase.js";
export { Refcounts } from "./refcount.js";
export { growQcow2 } from "./resize.js";
export {
  type ChainSafety,
  type InspectChainOptions,
  inspectQcow2Chain,
  type LinkReport,
  type Qcow2Links,
  readQcow2Links,
} from "./safety.js";
export { type Qcow2Snapshot, readSnapshotTable } from "./snapshots.js";
export { Qcow2StreamWriter, type StreamWriterOptions } from "./stream-writer.js";
