/**
 * `customize --install PKG[,PKG…]` on RPM guests (an rpmdb present): resolve with @imgpatch/rpm-repo
 * against the guest's enabled repositories or the `--repo` base URLs, unpack with rpm-inject in
 * rpm's order, queue scriptlets for first boot, and register the packages: straight into an sqlite
 * rpmdb when register-sqlite can, else with rpm-inject's first-boot `rpm --justdb` registration.
 */
import type { GuestFileReader, InstallPlan } from "@imgpatch/rpm-repo";
import type { StepProgress } from "../commands/progress.js";
import type { GuestFs } from "../guest/guest-fs.js";
import { CustomizeUsageError } from "./operations.js";

/** --install PKG[,PKG…] */
export interface InstallStep {
  op: "install";
  packages: string[];
}

export function parseInstallStep(arg: string | undefined): InstallStep {
  const packages = (arg ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (packages.length === 0) throw new CustomizeUsageError("--install needs PKG[,PKG...]");
  return { op: "install", packages };
}

export interface InstallContext {
  /** --repo base URLs (replace the guest's repositories when given). */
  repos?: string[];
  missingOwner?: "error" | "root";
  /** Install time recorded in the rpmdb (SOURCE_DATE_EPOCH); now when absent. */
  now?: Date;
  /** A plan already made by planRpmInstall for this step (not resolved again). */
  plan?: InstallPlan;
  /** A progress display for the unpacking of the transaction's payloads (bytes of regular files). */
  progress?: (label: string) => StepProgress;
}

/** A GuestFileReader over a GuestFs: missing paths are null. */
export function guestReader(fs: GuestFs): GuestFileReader {
  return {
    readFile: (p) => fs.readFile(p).catch(() => null),
    readdir: (p) => fs.readdir(p).catch(() => null),
  };
}

/** Does the guest use rpm (an rpmdb in one of rpm's places)? Routes --install. */
export async function isRpmGuest(fs: GuestFs): Promise<boolean> {
  const { locateRpmdb } = await import("@imgpatch/rpm-repo");
  return (await locateRpmdb(guestReader(fs))) !== null;
}

export async function planRpmInstall(
  fs: GuestFs,
  step: InstallStep,
  ctx: InstallContext,
): Promise<InstallPlan> {
  const { planInstall } = await import("@imgpatch/rpm-repo");
  return planInstall({ guest: guestReader(fs), specs: step.packages, repos: ctx.repos });
}

/** Lines describing a plan (dry run and --verbose). */
export function describeRpmPlan(plan: InstallPlan): string[] {
  const lines = plan.items.map(
    (t) =>
      `install ${t.pkg.name}-${t.pkg.evr.epoch && t.pkg.evr.epoch !== "0" ? `${t.pkg.evr.epoch}:` : ""}${t.pkg.evr.version}-${t.pkg.evr.release}.${t.pkg.arch} (${t.pkg.repo}, ${t.reason}: ${t.why})`,
  );
  for (const a of plan.alreadyInstalled) lines.push(`already installed ${a}`);
  for (const s of plan.skipped) lines.push(`skipped repository ${s}`);
  return lines;
}

/** Resolve, unpack, queue scriptlets and register; returns change lines. */
export async function runRpmInstall(
  fs: GuestFs,
  image: string,
  step: InstallStep,
  ctx: InstallContext,
): Promise<string[]> {
  const { fetchPackage, registerSqlite, transactionColor } = await import("@imgpatch/rpm-repo");
  const { injectRpms, readRpm } = await import("@imgpatch/rpm-inject");
  const { injectTargetFromGuestFs, queueFirstbootPlan } = await import("../guest/rpm-bridge.js");
  const plan = ctx.plan ?? (await planRpmInstall(fs, step, ctx));
  const lines = describeRpmPlan(plan);
  if (plan.items.length === 0) return lines;
  const pkgs = [];
  try {
    for (const item of plan.items)
      pkgs.push(await readRpm(await fetchPackage(plan, item), { name: item.pkg.location }));
    const gpg = plan.repos.filter((r) => plan.items.some((t) => t.pkg.repo === r.id));
    const signature = gpg.length > 0 && gpg.every((r) => r.gpgcheck) ? "required" : "if-present";
    // sqlite rpmdbs are written here; BDB/ndb ones get rpm-inject's first-boot `rpm --justdb`.
    const direct = plan.rpmdb.backend === "sqlite";
    const bar = ctx.progress?.(`unpacking ${pkgs.length} packages`);
    let total = 0;
    for (const p of pkgs) for (const f of p.files) if (f.type === "file" && !f.ghost) total += f.size;
    let done = 0;
    bar?.update(0, total);
    let r: Awaited<ReturnType<typeof injectRpms>>;
    try {
      r = await injectRpms(
        pkgs,
        injectTargetFromGuestFs(fs, image, (n) => {
          done += n;
          bar?.update(done, total);
        }),
        {
          missingOwner: ctx.missingOwner ?? "error",
          signature,
          register: !direct,
        },
      );
    } finally {
      bar?.finish();
    }
    for (const rep of r.reports)
      lines.push(`unpacked ${rep.nevra}: ${rep.written.length} files`, ...rep.warnings);
    if (direct) {
      const file = plan.rpmdb.file;
      const time = Math.floor((ctx.now ?? new Date()).getTime() / 1000);
      const st = await fs.lstat(file);
      const stamp = { time, tid: time, color: transactionColor(plan.basearch) };
      const bytes = await registerSqlite(await fs.readFile(file), pkgs, stamp, file);
      await fs.writeFile(file, bytes, { mode: st.mode, uid: st.uid, gid: st.gid });
      lines.push(`registered ${pkgs.length} packages in ${file}`);
    }
    lines.push(...(await queueFirstbootPlan(fs, r.firstboot)).map((p) => `firstboot ${p}`));
  } finally {
    for (const p of pkgs) await p.close();
  }
  return lines;
}
