/**
 * Planning and performing the installation of one package into a guest tree, with rpm's semantics
 * for a fresh install (rpm -i --noscripts):
 *
 *  - owners by NAME through the guest's /etc/passwd and /etc/group;
 *  - %config: identical content on disk → rewritten unchanged; different content → the package's
 *    copy as `.rpmnew` for noreplace, else the existing file saved as `.rpmorig` and replaced;
 *  - %ghost entries are not written; missing parent directories are created 0755 root:root;
 *  - hard links as links; mtimes from the header; file capabilities as `security.capability`;
 *  - scriptlets are not run: they come back as a FirstbootPlan.
 *
 * Everything that can be checked before writing is: header digests, paths, owners, conflicts with
 * the guest tree and the payload digest (or, without one, the whole payload). A package that fails
 * any of those leaves the target untouched.
 */

import { createHash } from "node:crypto";
import { CAPABILITY_XATTR, encodeCapabilityXattr } from "./caps.js";
import { InjectConflictError, RpmOwnerError } from "./errors.js";
import type { RpmFileEntry } from "./files.js";
import { type FirstbootPlan, type FirstbootStep, shellQuote } from "./firstboot.js";
import { guestDirname, joinGuestPath, safeGuestPath, splitGuestPath } from "./guest-path.js";
import type { Scriptlet, Trigger } from "./metadata.js";
import type { RpmPackage } from "./package.js";
import { readOwnerDb } from "./passwd.js";
import { iteratePayload, verifyCompressedPayload, verifyPayload } from "./payload.js";
import {
  checkSignaturePolicy,
  formatSignatureCheck,
  type SignaturePolicy,
  type SignatureVerdict,
} from "./signature.js";
import type { InjectTarget } from "./target.js";

/**
 * Signature policy fields (`signature`, `keys`, `guestKeys`): see SignaturePolicy. By default
 * ("if-present") a signed package must verify with a trusted key — the given `keys` plus the
 * guest's own (/etc/pki/rpm-gpg/*, repo gpgkey=file:// keys) — and an unsigned one passes.
 */
export interface InjectOptions extends SignaturePolicy {
  /** User/group names missing from the guest: "error" (default) or "root" with a warning and a first-boot chown. */
  missingOwner?: "error" | "root";
  /** Also store the RPM in the guest and register it into the guest's rpmdb at first boot. */
  register?: boolean;
  /** Guest directory the RPM is stored in for `register` (default /var/lib/imgpatch/rpms). */
  registerDir?: string;
  /**
   * "auto" (default): check the payload digest (or legacy MD5) before writing, or verify the whole
   * payload first when the package has neither; "full": always verify the whole payload first.
   */
  verify?: "auto" | "full";
  /** Receives warnings as they arise (they are also in the plan/report). */
  onWarning?: (message: string) => void;
}

export type PlannedAction =
  /** Nothing at the path: created. */
  | "create"
  /** A non-config entry is at the path: replaced, as rpm does for files no package owns. */
  | "replace"
  /** %config with identical content on disk: rewritten unchanged (rpm's FA_CREATE). */
  | "config-same"
  /** %config(noreplace) with different content on disk: the package's copy written as `.rpmnew`. */
  | "rpmnew"
  /** %config with different content on disk: existing saved as `.rpmorig`, then replaced. */
  | "rpmorig"
  /** Directory: created, or an existing one given the package's metadata. */
  | "dir-create"
  | "dir-exists"
  /** Directory in the package, symlink to a directory in the guest: left alone (e.g. /lib → usr/lib). */
  | "dir-symlink"
  /** %ghost: not written. */
  | "ghost";

export interface PlannedFile {
  file: RpmFileEntry;
  action: PlannedAction;
  /** Guest path actually written (`.rpmnew` suffix for that action). */
  path: string;
  uid: number;
  gid: number;
  /** True when a missing owner name fell back to root. */
  ownerFallback: boolean;
  xattrs: { name: string; value: Uint8Array }[];
}

export interface InjectPlan {
  nevra: string;
  files: PlannedFile[];
  /** Parent directories the package does not list, created 0755 root:root. */
  implicitDirs: string[];
  unmetOwners: { users: string[]; groups: string[] };
  warnings: string[];
  scriptlets: Scriptlet[];
  triggers: Trigger[];
  fileTriggers: number;
  requires: string[];
  provides: string[];
  firstboot: FirstbootPlan;
  /** The signature checks made before anything else (policy, checks, key sources). */
  signature: SignatureVerdict;
}

