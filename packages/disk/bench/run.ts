// FileDevice sequential throughput vs dd on the same file, in the same run.
//   npm run bench -w packages/disk            (1 GiB in 1 MiB blocks)
//   BENCH_SIZE_MIB=256 BENCH_DIR=/var/tmp npm run bench -w packages/disk
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileDevice } from "../src/index.js";

const MiB = 1024 * 1024;
const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 1024);
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "imgpatch-disk-bench-"));
const path = join(dir, "bench.img");

function dd(args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync("dd", args, { stdio: ["ignore", "ignore", "pipe"] });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`dd ${args.join(" ")} failed: ${r.stderr}`);
  return ms;
}

async function fileDeviceWrite(): Promise<number> {
  const block = new Uint8Array(MiB);
  for (let i = 0; i < block.length; i++) block[i] = (i * 2654435761) >>> 24; // not all zeros
  const dev = await FileDevice.open(path);
  const t0 = performance.now();
  for (let i = 0; i < sizeMiB; i++) await dev.write(i * MiB, block);
  await dev.flush(); // fdatasync, like dd conv=fdatasync
  const ms = performance.now() - t0;
  await dev.close();
  return ms;
}

async function fileDeviceRead(): Promise<number> {
  const block = new Uint8Array(MiB);
  const dev = await FileDevice.open(path, { readOnly: true });
  let sum = 0;
  const t0 = performance.now();
  for (let i = 0; i < sizeMiB; i++) {
    await dev.readInto(i * MiB, block);
    sum += block[0];
  }
  const ms = performance.now() - t0;
  await dev.close();
  if (sum < 0) console.log(sum); // keep the reads observable
  return ms;
}

const rate = (ms: number) => (sizeMiB / (ms / 1000)).toFixed(0).padStart(6);

try {
  // Create the file once with dd so both writers overwrite allocated blocks.
  dd(["if=/dev/zero", `of=${path}`, "bs=1M", `count=${sizeMiB}`, "conv=fdatasync", "status=none"]);
  const rows: Array<[string, number, number]> = [];
  // Alternate and keep the best of two, so neither side profits from running second.
  let fdW = Number.POSITIVE_INFINITY;
  let ddW = Number.POSITIVE_INFINITY;
  let fdR = Number.POSITIVE_INFINITY;
  let ddR = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 2; round++) {
    fdW = Math.min(fdW, await fileDeviceWrite());
    ddW = Math.min(
      ddW,
      dd([
        "if=/dev/zero",
        `of=${path}`,
        "bs=1M",
        `count=${sizeMiB}`,
        "conv=notrunc,fdatasync",
        "status=none",
      ]),
    );
    fdR = Math.min(fdR, await fileDeviceRead());
    ddR = Math.min(ddR, dd([`if=${path}`, "of=/dev/null", "bs=1M", "status=none"]));
  }
  rows.push(["sequential write + fdatasync", fdW, ddW], ["sequential read (page cache warm)", fdR, ddR]);
  console.log(`FileDevice vs dd, ${sizeMiB} MiB in 1 MiB blocks, file in ${dir}`);
  console.log("                                     FileDevice MiB/s    dd MiB/s   FileDevice/dd");
  for (const [what, ours, theirs] of rows) {
    console.log(
      `${what.padEnd(36)} ${rate(ours)}            ${rate(theirs)}      ${(theirs / ours).toFixed(2)}`,
    );
  }
  console.log(`peak RSS: ${(process.resourceUsage().maxRSS / 1024).toFixed(1)} MiB`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
