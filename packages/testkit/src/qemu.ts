import { OracleError, runTool, runToolOk } from "./tools.js";

/** JSON value as printed by qemu-img --output=json. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface QemuImgCheckResult {
  /** 0 clean, 1 check could not finish, 2 corruptions, 3 leaks (and no corruption). */
  exitCode: number;
  /** No leaks, no corruptions, no check errors. */
  clean: boolean;
  leaks: number;
  corruptions: number;
  /** The parsed `--output=json` report (fields such as image-end-offset, allocated-clusters). */
  json: Record<string, Json>;
}

/**
 * `qemu-img check --output=json` (read-only; never repairs). Formats without a checker (raw:
 * exit 63, no JSON) throw an OracleError.
 */
export async function qemuImgCheck(
  path: string,
  opts: { format?: string } = {},
): Promise<QemuImgCheckResult> {
  const args = ["check", "--output=json", ...(opts.format ? ["-f", opts.format] : []), path];
  const r = await runTool("qemu-img", args);
  const text = r.stdout.toString("utf8");
  let json: Record<string, Json>;
  try {
    json = JSON.parse(text) as Record<string, Json>;
  } catch {
    throw new OracleError(
      `qemu-img check ${path} (exit ${r.exitCode}): ${r.stderr.trim() || text}`,
      "qemu-img",
      args,
      r.exitCode,
      r.stderr,
    );
  }
  const n = (k: string) => (typeof json[k] === "number" ? (json[k] as number) : 0);
  const leaks = n("leaks");
  const corruptions = n("corruptions");
  return {
    exitCode: r.exitCode,
    clean: r.exitCode === 0 && leaks === 0 && corruptions === 0 && n("check-errors") === 0,
    leaks,
    corruptions,
    json,
  };
}

/** `qemu-img info --output=json`, parsed (`--backing-chain` gives an array). */
export async function qemuImgInfo(
  path: string,
  opts: { format?: string; backingChain?: boolean } = {},
): Promise<Record<string, Json>> {
  const args = ["info", "--output=json", ...(opts.format ? ["-f", opts.format] : [])];
  if (opts.backingChain) args.push("--backing-chain");
  args.push(path);
  const out = await runToolOk("qemu-img", args);
  const parsed = JSON.parse(out.toString("utf8")) as Json;
  if (Array.isArray(parsed)) return { chain: parsed };
  return parsed as Record<string, Json>;
}

export interface QemuImgCompareOptions {
  formatA?: string;
  formatB?: string;
  /** `-s`: images of different sizes are different (default: the tail of the larger must be zero). */
  strict?: boolean;
}

export interface QemuImgCompareResult {
  identical: boolean;
  /** 0 identical, 1 different, 2+ error (thrown). */
  exitCode: number;
  /** e.g. "Content mismatch at offset 4096!" */
  output: string;
  /** Where the first difference is, when reported. */
  mismatchOffset?: number;
}

/** `qemu-img compare`: guest-visible content of two images. */
export async function qemuImgCompare(
  a: string,
  b: string,
  opts: QemuImgCompareOptions = {},
): Promise<QemuImgCompareResult> {
  const args = ["compare"];
  if (opts.formatA) args.push("-f", opts.formatA);
  if (opts.formatB) args.push("-F", opts.formatB);
  if (opts.strict) args.push("-s");
  args.push(a, b);
  const r = await runTool("qemu-img", args);
  const output = (r.stdout.toString("utf8") + r.stderr).trim();
  if (r.exitCode > 1)
    throw new OracleError(`qemu-img compare ${a} ${b}: ${output}`, "qemu-img", args, r.exitCode, r.stderr);
  const m = /mismatch at offset (\d+)/.exec(output);
  return {
    identical: r.exitCode === 0,
    exitCode: r.exitCode,
    output,
    mismatchOffset: m ? Number(m[1]) : undefined,
  };
}

/** Run `qemu-img <args>` and return stdout; a nonzero exit throws. */
export async function qemuImg(args: readonly string[], opts: { cwd?: string } = {}): Promise<string> {
  return (await runToolOk("qemu-img", args, opts)).toString("utf8");
}

/**
 * Run `qemu-io -c <cmd>...` and return stdout. A nonzero exit or a failed pattern check
 * (`read -P`) throws, so `read -P 0xab 0 4k` is an assertion.
 */
export async function qemuIo(
  path: string,
  commands: readonly string[],
  opts: { format?: string; cwd?: string } = {},
): Promise<string> {
  const args = [...(opts.format ? ["-f", opts.format] : []), ...commands.flatMap((c) => ["-c", c]), path];
  const r = await runTool("qemu-io", args, { cwd: opts.cwd });
  const out = r.stdout.toString("utf8");
  if (
    r.exitCode !== 0 ||
    /Pattern verification failed|^(read|write|discard|aio_\w+) failed/m.test(out) ||
    r.stderr.trim() !== ""
  ) {
    throw new OracleError(
      `qemu-io ${JSON.stringify(commands)} on ${path} (exit ${r.exitCode}): ${(out + r.stderr).trim().slice(0, 2000)}`,
      "qemu-io",
      args,
      r.exitCode,
      r.stderr,
    );
  }
  return out;
}
