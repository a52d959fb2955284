/**
 * The whole operation, as `apt-get install` does it, one call per operation:
 *
 *   planDebInstall   reads the guest (dpkg status, architectures, apt settings, sources), loads the
 *                    repositories (the guest's own unless told otherwise, plus --repo entries),
 *                    reads local .debs, resolves — nothing is written, nothing but indexes fetched
 *   applyDebPlan     downloads the closure (verified, cached), creates the system accounts the
 *                    scripts would create, unpacks every package in order, records them in dpkg's
 *                    database, and returns the first-boot script that configures them
 */
import type { PkgTarget } from "@imgpatch/pkgkit";
import { readAptSettings } from "./apt-config.js";
import { Stanza } from "./control.js";
import { type DebFile, readDeb } from "./deb-file.js";
import { infoName } from "./dpkg-db.js";
import { DebConflictError } from "./errors.js";
import { configureScript, createSystemAccounts, packagesAccounts } from "./firstboot.js";
import { createFetcher, type Fetcher, type FetchProgress } from "./index-fetch.js";
import { unpackDebs } from "./install.js";
import { loadRepositories, type RepoPackage } from "./packages-index.js";
import { parseRelations } from "./relation.js";
import type { ReleaseFile } from "./release.js";
import { type Request, resolveInstall } from "./resolve.js";
import { parseRepoOption, readGuestSources, type SourceEntry } from "./sources.js";
import { readDpkgState } from "./status.js";

export interface DebInstallOptions {
  /** Package names ("name" or "name=version"), as --install. */
  install?: string[];
  /** Local .deb files, as --deb (dependencies resolved like `apt install ./x.deb`). */
  debs?: string[];
  /** Extra one-line sources, as --repo. */
  repos?: string[];
  /** Ignore the guest's own sources (only --repo entries). */
  noGuestSources?: boolean;
  /** Overrides the guest's APT::Install-Recommends (--no-install-recommends → false). */
  installRecommends?: boolean;
  /** Accept repositories whose signature cannot be verified (loud). */
  allowUnauthenticated?: boolean;
  /** Accept a Release whose Valid-Until has passed (loud), as --allow-expired. */
  allowExpired?: boolean;
  /** Extra trusted key files on the host. */
  hostKeys?: string[];
  /** "Now" for the Release date checks (ms since the epoch; tests). */
  now?: number;
  fetcher?: Fetcher;
  cache?: string;
  progress?: FetchProgress;
  warn?: (message: string) => void;
}

export interface PlanEntry {
  package: string;
  version: string;
  architecture: string;
  /** Download size and installed size (KiB, from the index). */
  size: number;
  installedSizeKiB: number;
  reason: string;
  /** Repository URI or the local file. */
  from: string;
}

export interface DebPlan {
  packages: PlanEntry[];
  repositories: { origin: string; uri: string; suite: string; trust: string; packages: number }[];
  skippedRecommends: string[];
  /** Milliseconds: loading the repositories (Release, Packages fetched or cached, parsed) and resolving. */
  timings: { indexesMs: number; resolveMs: number };
  /** Internal: what apply needs. */
  readonly entries: RepoPackage[];
  readonly localFiles: Map<string, string>;
}

const LOCAL_RELEASE: ReleaseFile = {
  stanza: new Stanza(),
  sha256: new Map(),
  architectures: [],
  components: [],
  acquireByHash: false,
};

function localPackage(deb: DebFile, path: string): RepoPackage {
  return {
    name: deb.package,
    version: deb.version,
    architecture: deb.architecture,
    stanza: deb.control,
    url: path,
    size: deb.source.size,
    sha256: "",
    source: { uri: "file:///", suite: "./", components: [], origin: path },
    release: LOCAL_RELEASE,
    provides: parseRelations(deb.control.get("Provides")).map((g) => g[0]),
  };
}

