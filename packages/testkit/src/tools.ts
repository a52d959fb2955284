import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { describe, it } from "vitest";

/** Set `IMGPATCH_ORACLES=required` (CI does) to turn "tool missing → skip" into a failure. */
export function oraclesRequired(): boolean {
  return process.env.IMGPATCH_ORACLES === "required";
}

/** Raised when an oracle tool fails to run or reports an operational error (not a finding). */
export class OracleError extends Error {
  constructor(
    message: string,
    readonly tool: string,
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message);
    this.name = "OracleError";
  }
}

/** Raised when a needed tool is not installed. */
export class ToolMissingError extends OracleError {
  constructor(tool: string) {
    super(`oracle tool '${tool}' is not installed (searched PATH, /usr/sbin, /sbin)`, tool, [], null, "");
    this.name = "ToolMissingError";
  }
}

// e2fsprogs and sfdisk live in sbin, which is not on a normal user's PATH.
const EXTRA_DIRS = ["/usr/local/sbin", "/usr/sbin", "/sbin"];
const toolCache = new Map<string, string | null>();

/** Absolute path of an executable, or null when it is not installed. */
export function findTool(name: string): string | null {
  const cached = toolCache.get(name);
  if (cached !== undefined) return cached;
  let found: string | null = null;
  const dirs = [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      found = candidate;
      break;
    } catch {
      // not here
    }
  }
  toolCache.set(name, found);
  return found;
}

export interface ToolCheck {
  ok: boolean;
  /** Why the tools are unusable (which are missing), when `ok` is false. */
  reason?: string;
}

function checkTools(names: readonly string[]): ToolCheck {
  const missing = names.filter((n) => findTool(n) === null);
  if (missing.length === 0) return { ok: true };
  return { ok: false, reason: `missing oracle tool(s): ${missing.join(", ")}` };
}

/**
 * Are these tools installed? Returns `{ ok: false, reason }` when some are missing, or throws
 * when `IMGPATCH_ORACLES=required`.
 */
export function oracleTools(...names: string[]): ToolCheck {
  const check = checkTools(names);
  if (!check.ok && oraclesRequired()) {
    throw new Error(`${check.reason} (IMGPATCH_ORACLES=required)`);
  }
  return check;
}

/**
 * A vitest `describe` that runs only when every named tool is installed. Missing tools skip the
 * block with the reason in its title (and a warning on stderr), or fail it under
 * `IMGPATCH_ORACLES=required`.
 */
export function describeWithTools(names: readonly string[], title: string, fn: () => void): void {
  const check = checkTools(names);
  if (check.ok) {
    describe(title, fn);
  } else if (oraclesRequired()) {
    describe(title, () => {
      it("has its oracle tools installed", () => {
        throw new Error(`${check.reason} (IMGPATCH_ORACLES=required)`);
      });
    });
  } else {
    process.stderr.write(`[testkit] skipping "${title}": ${check.reason}\n`);
    describe.skip(`${title} [skipped: ${check.reason}]`, fn);
  }
}

export interface RunResult {
  exitCode: number;
  stdout: Buffer;
  stderr: string;
}

export interface RunOptions {
  /** Bytes written to the child's stdin. */
  input?: Buffer | string;
  /** Kill the child after this many ms (default 120 s) so a wedged tool cannot hang a test. */
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Run a tool to completion, capturing stdout as bytes. Never rejects on a nonzero exit code. */
export function runTool(tool: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const exe = findTool(tool);
  if (exe === null) return Promise.reject(new ToolMissingError(tool));
  return new Promise((resolve, reject) => {
    const child = spawn(exe, args, {
      cwd: opts.cwd,
      env: { ...process.env, LC_ALL: "C", LANG: "C", ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 120_000);
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new OracleError(`${tool}: ${e.message}`, tool, args, null, ""));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString("utf8");
      if (timedOut || code === null) {
        const why = timedOut ? "timed out" : `killed by ${signal}`;
        reject(new OracleError(`${tool} ${args.join(" ")}: ${why}`, tool, args, code, stderr));
        return;
      }
      resolve({ exitCode: code, stdout: Buffer.concat(out), stderr });
    });
    child.stdin.on("error", () => {
      // The tool may exit without reading its input; that is reported through its exit code.
    });
    child.stdin.end(opts.input ?? "");
  });
}

/** Run a tool and return its stdout; a nonzero exit code raises an OracleError with stderr. */
export async function runToolOk(
  tool: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<Buffer> {
  const r = await runTool(tool, args, opts);
  if (r.exitCode !== 0) {
    const detail = (r.stderr.trim() || r.stdout.toString("utf8").trim()).slice(0, 2000);
    throw new OracleError(
      `${tool} ${args.join(" ")} exited with ${r.exitCode}: ${detail}`,
      tool,
      args,
      r.exitCode,
      r.stderr,
    );
  }
  return r.stdout;
}

/**
 * `npm run test:full` (CI) sets IMGPATCH_TEST_FULL=1: long sweeps run every point; `npm test` runs
 * an evenly spread sample of them, so the everyday suite stays short and the full one stays exhaustive.
 */
export function fullSuite(): boolean {
  return process.env.IMGPATCH_TEST_FULL === "1";
}

/**
 * The points 0..total (every `step`-th) to sweep: all of them in the full suite, else at most
 * `quick` of them, evenly spread, always including the first and the last.
 */
export function sweepPoints(total: number, quick: number, step = 1): number[] {
  const all: number[] = [];
  for (let n = 0; n <= total; n += step) all.push(n);
  if (all[all.length - 1] !== total) all.push(total);
  if (fullSuite() || all.length <= quick) return all;
  const picked = new Set<number>();
  for (let i = 0; i < quick; i++) picked.add(all[Math.round((i * (all.length - 1)) / (quick - 1))]!);
  return [...picked].sort((a, b) => a - b);
}
