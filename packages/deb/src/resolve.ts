/**
 * An apt-like resolver for installing new packages into a guest (apt-get install semantics, no
 * removals, no upgrades of installed packages):
 *
 * - candidate of a name: the version with the highest pin priority (apt_preferences), then the
 *   highest version; installed versions count 100, NotAutomatic repositories 1, the Default-Release
 *   990, others 500; a priority < 0 never installs;
 * - a package's Pre-Depends and Depends groups are collected first (each group: already satisfied by
 *   an installed or marked package — versions and versioned Provides included — or the first
 *   alternative whose candidate satisfies it and conflicts with nothing chosen; a virtual name takes
 *   a provider: installed/marked first, then by Priority, then by name), then each choice is
 *   followed depth-first; Recommends the same way afterwards when Install-Recommends is on, skipped
 *   silently when unsatisfiable (as apt does);
 * - Conflicts and Breaks between chosen and installed packages steer the choice to the next
 *   alternative, or refuse with the chain;
 * - Multi-Arch: candidates are the guest's architectures and "all"; `:any` needs Multi-Arch:
 *   allowed; foreign packages satisfy dependencies of every architecture;
 * - a dependency needing an installed package upgraded is refused, naming it.
 *
 * The result is ordered for unpacking: dependencies (Pre-Depends strictly) before their dependents.
 */
import { type ErrorLocation, ImgpatchError } from "@imgpatch/disk";
import type { AptSettings } from "./apt-config.js";
import { pinPriority } from "./apt-config.js";
import type { Stanza } from "./control.js";
import type { RepoPackage } from "./packages-index.js";
import {
  formatGroup,
  formatRelation,
  parseRelations,
  type Relation,
  type RelationGroup,
} from "./relation.js";
import { isPresent } from "./status.js";
import { compareVersions, satisfiesVersion } from "./version.js";

export class DebResolveError extends ImgpatchError {
  /** The dependency chain that failed ("heat-agent → python3-x (>= 2) → …"). */
  readonly chain: string[];
  constructor(message: string, chain: string[], where: ErrorLocation = {}) {
    super("ERESOLVE", `${message}${chain.length > 0 ? ` (chain: ${chain.join(" → ")})` : ""}`, where);
    this.chain = chain;
  }
}

export interface PlannedPackage {
  pkg: RepoPackage;
  /** Why: "requested", "Depends of X", "Pre-Depends of X", "Recommends of X". */
  reason: string;
}

export interface ResolvePlan {
  /** In unpack order. */
  install: PlannedPackage[];
  /** Recommends that could not be satisfied (apt skips them too). */
  skippedRecommends: string[];
}

interface Installed {
  name: string;
  version: string;
  architecture: string;
  multiArch?: string;
  stanza: Stanza;
  provides: Relation[];
}

const PRIORITY_RANK: Record<string, number> = {
  required: 0,
  important: 1,
  standard: 2,
  optional: 3,
  extra: 4,
};
const MAX_DEPTH = 1000;

export interface ResolveOptions {
  settings: AptSettings;
  /** Guest architectures, native first. */
  architectures: string[];
  installRecommends?: boolean;
}

/** One entry of an install request: "name", "name=version", or a local .deb's package. */
export interface Request {
  name: string;
  version?: string;
  /** A specific package (a local .deb) rather than the candidate. */
  pkg?: RepoPackage;
}

