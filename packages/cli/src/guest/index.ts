export { collectGuestData } from "./data.js";
export {
  addFirstbootScript,
  FIRSTBOOT,
  type FirstbootInstallResult,
  type FirstbootUnitOptions,
  firstbootCommandScript,
  firstbootRunnerScript,
  firstbootUnitText,
  installFirstboot,
} from "./firstboot.js";
export { ensureDir, lstatOrNull, readTextOrNull, statOrNull } from "./fs-util.js";
export {
  type GuestData,
  type GuestErrorCode,
  type GuestFileType,
  type GuestFs,
  GuestFsError,
  type GuestMkdirOptions,
  type GuestNodeType,
  type GuestOwnerOptions,
  type GuestStats,
  type GuestWriteOptions,
  isGuestError,
} from "./guest-fs.js";
export { HostDirGuestFs, type HostDirGuestFsOptions } from "./host-dir-fs.js";
export {
  type GuestGroup,
  GuestIdentity,
  GuestIdentityError,
  type GuestUser,
  parseGroup,
  parsePasswd,
} from "./identity.js";
export { MemoryGuestFs, type MemoryGuestFsOptions } from "./memory-fs.js";
export { guestBasename, guestDirname, guestJoin, normalizeGuestPath, resolveGuestPath } from "./paths.js";
export {
  FIRSTBOOT_STEPS_DIR,
  firstbootStepScript,
  injectTargetFromGuestFs,
  queueFirstbootPlan,
} from "./rpm-bridge.js";
export { SelinuxLabelingGuestFs, type SelinuxLabelStats, selinuxLabeler } from "./selinux-labeler.js";
export {
  detectUnitLayout,
  disableUnit,
  enableUnit,
  type InstallResult,
  maskUnit,
  parseUnitName,
  SYSTEM_CONFIG_DIR,
  type SymlinkChange,
  SystemdInstallError,
  type SystemdInstallOptions,
  UNIT_SEARCH_PATHS,
  type UnitLayout,
  type UnitName,
  unmaskUnit,
} from "./systemd-install.js";
export {
  parseUnitFile,
  renderUnitFile,
  type UnitEntry,
  type UnitFile,
  type UnitSection,
  unitList,
  unitValue,
  unitValues,
} from "./systemd-unit.js";
