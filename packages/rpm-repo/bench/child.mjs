// One cold resolution in a fresh process (the benchmark's "ours" side): load the repository and
// the root's rpmdb, resolve, print timings, peak RSS and the transaction as JSON.
import { join } from "node:path";
import { buildPool, loadRepo, nevra, readRpmdbSqlite, solveInstall } from "../dist/index.js";

const [repo, root, ...specs] = process.argv.slice(2);
const t0 = performance.now();
const loaded = await loadRepo({ id: "bench", baseurl: repo });
const installed = await readRpmdbSqlite(join(root, "var/lib/rpm/rpmdb.sqlite"));
const { pool } = await buildPool("x86_64", [loaded], installed);
const t1 = performance.now();
const result = solveInstall(pool, specs);
const t2 = performance.now();
process.stdout.write(
  JSON.stringify({
    parseMs: t1 - t0,
    resolveMs: t2 - t1,
    packages: loaded.packages.length,
    install: result.install.map((t) => nevra(t.pkg)).sort(),
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
  }),
);
