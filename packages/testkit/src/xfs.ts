/**
 * XFS oracles: mkfs.xfs with a protofile (files made by xfsprogs itself, no kernel needed),
 * xfs_db in read-only mode, xfs_repair -n, and a read-only/read-write loop mount for the kernel's
 * view (root only; always unmounted and detached in `finally`).
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "vitest";
import { describeWithTools, oraclesRequired, runTool, runToolOk } from "./tools.js";

/** One node of a protofile tree. */
export type ProtoNode =
  | { type: "file"; mode?: number; uid?: number; gid?: number; source: string }
  | { type: "dir"; mode?: number; uid?: number; gid?: number; entries: Record<string, ProtoNode> }
  | { type: "symlink"; mode?: number; uid?: number; gid?: number; target: string }
  | { type: "chardev" | "blockdev"; mode?: number; uid?: number; gid?: number; major: number; minor: number }
  | { type: "fifo"; mode?: number; uid?: number; gid?: number };

const TYPE_CHAR: Record<ProtoNode["type"], string> = {
  file: "-",
  dir: "d",
  symlink: "l",
  chardev: "c",
  blockdev: "b",
  fifo: "p",
};

function modeField(n: ProtoNode, dflt: number): string {
  const m = n.mode ?? dflt;
  return `${TYPE_CHAR[n.type]}${m & 0o4000 ? "u" : "-"}${m & 0o2000 ? "g" : "-"}${(m & 0o777).toString(8).padStart(3, "0")}`;
}

function protoLines(n: ProtoNode, indent: string, out: string[]): void {
  if (n.type !== "dir") return;
  for (const [name, c] of Object.entries(n.entries)) {
    if (/\s/.test(name) || name.length === 0)
      throw new Error(`protofile names cannot contain spaces: '${name}'`);
    const head = `${indent}${name} ${modeField(c, c.type === "dir" ? 0o755 : 0o644)} ${c.uid ?? 0} ${c.gid ?? 0}`;
    switch (c.type) {
      case "file":
        out.push(`${head} ${c.source}`);
        break;
      case "symlink":
        out.push(`${head} ${c.target}`);
        break;
      case "chardev":
      case "blockdev":
        out.push(`${head} ${c.major} ${c.minor}`);
        break;
      case "fifo":
        out.push(head);
        break;
      case "dir":
        out.push(head);
        protoLines(c, `${indent} `, out);
        out.push(`${indent}$`);
        break;
    }
  }
}

/** The text of a protofile for `root` (a directory node). */
export function protofileText(root: ProtoNode & { type: "dir" }): string {
  const out = ["/dev/null", "0 0", `${modeField(root, 0o755)} ${root.uid ?? 0} ${root.gid ?? 0}`];
  protoLines(root, " ", out);
  out.push("$", "");
  return out.join("\n");
}

export interface MkfsXfsOptions {
  /** Image size in bytes (sparse file). */
  size: number;
  /** Extra mkfs.xfs arguments (-m crc=0, -n size=65536...). */
  args?: readonly string[];
  /** Populate the new filesystem from this tree (mkfs.xfs -p). */
  proto?: ProtoNode & { type: "dir" };
}

/**
 * mkfs.xfs on a new sparse file. Small sizes (under xfsprogs' 300 MB floor) are allowed through
 * the fstests environment switch xfsprogs honours.
 */
export async function mkfsXfs(path: string, opts: MkfsXfsOptions): Promise<void> {
  await writeFile(path, "");
  await runToolOk("truncate", ["-s", String(opts.size), path]);
  const args = ["-q", "-f", ...(opts.args ?? [])];
  if (opts.proto) {
    const protoPath = `${path}.proto`;
    await writeFile(protoPath, protofileText(opts.proto));
    args.push("-p", protoPath);
  }
  args.push(path);
  await runToolOk("mkfs.xfs", args, {
    env: { TEST_DIR: join(path, ".."), TEST_DEV: path, QA_CHECK_FS: "xfs" },
  });
}

/** Output of `xfs_db -r -f -c CMD... IMG`. */
export async function xfsDb(path: string, commands: readonly string[]): Promise<string> {
  const args = ["-r", "-f"];
  for (const c of commands) args.push("-c", c);
  args.push(path);
  return (await runToolOk("xfs_db", args)).toString("utf8");
}

export interface XfsRepairResult {
  /** Exit 0 and nothing reported. */
  clean: boolean;
  exitCode: number;
  output: string;
}

/** `xfs_repair -n -f IMG` (no modification). */
export async function xfsRepairCheck(path: string): Promise<XfsRepairResult> {
  const r = await runTool("xfs_repair", ["-n", "-f", path]);
  const output = `${r.stdout.toString("utf8")}${r.stderr}`;
  return { clean: r.exitCode === 0, exitCode: r.exitCode, output };
}

export function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/**
 * Attaches `image` to a loop device, mounts it at `mountpoint` (read-only unless `rw`; extra mount
 * `options` such as noatime appended), runs `fn`,
 * then unmounts and detaches in `finally`.
 */
export async function withLoopMount<T>(
  image: string,
  mountpoint: string,
  opts: { rw?: boolean; options?: string },
  fn: (mountpoint: string) => Promise<T>,
): Promise<T> {
  const dev = (await runToolOk("losetup", ["--find", "--show", ...(opts.rw ? [] : ["-r"]), image]))
    .toString("utf8")
    .trim();
  try {
    const o = `${opts.rw ? "rw" : "ro,norecovery"}${opts.options ? `,${opts.options}` : ""}`;
    await runToolOk("mount", ["-t", "xfs", "-o", o, dev, mountpoint]);
    try {
      return await fn(mountpoint);
    } finally {
      await runToolOk("umount", [mountpoint]);
    }
  } finally {
    await runTool("losetup", ["-d", dev]);
  }
}

/**
 * A `describe` that needs root and the given tools: skipped visibly otherwise, failing under
 * IMGPATCH_ORACLES=required.
 */
export function describeAsRoot(names: readonly string[], title: string, fn: () => void): void {
  if (isRoot()) {
    describeWithTools(names, title, fn);
  } else if (oraclesRequired()) {
    describe(title, () => {
      it("runs as root", () => {
        throw new Error("this oracle test needs root (loop mounts) (IMGPATCH_ORACLES=required)");
      });
    });
  } else {
    process.stderr.write(`[testkit] skipping "${title}": needs root for loop mounts\n`);
    describe.skip(`${title} [skipped: needs root]`, fn);
  }
}
