import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "@imgpatch/testkit";
import { afterEach, expect, it, vi } from "vitest";
import { buildGpt, ESP, LINUX_FS } from "./helpers/tables.js";

// Runs every ```ts block of the package README against a small GPT disk, so the doc stays true.

const README = new URL("../README.md", import.meta.url);

function tsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** A GPT disk: ESP (empty), "root" with an ext4 superblock, "data" with an XFS one. */
function exampleDisk(): Uint8Array {
  const img = buildGpt({
    diskSectors: 16384,
    entries: [
      { type: ESP, uuid: "0a0a0a0a-0000-4000-8000-000000000001", first: 2048, last: 4095, name: "EFI" },
      {
        type: LINUX_FS,
        uuid: "0a0a0a0a-0000-4000-8000-000000000002",
        first: 4096,
        last: 12287,
        name: "root",
      },
      {
        type: LINUX_FS,
        uuid: "0a0a0a0a-0000-4000-8000-000000000003",
        first: 12288,
        last: 16000,
        name: "data",
      },
    ],
  });
  const sb = 4096 * 512 + 1024;
  const dv = new DataView(img.buffer);
  dv.setUint16(sb + 0x38, 0xef53, true);
  dv.setUint32(sb + 0x5c, 0x4, true); // has_journal
  dv.setUint32(sb + 0x60, 0x2c2, true); // filetype, extents, 64bit, flex_bg
  img.set(new TextEncoder().encode("rootfs"), sb + 0x78);
  img.set(new TextEncoder().encode("XFSB"), 12288 * 512);
  return img;
}

afterEach(() => {
  vi.restoreAllMocks();
});

it("the README example runs and prints what it promises", async () => {
  const blocks = tsBlocks(await readFile(README, "utf8"));
  expect(blocks.length).toBeGreaterThanOrEqual(1);
  const dir = await tempDir("disk-readme-");
  await writeFile(join(dir, "disk.img"), exampleDisk());
  const lines: string[] = [];
  vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => {
    lines.push(args.join(" "));
  });
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    for (const [i, code] of blocks.entries()) {
      const file = join(dir, `example-${i}.ts`);
      await writeFile(file, code);
      await import(/* @vite-ignore */ file);
    }
  } finally {
    process.chdir(cwd);
  }
  expect(lines[0]).toBe("gpt disk, 3 volumes");
  expect(lines).toContain('#1 EFI System "EFI" 0a0a0a0a-0000-4000-8000-000000000001: -');
  expect(lines).toContain('#2 Linux filesystem "root" 0a0a0a0a-0000-4000-8000-000000000002: ext4');
  expect(lines).toContain('#3 Linux filesystem "data" 0a0a0a0a-0000-4000-8000-000000000003: xfs');
  expect(lines).toContain("ext magic 0xef53");
  expect(lines.at(-1)).toMatch(/^\d+ reads, \d+ bytes read$/);
});
