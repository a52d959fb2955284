/**
 * The RPM route of the Heat agents (`--rpm` with RDO's os-collect-config, os-refresh-config,
 * os-apply-config and python3-heat-agent packages, unpacked by rpm-inject): what remains to do once
 * the payloads are in the guest. RDO's presets leave os-collect-config disabled, and its
 * /etc/os-collect-config.conf ships 0644 while os-apply-config keeps an existing file's mode when it
 * renders the credentials into it; so: enable the unit, make the file 0600, and add the `.oac`
 * sidecar that pins the rendered mode.
 */
import { ensureDir, lstatOrNull, statOrNull } from "../guest/fs-util.js";
import type { GuestFs } from "../guest/guest-fs.js";
import { enableUnit, type SystemdInstallOptions } from "../guest/systemd-install.js";
import { OAC_TEMPLATES, OCC_CONF, OCC_UNIT } from "./known-elements.js";

export interface RpmAgentsResult {
  actions: string[];
  warnings: string[];
}

export async function finishRpmAgents(
  fs: GuestFs,
  options: { systemd?: SystemdInstallOptions; mtime?: Date } = {},
): Promise<RpmAgentsResult> {
  const actions: string[] = [];
  const warnings: string[] = [];
  const unitFound = (
    await Promise.all(
      ["/usr/lib/systemd/system", "/lib/systemd/system", "/etc/systemd/system"].map((d) =>
        statOrNull(fs, `${d}/${OCC_UNIT}`),
      ),
    )
  ).some((s) => s?.type === "file");
  if (unitFound) {
    const r = await enableUnit(fs, OCC_UNIT, options.systemd);
    for (const l of [...r.created, ...r.unchanged]) actions.push(`enabled: ${l.path} -> ${l.target}`);
  } else {
    warnings.push(`${OCC_UNIT} is not installed: was the os-collect-config package injected?`);
  }
  const conf = await lstatOrNull(fs, OCC_CONF);
  if (conf?.type === "file") {
    if (conf.mode !== 0o600) {
      await fs.chmod(OCC_CONF, 0o600);
      actions.push(`chmod 0600 ${OCC_CONF} (was ${conf.mode.toString(8).padStart(4, "0")})`);
    }
  } else {
    warnings.push(`${OCC_CONF} is missing`);
  }
  const template = `${OAC_TEMPLATES}/etc/os-collect-config.conf`;
  if ((await statOrNull(fs, template))?.type === "file" && !(await lstatOrNull(fs, `${template}.oac`))) {
    await ensureDir(fs, `${OAC_TEMPLATES}/etc`);
    await fs.writeFile(`${template}.oac`, "mode: 0600\n", {
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtime: options.mtime,
    });
    actions.push(`write ${template}.oac (rendered config stays 0600)`);
  }
  return { actions, warnings };
}
