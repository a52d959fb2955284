/**
 * SELinux labelling benchmarks (issue #17, "Performance"), root only (loop mounts):
 *  (a) labelling overhead on the flagship job: overlay + ~500-file bundle + one unit, on a guest
 *      whose policy is Debian's refpolicy (~5,000 specs) enforcing, vs the same guest with
 *      SELINUX=disabled (no labels) — in-process, alternating runs, medians (target ≤ 10 %);
 *  (b) a full offline relabel of a 20,000-file ext4: `imgpatch customize --selinux-relabel` in
 *      process vs `setfiles -F` over a loop mount of the same filesystem (target: no slower).
 * The base is small (256 MiB of data) so the runs measure labelling, not the filesystem copy.
 * Run: `npx tsx packages/cli/bench/selinux.ts` (IMGPATCH_BENCH_RUNS, default 5;
 * IMGPATCH_BENCH_PARTS=a, b or c runs those parts; default all three).
 *  (c) = (a) through the bin (dist/bundle/imgpatch.js, `npm run bundle -w imgpatch` first), one
 *      process per run: what a user of the CLI sees (no policy cache, the JIT cold every time);
 *      also the children's CPU time and the median of the paired (same round) CPU deltas.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runCli } from "../src/commands/main.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const OUT = join(ROOT, "bench-out/selinux");
const FC_DIR = "/etc/selinux/default/contexts/files";
const RUNS = Math.max(1, Number(process.env.IMGPATCH_BENCH_RUNS ?? 5));
const PARTS = process.env.IMGPATCH_BENCH_PARTS ?? "abc";
if (!existsSync(`${FC_DIR}/file_contexts`))
  throw new Error("needs selinux-policy-default (and policycoreutils)");
mkdirSync(OUT, { recursive: true });

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/**
 * CPU time (user + system, ms) of this process's waited-for children: /proc/self/stat's cutime
 * and cstime (fields 16 and 17, clock ticks of 10 ms) — the measure that moves least with the
 * load of a shared machine (part c).
 */
function childCpuMs(): number {
  const stat = readFileSync("/proc/self/stat", "latin1");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state): cutime is field 16, cstime 17
  return (Number(fields[13]) + Number(fields[14])) * 10;
}
async function timed(f: () => Promise<unknown> | unknown): Promise<number> {
  const t = performance.now();
  await f();
  return (performance.now() - t) / 1000;
}

function policyTree(tree: string, mode: "enforcing" | "disabled"): void {
  mkdirSync(join(tree, "etc/selinux/default/contexts/files"), { recursive: true });
  writeFileSync(join(tree, "etc/selinux/config"), `SELINUX=${mode}\nSELINUXTYPE=default\n`);
  for (const f of ["file_contexts", "file_contexts.homedirs", "file_contexts.subs_dist"])
    cpSync(join(FC_DIR, f), join(tree, "etc/selinux/default/contexts/files", f));
  mkdirSync(join(tree, "etc/systemd/system/multi-user.target.wants"), { recursive: true });
  mkdirSync(join(tree, "usr/lib/systemd/system"), { recursive: true });
  writeFileSync(join(tree, "etc/os-release"), 'ID=centos\nVERSION_ID="9"\n');
  writeFileSync(join(tree, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
}

// --- (a) flagship with and without labels; (c) the same through the bin ---
if (PARTS.includes("a") || PARTS.includes("c")) {
  const bundle = join(OUT, "bundle/agent");
  if (!existsSync(bundle))
    for (let i = 0; i < 500; i++) {
      const d = join(bundle, `lib${i % 25}`);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, `m${i}.py`), Buffer.alloc(i % 10 === 0 ? 300 << 10 : 3 << 10, i));
    }
  const unit = join(OUT, "bundle/agent.service");
  writeFileSync(unit, "[Service]\nExecStart=/opt/agent/run\n[Install]\nWantedBy=multi-user.target\n");
  const bases: Record<string, string> = {};
  for (const mode of ["enforcing", "disabled"] as const) {
    const base = join(OUT, `flagship-${mode}.qcow2`);
    bases[mode] = base;
    if (existsSync(base)) continue;
    const tree = join(OUT, `tree-${mode}`);
    rmSync(tree, { recursive: true, force: true });
    policyTree(tree, mode);
    for (let i = 0; i < 64; i++) {
      mkdirSync(join(tree, "usr/share/data"), { recursive: true });
      writeFileSync(join(tree, "usr/share/data", `blob${i}`), Buffer.alloc(4 << 20, i));
    }
    const raw = join(OUT, "base.raw");
    sh("mke2fs", ["-q", "-F", "-t", "ext4", "-d", tree, raw, "2G"]);
    sh("qemu-img", ["convert", "-c", "-O", "qcow2", raw, base]);
    rmSync(raw);
    rmSync(tree, { recursive: true });
  }
  const quiet = { out: () => {}, err: (t: string) => process.stderr.write(t), env: process.env };
  const job = (base: string, out: string) => [
    "-q",
    "customize",
    base,
    "--overlay",
    out,
    "--mkdir",
    "/opt",
    "--copy-in",
    `${bundle}:/opt`,
    "--upload",
    `${unit}:/etc/systemd/system/agent.service`,
    "--enable",
    "agent.service",
  ];
  const times: Record<string, number[]> = { enforcing: [], disabled: [] };
  for (let r = 0; PARTS.includes("a") && r < RUNS + 1; r++) {
    for (const mode of ["disabled", "enforcing"] as const) {
      const ov = join(OUT, `ov-${mode}.qcow2`);
      rmSync(ov, { force: true });
      const t = await timed(async () => {
        const code = await runCli(job(bases[mode], ov), quiet);
        if (code !== 0) throw new Error(`run failed: ${code}`);
      });
      if (r > 0) times[mode].push(t); // the first round warms the JIT
    }
  }
  const report = (title: string) => {
    const tOn = median(times.enforcing);
    const tOff = median(times.disabled);
    console.log(`${title}, median of ${RUNS}:`);
    console.log(`    SELINUX=disabled (no labels):           ${(tOff * 1000).toFixed(0)} ms`);
    console.log(
      `    enforcing, refpolicy labels:            ${(tOn * 1000).toFixed(0)} ms   (+${(((tOn - tOff) / tOff) * 100).toFixed(1)} %; target ≤ 10 %)`,
    );
  };
  if (PARTS.includes("a")) report("(a) flagship job in-process");
  if (PARTS.includes("c")) {
    const bin = join(ROOT, "packages/cli/dist/bundle/imgpatch.js");
    if (!existsSync(bin)) throw new Error(`${bin}: run npm run bundle -w imgpatch first`);
    times.enforcing = [];
    times.disabled = [];
    const cpu: Record<string, number[]> = { enforcing: [], disabled: [] };
    for (let r = 0; r < RUNS + 1; r++) {
      for (const mode of ["disabled", "enforcing"] as const) {
        const ov = join(OUT, `ov-${mode}.qcow2`);
        rmSync(ov, { force: true });
        const c0 = childCpuMs();
        const t = await timed(() => sh(process.execPath, [bin, ...job(bases[mode], ov)]));
        // the first round warms the page cache
        if (r === 0) continue;
        times[mode].push(t);
        cpu[mode].push(childCpuMs() - c0);
      }
    }
    report("(c) flagship job through the bin, one process per run");
    // each round's enforcing run against the disabled run just before it
    const paired = cpu.enforcing.map((c, i) => c - cpu.disabled[i]);
    const base = median(cpu.disabled);
    console.log(
      `    CPU (user+sys) medians: disabled ${base} ms, enforcing ${median(cpu.enforcing)} ms; median paired delta ${median(paired)} ms (+${((median(paired) / base) * 100).toFixed(1)} %; target ≤ 10 %)`,
    );
  }
}

