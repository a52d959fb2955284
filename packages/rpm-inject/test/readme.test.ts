/** Runs the README's example block, so the documented API cannot drift from the real one. */
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "@imgpatch/testkit";
import { expect, it, vi } from "vitest";

const pkgDir = fileURLToPath(new URL("..", import.meta.url));
const repoRoot = join(pkgDir, "../..");

/** Runs one ```ts block of the README with the package and repo paths rewritten; returns its logs. */
async function runBlock(index: number): Promise<unknown[]> {
  const readme = readFileSync(join(pkgDir, "README.md"), "utf8");
  const block = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)][index]?.[1];
  expect(block).toBeDefined();
  const code = (block as string)
    .replace(`from "@imgpatch/rpm-inject"`, `from ${JSON.stringify(join(pkgDir, "src/index.ts"))}`)
    .replaceAll(`"test-fixtures/`, `"${repoRoot}/test-fixtures/`)
    .replaceAll(`"packages/rpm-inject/`, `"${pkgDir}/`);
  const file = join(await tempDir("readme-"), `example-${index}.ts`);
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
  return logs;
}

it("README example runs and prints what it says", async () => {
  const logs = await runBlock(0);
  expect(String(logs[0])).toMatch(/^package imgpatch-demo-2:1\.2-3\.noarch/);
  expect(logs[1]).toEqual(["/etc/imgpatch-demo/keep.conf.rpmnew"]);
  expect(logs[2]).toEqual(["pretrans: <lua>", "pre: /bin/sh", "post: /bin/sh", "posttrans: /bin/bash"]);
});

it("README signature example runs and prints what it says", async () => {
  const logs = await runBlock(1);
  expect(logs[0]).toEqual(["nokey", "93a56c90", true]);
  expect(logs[1]).toEqual([
    "Header V4 RSA/SHA512 Signature, key ID 93a56c90: OK",
    "V4 RSA/SHA512 Signature, key ID 93a56c90: OK",
  ]);
  expect(logs[2]).toBe("guest:/etc/pki/rpm-gpg/RPM-GPG-KEY-imgpatch-test");
  expect(logs).toHaveLength(3);
});
