/** The README's editor example runs as written on an image made by mkfs.xfs, and the result is clean. */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, tempDir } from "@imgpatch/testkit";
import { expect, it, vi } from "vitest";
import { fsCheck, mkfsImage, XFS_TOOLS, xfsDb } from "./space-helpers.js";

describeWithTools(XFS_TOOLS, "README: editor example", () => {
  it("the editor example runs and leaves a clean filesystem", async () => {
    const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("## Editor"));
    const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    expect(code).toBeTruthy();
    const dir = await tempDir("xfs-edreadme-");
    const image = mkfsImage(dir, "root.img", [], 64);
    const file = join(dir, "example.ts");
    await writeFile(file, code as string);
    const logs: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => {
      logs.push(a.map(String).join(" "));
    });
    process.env.XFS_IMAGE = image;
    try {
      // The example renames /etc/motd: give the fresh image one first.
      const { FileDevice } = await import("@imgpatch/disk");
      const { XfsEditor } = await import("../src/index.js");
      const dev = await FileDevice.open(image, { readOnly: false });
      const ed = await XfsEditor.open(dev);
      await ed.mkdir("/etc");
      await ed.writeFile("/etc/motd", "hello\n");
      await ed.close();
      await dev.close();
      await import(/* @vite-ignore */ file);
    } finally {
      spy.mockRestore();
      delete process.env.XFS_IMAGE;
    }
    expect(logs).toEqual(['{"collectors": ["heat"]}', "40700"]);
    const c = fsCheck(image);
    expect(c.output).toBe("");
    expect(c.clean).toBe(true);
    expect(xfsDb(image, ["path /etc", "ls"])).toContain("motd.orig");
  });
});
