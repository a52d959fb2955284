/** The README's reader example runs as written, against an XFS volume 1 MiB into a disk image. */
import { open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeAsRoot, mkfsXfs, runToolOk, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it, vi } from "vitest";

describeAsRoot(["mkfs.xfs", "setfattr", "losetup"], "README", () => {
  it("the reader example runs", async () => {
    const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("## Reader"));
    const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    expect(code).toBeTruthy();
    const dir = await tempDir("xfs-readme-");
    const fsImg = join(dir, "fs.img");
    await mkfsXfs(fsImg, { size: 64 << 20 });
    const mnt = join(dir, "mnt");
    await runToolOk("mkdir", [mnt]);
    await withLoopMount(fsImg, mnt, { rw: true }, async (m) => {
      await runToolOk("bash", [
        "-c",
        `cd ${m} && mkdir -p etc usr/bin var && echo guest-host > etc/hostname &&
         setfattr -n security.selinux -v system_u:object_r:etc_t:s0 etc/hostname &&
         echo bin > usr/bin/bash && ln -s bash usr/bin/sh && ln -s usr/bin bin &&
         head -c 3145728 /dev/zero > var/big.bin`,
      ]);
    });
    // The disk: 1 MiB of something else, then the filesystem.
    const disk = join(dir, "disk.img");
    await writeFile(disk, Buffer.alloc(1 << 20, 0xab));
    const fh = await open(disk, "a");
    await fh.writeFile(await readFile(fsImg));
    await fh.close();
    const file = join(dir, "example.ts");
    await writeFile(file, code as string);
    const logs: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => {
      logs.push(a.map(String).join(" "));
    });
    process.env.XFS_DISK = disk;
    try {
      await import(/* @vite-ignore */ file);
    } finally {
      spy.mockRestore();
      delete process.env.XFS_DISK;
    }
    expect(logs[0]).toBe("5 clean ");
    expect(logs).toContain("guest-host");
    expect(logs).toContain("system_u:object_r:etc_t:s0");
    expect(logs).toContain("usr/bin → /usr/bin/bash");
    expect(logs.at(-1)).toBe(`3 files, ${3 << 20} bytes streamed`);
  });
});
