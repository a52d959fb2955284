/**
 * Install-only dependency resolution with dnf's defaults, following libsolv's decisions:
 *
 * - a requirement already met by an installed or chosen package needs nothing;
 * - otherwise its providers are filtered (foreign arch, conflicts either way, obsoletes hitting a
 *   chosen package, a different version of an installed name = an upgrade, refused here) and
 *   ordered as policy.c does: highest repository priority, best version per name (lowest cost on
 *   ties), candidates obsoleted by another candidate dropped, those recommended or supplementing
 *   preferred, then by name; the first is taken and the others kept for backtracking;
 * - rich dependencies: `and` adds each operand, `or` offers the union of the operands' providers,
 *   `if`/`unless` apply their branch when the condition holds (re-checked until nothing changes),
 *   `with`/`without` need one package matching all / not the second operand;
 * - then weak dependencies (install_weak_deps): unmet Recommends of newly chosen packages and
 *   packages whose Supplements a newly chosen package satisfies, each with its own hard
 *   requirements, skipped when they cannot be installed.
 */
import { type Dep, formatDep, type SimpleDep } from "./dep.js";
import { RepoLimitError, UnsolvableError } from "./errors.js";
import { nevra, type PackageMeta } from "./package-meta.js";
import type { Pool } from "./pool.js";
import { evrCompare } from "./rpmvercmp.js";

export type InstallReason = "user" | "dependency" | "weak";

export interface TransactionItem {
  pkg: PackageMeta;
  reason: InstallReason;
  /** What pulled the package in: "user", or "<nevra> requires <dep>". */
  why: string;
}

export interface SolveResult {
  install: TransactionItem[];
  /** Requested names already installed (nothing to do, as dnf says). */
  alreadyInstalled: string[];
}

export interface SolveOptions {
  installWeakDeps?: boolean;
  /** Bound on decisions plus backtracks, so a hostile repository cannot make us search forever. */
  maxSteps?: number;
}

interface Pending {
  dep: Dep;
  by: PackageMeta | null;
  /** A conditional requirement already moved to the back of the queue once. */
  deferred?: boolean;
}

type Alt = { pkg: PackageMeta } | { deps: Dep[] };

interface ChoicePoint {
  head: number;
  queueLen: number;
  chosenLen: number;
  alts: Alt[];
  next: number;
  req: Pending;
}

/** Raised inside a weak-dependency attempt to abandon it. */
class WeakFailure extends Error {}

export class Solver {
  private readonly chosen: PackageMeta[] = [];
  private readonly chosenSet = new Set<PackageMeta>();
  private readonly chosenNames = new Map<string, PackageMeta>();
  /**
   * The chosen packages that have conflicts or obsoletes, and those with recommends (a subsequence
   * of `chosen`): most packages have neither, and every candidate is checked against these.
   */
  private readonly chosenCO: PackageMeta[] = [];
  private readonly chosenRec: PackageMeta[] = [];
  private readonly installedNames = new Map<string, PackageMeta[]>();
  private readonly why = new Map<PackageMeta, Pending>();
  private readonly weak = new Set<PackageMeta>();
  private queue: Pending[] = [];
  /** undeferredBefore[i]: how many of queue[0..i) are not deferred (so "units still pending"). */
  private undeferredBefore: number[] = [0];
  private head = 0;
  private choices: ChoicePoint[] = [];
  private steps = 0;
  private readonly maxSteps: number;
  /** Reasons candidates were refused, kept for the error message. */
  private blockedNotes = new Map<string, string>();

  constructor(
    readonly pool: Pool,
    readonly opts: SolveOptions = {},
  ) {
    this.maxSteps = opts.maxSteps ?? 1_000_000;
    for (const p of pool.installed) {
      const l = this.installedNames.get(p.name);
      if (l === undefined) this.installedNames.set(p.name, [p]);
      else l.push(p);
    }
  }

  /** While set, the set is the installed packages alone (for supplements, see satisfiedByNew). */
  private onlyInstalled = false;

  private inSet(p: PackageMeta): boolean {
    return this.pool.installedSet.has(p) || (!this.onlyInstalled && this.chosenSet.has(p));
  }

