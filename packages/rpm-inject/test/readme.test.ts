/** Runs the README's example block, so the documented API cannot drift from the real one. */
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "@imgpatch/testkit";
import { expect, it, vi } from "vitest";

const pkgDir = fileURLToPath(new URL("..", import.meta.url));
const repoRoot = join(pkgDir, "../..");

it("README example runs and prints what it says", async () => {
  const readme = readFileSync(join(pkgDir, "README.md"), "utf8");
  const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(block).toBeDefined();
  const code = (block as string)
    .replace(`from "@imgpatch/rpm-inject"`, `from ${JSON.stringify(join(pkgDir, "src/index.ts"))}`)
    .replace("test-fixtures/", `${repoRoot}/test-fixtures/`);
  const file = join(await tempDir("readme-"), "example.ts");
  await writeFile(file, code);
  const logs: unknown[] = [];
  const spy = vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => {
    logs.push(a.length === 1 ? a[0] : a);
  });
  try {
    await import(file);
  } finally {
    spy.mockRestore();
  }
  expect(String(logs[0])).toMatch(/^package imgpatch-demo-2:1\.2-3\.noarch/);
  expect(logs[1]).toEqual(["/etc/imgpatch-demo/keep.conf.rpmnew"]);
  expect(logs[2]).toEqual(["pretrans: <lua>", "pre: /bin/sh", "post: /bin/sh", "posttrans: /bin/bash"]);
});
