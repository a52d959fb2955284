export { Ext4GuestFs, type Ext4GuestFsOptions, ext4StatsToGuest } from "./ext4-guest-fs.js";
export { type FstabEntry, findVolume, parseFstab, volumeName } from "./fstab.js";
export { type GuestMount, MountedGuestFs } from "./mount-fs.js";
export {
  type CommitOptions,
  type EditedVolume,
  type Guest,
  type GuestMountInfo,
  GuestOpenError,
  type OpenGuestOptions,
  type OutputMode,
  openGuest,
} from "./open-guest.js";
export {
  type DiskFormat,
  formatFromName,
  type OpenedImage,
  type OpenImageOptions,
  openImage,
  UsageError,
} from "./open-image.js";
export { type OsRelease, parseOsRelease } from "./os-release.js";
export {
  type ImageSafety,
  inspectImageSafety,
  type SafetyLink,
  type SafetyOptions,
  safetyLines,
} from "./safety.js";
export { XfsGuestFs, type XfsGuestFsOptions, xfsStatsToGuest } from "./xfs-guest-fs.js";
