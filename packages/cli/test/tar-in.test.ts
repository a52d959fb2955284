import { execFile } from "node:child_process";
import { chmod, mkdir, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { describeWithTools, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { applyOperation, parseOperation } from "../src/customize/operations.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";

const run = promisify(execFile);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function guest(): Promise<MemoryGuestFs> {
  const fs = new MemoryGuestFs();
  await fs.mkdir("/etc", { recursive: true });
  await fs.mkdir("/opt", { recursive: true });
  // "app" has uid 4242 in the guest; the host has no such user.
  await fs.writeFile("/etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:4242:4343::/opt/app:/bin/sh\n");
  await fs.writeFile("/etc/group", "root:x:0:\napp:x:4343:\n");
  return fs;
}

/** A source tree with a script, a data file, a symlink, a hard link, an xattr and fixed times. */
async function sourceTree(): Promise<string> {
  const src = await tempDir();
  await mkdir(join(src, "app/bin"), { recursive: true });
  await writeFile(join(src, "app/bin/run"), "#!/bin/sh\necho run\n");
  await chmod(join(src, "app/bin/run"), 0o750);
  await writeFile(join(src, "app/data"), "data\n");
  await chmod(join(src, "app/data"), 0o640);
  await symlink("bin/run", join(src, "app/run-link"));
  await run("ln", [join(src, "app/data"), join(src, "app/data-hard")]);
  try {
    await run("setfattr", ["-n", "user.imgpatch", "-v", "hello", join(src, "app/data")]);
  } catch {
    // filesystem without user xattrs: the xattr assertion below is then skipped
  }
  await utimes(join(src, "app/data"), new Date(1_600_000_000_000), new Date(1_600_000_000_000));
  return src;
}

const FORMATS = [
  ["", "tar", "tar"],
  ["-z", "tar.gz", "gzip"],
  ["-J", "tar.xz", "xz"],
  ["--zstd", "tar.zst", "zstd"],
  ["-j", "tar.bz2", "bzip2"],
] as const;

for (const [flag, ext, tool] of FORMATS) {
  describeWithTools(["tar", tool, "setfattr", "getfattr"], `--tar-in ${ext} made by GNU tar`, () => {
    it("unpacks modes, guest owners by name, times, links, xattrs", async () => {
      const src = await sourceTree();
      const tarball = join(await tempDir(), `a.${ext}`);
      const args = ["-c", "--xattrs", "--owner=app", "--group=app", "-f", tarball, "-C", src, "app"];
      if (flag) args.unshift(flag);
      await run("tar", args);
      const fs = await guest();
      const log = await applyOperation(fs, parseOperation("tar-in", `${tarball}:/opt`));
      expect(log[0]).toMatch(/tar-in .* -> \/opt \(6 entries\)/);
      expect(await fs.lstat("/opt/app/bin/run")).toMatchObject({
        type: "file",
        mode: 0o750,
        uid: 4242,
        gid: 4343,
      });
      expect(text(await fs.readFile("/opt/app/bin/run"))).toBe("#!/bin/sh\necho run\n");
      expect(await fs.lstat("/opt/app/data")).toMatchObject({ mode: 0o640, nlink: 2 });
      expect((await fs.lstat("/opt/app/data")).mtime.getTime()).toBe(1_600_000_000_000);
      expect((await fs.lstat("/opt/app/data")).ino).toBe((await fs.lstat("/opt/app/data-hard")).ino);
      expect(await fs.readlink("/opt/app/run-link")).toBe("bin/run");
      const hasXattr =
        (await run("getfattr", ["-n", "user.imgpatch", join(src, "app/data")]).catch(() => null)) !== null;
      if (hasXattr) expect(text((await fs.getxattr("/opt/app/data", "user.imgpatch"))!)).toBe("hello");
    });
  });
}

describeWithTools(["tar"], "--tar-in safety", () => {
  it("skips '..' members and writes through archive-made symlinks", async () => {
    const src = await tempDir();
    await mkdir(join(src, "d"), { recursive: true });
    await writeFile(join(src, "evil"), "x");
    await symlink("/etc", join(src, "d/link"));
    const tarball = join(await tempDir(), "evil.tar");
    // d/link -> /etc, then a member d/link/passwd: tar with --transform to forge the second name.
    await run("tar", ["-cf", tarball, "-C", src, "d/link"]);
    await run("tar", ["-rf", tarball, "-C", src, "--transform", "s,^evil$,d/link/passwd,", "evil"]);
    await run("tar", ["-rf", tarball, "-P", "-C", src, "--transform", "s,^evil$,../../escape,", "evil"]);
    const fs = await guest();
    const log = await applyOperation(fs, parseOperation("tar-in", `${tarball}:/opt`));
    expect(log.join("\n")).toMatch(/skipped d\/link\/passwd: path goes through a symlink/);
    expect(log.join("\n")).toMatch(/skipped \.\.\/\.\.\/escape: member name contains/);
    expect(text(await fs.readFile("/etc/passwd"))).toContain("app:x:4242");
    await expect(fs.lstat("/escape")).rejects.toThrow(/ENOENT/);
  });
});