export function resolveInstall(
  requests: Request[],
  available: RepoPackage[],
  installedStanzas: Stanza[],
  opts: ResolveOptions,
): ResolvePlan {
  const arches = new Set([...opts.architectures, "all"]);
  const recommends = opts.installRecommends ?? opts.settings.installRecommends;
  const byName = new Map<string, RepoPackage[]>();
  const providers = new Map<string, RepoPackage[]>();
  for (const p of available) {
    if (!arches.has(p.architecture)) continue;
    byName.set(p.name, [...(byName.get(p.name) ?? []), p]);
    for (const pr of p.provides) providers.set(pr.name, [...(providers.get(pr.name) ?? []), p]);
  }
  const installed = new Map<string, Installed>();
  const installedProviders = new Map<string, Installed[]>();
  for (const s of installedStanzas) {
    if (!isPresent(s)) continue;
    const i: Installed = {
      name: s.get("Package") as string,
      version: s.get("Version") ?? "0",
      architecture: s.get("Architecture") ?? "all",
      multiArch: s.get("Multi-Arch"),
      stanza: s,
      provides: parseRelations(s.get("Provides")).map((g) => g[0]),
    };
    installed.set(i.name, i);
    for (const pr of i.provides)
      installedProviders.set(pr.name, [...(installedProviders.get(pr.name) ?? []), i]);
  }

  const releaseOf = (p: RepoPackage) => ({
    suite: p.release.stanza.get("Suite"),
    codename: p.release.stanza.get("Codename"),
    origin: p.release.stanza.get("Origin"),
    label: p.release.stanza.get("Label"),
    component: p.url.match(/\/pool\/([^/]+)\//)?.[1],
    version: p.release.stanza.get("Version"),
    host: /^https?:\/\/([^/]+)/.exec(p.source.uri)?.[1],
  });
  const prio = (p: RepoPackage) => {
    const notAuto = (p.release.stanza.get("NotAutomatic") ?? "") === "yes";
    const butUp = (p.release.stanza.get("ButAutomaticUpgrades") ?? "") === "yes";
    return pinPriority(
      opts.settings,
      { name: p.name, version: p.version, release: releaseOf(p) },
      notAuto ? (butUp ? 100 : 1) : 500,
    );
  };
  const candidateCache = new Map<string, RepoPackage | undefined>();
  const candidate = (name: string): RepoPackage | undefined => {
    if (candidateCache.has(name)) return candidateCache.get(name);
    let best: RepoPackage | undefined;
    let bestPrio = -Infinity;
    for (const p of byName.get(name) ?? []) {
      const pr = prio(p);
      if (pr < 0) continue;
      if (pr > bestPrio || (pr === bestPrio && best && compareVersions(p.version, best.version) > 0)) {
        best = p;
        bestPrio = pr;
      }
    }
    candidateCache.set(name, best);
    return best;
  };

  const marked = new Map<string, PlannedPackage>();
  const order: PlannedPackage[] = [];
  const skippedRecommends: string[] = [];

  const versionOk = (v: string, r: Relation) => !r.op || satisfiesVersion(v, r.op, r.version as string);
  const qualifierOk = (r: Relation, multiArch: string | undefined) =>
    r.archQualifier === undefined ||
    r.archQualifier === "native" ||
    (r.archQualifier === "any" && multiArch === "allowed") ||
    opts.architectures.includes(r.archQualifier);
  const providesOk = (prov: Relation[], r: Relation) =>
    prov.some((p) => p.name === r.name && (!r.op || (p.op === "=" && versionOk(p.version as string, r))));

  /** Satisfied by what is installed or already chosen. */
  const satisfiedNow = (r: Relation): boolean => {
    const i = installed.get(r.name);
    if (i && versionOk(i.version, r) && qualifierOk(r, i.multiArch)) return true;
    const m = marked.get(r.name);
    if (m && versionOk(m.pkg.version, r) && qualifierOk(r, m.pkg.stanza.get("Multi-Arch"))) return true;
    if (r.archQualifier === undefined || r.archQualifier === "any") {
      if ((installedProviders.get(r.name) ?? []).some((p) => providesOk(p.provides, r))) return true;
      for (const m2 of marked.values()) if (providesOk(m2.pkg.provides, r)) return true;
    }
    return false;
  };

  const conflictsWith = (
    a: { name: string; version: string; stanza: Stanza; provides: Relation[] },
    b: { name: string; version: string; provides: Relation[] },
  ) => {
    for (const field of ["Conflicts", "Breaks"]) {
      for (const g of parseRelations(a.stanza.get(field))) {
        for (const r of g) {
          if (r.name === a.name) continue; // self-conflicts through Provides are the replace idiom
          if (r.name === b.name && versionOk(b.version, r)) return `${a.name} ${field} ${formatRelation(r)}`;
          if (!r.op && b.provides.some((p) => p.name === r.name) && b.name !== a.name)
            return `${a.name} ${field} ${r.name} (provided by ${b.name})`;
        }
      }
    }
    return undefined;
  };
  const conflictOf = (p: RepoPackage): string | undefined => {
    for (const other of [...installed.values(), ...[...marked.values()].map((m) => m.pkg)]) {
      if (other.name === p.name) continue;
      const c = conflictsWith(p, other) ?? conflictsWith(other, p);
      if (c) return c;
    }
    return undefined;
  };

  /** The package that would satisfy r if installed now, or a reason why none. */
  const choose = (r: Relation): { pkg?: RepoPackage; why?: string } => {
    const inst = installed.get(r.name);
    const c = candidate(r.name);
    if (c) {
      if (versionOk(c.version, r) && qualifierOk(r, c.stanza.get("Multi-Arch"))) {
        if (inst && compareVersions(inst.version, c.version) !== 0) {
          return {
            why: `needs installed ${r.name} ${inst.version} upgraded to ${c.version}: imgpatch does not upgrade installed packages`,
          };
        }
        const conflict = conflictOf(c);
        if (conflict) return { why: conflict };
        return { pkg: c };
      }
      if (!providers.has(r.name)) return { why: `${formatRelation(r)}: candidate is ${c.version}` };
    }
    if (inst && !versionOk(inst.version, r))
      return { why: `installed ${r.name} ${inst.version} does not satisfy ${formatRelation(r)}` };
    const provs = (providers.get(r.name) ?? []).filter((p) => {
      const cand = candidate(p.name);
      return (
        cand === p &&
        p.provides.some(
          (pr) => pr.name === r.name && (!r.op || (pr.op === "=" && versionOk(pr.version as string, r))),
        )
      );
    });
    if (provs.length === 0)
      return {
        why: c
          ? `${formatRelation(r)}: candidate is ${c.version}`
          : `${r.name} has no installation candidate`,
      };
    const rank = (p: RepoPackage) =>
      marked.has(p.name) || installed.has(p.name)
        ? -1
        : (PRIORITY_RANK[p.stanza.get("Priority") ?? "extra"] ?? 5);
    provs.sort((a, b) => rank(a) - rank(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const p of provs) {
      const conflict = conflictOf(p);
      if (!conflict) return { pkg: p };
    }
    return { why: `every provider of ${r.name} conflicts` };
  };

  const chooseGroup = (g: RelationGroup): { pkg?: RepoPackage; why: string[] } => {
    const why: string[] = [];
    for (const r of g) {
      const c = choose(r);
      if (c.pkg) return { pkg: c.pkg, why };
      why.push(c.why as string);
    }
    return { why };
  };

  const mark = (p: RepoPackage, reason: string, chain: string[]): void => {
    if (marked.has(p.name) || installed.get(p.name)?.version === p.version) return;
    if (chain.length > MAX_DEPTH) throw new DebResolveError("dependency chain too deep", chain);
    const conflict = conflictOf(p);
    if (conflict) throw new DebResolveError(`cannot install ${p.name} ${p.version}: ${conflict}`, chain);
    const entry: PlannedPackage = { pkg: p, reason };
    marked.set(p.name, entry);
    const here = [...chain, `${p.name} ${p.version}`];
    const where = { file: p.url };
    const follow = (field: string, critical: boolean) => {
      const chosen: [RepoPackage, string][] = [];
      for (const g of parseRelations(p.stanza.get(field), { file: p.url, field })) {
        if (g.some(satisfiedNow)) continue;
        const { pkg, why } = chooseGroup(g);
        if (!pkg) {
          if (!critical) {
            skippedRecommends.push(`${p.name}: ${formatGroup(g)}`);
            continue;
          }
          throw new DebResolveError(
            `${p.name} ${field} ${formatGroup(g)} cannot be satisfied: ${why.join("; ")}`,
            here,
            where,
          );
        }
        if (!marked.has(pkg.name)) {
          // Reserve it now so later groups of the same package see it (apt collects before recursing).
          chosen.push([pkg, `${field} of ${p.name}`]);
          marked.set(pkg.name, { pkg, reason: `${field} of ${p.name}` });
        }
      }
      for (const [pkg, why] of chosen) {
        marked.delete(pkg.name);
        mark(pkg, why, here);
      }
    };
    follow("Pre-Depends", true);
    follow("Depends", true);
    if (recommends) follow("Recommends", false);
    if (opts.settings.installSuggests) follow("Suggests", false);
    order.push(entry);
  };

  for (const req of requests) {
    const p =
      req.pkg ??
      (req.version
        ? (byName.get(req.name) ?? []).find((x) => x.version === req.version)
        : candidate(req.name));
    if (!p) {
      const prov = providers.get(req.name);
      if (prov && prov.length > 0) {
        throw new DebResolveError(
          `${req.name} is a virtual package provided by ${[...new Set(prov.map((x) => x.name))].join(", ")}: name one`,
          [req.name],
        );
      }
      throw new DebResolveError(
        `${req.name}${req.version ? ` ${req.version}` : ""} has no installation candidate`,
        [req.name],
      );
    }
    const inst = installed.get(p.name);
    if (inst && inst.version === p.version) continue;
    if (inst)
      throw new DebResolveError(
        `${p.name} ${inst.version} is installed; upgrading it to ${p.version} is not supported`,
        [p.name],
      );
    mark(p, "requested", []);
  }
  // `order` is a post-order: every package after what it depends on.
  return { install: order, skippedRecommends };
}