  private setHasProvider(d: SimpleDep): boolean {
    for (const p of this.pool.whatProvides(d)) if (this.inSet(p)) return true;
    return false;
  }

  /** Does one package satisfy a with/without tree? */
  private pkgSatisfies(p: PackageMeta, d: Dep): boolean {
    if (d.kind === "simple") return this.pool.provides(p, d);
    if (d.op === "with") return d.args.every((a) => this.pkgSatisfies(p, a));
    if (d.op === "without") return this.pkgSatisfies(p, d.args[0]!) && !this.pkgSatisfies(p, d.args[1]!);
    return this.satisfied(d);
  }

  private firstSimple(d: Dep): SimpleDep | null {
    if (d.kind === "simple") return d;
    return this.firstSimple(d.args[0]!);
  }

  /** Is `d` true of the installed + chosen set? */
  satisfied(d: Dep): boolean {
    if (d.kind === "simple") return this.setHasProvider(d);
    const [a, b, c] = d.args;
    switch (d.op) {
      case "and":
        return d.args.every((x) => this.satisfied(x));
      case "or":
        return d.args.some((x) => this.satisfied(x));
      case "if":
        return this.satisfied(b!) ? this.satisfied(a!) : c === undefined || this.satisfied(c);
      case "unless":
        return !this.satisfied(b!) ? this.satisfied(a!) : c === undefined || this.satisfied(c);
      case "with":
      case "without": {
        const s = this.firstSimple(d);
        if (s === null) return false;
        return this.pool.whatProvides(s).some((p) => this.inSet(p) && this.pkgSatisfies(p, d));
      }
    }
  }

  /** Why `c` cannot join the set, or null when it can. */
  private blocked(c: PackageMeta): string | null {
    const inst = this.installedNames.get(c.name);
    if (inst !== undefined && !inst.includes(c)) {
      return `${nevra(c)} would upgrade the installed ${inst.map(nevra).join(", ")} (upgrades are not done by --install)`;
    }
    const other = this.chosenNames.get(c.name);
    if (other !== undefined && other !== c) return `${nevra(c)} and ${nevra(other)} cannot both be installed`;
    for (const d of c.obsoletes) {
      for (const p of this.pool.installed) {
        if (p.name !== c.name && this.pool.obsoletes(d, p))
          return `${nevra(c)} obsoletes the installed ${nevra(p)}`;
      }
      // Obsoletes match by name, and a name is chosen at most once.
      const p = d.kind === "simple" ? this.chosenNames.get(d.name) : undefined;
      if (p !== undefined && this.pool.obsoletes(d, p)) return `${nevra(c)} obsoletes ${nevra(p)}`;
    }
    for (const d of c.conflicts) {
      if (d.kind === "simple") {
        for (const p of this.pool.whatProvides(d)) {
          if (p !== c && this.inSet(p)) return `${nevra(c)} conflicts with ${nevra(p)} (${formatDep(d)})`;
        }
      } else if (this.satisfied(d)) return `${nevra(c)} conflicts with ${formatDep(d)}`;
    }
    for (const set of [this.chosenCO, this.pool.installed]) {
      for (const p of set) {
        for (const d of p.conflicts) {
          if (d.kind === "simple" && this.pool.provides(c, d)) {
            return `${nevra(p)} conflicts with ${nevra(c)} (${formatDep(d)})`;
          }
        }
        if (set === this.chosenCO) {
          for (const d of p.obsoletes)
            if (this.pool.obsoletes(d, c)) return `${nevra(p)} obsoletes ${nevra(c)}`;
        }
      }
    }
    return null;
  }

  private isRecommended(c: PackageMeta): boolean {
    for (const p of this.chosenRec) {
      for (const d of p.recommends) {
        if (d.kind === "simple" ? this.pool.provides(c, d) : this.pkgSatisfiesAny(c, d)) return true;
      }
    }
    return c.supplements.some((d) => this.satisfied(d));
  }

  private pkgSatisfiesAny(c: PackageMeta, d: Dep): boolean {
    if (d.kind === "simple") return this.pool.provides(c, d);
    return d.args.some((a) => this.pkgSatisfiesAny(c, a));
  }

