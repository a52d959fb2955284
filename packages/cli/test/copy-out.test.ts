import { lstat, readFile, readlink, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { copyOut, HostPathExistsError } from "../src/customize/copy-out.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";

describe("copy-out (imgpatch get)", () => {
  it("copies trees with modes and times, symlinks as symlinks, drops setuid, never overwrites", async () => {
    const fs = new MemoryGuestFs();
    await fs.mkdir("/etc/app", { recursive: true, mode: 0o750 });
    await fs.writeFile("/etc/app/conf", "c", { mode: 0o640, mtime: new Date(1_500_000_000_000) });
    await fs.writeFile("/etc/app/tool", "t", { mode: 0o4755 });
    await fs.symlink("/etc/shadow", "/etc/app/evil");
    await fs.mknod("/etc/app/null", "chardev", 0o666, 1, 3);
    const host = await tempDir();
    const r = await copyOut(fs, "/etc/app", host);
    expect(r).toMatchObject({ files: 2, dirs: 1, symlinks: 1 });
    expect(r.skipped.map((s) => s.path)).toEqual(["/etc/app/null"]);
    expect((await stat(join(host, "app"))).mode & 0o7777).toBe(0o750);
    expect((await stat(join(host, "app/conf"))).mode & 0o7777).toBe(0o640);
    expect((await stat(join(host, "app/conf"))).mtime.getTime()).toBe(1_500_000_000_000);
    expect((await stat(join(host, "app/tool"))).mode & 0o7777).toBe(0o755);
    expect(await readlink(join(host, "app/evil"))).toBe("/etc/shadow");
    await expect(copyOut(fs, "/etc/app", host)).rejects.toBeInstanceOf(HostPathExistsError);
  });

  it("the path named is resolved inside the guest: a symlink gives its guest target's content", async () => {
    const fs = new MemoryGuestFs();
    await fs.mkdir("/usr/lib", { recursive: true });
    await fs.mkdir("/etc");
    await fs.writeFile("/usr/lib/os-release", "ID=guest\n", { mode: 0o644 });
    await fs.symlink("../usr/lib/os-release", "/etc/os-release");
    await fs.symlink("/usr/lib", "/lib");
    await fs.symlink("/nowhere", "/dangling");
    const host = await tempDir();
    expect(await copyOut(fs, "/etc/os-release", join(host, "os-release"))).toMatchObject({
      files: 1,
      symlinks: 0,
    });
    expect((await lstat(join(host, "os-release"))).isFile()).toBe(true);
    expect(await readFile(join(host, "os-release"), "utf8")).toBe("ID=guest\n");
    // A directory symlink: its tree is copied, under the name given.
    const r = await copyOut(fs, "/lib", host);
    expect(r).toMatchObject({ dirs: 1, files: 1 });
    expect(await readFile(join(host, "lib/os-release"), "utf8")).toBe("ID=guest\n");
    await expect(copyOut(fs, "/dangling", join(host, "d"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("does not write through a host symlink in the way", async () => {
    const fs = new MemoryGuestFs();
    await fs.writeFile("/f", "guest");
    const host = await tempDir();
    const victim = join(await tempDir(), "victim");
    await writeFile(victim, "host");
    await symlink(victim, join(host, "out"));
    await expect(copyOut(fs, "/f", join(host, "out"))).rejects.toBeInstanceOf(HostPathExistsError);
    expect(await readFile(victim, "utf8")).toBe("host");
    expect((await lstat(join(host, "out"))).isSymbolicLink()).toBe(true);
  });
});
