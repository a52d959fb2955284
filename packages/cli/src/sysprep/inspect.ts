/**
 * What virt-sysprep's operations ask libguestfs inspection: the distribution name (libguestfs
 * spells it "centos", "rhel", "oraclelinux"...), the package manager and the package format. We
 * read the same facts from the guest's /etc/os-release (libguestfs does too when it exists).
 */
import type { OsRelease } from "../image/os-release.js";

export interface SysprepInspection {
  /** "linux" for every guest imgpatch opens (no Windows support). */
  type: "linux";
  /** libguestfs' inspect_get_distro name, or "unknown". */
  distro: string;
  /** Major version from VERSION_ID (0 when absent). */
  major: number;
  /** inspect_get_package_management: apt, dnf, yum, zypper, pacman, apk or unknown. */
  packageManagement: string;
  /** inspect_get_package_format: rpm, deb, pacman, apk or unknown. */
  packageFormat: string;
}

/** os-release ID → libguestfs' distro name (the ones whose name differs are mapped). */
const DISTRO_OF_ID: Record<string, string> = {
  ol: "oraclelinux",
  scientific: "scientificlinux",
  opensuse: "opensuse",
  "opensuse-leap": "opensuse",
  "opensuse-tumbleweed": "opensuse",
  sles: "sles",
  kali: "kalilinux",
  arch: "archlinux",
  rocky: "rocky",
  almalinux: "almalinux",
};

/** The Red Hat family as the net-* and pacct-log operations list it. */
export const RED_HAT_FAMILY = new Set([
  "fedora",
  "rhel",
  "centos",
  "scientificlinux",
  "oraclelinux",
  "redhat-based",
]);
export const DEBIAN_FAMILY = new Set(["debian", "ubuntu", "kalilinux"]);

export function inspectForSysprep(os: OsRelease): SysprepInspection {
  const id = (os.ID ?? "").toLowerCase();
  let distro = DISTRO_OF_ID[id] ?? (id === "" ? "unknown" : id);
  const like = (os.ID_LIKE ?? "").toLowerCase().split(/\s+/);
  if (!RED_HAT_FAMILY.has(distro) && !DEBIAN_FAMILY.has(distro) && DISTRO_OF_ID[id] === undefined) {
    if (like.includes("rhel") || like.includes("fedora")) distro = "redhat-based";
  }
  const major = Number.parseInt((os.VERSION_ID ?? "").split(".")[0] ?? "", 10) || 0;
  let packageManagement = "unknown";
  let packageFormat = "unknown";
  if (distro === "fedora") {
    packageFormat = "rpm";
    packageManagement = major >= 22 ? "dnf" : "yum";
  } else if (
    ["rhel", "centos", "scientificlinux", "oraclelinux", "redhat-based", "rocky", "almalinux"].includes(
      distro,
    )
  ) {
    packageFormat = "rpm";
    packageManagement = major >= 8 ? "dnf" : "yum";
  } else if (DEBIAN_FAMILY.has(distro) || distro === "linuxmint") {
    packageFormat = "deb";
    packageManagement = "apt";
  } else if (distro === "opensuse" || distro === "sles") {
    packageFormat = "rpm";
    packageManagement = "zypper";
  } else if (distro === "archlinux") {
    packageFormat = "pacman";
    packageManagement = "pacman";
  } else if (distro === "alpine") {
    packageFormat = "apk";
    packageManagement = "apk";
  }
  return { type: "linux", distro, major, packageManagement, packageFormat };
}
