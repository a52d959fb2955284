// Cold resolution against a synthetic 20,000-package repository (made here) vs
// `dnf --installroot=ROOT --assumeno install` for the same request on the same root, each in a
// fresh process (dnf with an empty cache dir, so it parses the metadata too).
//   npm run bench -w packages/rpm-repo            (BENCH_PACKAGES=20000 by default)
// Ratio = dnf's time / ours (target: ≥ 1.0). Each side runs three times, alternating; medians count.
// Then (BENCH_INSTALL=0 skips it) the transaction is installed, see install-bench.ts: our CLI into an
// ext4 image vs `dnf --installroot install -y` (root only), three times each, alternating.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  dnfArgs,
  dnfInstall,
  guestRoot,
  installRepo,
  oursInstall,
  splitNevra,
  type TimedRun,
  timed,
} from "./install-bench.js";
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

  // Both sides under /usr/bin/time: CPU time (user+sys) alongside the wall, as the machine is shared.
  const ours = (): TimedRun & {
    out: { parseMs: number; resolveMs: number; install: string[]; maxRssMiB: number };
  } => {
    const r = timed(process.execPath, [child, repo, root, ...top]);
    return { ...r, out: JSON.parse(r.out) };
  };
  let runNo = 0;
  const dnf = (): TimedRun & { install: string[] } => {
    const cache = join(dir, `cache-${runNo++}`);
    // --assumeno ends with status 1 ("Operation aborted").
    const r = timed(
      "dnf",
      [...dnfArgs(root, home, cache, "bench", repo), "--assumeno", "install", ...top],
      { ...process.env, HOME: home, LC_ALL: "C" },
      [0, 1],
    );
    rmSync(cache, { recursive: true, force: true });
    const install = [...r.out.matchAll(/^ (bench-\d+)\s+(\S+)\s+(\S+)\s+bench/gm)]
      .map((m) => `${m[1]}-${m[3]}.${m[2]}`)
      .sort();
    return { ...r, install };
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
  const cpu = (r: TimedRun) => r.userS + r.sysS;
  console.log(
    `  ours (fresh process): median ${o.toFixed(0)} ms wall, ${med(oursRuns.map(cpu)).toFixed(2)} s CPU; parse ${med(oursRuns.map((r) => r.out.parseMs)).toFixed(0)} ms, resolve ${med(oursRuns.map((r) => r.out.resolveMs)).toFixed(0)} ms, peak RSS ${Math.max(...oursRuns.map((r) => r.out.maxRssMiB)).toFixed(0)} MiB`,
  );
  console.log(
    `  dnf --assumeno (cold cache): median ${d.toFixed(0)} ms wall, ${med(dnfRuns.map(cpu)).toFixed(2)} s CPU, peak RSS ${Math.max(...dnfRuns.map((r) => r.maxRssMiB)).toFixed(0)} MiB`,
  );
  console.log(
    `  ratio dnf/ours: ${(d / o).toFixed(2)}x wall, ${(med(dnfRuns.map(cpu)) / med(oursRuns.map(cpu))).toFixed(2)}x CPU (target >= 1.0)`,
  );
  if (process.env.BENCH_INSTALL !== "0") {
    const pkgs = last.install.map(splitNevra);
    const { repo: instRepo, baseRpm } = installRepo(pkgs);
    const instRoot = join(dir, "inst-root");
    guestRoot(instRoot, baseRpm);
    const image = join(dir, "guest.img");
    const mk = spawnSync("mke2fs", ["-q", "-F", "-t", "ext4", "-d", instRoot, image, "256M"], {
      encoding: "utf8",
    });
    if (mk.status !== 0) throw new Error(`mke2fs: ${mk.stderr}`);
    const names = pkgs.map((p) => p.name);
    const oi: TimedRun[] = [];
    const di: TimedRun[] = [];
    let dnfWhy = "";
    for (let i = 0; i < 3; i++) {
      oi.push(oursInstall(image, dir, instRepo, names));
      const r = dnfInstall(instRoot, dir, instRepo, names, home);
      if (typeof r === "string") dnfWhy = r;
      else di.push(r);
    }
    const line = (rs: TimedRun[]) =>
      `median ${med(rs.map((r) => r.ms)).toFixed(0)} ms wall, ${med(rs.map(cpu)).toFixed(2)} s CPU (user+sys), peak RSS ${Math.max(...rs.map((r) => r.maxRssMiB)).toFixed(0)} MiB`;
    console.log(`install of the ${pkgs.length} packages (2 small files each; cached rpmbuild output):`);
    console.log(
      `  ours (imgpatch customize --in-place --install, ext4 image, e2fsck -fn clean): ${line(oi)}`,
    );
    if (di.length > 0) {
      console.log(`  dnf --installroot install -y (directory root): ${line(di)}`);
      console.log(
        `  ratio dnf/ours (wall): ${(med(di.map((r) => r.ms)) / med(oi.map((r) => r.ms))).toFixed(2)}x`,
      );
    } else console.log(`  dnf: not run (${dnfWhy})`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
