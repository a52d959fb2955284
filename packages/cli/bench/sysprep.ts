/**
 * `imgpatch sysprep` vs `virt-sysprep` (issue 19, "Performance": ≥ 20× on a cloud-like image, both
 * measured in the same run; printed, not asserted). The image: the realistic RHEL 7-like guest of
 * the sysprep tests (test/support/sysprep-guest.ts) plus a /usr of IMGPATCH_BENCH_SYSPREP_FILES
 * files (default 3000, ~150 MiB), in an ext4 in a zlib-compressed qcow2 of 4 GiB, as cloud images
 * ship. Ours: the bundled bin, whole process (Node start-up included), default set, `--overlay`,
 * median of IMGPATCH_BENCH_RUNS (default 3). Theirs: virt-sysprep on an overlay of the same base
 * (`LIBGUESTFS_BACKEND=direct`: one appliance boot; TCG without KVM), once. Needs root and
 * libguestfs-tools. Run: `npx tsx packages/cli/bench/sysprep.ts` (or `npm run bench:sysprep -w imgpatch`).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSysprepTree, makeExt4 } from "../test/support/sysprep-guest.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const OUT = join(ROOT, "bench-out", "sysprep");
const BIN = join(ROOT, "packages/cli/dist/bundle/imgpatch.js");
const FILES = Number(process.env.IMGPATCH_BENCH_SYSPREP_FILES ?? 3000);
const RUNS = Number(process.env.IMGPATCH_BENCH_RUNS ?? 3);
mkdirSync(OUT, { recursive: true });

function run(cmd: string, args: string[], env: Record<string, string> = {}): number {
  const t = performance.now();
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${r.status}: ${r.stderr}`);
  return (performance.now() - t) / 1000;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run npm run bundle -w imgpatch first`);
const base = join(OUT, `base-${FILES}.qcow2`);
if (!existsSync(base)) {
  console.log(`building the base (RHEL 7-like guest + ${FILES} files in /usr)…`);
  const tree = join(OUT, "tree");
  rmSync(tree, { recursive: true, force: true });
  buildSysprepTree(tree, "rhel7");
  for (let i = 0; i < FILES; i++) {
    const d = join(tree, "usr/lib64", `pkg${i % 60}`);
    mkdirSync(d, { recursive: true });
    const b = Buffer.alloc(16_384 + (i % 97) * 1024);
    for (let j = 0; j < b.length; j += 8) b.writeUInt32LE((i * 2654435761 + j) >>> 0, j);
    writeFileSync(join(d, `lib${i}.so`), b);
  }
  const raw = join(OUT, "base.raw");
  rmSync(raw, { force: true });
  makeExt4(tree, raw, "0b9e1a5c-3d2f-4e6a-8b7c-9d0e1f2a3b4c", [], "4G");
  execFileSync("qemu-img", ["convert", "-c", "-O", "qcow2", raw, base]);
  rmSync(raw);
  rmSync(tree, { recursive: true, force: true });
}

const ours: number[] = [];
for (let i = 0; i < RUNS; i++) {
  const ov = join(OUT, `ours-${i}.qcow2`);
  rmSync(ov, { force: true });
  ours.push(run(process.execPath, [BIN, "-q", "sysprep", base, "--overlay", ov]));
  rmSync(ov, { force: true });
}
const theirsImg = join(OUT, "theirs.qcow2");
rmSync(theirsImg, { force: true });
execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", theirsImg]);
const theirs = run("virt-sysprep", ["--format", "qcow2", "-a", theirsImg], {
  LIBGUESTFS_BACKEND: "direct",
  LIBGUESTFS_BACKEND_SETTINGS: "force_tcg",
});
rmSync(theirsImg, { force: true });

const kvm = "TCG: LIBGUESTFS_BACKEND_SETTINGS=force_tcg";
const load = execFileSync("cat", ["/proc/loadavg"]).toString().trim().split(" ").slice(0, 3).join(" ");
console.log(
  `imgpatch sysprep --overlay (bin, whole process, median of ${RUNS}): ${median(ours).toFixed(2)} s  [${ours.map((x) => x.toFixed(2)).join(", ")}]`,
);
console.log(`virt-sysprep (one appliance boot, ${kvm}):                ${theirs.toFixed(1)} s`);
console.log(`ratio: ${(theirs / median(ours)).toFixed(1)}x (target >= 20x); load average ${load}`);
