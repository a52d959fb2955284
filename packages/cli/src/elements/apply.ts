/** Applying an elements plan through a GuestFs, and rendering it for --dry-run. */
import { readFile, stat } from "node:fs/promises";
import type { StepProgress } from "../commands/progress.js";
import { type DebStepOptions, isDebianGuest } from "../customize/install-deb.js";
import { isRpmGuest } from "../customize/install-rpm.js";
import { addFirstbootScript } from "../guest/firstboot.js";
import { ensureDir, lstatOrNull } from "../guest/fs-util.js";
import type { GuestFs } from "../guest/guest-fs.js";
import { guestDirname } from "../guest/paths.js";
import { enableUnit, type SystemdInstallOptions } from "../guest/systemd-install.js";
import { type BuildTimePackages, installElementPackages } from "./deb-packages.js";
import { type GuestOp, renderOp } from "./ops.js";
import { buildElementsPlan, type ElementsPlan, type ElementsPlanOptions } from "./plan.js";
import { installElementRpmPackages, type RpmElementOptions } from "./rpm-packages.js";

export interface ApplyResult {
  /** One line per operation actually performed (or skipped, with why). */
  log: string[];
  /** Symlinks created by `enable` operations. */
  enabled: Array<{ path: string; target: string }>;
  firstbootScripts: string[];
}

export interface ApplyOptions {
  systemd?: SystemdInstallOptions;
  /** Timestamp for written files (SOURCE_DATE_EPOCH makes outputs reproducible). */
  mtime?: Date;
  /** A progress display fed with the bytes of the plan's files as they are written. */
  progress?: StepProgress;
}

/** Bytes a plan writes (host files by their size, generated text by its length). */
async function planBytes(ops: readonly GuestOp[]): Promise<number> {
  let n = 0;
  for (const op of ops) if (op.op === "write") n += await opBytes(op);
  return n;
}

async function opBytes(op: Extract<GuestOp, { op: "write" }>): Promise<number> {
  return "host" in op.source ? (await stat(op.source.host)).size : Buffer.byteLength(op.source.text);
}

async function applyOp(fs: GuestFs, op: GuestOp, result: ApplyResult, options: ApplyOptions): Promise<void> {
  switch (op.op) {
    case "mkdir": {
      const st = await lstatOrNull(fs, op.path);
      if (st) {
        result.log.push(`exists    ${op.path}`);
        return;
      }
      await ensureDir(fs, op.path, op.mode);
      result.log.push(`mkdir     ${op.path}`);
      return;
    }
    case "write": {
      if (op.onlyIfAbsent && (await lstatOrNull(fs, op.path))) {
        result.log.push(`kept      ${op.path} (already present)`);
        return;
      }
      await ensureDir(fs, guestDirname(op.path));
      const data = "host" in op.source ? new Uint8Array(await readFile(op.source.host)) : op.source.text;
      await fs.writeFile(op.path, data, { mode: op.mode, uid: 0, gid: 0, mtime: options.mtime });
      result.log.push(`write     ${op.path}`);
      return;
    }
    case "symlink": {
      const st = await lstatOrNull(fs, op.path);
      if (st?.type === "symlink" && (await fs.readlink(op.path)) === op.target) {
        result.log.push(`exists    ${op.path} -> ${op.target}`);
        return;
      }
      if (st && st.type !== "directory") await fs.unlink(op.path);
      await ensureDir(fs, guestDirname(op.path));
      await fs.symlink(op.target, op.path, { uid: 0, gid: 0 });
      result.log.push(`symlink   ${op.path} -> ${op.target}`);
      return;
    }
    case "enable": {
      const r = await enableUnit(fs, op.unit, options.systemd);
      result.enabled.push(...r.created, ...r.unchanged);
      for (const l of r.created) result.log.push(`symlink   ${l.path} -> ${l.target}`);
      return;
    }
    case "firstboot": {
      const path = await addFirstbootScript(fs, op.name, op.script, {
        before: op.before,
        replacePending: true,
        mtime: options.mtime,
      });
      result.firstbootScripts.push(path);
      result.log.push(`firstboot ${path}`);
      return;
    }
  }
}

export async function applyElementsPlan(
  fs: GuestFs,
  plan: ElementsPlan,
  options: ApplyOptions = {},
): Promise<ApplyResult> {
  const result: ApplyResult = { log: [], enabled: [], firstbootScripts: [] };
  const bar = options.progress;
  const total = bar ? await planBytes(plan.ops) : 0;
  let done = 0;
  bar?.update(0, total);
  try {
    for (const op of plan.ops) {
      await applyOp(fs, op, result, options);
      if (bar && op.op === "write") {
        done += await opBytes(op);
        bar.update(done, total);
      }
    }
  } finally {
    bar?.finish();
  }
  return result;
}

