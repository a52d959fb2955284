/**
 * Sparsify by filesystem knowledge and sparse raw convert (issue #20), whole process against
 * qemu-img in the same run, alternating, copies synced before each timing, medians:
 * 1. a 4 GiB GPT disk whose ext4 holds ~600 MiB of live files and ~1.2 GiB of deleted-file garbage
 *    (written, then removed with debugfs: the bytes stay on disk): `qemu-img convert -O qcow2`
 *    (copies the garbage) against `imgpatch sparsify` (the bin) and the library in-process; the
 *    output is checked with e2fsck -fn and qemu-img check. IMGPATCH_BENCH_FS=xfs makes it XFS
 *    instead (root: the kernel writes and deletes the files; checked with xfs_repair -n);
 * 2. a 4 GiB sparse raw file holding 64 MiB of data in 16 pieces: `qemu-img convert -O qcow2`
 *    against `imgpatch convert` (the bin) and convertImage in-process.
 * Prints wall and CPU (user+sys, from /usr/bin/time) medians, the ratios, `uptime` before and
 * after, and a CPU-profile summary of one bin run of each job (self time, idle left out). Sizes
 * scale with IMGPATCH_BENCH_LIVE_MB / IMGPATCH_BENCH_GARBAGE_MB; runs with IMGPATCH_BENCH_RUNS
 * (default 3); the images are cached in bench-out/.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileDevice } from "@imgpatch/disk";
import { convertImage } from "@imgpatch/qcow2";
import { sparsifyCopy } from "../src/commands/sparsify.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const OUT = join(ROOT, "bench-out/sparsify");
const LIVE_MB = Number(process.env.IMGPATCH_BENCH_LIVE_MB ?? 600);
const GARBAGE_MB = Number(process.env.IMGPATCH_BENCH_GARBAGE_MB ?? 1200);
const BIN = join(ROOT, "packages/cli/dist/bundle/imgpatch.js");
/** The disk's filesystem: ext4 (default) or xfs (IMGPATCH_BENCH_FS=xfs; root: loop mount). */
const FS = process.env.IMGPATCH_BENCH_FS === "xfs" ? "xfs" : "ext4";
const PART = 1024 * 1024;

const sh = (cmd: string, args: string[], input?: string) =>
  execFileSync(cmd, args, { stdio: ["pipe", "pipe", "inherit"], input, maxBuffer: 1 << 26 });
const time = (f: () => void): number => {
  const t = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t) / 1e9;
};
const mib = (n: number) => `${(n / 1048576).toFixed(0)} MiB`;

function buildImage(disk: string): void {
  const tree = join(OUT, "tree");
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(join(tree, "live"), { recursive: true });
  // Live data: 4 MiB files of incompressible bytes; garbage: one file per 64 MiB, deleted later.
  for (let i = 0; i < LIVE_MB / 4; i++)
    execFileSync("sh", ["-c", `head -c ${4 << 20} /dev/urandom > ${join(tree, "live", `f${i}`)}`]);
  mkdirSync(join(tree, "garbage"));
  for (let i = 0; i < GARBAGE_MB / 64; i++)
    execFileSync("sh", ["-c", `head -c ${64 << 20} /dev/urandom > ${join(tree, "garbage", `g${i}`)}`]);
  writeFileSync(disk, "");
  sh("truncate", ["-s", "4G", disk]);
  sh("sfdisk", ["-q", disk], "label: gpt\nstart=2048, type=L\n");
  sh("mke2fs", ["-q", "-F", "-t", "ext4", "-E", `offset=${PART}`, "-d", tree, disk, `${4 * 1024 - 2}M`]);
  const rms = [];
  for (let i = 0; i < GARBAGE_MB / 64; i++) rms.push(`rm /garbage/g${i}`);
  sh("debugfs", ["-w", "-f", "-", `${disk}?offset=${PART}`], `${rms.join("\n")}\n`);
  rmSync(tree, { recursive: true, force: true });
}

/** One timed command: wall seconds and CPU seconds (user + sys, of the process and its children). */
interface Timing {
  wall: number;
  cpu: number;
}

const TIME = existsSync("/usr/bin/time") ? "/usr/bin/time" : null;

