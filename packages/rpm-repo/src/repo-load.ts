/**
 * Load repositories and the installed packages into a Pool: repomd.xml, then primary, then — only
 * for file dependencies that no primary file list answers — filelists, restricted to those paths.
 */

import type { Dep } from "./dep.js";
import { RepoFormatError } from "./errors.js";
import { type FileOwners, readFilelists } from "./filelists.js";
import { filterModular, type ModuleState, readModules } from "./modules.js";
import type { PackageMeta } from "./package-meta.js";
import { Pool, type RepoInfo } from "./pool.js";
import { DEFAULT_METADATA_LIMITS, type MetadataLimits, readPrimary } from "./primary.js";
import { type RepoSource, repoSource } from "./repo-source.js";
import { type Repomd, readRepomd } from "./repomd.js";
import { readFilelistsSqlite, readPrimarySqlite } from "./sqlite-metadata.js";

export interface RepoSpec {
  id: string;
  baseurl: string;
  priority?: number;
  cost?: number;
  /** module_hotfixes=1: no modular filtering for this repository. */
  moduleHotfixes?: boolean;
}

export interface LoadedRepo {
  info: RepoInfo;
  source: RepoSource;
  repomd: Repomd;
  packages: PackageMeta[];
  /** Packages hidden by modular filtering. */
  hiddenModular: number;
}

export interface LoadTimes {
  /** Milliseconds spent reading and parsing repository metadata. */
  parseMs: number;
  filelistsLoaded: string[];
}

/**
 * Read one repository's repomd and primary (and its modules metadata: packages of module streams
 * the guest has not enabled are hidden, given the guest's `moduleStates`).
 */
export async function loadRepo(
  spec: RepoSpec,
  limits: MetadataLimits = DEFAULT_METADATA_LIMITS,
  moduleStates: Map<string, ModuleState> = new Map(),
): Promise<LoadedRepo> {
  const source = repoSource(spec.baseurl);
  const repomd = await readRepomd(source);
  let packages: PackageMeta[] = [];
  const add = (p: PackageMeta) => packages.push(p);
  // XML is preferred: it streams (sqlite needs the whole file in memory) and is always there in
  // createrepo_c's output; primary_db alone (old yum repositories, --no-xml mirrors) is read too.
  const e = repomd.data.get("primary");
  const db = repomd.data.get("primary_db");
  if (e !== undefined) await readPrimary(source, e.href, e.checksum, spec.id, add, limits);
  else if (db !== undefined) await readPrimarySqlite(source, db.href, db.checksum, spec.id, add, limits);
  else throw new RepoFormatError("repomd.xml lists no primary metadata", { file: source.base });
  let hiddenModular = 0;
  const mod = repomd.data.get("modules");
  if (mod !== undefined && !spec.moduleHotfixes) {
    const r = filterModular(packages, await readModules(source, mod), moduleStates);
    packages = r.kept;
    hiddenModular = r.hidden;
  }
  const info = { id: spec.id, priority: spec.priority ?? 99, cost: spec.cost ?? 1000 };
  return { info, source, repomd, packages, hiddenModular };
}

/** Build the pool; loads filelists of the repositories whose packages hold unanswered file deps. */
export async function buildPool(
  basearch: string,
  repos: LoadedRepo[],
  installed: PackageMeta[],
  limits: MetadataLimits = DEFAULT_METADATA_LIMITS,
): Promise<{ pool: Pool; filelistsLoaded: string[] }> {
  const pool = new Pool(basearch);
  for (const r of repos) {
    pool.addRepo(r.info);
    for (const p of r.packages) pool.add(p);
  }
  for (const p of installed) pool.add(p, true);
  const wanted = new Set<string>();
  // Unversioned paths already found in the pool (the same path is required by many packages).
  const answered = new Set<string>();
  const want = (d: Dep): void => {
    if (d.kind === "rich") for (const a of d.args) want(a);
    else if (d.name.charCodeAt(0) === 0x2f && !wanted.has(d.name) && !answered.has(d.name)) {
      if (pool.whatProvides(d).length === 0) wanted.add(d.name);
      else if (d.flags === 0) answered.add(d.name);
    }
  };
  for (const p of pool.packages) {
    for (const d of p.requires) want(d);
    for (const d of p.recommends) want(d);
    for (const d of p.supplements) want(d);
    for (const d of p.conflicts) want(d);
  }
  const filelistsLoaded: string[] = [];
  if (wanted.size > 0) {
    for (const r of repos) {
      const fl = r.repomd.data.get("filelists");
      const fldb = r.repomd.data.get("filelists_db");
      let owners: FileOwners;
      if (fl !== undefined) owners = await readFilelists(r.source, fl.href, fl.checksum, wanted, limits);
      else if (fldb !== undefined)
        owners = await readFilelistsSqlite(r.source, fldb.href, fldb.checksum, wanted, limits);
      else continue;
      filelistsLoaded.push(r.info.id);
      const byId = new Map<string, PackageMeta>();
      for (const p of r.packages) if (p.checksum !== null) byId.set(p.checksum.value, p);
      for (const [pkgid, files] of owners) {
        const p = byId.get(pkgid);
        if (p !== undefined) pool.addFiles(p, files);
      }
    }
  }
  return { pool, filelistsLoaded };
}
