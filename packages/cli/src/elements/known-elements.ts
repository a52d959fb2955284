/**
 * Elements whose build-time effect imgpatch produces statically, so the image is right before its
 * first boot (facts from the elements' behaviour: see the project notes on the Heat agents).
 */

export const ORC_BASE = "/usr/libexec/os-refresh-config";
export const ORC_PHASES = ["pre-configure.d", "configure.d", "migration.d", "post-configure.d"] as const;
export const OAC_TEMPLATES = "/usr/libexec/os-apply-config/templates";
export const HEAT_HOOKS_DIR = "/var/lib/heat-config/hooks";
export const OCC_CONF = "/etc/os-collect-config.conf";
export const OCC_UNIT = "os-collect-config.service";

/** Bootstrap config os-collect-config starts with (the element writes the same two settings). */
export function occBootstrapConf(): string {
  return "[DEFAULT]\ncommand=os-refresh-config\n";
}

/**
 * Our os-collect-config unit: starts the agent installed at /usr/local/bin by the source install,
 * after cloud-init has written Heat's initial metadata, restarting it if it fails.
 */
export function occUnitText(execStart = "/usr/local/bin/os-collect-config"): string {
  return `[Unit]
Description=os-collect-config: collect Heat metadata and run os-refresh-config
After=cloud-final.service
Before=crond.service

[Service]
ExecStart=${execStart}
Restart=on-failure

[Install]
WantedBy=multi-user.target
`;
}

/** Drop-in making os-collect-config start only after the deferred first-boot install has finished. */
export function occFirstbootDropIn(firstbootUnit: string): string {
  return `# Added by imgpatch: the agents are installed by ${firstbootUnit} at first boot; without this,
# os-collect-config would start before its binary exists and hit its restart limit.
[Unit]
Requires=${firstbootUnit}
After=${firstbootUnit}
`;
}

export function selinuxPermissiveConfig(): string {
  return "SELINUX=permissive\nSELINUXTYPE=targeted\n";
}

/** Elements whose own phase scripts imgpatch replaces, and why. */
export const REPLACED_SCRIPTS: Record<string, { phases: string[]; match: RegExp; why: string }> = {
  "package-installs": {
    phases: ["pre-install.d", "install.d", "post-install.d"],
    match: /.*/,
    why: "imgpatch installs package-installs.yaml entries itself (the element's squashed JSON is made by extra-data.d, a build-host phase)",
  },
  "os-refresh-config": {
    phases: ["install.d"],
    match: /^99-os-refresh-config-install-scripts$/,
    why: "the merged os-refresh-config/ tree is installed statically",
  },
  "os-apply-config": {
    phases: ["install.d"],
    match: /^(11-create-template-root|99-install-config-templates)$/,
    why: "the template root and merged os-apply-config/ templates are installed statically",
  },
  "install-bin": {
    phases: ["pre-install.d"],
    match: /.*/,
    why: "bin/ of every element is installed statically to /usr/local/bin",
  },
  "selinux-permissive": {
    phases: ["pre-install.d", "install.d", "post-install.d"],
    match: /.*/,
    why: "/etc/selinux/config is written statically (it must be in place before the first boot)",
  },
};

/** A heat-config hook element ships its hook as install.d/hook-<name>.py. */
export function hookNameFromFile(file: string): string | null {
  const m = /^hook-([A-Za-z0-9_-]+)\.py$/.exec(file);
  return m ? m[1] : null;
}

/** Its install script (the one copying the hook into place) is replaced by the static copy. */
export const HOOK_INSTALL_SCRIPT = /heat-config-hook/;

/**
 * Helpers DIB's distro and base elements put in /usr/local/bin during a build, which element scripts
 * call (`install-packages pkg...`, `dib-init-system`). An existing image has no such elements, so
 * imgpatch installs small equivalents of its own when no element in the build ships them.
 */
export const HELPER_SHIMS: Record<string, string> = {
  "install-packages": `#!/bin/bash
# imgpatch: stands in for diskimage-builder's install-packages (distro elements are not part of an
# imgpatch run). Usage: install-packages [-u] [-e] [-m ELEMENT] PACKAGE...
set -eu
action=install
while getopts "uedm:" opt; do
  case "$opt" in
    u) action=update ;;
    e) action=erase ;;
    d) ;;
    m) ;; # package-name mapping is done by imgpatch for package-installs.yaml; names pass through here
    *) echo "install-packages: unknown option" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ -n "\${IMGPATCH_PKG_CMD:-}" ]; then exec $IMGPATCH_PKG_CMD "$action" "$@"; fi
if command -v dnf >/dev/null 2>&1; then pm=dnf
elif command -v yum >/dev/null 2>&1; then pm=yum
elif command -v apt-get >/dev/null 2>&1; then pm=apt-get; export DEBIAN_FRONTEND=noninteractive
elif command -v zypper >/dev/null 2>&1; then pm=zypper
else echo "install-packages: no package manager found" >&2; exit 1
fi
case "$pm:$action" in
  apt-get:update) apt-get -y update && exec apt-get -y upgrade ;;
  apt-get:erase) exec apt-get -y remove "$@" ;;
  apt-get:install) [ $# -gt 0 ] || exit 0; exec apt-get -y install "$@" ;;
  zypper:update) exec zypper -n update ;;
  zypper:erase) exec zypper -n remove "$@" ;;
  zypper:install) [ $# -gt 0 ] || exit 0; exec zypper -n install "$@" ;;
  *:update) exec "$pm" -y update ;;
  *:erase) exec "$pm" -y remove "$@" ;;
  *:install) [ $# -gt 0 ] || exit 0; exec "$pm" -y install "$@" ;;
esac
`,
  "dib-init-system": `#!/bin/sh
# imgpatch: stands in for diskimage-builder's dib-init-system (imgpatch targets systemd guests).
echo systemd
`,
};
