/**
 * The flagship benchmark (issue: imgpatch CLI, "Performance"): overlay + a ~500-file / 15 MiB agent
 * bundle + one unit enabled, on a cloud-like base (qcow2, zlib-compressed as cloud images ship,
 * holding an ext4 with data), against the rootless pipeline that works today:
 * qemu-img convert to raw → debugfs -w -f → qemu-img convert back (plain, and with -c).
 * Also: the library in-process, and a full compressed image (-o -c) vs qemu-img convert -c.
 *
 * Scale with IMGPATCH_BENCH_SIZE (virtual size, default 8G) and IMGPATCH_BENCH_DATA (data in the
 * filesystem, default 2G); the base is cached in bench-out/ at the repository root.
 * IMGPATCH_BENCH_RUNS (default 5) runs of ours, medians reported; IMGPATCH_BENCH_SKIP_C=1 and
 * IMGPATCH_BENCH_SKIP_FULL=1 skip the compressed pipeline and the full -o -c comparison.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseSize, runCli } from "../src/commands/main.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const OUT = join(ROOT, "bench-out");
const SIZE = process.env.IMGPATCH_BENCH_SIZE ?? "8G";
const DATA = parseSize(process.env.IMGPATCH_BENCH_DATA ?? "2G");
const tag = `${SIZE}-${DATA}`;
mkdirSync(OUT, { recursive: true });

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
}
function time<T>(f: () => T): [T, number] {
  const t = performance.now();
  const v = f();
  return [v, (performance.now() - t) / 1000];
}
async function timeAsync<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const v = await f();
  return [v, (performance.now() - t) / 1000];
}
/** Deterministic, half-compressible bytes (like binaries and text in a cloud image). */
function fill(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(i % 8 < 4 ? x >>> 0 : 0x20202020, i);
  }
  return b;
}