  /** libsolv's policy order over candidate packages (none of them in the set). */
  order(cands: PackageMeta[]): PackageMeta[] {
    let list = cands;
    if (list.length > 1) {
      let best = Number.POSITIVE_INFINITY;
      for (const p of list) best = Math.min(best, this.pool.repoOf(p).priority);
      list = list.filter((p) => this.pool.repoOf(p).priority === best);
    }
    if (list.length > 1) {
      const byName = new Map<string, PackageMeta>();
      for (const p of list) {
        const b = byName.get(p.name);
        if (b === undefined) {
          byName.set(p.name, p);
          continue;
        }
        const c = evrCompare(p.evr, b.evr);
        if (c > 0 || (c === 0 && this.pool.repoOf(p).cost < this.pool.repoOf(b).cost)) byName.set(p.name, p);
      }
      list = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      if (list.length > 1) {
        const obsoleted = list.filter((p) =>
          list.some((q) => q !== p && q.obsoletes.some((d) => this.pool.obsoletes(d, p))),
        );
        if (obsoleted.length < list.length) list = list.filter((p) => !obsoleted.includes(p));
      }
      if (list.length > 1) {
        const rec = list.filter((p) => this.isRecommended(p));
        if (rec.length > 0) list = [...rec, ...list.filter((p) => !rec.includes(p))];
      }
    }
    return list;
  }

  private candidates(providers: PackageMeta[]): PackageMeta[] {
    const ok: PackageMeta[] = [];
    for (const p of providers) {
      if (this.inSet(p)) continue;
      const why = this.blocked(p);
      if (why === null) ok.push(p);
      else this.blockedNotes.set(nevra(p), why);
    }
    return this.order(ok);
  }

  /** The ways to make an unmet dependency true, best first. */
  private alternatives(d: Dep): Alt[] {
    if (d.kind === "simple") return this.candidates(this.pool.whatProvides(d)).map((pkg) => ({ pkg }));
    const [a, b, c] = d.args;
    switch (d.op) {
      case "and":
        return [{ deps: d.args.filter((x) => !this.satisfied(x)) }];
      case "or": {
        const pkgs = new Set<PackageMeta>();
        const rest: Alt[] = [];
        for (const x of d.args) {
          for (const alt of this.alternatives(x)) {
            if ("pkg" in alt) pkgs.add(alt.pkg);
            else rest.push(alt);
          }
        }
        return [...this.order([...pkgs]).map((pkg) => ({ pkg })), ...rest];
      }
      case "if":
        return this.satisfied(b!) ? this.alternatives(a!) : c !== undefined ? this.alternatives(c) : [];
      case "unless":
        return !this.satisfied(b!) ? this.alternatives(a!) : c !== undefined ? this.alternatives(c) : [];
      case "with":
      case "without": {
        const s = this.firstSimple(d);
        if (s === null) return [];
        const fits = this.pool.whatProvides(s).filter((p) => this.pkgSatisfies(p, d));
        return this.candidates(fits).map((pkg) => ({ pkg }));
      }
    }
  }

  private enqueue(p: Pending): void {
    this.queue.push(p);
    this.undeferredBefore.push(
      this.undeferredBefore[this.undeferredBefore.length - 1]! + (p.deferred ? 0 : 1),
    );
  }

  private truncateQueue(len: number): void {
    this.queue.length = len;
    this.undeferredBefore.length = len + 1;
  }

  /** Are requirements not yet deferred still waiting behind the head? */
  private unitsPending(): boolean {
    return this.undeferredBefore[this.queue.length]! - this.undeferredBefore[this.head]! > 0;
  }

  private add(pkg: PackageMeta, req: Pending): void {
    this.chosen.push(pkg);
    this.chosenSet.add(pkg);
    this.chosenNames.set(pkg.name, pkg);
    if (pkg.conflicts.length > 0 || pkg.obsoletes.length > 0) this.chosenCO.push(pkg);
    if (pkg.recommends.length > 0) this.chosenRec.push(pkg);
    this.why.set(pkg, req);
    for (const dep of pkg.requires) this.enqueue({ dep, by: pkg });
  }

