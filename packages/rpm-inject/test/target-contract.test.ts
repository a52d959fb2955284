/**
 * The InjectTarget contract, run against every implementation (the ext4 adapter joins this list
 * when it exists): same answers from MemoryTarget and HostDirTarget for the same operations,
 * including symlinks resolved inside the guest.
 */
import { tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { HostDirTarget, InjectConflictError, type InjectTarget, MemoryTarget } from "../src/index.js";

const enc = new TextEncoder();
const bytes = (s: string) =>
  (async function* () {
    yield enc.encode(s);
  })();

async function text(t: InjectTarget, p: string): Promise<string> {
  const parts: Uint8Array[] = [];
  for await (const c of t.readFile(p)) parts.push(c);
  return Buffer.concat(parts).toString("utf8");
}

const isRoot = process.getuid?.() === 0;
const targets: [string, () => Promise<InjectTarget>][] = [
  ["MemoryTarget", async () => new MemoryTarget()],
  ["HostDirTarget", async () => new HostDirTarget(await tempDir("target-contract-"))],
];

for (const [name, make] of targets) {
  describe(`InjectTarget contract: ${name}`, () => {
    it("creates directories and files with the given permissions", async () => {
      const t = await make();
      await t.mkdir("/d", 0o750);
      await t.writeFile("/d/f", bytes("hello"), 0o640, 5);
      expect(await t.lstat("/d")).toMatchObject({ type: "dir", perms: 0o750 });
      expect(await t.lstat("/d/f")).toMatchObject({ type: "file", perms: 0o640, size: 5, nlink: 1 });
      expect(await t.lstat("/nope")).toBeUndefined();
      expect(await t.exists("/d/f")).toBe(true);
      expect(await text(t, "/d/f")).toBe("hello");
    });

    it("writeFile replaces a file, and replaces a symlink instead of following it", async () => {
      const t = await make();
      await t.writeFile("/a", bytes("old"), 0o644);
      await t.writeFile("/a", bytes("new"), 0o600);
      expect(await text(t, "/a")).toBe("new");
      expect((await t.lstat("/a"))?.perms).toBe(0o600);
      await t.writeFile("/target", bytes("keep"), 0o644);
      await t.symlink("/target", "/link");
      await t.writeFile("/link", bytes("replaced"), 0o644);
      expect((await t.lstat("/link"))?.type).toBe("file");
      expect(await text(t, "/target")).toBe("keep");
    });

    it("refuses to write a file over a directory", async () => {
      const t = await make();
      await t.mkdir("/d", 0o755);
      await expect(t.writeFile("/d", bytes("x"), 0o644)).rejects.toBeInstanceOf(InjectConflictError);
    });

    it("follows symlinks inside the guest, never above its root", async () => {
      const t = await make();
      await t.mkdir("/real", 0o755);
      await t.symlink("/real", "/abs");
      await t.symlink("../../../../../real", "/climb");
      await t.writeFile("/abs/x", bytes("via absolute"), 0o644);
      await t.writeFile("/climb/y", bytes("via climb"), 0o644);
      expect(await text(t, "/real/x")).toBe("via absolute");
      expect(await text(t, "/real/y")).toBe("via climb");
      expect(await t.readlink("/abs")).toBe("/real");
      expect((await t.lstat("/abs"))?.type).toBe("symlink");
      await t.symlink("x", "/real/rel");
      expect(await text(t, "/abs/rel")).toBe("via absolute"); // final symlink followed by readFile
    });

    it("reports symlink loops as conflicts", async () => {
      const t = await make();
      await t.symlink("/loop2", "/loop1");
      await t.symlink("/loop1", "/loop2");
      await expect(t.writeFile("/loop1/x", bytes("x"), 0o644)).rejects.toBeInstanceOf(InjectConflictError);
    });

    it("hard links share the inode", async () => {
      const t = await make();
      await t.writeFile("/h1", bytes("same"), 0o644);
      await t.link("/h1", "/h2");
      const [a, b] = [await t.lstat("/h1"), await t.lstat("/h2")];
      expect(a?.ino).toBe(b?.ino);
      expect(a?.nlink).toBe(2);
    });

    it("metadata: chown, chmod with setuid after chown, utimes on a symlink itself", async () => {
      const t = await make();
      await t.writeFile("/f", bytes("x"), 0o644);
      if (isRoot || name === "MemoryTarget") {
        await t.chown("/f", 990, 991);
        expect(await t.lstat("/f")).toMatchObject({ uid: 990, gid: 991 });
      }
      await t.chmod("/f", 0o4755);
      expect((await t.lstat("/f"))?.perms).toBe(0o4755);
      await t.utimes("/f", 1600000000, 1600000000);
      await t.symlink("/f", "/l");
      await t.utimes("/l", 1700000000, 1700000000);
      expect((await t.lstat("/f"))?.mtime).toBe(1600000000);
      expect((await t.lstat("/l"))?.mtime).toBe(1700000000);
    });

    it("rename, unlink and rmdir", async () => {
      const t = await make();
      await t.mkdir("/d", 0o755);
      await t.writeFile("/d/a", bytes("a"), 0o644);
      await t.writeFile("/d/b", bytes("b"), 0o644);
      await t.rename("/d/a", "/d/b");
      expect(await text(t, "/d/b")).toBe("a");
      expect(await t.exists("/d/a")).toBe(false);
      await expect(t.rmdir("/d")).rejects.toBeInstanceOf(InjectConflictError);
      await t.unlink("/d/b");
      await t.rmdir("/d");
      expect(await t.exists("/d")).toBe(false);
    });

    it.skipIf(name === "HostDirTarget" && !isRoot)("device nodes and fifos", async () => {
      const t = await make();
      await t.mknod("/fifo", "fifo", 0o620, 0, 0);
      await t.mknod("/null", "chardev", 0o666, 1, 3);
      expect(await t.lstat("/fifo")).toMatchObject({ type: "fifo", perms: 0o620 });
      expect(await t.lstat("/null")).toMatchObject({ type: "chardev", rdevMajor: 1, rdevMinor: 3 });
    });
  });
}
