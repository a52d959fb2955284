/**
 * Tree walks (issue #20): an ext4 with 65,000 directories and 65,000 files (IMGPATCH_BENCH_DIRS),
 * whole process through the bin — `imgpatch ls -R -l`, `imgpatch diff` (the image against itself:
 * every file's content hashed on both sides), `imgpatch get -R` (the tree copied out to the host) —
 * against the kernel's warm `ls -R -l` of a read-only loop mount of the same image, in the same run
 * (root; always unmounted and detached). Medians of IMGPATCH_BENCH_RUNS (default 3) alternating
 * runs, wall and CPU (user + sys, from /usr/bin/time), then a CPU-profile summary of one `ls -R -l`.
 * Then the same tree on XFS (copied in by the kernel: cp -a between loop mounts): `ls -R -l` against
 * the kernel's on that image. The images are cached in bench-out/walk.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const OUT = join(ROOT, "bench-out/walk");
const DIRS = Number(process.env.IMGPATCH_BENCH_DIRS ?? 65000);
const RUNS = Number(process.env.IMGPATCH_BENCH_RUNS ?? 3);
const BIN = join(ROOT, "packages/cli/dist/bundle/imgpatch.js");

function buildImage(image: string): void {
  const tree = join(OUT, "tree");
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(tree);
  // 256 top directories of up to 253 subdirectories, one small file in each directory.
  let n = 0;
  for (let a = 0; n < DIRS; a++) {
    const top = join(tree, `a${a}`);
    mkdirSync(top);
    writeFileSync(join(top, "top.txt"), "hi\n");
    n++;
    for (let b = 0; b < 253 && n < DIRS; b++, n++) {
      mkdirSync(join(top, `dir${b}`));
      writeFileSync(join(top, `dir${b}`, "file.txt"), "x".repeat(b % 50));
    }
  }
  execFileSync("mke2fs", ["-q", "-F", "-t", "ext4", "-N", String(DIRS * 3), "-d", tree, image, "1G"]);
  rmSync(tree, { recursive: true, force: true });
}

/** Attaches `image` to a loop device and mounts it at `mnt` for `fn`; always unmounted and detached. */
function withMount<T>(image: string, mnt: string, rw: boolean, fn: () => T): T {
  mkdirSync(mnt, { recursive: true });
  const loop = execFileSync("losetup", ["-f", "--show", ...(rw ? [] : ["-r"]), image], {
    encoding: "utf8",
  }).trim();
  try {
    execFileSync("mount", ["-o", rw ? "rw" : "ro", loop, mnt]);
    try {
      return fn();
    } finally {
      execFileSync("umount", [mnt]);
    }
  } finally {
    execFileSync("losetup", ["-d", loop]);
  }
}

/** The ext4 image's tree on a 1 GiB XFS, copied by the kernel (mkfs.xfs cannot populate). */
function buildXfsImage(ext4: string, image: string): void {
  const tmp = `${image}.tmp`;
  rmSync(tmp, { force: true });
  execFileSync("truncate", ["-s", "1G", tmp]);
  execFileSync("mkfs.xfs", ["-q", "-f", tmp]);
  withMount(ext4, join(OUT, "from"), false, () =>
    withMount(tmp, join(OUT, "to"), true, () => {
      execFileSync("cp", ["-a", `${join(OUT, "from")}/.`, join(OUT, "to")]);
    }),
  );
  execFileSync("mv", [tmp, image]);
}

/** Runs a command with /usr/bin/time: [wall s, cpu s]; stdout discarded. */
function timed(cmd: string, args: string[]): [number, number] {
  const t = join(OUT, "time.txt");
  execFileSync("/usr/bin/time", ["-o", t, "-f", "%e %U %S", cmd, ...args], {
    stdio: ["ignore", "ignore", "inherit"],
    maxBuffer: 1 << 30,
  });
  const [e, u, s] = readFileSync(t, "utf8").trim().split(/\s+/).map(Number);
  return [e, u + s];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

function profileSummary(args: string[]): string {
  const dir = join(OUT, "prof");
  rmSync(dir, { recursive: true, force: true });
  execFileSync(process.execPath, ["--cpu-prof", "--cpu-prof-dir", dir, BIN, ...args], { stdio: "ignore" });
  const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"))!;
  const p = JSON.parse(readFileSync(join(dir, file), "utf8")) as {
    nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const f = byId.get(id)!.callFrame;
    const key = `${f.functionName || "(anonymous)"} ${f.url.split("/").pop()}:${f.lineNumber}`;
    self.set(key, (self.get(key) ?? 0) + p.timeDeltas[i]);
    total += p.timeDeltas[i];
  });
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 10)
    .map(
      ([k, v]) =>
        `  ${(v / 1000).toFixed(0).padStart(6)} ms ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`,
    )
    .join("\n");
}