  private truncateChosen(len: number): void {
    while (this.chosen.length > len) {
      const p = this.chosen.pop()!;
      this.chosenSet.delete(p);
      this.chosenNames.delete(p.name);
      if (this.chosenCO[this.chosenCO.length - 1] === p) this.chosenCO.pop();
      if (this.chosenRec[this.chosenRec.length - 1] === p) this.chosenRec.pop();
      this.why.delete(p);
      this.weak.delete(p);
    }
  }

  private apply(alt: Alt, req: Pending): void {
    if ("pkg" in alt) this.add(alt.pkg, req);
    else for (const dep of alt.deps) this.enqueue({ dep, by: req.by });
  }

  private chain(req: Pending): string {
    const parts: string[] = [];
    let by = req.by;
    let guard = 0;
    while (by !== null && guard++ < 50) {
      parts.push(nevra(by));
      by = this.why.get(by)?.by ?? null;
    }
    return parts.length === 0 ? "requested" : `needed by ${parts.join(" <- ")} <- requested`;
  }

  private backtrack(): boolean {
    for (;;) {
      const cp = this.choices[this.choices.length - 1];
      if (cp === undefined) return false;
      if (cp.next >= cp.alts.length) {
        this.choices.pop();
        continue;
      }
      if (++this.steps > this.maxSteps)
        throw new RepoLimitError(`dependency search exceeded ${this.maxSteps} steps`);
      this.truncateQueue(cp.queueLen);
      this.head = cp.head;
      this.truncateChosen(cp.chosenLen);
      this.apply(cp.alts[cp.next++]!, cp.req);
      return true;
    }
  }

  /** Drain the queue; on a dead end backtrack, and when nothing is left to try, throw. */
  private run(): void {
    for (;;) {
      while (this.head < this.queue.length) {
        if (++this.steps > this.maxSteps)
          throw new RepoLimitError(`dependency search exceeded ${this.maxSteps} steps`);
        const req = this.queue[this.head++]!;
        if (this.satisfied(req.dep)) continue;
        // libsolv propagates every forced requirement before it chooses: a conditional, or a
        // requirement with several candidates, waits until no other requirement is pending (one
        // of those may settle it).
        const conditional = req.dep.kind === "rich" && (req.dep.op === "if" || req.dep.op === "unless");
        if (conditional && this.unitsPending()) {
          this.enqueue({ ...req, deferred: true });
          continue;
        }
        const alts = this.alternatives(req.dep);
        if (alts.length > 1 && this.unitsPending()) {
          this.enqueue({ ...req, deferred: true });
          continue;
        }
        if (alts.length === 0) {
          if (this.backtrack()) continue;
          throw new WeakFailure(this.explain(req));
        }
        if (alts.length > 1) {
          this.choices.push({
            head: this.head,
            queueLen: this.queue.length,
            chosenLen: this.chosen.length,
            alts,
            next: 1,
            req,
          });
        }
        this.apply(alts[0]!, req);
      }
      // Conditional requirements may have changed truth as the set grew: re-check all.
      let requeued = false;
      for (const p of this.chosen) {
        for (const dep of p.requires) {
          if (!this.satisfied(dep)) {
            this.enqueue({ dep, by: p });
            requeued = true;
          }
        }
      }
      if (!requeued) return;
    }
  }

  private explain(req: Pending): string {
    const d = formatDep(req.dep);
    const notes = [...this.blockedNotes.values()];
    const head =
      notes.length === 0
        ? `nothing provides ${d} ${this.chain(req)}`
        : `${d} (${this.chain(req)}) cannot be installed: ${notes.slice(-3).join("; ")}`;
    return head;
  }

