/**
 * `--install` for RPM guests, library side: read the guest's rpmdb and repositories (or the given
 * --repo base URLs), resolve as dnf would, and put the transaction in rpm's order. The caller
 * unpacks the packages (rpm-inject) and registers them.
 */
import { RepoFormatError, RepoUnsupportedError } from "./errors.js";
import { readModuleStates } from "./modules.js";
import { nevra, type PackageMeta } from "./package-meta.js";
import { buildPool, type LoadedRepo, loadRepo, type RepoSpec } from "./repo-load.js";
import { readAll, verified } from "./repo-source.js";
import { type GuestFileReader, locateRpmdb, type RpmdbLocation, readRpmdb } from "./rpmdb.js";
import type { InstalledPackage } from "./rpmdb-header.js";
import { type SolveResult, solveInstall, type TransactionItem } from "./solver.js";
import { installOrder } from "./transaction.js";
import { readDnfVars, readGuestRepos, type YumRepo } from "./yum-repos.js";

export interface InstallRequest {
  guest: GuestFileReader;
  specs: string[];
  /** --repo base URLs; when given, they replace the guest's own repositories. */
  repos?: string[];
  basearch?: string;
  releasever?: string;
  installWeakDeps?: boolean;
}

export interface RepoUse {
  id: string;
  baseurl: string;
  gpgcheck: boolean;
  gpgkeys: string[];
}

export interface InstallPlan {
  rpmdb: RpmdbLocation;
  basearch: string;
  releasever: string;
  repos: RepoUse[];
  /** Guest repositories skipped, with the reason (mirrorlist-only...). */
  skipped: string[];
  /** The packages to install, in rpm's order. */
  items: TransactionItem[];
  alreadyInstalled: string[];
  installed: InstalledPackage[];
  filelistsLoaded: string[];
  times: { parseMs: number; resolveMs: number };
  loaded: Map<string, LoadedRepo>;
}

/** The guest's architecture: the commonest arch of its installed packages. */
export function guestBasearch(installed: PackageMeta[]): string {
  const count = new Map<string, number>();
  for (const p of installed)
    if (p.arch !== "noarch" && p.arch !== "(none)") count.set(p.arch, (count.get(p.arch) ?? 0) + 1);
  let best = "";
  let n = 0;
  for (const [a, c] of count) if (c > n) [best, n] = [a, c];
  if (best === "")
    throw new RepoUnsupportedError("cannot tell the guest's architecture from its rpmdb (give basearch)");
  return /^i[3-6]86$/.test(best) ? "i686" : best;
}

/** `$releasever` as dnf computes it: the version of what provides system-release(releasever). */
export function guestReleasever(installed: PackageMeta[]): string {
  for (const p of installed) {
    for (const d of p.provides) {
      if (d.kind === "simple" && d.name === "system-release(releasever)" && d.evr !== null)
        return d.evr.version;
    }
  }
  for (const name of ["system-release", "redhat-release", "centos-stream-release", "fedora-release"]) {
    const p = installed.find(
      (q) => q.name === name || q.provides.some((d) => d.kind === "simple" && d.name === name),
    );
    if (p !== undefined) return p.evr.version;
  }
  throw new RepoUnsupportedError("cannot tell $releasever from the guest's rpmdb (give releasever)");
}

export async function planInstall(req: InstallRequest): Promise<InstallPlan> {
  const rpmdb = await locateRpmdb(req.guest);
  if (rpmdb === null) throw new RepoUnsupportedError("the guest has no rpmdb (not an RPM-based guest)");
  const t0 = performance.now();
  const installed = await readRpmdb(req.guest, rpmdb);
  const basearch = req.basearch ?? guestBasearch(installed);
  const releasever = req.releasever ?? (req.repos !== undefined ? "" : guestReleasever(installed));
  const repos: RepoUse[] = [];
  const skipped: string[] = [];
  let specs: RepoSpec[];
  if (req.repos !== undefined && req.repos.length > 0) {
    specs = req.repos.map((baseurl, i) => ({ id: `repo${i + 1}`, baseurl }));
    for (const s of specs) repos.push({ id: s.id, baseurl: s.baseurl, gpgcheck: false, gpgkeys: [] });
  } else {
    const vars = await readDnfVars(req.guest, { releasever, basearch, arch: basearch });
    const guestRepos: YumRepo[] = (await readGuestRepos(req.guest, vars)).filter((r) => r.enabled);
    specs = [];
    for (const r of guestRepos) {
      const url = r.baseurls[0];
      if (url === undefined) {
        skipped.push(`${r.id} (${r.file}): no baseurl (mirrorlist/metalink are not followed)`);
        continue;
      }
      specs.push({
        id: r.id,
        baseurl: url,
        priority: r.priority,
        cost: r.cost,
        moduleHotfixes: r.moduleHotfixes,
      });
      repos.push({ id: r.id, baseurl: url, gpgcheck: r.gpgcheck, gpgkeys: r.gpgkeys });
    }
    if (specs.length === 0)
      throw new RepoFormatError("the guest has no enabled repository with a baseurl; give --repo", {
        file: "/etc/yum.repos.d",
      });
  }
  const moduleStates = await readModuleStates(req.guest);
  const loadedList = await Promise.all(specs.map((s) => loadRepo(s, undefined, moduleStates)));
  const { pool, filelistsLoaded } = await buildPool(basearch, loadedList, installed);
  const t1 = performance.now();
  const result: SolveResult = solveInstall(pool, req.specs, { installWeakDeps: req.installWeakDeps ?? true });
  const byPkg = new Map(result.install.map((t) => [t.pkg, t]));
  const items = installOrder(
    pool,
    result.install.map((t) => t.pkg),
  ).map((p) => byPkg.get(p)!);
  const t2 = performance.now();
  return {
    rpmdb,
    basearch,
    releasever,
    repos,
    skipped,
    items,
    alreadyInstalled: result.alreadyInstalled,
    installed,
    filelistsLoaded,
    times: { parseMs: t1 - t0, resolveMs: t2 - t1 },
    loaded: new Map(loadedList.map((l) => [l.info.id, l])),
  };
}

/** The bytes of a planned package, its checksum checked against the metadata. */
export async function fetchPackage(
  plan: InstallPlan,
  item: TransactionItem,
  maxBytes = 4 * 2 ** 30,
): Promise<Uint8Array> {
  const repo = plan.loaded.get(item.pkg.repo);
  if (repo === undefined) throw new RepoFormatError(`no repository ${item.pkg.repo} for ${nevra(item.pkg)}`);
  const where = repo.source.locate(item.pkg.location);
  const bytes = await readAll(
    verified(repo.source.open(item.pkg.location), item.pkg.checksum, maxBytes, where),
    maxBytes,
    where,
  );
  return bytes;
}

/** A JSON-friendly view of the plan (what --dry-run --json prints). */
export function planSummary(plan: InstallPlan): Record<string, unknown> {
  return {
    rpmdb: plan.rpmdb,
    basearch: plan.basearch,
    releasever: plan.releasever,
    repos: plan.repos,
    skipped: plan.skipped,
    install: plan.items.map((t) => ({
      nevra: nevra(t.pkg),
      repo: t.pkg.repo,
      reason: t.reason,
      why: t.why,
      size: t.pkg.size,
    })),
    alreadyInstalled: plan.alreadyInstalled,
    filelistsLoaded: plan.filelistsLoaded,
  };
}
