export * from "./customize/index.js";
export * from "./elements/index.js";
export * from "./guest/index.js";
export * from "./image/index.js";
export {
  checkRefused,
  DryRunGuestFs,
  FsUuidError,
  inspectForSysprep,
  listOperationsText,
  runSysprep,
  SYSPREP_OPERATIONS,
  type SysprepInspection,
  type SysprepOperation,
  type SysprepOptions,
  type SysprepResult,
  type SysprepSelection,
  SysprepUsageError,
  selectOperations,
  setExt4Uuid,
  setFilesystemUuids,
  setXfsUuid,
  userAccountLists,
} from "./sysprep/index.js";