// --- (b) full relabel of a 20,000-file ext4 vs setfiles -F over a loop mount ---
if (PARTS.includes("b")) {
  const big = join(OUT, "relabel-20k.img");
  if (!existsSync(big)) {
    const tree = join(OUT, "tree-20k");
    rmSync(tree, { recursive: true, force: true });
    policyTree(tree, "enforcing");
    const tops = [
      "usr/lib/python3/site-packages",
      "usr/share/doc",
      "etc/conf.d",
      "var/lib/app",
      "opt/agent/lib",
      "usr/bin",
    ];
    let n = 0;
    for (let d = 0; n < 20_000; d++) {
      const dir = join(tree, tops[d % tops.length], `d${d}`);
      mkdirSync(dir, { recursive: true });
      for (let i = 0; i < 50 && n < 20_000; i++, n++) writeFileSync(join(dir, `f${i}.py`), "x");
    }
    sh("mke2fs", ["-q", "-F", "-t", "ext4", "-N", "40000", "-d", tree, big, "512M"]);
    rmSync(tree, { recursive: true });
  }
  const oursT: number[] = [];
  const theirsT: number[] = [];
  const mnt = join(OUT, "mnt");
  mkdirSync(mnt, { recursive: true });
  for (let r = 0; r < RUNS; r++) {
    const a = join(OUT, "ours.img");
    cpSync(big, a);
    sh("sync", []);
    oursT.push(
      await timed(async () => {
        const code = await runCli(["-q", "customize", a, "--in-place", "--selinux-relabel"], quiet);
        if (code !== 0) throw new Error(`relabel failed: ${code}`);
      }),
    );
    const b = join(OUT, "theirs.img");
    cpSync(big, b);
    sh("sync", []);
    theirsT.push(
      await timed(() => {
        execFileSync("mount", ["-o", "loop", b, mnt]);
        try {
          sh("setfiles", [
            "-F",
            "-r",
            mnt,
            join(mnt, "etc/selinux/default/contexts/files/file_contexts"),
            mnt,
          ]);
        } finally {
          execFileSync("umount", [mnt]); // the unmount writes the labels back: part of the job
        }
      }),
    );
  }
  const to = median(oursT);
  const tt = median(theirsT);
  console.log(`(b) full relabel of a 20,000-file ext4, median of ${RUNS}:`);
  console.log(
    `    imgpatch customize --in-place --selinux-relabel (in-process): ${(to * 1000).toFixed(0)} ms`,
  );
  console.log(
    `    mount -o loop + setfiles -F + umount:                         ${(tt * 1000).toFixed(0)} ms   (${(tt / to).toFixed(2)}× ours; target ≥ 1×)`,
  );
}
