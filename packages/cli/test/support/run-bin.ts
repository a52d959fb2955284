/** Spawns the real `imgpatch` bin (TypeScript sources through tsx; see source-hooks.mjs). */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

export const BIN = fileURLToPath(new URL("../../src/bin/imgpatch.ts", import.meta.url));
const REGISTER = fileURLToPath(new URL("./register-sources.mjs", import.meta.url));
/** tsx's loader by absolute URL, so the bin can run with any working directory. */
export const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;

export interface BinResult {
  code: number;
  stdout: string;
  /** stdout as bytes. */
  stdoutBytes: Buffer;
  stderr: string;
}

export function runBin(args: string[], env: Record<string, string> = {}, cwd?: string): Promise<BinResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", TSX, "--import", REGISTER, BIN, ...args], {
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
