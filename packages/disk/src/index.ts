export type { BlockDevice, DeviceExtent, ExtentKind } from "./block-device.js";
export { BaseDevice } from "./base-device.js";
export { FileDevice, type OpenFileOptions } from "./file-device.js";
export { MemoryDevice } from "./memory-device.js";
export { RangeDevice } from "./range-device.js";
export {
  ChecksumError,
  type ErrorLocation,
  FormatError,
  ImgpatchError,
  IoError,
  OutOfRangeError,
  ReadOnlyError,
  UnsupportedError,
} from "./errors.js";
