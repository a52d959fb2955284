/**
 * #15 benchmark: the three Heat agents (python3-os-collect-config, -os-apply-config,
 * -os-refresh-config, with Recommends, from the guest's own apt sources) installed into a minimal
 * Debian guest —
 *
 *   imgpatch   into a new qcow2 overlay of the boot suite's gpt.qcow2 (debootstrap --variant=minbase
 *              bookworm + systemd-sysv/udev/e2fsprogs), downloads cached: one fresh process per run
 *              (bench/deb-install-run.ts) reporting index parse, resolution, .deb fetch (cache),
 *              unpack, database, commit and its peak RSS
 *   apt        `chroot TREE apt-get install -y --no-download` on the same guest tree copied into a
 *              directory (root; .debs pre-downloaded into its archive cache, /proc and /dev bound;
 *              policy-rc.d keeps services from starting), peak RSS by GNU time
 *
 * IMGPATCH_BENCH_RUNS pairs (default 3), the order alternated, medians reported. apt's time includes
 * configuring (maintainer scripts, triggers), which imgpatch leaves to the guest's first boot.
 * After the runs: the last overlay passes `qemu-img check` and `e2fsck -fn`, and both sides installed
 * the same package versions. Root; work files in bench-out/deb at the repository root.
 *
 *   npm run bench:deb -w packages/cli   (as root)
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const OUT = join(ROOT, "bench-out/deb");
const E2E_CACHE =
  process.env.IMGPATCH_E2E_CACHE ??
  join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "imgpatch-e2e");
const BASE = join(E2E_CACHE, "gpt.qcow2");
const RUNS = Number(process.env.IMGPATCH_BENCH_RUNS ?? 3);
const AGENTS = ["python3-os-collect-config", "python3-os-apply-config", "python3-os-refresh-config"];
const TSX = join(ROOT, "node_modules/.bin/tsx");
const RUNNER = fileURLToPath(new URL("./deb-install-run.ts", import.meta.url));

function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; quiet?: boolean } = {}): string {
  const r = spawnSync(cmd, args, {
    env: opts.env ?? process.env,
    maxBuffer: 256 << 20,
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${String(r.stderr).slice(-2000)}`);
  return String(r.stdout);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Runs `fn` with /proc and /dev bound into the chroot DIR; always unbinds. */
function withChroot<T>(dir: string, fn: () => T): T {
  const binds: string[] = [];
  try {
    for (const m of ["proc", "dev", "dev/pts"]) {
      mkdirSync(join(dir, m), { recursive: true });
      sh("mount", ["--bind", `/${m}`, join(dir, m)]);
      binds.push(join(dir, m));
    }
    return fn();
  } finally {
    for (const b of binds.reverse()) spawnSync("umount", ["-l", b]);
  }
}

/** The guest tree of gpt.qcow2 (partition 1 at 1 MiB), read through a read-only loop device. */
function extractTree(tree: string): void {
  const raw = join(OUT, "gpt.raw");
  const mnt = join(OUT, "mnt");
  sh("qemu-img", ["convert", "-O", "raw", BASE, raw]);
  mkdirSync(mnt, { recursive: true });
  const dev = sh("losetup", ["--find", "--show", "--read-only", "-o", "1048576", raw]).trim();
  try {
    sh("mount", ["-o", "ro", dev, mnt]);
    try {
      rmSync(tree, { recursive: true, force: true });
      sh("cp", ["-a", `${mnt}/.`, tree]);
    } finally {
      sh("umount", [mnt]);
    }
  } finally {
    sh("losetup", ["-d", dev]);
    rmSync(raw, { force: true });
  }
}

/** name=version of every installed package of a dpkg status file. */
function installedSet(statusFile: string): Set<string> {
  const out = new Set<string>();
  for (const st of readFileSync(statusFile, "utf8").split(/\n\n+/)) {
    const name = /^Package: (\S+)$/m.exec(st)?.[1];
    const version = /^Version: (\S+)$/m.exec(st)?.[1];
    if (name && version && /^Status: install ok installed$/m.test(st)) out.add(`${name}=${version}`);
  }
  return out;
}

