import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A temporary host directory removed after the test file. */
export async function tempDir(prefix = "imgpatch-cli-"): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** Whether a host tool runs; with IMGPATCH_ORACLES=required a missing tool is an error. */
export function haveTool(cmd: string, args: string[] = ["--version"]): { ok: boolean; reason?: string } {
  try {
    execFileSync(cmd, args, { stdio: "ignore" });
    return { ok: true };
  } catch {
    const reason = `${cmd} not available on this host`;
    if (process.env.IMGPATCH_ORACLES === "required") throw new Error(`${reason} (IMGPATCH_ORACLES=required)`);
    return { ok: false, reason };
  }
}
