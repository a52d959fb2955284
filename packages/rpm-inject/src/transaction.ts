/**
 * Several packages in one go, as one rpm transaction would install them: every package is parsed,
 * planned and verified before anything is written; file conflicts between the packages are refused
 * (identical files may be shared, as rpm allows); the first-boot steps are merged in rpm's order.
 */
import { InjectConflictError } from "./errors.js";
import { type FirstbootPlan, mergeFirstbootPlans } from "./firstboot.js";
import {
  type InjectOptions,
  type InjectPlan,
  type InjectReport,
  injectRpm,
  planInjection,
} from "./inject.js";
import type { RpmPackage } from "./package.js";
import { verifyCompressedPayload, verifyPayload } from "./payload.js";
import { DEFAULT_SIGNATURE_MODE, policyKeyring } from "./signature.js";
import type { InjectTarget } from "./target.js";

/** Refuses two packages that put different content (or kinds) at the same path. */
export function checkFileConflicts(pkgs: RpmPackage[]): void {
  const seen = new Map<string, { nevra: string; key: string }>();
  for (const pkg of pkgs) {
    for (const f of pkg.files) {
      if (f.ghost) continue;
      const key =
        f.type === "dir"
          ? "dir"
          : `${f.type}:${f.perms}:${f.user}:${f.group}:${f.digest}:${f.linkTarget}:${f.rdev}`;
      const prev = seen.get(f.path);
      if (prev && prev.key !== key) {
        throw new InjectConflictError(
          `${f.path} from ${pkg.info.nevra} conflicts with the one from ${prev.nevra}`,
          {
            file: pkg.name,
          },
        );
      }
      if (!prev) seen.set(f.path, { nevra: pkg.info.nevra, key });
    }
  }
}

export interface TransactionResult {
  plans: InjectPlan[];
  reports: InjectReport[];
  /** Every package's first-boot steps, merged in rpm's transaction order. */
  firstboot: FirstbootPlan;
}

/** Dry run of a set of packages. */
export async function planTransaction(
  pkgs: RpmPackage[],
  target: InjectTarget,
  options: InjectOptions = {},
): Promise<{ plans: InjectPlan[]; firstboot: FirstbootPlan }> {
  checkFileConflicts(pkgs);
  // One trusted keyring (explicit keys + the guest's) for every package of the transaction.
  let perPackage = options;
  if ((options.signature ?? DEFAULT_SIGNATURE_MODE) !== "ignore" && pkgs.length > 1) {
    perPackage = { ...options, keys: [await policyKeyring(options, target)], guestKeys: false };
  }
  const plans: InjectPlan[] = [];
  for (const pkg of pkgs) plans.push(await planInjection(pkg, target, perPackage));
  return { plans, firstboot: mergeFirstbootPlans(plans.map((p) => p.firstboot)) };
}

/**
 * Injects the packages in the given order. Conflicts, owners and every payload are checked before
 * the first write, so a bad package in the set leaves the target untouched.
 */
export async function injectRpms(
  pkgs: RpmPackage[],
  target: InjectTarget,
  options: InjectOptions = {},
): Promise<TransactionResult> {
  const first = await planTransaction(pkgs, target, options);
  for (const pkg of pkgs) {
    if (options.verify === "full" || !(await verifyCompressedPayload(pkg))) await verifyPayload(pkg);
  }
  const plans: InjectPlan[] = [];
  const reports: InjectReport[] = [];
  for (const pkg of pkgs) {
    // Planned again against the tree as the previous packages left it; already verified (payload
    // and signatures), so the signature verdict of the first plan is kept.
    const { plan, report } = await injectRpm(pkg, target, {
      ...options,
      verify: "auto",
      signature: "ignore",
    });
    plan.signature = first.plans[plans.length].signature;
    plans.push(plan);
    reports.push(report);
  }
  return { plans, reports, firstboot: mergeFirstbootPlans(plans.map((p) => p.firstboot)) };
}
