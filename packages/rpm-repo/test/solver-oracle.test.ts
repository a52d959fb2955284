/**
 * The solver against dnf: for each case, one synthetic repository (rpmbuild + createrepo_c), an
 * identical root (same rpmdb), and the same request: the same transaction, package for package,
 * or both refusing.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { UnsolvableError } from "../src/errors.js";
import { nevra } from "../src/package-meta.js";
import { buildPool, loadRepo } from "../src/repo-load.js";
import { readRpmdbSqlite } from "../src/rpmdb-sqlite.js";
import { solveInstall } from "../src/solver.js";
import { type DnfRepo, dnfHome, dnfInstall } from "./dnf-oracle.js";
import { buildRpms, makeRepo } from "./repo-builder.js";
import { CASES } from "./solver-cases.js";

describeWithTools(["rpmbuild", "createrepo_c", "dnf", "rpm"], "solver against dnf --assumeno install", () => {
  let base = "";
  let home = "";
  beforeAll(async () => {
    base = await tempDir("solver-oracle-");
    home = await dnfHome(base);
  });

  for (const [i, c] of CASES.entries()) {
    it(c.name, async () => {
      const dir = join(base, `case-${i}`);
      await mkdir(dir, { recursive: true });
      const repos: DnfRepo[] = [
        { id: "r1", dir: await makeRepo(dir, "r1", c.repo), priority: c.priority?.[0], cost: c.cost?.[0] },
      ];
      if (c.repo2)
        repos.push({
          id: "r2",
          dir: await makeRepo(dir, "r2", c.repo2),
          priority: c.priority?.[1],
          cost: c.cost?.[1],
        });
      const root = join(dir, "root");
      await mkdir(root);
      const rb = ["--root", root, "--dbpath", "/var/lib/rpm"];
      expect((await runTool("rpm", [...rb, "--initdb"])).exitCode).toBe(0);
      if (c.installed) {
        const rpms = await buildRpms(dir, join(dir, "installed"), c.installed);
        const r = await runTool("rpm", [...rb, "-i", "--justdb", "--nodeps", ...rpms]);
        expect(r.exitCode, r.stderr).toBe(0);
      }
      const dnf = await dnfInstall(home, root, repos, c.request);

      const loaded = await Promise.all(
        repos.map((r) => loadRepo({ id: r.id, baseurl: r.dir, priority: r.priority, cost: r.cost })),
      );
      const installed = await readRpmdbSqlite(join(root, "var/lib/rpm/rpmdb.sqlite"));
      const { pool } = await buildPool("x86_64", loaded, installed);
      let ours: string[] | null = null;
      let error: unknown = null;
      try {
        ours = solveInstall(pool, c.request)
          .install.map((t) => nevra(t.pkg))
          .sort();
      } catch (e) {
        error = e;
      }
      if (c.weRefuse) {
        expect(dnf.resolved, dnf.output).toBe(true);
        expect(dnf.other.length, dnf.output).toBeGreaterThan(0);
        expect(error).toBeInstanceOf(UnsolvableError);
        expect(String((error as Error).message)).toMatch(c.weRefuse);
        return;
      }
      if (!dnf.resolved) {
        expect(error, `dnf refused:\n${dnf.output}\nwe chose ${ours}`).toBeInstanceOf(UnsolvableError);
        return;
      }
      expect(error, dnf.output).toBeNull();
      expect(dnf.other, dnf.output).toEqual([]);
      expect(ours, dnf.output).toEqual(dnf.install);
    });
  }
});
