/**
 * The order rpm installs a transaction in: requirements before what requires them (rpm's tsort,
 * Requires(pre)/plain requires alike here), ties broken by the solver's order; loops are cut where
 * rpm cuts them, at the edge into the package seen first.
 */

import { simpleDepsOf } from "./dep.js";
import type { PackageMeta } from "./package-meta.js";
import type { Pool } from "./pool.js";

export function installOrder(pool: Pool, pkgs: PackageMeta[]): PackageMeta[] {
  const set = new Set(pkgs);
  const deps = new Map<PackageMeta, PackageMeta[]>();
  for (const p of pkgs) {
    const out: PackageMeta[] = [];
    for (const d of p.requires) {
      for (const s of simpleDepsOf(d)) {
        for (const q of pool.whatProvides(s)) if (q !== p && set.has(q) && !out.includes(q)) out.push(q);
      }
    }
    deps.set(p, out);
  }
  const order: PackageMeta[] = [];
  const state = new Map<PackageMeta, 1 | 2>();
  // Iterative depth-first post-order, so long chains cannot overflow the stack.
  for (const root of pkgs) {
    if (state.has(root)) continue;
    const stack: { p: PackageMeta; i: number }[] = [{ p: root, i: 0 }];
    state.set(root, 1);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const ds = deps.get(top.p)!;
      if (top.i < ds.length) {
        const q = ds[top.i++]!;
        if (!state.has(q)) {
          state.set(q, 1);
          stack.push({ p: q, i: 0 });
        }
        continue;
      }
      state.set(top.p, 2);
      order.push(top.p);
      stack.pop();
    }
  }
  return order;
}
