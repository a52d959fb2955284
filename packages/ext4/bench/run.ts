/**
 * Benchmarks (run: npm run bench -w packages/ext4):
 *  1. Whole-tree read (every file's content, every symlink, every directory) of a ~20,000-file
 *     image made by mke2fs -d, against `debugfs -R 'rdump / DIR'` on the same image in the same run
 *     (medians of BENCH_RUNS alternating runs, default 5). BENCH_KEEP=1 keeps the work directory;
 *     BENCH_IMAGE=path runs only this comparison on an existing image.
 *  2. Path lookup in a 50,000-entry htree directory: device reads and blocks per lookup.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { Ext4Fs } from "@imgpatch/ext4";

const FILES = Number(process.env.BENCH_FILES ?? 20000);
const DIRS = Number(process.env.BENCH_DIRS ?? 2000);
const LINKS = 500;
const HTREE = Number(process.env.BENCH_HTREE ?? 50000);

function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeTree(root: string): number {
  const r = rng(1);
  const pool = Buffer.alloc(8 << 20);
  for (let i = 0; i < pool.length; i++) pool[i] = (r() * 256) | 0;
  const dirs: string[] = [root];
  for (let d = 0; d < DIRS; d++) {
    const parent = dirs[Math.floor(r() * dirs.length)];
    const p = join(parent, `d${d}`);
    mkdirSync(p);
    dirs.push(p);
  }
  let bytes = 0;
  for (let f = 0; f < FILES; f++) {
    const dir = dirs[Math.floor(r() * dirs.length)];
    // Mostly small files, a few large ones (~9 KiB mean plus ~20 files of 1-4 MiB).
    const size = f % 1000 === 0 ? (1 + Math.floor(r() * 4)) << 20 : Math.floor(r() * r() * 32768);
    const off = Math.floor(r() * (pool.length - size));
    writeFileSync(join(dir, `f${f}.dat`), pool.subarray(off, off + size));
    bytes += size;
  }
  for (let l = 0; l < LINKS; l++) {
    symlinkSync(`../f${l}.dat`, join(dirs[1 + (l % (dirs.length - 1))], `link${l}`));
  }
  return bytes;
}

function time<T>(fn: () => T): [T, number] {
  const t = performance.now();
  const v = fn();
  return [v, performance.now() - t];
}

async function readTree(
  path: string,
): Promise<{ files: number; bytes: number; counters: Ext4Fs["counters"] }> {
  const dev = await FileDevice.open(path, { readOnly: true });
  const fs = await Ext4Fs.open(dev);
  let files = 0;
  let bytes = 0;
  for await (const e of fs.walk("/")) {
    if (e.stats.isFile()) {
      const data = await fs.readFileInode(e.inode, e.path);
      bytes += data.length;
      files++;
    } else if (e.stats.isSymbolicLink()) {
      await fs.readSymlinkInode(e.inode);
    }
  }
  const counters = { ...fs.counters };
  await fs.close();
  return { files, bytes, counters };
}

/**
 * Our whole-tree read against `debugfs -R 'rdump / DIR'` on the same image, alternating, `runs`
 * times after one untimed warm-up of each (page cache, JIT); prints the medians.
 */