  /** Resolve hard requirements of `reqs` atomically: on failure everything added is undone and
   * the reason returned; null on success. */
  private attempt(reqs: Pending[]): string | null {
    const saved = {
      chosenLen: this.chosen.length,
      queueLen: this.queue.length,
      head: this.head,
      choices: this.choices,
    };
    this.choices = [];
    this.blockedNotes = new Map();
    for (const r of reqs) this.enqueue(r);
    try {
      this.run();
      this.choices = saved.choices;
      return null;
    } catch (e) {
      if (!(e instanceof WeakFailure)) throw e;
      this.truncateChosen(saved.chosenLen);
      this.truncateQueue(saved.queueLen);
      this.head = saved.head;
      this.choices = saved.choices;
      return e.message;
    }
  }

  /** The packages matching an install argument: a name, a NEVRA prefix, a provide or a file. */
  select(spec: string): PackageMeta[] {
    const any = (name: string): SimpleDep => ({ kind: "simple", name, flags: 0, evr: null });
    const byName = this.pool.whatProvides(any(spec)).filter((p) => p.name === spec);
    if (byName.length > 0) return byName;
    // name-version[-release][.arch] or name.arch: the name is a prefix ending before a "-" or ".".
    const byNevra: PackageMeta[] = [];
    for (let k = spec.length - 1; k > 0; k--) {
      if (spec[k] !== "-" && spec[k] !== ".") continue;
      for (const p of this.pool.whatProvides(any(spec.slice(0, k)))) {
        if (p.name !== spec.slice(0, k) || byNevra.includes(p)) continue;
        const full = `${p.name}-${p.evr.version}-${p.evr.release}`;
        const forms = [
          `${p.name}-${p.evr.version}`,
          full,
          `${full}.${p.arch}`,
          `${p.name}.${p.arch}`,
          nevra(p),
        ];
        if (forms.includes(spec)) byNevra.push(p);
      }
    }
    if (byNevra.length > 0) return byNevra;
    return this.pool.whatProvides(any(spec));
  }

  solve(specs: string[]): SolveResult {
    const alreadyInstalled: string[] = [];
    const problems: string[] = [];
    for (const spec of specs) {
      const matches = this.select(spec);
      if (matches.length === 0) {
        problems.push(`no package matches ${spec}`);
        continue;
      }
      const inst = matches.find((p) => this.pool.installedSet.has(p));
      if (inst !== undefined) {
        alreadyInstalled.push(nevra(inst));
        continue;
      }
      // Already pulled in by an earlier argument.
      if (matches.some((p) => this.chosenSet.has(p))) continue;
      // dnf installs what obsoletes a requested package instead of it.
      let cands = this.order(matches.filter((p) => !this.inSet(p)));
      const best = cands[0];
      if (best !== undefined) {
        const obsoleters = this.pool.packages.filter(
          (q) => q.name !== best.name && q.obsoletes.some((d) => this.pool.obsoletes(d, best)),
        );
        // ...and falls back to the package itself when no obsoleter can be installed.
        if (obsoleters.length > 0) cands = [...this.order(obsoleters), ...cands];
      }
      if (cands.some((p) => this.chosenSet.has(p))) continue;
      const req: Pending = { dep: { kind: "simple", name: spec, flags: 0, evr: null }, by: null };
      const problemsBefore = problems.length;
      let ok = false;
      for (const c of cands) {
        const why = this.blocked(c);
        if (why !== null) {
          problems.push(`${spec}: ${why}`);
          continue;
        }
        const failure = this.attemptAdd(c, req);
        if (failure === null) {
          ok = true;
          break;
        }
        problems.push(`${spec}: ${failure}`);
      }
      if (!ok && cands.length === 0) problems.push(`${spec}: no installable candidate`);
      // A later candidate that worked makes the earlier failures irrelevant.
      if (ok) problems.splice(problemsBefore);
    }
    if (problems.length > 0) throw new UnsolvableError(problems);
    if (this.opts.installWeakDeps ?? true) this.weakDeps();
    const install = this.chosen.map((pkg): TransactionItem => {
      const w = this.why.get(pkg)!;
      return {
        pkg,
        reason: w.by === null && !this.weak.has(pkg) ? "user" : this.weak.has(pkg) ? "weak" : "dependency",
        why:
          w.by === null
            ? this.weak.has(pkg)
              ? formatDep(w.dep)
              : "user"
            : `${nevra(w.by)} requires ${formatDep(w.dep)}`,
      };
    });
    return { install, alreadyInstalled };
  }

