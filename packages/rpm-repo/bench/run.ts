// Cold resolution against a synthetic 20,000-package repository (made here) vs
// `dnf --installroot=ROOT --assumeno install` for the same request on the same root, each in a
// fresh process (dnf with an empty cache dir, so it parses the metadata too).
//   npm run bench -w packages/rpm-repo            (BENCH_PACKAGES=20000 by default)
// Ratio = dnf's time / ours (target: ≥ 1.0). Each side runs three times, alternating; medians count.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeSyntheticRepo } from "./synthetic-repo.js";

const n = Number(process.env.BENCH_PACKAGES ?? 20000);
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "imgpatch-rpm-repo-bench-"));
const child = fileURLToPath(new URL("./child.mjs", import.meta.url));

try {
  const repo = join(dir, "repo");
  const { top } = makeSyntheticRepo(repo, n);
  const root = join(dir, "root");
  mkdirSync(root);
  const home = join(dir, "home");
  mkdirSync(home);
  writeFileSync(join(home, ".rpmmacros"), "%_dbpath /var/lib/rpm\n");
  writeFileSync(join(home, "dnf.conf"), "[main]\n");
  const init = spawnSync("rpm", ["--root", root, "--dbpath", "/var/lib/rpm", "--initdb"]);
  if (init.status !== 0) throw new Error(`rpm --initdb: ${init.stderr}`);

  const ours = (): {
    ms: number;
    out: { parseMs: number; resolveMs: number; install: string[]; maxRssMiB: number };
  } => {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [child, repo, root, ...top], {
      encoding: "utf8",
      maxBuffer: 1 << 26,
    });
    const ms = performance.now() - t0;
    if (r.status !== 0) throw new Error(`ours: ${r.stderr}`);
    return { ms, out: JSON.parse(r.stdout) };
  };
  let runNo = 0;
  const dnf = (): { ms: number; install: string[] } => {
    const cache = join(dir, `cache-${runNo++}`);
    const t0 = performance.now();
    const r = spawnSync(
      "dnf",
      [
        `--installroot=${root}`,
        `--config=${join(home, "dnf.conf")}`,
        "--setopt=reposdir=/dev/null",
        `--setopt=cachedir=${cache}`,
        "--nogpgcheck",
        "--disableplugin=*",
        "--forcearch=x86_64",
        "--releasever=9",
        `--repofrompath=bench,file://${repo}`,
        "--assumeno",
        "install",
        ...top,
      ],
      { encoding: "utf8", env: { ...process.env, HOME: home, LC_ALL: "C" }, maxBuffer: 1 << 26 },
    );
    const ms = performance.now() - t0;
    rmSync(cache, { recursive: true, force: true });
    const install = [...r.stdout.matchAll(/^ (bench-\d+)\s+(\S+)\s+(\S+)\s+bench/gm)]
      .map((m) => `${m[1]}-${m[3]}.${m[2]}`)
      .sort();
    return { ms, install };
  };
  const oursRuns: ReturnType<typeof ours>[] = [];
  const dnfRuns: ReturnType<typeof dnf>[] = [];
  for (let i = 0; i < 3; i++) {
    oursRuns.push(ours());
    dnfRuns.push(dnf());
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const o = med(oursRuns.map((r) => r.ms));
  const d = med(dnfRuns.map((r) => r.ms));
  const last = oursRuns[oursRuns.length - 1]!.out;
  const same = JSON.stringify(last.install) === JSON.stringify(dnfRuns[0]!.install);
  console.log(
    `rpm-repo bench: ${n} packages, request of ${top.length}, transaction ${last.install.length} packages (dnf: ${dnfRuns[0]!.install.length}; same set: ${same})`,
  );
  console.log(
    `  ours (fresh process): median ${o.toFixed(0)} ms; parse ${med(oursRuns.map((r) => r.out.parseMs)).toFixed(0)} ms, resolve ${med(oursRuns.map((r) => r.out.resolveMs)).toFixed(0)} ms, peak RSS ${Math.max(...oursRuns.map((r) => r.out.maxRssMiB)).toFixed(0)} MiB`,
  );
  console.log(`  dnf --assumeno (cold cache): median ${d.toFixed(0)} ms`);
  console.log(`  ratio dnf/ours: ${(d / o).toFixed(2)}x (target >= 1.0)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