// --- the base image (cached) ---
const base = join(OUT, `base-${tag}.qcow2`);
if (!existsSync(base)) {
  console.log(`building the base (${SIZE} virtual, ${(DATA / 2 ** 20).toFixed(0)} MiB of data)…`);
  const tree = join(OUT, "base-tree");
  rmSync(tree, { recursive: true, force: true });
  const fileSize = 4 << 20;
  for (let i = 0, left = DATA; left > 0; i++, left -= fileSize) {
    const d = join(tree, "usr/share/data", String(i % 64));
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `blob${i}`), fill(Math.min(fileSize, left), i + 1));
  }
  mkdirSync(join(tree, "etc/systemd/system/multi-user.target.wants"), { recursive: true });
  mkdirSync(join(tree, "usr/lib/systemd/system"), { recursive: true });
  writeFileSync(join(tree, "etc/os-release"), 'ID=centos\nVERSION_ID="9"\n');
  writeFileSync(join(tree, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
  writeFileSync(join(tree, "etc/group"), "root:x:0:\n");
  const raw = join(OUT, "base.raw");
  rmSync(raw, { force: true });
  sh("mke2fs", ["-q", "-F", "-t", "ext4", "-d", tree, raw, SIZE]);
  sh("qemu-img", ["convert", "-c", "-O", "qcow2", raw, base]);
  rmSync(raw);
  rmSync(tree, { recursive: true });
}

// --- the agent bundle: ~500 files, 15 MiB, and one unit ---
const bundle = join(OUT, "bundle/agent");
if (!existsSync(bundle)) {
  for (let i = 0; i < 500; i++) {
    const d = join(bundle, `lib${i % 25}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `m${i}.py`), fill(i % 10 === 0 ? 300 << 10 : 3 << 10, 1000 + i));
  }
}
const unit = join(OUT, "bundle/agent.service");
writeFileSync(
  unit,
  "[Unit]\nDescription=agent\n[Service]\nExecStart=/opt/agent/run\n[Install]\nWantedBy=multi-user.target\n",
);
const files: string[] = [];
for (const d of execFileSync("find", [bundle, "-type", "f"]).toString().trim().split("\n")) files.push(d);

const quiet = { out: () => {}, err: (t: string) => process.stderr.write(t), env: process.env };
const ops = (out: string, extra: string[] = []) => [
  "customize",
  base,
  ...extra,
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

// --- ours: the bin (node start-up included), then in-process; median of RUNS each (noisy machine) ---
const RUNS = Math.max(1, Number(process.env.IMGPATCH_BENCH_RUNS ?? 5));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ov1 = join(OUT, "ours-cli.qcow2");
const ov2 = join(OUT, "ours-lib.qcow2");
const cliTimes: number[] = [];
const libTimes: number[] = [];
for (let r = 0; r < RUNS; r++) {
  rmSync(ov1, { force: true });
  cliTimes.push(
    time(() =>
      sh(process.execPath, [join(ROOT, "packages/cli/dist/bundle/imgpatch.js"), "-q", ...ops(ov1)]),
    )[1],
  );
  rmSync(ov2, { force: true });
  const [code, t] = await timeAsync(() => runCli(["-q", ...ops(ov2)], quiet));
  if (code !== 0) throw new Error(`in-process run failed: ${code}`);
  libTimes.push(t);
}
const tCli = median(cliTimes);
const tLib = median(libTimes);
const overlaySize = statSync(ov1).size;

// --- the rootless pipeline of today ---
const raw = join(OUT, "pipe.raw");
const cmds = join(OUT, "pipe.debugfs");
const lines = ["mkdir /opt", "mkdir /opt/agent"];
for (let i = 0; i < 25; i++) lines.push(`mkdir /opt/agent/lib${i}`);
for (const f of files) lines.push(`write ${f} /opt/${f.slice(bundle.length - "agent".length)}`);
lines.push(`write ${unit} /etc/systemd/system/agent.service`);
lines.push(
  "symlink /etc/systemd/system/multi-user.target.wants/agent.service /etc/systemd/system/agent.service",
);
writeFileSync(cmds, `${lines.join("\n")}\n`);
function pipeline(compress: boolean): number {
  rmSync(raw, { force: true });
  const out = join(OUT, `pipe${compress ? "-c" : ""}.qcow2`);
  rmSync(out, { force: true });
  const [, t] = time(() => {
    sh("qemu-img", ["convert", "-O", "raw", base, raw]);
    sh("debugfs", ["-w", "-f", cmds, raw]);
    sh("qemu-img", ["convert", ...(compress ? ["-c"] : []), "-O", "qcow2", raw, out]);
  });
  rmSync(raw, { force: true });
  return t;
}
const tPipe = pipeline(false);
// IMGPATCH_BENCH_SKIP_C=1 skips the (slow, ~2.5 min) compressed pipeline
const skipC = process.env.IMGPATCH_BENCH_SKIP_C === "1";
const tPipeC = skipC ? 0 : pipeline(true);

// --- a full compressed image: ours (-o -c) vs qemu-img convert -c (IMGPATCH_BENCH_SKIP_FULL=1 skips) ---
const skipFull = process.env.IMGPATCH_BENCH_SKIP_FULL === "1";
let tFull = 0;
let tQfull = 0;
if (!skipFull) {
  const full = join(OUT, "ours-full.qcow2");
  rmSync(full, { force: true });
  tFull = time(() =>
    sh(process.execPath, [
      join(ROOT, "packages/cli/dist/bundle/imgpatch.js"),
      "-q",
      "customize",
      base,
      "-o",
      full,
      "-c",
      "--mkdir",
      "/opt/x",
    ]),
  )[1];
  const qfull = join(OUT, "qemu-full.qcow2");
  rmSync(qfull, { force: true });
  tQfull = time(() => sh("qemu-img", ["convert", "-c", "-O", "qcow2", base, qfull]))[1];
}

const f = (t: number) => `${t.toFixed(2)} s`;
console.log(
  `flagship benchmark — base ${SIZE} virtual, ${(DATA / 2 ** 20).toFixed(0)} MiB data, zlib-compressed qcow2`,
);
console.log(
  `  bundle: ${files.length} files, ${(files.reduce((s, p) => s + statSync(p).size, 0) / 2 ** 20).toFixed(1)} MiB + 1 unit enabled`,
);
const range = (xs: number[]) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
console.log(
  `  imgpatch customize --overlay (bin):      ${f(tCli)}   (median of ${RUNS}: ${range(cliTimes)})`,
);
console.log(
  `  imgpatch in-process (library):           ${f(tLib)}   (median of ${RUNS}: ${range(libTimes)})`,
);
console.log(
  `  pipeline convert→debugfs→convert:        ${f(tPipe)}   (${(tPipe / tCli).toFixed(1)}× the bin, ${(tPipe / tLib).toFixed(1)}× in-process; target ≥ 25×)`,
);
if (!skipC)
  console.log(
    `  pipeline with -c:                        ${f(tPipeC)}   (${(tPipeC / tCli).toFixed(1)}× ours; target ≥ 100×)`,
  );
console.log(`  overlay size:                            ${(overlaySize / 2 ** 20).toFixed(2)} MiB`);
if (!skipFull)
  console.log(
    `  full image -o -c (ours) vs qemu-img -c:  ${f(tFull)} vs ${f(tQfull)}   (${(tQfull / tFull).toFixed(2)}× qemu-img speed; target ≥ 0.8×)`,
  );
