/**
 * Sparsify by filesystem knowledge (issue #20): a 4 GiB GPT disk whose ext4 holds ~600 MiB of live
 * files and ~1.2 GiB of deleted-file garbage (written, then removed with debugfs: the bytes stay on
 * disk). Same run, synced copies: `qemu-img convert -O qcow2` (copies the garbage) against
 * `imgpatch sparsify` (the bin, whole process) and the library in-process. Prints times, output sizes
 * and the ratio; checks the output with e2fsck. Sizes scale with IMGPATCH_BENCH_LIVE_MB /
 * IMGPATCH_BENCH_GARBAGE_MB; the image is cached in bench-out/.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileDevice } from "@imgpatch/disk";
import { sparsifyCopy } from "../src/commands/sparsify.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const OUT = join(ROOT, "bench-out/sparsify");
const LIVE_MB = Number(process.env.IMGPATCH_BENCH_LIVE_MB ?? 600);
const GARBAGE_MB = Number(process.env.IMGPATCH_BENCH_GARBAGE_MB ?? 1200);
const BIN = join(ROOT, "packages/cli/dist/bundle/imgpatch.js");
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

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const disk = join(OUT, `disk-${LIVE_MB}-${GARBAGE_MB}.raw`);
  if (!existsSync(disk)) {
    console.log(`building ${disk} (${LIVE_MB} MiB live, ${GARBAGE_MB} MiB deleted)...`);
    buildImage(disk);
  }
  const q = join(OUT, "qemu.qcow2");
  const b = join(OUT, "bin.qcow2");
  const l = join(OUT, "lib.qcow2");
  const runs = Number(process.env.IMGPATCH_BENCH_RUNS ?? 3);
  const tq: number[] = [];
  const tb: number[] = [];
  const tl: number[] = [];
  for (let r = 0; r < runs; r++) {
    for (const f of [q, b, l]) rmSync(f, { force: true });
    sh("sync", []);
    tq.push(time(() => sh("qemu-img", ["convert", "-O", "qcow2", disk, q])));
    sh("sync", []);
    tb.push(time(() => sh(process.execPath, [BIN, "sparsify", "-q", "-O", "qcow2", disk, b])));
    sh("sync", []);
    const t0 = process.hrtime.bigint();
    const dev = await FileDevice.open(disk, { readOnly: true });
    await sparsifyCopy(dev, l, "qcow2");
    await dev.close();
    tl.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  const med = (x: number[]) => [...x].sort((p, s) => p - s)[Math.floor(x.length / 2)]!;
  const fsck = execFileSync("sh", [
    "-c",
    `qemu-img convert -O raw ${b} ${OUT}/check.raw && e2fsck -fn '${OUT}/check.raw?offset=${PART}' >/dev/null 2>&1; echo $?`,
  ])
    .toString()
    .trim();
  rmSync(join(OUT, "check.raw"), { force: true });
  const sq = statSync(q).size;
  const sb = statSync(b).size;
  console.log(
    `sparsify, 4 GiB GPT disk, ${LIVE_MB} MiB live + ${GARBAGE_MB} MiB deleted (median of ${runs}):`,
  );
  console.log(`  qemu-img convert -O qcow2      ${med(tq).toFixed(2)} s  output ${mib(sq)}`);
  console.log(
    `  imgpatch sparsify (bin)        ${med(tb).toFixed(2)} s  output ${mib(sb)}  ${(med(tq) / med(tb)).toFixed(2)}x  (target >= 2.5x)`,
  );
  console.log(`  sparsifyCopy (in-process)      ${med(tl).toFixed(2)} s  ${(med(tq) / med(tl)).toFixed(2)}x`);
  console.log(`  size saved: ${mib(sq - sb)} (target >= 1 GiB); e2fsck -fn on the output: exit ${fsck}`);
}

await main();
