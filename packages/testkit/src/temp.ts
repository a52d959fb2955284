import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";

const created = new Set<string>();

async function removeAll(): Promise<void> {
  const dirs = [...created];
  created.clear();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
}

// Imported at collection time by a test file, so this hook belongs to that file's root suite and
// runs once its tests are done. The exit handler is a backstop for aborted runs.
try {
  afterAll(removeAll);
} catch {
  // not inside a vitest collection (e.g. imported from a script): rely on the exit handler
}
process.once("exit", () => {
  for (const d of created) rmSync(d, { recursive: true, force: true });
});

/** A fresh private directory under the OS temp dir, removed after the current test file. */
export async function tempDir(prefix = "imgpatch-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  created.add(dir);
  return dir;
}