async function compare(img: string, runs: number): Promise<void> {
  // rdump writes into tmpfs when there is one, so debugfs is not slowed by disk writes.
  const shm = existsSync("/dev/shm")
    ? mkdtempSync("/dev/shm/ext4-bench-rdump-")
    : mkdtempSync(join(tmpdir(), "rdump-"));
  const rdump = () => {
    const out = join(shm, "out");
    mkdirSync(out);
    const t0 = performance.now();
    const r = spawnSync("debugfs", ["-R", `rdump / ${out}`, img], { stdio: ["ignore", "ignore", "pipe"] });
    const dt = performance.now() - t0;
    if (r.status !== 0) throw new Error(`debugfs failed: ${r.stderr}`);
    rmSync(out, { recursive: true, force: true });
    return dt;
  };
  const ours: number[] = [];
  const theirs: number[] = [];
  let last: Awaited<ReturnType<typeof readTree>> | undefined;
  try {
    rdump();
    await readTree(img);
    for (let i = 0; i < runs; i++) {
      theirs.push(rdump());
      const t1 = performance.now();
      last = await readTree(img);
      ours.push(performance.now() - t1);
    }
  } finally {
    rmSync(shm, { recursive: true, force: true });
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const o = med(ours);
  const d = med(theirs);
  const ms = (a: number[]) => a.map((x) => x.toFixed(0)).join("/");
  console.log(
    `whole-tree read: imgpatch ${o.toFixed(0)} ms in-process (runs ${ms(ours)}; ${last!.files} files, ${(last!.bytes / 2 ** 20).toFixed(1)} MiB, ` +
      `${last!.counters.reads} device reads, ${(last!.counters.bytes / 2 ** 20).toFixed(1)} MiB read) | ` +
      `debugfs rdump ${d.toFixed(0)} ms (runs ${ms(theirs)}; whole process, output to ${shm.startsWith("/dev/shm") ? "tmpfs" : "disk"}) | ratio debugfs/imgpatch = ${(d / o).toFixed(2)}x ${d / o >= 1 ? "(target >= 1x met)" : "(target >= 1x MISSED)"}`,
  );
}

async function main() {
  const runs = Number(process.env.BENCH_RUNS ?? 5);
  if (process.env.BENCH_IMAGE) {
    await compare(process.env.BENCH_IMAGE, runs);
    return;
  }
  const work = mkdtempSync(join(tmpdir(), "ext4-bench-"));
  try {
    const src = join(work, "src");
    mkdirSync(src);
    const [bytes, tTree] = time(() => makeTree(src));
    const img = join(work, "tree.img");
    execFileSync("mke2fs", ["-q", "-F", "-t", "ext4", "-d", src, img, "1G"]);
    console.log(
      `tree: ${FILES} files, ${DIRS} dirs, ${LINKS} symlinks, ${(bytes / 2 ** 20).toFixed(1)} MiB (generated in ${tTree.toFixed(0)} ms); image ${img}`,
    );
    await compare(img, runs);

    // htree lookup.
    const hsrc = join(work, "hsrc");
    mkdirSync(join(hsrc, "big"), { recursive: true });
    for (let i = 0; i < HTREE; i++)
      writeFileSync(join(hsrc, "big", `entry-${i.toString().padStart(6, "0")}`), "");
    const himg = join(work, "htree.img");
    execFileSync("mke2fs", ["-q", "-F", "-t", "ext4", "-d", hsrc, himg, "256M"]);
    spawnSync("e2fsck", ["-fyD", himg], { stdio: "ignore" });
    const dev = await FileDevice.open(himg, { readOnly: true });
    const fs = await Ext4Fs.open(dev);
    const dir = await fs.stat("/big");
    const before = { ...fs.counters };
    const name = `/big/entry-${String(Math.floor(HTREE * 0.618)).padStart(6, "0")}`;
    const t2 = performance.now();
    const st = await fs.lstat(name);
    const dt = performance.now() - t2;
    const metaBlocks = fs.counters.metadataBlocks - before.metadataBlocks;
    const reads = fs.counters.reads - before.reads;
    const dirBlocks = Math.ceil(dir.size / fs.blockSize);
    console.log(
      `htree lookup in a ${HTREE}-entry directory (${dirBlocks} blocks, indexed: ${(dir.flags & 0x1000) !== 0}): ` +
        `${reads} device reads, ${metaBlocks} metadata blocks (incl. one ${Math.floor(65536 / fs.blockSize)}-block inode-table chunk for the result), ` +
        `${dt.toFixed(2)} ms; a linear scan would read ${dirBlocks} blocks; ino ${st.ino}`,
    );
    await fs.close();
  } finally {
    if (process.env.BENCH_KEEP) console.log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

await main();
