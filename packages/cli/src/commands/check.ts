/**
 * `imgpatch check`: qcow2 metadata (our checker, same verdicts as qemu-img check) and every ext2/3/4
 * volume: `e2fsck -fn` when it is installed (on a qcow2, the volume is first copied to a sparse
 * temporary raw file, since e2fsck reads raw only), else our own bitmap checksum verification and a
 * full tree walk. XFS volumes: `xfs_repair -n` when installed (always on a sparse copy of the
 * volume unless the raw image is the bare filesystem: xfs_repair takes no offset), else our reader
 * opens the volume and walks the whole tree.
 */
import { execFile } from "node:child_process";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BlockDevice, inspectDisk, RangeDevice } from "@imgpatch/disk";
import { Ext4Fs } from "@imgpatch/ext4";
import { checkQcow2 } from "@imgpatch/qcow2";
import { XfsFs } from "@imgpatch/xfs";
import { volumeName } from "../image/fstab.js";
import { openImage } from "../image/open-image.js";
import { type ImageSafety, inspectImageSafety, safetyLines } from "../image/safety.js";

export interface CheckReport {
  image: string;
  format: "qcow2" | "raw";
  clean: boolean;
  qcow2?: { corruptions: number; leaks: number; checkErrors: number };
  filesystems: Array<{
    volume: string;
    tool: "e2fsck" | "xfs_repair" | "imgpatch";
    clean: boolean;
    output: string;
  }>;
  /** The safety verdict (format as named/declared/probed, every link and the policy's verdict). */
  safety: ImageSafety;
  lines: string[];
}

export interface CheckOptions {
  /** Backing policy directories besides the image's own (--allow-backing). */
  allowBacking?: readonly string[];
}

/** The qcow2 layer's own metadata (reads the image file only, never its backing chain). */
async function checkQcow2Metadata(path: string, report: CheckReport): Promise<void> {
  const q = await checkQcow2(path);
  report.qcow2 = { corruptions: q.corruptions, leaks: q.leaks, checkErrors: q.checkErrors };
  report.lines.push(
    `qcow2: ${q.corruptions} corruptions, ${q.leaks} leaked clusters, ${q.checkErrors} check errors`,
  );
  if (q.corruptions + q.leaks + q.checkErrors > 0) report.clean = false;
}

function run(cmd: string, args: string[]): Promise<{ code: number; out: string } | null> {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
      if (e && e.code === "ENOENT") return resolve(null);
      resolve({ code: e ? (typeof e.code === "number" ? e.code : 8) : 0, out: `${stdout}${stderr}` });
    });
  });
}

async function dumpSparse(dev: BlockDevice, path: string): Promise<void> {
  const fh = await open(path, "w");
  try {
    await fh.truncate(dev.size);
    const chunk = 1 << 20;
    for (let off = 0; off < dev.size; off += chunk) {
      const n = Math.min(chunk, dev.size - off);
      const buf = await dev.read(off, n);
      if (buf.some((b) => b !== 0)) await fh.write(buf, 0, n, off);
    }
  } finally {
    await fh.close();
  }
}

/** Whether a checker is installed (asked before copying a volume out for it). */
async function hasTool(tool: string): Promise<boolean> {
  return (await run(tool, ["-V"])) !== null;
}

/** Without xfs_repair: our reader opens the volume (superblock, log state) and walks every path. */
async function walkXfs(view: BlockDevice, name: string, report: CheckReport): Promise<void> {
  try {
    const fs = await XfsFs.open(view);
    let n = 0;
    try {
      for await (const _ of fs.walk("/")) n++;
    } finally {
      await fs.close();
    }
    const notes = fs.readOnlyReasons.length ? `; ${fs.readOnlyReasons.join("; ")}` : "";
    report.filesystems.push({
      volume: name,
      tool: "imgpatch",
      clean: true,
      output: `${n} entries walked${notes}`,
    });
    report.lines.push(`${name}: XFS tree read cleanly (${n} entries${notes}; xfs_repair not installed)`);
  } catch (err) {
    report.clean = false;
    report.filesystems.push({ volume: name, tool: "imgpatch", clean: false, output: (err as Error).message });
    report.lines.push(`${name}: ${(err as Error).message}`);
  }
}

/**
 * Checks an image. An unsafe one (a link the backing policy refuses) is reported, its qcow2
 * metadata checked (that reads only the image itself), and nothing below it is opened:
 * `safety.verdict` is "unsafe" and `clean` false.
 */
export async function checkImage(path: string, options: CheckOptions = {}): Promise<CheckReport> {
  const safety = await inspectImageSafety(path, { allowBacking: options.allowBacking });
  if (safety.verdict === "unsafe") {
    const report: CheckReport = {
      image: path,
      format: safety.openedAs ?? "raw",
      clean: false,
      filesystems: [],
      safety,
      lines: safetyLines(safety),
    };
    if (safety.openedAs === "qcow2") await checkQcow2Metadata(path, report);
    report.lines.push("filesystems: not checked (reading the guest would follow the refused link)");
    report.clean = false;
    return report;
  }
  const { device, format } = await openImage(path, { readOnly: true, allowBacking: options.allowBacking });
  const report: CheckReport = {
    image: path,
    format,
    clean: true,
    filesystems: [],
    safety,
    lines: safetyLines(safety),
  };
  let tmp: string | undefined;
  try {
    if (format === "qcow2") await checkQcow2Metadata(path, report);
    const disk = await inspectDisk(device);
    for (const v of disk.volumes) {
      if (!v.filesystem?.supported) continue;
      const name = volumeName(v);
      const p = v.partition;
      const view = p ? new RangeDevice(device, p.start, p.size, { readOnly: true }) : device;
      const xfs = v.filesystem.type === "xfs";
      const tool = xfs ? "xfs_repair" : "e2fsck";
      const args = xfs ? ["-n", "-f"] : ["-fn"];
      let target: string;
      if (format === "raw" && !p) target = path;
      else if (format === "raw" && p && !xfs) target = `${path}?offset=${p.start}`;
      else {
        tmp ??= await mkdtemp(join(tmpdir(), "imgpatch-check-"));
        target = join(tmp, `vol${p?.number ?? 0}.raw`);
        if (await hasTool(tool)) await dumpSparse(view, target);
      }
      const r = await run(tool, [...args, target]);
      if (r) {
        const clean = r.code === 0;
        report.filesystems.push({ volume: name, tool, clean, output: r.out });
        report.lines.push(`${name}: ${tool} ${args.join(" ")}: ${clean ? "clean" : `exit ${r.code}`}`);
        if (!clean) {
          report.clean = false;
          report.lines.push(
            ...r.out
              .trimEnd()
              .split("\n")
              .map((l) => `  ${l}`),
          );
        }
        continue;
      }
      if (xfs) {
        await walkXfs(view, name, report);
        continue;
      }
      try {
        const fs = await Ext4Fs.open(view);
        await fs.verifyBitmaps();
        let n = 0;
        for await (const _ of fs.walk("/")) n++;
        report.filesystems.push({
          volume: name,
          tool: "imgpatch",
          clean: true,
          output: `${n} entries walked`,
        });
        report.lines.push(`${name}: bitmaps and tree read cleanly (${n} entries; e2fsck not installed)`);
      } catch (err) {
        report.clean = false;
        report.filesystems.push({
          volume: name,
          tool: "imgpatch",
          clean: false,
          output: (err as Error).message,
        });
        report.lines.push(`${name}: ${(err as Error).message}`);
      }
    }
  } finally {
    await device.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
  return report;
}
