/**
 * package-installs.yaml entries on Debian-family guests, at build time: the install entries (not
 * `uninstall`, not arch-restricted: those depend on `uname -m` at first boot) are resolved against
 * the guest's own apt sources and unpacked now by @imgpatch/deb, like `customize --install`; the
 * first-boot payload then only runs the phases' scripts. When the repositories cannot be reached
 * (or resolution fails) nothing is written and every entry stays with the first boot, with a warning.
 */
import { ImgpatchError } from "@imgpatch/disk";
import type { DebStepOptions } from "../customize/install-deb.js";
import { debTargetFromGuestFs } from "../guest/deb-bridge.js";
import { addFirstbootScript } from "../guest/firstboot.js";
import type { GuestFs } from "../guest/guest-fs.js";
import type { PackageRequest } from "./package-installs.js";

export interface BuildTimePackages {
  installed: string[];
  log: string[];
  warnings: string[];
}

export async function installElementPackages(
  fs: GuestFs,
  image: string,
  requests: readonly PackageRequest[],
  options: DebStepOptions = {},
): Promise<BuildTimePackages> {
  const names = [
    ...new Set(requests.filter((r) => !r.uninstall && r.arch.length === 0).flatMap((r) => r.packages)),
  ];
  const out: BuildTimePackages = { installed: [], log: [], warnings: [] };
  if (names.length === 0) return out;
  const { planDebInstall, applyDebPlan } = await import("@imgpatch/deb");
  const target = debTargetFromGuestFs(fs, image);
  let plan: Awaited<ReturnType<typeof planDebInstall>>;
  try {
    plan = await planDebInstall(target, { ...options, install: names });
  } catch (e) {
    if (!(e instanceof ImgpatchError)) throw e;
    out.warnings.push(`package-installs: ${names.join(" ")} left to the first boot: ${e.message}`);
    return out;
  }
  const report = await applyDebPlan(target, plan, options);
  for (const a of report.accounts) out.log.push(`added system ${a}`);
  for (const [i, p] of report.packages.entries())
    out.log.push(`unpacked  ${p.package} ${p.version} (${plan.packages[i].reason})`);
  const queued = await addFirstbootScript(fs, "dpkg-configure", report.firstbootScript);
  out.log.push(`firstboot ${queued} (dpkg --configure -a, before the deferred phases)`);
  out.installed = names;
  return out;
}