export interface InjectReport {
  nevra: string;
  /** Regular files, symlinks, links and nodes written (final guest paths). */
  written: string[];
  dirsCreated: string[];
  /** %config files whose identical content was already there. */
  configKept: string[];
  rpmnew: string[];
  rpmorig: string[];
  ghostsSkipped: string[];
  deferredScriptlets: { phase: string; interpreter: string[]; lua: boolean }[];
  triggers: string[];
  unmetOwners: { users: string[]; groups: string[] };
  warnings: string[];
  bytesWritten: number;
}

const DEFAULT_REGISTER_DIR = "/var/lib/imgpatch/rpms";

async function digestOf(target: InjectTarget, path: string, algo: string): Promise<string> {
  const h = createHash(algo);
  for await (const c of target.readFile(path)) h.update(c);
  return h.digest("hex");
}

/** rpm's rpmfilesConfigConflict: does the file on disk differ from the package's? */
async function configDiffers(pkg: RpmPackage, target: InjectTarget, f: RpmFileEntry): Promise<boolean> {
  const st = await target.lstat(f.path);
  if (!st) return false;
  if (st.type !== f.type) return true;
  if (st.size !== f.size && f.type === "file") return true;
  if (f.type === "file") return (await digestOf(target, f.path, pkg.fileDigestAlgo.node)) !== f.digest;
  if (f.type === "symlink") return (await target.readlink(f.path)) !== f.linkTarget;
  return true;
}

/** Builds the plan without writing anything: the dry run. Throws on conflicts and (by default) unmet owners. */
export async function planInjection(
  pkg: RpmPackage,
  target: InjectTarget,
  options: InjectOptions = {},
): Promise<InjectPlan> {
  // Signatures first: a package that fails the policy is refused before the guest is even read.
  const signature = await checkSignaturePolicy(pkg, options, target);
  const warnings: string[] = [];
  const warn = (m: string) => {
    warnings.push(m);
    options.onWarning?.(m);
  };
  const owners = await readOwnerDb(target);
  const missingUsers = new Set<string>();
  const missingGroups = new Set<string>();
  const files: PlannedFile[] = [];
  const packageDirs = new Set(pkg.files.filter((f) => f.type === "dir").map((f) => f.path));
  const implicit = new Set<string>();

  for (const f of pkg.files) {
    if (f.ghost) {
      files.push({
        file: f,
        action: "ghost",
        path: f.path,
        uid: 0,
        gid: 0,
        ownerFallback: false,
        xattrs: [],
      });
      continue;
    }
    const uid = owners.users.get(f.user);
    const gid = owners.groups.get(f.group);
    if (uid === undefined) missingUsers.add(f.user);
    if (gid === undefined) missingGroups.add(f.group);

    // Parents the package does not list and the guest lacks.
    let dir = guestDirname(f.path);
    while (dir !== "/" && !packageDirs.has(dir) && !implicit.has(dir)) {
      const pst = await target.lstat(dir);
      if (!pst) implicit.add(dir);
      else if (pst.type !== "dir" && (await target.lstat(`${dir}/.`))?.type !== "dir") {
        throw new InjectConflictError(
          `${f.path} needs directory ${dir}, which is a ${pst.type} in the guest`,
          {
            file: target.name,
          },
        );
      }
      dir = guestDirname(dir);
    }

    const st = await target.lstat(f.path);
    let action: PlannedAction;
    let path = f.path;
    if (f.type === "dir") {
      if (!st) action = "dir-create";
      else if (st.type === "dir") action = "dir-exists";
      else if (st.type === "symlink" && (await target.lstat(`${f.path}/.`))?.type === "dir")
        action = "dir-symlink";
      else
        throw new InjectConflictError(`package directory ${f.path} exists in the guest as a ${st.type}`, {
          file: target.name,
        });
    } else {
      if (st?.type === "dir") {
        throw new InjectConflictError(`package ${f.type} ${f.path} exists in the guest as a directory`, {
          file: target.name,
        });
      }
      if (!st) action = "create";
      else if (f.config && !f.hardlinks && (f.type === "file" || f.type === "symlink")) {
        if (await configDiffers(pkg, target, f)) {
          action = f.noreplace ? "rpmnew" : "rpmorig";
          if (action === "rpmnew") path = `${f.path}.rpmnew`;
        } else action = "config-same";
      } else action = "replace";
    }
    const xattrs: { name: string; value: Uint8Array }[] = [];
    if (f.caps && f.type === "file") {
      const value = encodeCapabilityXattr(f.caps);
      if (value) xattrs.push({ name: CAPABILITY_XATTR, value });
    }
    files.push({
      file: f,
      action,
      path,
      uid: uid ?? 0,
      gid: gid ?? 0,
      ownerFallback: uid === undefined || gid === undefined,
      xattrs,
    });
  }

  const unmetOwners = { users: [...missingUsers].sort(), groups: [...missingGroups].sort() };
  if (unmetOwners.users.length + unmetOwners.groups.length > 0) {
    const names = [
      ...unmetOwners.users.map((u) => `user "${u}"`),
      ...unmetOwners.groups.map((g) => `group "${g}"`),
    ].join(", ");
    const createsInPre = pkg.scriptlets.some((s) => s.phase === "pre" || s.phase === "pretrans");
    const hint = createsInPre
      ? `; ${pkg.info.name} has a %pre scriptlet, which usually creates them (useradd/groupadd) — it only runs at first boot`
      : "";
    const msg = `${pkg.info.nevra}: the guest's /etc/passwd or /etc/group lacks ${names}${hint}`;
    if ((options.missingOwner ?? "error") === "error") {
      throw new RpmOwnerError(
        `${msg}. Create them in the guest first, or allow the fallback to root (option missingOwner: "root", imgpatch --rpm-owner-fallback; files are then chowned at first boot after %pre)`,
        unmetOwners.users,
        unmetOwners.groups,
        { file: pkg.name },
      );
    }
    warn(`${msg}; those files are owned by root until a first-boot step chowns them`);
  }

  for (const s of pkg.scriptlets) {
    if (
      s.lua &&
      (s.phase === "pre" || s.phase === "post" || s.phase === "pretrans" || s.phase === "posttrans")
    ) {
      warn(
        `${pkg.info.nevra}: %${s.phase} is a Lua scriptlet (runs inside rpm); it cannot run from a shell at first boot`,
      );
    }
  }
  if (pkg.triggers.length > 0 || pkg.fileTriggerCount > 0) {
    warn(
      `${pkg.info.nevra}: ${pkg.triggers.length} trigger(s) and ${pkg.fileTriggerCount} file trigger(s) are not run`,
    );
  }

  const plan: InjectPlan = {
    nevra: pkg.info.nevra,
    files,
    implicitDirs: [...implicit].sort(
      (a, b) => splitGuestPath(a).length - splitGuestPath(b).length || a.localeCompare(b),
    ),
    unmetOwners,
    warnings,
    scriptlets: pkg.scriptlets,
    triggers: pkg.triggers,
    fileTriggers: pkg.fileTriggerCount,
    requires: pkg.requires,
    provides: pkg.provides,
    firstboot: buildFirstboot(pkg, files, options),
    signature,
  };
  return plan;
}

