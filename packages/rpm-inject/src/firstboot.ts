/**
 * What must run inside the guest at its first boot, as data. The injector returns one per package;
 * the CLI's --firstboot shares the type and writes the runner (a oneshot systemd unit that runs the
 * steps once in order, logs to the journal, then disables itself).
 */

export type FirstbootPhase =
  /** `rpm -i --justdb` of the stored package, so the guest's rpmdb knows it (runs no scriptlets). */
  | "register"
  | "pretrans"
  | "pre"
  /** chown of files whose owner the package's %pre creates (only with the root fallback). */
  | "owner-fixup"
  | "post"
  | "posttrans"
  /** Steps added by the CLI's --firstboot. */
  | "custom";

export interface FirstbootStep {
  /** Unique, file-name safe, sortable: "<nn>-<package>-<phase>". */
  name: string;
  phase: FirstbootPhase;
  /** NEVRA of the package the step comes from, when any. */
  package?: string;
  /** argv of the interpreter; the body is written to a file passed after it, then `args`. */
  interpreter: string[];
  body: string;
  /** Arguments after the script; rpm passes "1" (the count of installed instances) on install. */
  args: string[];
  /** Lua scriptlets run inside rpm; a runner must use `rpm --eval`-like means or report them. */
  lua?: boolean;
}

export interface FirstbootPlan {
  steps: FirstbootStep[];
  /** RPM files stored in the guest for `register` steps (guest path → package). */
  storedPackages: { path: string; nevra: string }[];
}

export function emptyFirstbootPlan(): FirstbootPlan {
  return { steps: [], storedPackages: [] };
}

const PHASE_ORDER: FirstbootPhase[] = [
  "register",
  "pretrans",
  "pre",
  "owner-fixup",
  "post",
  "posttrans",
  "custom",
];

/**
 * Merges per-package plans in rpm's transaction order: every package's registration, then every
 * %pretrans, then per package %pre → owner fix-up → %post, then every %posttrans, then custom steps.
 * Steps are renumbered so their names sort in run order.
 */
export function mergeFirstbootPlans(plans: FirstbootPlan[]): FirstbootPlan {
  const all = plans.flatMap((p, pkgIndex) => p.steps.map((s, i) => ({ s, pkgIndex, i })));
  const rank = (phase: FirstbootPhase) => {
    if (phase === "pre" || phase === "owner-fixup" || phase === "post") return 2;
    return PHASE_ORDER.indexOf(phase) < 2 ? PHASE_ORDER.indexOf(phase) : PHASE_ORDER.indexOf(phase) + 10;
  };
  all.sort(
    (a, b) =>
      rank(a.s.phase) - rank(b.s.phase) ||
      (rank(a.s.phase) === 2 ? a.pkgIndex - b.pkgIndex : 0) ||
      PHASE_ORDER.indexOf(a.s.phase) - PHASE_ORDER.indexOf(b.s.phase) ||
      a.pkgIndex - b.pkgIndex ||
      a.i - b.i,
  );
  return {
    steps: all.map(({ s }, n) => ({
      ...s,
      name: `${String(n + 1).padStart(2, "0")}-${s.name.replace(/^\d+-/, "")}`,
    })),
    storedPackages: plans.flatMap((p) => p.storedPackages),
  };
}

/** Quotes a string for POSIX sh. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