/** Human-readable plan and report (the --dry-run output). */
export function renderElementsPlan(plan: ElementsPlan): string {
  const r = plan.report;
  const out: string[] = [];
  out.push(`ELEMENTS_PATH: ${r.elementsPath.join(":")}`);
  out.push(`requested: ${r.requested.join(" ")}`);
  out.push("elements (merge order):");
  for (const e of r.elements) {
    out.push(`  ${e.name.padEnd(24)} ${e.path}${e.requiredBy ? `   (dependency of ${e.requiredBy})` : ""}`);
    for (const o of e.overrides) out.push(`    hides ${o}`);
  }
  for (const [virt, by] of Object.entries(r.provided)) out.push(`  provided: ${virt} by ${by.join(", ")}`);
  if (r.collisions.length > 0) {
    out.push("collisions (last copied wins):");
    for (const c of r.collisions) {
      out.push(
        `  ${c.rel}: ${c.won} overwrites ${c.lost}${c.identical ? " (identical)" : " (DIFFERENT content)"}`,
      );
    }
  }
  out.push("operations:");
  for (const op of plan.ops) out.push(`  ${renderOp(op)}`);
  out.push("deferred to first boot (diskimage-builder order):");
  for (const d of r.deferred) {
    const pk = r.packages.filter((p) => p.phase === d.phase);
    if (d.scripts.length === 0 && pk.length === 0) continue;
    out.push(
      `  ${d.phase}${d.environment.length > 0 ? `  (sources environment.d: ${d.environment.join(" ")})` : ""}`,
    );
    for (const p of pk) {
      out.push(
        `    package ${p.uninstall ? "remove" : "install"}: ${p.packages.join(" ") || "(none)"}  <- ${p.name} (${p.element})${p.arch.length ? ` [arch ${p.arch.join(",")}]` : ""}`,
      );
    }
    for (const s of d.scripts) out.push(`    ${s.name}  (${s.element})`);
  }
  for (const x of r.replaced) out.push(`  replaced: ${x.phase}/${x.script} (${x.element}): ${x.why}`);
  for (const x of r.ignoredScripts) out.push(`  not run: ${x.phase}/${x.script}: ${x.why}`);
  if (r.notApplicable.length > 0) {
    out.push("build-host phases, not applicable to an existing image (not run):");
    for (const n of r.notApplicable)
      out.push(`  ${n.phase}: ${n.scripts.map((s) => `${s.name} (${s.element})`).join(", ")}`);
  }
  for (const d of r.ignoredDirs) out.push(`ignored directory ${d.dir}/ (${d.elements.join(", ")})`);
  for (const s of r.skipped) out.push(`skipped ${s.path}: ${s.why}`);
  out.push(
    r.selinux === "labelled"
      ? "SELinux: every path written was labelled from the guest's own policy"
      : r.selinux === "relabel-marker"
        ? "SELinux: no readable policy in the guest; /.autorelabel written, the guest relabels itself at first boot"
        : "SELinux: guest has no active SELinux config; no labels written",
  );
  for (const w of r.warnings) out.push(`warning: ${w}`);
  return `${out.join("\n")}\n`;
}

export interface BakeElementsOptions extends ApplyOptions {
  /** Plan and render only; the guest is not touched. */
  dryRun?: boolean;
  /**
   * Debian-family guests: install package-installs entries at build time (default); false leaves
   * them all to the first boot. The options are customize's --repo etc.
   */
  debPackages?: false | (DebStepOptions & { image?: string });
  /** RPM-family guests (an rpmdb): the same at build time through rpm-repo + rpm-inject. */
  rpmPackages?: false | (RpmElementOptions & { image?: string });
}

/**
 * The whole `imgpatch elements` job on an open guest: plan, apply (unless dry run), and the
 * human-readable report. The plan is plain data (ops + report) for --json.
 */
export async function bakeElements(
  fs: GuestFs,
  planOptions: ElementsPlanOptions,
  options: BakeElementsOptions = {},
): Promise<{ plan: ElementsPlan; applied?: ApplyResult; text: string }> {
  let plan = await buildElementsPlan(fs, planOptions);
  if (options.dryRun) return { plan, text: renderElementsPlan(plan) };
  let built: BuildTimePackages | undefined;
  if (options.debPackages !== false && (await isDebianGuest(fs))) {
    const deb = options.debPackages ?? {};
    built = await installElementPackages(fs, deb.image ?? "guest", plan.report.packages, deb);
  } else if (options.rpmPackages !== false && (await isRpmGuest(fs))) {
    const rpm = options.rpmPackages ?? {};
    built = await installElementRpmPackages(fs, rpm.image ?? "guest", plan.report.packages, rpm);
  }
  if (built !== undefined && built.installed.length > 0) {
    plan = await buildElementsPlan(fs, { ...planOptions, installedAtBuild: built.installed });
  }
  const text = renderElementsPlan(plan);
  const applied = await applyElementsPlan(fs, plan, options);
  if (built) {
    applied.log.unshift(...built.log, ...built.warnings.map((w) => `WARNING   ${w}`));
  }
  return { plan, applied, text };
}