function stepName(pkg: RpmPackage, phase: string): string {
  return `00-${pkg.info.name.replace(/[^A-Za-z0-9._+-]/g, "_")}-${phase}`;
}

function buildFirstboot(pkg: RpmPackage, files: PlannedFile[], options: InjectOptions): FirstbootPlan {
  const steps: FirstbootStep[] = [];
  const nevra = pkg.info.nevra;
  const storedPackages: { path: string; nevra: string }[] = [];
  if (options.register) {
    const dir = safeGuestPath(options.registerDir ?? DEFAULT_REGISTER_DIR);
    const path = joinGuestPath(dir, `${nevra.replace(/[^A-Za-z0-9._+:-]/g, "_")}.rpm`);
    storedPackages.push({ path, nevra });
    steps.push({
      name: stepName(pkg, "register"),
      phase: "register",
      package: nevra,
      interpreter: ["/bin/sh"],
      body: `rpm -i --justdb --nodeps --noscripts --notriggers --nosignature ${shellQuote(path)}\n`,
      args: [],
    });
  }
  const add = (s: Scriptlet) =>
    steps.push({
      name: stepName(pkg, s.phase),
      phase: s.phase as FirstbootStep["phase"],
      package: nevra,
      interpreter: s.interpreter,
      body: s.body,
      args: s.phase === "pretrans" || s.phase === "posttrans" ? [] : ["1"],
      lua: s.lua || undefined,
    });
  for (const s of pkg.scriptlets) if (s.phase === "pretrans" || s.phase === "pre") add(s);
  const fix = files.filter((f) => f.ownerFallback && f.action !== "ghost" && f.action !== "dir-symlink");
  if (fix.length > 0) {
    steps.push({
      name: stepName(pkg, "owner-fixup"),
      phase: "owner-fixup",
      package: nevra,
      interpreter: ["/bin/sh"],
      body: fix
        .map(
          (f) =>
            `chown -h ${shellQuote(`${f.file.user}:${f.file.group}`)} ${shellQuote(f.path)}\n` +
            (f.file.type === "file" || f.file.type === "dir"
              ? `chmod ${f.file.perms.toString(8).padStart(4, "0")} ${shellQuote(f.path)}\n`
              : ""),
        )
        .join(""),
      args: [],
    });
  }
  for (const s of pkg.scriptlets) if (s.phase === "post" || s.phase === "posttrans") add(s);
  return { steps, storedPackages };
}

