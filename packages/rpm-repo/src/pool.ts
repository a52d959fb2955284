/**
 * The pool: every candidate package (from the repositories) and every installed one (from the
 * rpmdb), indexed by what they provide, as libsolv's pool is. Provides come from the package's
 * provides list, its own name = EVR (rpm adds that to every package) and its file list.
 */
import { type Dep, rangesOverlap, SENSE_EQUAL, type SimpleDep } from "./dep.js";
import type { PackageMeta } from "./package-meta.js";

export interface RepoInfo {
  id: string;
  /** dnf's priority: lower wins (default 99). */
  priority: number;
  /** dnf's cost: lower wins among equal versions (default 1000). */
  cost: number;
}

/** Architectures a basearch accepts, best first (noarch always scores as neutral). */
const ARCH_FAMILIES: Record<string, string[]> = {
  x86_64: ["x86_64"],
  aarch64: ["aarch64"],
  ppc64le: ["ppc64le"],
  s390x: ["s390x"],
  i686: ["i686", "i586", "i486", "i386"],
};

function indexUnder(m: Map<string, PackageMeta[]>, k: string, p: PackageMeta): void {
  const l = m.get(k);
  if (l === undefined) m.set(k, [p]);
  else if (l[l.length - 1] !== p) l.push(p);
}

export class Pool {
  readonly packages: PackageMeta[] = [];
  readonly installed: PackageMeta[] = [];
  readonly repos = new Map<string, RepoInfo>();
  private readonly providers = new Map<string, PackageMeta[]>();
  private readonly fileOwners = new Map<string, PackageMeta[]>();
  readonly arches: ReadonlySet<string>;
  readonly installedSet = new Set<PackageMeta>();

  constructor(readonly basearch: string) {
    this.arches = new Set([...(ARCH_FAMILIES[basearch] ?? [basearch]), "noarch"]);
  }

  addRepo(info: RepoInfo): void {
    this.repos.set(info.id, info);
  }

  /** Add a repository package (dropped when its architecture is foreign) or an installed one. */
  add(p: PackageMeta, installed = false): void {
    if (installed) {
      this.installed.push(p);
      this.installedSet.add(p);
    } else {
      if (!this.arches.has(p.arch)) return;
      this.packages.push(p);
    }
    this.index(p);
  }

  private index(p: PackageMeta): void {
    indexUnder(this.providers, p.name, p);
    for (const d of p.provides) if (d.kind === "simple") indexUnder(this.providers, d.name, p);
    for (const f of p.files) indexUnder(this.fileOwners, f, p);
  }

  /** Record extra files of a package (from filelists). */
  addFiles(p: PackageMeta, files: string[]): void {
    // primary's packages share one frozen empty list until they own files.
    if (Object.isFrozen(p.files)) p.files = [...p.files];
    for (const f of files) {
      if (p.files.includes(f)) continue;
      p.files.push(f);
      const l = this.fileOwners.get(f);
      if (l === undefined) this.fileOwners.set(f, [p]);
      else l.push(p);
    }
  }

  /** Does `p` provide the simple dependency `d`? */
  provides(p: PackageMeta, d: SimpleDep): boolean {
    if (d.name.startsWith("/") && p.files.includes(d.name)) return true;
    if (p.name === d.name && rangesOverlap(SENSE_EQUAL, p.evr, d.flags, d.evr)) return true;
    for (const q of p.provides) {
      if (q.kind === "simple" && q.name === d.name && rangesOverlap(q.flags, q.evr, d.flags, d.evr))
        return true;
    }
    return false;
  }

  /** Every package (installed or not) providing `d`. */
  whatProvides(d: SimpleDep): PackageMeta[] {
    const out: PackageMeta[] = [];
    for (const p of this.providers.get(d.name) ?? []) if (this.provides(p, d)) out.push(p);
    if (d.name.startsWith("/")) {
      for (const p of this.fileOwners.get(d.name) ?? []) if (!out.includes(p)) out.push(p);
    }
    return out;
  }

  /** Does obsoletes entry `d` of some package hit package `p`? (by name, as libsolv by default) */
  obsoletes(d: Dep, p: PackageMeta): boolean {
    return d.kind === "simple" && d.name === p.name && rangesOverlap(SENSE_EQUAL, p.evr, d.flags, d.evr);
  }

  repoOf(p: PackageMeta): RepoInfo {
    return this.repos.get(p.repo) ?? { id: p.repo, priority: 99, cost: 1000 };
  }
}
