import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";

// Runs every ```ts block of the package README (they assert what they promise).
const README = new URL("../README.md", import.meta.url);

it("every README example runs", async () => {
  const text = await readFile(README, "utf8");
  const blocks = [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  expect(blocks.length).toBeGreaterThanOrEqual(2);
  const dir = await tempDir("qcow2-readme-");
  for (const [i, code] of blocks.entries()) {
    const file = join(dir, `example-${i}.ts`);
    await writeFile(file, code);
    await import(/* @vite-ignore */ file);
  }
});