/** Human-readable dry-run plan. */
export function formatPlan(plan: InjectPlan): string {
  const lines = [`package ${plan.nevra}`];
  const sig = plan.signature;
  if (sig.mode === "ignore") lines.push("  signature not checked (policy ignore)");
  else if (!sig.signed) lines.push(`  signature none (unsigned; allowed by policy ${sig.mode})`);
  for (const c of sig.checks) lines.push(`  signature ${formatSignatureCheck(c)}`);
  for (const d of plan.implicitDirs) lines.push(`  mkdir   ${d} (0755 root:root, not in package)`);
  for (const p of plan.files) {
    const f = p.file;
    const owner = `${f.user}:${f.group}${p.ownerFallback ? " (→ root until first boot)" : ""}`;
    const extra = f.type === "symlink" ? ` -> ${f.linkTarget}` : f.hardlinks ? " (hard link)" : "";
    lines.push(
      `  ${p.action.padEnd(11)} ${f.type.padEnd(8)} ${p.path} 0${f.perms.toString(8)} ${owner}${extra}`,
    );
  }
  for (const s of plan.firstboot.steps) {
    lines.push(`  firstboot ${s.name}: ${s.interpreter.join(" ")}${s.lua ? " (lua: not runnable)" : ""}`);
  }
  for (const t of plan.triggers) lines.push(`  trigger (not run) %${t.kind} -- ${t.condition}`);
  for (const w of plan.warnings) lines.push(`  warning: ${w}`);
  return `${lines.join("\n")}\n`;
}

type JournalEntry =
  | { kind: "created"; path: string; dir: boolean }
  | { kind: "renamed"; from: string; to: string };

/**
 * Installs the package's files into the target. Returns the plan, the per-package report and the
 * first-boot plan (also in plan.firstboot). On a failure after writing started, what was created is
 * removed again and `.rpmorig` renames are undone (files the package replaced cannot be restored).
 */
