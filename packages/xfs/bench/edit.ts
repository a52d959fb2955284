/**
 * XFS editing benchmark (root; run: npm run bench -w @imgpatch/xfs, or tsx bench/edit.ts).
 * No userspace XFS writer exists, so the reference is the kernel itself, in the same run: on
 * identical, synced copies of one 2 GiB XFS image prefilled with 20,000 files (mkfs.xfs -p, cached
 * in $TMPDIR/imgpatch-xfs-edit-bench), `mount -o loop` + `cp -a` + `umount` versus
 *  (a) the 500-file / ~15 MiB agent bundle: imgpatch's whole process (the bundled bin,
 *      `customize --in-place --copy-in`, undo log included) and the library in-process;
 *  (b) 10,000 × 1 KiB files into one directory (library in-process);
 *  (c) one 1 GiB file (streamed from a host file) versus `dd` of the same bytes into the raw file.
 * Targets: (a) whole process ≤ 1.5× the kernel, in-process ≤ 0.5×; (b) ≤ 1.0×; (c) ≥ 0.8× dd's
 * speed. Prints ratios, bytes read/written through the device (CountingDevice), peak RSS, and
 * runs xfs_repair -n on every output. Knobs: BENCH_ONLY=abc, BENCH_RUNS (pairs of (a), default 3),
 * BENCH_CACHE, BENCH_BIG_MIB, IMGPATCH_BIN.
 */
import { execFileSync, spawnSync } from "node:child_process";
import {
  createReadStream,
  existsSync,
  mkdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CountingDevice, FileDevice } from "@imgpatch/disk";
import { XfsEditor } from "../src/index.js";

const CACHE = process.env.BENCH_CACHE ?? join(tmpdir(), "imgpatch-xfs-edit-bench");
const FILES = Number(process.env.BENCH_FILES ?? 20000);
const BIG = Number(process.env.BENCH_BIG_MIB ?? 1024) * 2 ** 20;
const ONLY = process.env.BENCH_ONLY ?? "abc";
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
const BIN =
  process.env.IMGPATCH_BIN ?? fileURLToPath(new URL("../../cli/dist/bundle/imgpatch.js", import.meta.url));

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmtAll = (xs: number[]) => xs.map((x) => x.toFixed(0)).join("/");
const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
const rss = () => `${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`;

function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 26, stdio: ["ignore", "pipe", "pipe"] });
}

/** The prefilled 2 GiB base image (built once): 2,000 nested dirs, FILES files, 500 symlinks. */
function baseImage(): string {
  const img = join(CACHE, `base-${FILES}.img`);
  if (existsSync(img)) return img;
  mkdirSync(CACHE, { recursive: true });
  const tree = join(CACHE, "tree");
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(tree);
  const r = rng(7);
  const pool = Buffer.alloc(8 << 20);
  for (let i = 0; i < pool.length; i++) pool[i] = (r() * 256) | 0;
  const dirs = [tree];
  for (let d = 0; d < 2000; d++) {
    const p = join(dirs[Math.floor(r() * dirs.length)], `d${d}`);
    mkdirSync(p);
    dirs.push(p);
  }
  for (let f = 0; f < FILES; f++) {
    const size = f % 1000 === 0 ? (1 + Math.floor(r() * 4)) << 20 : Math.floor(r() * r() * 32768);
    const off = Math.floor(r() * (pool.length - size));
    writeFileSync(join(dirs[Math.floor(r() * dirs.length)], `f${f}.dat`), pool.subarray(off, off + size));
  }
  for (let l = 0; l < 500; l++)
    symlinkSync(`../f${l}.dat`, join(dirs[1 + (l % (dirs.length - 1))], `link${l}`));
  // The protofile from find's listing, sorted so each directory's entries follow it.
  const lines = ["/dev/null", "0 0", "d--755 0 0"];
  const listing = sh("find", [tree, "-mindepth", "1", "-printf", "%P\\t%y\\t%l\\n"])
    .split("\n")
    .filter(Boolean);
  const entries = listing.map((l) => l.split("\t")).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const stack: string[] = [];
  for (const [rel, type, target] of entries) {
    const parts = rel.split("/");
    while (
      stack.length >= parts.length ||
      (stack.length > 0 && stack[stack.length - 1] !== parts.slice(0, stack.length).join("/"))
    ) {
      stack.pop();
      lines.push(`${" ".repeat(stack.length + 1)}$`);
    }
    const ind = " ".repeat(stack.length + 1);
    const name = parts[parts.length - 1];
    if (type === "d") {
      lines.push(`${ind}${name} d--755 0 0`);
      stack.push(rel);
    } else if (type === "l") lines.push(`${ind}${name} l--777 0 0 ${target}`);
    else lines.push(`${ind}${name} ---644 0 0 ${join(tree, rel)}`);
  }
  while (stack.length > 0) {
    stack.pop();
    lines.push(`${" ".repeat(stack.length + 1)}$`);
  }
  lines.push("$", "");
  writeFileSync(join(CACHE, "base.proto"), lines.join("\n"));
  sh("truncate", ["-s", "2G", `${img}.tmp`]);
  sh("mkfs.xfs", ["-q", "-f", "-p", join(CACHE, "base.proto"), `${img}.tmp`]);
  sh("mv", [`${img}.tmp`, img]);
  rmSync(tree, { recursive: true, force: true });
  return img;
}

