/**
 * `npm start`: the main job. Bakes the Heat software-deployment agents into the embedded default
 * guest (RHEL-family: GPT with BIOS boot and an ESP, XFS /boot and XFS /), the way
 *   disk-image-create vm centos7 selinux-permissive os-collect-config os-refresh-config \
 *     os-apply-config heat-config heat-config-script -o software-deployment-image-gold.qcow2
 * does with root, loop devices and a chroot — here rootless, through the imgpatch CLI:
 *   imgpatch elements BASE -o software-deployment-image-gold.qcow2 --elements-path test-fixtures/elements \
 *     selinux-permissive os-collect-config os-refresh-config os-apply-config heat-config heat-config-script
 * then checks the result (our qcow2 check, xfs_repair -n / e2fsck -fn on every volume; qemu-img
 * check too when it is installed).
 *
 * Environment: IMGPATCH_BASE (another base image), ELEMENTS_PATH (other element directories, e.g.
 * real tripleo-image-elements + heat-templates checkouts), IMGPATCH_GOLD (output path).
 */
import { execFile } from "node:child_process";
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { checkImage } from "./commands/check.js";
import { runCli } from "./commands/main.js";

export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
/** The ext4 base (Debian/Ubuntu-like layout on ext4; most tests use it). */
export const BASE_GZ = join(REPO_ROOT, "test-fixtures/base-image/base.qcow2.gz");
/** The RHEL-family base `npm start` edits by default (make-xfs-base-image.sh). */
export const XFS_BASE_GZ = join(REPO_ROOT, "test-fixtures/base-image/base-xfs.qcow2.gz");
export const MAIN_JOB_ELEMENTS = [
  "selinux-permissive",
  "os-collect-config",
  "os-refresh-config",
  "os-apply-config",
  "heat-config",
  "heat-config-script",
] as const;

/** The committed ext4 base image, decompressed (once) under test-fixtures/base-image/.work/. */
export function baseImage(): Promise<string> {
  return unpacked(BASE_GZ, "base.qcow2");
}

/** The committed XFS base image (the main job's default), decompressed like baseImage(). */
export function xfsBaseImage(): Promise<string> {
  return unpacked(XFS_BASE_GZ, "base-xfs.qcow2");
}

async function unpacked(gzPath: string, name: string): Promise<string> {
  const dir = join(REPO_ROOT, "test-fixtures/base-image/.work");
  const out = join(dir, name);
  const gz = await readFile(gzPath);
  const data = gunzipSync(gz);
  const existing = await stat(out).catch(() => undefined);
  if (existing?.size === data.length && Buffer.compare(await readFile(out), data) === 0) return out;
  await mkdir(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, out);
  return out;
}

function tool(cmd: string, args: string[]): Promise<{ code: number; out: string } | null> {
  return new Promise((resolve) => {
    execFile(cmd, args, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
      if (e?.code === "ENOENT") return resolve(null);
      resolve({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, out: `${stdout}${stderr}`.trim() });
    });
  });
}

export interface MainJobResult {
  exitCode: number;
  output?: string;
  missing: string[];
}

export async function mainJob(
  log: (line: string) => void = (l) => console.log(l),
  env: Record<string, string | undefined> = process.env,
): Promise<MainJobResult> {
  const rel = (p: string) => relative(process.cwd(), p) || p;
  const base = env.IMGPATCH_BASE ?? (await xfsBaseImage());
  const elementsPath = env.ELEMENTS_PATH ?? join(REPO_ROOT, "test-fixtures/elements");
  const gold = env.IMGPATCH_GOLD ?? join(REPO_ROOT, "software-deployment-image-gold.qcow2");
  const argv = ["elements", base, "-o", gold, "--elements-path", elementsPath, ...MAIN_JOB_ELEMENTS];
  log("imgpatch main job: bake the Heat software-deployment agents into an image (no root, no chroot)");
  log(`  base image:    ${rel(base)}`);
  log(`  elements path: ${elementsPath.split(":").map(rel).join(":")}`);
  log(`  elements:      ${MAIN_JOB_ELEMENTS.join(" ")}`);
  log(`  output:        ${rel(gold)}`);
  const io = {
    out: (t: string) => log(t.replace(/\n$/, "")),
    err: (t: string) => log(t.replace(/\n$/, "")),
    env,
  };

  log(`$ imgpatch ${argv.map((a) => (a.includes(" ") ? JSON.stringify(a) : rel(a))).join(" ")}`);
  const t0 = performance.now();
  const code = await runCli(["--verbose", ...argv], io);
  if (code !== 0) {
    log(`imgpatch elements failed (exit ${code}); no output written.`);
    return { exitCode: code, missing: [] };
  }
  log(`baked in ${((performance.now() - t0) / 1000).toFixed(2)} s`);

  log("");
  log("Checking the result:");
  const r = await checkImage(gold);
  for (const l of r.lines) log(`  ${l}`);
  let ok = r.clean;
  const q = await tool("qemu-img", ["check", gold]);
  if (q) {
    log(`  qemu-img check: ${q.code === 0 ? "clean" : `exit ${q.code}`}`);
    if (q.code !== 0) {
      ok = false;
      log(q.out);
    }
  } else log("  qemu-img not installed: qcow2 checked by imgpatch only");
  log(ok ? `OK: ${rel(gold)}` : `FAILED: ${rel(gold)} has problems`);
  return { exitCode: ok ? 0 : 1, output: gold, missing: [] };
}

const invokedDirectly = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (invokedDirectly) {
  mainJob().then(
    (r) => {
      process.exitCode = r.exitCode;
    },
    (err: unknown) => {
      console.error(`imgpatch main job: ${(err as Error).message}`);
      process.exitCode = 1;
    },
  );
}
