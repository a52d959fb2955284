/**
 * Spawns the real `imgpatch` bin and `npm start`'s main job, bundled from the current TypeScript
 * sources (bin-bundle.ts: one build per change of the sources, shared by parallel test files).
 * IMGPATCH_TEST_TSX=1 runs them through tsx from the sources instead (no bundle step; ~1 CPU-second
 * more per process), e.g. to check that the bundle is not what makes a test pass or fail.
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { binBundle } from "./bin-bundle.js";

export const BIN = fileURLToPath(new URL("../../src/bin/imgpatch.ts", import.meta.url));
const MAIN_JOB = fileURLToPath(new URL("../../src/main-job.ts", import.meta.url));
const REGISTER = fileURLToPath(new URL("./register-sources.mjs", import.meta.url));
/** tsx's loader by absolute URL, so the bin can run with any working directory. */
export const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const viaTsx = process.env.IMGPATCH_TEST_TSX === "1";

export interface BinResult {
  code: number;
  stdout: string;
  /** stdout as bytes. */
  stdoutBytes: Buffer;
  stderr: string;
}

function run(argv: string[], env: Record<string, string>, cwd?: string): Promise<BinResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, {
      env: { ...process.env, ...env },
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      out.push(d);
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code: code ?? -1, stdout: stdoutBytes.toString("utf8"), stdoutBytes, stderr });
    });
  });
}

/** `imgpatch ...args`. */
export async function runBin(
  args: string[],
  env: Record<string, string> = {},
  cwd?: string,
): Promise<BinResult> {
  if (viaTsx) return run(["--import", TSX, "--import", REGISTER, BIN, ...args], env, cwd);
  return run([join(await binBundle(), "imgpatch.js"), ...args], env, cwd);
}

/**
 * main-job.ts run as the entry point (`npm start`). It starts only when process.argv[1] is its own
 * path; the bundled module sees its source path as import.meta.url, so argv[1] is set to that first.
 */
export async function runMainJob(env: Record<string, string>): Promise<BinResult> {
  if (viaTsx) return run(["--import", TSX, "--import", REGISTER, MAIN_JOB], env);
  const entry = pathToFileURL(join(await binBundle(), "main-job.js")).href;
  const script = `process.argv[1] = ${JSON.stringify(MAIN_JOB)}; await import(${JSON.stringify(entry)});`;
  return run(["--input-type=module", "--eval", script], env);
}