function copyOf(base: string, name: string): string {
  const p = join(CACHE, name);
  rmSync(p, { force: true });
  sh("cp", ["--sparse=always", base, p]);
  spawnSync("sync");
  return p;
}

function repair(img: string): string {
  const r = spawnSync("xfs_repair", ["-n", "-f", img], { encoding: "utf8" });
  return r.status === 0
    ? "clean"
    : `NOT CLEAN (exit ${r.status}): ${`${r.stdout}${r.stderr}`.split("\n").slice(0, 5).join(" | ")}`;
}

/**
 * The kernel: mount -o loop, cp -a SRC/. into DEST, umount (which writes everything back into the
 * image file's page cache), then `sync IMG` (fsync of the image file): the editor's close fsyncs
 * the image too (XfsEditor's `durable`), and without it the kernel's side left its writes in the
 * page cache while ours waited for the disk — up to ~0.7 s of (a)'s wall on a busy disk.
 */
function kernelCopy(img: string, src: string, dest: string): number {
  const mnt = join(CACHE, "mnt");
  mkdirSync(mnt, { recursive: true });
  const t = performance.now();
  sh("mount", ["-t", "xfs", "-o", "loop", img, mnt]);
  try {
    sh("mkdir", ["-p", join(mnt, dest)]);
    sh("cp", ["-a", `${src}/.`, join(mnt, dest)]);
  } finally {
    sh("umount", [mnt]);
  }
  sh("sync", [img]);
  return performance.now() - t;
}

async function ours(img: string, job: (ed: XfsEditor) => Promise<void>) {
  const dev = new CountingDevice(await FileDevice.open(img));
  const t = performance.now();
  const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
  await job(ed);
  await ed.close();
  await dev.close();
  return { ms: performance.now() - t, counts: dev.counts };
}

interface BundleFile {
  path: string;
  data: Buffer;
}

/** ~500 files / ~15 MiB in 61 dirs with 20 symlinks, also laid out on the host under CACHE/bundle/opt. */
function bundle(): { host: string; dirs: string[]; files: BundleFile[]; links: [string, string][] } {
  const r = rng(3);
  const host = join(CACHE, "bundle");
  rmSync(host, { recursive: true, force: true });
  const dirs = ["/opt/agent"];
  for (let d = 0; d < 60; d++) dirs.push(`${dirs[Math.floor(r() * dirs.length)]}/m${d}`);
  for (const d of dirs) mkdirSync(join(host, d), { recursive: true });
  const files: BundleFile[] = [];
  let total = 0;
  for (let f = 0; f < 500; f++) {
    const size = f % 50 === 0 ? 600_000 + Math.floor(r() * 400_000) : Math.floor(r() * 40_000);
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i++) data[i] = (r() * 256) | 0;
    const path = `${dirs[f % dirs.length]}/file${f}.bin`;
    writeFileSync(join(host, path), data);
    files.push({ path, data });
    total += size;
  }
  const links: [string, string][] = [];
  for (let l = 0; l < 20; l++) {
    links.push([`file${l}.bin`, `${dirs[l % dirs.length]}/link${l}`]);
    symlinkSync(`file${l}.bin`, join(host, `${dirs[l % dirs.length]}/link${l}`));
  }
  console.log(
    `  bundle: ${files.length} files, ${mib(total)}, ${dirs.length} dirs, ${links.length} symlinks`,
  );
  return { host, dirs, files, links };
}

