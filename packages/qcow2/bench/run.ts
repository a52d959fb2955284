// qcow2 engine vs qemu-img / qemu-io on the same files, in the same run.
//   npm run bench -w packages/qcow2                 (1 GiB images, 4 GiB sparse convert)
//   BENCH_SIZE_MIB=256 BENCH_DIR=/var/tmp npm run bench -w packages/qcow2
// Ratio = qemu time / our time: 1.0 means as fast as qemu, above 1 faster. Each side runs
// twice, alternating, and the best time counts (so neither profits from a warm page cache).
// Both sides leave write-back to the OS the same way: qemu-io runs with -t writeback (it
// flushes once at exit; we flush on close), convert does not fsync (qemu-img convert's default
// cache mode is "unsafe", and convertImage's `sync` defaults to false).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { convertImage, createOverlay, createQcow2, openQcow2 } from "../src/index.js";

const MiB = 1024 * 1024;
const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 1024);
const size = sizeMiB * MiB;
const sparseSize = 4 * size;
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "imgpatch-qcow2-bench-"));
const CHUNK = 4 * MiB;

function run(cmd: string, args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"], maxBuffer: 1 << 26 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.slice(0, 6).join(" ")} failed: ${r.stderr}`);
  return ms;
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function xorshift(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/** Incompressible bytes. */
function randomBlock(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  const v = new Uint32Array(out.buffer);
  const r = xorshift(seed);
  for (let i = 0; i < v.length; i++) v[i] = r();
  return out;
}

/** Text-like bytes that deflate to roughly a third. */
function textBlock(n: number, seed: number): Uint8Array {
  const words = ["qcow2 ", "cluster ", "refcount ", "table ", "the ", "of ", "data ", "\n", "image ", "L2 "];
  const r = xorshift(seed);
  const out = new Uint8Array(n);
  let p = 0;
  while (p < n) {
    const x = r();
    const w = x & 7 ? words[x % words.length]! : String(x);
    for (let i = 0; i < w.length && p < n; i++) out[p++] = w.charCodeAt(i);
  }
  return out;
}

async function writeRawFile(path: string, bytes: number, block: (i: number) => Uint8Array) {
  const fh = await open(path, "w");
  for (let off = 0, i = 0; off < bytes; off += CHUNK, i++) await fh.write(block(i), 0, CHUNK, off);
  await fh.close();
}

interface Row {
  name: string;
  ours: number;
  qemu: number;
  mib: number;
}
const rows: Row[] = [];

async function compare(
  name: string,
  mib: number,
  ours: () => Promise<number>,
  qemu: () => number,
  cleanup: () => Promise<void>,
) {
  let o = Number.POSITIVE_INFINITY;
  let q = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 2; round++) {
    await cleanup();
    q = Math.min(q, qemu());
    await cleanup();
    o = Math.min(o, await ours());
  }
  await cleanup();
  rows.push({ name, ours: o, qemu: q, mib });
  const rate = (ms: number) => `${(mib / (ms / 1000)).toFixed(0).padStart(6)} MiB/s`;
  console.log(
    `${name.padEnd(44)} ours ${(o / 1000).toFixed(2).padStart(6)} s ${rate(o)} | qemu ${(q / 1000).toFixed(2).padStart(6)} s ${rate(q)} | ratio ${(q / o).toFixed(2)}`,
  );
}

try {
  console.log(`imgpatch qcow2 bench: ${sizeMiB} MiB images in ${dir}`);
  const srcRaw = join(dir, "src.raw");
  const src = join(dir, "src.qcow2");
  await writeRawFile(srcRaw, size, (i) => randomBlock(CHUNK, i + 1));
  run("qemu-img", ["convert", "-O", "qcow2", srcRaw, src]);
  await rm(srcRaw);
  const out = join(dir, "out");
  const clean = async () => rm(out, { force: true });
  const pattern = randomBlock(CHUNK, 99);

  // 1. sequential read of a qcow2 (as convert to raw, like qemu-img convert -O raw)
  await compare(
    `read ${sizeMiB} MiB qcow2 (convert -O raw)`,
    sizeMiB,
    () => timed(async () => void (await convertImage(src, out, { format: "raw" }))),
    () => run("qemu-img", ["convert", "-O", "raw", src, out]),
    clean,
  );
  // pure read through the BlockDevice API
  {
    const dev = await openQcow2(src, { readOnly: true });
    const buf = new Uint8Array(CHUNK);
    const ms = await timed(async () => {
      for (let off = 0; off < size; off += CHUNK) await dev.readInto(off, buf);
    });
    await dev.close();
    console.log(`  (Qcow2Device.readInto, 4 MiB reads: ${(sizeMiB / (ms / 1000)).toFixed(0)} MiB/s)`);
  }

  const qemuWriteCmds = () => {
    const cmds: string[] = [];
    for (let off = 0; off < size; off += CHUNK) cmds.push("-c", `write -P 0x5a ${off} ${CHUNK}`);
    return cmds;
  };

  // 2. sequential write into a new image
  await compare(
    `write ${sizeMiB} MiB into a new qcow2`,
    sizeMiB,
    () =>
      timed(async () => {
        const dev = await createQcow2(out, { size });
        for (let off = 0; off < size; off += CHUNK) await dev.write(off, pattern);
        await dev.close();
      }),
    () => {
      return (
        run("qemu-img", ["create", "-q", "-f", "qcow2", out, String(size)]) +
        run("qemu-io", ["-t", "writeback", ...qemuWriteCmds(), out])
      );
    },
    clean,
  );

  // 3. sequential write into an overlay
  await compare(
    `write ${sizeMiB} MiB into an overlay`,
    sizeMiB,
    () =>
      timed(async () => {
        const dev = await createOverlay(out, src, { backingFormat: "qcow2" });
        for (let off = 0; off < size; off += CHUNK) await dev.write(off, pattern);
        await dev.close();
      }),
    () =>
      run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", src, "-F", "qcow2", out]) +
      run("qemu-io", ["-t", "writeback", ...qemuWriteCmds(), out]),
    clean,
  );

  // 4. 10,000 random 4 KiB writes into an overlay (partial clusters: copy-on-write from the base)
  const r = xorshift(7);
  const offsets = Array.from({ length: 10_000 }, () => (r() % (size / 4096)) * 4096);
  const small = randomBlock(4096, 5);
  const cmdFile = join(dir, "random.cmds");
  writeFileSync(cmdFile, `${offsets.map((o) => `write -P 0x33 ${o} 4k`).join("\n")}\n`);
  await compare(
    "10,000 random 4 KiB writes into an overlay",
    (10_000 * 4096) / MiB,
    () =>
      timed(async () => {
        const dev = await createOverlay(out, src, { backingFormat: "qcow2" });
        for (const o of offsets) await dev.write(o, small);
        await dev.close();
      }),
    () => {
      const t = run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", src, "-F", "qcow2", out]);
      const t0 = performance.now();
      const res = spawnSync("sh", ["-c", `qemu-io -t writeback -f qcow2 '${out}' < '${cmdFile}'`], {
        stdio: "ignore",
      });
      if (res.status !== 0) throw new Error("qemu-io random writes failed");
      return t + performance.now() - t0;
    },
    clean,
  );

  // 5. convert raw → qcow2 of a sparse image (4x the size, 1/64 of it data)
  const sparse = join(dir, "sparse.raw");
  {
    const fh = await open(sparse, "w");
    await fh.truncate(sparseSize);
    const pieces = sparseSize / 64 / CHUNK;
    for (let i = 0; i < pieces; i++) {
      const off = Math.floor((i * sparseSize) / pieces / CHUNK) * CHUNK;
      await fh.write(randomBlock(CHUNK, 100 + i), 0, CHUNK, off);
    }
    await fh.close();
  }
  await compare(
    `convert ${sparseSize / MiB} MiB sparse raw → qcow2`,
    sparseSize / MiB,
    () => timed(async () => void (await convertImage(sparse, out))),
    () => run("qemu-img", ["convert", "-O", "qcow2", sparse, out]),
    clean,
  );
  await rm(sparse);

  // 6. convert -c (deflate) of text-like data
  const textMiB = Math.max(16, sizeMiB / 4);
  const text = join(dir, "text.raw");
  await writeRawFile(text, textMiB * MiB, (i) => textBlock(CHUNK, i + 1));
  await compare(
    `convert -c ${textMiB} MiB text-like raw → qcow2`,
    textMiB,
    () => timed(async () => void (await convertImage(text, out, { compress: "deflate" }))),
    () => run("qemu-img", ["convert", "-c", "-O", "qcow2", text, out]),
    clean,
  );

  const rss = process.resourceUsage().maxRSS / 1024;
  console.log(`peak RSS (ours, whole run): ${rss.toFixed(0)} MiB`);
  console.log(
    `ratios (qemu time / ours; target >= 0.8): ${rows.map((x) => `${x.name.split(" ").slice(0, 2).join(" ")} ${(x.qemu / x.ours).toFixed(2)}`).join(", ")}`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
