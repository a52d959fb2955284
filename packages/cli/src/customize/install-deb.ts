/**
 * `--install PKG[,PKG…]` and `--deb FILE.deb` on Debian-family guests (a dpkg status file present):
 * @imgpatch/deb resolves against the guest's own apt sources (plus `--repo` entries) exactly as apt
 * would, unpacks the closure into the image and records it in dpkg's database; one first-boot
 * script runs the deferred preinsts and `dpkg --configure -a`.
 */
import type { DebInstallOptions, DebPlan } from "@imgpatch/deb";
import { debTargetFromGuestFs } from "../guest/deb-bridge.js";
import { addFirstbootScript } from "../guest/firstboot.js";
import { lstatOrNull } from "../guest/fs-util.js";
import type { GuestFs } from "../guest/guest-fs.js";
import { CustomizeUsageError } from "./operations.js";

export type DebStep = { op: "install"; packages: string[] } | { op: "deb"; host: string };

/** Options shared by every --install/--deb step (customize's --repo, --no-install-recommends...). */
export interface DebStepOptions {
  repos?: string[];
  installRecommends?: boolean;
  allowUnauthenticated?: boolean;
  allowExpired?: boolean;
  noGuestSources?: boolean;
  warn?: (message: string) => void;
  progress?: DebInstallOptions["progress"];
}

const deb = () => import("@imgpatch/deb");

export function parseDebStep(name: "install" | "deb", arg: string | undefined): DebStep {
  if (!arg) throw new CustomizeUsageError(`--${name} needs an argument`);
  if (name === "deb") return { op: "deb", host: arg };
  const packages = arg
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
  if (packages.length === 0) throw new CustomizeUsageError("--install needs package names (PKG[,PKG...])");
  return { op: "install", packages };
}

/** True for a guest whose package manager is dpkg. */
export async function isDebianGuest(fs: GuestFs): Promise<boolean> {
  return (await lstatOrNull(fs, "/var/lib/dpkg/status"))?.type === "file";
}

function installOptions(step: DebStep, o: DebStepOptions): DebInstallOptions {
  return {
    install: step.op === "install" ? step.packages : undefined,
    debs: step.op === "deb" ? [step.host] : undefined,
    repos: o.repos,
    installRecommends: o.installRecommends,
    allowUnauthenticated: o.allowUnauthenticated,
    allowExpired: o.allowExpired,
    noGuestSources: o.noGuestSources,
    warn: o.warn,
    progress: o.progress,
  };
}

async function requireDebian(fs: GuestFs, image: string, step: DebStep): Promise<void> {
  if (!(await isDebianGuest(fs))) {
    throw new CustomizeUsageError(
      `--${step.op}: ${image} has no /var/lib/dpkg/status; ${step.op === "deb" ? "a .deb needs a Debian-family guest" : "RPM guests take --rpm"}`,
      image,
    );
  }
}

/** The resolved plan without writing (for --dry-run / --json). */
export async function planDebStep(
  fs: GuestFs,
  image: string,
  step: DebStep,
  o: DebStepOptions,
): Promise<Omit<DebPlan, "entries" | "localFiles" | "timings">> {
  await requireDebian(fs, image, step);
  const { planDebInstall } = await deb();
  const {
    entries: _e,
    localFiles: _l,
    timings: _t,
    ...plan
  } = await planDebInstall(debTargetFromGuestFs(fs, image), installOptions(step, o));
  return plan;
}

/** Resolves, unpacks, records and queues the first-boot configuration; returns change lines. */
export async function runDebStep(
  fs: GuestFs,
  image: string,
  step: DebStep,
  o: DebStepOptions,
): Promise<string[]> {
  await requireDebian(fs, image, step);
  const { planDebInstall, applyDebPlan } = await deb();
  const target = debTargetFromGuestFs(fs, image);
  const opts = installOptions(step, o);
  const plan = await planDebInstall(target, opts);
  const lines = plan.repositories.map((r) => `repository ${r.uri} ${r.suite}: ${r.trust}`);
  if (plan.entries.length === 0) return [...lines, "nothing to install: already installed"];
  const report = await applyDebPlan(target, plan, opts);
  for (const a of report.accounts) lines.push(`added system ${a}`);
  for (const [i, p] of report.packages.entries()) {
    lines.push(
      `unpacked ${p.package} ${p.version} (${plan.packages[i].reason}): ${p.files} files${p.deferredPreinst ? ", preinst deferred to first boot" : ""}`,
    );
  }
  const queued = await addFirstbootScript(fs, "dpkg-configure", report.firstbootScript);
  lines.push(`firstboot ${queued}: dpkg --configure -a`);
  return lines;
}
