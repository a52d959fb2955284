/**
 * `imgpatch elements`: turns a set of diskimage-builder elements into a plan of guest operations
 * (static injections now, install phases deferred to the first boot) plus a report.
 */

import { readdir, readFile, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { FIRSTBOOT } from "../guest/firstboot.js";
import { readTextOrNull, statOrNull } from "../guest/fs-util.js";
import type { GuestFs } from "../guest/guest-fs.js";
import { selinuxLabeler } from "../guest/selinux-labeler.js";
import { type ElementClosure, expandElements } from "./closure.js";
import { type ElementInfo, findAllElements, parseElementsPath } from "./elements-path.js";
import {
  HEAT_HOOKS_DIR,
  HELPER_SHIMS,
  HOOK_INSTALL_SCRIPT,
  hookNameFromFile,
  OAC_TEMPLATES,
  OCC_CONF,
  OCC_UNIT,
  ORC_BASE,
  ORC_PHASES,
  occBootstrapConf,
  occFirstbootDropIn,
  occUnitText,
  REPLACED_SCRIPTS,
  selinuxPermissiveConfig,
} from "./known-elements.js";
import {
  type HookCollision,
  type MergedEntry,
  type MergedHooks,
  mergedChildren,
  mergedSubtree,
  mergeElements,
} from "./merge.js";
import { type GuestOp, isVolatilePath } from "./ops.js";
import {
  collectPackageInstalls,
  distroFromOsRelease,
  type GuestDistro,
  PACKAGE_PHASES,
  type PackagePhase,
  type PackageRequest,
} from "./package-installs.js";
import {
  ELEMENTS_HOOKS,
  ELEMENTS_RUNNER,
  elementsPayloadScript,
  elementsQueueScript,
  type PayloadPhase,
} from "./payload.js";
import { cvsExcluded } from "./rsync-filter.js";
import { type RunPartsCandidate, selectEnvironmentFiles, selectScripts } from "./run-parts.js";

/** Phases diskimage-builder runs outside the image (or for the disk itself): not applicable here. */
export const BUILD_HOST_PHASES = [
  "root.d",
  "extra-data.d",
  "block-device.d",
  "cleanup.d",
  "finalise.d",
] as const;
const HANDLED_DIRS = new Set([
  "bin",
  "static",
  "os-refresh-config",
  "os-apply-config",
  "environment.d",
  ...PACKAGE_PHASES,
  ...BUILD_HOST_PHASES,
]);

export interface ElementsPlanOptions {
  /** ELEMENTS_PATH (colon string or list). */
  elementsPath: string | readonly string[];
  /** Elements requested (their dependencies are added). */
  elements: readonly string[];
  /** DIB_DEFAULT_INSTALLTYPE (default "source"). */
  defaultInstallType?: string;
  /** DIB_INSTALLTYPE_<prefix> overrides, keyed by prefix ("-" or "_" accepted). */
  installTypes?: Record<string, string>;
  /** Last copied wins instead of DIB's abort on duplicated phase hooks. */
  allowDuplicateHooks?: boolean;
  /**
   * Host directory of wheels/sdists (`--wheels DIR`) injected at WHEELHOUSE; first-boot pip installs
   * look there first (PIP_FIND_LINKS), and only there with `offline` (PIP_NO_INDEX).
   */
  wheelsDir?: string;
  offline?: boolean;
  /** DIB_PYTHON_VERSION ("2" or "3"); default from the guest's distribution as dib-python decides. */
  pythonVersion?: string;
  /** Extra DIB_* variables: exported to the deferred phases and used for package-installs `when:`. */
  environment?: Record<string, string>;
  /**
   * Packages already installed at build time (Debian guests, see deb-packages.ts): their
   * package-installs entries are left out of the first-boot payload.
   */
  installedAtBuild?: readonly string[];
}

/** dib-python's choice: Python 2 on CentOS/RHEL 7 and older, Fedora ≤ 22, Ubuntu trusty; else 3. */
export function defaultPythonVersion(d: GuestDistro): string {
  const major = Number.parseInt(d.release, 10);
  if (["centos", "rhel", "centos7", "rhel7"].includes(d.distro) && Number.isFinite(major) && major <= 7)
    return "2";
  if (d.distro === "fedora" && Number.isFinite(major) && major <= 22) return "2";
  if (d.distro === "ubuntu" && (d.release === "14.04" || d.release === "trusty")) return "2";
  return "3";
}

export const WHEELHOUSE = "/var/cache/imgpatch/wheels";

/** Requests still to do at first boot: every package of an install entry already installed is dropped. */
function withoutBuilt(reqs: PackageRequest[], built: readonly string[] | undefined): PackageRequest[] {
  if (!built || built.length === 0) return reqs;
  const done = new Set(built);
  return reqs
    .map((r) =>
      r.uninstall || r.arch.length > 0 ? r : { ...r, packages: r.packages.filter((p) => !done.has(p)) },
    )
    .filter((r) => r.uninstall || r.packages.length > 0);
}

export interface DeferredScript {
  name: string;
  element: string;
}

export interface ElementsReport {
  elementsPath: string[];
  requested: string[];
  elements: Array<{ name: string; path: string; from: string; requiredBy?: string; overrides: string[] }>;
  provided: Record<string, string[]>;
  collisions: HookCollision[];
  deferred: Array<{ phase: PackagePhase; environment: string[]; scripts: DeferredScript[] }>;
  replaced: Array<{ phase: string; script: string; element: string; why: string }>;
  ignoredScripts: Array<{ phase: string; script: string; why: string }>;
  notApplicable: Array<{ phase: string; scripts: DeferredScript[] }>;
  ignoredDirs: Array<{ dir: string; elements: string[] }>;
  packages: PackageRequest[];
  skipped: Array<{ path: string; why: string }>;
  /**
   * labelled: the guest's policy is active and every path written gets its label as it is written
   * (guest/selinux-labeler.ts); relabel-marker: an SELinux config without a policy we can read
   * (or labelling turned off): /.autorelabel is written; not-selinux: disabled or absent.
   */
  selinux: "labelled" | "relabel-marker" | "not-selinux";
  warnings: string[];
}

export interface ElementsPlan {
  ops: GuestOp[];
  report: ElementsReport;
}

function installTypeResolver(options: ElementsPlanOptions): (prefix: string) => string {
  const def = options.defaultInstallType ?? "source";
  const map = new Map<string, string>();
  for (const [k, v] of Object.entries(options.installTypes ?? {})) map.set(k.replace(/-/g, "_"), v);
  return (prefix) => map.get(prefix.replace(/-/g, "_")) ?? def;
}

async function candidateOf(hooks: MergedHooks, e: MergedEntry): Promise<RunPartsCandidate> {
  const name = e.rel.slice(e.rel.lastIndexOf("/") + 1);
  if (e.kind === "file") return { name, regular: true, executable: (e.mode & 0o111) !== 0 };
  if (e.kind === "dir") return { name, regular: false, executable: false };
  // A symlink: follow it inside the merged tree when relative, else on the host (cp -a kept it).
  const target = e.target!;
  if (!target.startsWith("/")) {
    const dir = e.rel.slice(0, e.rel.lastIndexOf("/"));
    const t = hooks.entries.get(posix.normalize(`${dir}/${target}`));
    if (t) return { name, regular: t.kind === "file", executable: (t.mode & 0o111) !== 0 };
  }
  try {
    const st = await stat(e.source!);
    return { name, regular: st.isFile(), executable: st.isFile() && (st.mode & 0o111) !== 0 };
  } catch {
    return { name, regular: false, executable: false };
  }
}

/**
 * DIB's install-types element: for install.d/<prefix>-<type>-install/ directories whose type is the
 * one selected for <prefix>, each script inside is linked into install.d itself.
 */
function applyInstallTypes(
  hooks: MergedHooks,
  typeOf: (prefix: string) => string,
  report: ElementsReport,
): void {
  for (const dir of mergedChildren(hooks, "install.d")) {
    if (dir.kind !== "dir") continue;
    const base = dir.rel.slice("install.d/".length);
    const m = /^(.+)-([A-Za-z0-9]+)-install$/.exec(base);
    if (!m || typeOf(m[1]) !== m[2]) continue;
    for (const f of mergedChildren(hooks, dir.rel)) {
      const name = f.rel.slice(dir.rel.length + 1);
      const rel = `install.d/${name}`;
      if (hooks.entries.has(rel)) {
        report.warnings.push(
          `install type ${m[2]} of ${m[1]}: install.d/${name} already exists; kept the existing one`,
        );
        continue;
      }
      hooks.entries.set(rel, {
        rel,
        kind: "symlink",
        element: f.element,
        mode: 0o777,
        target: `${base}/${name}`,
        source: f.source,
      });
    }
  }
}

export async function buildElementsPlan(fs: GuestFs, options: ElementsPlanOptions): Promise<ElementsPlan> {
  const elementsPath = parseElementsPath(options.elementsPath);
  const all = await findAllElements(elementsPath);
  const closure: ElementClosure = expandElements(options.elements, all, elementsPath);
  const names = new Set(closure.elements.map((e) => e.name));
  const has = (n: string) => names.has(n) || closure.provided.has(n);
  const typeOf = installTypeResolver(options);
  const hooks = await mergeElements(closure.elements, { allowDuplicateHooks: options.allowDuplicateHooks });
  const distro: GuestDistro = distroFromOsRelease(
    (await readTextOrNull(fs, "/etc/os-release")) ?? (await readTextOrNull(fs, "/usr/lib/os-release")),
  );

  const report: ElementsReport = {
    elementsPath,
    requested: [...options.elements],
    elements: closure.elements.map((e: ElementInfo) => ({
      name: e.name,
      path: e.path,
      from: e.from,
      requiredBy: closure.requiredBy.get(e.name),
      overrides: e.overrides,
    })),
    provided: Object.fromEntries(closure.provided),
    collisions: hooks.collisions,
    deferred: [],
    replaced: [],
    ignoredScripts: [],
    notApplicable: [],
    ignoredDirs: [],
    packages: [],
    skipped: [],
    selinux: "not-selinux",
    warnings: [],
  };
  const ops: GuestOp[] = [];
  const madeDirs = new Set<string>();
  const mkdir = (path: string, reason: string, mode = 0o755) => {
    if (madeDirs.has(path)) return;
    madeDirs.add(path);
    ops.push({ op: "mkdir", path, mode, reason });
  };
  const guard = (path: string): boolean => {
    if (isVolatilePath(path)) {
      report.skipped.push({ path, why: "/run and /var/run are a tmpfs at boot: never injected" });
      return false;
    }
    return true;
  };

  // Top-level directories nobody handles.
  const unknown = new Map<string, Set<string>>();
  for (const e of hooks.entries.values()) {
    if (e.rel.includes("/") || e.kind !== "dir" || HANDLED_DIRS.has(e.rel)) continue;
    unknown.set(e.rel, new Set());
  }
  for (const e of hooks.entries.values()) {
    const top = e.rel.split("/")[0];
    unknown.get(top)?.add(e.element);
  }
  report.ignoredDirs = [...unknown].map(([dir, els]) => ({ dir, elements: [...els].sort() }));

  // 1. bin/* → /usr/local/bin, 0755 root (DIB's install-bin).
  const bins = mergedChildren(hooks, "bin").filter((e) => e.kind !== "dir");
  if (bins.length > 0) mkdir("/usr/local/bin", "bin/ of elements");
  for (const b of bins) {
    const name = b.rel.slice(4);
    ops.push({
      op: "write",
      path: `/usr/local/bin/${name}`,
      mode: 0o755,
      source: { host: b.source! },
      reason: `bin/ of ${b.element}`,
    });
  }

  // 2. static/ → the guest root, as is.
  for (const e of mergedSubtree(hooks, "static")) {
    const path = e.rel.slice("static".length);
    if (!guard(path)) continue;
    if (e.kind === "dir") mkdir(path, `static/ of ${e.element}`);
    else if (e.kind === "file")
      ops.push({
        op: "write",
        path,
        mode: e.mode,
        source: { host: e.source! },
        reason: `static/ of ${e.element}`,
      });
    else ops.push({ op: "symlink", path, target: e.target!, reason: `static/ of ${e.element}` });
  }

  // 3. os-refresh-config: the phase directories and the merged tree (rsync -r: no symlinks).
  if (has("os-refresh-config")) {
    mkdir(ORC_BASE, "os-refresh-config base");
    for (const p of ORC_PHASES) mkdir(`${ORC_BASE}/${p}`, "os-refresh-config phase directory");
    for (const e of mergedSubtree(hooks, "os-refresh-config")) {
      const path = `${ORC_BASE}${e.rel.slice("os-refresh-config".length)}`;
      if (e.kind === "symlink") {
        report.skipped.push({ path, why: "symlink: rsync -r does not copy symlinks" });
        continue;
      }
      if (e.kind === "dir") mkdir(path, `os-refresh-config/ of ${e.element}`);
      else
        ops.push({
          op: "write",
          path,
          mode: e.mode,
          source: { host: e.source! },
          reason: `os-refresh-config/ of ${e.element}`,
        });
    }
  } else if (hooks.entries.has("os-refresh-config")) {
    report.warnings.push(
      "elements ship os-refresh-config/ scripts but the os-refresh-config element is not included",
    );
  }

  // 4. os-apply-config: the template root and the merged templates (rsync -Cr).
  if (has("os-apply-config")) {
    mkdir("/usr/libexec/os-apply-config", "os-apply-config");
    mkdir(OAC_TEMPLATES, "os-apply-config template root");
    for (const e of mergedSubtree(hooks, "os-apply-config")) {
      const rel = e.rel.slice("os-apply-config/".length);
      const path = `${OAC_TEMPLATES}/${rel}`;
      if (cvsExcluded(rel)) {
        report.skipped.push({ path, why: "excluded by rsync -C" });
        continue;
      }
      if (e.kind === "symlink") {
        report.skipped.push({ path, why: "symlink: rsync -r does not copy symlinks" });
        continue;
      }
      if (e.kind === "dir") mkdir(path, `os-apply-config/ of ${e.element}`);
      else
        ops.push({
          op: "write",
          path,
          mode: e.mode,
          source: { host: e.source! },
          reason: `os-apply-config/ of ${e.element}`,
        });
    }
  } else if (hooks.entries.has("os-apply-config")) {
    report.warnings.push(
      "elements ship os-apply-config/ templates but the os-apply-config element is not included",
    );
  }

  // 5. Known elements.
  const replacedBy = new Map<string, string>(); // "phase/script" → why
  for (const [element, r] of Object.entries(REPLACED_SCRIPTS)) {
    if (!names.has(element)) continue;
    for (const phase of r.phases) {
      for (const e of mergedChildren(hooks, phase)) {
        const script = e.rel.slice(phase.length + 1);
        if (e.element === element && r.match.test(script)) replacedBy.set(e.rel, r.why);
      }
    }
  }
  // Hook elements: install.d/hook-<name>.py → /var/lib/heat-config/hooks/<name>.
  for (const e of mergedChildren(hooks, "install.d")) {
    const file = e.rel.slice("install.d/".length);
    const hook = hookNameFromFile(file);
    if (!hook || e.kind !== "file" || !e.element.startsWith("heat-config-")) continue;
    mkdir("/var/lib/heat-config", "heat-config state");
    mkdir(HEAT_HOOKS_DIR, "heat-config hooks");
    ops.push({
      op: "write",
      path: `${HEAT_HOOKS_DIR}/${hook}`,
      mode: 0o755,
      source: { host: e.source! },
      reason: `hook of ${e.element}`,
    });
    for (const s of mergedChildren(hooks, "install.d")) {
      const name = s.rel.slice("install.d/".length);
      if (s.element === e.element && HOOK_INSTALL_SCRIPT.test(name)) {
        replacedBy.set(s.rel, `installs the ${hook} hook, copied statically to ${HEAT_HOOKS_DIR}/${hook}`);
      }
    }
  }
  if (names.has("selinux-permissive")) {
    mkdir("/etc/selinux", "selinux-permissive");
    ops.push({
      op: "write",
      path: "/etc/selinux/config",
      mode: 0o644,
      source: { text: selinuxPermissiveConfig() },
      reason: "selinux-permissive",
    });
  }
  const occ = has("os-collect-config");
  if (occ) {
    ops.push({
      op: "write",
      path: OCC_CONF,
      mode: 0o600,
      source: { text: occBootstrapConf() },
      onlyIfAbsent: true,
      reason: "os-collect-config bootstrap config (credentials later: 0600)",
    });
    // The element writes its unit to /lib/systemd/system when /lib/systemd exists, else /usr/lib.
    const unitDir =
      (await statOrNull(fs, "/lib/systemd"))?.type === "directory"
        ? "/lib/systemd/system"
        : "/usr/lib/systemd/system";
    mkdir(unitDir, "systemd unit directory");
    ops.push({
      op: "write",
      path: `${unitDir}/${OCC_UNIT}`,
      mode: 0o644,
      source: {
        // Source installs link the venv's binary into /usr/local/bin; packages put it in /usr/bin.
        text: occUnitText(
          typeOf("os-collect-config") === "package" ? "/usr/bin/os-collect-config" : undefined,
        ),
      },
      reason: "os-collect-config unit",
    });
    ops.push({ op: "enable", unit: OCC_UNIT, reason: "os-svc-enable -n os-collect-config" });
  }

  // 6. Deferred install phases.
  applyInstallTypes(hooks, typeOf, report);
  const envFiles = selectEnvironmentFiles(
    await Promise.all(mergedChildren(hooks, "environment.d").map((e) => candidateOf(hooks, e))),
  );
  const pythonVersion = options.pythonVersion ?? defaultPythonVersion(distro);
  const conditionEnv: Record<string, string> = {
    DIB_PYTHON_VERSION: pythonVersion,
    DISTRO_NAME: distro.distro,
    DIB_RELEASE: distro.release,
    DIB_INIT_SYSTEM: "systemd",
    ...(options.environment ?? {}),
  };
  const pk = await collectPackageInstalls(closure.elements, typeOf, distro, conditionEnv);
  if (!has("package-installs") && pk.requests.length > 0) {
    // Without the package-installs element DIB ignores package-installs.yaml files.
    report.warnings.push(
      `package-installs.yaml of ${[...new Set(pk.requests.map((r) => r.element))].join(", ")} ignored: the package-installs element is not included`,
    );
    pk.requests = [];
  }
  report.packages = pk.requests;
  report.warnings.push(...pk.warnings);
  const phases: PayloadPhase[] = [];
  for (const phase of PACKAGE_PHASES) {
    const children = mergedChildren(hooks, phase);
    const sel = selectScripts(await Promise.all(children.map((e) => candidateOf(hooks, e))));
    for (const i of sel.ignored) report.ignoredScripts.push({ phase, script: i.name, why: i.why });
    const scripts: DeferredScript[] = [];
    for (const s of sel.run) {
      const entry = hooks.entries.get(`${phase}/${s}`)!;
      const why = replacedBy.get(entry.rel);
      if (why) report.replaced.push({ phase, script: s, element: entry.element, why });
      else scripts.push({ name: s, element: entry.element });
    }
    for (const sc of scripts) {
      const entry = hooks.entries.get(`${phase}/${sc.name}`)!;
      const src = entry.source;
      if (!src) continue;
      const body = await readFile(src, "utf8").catch(() => "");
      if (/rpm\s+-ql\b[^\n]*\|\s*xargs\s+rm\b/.test(body)) {
        report.warnings.push(
          `${phase}/${sc.name} (${sc.element}) deletes the files of installed RPM packages (rpm -ql | xargs rm); the rpmdb will disagree with the disk`,
        );
      }
    }
    report.deferred.push({ phase, environment: envFiles, scripts });
    phases.push({ phase, env: envFiles, scripts: scripts.map((s) => s.name) });
  }
  const needPayload = phases.some((p) => p.scripts.length > 0) || pk.requests.length > 0;
  if (needPayload) {
    mkdir("/usr/lib/imgpatch", "imgpatch");
    mkdir("/usr/lib/imgpatch/elements", "deferred element phases");
    mkdir(ELEMENTS_HOOKS, "merged element hooks (like DIB's /tmp/in_target.d)");
    // The whole merged tree, as DIB's /tmp/in_target.d: scripts reach their element's other files
    // through $(dirname $0)/../bin, ../os-refresh-config, ../upstart and the like.
    const tops = [...hooks.entries.values()]
      .filter(
        (e) =>
          !e.rel.includes("/") &&
          e.kind === "dir" &&
          !(BUILD_HOST_PHASES as readonly string[]).includes(e.rel),
      )
      .map((e) => e.rel)
      .sort();
    for (const top of tops) {
      mkdir(`${ELEMENTS_HOOKS}/${top}`, "merged element hooks");
      for (const e of mergedSubtree(hooks, top)) {
        const path = `${ELEMENTS_HOOKS}/${e.rel}`;
        if (e.kind === "dir") mkdir(path, `${top} of ${e.element}`);
        else if (e.kind === "file")
          ops.push({
            op: "write",
            path,
            mode: e.mode,
            source: { host: e.source! },
            reason: `${top} of ${e.element}`,
          });
        else ops.push({ op: "symlink", path, target: e.target!, reason: `${top} of ${e.element}` });
      }
    }
    const extraEnv: Record<string, string> = {
      DIB_PYTHON_VERSION: pythonVersion,
      ...(options.environment ?? {}),
    };
    if (options.wheelsDir !== undefined) {
      mkdir("/var/cache/imgpatch", "imgpatch cache");
      mkdir(WHEELHOUSE, "wheelhouse for first-boot pip installs");
      for (const name of (await readdir(options.wheelsDir)).sort()) {
        const src = join(options.wheelsDir, name);
        if (!(await stat(src)).isFile() || !/\.(whl|tar\.gz|zip|tar\.bz2)$/.test(name)) continue;
        ops.push({
          op: "write",
          path: `${WHEELHOUSE}/${name}`,
          mode: 0o644,
          source: { host: src },
          reason: "wheelhouse",
        });
      }
      extraEnv.PIP_FIND_LINKS = WHEELHOUSE;
      if (options.offline) extraEnv.PIP_NO_INDEX = "1";
    }
    const shipped = new Set(bins.map((b) => b.rel.slice(4)));
    for (const [name, script] of Object.entries(HELPER_SHIMS)) {
      if (shipped.has(name)) continue;
      mkdir("/usr/local/bin", "helper commands");
      ops.push({
        op: "write",
        path: `/usr/local/bin/${name}`,
        mode: 0o755,
        source: { text: script },
        onlyIfAbsent: true,
        reason: `stand-in for DIB's ${name} (used by element scripts)`,
      });
    }
    const installTypes: Record<string, string> = {};
    for (const [k, v] of Object.entries(options.installTypes ?? {})) installTypes[k.replace(/-/g, "_")] = v;
    ops.push({
      op: "write",
      path: ELEMENTS_RUNNER,
      mode: 0o755,
      source: {
        text: elementsPayloadScript({
          elements: closure.elements.map((e) => e.name),
          phases,
          packages: withoutBuilt(pk.requests, options.installedAtBuild),
          defaultInstallType: options.defaultInstallType ?? "source",
          installTypes,
          distro,
          extraEnv,
        }),
      },
      reason: "deferred install phases",
    });
    ops.push({
      op: "firstboot",
      name: "dib-elements",
      script: elementsQueueScript(),
      before: occ ? [OCC_UNIT] : [],
      reason: "run the deferred phases once at first boot",
    });
    if (occ) {
      const dropDir = `/etc/systemd/system/${OCC_UNIT}.d`;
      mkdir("/etc/systemd/system", "systemd configuration");
      mkdir(dropDir, "os-collect-config drop-ins");
      ops.push({
        op: "write",
        path: `${dropDir}/10-imgpatch-firstboot.conf`,
        mode: 0o644,
        source: { text: occFirstbootDropIn(FIRSTBOOT.unitName) },
        reason: "os-collect-config waits for the first-boot install",
      });
    }
  }

  // Build-host phases: listed, not run.
  for (const phase of BUILD_HOST_PHASES) {
    const scripts = mergedChildren(hooks, phase)
      .filter((e) => e.kind !== "dir")
      .map((e) => ({ name: e.rel.slice(phase.length + 1), element: e.element }));
    if (scripts.length > 0) report.notApplicable.push({ phase, scripts });
  }

  // SELinux guests: DIB relabels the whole image at the end (setfiles in a chroot). Here every
  // path is labelled as it is written, from the guest's own policy; only when that policy cannot
  // be read is the first-boot relabel marker left.
  const selinuxConfig = await readTextOrNull(fs, "/etc/selinux/config");
  if (selinuxLabeler(fs)?.active) report.selinux = "labelled";
  else if (selinuxConfig !== null && !/^SELINUX=disabled\s*$/m.test(selinuxConfig)) {
    report.selinux = "relabel-marker";
    ops.push({
      op: "write",
      path: "/.autorelabel",
      mode: 0o644,
      source: { text: "" },
      reason: "SELinux guest without a readable policy: relabel at next boot",
    });
  }

  return { ops: ops.filter((o) => !("path" in o) || guard(o.path)), report };
}