function main(): void {
  if (process.getuid?.() !== 0) throw new Error("the kernel side needs root (mount -o ro,loop)");
  mkdirSync(OUT, { recursive: true });
  const image = join(OUT, `walk-${DIRS}.raw`);
  if (!existsSync(image)) {
    console.log(`building ${image} (${DIRS} directories, ${DIRS} files)...`);
    buildImage(image);
  }
  const mnt = join(OUT, "mnt");
  mkdirSync(mnt, { recursive: true });
  const loop = execFileSync("losetup", ["-f", "--show", "-r", image], { encoding: "utf8" }).trim();
  const res: Record<string, Array<[number, number]>> = { kernel: [], ls: [], diff: [], get: [] };
  try {
    execFileSync("mount", ["-o", "ro", loop, mnt]);
    try {
      execFileSync("ls", ["-R", "-l", mnt], { stdio: "ignore", maxBuffer: 1 << 30 }); // warm
      for (let r = 0; r < RUNS; r++) {
        res.kernel.push(timed("ls", ["-R", "-l", mnt]));
        res.ls.push(timed(process.execPath, [BIN, "ls", "-R", "-l", image, "/"]));
        res.diff.push(timed(process.execPath, [BIN, "diff", image, image]));
        const dest = join(OUT, "get");
        rmSync(dest, { recursive: true, force: true });
        res.get.push(timed(process.execPath, [BIN, "get", image, "/", dest]));
        rmSync(dest, { recursive: true, force: true });
      }
    } finally {
      execFileSync("umount", [mnt]);
    }
  } finally {
    execFileSync("losetup", ["-d", loop]);
  }
  const k = median(res.kernel.map((x) => x[0]));
  console.log(`${DIRS} directories + ${DIRS} files, medians of ${RUNS} (wall, cpu):`);
  for (const [name, xs] of Object.entries(res)) {
    const w = median(xs.map((x) => x[0]));
    const c = median(xs.map((x) => x[1]));
    console.log(
      `  ${name.padEnd(7)} ${w.toFixed(2)} s  cpu ${c.toFixed(2)} s${name === "kernel" ? "" : `  (${(w / k).toFixed(1)}x the kernel's ls -R -l)`}`,
    );
  }
  console.log("CPU profile of imgpatch ls -R -l (self time):");
  console.log(profileSummary(["ls", "-R", "-l", image, "/"]));

  const xfs = join(OUT, `walk-${DIRS}.xfs`);
  if (!existsSync(xfs)) {
    console.log(`building ${xfs} (the same tree on XFS)...`);
    buildXfsImage(image, xfs);
  }
  const xres: Record<string, Array<[number, number]>> = { kernel: [], ls: [] };
  withMount(xfs, mnt, false, () => {
    execFileSync("ls", ["-R", "-l", mnt], { stdio: "ignore", maxBuffer: 1 << 30 }); // warm
    for (let r = 0; r < RUNS; r++) {
      xres.kernel.push(timed("ls", ["-R", "-l", mnt]));
      xres.ls.push(timed(process.execPath, [BIN, "ls", "-R", "-l", xfs, "/"]));
    }
  });
  const xk = median(xres.kernel.map((x) => x[0]));
  console.log(`XFS, the same tree, medians of ${RUNS} (wall, cpu):`);
  for (const [name, xs] of Object.entries(xres)) {
    const w = median(xs.map((x) => x[0]));
    const c = median(xs.map((x) => x[1]));
    console.log(
      `  ${name.padEnd(7)} ${w.toFixed(2)} s  cpu ${c.toFixed(2)} s${name === "kernel" ? "" : `  (${(w / xk).toFixed(1)}x the kernel's ls -R -l)`}`,
    );
  }
  console.log("CPU profile of imgpatch ls -R -l on XFS (self time):");
  console.log(profileSummary(["ls", "-R", "-l", xfs, "/"]));
}

main();