export async function injectRpm(
  pkg: RpmPackage,
  target: InjectTarget,
  options: InjectOptions = {},
): Promise<{ plan: InjectPlan; report: InjectReport; firstboot: FirstbootPlan }> {
  const plan = await planInjection(pkg, target, options);

  // Verify before the first write.
  if ((options.verify ?? "auto") === "full" || !(await verifyCompressedPayload(pkg)))
    await verifyPayload(pkg);

  const report: InjectReport = {
    nevra: plan.nevra,
    written: [],
    dirsCreated: [],
    configKept: [],
    rpmnew: [],
    rpmorig: [],
    ghostsSkipped: [],
    deferredScriptlets: pkg.scriptlets
      .filter(
        (s) => s.phase === "pre" || s.phase === "post" || s.phase === "pretrans" || s.phase === "posttrans",
      )
      .map((s) => ({ phase: s.phase, interpreter: s.interpreter, lua: s.lua })),
    triggers: pkg.triggers.map((t) => `%${t.kind} -- ${t.condition}`),
    unmetOwners: plan.unmetOwners,
    warnings: plan.warnings,
    bytesWritten: 0,
  };
  const journal: JournalEntry[] = [];

  const applyMeta = async (p: PlannedFile) => {
    const f = p.file;
    await target.chown(p.path, p.uid, p.gid);
    if (f.type !== "symlink") await target.chmod(p.path, f.perms);
    for (const x of p.xattrs) await target.setxattr(p.path, x.name, x.value);
    await target.utimes(p.path, f.mtime, f.mtime);
  };
  const clearSpot = async (p: PlannedFile) => {
    const st = await target.lstat(p.path);
    if (st && st.type !== "dir") await target.unlink(p.path);
  };

  try {
    for (const d of plan.implicitDirs) {
      await target.mkdir(d, 0o755);
      journal.push({ kind: "created", path: d, dir: true });
      report.dirsCreated.push(d);
    }
    const dirs = plan.files
      .filter((p) => p.file.type === "dir")
      .sort((a, b) => splitGuestPath(a.path).length - splitGuestPath(b.path).length);
    // Like rpm, a directory gets its metadata when created (or found); entries created in it later
    // move its mtime to the time of injection, as they do under rpm.
    for (const p of dirs) {
      if (p.action === "dir-create") {
        await target.mkdir(p.path, p.file.perms);
        journal.push({ kind: "created", path: p.path, dir: true });
        report.dirsCreated.push(p.path);
      }
      if (p.action === "dir-create" || p.action === "dir-exists") await applyMeta(p);
    }

    const linkWaiting = new Map<number, PlannedFile[]>();
    const dataPath = new Map<number, string>();
    const linkMember = async (p: PlannedFile, existing: string) => {
      await clearSpot(p);
      await target.link(existing, p.path);
      journal.push({ kind: "created", path: p.path, dir: false });
      report.written.push(p.path);
    };

    for await (const e of iteratePayload(pkg)) {
      const p = plan.files[e.file.index];
      const f = p.file;
      if (p.action === "ghost" || f.type === "dir") continue; // content (none) is drained by the iterator
      // Hard-link members without content wait for (or link to) the member that has it; an archive
      // that repeats the content on several members still gets one inode.
      if (f.type === "file" && f.hardlinks && (!e.hasData || dataPath.has(f.hardlinks[0]))) {
        const key = f.hardlinks[0];
        const existing = dataPath.get(key);
        if (existing) await linkMember(p, existing);
        else linkWaiting.set(key, [...(linkWaiting.get(key) ?? []), p]);
        continue;
      }
      if (p.action === "rpmorig") {
        await target.rename(f.path, `${f.path}.rpmorig`);
        journal.push({ kind: "renamed", from: f.path, to: `${f.path}.rpmorig` });
        report.rpmorig.push(`${f.path}.rpmorig`);
        report.warnings.push(`${f.path} saved as ${f.path}.rpmorig`);
      }
      if (f.type === "file") {
        let bytes = 0;
        const counted = (async function* () {
          for await (const c of e.content) {
            bytes += c.length;
            yield c;
          }
        })();
        if (p.action === "create" && target.writeFileAttrs) {
          // A new file with its owner, mode and time in one operation (one path resolution, not four).
          await target.writeFileAttrs(p.path, counted, {
            perms: f.perms,
            uid: p.uid,
            gid: p.gid,
            mtime: f.mtime,
            size: f.size,
          });
        } else await target.writeFile(p.path, counted, f.perms, f.size);
        report.bytesWritten += bytes;
      } else if (f.type === "symlink") {
        await clearSpot(p);
        await target.symlink(f.linkTarget, p.path);
      } else {
        await clearSpot(p);
        await target.mknod(p.path, f.type, f.perms, f.rdevMajor, f.rdevMinor);
      }
      if (p.action === "create" || p.action === "rpmnew" || p.action === "rpmorig") {
        journal.push({ kind: "created", path: p.path, dir: false });
      }
      if (f.type === "file" && p.action === "create" && target.writeFileAttrs) {
        for (const x of p.xattrs) await target.setxattr(p.path, x.name, x.value);
      } else await applyMeta(p);
      report.written.push(p.path);
      if (p.action === "rpmnew") {
        report.rpmnew.push(p.path);
        report.warnings.push(`${f.path} created as ${p.path}`);
      }
      if (p.action === "config-same") report.configKept.push(p.path);
      if (f.hardlinks) {
        const key = f.hardlinks[0];
        dataPath.set(key, p.path);
        for (const m of linkWaiting.get(key) ?? []) await linkMember(m, p.path);
        linkWaiting.delete(key);
      }
    }
    for (const waiting of linkWaiting.values()) {
      for (const m of waiting)
        throw new InjectConflictError(`hard link ${m.path} has no member with content`, { file: pkg.name });
    }

    for (const p of plan.files) if (p.action === "ghost") report.ghostsSkipped.push(p.path);

    for (const s of plan.firstboot.storedPackages) {
      let dir = "/";
      for (const c of splitGuestPath(guestDirname(s.path))) {
        dir = joinGuestPath(dir, c);
        if (!(await target.exists(dir))) {
          await target.mkdir(dir, 0o755);
          journal.push({ kind: "created", path: dir, dir: true });
        }
      }
      await target.writeFile(s.path, pkg.source.stream(0, pkg.source.size), 0o644, pkg.source.size);
      journal.push({ kind: "created", path: s.path, dir: false });
    }
  } catch (err) {
    await rollback(target, journal);
    throw err;
  }
  return { plan, report, firstboot: plan.firstboot };
}

async function rollback(target: InjectTarget, journal: JournalEntry[]): Promise<void> {
  for (const j of [...journal].reverse()) {
    try {
      if (j.kind === "renamed") await target.rename(j.to, j.from);
      else if (j.dir) await target.rmdir(j.path);
      else await target.unlink(j.path);
    } catch {
      // best effort: keep undoing the rest
    }
  }
}
