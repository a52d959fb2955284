/** The README's example runs as written against a real image. */
import { mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, runToolOk, tempDir } from "@imgpatch/testkit";
import { expect, it, vi } from "vitest";
import { mkfs } from "./helpers.js";

describeWithTools(["mke2fs", "setfattr"], "README", () => {
  it("the ```ts example runs", async () => {
    const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
    const code = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(code).toBeTruthy();
    const dir = await tempDir("ext4-readme-");
    const src = join(dir, "src");
    await mkdir(join(src, "etc"), { recursive: true });
    await mkdir(join(src, "usr/bin"), { recursive: true });
    await mkdir(join(src, "var"), { recursive: true });
    await writeFile(join(src, "etc/hostname"), "guest-host\n");
    await runToolOk("setfattr", [
      "-n",
      "security.selinux",
      "-v",
      "system_u:object_r:etc_t:s0",
      join(src, "etc/hostname"),
    ]);
    await writeFile(join(src, "usr/bin/bash"), "#!binary\n");
    await symlink("bash", join(src, "usr/bin/sh"));
    await symlink("usr/bin", join(src, "bin"));
    await writeFile(join(src, "var/big.bin"), Buffer.alloc(3 << 20, 7));
    const img = join(dir, "rootfs.img");
    await mkfs(img, src, 16, ["-t", "ext4"]);
    const file = join(dir, "example.ts");
    await writeFile(file, code!);
    const logs: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => {
      logs.push(a.map(String).join(" "));
    });
    process.env.EXT4_IMAGE = img;
    try {
      await import(/* @vite-ignore */ file);
    } finally {
      spy.mockRestore();
      delete process.env.EXT4_IMAGE;
    }
    expect(logs).toContain("guest-host");
    expect(logs).toContain("usr/bin → /usr/bin/bash");
    expect(logs.some((l) => l.includes("system_u:object_r:etc_t:s0"))).toBe(true);
    expect(logs.at(-1)).toBe(`3 files, ${3 << 20} bytes streamed`);
  });
});
