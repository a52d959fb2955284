/**
 * virt-customize's `--install`, `--update` and `--uninstall` run the guest's package manager inside
 * its VM. imgpatch has no VM: `--install` resolves and unpacks at build time when the repositories
 * are reachable (install.ts); `--update`, `--uninstall` and an `--install` whose repositories
 * cannot be reached run at the guest's first boot instead, through the script made here — the
 * guest's own dnf, yum, apt-get or zypper, in that order of preference, as virt-customize picks it.
 * IMGPATCH_PKG_CMD (set in the first-boot unit's environment) replaces the package manager, as for
 * elements (tests, or a site wrapper).
 */
import { shq } from "../elements/payload.js";

export type PackageAction = "install" | "uninstall" | "update";

/** Commands per package manager: `{}` is where the quoted package names go. */
const COMMANDS: Record<"dnf" | "yum" | "apt-get" | "zypper", Record<PackageAction, string>> = {
  dnf: { install: "dnf -y install {}", uninstall: "dnf -y remove {}", update: "dnf -y upgrade --refresh" },
  yum: { install: "yum -y install {}", uninstall: "yum -y remove {}", update: "yum -y update" },
  "apt-get": {
    install: "apt-get update && apt-get -y install {}",
    uninstall: "apt-get -y remove {}",
    update: "apt-get update && apt-get -y upgrade",
  },
  zypper: { install: "zypper -n install {}", uninstall: "zypper -n remove {}", update: "zypper -n update" },
};

/** The first-boot script for one package action (`packages` empty for update). */
export function packageFirstbootScript(action: PackageAction, packages: readonly string[]): string {
  const words = packages.map(shq).join(" ");
  const lines = [
    "#!/bin/sh",
    `# imgpatch customize --${action}: run at first boot (no VM at build time)`,
    "set -eu",
    "export DEBIAN_FRONTEND=noninteractive",
    'if [ -n "${IMGPATCH_PKG_CMD:-}" ]; then',
    `  exec $IMGPATCH_PKG_CMD ${action}${words ? ` ${words}` : ""}`,
    "fi",
  ];
  let first = true;
  for (const [pm, cmds] of Object.entries(COMMANDS)) {
    lines.push(`${first ? "if" : "elif"} command -v ${pm} >/dev/null 2>&1; then`);
    lines.push(`  ${cmds[action].replace("{}", words)}`);
    first = false;
  }
  lines.push("else", `  echo "imgpatch: no package manager for --${action}" >&2`, "  exit 1", "fi", "");
  return lines.join("\n");
}
