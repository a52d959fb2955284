// Test-only helpers shared by every package: wrappers around the real tools (oracles) and access
// to the committed fixtures. Oracle tests skip with a reason when a tool is missing, or fail
// under IMGPATCH_ORACLES=required.

export type { BuildInputs } from "./built.js";
export { BUILT_DIR, buildKey, built, builtCopy, copySparse } from "./built.js";
export type { DebugfsBatchRequest } from "./debugfs-batch.js";
export { DebugfsBatch } from "./debugfs-batch.js";
export type {
  DebugfsDirEntry,
  DebugfsOptions,
  DebugfsRawResult,
  DebugfsStat,
  E2fsckResult,
  FileType,
  FsTarget,
  Timestamp,
} from "./e2fs.js";
export {
  catToSize,
  debugfs,
  debugfsBlocks,
  debugfsCat,
  debugfsLs,
  debugfsQuote,
  debugfsRaw,
  debugfsRdump,
  debugfsStat,
  debugfsXattrs,
  dumpe2fs,
  e2fsck,
  fileTypeOfMode,
  isSlowSymlink,
  parseDebugfsLs,
  parseDebugfsStat,
  parseEaListNames,
} from "./e2fs.js";
export type {
  FixtureIndex,
  FixtureInfo,
  FixturePartition,
  FixtureQcow2,
  Manifest,
  ManifestEntry,
} from "./fixtures.js";
export {
  FIXTURES_DIR,
  FIXTURES_OUT,
  FIXTURES_WORK,
  fixture,
  fixtureCopy,
  fixtureFile,
  fixtureFs,
  fixtureInfo,
  fixtureManifest,
  fixtureNames,
  fixturesIndex,
} from "./fixtures.js";
export type { Json, QemuImgCheckResult, QemuImgCompareOptions, QemuImgCompareResult } from "./qemu.js";
export { qemuImg, qemuImgCheck, qemuImgCompare, qemuImgInfo, qemuIo } from "./qemu.js";
export type { RpmFileEntry } from "./rpm.js";
export { rpm2cpio, rpmDump, rpmQuery } from "./rpm.js";
export { tempDir } from "./temp.js";
export type { RunOptions, RunResult, ToolCheck } from "./tools.js";
export {
  describeWithTools,
  findTool,
  fullSuite,
  OracleError,
  oraclesRequired,
  oracleTools,
  runTool,
  runToolOk,
  sweepPoints,
  ToolMissingError,
} from "./tools.js";
export type { MkfsXfsOptions, ProtoNode, XfsRepairResult } from "./xfs.js";
export {
  describeAsRoot,
  isRoot,
  mkfsXfs,
  protofileText,
  withLoopMount,
  xfsDb,
  xfsRepairCheck,
} from "./xfs.js";
