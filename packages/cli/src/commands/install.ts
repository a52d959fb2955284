/**
 * customize --install PKG[,PKG…] (and --deb FILE.deb), virt-customize's one option for the guest's
 * package manager: routed by what the guest has — an rpmdb → @imgpatch/rpm-repo (dnf-like
 * resolution, rpm-inject unpacking); dpkg's status → @imgpatch/deb (apt-like resolution, dpkg
 * database). `--repo` means a base URL on RPM guests and an apt source line on Debian ones.
 */
import type { Guest } from "../image/open-guest.js";
import { UsageError } from "../image/open-image.js";
import type { StepContext } from "./steps.js";

export interface InstallLikeStep {
  op: "install";
  packages: string[];
}

const rpmRoute = () => import("../customize/install-rpm.js");

/** Applies one --install step; returns its change lines. */
export async function installStep(guest: Guest, step: InstallLikeStep, ctx: StepContext): Promise<string[]> {
  const rpm = await rpmRoute();
  if (await rpm.isRpmGuest(guest.fs)) {
    return rpm.runRpmInstall(guest.fs, guest.image, step, {
      repos: ctx.repos,
      missingOwner: ctx.rpmMissingOwner,
      now: ctx.now,
    });
  }
  throw new UsageError(
    "--install: the guest has no rpmdb (only RPM-based guests are handled here)",
    guest.image,
  );
}

export interface InstallPlanReport {
  packages: string[];
  transaction: Record<string, unknown>;
  lines: string[];
}

/** The --dry-run plan of one --install step. */
export async function planInstallStep(
  guest: Guest,
  step: InstallLikeStep,
  repos: string[] | undefined,
): Promise<InstallPlanReport> {
  const rpm = await rpmRoute();
  if (!(await rpm.isRpmGuest(guest.fs))) {
    throw new UsageError(
      "--install: the guest has no rpmdb (only RPM-based guests are handled here)",
      guest.image,
    );
  }
  const { planSummary } = await import("@imgpatch/rpm-repo");
  const plan = await rpm.planRpmInstall(guest.fs, step, { repos });
  return { packages: step.packages, transaction: planSummary(plan), lines: rpm.describeRpmPlan(plan) };
}