  private weakDeps(): void {
    const supplementers = this.pool.packages.filter((p) => p.supplements.length > 0);
    const done = new Set<PackageMeta>();
    const tried = new Set<string>();
    for (let round = 0; round < 10_000; round++) {
      let changed = false;
      // As libsolv: first take the best candidate of every unmet recommendation at once and
      // resolve them together; one by one (below) only if the batch cannot be installed.
      const batch: { pkg: PackageMeta; req: Pending }[] = [];
      for (const p of this.chosen) {
        if (done.has(p)) continue;
        for (const dep of p.recommends) {
          if (this.satisfied(dep)) continue;
          const first = this.alternatives(dep).find((a) => "pkg" in a);
          if (first !== undefined && "pkg" in first && !batch.some((b) => b.pkg === first.pkg)) {
            batch.push({ pkg: first.pkg, req: { dep, by: p } });
          }
        }
      }
      if (batch.length > 0) {
        const saved = { chosenLen: this.chosen.length, queueLen: this.queue.length, head: this.head };
        let ok = true;
        for (const b of batch) {
          if (this.inSet(b.pkg)) continue;
          if (this.blocked(b.pkg) !== null) {
            ok = false;
            break;
          }
          this.add(b.pkg, b.req);
        }
        if (ok && this.attempt([]) === null) {
          for (let j = saved.chosenLen; j < this.chosen.length; j++) this.weak.add(this.chosen[j]!);
          changed = true;
        } else {
          this.truncateChosen(saved.chosenLen);
          this.truncateQueue(saved.queueLen);
          this.head = saved.head;
        }
      }
      for (let i = 0; i < this.chosen.length; i++) {
        const p = this.chosen[i]!;
        if (done.has(p)) continue;
        done.add(p);
        for (const dep of p.recommends) {
          if (this.satisfied(dep)) continue;
          const key = `${nevra(p)}\0${formatDep(dep)}`;
          if (tried.has(key)) continue;
          tried.add(key);
          for (const alt of this.alternatives(dep)) {
            const before = this.chosen.length;
            const failure =
              "pkg" in alt
                ? this.attemptAdd(alt.pkg, { dep, by: p })
                : this.attempt(alt.deps.map((d) => ({ dep: d, by: p })));
            if (failure === null) {
              for (let j = before; j < this.chosen.length; j++) this.weak.add(this.chosen[j]!);
              changed = true;
              break;
            }
          }
        }
      }
      for (const s of supplementers) {
        if (this.inSet(s) || this.blocked(s) !== null) continue;
        if (!s.supplements.some((d) => this.satisfiedByNew(d))) continue;
        const before = this.chosen.length;
        if (this.attemptAdd(s, { dep: s.supplements[0]!, by: null }) === null) {
          for (let j = before; j < this.chosen.length; j++) this.weak.add(this.chosen[j]!);
          changed = true;
        }
      }
      if (!changed) return;
    }
  }

  /** Add `pkg` with its hard requirements, or nothing (returning why not). */
  private attemptAdd(pkg: PackageMeta, req: Pending): string | null {
    const blocked = this.blocked(pkg);
    if (blocked !== null) return blocked;
    const saved = { chosenLen: this.chosen.length, queueLen: this.queue.length, head: this.head };
    this.add(pkg, req);
    const failure = this.attempt([]);
    if (failure !== null) {
      this.truncateChosen(saved.chosenLen);
      this.truncateQueue(saved.queueLen);
      this.head = saved.head;
    }
    return failure;
  }

  /** True of the full set but not of the installed packages alone (libsolv ignores supplements
   * that only already-installed packages satisfy). */
  private satisfiedByNew(d: Dep): boolean {
    if (!this.satisfied(d)) return false;
    this.onlyInstalled = true;
    try {
      return !this.satisfied(d);
    } finally {
      this.onlyInstalled = false;
    }
  }
}

/** Resolve `specs` against the pool as `dnf install` would. */
export function solveInstall(pool: Pool, specs: string[], opts: SolveOptions = {}): SolveResult {
  return new Solver(pool, opts).solve(specs);
}
