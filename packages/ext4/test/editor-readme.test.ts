/** The README's editing example runs as written against a real image, and the result is e2fsck-clean. */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { debugfsCat, debugfsStat, describeWithTools, e2fsck, tempDir } from "@imgpatch/testkit";
import { expect, it, vi } from "vitest";
import { makeImage } from "./editor-helpers.js";

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "README editing example", () => {
  it("runs and leaves a clean filesystem", async () => {
    const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("## Editing"));
    const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    expect(code).toBeTruthy();
    const dir = await tempDir("ext4-readme-ed-");
    const img = await makeImage(dir, "rootfs", ["-t", "ext4"], "32M");
    const file = join(dir, "example.ts");
    await writeFile(file, code as string);
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
    expect(logs.join("\n")).toContain("level=info");
    const r = await e2fsck(img);
    expect(r.problems, r.output).toEqual([]);
    expect(r.clean).toBe(true);
    expect((await debugfsCat(img, "/opt/agent/agent.conf")).toString()).toBe("level=info\n");
    expect((await debugfsStat(img, "/etc/agent.conf")).linkTarget).toBe("/opt/agent/agent.conf");
    const st = await debugfsStat(img, "/opt/agent/conf.d/blob.bin");
    expect(st.size).toBe(1 << 20);
    const blob = await debugfsCat(img, "/opt/agent/conf.d/blob.bin");
    expect(blob.subarray(4090, 4096 + 8).toString("latin1")).toBe("\0".repeat(6) + "patched" + "\0");
    expect(st.uid).toBe(1000);
    expect(st.mtime?.sec).toBe(1_600_000_000);
    expect(st.links).toBe(1);
    expect((await debugfsStat(img, "/opt/agent/agent.conf")).links).toBe(2);
  });
});
