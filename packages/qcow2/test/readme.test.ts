import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";

const README = new URL("../README.md", import.meta.url);

it("the README's TypeScript examples run", async () => {
  const text = await readFile(README, "utf8");
  const blocks = [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  expect(blocks.length).toBeGreaterThan(0);
  const dir = await tempDir("qcow2-readme-test-");
  const src = new URL("../src/index.ts", import.meta.url).pathname;
  for (const [i, code] of blocks.entries()) {
    const file = join(dir, `example-${i}.ts`);
    await writeFile(file, code.replaceAll('"@imgpatch/qcow2"', JSON.stringify(src)));
    await import(/* @vite-ignore */ file);
  }
});