async function main() {
  if (process.getuid?.() !== 0) {
    console.log("xfs edit benchmark: needs root (the reference is the kernel through a loop mount); skipped");
    return;
  }
  console.log(`xfs edit benchmark (cache ${CACHE})`);
  const t0 = performance.now();
  const base = baseImage();
  console.log(
    `  base image ${base} (2 GiB, ${FILES} files, ${mib(statSync(base).blocks * 512)} allocated) ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );

  if (ONLY.includes("a")) {
    const b = bundle();
    const inproc: number[] = [];
    const whole: number[] = [];
    const kernel: number[] = [];
    let last: Awaited<ReturnType<typeof ours>> | undefined;
    let checks = "";
    for (let run = 0; run < RUNS; run++) {
      const mine = copyOf(base, "a-ours.img");
      const r = await ours(mine, async (ed) => {
        for (const d of b.dirs) await ed.mkdir(d, { recursive: true });
        for (const f of b.files) await ed.writeFile(f.path, f.data, { mode: 0o644 });
        for (const [t, p] of b.links) await ed.symlink(t, p);
      });
      inproc.push(r.ms);
      last = r;
      const bin = copyOf(base, "a-bin.img");
      const tb = performance.now();
      const res = spawnSync(
        process.execPath,
        [BIN, "customize", "--in-place", bin, "--copy-in", `${join(b.host, "opt")}:/`],
        {
          encoding: "utf8",
          env: { ...process.env, SOURCE_DATE_EPOCH: "1700000000" },
        },
      );
      whole.push(performance.now() - tb);
      if (res.status !== 0) throw new Error(`imgpatch failed: ${res.stderr}`);
      const k = copyOf(base, "a-kernel.img");
      kernel.push(kernelCopy(k, join(b.host, "opt"), "/opt"));
      if (run === 0)
        checks = `xfs_repair -n: in-process ${repair(mine)}, bin ${repair(bin)}, kernel ${repair(k)}`;
    }
    const km = median(kernel);
    console.log(
      `(a) bundle: kernel mount+cp -a+umount median ${km.toFixed(0)} ms (${fmtAll(kernel)}); imgpatch whole process median ${median(whole).toFixed(0)} ms (${fmtAll(whole)}) → ${(median(whole) / km).toFixed(2)}× the kernel (target ≤ 1.5); in-process median ${median(inproc).toFixed(0)} ms (${fmtAll(inproc)}, first ${inproc[0].toFixed(0)}) → ${(median(inproc) / km).toFixed(2)}× (target ≤ 0.5)`,
    );
    const c = (last as NonNullable<typeof last>).counts;
    console.log(
      `    in-process: read ${mib(c.bytesRead)} in ${c.reads} reads, wrote ${mib(c.bytesWritten)} in ${c.writes} writes; ${checks}`,
    );
  }

  if (ONLY.includes("b")) {
    const mine = copyOf(base, "b-ours.img");
    const one = Buffer.alloc(1024, 0x61);
    const r = await ours(mine, async (ed) => {
      await ed.mkdir("/many");
      for (let i = 0; i < 10_000; i++) await ed.writeFile(`/many/file-${i}.txt`, one);
    });
    const host = join(CACHE, "many");
    rmSync(host, { recursive: true, force: true });
    mkdirSync(host);
    for (let i = 0; i < 10_000; i++) writeFileSync(join(host, `file-${i}.txt`), one);
    const k = copyOf(base, "b-kernel.img");
    const kms = kernelCopy(k, host, "/many");
    console.log(
      `(b) 10,000 × 1 KiB in one dir: ours ${r.ms.toFixed(0)} ms, kernel ${kms.toFixed(0)} ms → ${(r.ms / kms).toFixed(2)}× the kernel (target ≤ 1.0)`,
    );
    console.log(
      `    ours: read ${mib(r.counts.bytesRead)} in ${r.counts.reads} reads, wrote ${mib(r.counts.bytesWritten)} in ${r.counts.writes} writes; xfs_repair -n ours ${repair(mine)}, kernel ${repair(k)}`,
    );
  }

  if (ONLY.includes("c")) {
    const src = join(CACHE, `big-${BIG}.bin`);
    if (!existsSync(src)) spawnSync("sh", ["-c", `head -c ${BIG} /dev/urandom > ${src}`]);
    const ddImg = copyOf(base, "c-dd.img");
    const t = performance.now();
    spawnSync("dd", [
      `if=${src}`,
      `of=${ddImg}`,
      "bs=4M",
      "seek=1G",
      "oflag=seek_bytes",
      "conv=notrunc,fsync",
      "status=none",
    ]);
    const ddMs = performance.now() - t;
    rmSync(ddImg, { force: true });
    const mine = copyOf(base, "c-ours.img");
    const r = await ours(mine, async (ed) => {
      await ed.writeFile("/big.bin", createReadStream(src, { highWaterMark: 8 << 20 }));
    });
    console.log(
      `(c) 1 GiB file: ours ${r.ms.toFixed(0)} ms, dd conv=fsync ${ddMs.toFixed(0)} ms → ${(ddMs / r.ms).toFixed(2)}× dd's speed (target ≥ 0.8)`,
    );
    console.log(
      `    ours: read ${mib(r.counts.bytesRead)} in ${r.counts.reads} reads, wrote ${mib(r.counts.bytesWritten)} in ${r.counts.writes} writes; xfs_repair -n ${repair(mine)}`,
    );
  }
  console.log(`peak RSS ${rss()} (the benchmark process: in-process runs, not the spawned bin)`);
  for (const n of [
    "a-ours.img",
    "a-bin.img",
    "a-kernel.img",
    "b-ours.img",
    "b-kernel.img",
    "c-ours.img",
    "c-dd.img",
  ])
    rmSync(join(CACHE, n), { force: true });
}

await main();
