/**
 * Random small repositories (fast-check) resolved by us and by `dnf --installroot --assumeno
 * install`: the same transaction or both refusing. Each case costs rpmbuild + createrepo_c + dnf
 * (about two seconds), so the run is a fixed seed and a small count.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { beforeAll, expect, it } from "vitest";
import { UnsolvableError } from "../src/errors.js";
import { nevra } from "../src/package-meta.js";
import { buildPool, loadRepo } from "../src/repo-load.js";
import { solveInstall } from "../src/solver.js";
import { dnfHome, dnfInstall } from "./dnf-oracle.js";
import { makeRepo, type SpecPkg } from "./repo-builder.js";

const NAMES = ["pa", "pb", "pc", "pd", "pe", "pf"];
const VIRT = ["va", "vb"];

const dep = fc.oneof(
  fc.constantFrom(...NAMES, ...VIRT),
  fc
    .tuple(fc.constantFrom(...NAMES), fc.constantFrom(">=", "<", "="), fc.constantFrom("1", "2"))
    .map(([n, o, v]) => `${n} ${o} ${v}`),
  fc
    .tuple(fc.constantFrom(...NAMES, ...VIRT), fc.constantFrom(...NAMES, ...VIRT))
    .map(([a, b]) => `(${a} or ${b})`),
  fc
    .tuple(fc.constantFrom(...NAMES), fc.constantFrom(...NAMES), fc.constantFrom(...NAMES))
    .map(([a, b, c]) => `(${a} if ${b} else ${c})`),
);

const pkg = fc.record({
  name: fc.constantFrom(...NAMES),
  version: fc.constantFrom("1", "2"),
  requires: fc.array(dep, { maxLength: 2 }),
  provides: fc.array(fc.constantFrom(...VIRT), { maxLength: 1 }),
  conflicts: fc.array(fc.constantFrom(...NAMES), { maxLength: 1 }),
  recommends: fc.array(fc.constantFrom(...NAMES), { maxLength: 1 }),
  obsoletes: fc.array(fc.constantFrom(...NAMES), { maxLength: 1 }),
});

const repoArb = fc
  .array(pkg, { minLength: 3, maxLength: 7 })
  .map((ps) => {
    // One package per name-version; a package never conflicts with or obsoletes its own name.
    const seen = new Set<string>();
    return ps
      .filter((p) => !seen.has(`${p.name}-${p.version}`) && seen.add(`${p.name}-${p.version}`))
      .map(
        (p): SpecPkg => ({
          ...p,
          conflicts: p.conflicts.filter((c) => c !== p.name),
          obsoletes: p.obsoletes.filter((c) => c !== p.name),
          // rpmbuild refuses "if" in Conflicts and a conditional in Requires only where rpm does.
        }),
      );
  })
  .chain((repo) =>
    fc.tuple(
      fc.constant(repo),
      fc.subarray([...new Set(repo.map((p) => p.name))], { minLength: 1, maxLength: 2 }),
    ),
  );

// IMGPATCH_SOLVER_RUNS / IMGPATCH_SOLVER_SEED widen the search (used while developing: 60 more cases, seed 7).
const CASES = fc.sample(repoArb, {
  numRuns: Number(process.env.IMGPATCH_SOLVER_RUNS ?? 14),
  seed: Number(process.env.IMGPATCH_SOLVER_SEED ?? 2016),
});

describeWithTools(
  ["rpmbuild", "createrepo_c", "dnf", "rpm"],
  "solver against dnf on random repositories",
  () => {
    let base = "";
    let home = "";
    beforeAll(async () => {
      base = await tempDir("solver-random-");
      home = await dnfHome(base);
    });
    for (const [i, [repo, request]] of CASES.entries()) {
      it(`case ${i}: install ${request.join(",")} from ${repo.length} packages`, async () => {
        const dir = join(base, `case-${i}`);
        await mkdir(dir, { recursive: true });
        const rdir = await makeRepo(dir, "r", repo);
        const root = join(dir, "root");
        await mkdir(root);
        expect(
          (await runTool("rpm", ["--root", root, "--dbpath", "/var/lib/rpm", "--initdb"])).exitCode,
        ).toBe(0);
        const dnf = await dnfInstall(home, root, [{ id: "r", dir: rdir }], request);
        const { pool } = await buildPool("x86_64", [await loadRepo({ id: "r", baseurl: rdir })], []);
        let ours: string[] | null = null;
        let error: unknown = null;
        try {
          ours = solveInstall(pool, request)
            .install.map((t) => nevra(t.pkg))
            .sort();
        } catch (e) {
          error = e;
        }
        const context = `${JSON.stringify(repo)}\n${dnf.output}`;
        if (!dnf.resolved) {
          expect(error, `dnf refused; we chose ${ours}\n${context}`).toBeInstanceOf(UnsolvableError);
          return;
        }
        expect(error, context).toBeNull();
        expect(ours, context).toEqual(dnf.install);
      });
    }
  },
);