export async function planDebInstall(target: PkgTarget, opts: DebInstallOptions): Promise<DebPlan> {
  const state = await readDpkgState(target);
  if (!state)
    throw new DebConflictError("the guest has no /var/lib/dpkg/status: not a Debian-family guest", {
      file: target.name,
    });
  const settings = await readAptSettings(target);
  const native = state.nativeArch ?? "amd64";
  const foreign = (settings.values.get("apt::architectures") ?? "")
    .split(/[\s,]+/)
    .filter((a) => a !== "" && a !== native);
  const architectures = [native, ...foreign];
  const sources: SourceEntry[] = [
    ...(opts.noGuestSources ? [] : await readGuestSources(target)),
    ...(opts.repos ?? []).map(parseRepoOption),
  ];
  const fetcher = opts.fetcher ?? createFetcher({ cache: opts.cache, progress: opts.progress });
  const tIndexes = performance.now();
  const repos = await loadRepositories(target, sources, {
    fetcher,
    architectures,
    allowUnauthenticated: opts.allowUnauthenticated,
    hostKeys: opts.hostKeys,
    aptValues: settings.values,
    allowExpired: opts.allowExpired,
    now: opts.now,
    warn: opts.warn,
  });
  const indexesMs = performance.now() - tIndexes;
  const tResolve = performance.now();
  const localFiles = new Map<string, string>();
  const requests: Request[] = [];
  const local: RepoPackage[] = [];
  for (const path of opts.debs ?? []) {
    const deb = await readDeb(path);
    try {
      const p = localPackage(deb, path);
      local.push(p);
      localFiles.set(`${p.name}=${p.version}`, path);
      requests.push({ name: p.name, pkg: p });
    } finally {
      await deb.close();
    }
  }
  for (const n of opts.install ?? []) {
    const eq = n.indexOf("=");
    requests.push(eq > 0 ? { name: n.slice(0, eq), version: n.slice(eq + 1) } : { name: n });
  }
  const plan = resolveInstall(requests, [...local, ...repos.flatMap((r) => r.packages)], state.stanzas, {
    settings,
    architectures,
    installRecommends: opts.installRecommends,
  });
  const resolveMs = performance.now() - tResolve;
  return {
    packages: plan.install.map(({ pkg, reason }) => ({
      package: pkg.name,
      version: pkg.version,
      architecture: pkg.architecture,
      size: pkg.size,
      installedSizeKiB: Number(pkg.stanza.get("Installed-Size") ?? 0),
      reason,
      from: pkg.sha256 === "" ? pkg.url : pkg.source.uri,
    })),
    repositories: repos.map((r) => ({
      origin: r.source.origin,
      uri: r.source.uri,
      suite: r.source.suite,
      trust: r.trust,
      packages: r.packages.length,
    })),
    skippedRecommends: plan.skippedRecommends,
    timings: { indexesMs, resolveMs },
    entries: plan.install.map((p) => p.pkg),
    localFiles,
  };
}

export interface DebApplyReport {
  packages: {
    package: string;
    version: string;
    files: number;
    bytes: number;
    newConffiles: string[];
    deferredPreinst: boolean;
  }[];
  accounts: string[];
  /** The first-boot script (the caller queues it). */
  firstbootScript: string;
  /** Milliseconds: .debs fetched (or found in the cache) and opened, files written, database written. */
  timings: { fetchMs: number; unpackMs: number; databaseMs: number };
}

export async function applyDebPlan(
  target: PkgTarget,
  plan: DebPlan,
  opts: Pick<DebInstallOptions, "fetcher" | "cache" | "progress"> = {},
): Promise<DebApplyReport> {
  const fetcher = opts.fetcher ?? createFetcher({ cache: opts.cache, progress: opts.progress });
  const debs: DebFile[] = [];
  const tFetch = performance.now();
  try {
    for (const p of plan.entries) {
      const path = p.sha256 === "" ? p.url : await fetcher.fetchVerified(p.url, p.size, p.sha256);
      debs.push(await readDeb(path, { name: p.sha256 === "" ? path : p.url.replace(/^.*\//, "") }));
    }
    const fetchMs = performance.now() - tFetch;
    const tAccounts = performance.now();
    const accounts = await createSystemAccounts(target, packagesAccounts(debs));
    const accountsMs = performance.now() - tAccounts;
    const report = await unpackDebs(target, debs);
    return {
      packages: report.packages.map((r, i) => ({
        package: r.package,
        version: r.version,
        files: r.files,
        bytes: r.bytes,
        newConffiles: r.newConffiles,
        deferredPreinst: debs[i].controlFiles.has("preinst"),
      })),
      accounts,
      firstbootScript: configureScript(
        debs.map((d) => ({
          package: d.package,
          infoName: infoName(d),
          hasPreinst: d.controlFiles.has("preinst"),
          version: d.version,
        })),
      ),
      timings: {
        fetchMs,
        unpackMs: report.timings.unpackMs,
        databaseMs: report.timings.databaseMs + accountsMs,
      },
    };
  } finally {
    for (const d of debs) await d.close();
  }
}