interface OursRun {
  wallMs: number;
  openMs: number;
  indexesMs: number;
  resolveMs: number;
  fetchMs: number;
  unpackMs: number;
  databaseMs: number;
  commitMs: number;
  totalMs: number;
  maxRssKiB: number;
  files: number;
  bytes: number;
  packages: string[];
}

function runOurs(overlay: string): OursRun {
  rmSync(overlay, { force: true });
  sh("sync", []);
  const t = performance.now();
  const out = sh(TSX, [RUNNER, BASE, overlay, ...AGENTS]);
  const wallMs = performance.now() - t;
  const line = out.trim().split("\n").pop() as string;
  return { wallMs, ...(JSON.parse(line) as Omit<OursRun, "wallMs">) };
}

function runApt(template: string, dir: string): { wallMs: number; maxRssKiB: number; packages: string[] } {
  rmSync(dir, { recursive: true, force: true });
  sh("cp", ["-a", template, dir]);
  sh("sync", []);
  const before = installedSet(join(dir, "var/lib/dpkg/status"));
  const r = withChroot(dir, () => {
    const t = performance.now();
    const p = spawnSync(
      "/usr/bin/time",
      [
        "-f",
        "@@TIME %e %M",
        "chroot",
        dir,
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-download",
        "-o",
        "Dpkg::Use-Pty=0",
        ...AGENTS,
      ],
      {
        env: { ...process.env, DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" },
        maxBuffer: 256 << 20,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const wallMs = performance.now() - t;
    if (p.status !== 0)
      throw new Error(`chroot apt-get install exited ${p.status}: ${String(p.stderr).slice(-2000)}`);
    return { wallMs, stderr: String(p.stderr) };
  });
  // GNU time's %M: the largest resident set of apt-get or any process it waited for (dpkg, scripts).
  const maxRssKiB = Number(/@@TIME \S+ (\d+)/.exec(r.stderr)?.[1] ?? 0);
  const after = installedSet(join(dir, "var/lib/dpkg/status"));
  return {
    wallMs: r.wallMs,
    maxRssKiB,
    packages: [...after].filter((p) => !before.has(p)).sort(),
  };
}

function main(): void {
  if (process.getuid?.() !== 0) throw new Error("bench:deb needs root (chroot, loop mount)");
  mkdirSync(OUT, { recursive: true });
  console.log("the boot suite's Debian guest (cached in", E2E_CACHE, ")");
  const b = spawnSync("bash", [join(ROOT, "e2e/boot/build-guest.sh")], { stdio: "inherit" });
  if (b.status !== 0) throw new Error("build-guest.sh failed");
  const stamp = `${statSync(BASE).size} ${statSync(BASE).mtimeMs}`;
  const tree = join(OUT, "tree");
  const template = join(OUT, "apt-template");
  const stampFile = join(OUT, "stamp");
  if (!existsSync(stampFile) || readFileSync(stampFile, "utf8") !== stamp) {
    console.log("extracting the guest tree and pre-downloading apt's .debs (not timed)…");
    extractTree(tree);
    rmSync(template, { recursive: true, force: true });
    sh("cp", ["-a", tree, template]);
    writeFileSync(join(template, "etc/resolv.conf"), readFileSync("/etc/resolv.conf"));
    writeFileSync(join(template, "usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n", { mode: 0o755 });
    withChroot(template, () => {
      sh("chroot", [template, "apt-get", "update", "-q"]);
      sh("chroot", [template, "apt-get", "install", "-y", "-q", "--download-only", ...AGENTS], {
        env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      });
    });
    writeFileSync(stampFile, stamp);
  }
  console.log("imgpatch: filling the download cache (not timed)…");
  sh(TSX, [RUNNER, "--prefetch", BASE, join(OUT, "prefetch.qcow2"), ...AGENTS]);
  rmSync(join(OUT, "prefetch.qcow2"), { force: true });

  const ours: OursRun[] = [];
  const apt: ReturnType<typeof runApt>[] = [];
  const overlay = join(OUT, "agents-overlay.qcow2");
  const aptDir = join(OUT, "apt-run");
  for (let i = 0; i < RUNS; i++) {
    const order = i % 2 === 0 ? ["apt", "ours"] : ["ours", "apt"];
    for (const side of order) {
      if (side === "apt") {
        const r = runApt(template, aptDir);
        apt.push(r);
        console.log(
          `run ${i + 1} apt:      ${s(r.wallMs)}, peak RSS ${(r.maxRssKiB / 1024).toFixed(0)} MiB, ${r.packages.length} packages`,
        );
      } else {
        const r = runOurs(overlay);
        ours.push(r);
        console.log(
          `run ${i + 1} imgpatch: ${s(r.wallMs)} whole process (in-process ${s(r.totalMs)}: open ${s(r.openMs)}, index parse ${s(r.indexesMs)}, resolution ${s(r.resolveMs)}, fetch ${s(r.fetchMs)}, unpack ${s(r.unpackMs)}, database ${s(r.databaseMs)}, commit ${s(r.commitMs)}), peak RSS ${(r.maxRssKiB / 1024).toFixed(0)} MiB, ${r.packages.length} packages, ${r.files} files`,
        );
      }
    }
  }
  // Oracles on the last overlay, and the same package versions on both sides.
  const check = spawnSync("qemu-img", ["check", overlay]);
  const raw = join(OUT, "check.raw");
  sh("qemu-img", ["convert", "-O", "raw", overlay, raw]);
  const dev = sh("losetup", ["--find", "--show", "--read-only", "-o", "1048576", raw]).trim();
  let fsck: ReturnType<typeof spawnSync>;
  try {
    fsck = spawnSync("e2fsck", ["-fn", dev]);
  } finally {
    sh("losetup", ["-d", dev]);
    rmSync(raw, { force: true });
  }
  const a = apt[apt.length - 1].packages;
  const o = [...ours[ours.length - 1].packages].sort();
  const onlyApt = a.filter((p) => !o.includes(p));
  const onlyOurs = o.filter((p) => !a.includes(p));
  const medApt = median(apt.map((r) => r.wallMs));
  const medOurs = median(ours.map((r) => r.wallMs));
  const phase = (k: keyof OursRun) => s(median(ours.map((r) => r[k] as number)));
  console.log(
    `\nmedians of ${RUNS} (load average now ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}):`,
  );
  console.log(
    `  chroot apt-get install (incl. configure): ${s(medApt)}; peak RSS ${(median(apt.map((r) => r.maxRssKiB)) / 1024).toFixed(0)} MiB`,
  );
  console.log(
    `  imgpatch (qcow2 overlay, whole process):  ${s(medOurs)} — index parse ${phase("indexesMs")}, resolution ${phase("resolveMs")}, fetch ${phase("fetchMs")}, unpack ${phase("unpackMs")}, database ${phase("databaseMs")}, commit ${phase("commitMs")}; peak RSS ${(median(ours.map((r) => r.maxRssKiB)) / 1024).toFixed(0)} MiB`,
  );
  console.log(`  ratio apt/imgpatch: ${(medApt / medOurs).toFixed(2)}x (target >= 1.0)`);
  console.log(
    `  qemu-img check: ${check.status === 0 ? "clean" : `exit ${check.status}`}; e2fsck -fn: ${fsck.status === 0 ? "clean" : `exit ${fsck.status}: ${String(fsck.stdout).slice(-500)}`}`,
  );
  console.log(
    `  package sets: ${onlyApt.length + onlyOurs.length === 0 ? `identical (${a.length} packages, same versions)` : `differ: only apt ${onlyApt.join(" ")}; only imgpatch ${onlyOurs.join(" ")}`}`,
  );
}

main();