function timedCmd(cmd: string, args: string[]): Timing {
  if (!TIME) return { wall: time(() => sh(cmd, args)), cpu: Number.NaN };
  let out = "";
  const wall = time(() => {
    const r = spawnSync(TIME, ["-f", "CPU %U %S", cmd, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    out = r.stderr.toString();
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${out}`);
  });
  const m = /CPU ([\d.]+) ([\d.]+)/.exec(out);
  return { wall, cpu: m ? Number(m[1]) + Number(m[2]) : Number.NaN };
}

async function timedInProcess(f: () => Promise<unknown>): Promise<Timing> {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await f();
  const c = process.cpuUsage(c0);
  return { wall: Number(process.hrtime.bigint() - t0) / 1e9, cpu: (c.user + c.system) / 1e6 };
}

const med = (x: number[]) => [...x].sort((p, s) => p - s)[Math.floor(x.length / 2)]!;
const uptime = () => execFileSync("uptime").toString().trim();

/** Self time of the busiest functions in a V8 .cpuprofile (idle and program left out). */
function profileSummary(dir: string, top = 8): string[] {
  const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
  if (!file) return ["(no profile written)"];
  const p = JSON.parse(readFileSync(join(dir, file), "utf8")) as {
    nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const f = byId.get(id)!.callFrame;
    const t = p.timeDeltas[i] ?? 0;
    total += t;
    if (f.functionName === "(idle)" || f.functionName === "(program)") return;
    const k = `${f.functionName || "(anonymous)"} ${f.url.split("/").pop() ?? ""}:${f.lineNumber + 1}`;
    self.set(k, (self.get(k) ?? 0) + t);
  });
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [
    `profile: ${(total / 1000).toFixed(0)} ms sampled`,
    ...rows.map(
      ([k, t]) =>
        `${(t / 1000).toFixed(1).padStart(8)} ms ${((100 * t) / total).toFixed(1).padStart(5)} %  ${k}`,
    ),
  ];
}

function profiledBin(args: string[]): string[] {
  const dir = join(OUT, "profile");
  rmSync(dir, { recursive: true, force: true });
  sh(process.execPath, ["--cpu-prof", `--cpu-prof-dir=${dir}`, BIN, ...args]);
  return profileSummary(dir);
}

function line(name: string, t: Timing[], peer?: Timing[]): string {
  const w = med(t.map((x) => x.wall));
  const c = med(t.map((x) => x.cpu));
  const ratio = peer
    ? `  ${(med(peer.map((x) => x.wall)) / w).toFixed(2)}x wall, ${(med(peer.map((x) => x.cpu)) / c).toFixed(2)}x CPU`
    : "";
  return `  ${name.padEnd(32)} ${w.toFixed(2)} s (CPU ${c.toFixed(2)} s)${ratio}`;
}

function buildSparseRaw(path: string): void {
  writeFileSync(path, "");
  sh("truncate", ["-s", "4G", path]);
  const piece = 4 << 20;
  for (let i = 0; i < 16; i++) {
    const seekMiB = i * 256 + 17; // one 4 MiB piece every 256 MiB
    execFileSync("sh", [
      "-c",
      `head -c ${piece} /dev/urandom | dd of=${path} bs=1M seek=${seekMiB} conv=notrunc status=none`,
    ]);
  }
}

/**
 * The XFS disk: the kernel writes the files through a loop mount and deletes the garbage (the
 * blocks keep its bytes), then the filesystem goes into the GPT partition.
 */
function buildXfsImage(disk: string): void {
  const fsImg = join(OUT, "xfs-part.img");
  const mnt = join(OUT, "mnt");
  mkdirSync(mnt, { recursive: true });
  writeFileSync(fsImg, "");
  sh("truncate", ["-s", `${4 * 1024 - 2}M`, fsImg]);
  sh("mkfs.xfs", ["-q", "-f", fsImg]);
  const dev = sh("losetup", ["--find", "--show", fsImg]).toString().trim();
  try {
    sh("mount", [dev, mnt]);
    try {
      execFileSync("sh", [
        "-c",
        `mkdir ${mnt}/live ${mnt}/garbage && for i in $(seq 1 ${LIVE_MB / 4}); do head -c ${4 << 20} /dev/urandom > ${mnt}/live/f$i; done && for i in $(seq 1 ${GARBAGE_MB / 64}); do head -c ${64 << 20} /dev/urandom > ${mnt}/garbage/g$i; done && sync && rm -r ${mnt}/garbage && sync`,
      ]);
    } finally {
      sh("umount", [mnt]);
    }
  } finally {
    sh("losetup", ["-d", dev]);
  }
  writeFileSync(disk, "");
  sh("truncate", ["-s", "4G", disk]);
  sh("sfdisk", ["-q", disk], "label: gpt\nstart=2048, type=L\n");
  sh("dd", [`if=${fsImg}`, `of=${disk}`, "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"]);
  rmSync(fsImg, { force: true });
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  console.log(`before: ${uptime()}`);
  const disk = join(OUT, `disk-${FS === "xfs" ? "xfs-" : ""}${LIVE_MB}-${GARBAGE_MB}.raw`);
  if (!existsSync(disk)) {
    console.log(`building ${disk} (${FS}, ${LIVE_MB} MiB live, ${GARBAGE_MB} MiB deleted)...`);
    if (FS === "xfs") buildXfsImage(disk);
    else buildImage(disk);
  }
  const sparse = join(OUT, "sparse-4g-64m.raw");
  if (!existsSync(sparse)) buildSparseRaw(sparse);
  const q = join(OUT, "qemu.qcow2");
  const b = join(OUT, "bin.qcow2");
  const l = join(OUT, "lib.qcow2");
  const runs = Number(process.env.IMGPATCH_BENCH_RUNS ?? 3);
  const t = {
    q: [] as Timing[],
    b: [] as Timing[],
    l: [] as Timing[],
    sq: [] as Timing[],
    sb: [] as Timing[],
    sl: [] as Timing[],
  };
  const fresh = () => {
    for (const f of [q, b, l]) rmSync(f, { force: true });
    sh("sync", []);
  };
  for (let r = 0; r < runs; r++) {
    fresh();
    t.q.push(timedCmd("qemu-img", ["convert", "-O", "qcow2", disk, q]));
    fresh();
    t.b.push(timedCmd(process.execPath, [BIN, "sparsify", "-q", "-O", "qcow2", disk, b]));
    fresh();
    t.l.push(
      await timedInProcess(async () => {
        const dev = await FileDevice.open(disk, { readOnly: true });
        await sparsifyCopy(dev, l, "qcow2");
        await dev.close();
      }),
    );
    fresh();
    t.sq.push(timedCmd("qemu-img", ["convert", "-O", "qcow2", sparse, q]));
    fresh();
    t.sb.push(timedCmd(process.execPath, [BIN, "convert", "-q", "-O", "qcow2", sparse, b]));
    fresh();
    t.sl.push(await timedInProcess(() => convertImage(sparse, l, { overwrite: true })));
  }
  // the last outputs of each job, checked
  fresh();
  sh("qemu-img", ["convert", "-O", "qcow2", disk, q]);
  sh(process.execPath, [BIN, "sparsify", "-q", "-O", "qcow2", disk, b]);
  const qcheck = execFileSync("sh", ["-c", `qemu-img check -q ${b}; echo $?`])
    .toString()
    .trim();
  const fsck = execFileSync("sh", [
    "-c",
    FS === "xfs"
      ? `qemu-img convert -O raw ${b} ${OUT}/check.raw && dd if=${OUT}/check.raw of=${OUT}/check.part bs=1M skip=1 conv=sparse status=none && xfs_repair -n -f ${OUT}/check.part >/dev/null 2>&1; echo $?; rm -f ${OUT}/check.part`
      : `qemu-img convert -O raw ${b} ${OUT}/check.raw && e2fsck -fn '${OUT}/check.raw?offset=${PART}' >/dev/null 2>&1; echo $?`,
  ])
    .toString()
    .trim();
  rmSync(join(OUT, "check.raw"), { force: true });
  const sq = statSync(q).size;
  const sb = statSync(b).size;
  console.log(
    `sparsify, 4 GiB GPT disk, ${FS} with ${LIVE_MB} MiB live + ${GARBAGE_MB} MiB deleted (median of ${runs}):`,
  );
  console.log(`${line("qemu-img convert -O qcow2", t.q)}  output ${mib(sq)}`);
  console.log(`${line("imgpatch sparsify (bin)", t.b, t.q)}  output ${mib(sb)}  (target >= 2.5x)`);
  console.log(line("sparsifyCopy (in-process)", t.l, t.q));
  console.log(
    `  size saved: ${mib(sq - sb)} (target >= 1 GiB); qemu-img check: exit ${qcheck}; ${FS === "xfs" ? "xfs_repair -n" : "e2fsck -fn"}: exit ${fsck}`,
  );
  console.log("convert of a 4 GiB sparse raw file holding 64 MiB:");
  console.log(line("qemu-img convert -O qcow2", t.sq));
  console.log(`${line("imgpatch convert (bin)", t.sb, t.sq)}  (target >= 0.8x)`);
  console.log(line("convertImage (in-process)", t.sl, t.sq));
  fresh();
  console.log("CPU profile of `imgpatch sparsify` (self time):");
  for (const x of profiledBin(["sparsify", "-q", "-O", "qcow2", disk, b])) console.log(`  ${x}`);
  fresh();
  console.log("CPU profile of `imgpatch convert` of the sparse raw (self time):");
  for (const x of profiledBin(["convert", "-q", "-O", "qcow2", sparse, b])) console.log(`  ${x}`);
  fresh();
  console.log(`after: ${uptime()}`);
}

await main();
