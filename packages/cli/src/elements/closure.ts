/**
 * Dependency closure, following diskimage-builder's expansion: a work queue seeded with the requested
 * elements; each element's element-deps not yet seen (and not provided by an element already taken)
 * join the queue; elements provided by another element (element-provides) are virtual and dropped.
 * Cycles are harmless (an element is expanded once). A name on no path entry is an error, and so is
 * requesting explicitly an element that another element provides.
 *
 * DIB returns a set (its copy order is hash order, i.e. unspecified). We return a deterministic
 * order: the queue order (requested elements as given, then dependencies breadth-first, each
 * element's deps sorted by name). "Later in this order" is what "copied later" means for the merge.
 */
import type { ElementInfo } from "./elements-path.js";
import { AlreadyProvidedError, MissingElementError } from "./errors.js";

export interface ElementClosure {
  /** Elements to build with, in merge order. */
  elements: ElementInfo[];
  /** Virtual names provided by some element → the providers. */
  provided: Map<string, string[]>;
  /** element → the element that first pulled it in (undefined for requested ones). */
  requiredBy: Map<string, string | undefined>;
}

export function expandElements(
  requested: readonly string[],
  all: Map<string, ElementInfo>,
  elementsPath: readonly string[] = [],
): ElementClosure {
  const order: string[] = [];
  const seen = new Set<string>();
  const provided = new Map<string, string[]>();
  const requiredBy = new Map<string, string | undefined>();
  const queue: string[] = [];
  for (const r of requested) {
    if (!seen.has(r)) {
      seen.add(r);
      queue.push(r);
      requiredBy.set(r, undefined);
    }
  }
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (provided.has(name)) continue;
    const el = all.get(name);
    if (!el) throw new MissingElementError(name, requiredBy.get(name), elementsPath);
    order.push(name);
    for (const p of el.provides) {
      const by = provided.get(p) ?? [];
      by.push(name);
      provided.set(p, by);
    }
    for (const dep of el.depends) {
      if (seen.has(dep) || provided.has(dep)) continue;
      seen.add(dep);
      requiredBy.set(dep, name);
      queue.push(dep);
    }
  }
  const conflicts: Array<[string, string[]]> = requested
    .filter((r) => provided.has(r))
    .map((r) => [r, provided.get(r)!] as [string, string[]]);
  if (conflicts.length > 0) throw new AlreadyProvidedError(conflicts);
  return {
    elements: order.filter((n) => !provided.has(n)).map((n) => all.get(n)!),
    provided,
    requiredBy,
  };
}
