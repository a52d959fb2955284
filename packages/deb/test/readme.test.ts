/** Runs the README's example block, so the documented API cannot drift from the real one. */
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "@imgpatch/testkit";
import { expect, it, vi } from "vitest";

const pkgDir = fileURLToPath(new URL("..", import.meta.url));

it("README example runs and prints what it says", async () => {
  const readme = readFileSync(join(pkgDir, "README.md"), "utf8");
  const block = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)][0]?.[1] as string;
  const printed = /prints\n\n```\n([\s\S]*?)```/.exec(readme)?.[1] as string;
  const file = join(await tempDir("deb-readme-"), "example.ts");
  await writeFile(
    file,
    block.replace(`from "@imgpatch/deb"`, `from ${JSON.stringify(join(pkgDir, "src/index.ts"))}`),
  );
  const logs: unknown[] = [];
  const spy = vi.spyOn(console, "log").mockImplementation((a: unknown) => {
    logs.push(a);
  });
  try {
    await import(file);
  } finally {
    spy.mockRestore();
  }
  const { inspect } = await import("node:util");
  expect(logs.map((l) => inspect(l, { breakLength: 200 })).join("\n")).toBe(printed.trim());
});
