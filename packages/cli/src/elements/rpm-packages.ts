/**
 * package-installs.yaml entries on RPM-family guests, at build time, as deb-packages.ts does for
 * Debian: the install entries (not `uninstall`, not arch-restricted: those depend on `uname -m` at
 * first boot) are resolved by @imgpatch/rpm-repo against the guest's own enabled repositories and
 * unpacked now by rpm-inject, like `customize --install`; scriptlets wait for the first boot. When
 * the repositories cannot be read or the request cannot be resolved (an upgrade of an installed
 * package included: refused, naming it), nothing is written and every entry stays with the first
 * boot's dnf/yum, with a warning.
 */
import { ImgpatchError } from "@imgpatch/disk";
import type { InstallContext } from "../customize/install-rpm.js";
import type { GuestFs } from "../guest/guest-fs.js";
import type { BuildTimePackages } from "./deb-packages.js";
import type { PackageRequest } from "./package-installs.js";

export interface RpmElementOptions {
  /** Base URLs replacing the guest's repositories (tests, offline mirrors). */
  repos?: string[];
  missingOwner?: InstallContext["missingOwner"];
  /** Install time recorded in the rpmdb (SOURCE_DATE_EPOCH). */
  now?: Date;
}

export async function installElementRpmPackages(
  fs: GuestFs,
  image: string,
  requests: readonly PackageRequest[],
  options: RpmElementOptions = {},
): Promise<BuildTimePackages> {
  const names = [
    ...new Set(requests.filter((r) => !r.uninstall && r.arch.length === 0).flatMap((r) => r.packages)),
  ];
  const out: BuildTimePackages = { installed: [], log: [], warnings: [] };
  if (names.length === 0) return out;
  const { planRpmInstall, runRpmInstall } = await import("../customize/install-rpm.js");
  const step = { op: "install" as const, packages: names };
  const ctx: InstallContext = { repos: options.repos, missingOwner: options.missingOwner, now: options.now };
  let plan: Awaited<ReturnType<typeof planRpmInstall>>;
  try {
    plan = await planRpmInstall(fs, step, ctx);
  } catch (e) {
    if (!(e instanceof ImgpatchError)) throw e;
    out.warnings.push(`package-installs: ${names.join(" ")} left to the first boot: ${e.message}`);
    return out;
  }
  out.log.push(...(await runRpmInstall(fs, image, step, { ...ctx, plan })));
  out.installed = names;
  return out;
}
