/**
 * customize --install PKG[,PKG…] and --deb FILE.deb, virt-customize's options for the guest's
 * package manager: routed by what the guest has — dpkg's status → @imgpatch/deb (apt-like
 * resolution, dpkg database, maintainer scripts at first boot); an rpmdb → @imgpatch/rpm-repo
 * (dnf-like resolution, rpm-inject unpacking). `--repo` is an apt source line on Debian guests and a
 * base URL on RPM guests.
 */
import { basename } from "node:path";
import type { DebStep, DebStepOptions } from "../customize/install-deb.js";
import type { Guest } from "../image/open-guest.js";
import { UsageError } from "../image/open-image.js";
import { progressBar, type StepProgress } from "./progress.js";
import type { StepContext } from "./steps.js";

const rpmRoute = () => import("../customize/install-rpm.js");
const debRoute = () => import("../customize/install-deb.js");

function noManager(image: string): UsageError {
  return new UsageError(
    "--install: the guest has neither dpkg's status nor an rpmdb (no package manager imgpatch can act for)",
    image,
  );
}

/**
 * Applies one --install/--deb step; returns its change lines. An --install whose repositories
 * cannot be reached at all is left to the guest's first boot (its own package manager, as
 * virt-customize would run it in its VM), saying so; any other failure (a bad signature or index,
 * an unsatisfiable request) stays an error.
 */
export async function installStep(guest: Guest, step: DebStep, ctx: StepContext): Promise<string[]> {
  try {
    return await installNow(guest, step, ctx);
  } catch (e) {
    if (step.op !== "install" || !(await unreachable(e))) throw e;
    const { addFirstbootScript } = await import("../guest/firstboot.js");
    const { packageFirstbootScript } = await import("../customize/package-firstboot.js");
    const p = await addFirstbootScript(guest.fs, "install", packageFirstbootScript("install", step.packages));
    return [
      `install ${step.packages.join(",")}: repositories unreachable at build time (${(e as Error).message}); queued for the first boot: ${p}`,
    ];
  }
}

async function unreachable(e: unknown): Promise<boolean> {
  const [{ DebUnreachableError }, { RepoUnreachableError }] = await Promise.all([
    import("@imgpatch/deb"),
    import("@imgpatch/rpm-repo"),
  ]);
  return e instanceof DebUnreachableError || e instanceof RepoUnreachableError;
}

async function installNow(guest: Guest, step: DebStep, ctx: StepContext): Promise<string[]> {
  const deb = await debRoute();
  if (step.op === "deb" || (await deb.isDebianGuest(guest.fs))) {
    return deb.runDebStep(guest.fs, guest.image, step, ctx.deb ?? {});
  }
  const rpm = await rpmRoute();
  if (await rpm.isRpmGuest(guest.fs)) {
    return rpm.runRpmInstall(guest.fs, guest.image, step, {
      repos: ctx.repos,
      missingOwner: ctx.rpmMissingOwner,
      now: ctx.now,
      progress: ctx.progress,
    });
  }
  throw noManager(guest.image);
}

export interface InstallPlanReport {
  /** Which route planned it. */
  manager: "deb" | "rpm";
  step: string;
  /** Debian: the resolved plan; RPM: the transaction summary. */
  plan: Record<string, unknown>;
  lines: string[];
}

/** The --dry-run --json fields: Debian plans under `deb`, RPM transactions under `install`. */
export function installPlansJson(plans: readonly InstallPlanReport[]): Record<string, unknown> {
  return {
    deb: plans.filter((p) => p.manager === "deb").map((p) => ({ step: p.step, plan: p.plan })),
    install: plans
      .filter((p) => p.manager === "rpm")
      .map((p) => ({ packages: p.step.replace(/^install /, "").split(","), transaction: p.plan })),
  };
}

/** The --dry-run plan of one --install/--deb step. */
export async function planInstallStep(
  guest: Guest,
  step: DebStep,
  repos: string[] | undefined,
  debOptions: DebStepOptions,
): Promise<InstallPlanReport> {
  const label = step.op === "deb" ? `deb ${step.host}` : `install ${step.packages.join(",")}`;
  const deb = await debRoute();
  if (step.op === "deb" || (await deb.isDebianGuest(guest.fs))) {
    const plan = (await deb.planDebStep(guest.fs, guest.image, step, debOptions)) as unknown as Record<
      string,
      unknown
    >;
    return { manager: "deb", step: label, plan, lines: formatDebPlan(plan) };
  }
  const rpm = await rpmRoute();
  if (!(await rpm.isRpmGuest(guest.fs))) throw noManager(guest.image);
  const { planSummary } = await import("@imgpatch/rpm-repo");
  const plan = await rpm.planRpmInstall(guest.fs, step, { repos });
  return { manager: "rpm", step: label, plan: planSummary(plan), lines: rpm.describeRpmPlan(plan) };
}

/** customize's options for Debian --install/--deb steps; `bars` draws one progress bar per download. */
export function debOptionsOf(
  a: Record<string, unknown>,
  err: (text: string) => void,
  bars: boolean,
): DebStepOptions {
  const open = new Map<string, StepProgress>();
  return {
    repos: a.repo === undefined ? undefined : [a.repo].flat().map(String),
    installRecommends: a["install-recommends"] as boolean | undefined,
    allowUnauthenticated: a["allow-unauthenticated"] === true,
    allowExpired: a["allow-expired"] === true,
    warn: (m) => err(`imgpatch: ${m}\n`),
    progress: bars
      ? (e) => {
          if (e.cached) return;
          let bar = open.get(e.url);
          if (!bar) {
            bar = progressBar(true, basename(e.url), err);
            open.set(e.url, bar);
          }
          bar.update(e.received, e.total ?? e.received);
          if (e.done) {
            bar.finish();
            open.delete(e.url);
          }
        }
      : undefined,
  };
}

/** The --dry-run text of a resolved Debian plan: each package, version, size and why. */
function formatDebPlan(plan: unknown): string[] {
  const p = plan as {
    packages: Array<{ package: string; version: string; size: number; reason: string }>;
    repositories: Array<{ uri: string; suite: string; trust: string }>;
  };
  return [
    ...p.repositories.map((r) => `repository ${r.uri} ${r.suite}: ${r.trust}`),
    ...p.packages.map(
      (x) => `install ${x.package} ${x.version} (${(x.size / 1024).toFixed(0)} KiB): ${x.reason}`,
    ),
    `${p.packages.length} packages, ${(p.packages.reduce((n, x) => n + x.size, 0) / 1048576).toFixed(1)} MiB to download`,
  ];
}
