import { describe, expect, it } from "vitest";
import { type GuestFs, isGuestError } from "../src/guest/guest-fs.js";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/**
 * The behaviour every GuestFs must have (MemoryGuestFs, HostDirGuestFs, and the ext4 editor's adapter:
 * call this from its test with a factory returning a fresh, empty, writable guest).
 */
export function describeGuestFsConformance(name: string, make: () => Promise<GuestFs>): void {
  describe(`GuestFs conformance: ${name}`, () => {
    it("creates directories, files and symlinks with exact modes and owners", async () => {
      const fs = await make();
      expect(await fs.mkdir("/a/b/c", { recursive: true, mode: 0o750, uid: 5, gid: 6 })).toBe("/a");
      expect(await fs.mkdir("/a/b/c", { recursive: true })).toBeUndefined();
      const st = await fs.stat("/a/b");
      expect(st).toMatchObject({ type: "directory", mode: 0o750, uid: 5, gid: 6 });
      await fs.writeFile("/a/b/c/f", "hello", { mode: 0o600, uid: 7, gid: 8, mtime: new Date(1_000_000) });
      expect(await fs.lstat("/a/b/c/f")).toMatchObject({
        type: "file",
        mode: 0o600,
        uid: 7,
        gid: 8,
        size: 5,
      });
      expect((await fs.lstat("/a/b/c/f")).mtime.getTime()).toBe(1_000_000);
      // Rewriting keeps mode and owner unless given.
      await fs.writeFile("/a/b/c/f", "bye");
      expect(await fs.lstat("/a/b/c/f")).toMatchObject({ mode: 0o600, uid: 7, size: 3 });
      await fs.writeFile(
        "/a/g",
        (async function* () {
          yield new Uint8Array([104, 105]);
          yield new Uint8Array([33]);
        })(),
      );
      expect(text(await fs.readFile("/a/g"))).toBe("hi!");
      expect((await fs.lstat("/a/g")).mode).toBe(0o644);
      await expect(fs.writeFile("/a/g", "x", { flag: "wx" })).rejects.toSatisfy((e) =>
        isGuestError(e, "EEXIST"),
      );
      await fs.symlink("b/c/f", "/a/link", { uid: 3, gid: 3 });
      expect(await fs.lstat("/a/link")).toMatchObject({ type: "symlink", uid: 3 });
      expect(await fs.readlink("/a/link")).toBe("b/c/f");
      expect(text(await fs.readFile("/a/link"))).toBe("bye");
      expect(await fs.readdir("/a")).toEqual(["b", "g", "link"]);
    });

    it("resolves absolute and relative symlinks inside the guest root", async () => {
      const fs = await make();
      await fs.mkdir("/usr/lib/systemd/system", { recursive: true });
      await fs.symlink("usr/lib", "/lib");
      await fs.writeFile("/lib/systemd/system/x.service", "[Unit]\n");
      expect(text(await fs.readFile("/usr/lib/systemd/system/x.service"))).toBe("[Unit]\n");
      await fs.mkdir("/etc", { recursive: true });
      await fs.writeFile("/etc/y", "Y");
      await fs.symlink("/etc/y", "/etc/x");
      expect(text(await fs.readFile("/etc/x"))).toBe("Y");
      // ".." above the root stays at the root.
      await fs.symlink("../../../../etc/y", "/usr/lib/up");
      expect(text(await fs.readFile("/usr/lib/up"))).toBe("Y");
      expect(text(await fs.readFile("/../../etc/y"))).toBe("Y");
      // A link loop is ELOOP, not a hang.
      await fs.symlink("/loop2", "/loop1");
      await fs.symlink("/loop1", "/loop2");
      await expect(fs.readFile("/loop1")).rejects.toSatisfy((e) => isGuestError(e, "ELOOP"));
      // Writing through a dangling absolute link creates the target inside the guest.
      await fs.symlink("/etc/new", "/etc/dangling");
      await fs.writeFile("/etc/dangling", "N");
      expect(text(await fs.readFile("/etc/new"))).toBe("N");
    });

    it("link, rename, unlink, rmdir, chmod, chown, lchown, utimes, xattrs", async () => {
      const fs = await make();
      await fs.mkdir("/d");
      await fs.writeFile("/d/a", "A");
      await fs.link("/d/a", "/d/b");
      expect((await fs.lstat("/d/a")).nlink).toBe(2);
      expect((await fs.lstat("/d/a")).ino).toBe((await fs.lstat("/d/b")).ino);
      await fs.rename("/d/b", "/c");
      expect(text(await fs.readFile("/c"))).toBe("A");
      await fs.unlink("/c");
      expect((await fs.lstat("/d/a")).nlink).toBe(1);
      await expect(fs.rmdir("/d")).rejects.toSatisfy((e) => isGuestError(e, "ENOTEMPTY"));
      await expect(fs.unlink("/d")).rejects.toSatisfy((e) => isGuestError(e, "EISDIR"));
      await fs.chmod("/d/a", 0o4755);
      expect((await fs.stat("/d/a")).mode).toBe(0o4755);
      await fs.symlink("a", "/d/l");
      await fs.chown("/d/l", 10, 11);
      expect(await fs.stat("/d/a")).toMatchObject({ uid: 10, gid: 11 });
      await fs.lchown("/d/l", 12, 13);
      expect(await fs.lstat("/d/l")).toMatchObject({ uid: 12, gid: 13 });
      expect(await fs.stat("/d/a")).toMatchObject({ uid: 10, gid: 11 });
      await fs.chown("/d/a", -1, 20);
      expect(await fs.stat("/d/a")).toMatchObject({ uid: 10, gid: 20 });
      expect((await fs.lstat("/d/a")).ino).not.toBe((await fs.lstat("/d/l")).ino);
      await fs.lutimes("/d/l", new Date(1000), new Date(3000));
      expect((await fs.lstat("/d/l")).mtime.getTime()).toBe(3000);
      await fs.utimes("/d/a", new Date(5000), new Date(7000));
      expect((await fs.stat("/d/a")).mtime.getTime()).toBe(7000);
      await fs.setxattr("/d/a", "security.selinux", new TextEncoder().encode("system_u:object_r:etc_t:s0\0"));
      expect(await fs.listxattr("/d/a")).toEqual(["security.selinux"]);
      expect(text((await fs.getxattr("/d/a", "security.selinux"))!)).toContain("etc_t");
      expect(await fs.getxattr("/d/a", "user.none")).toBeUndefined();
      await fs.unlink("/d/a");
      await fs.unlink("/d/l");
      await fs.rmdir("/d");
      await expect(fs.lstat("/d")).rejects.toSatisfy((e) => isGuestError(e, "ENOENT"));
    });

    it("reports typed errors naming the guest path", async () => {
      const fs = await make();
      await fs.writeFile("/file", "x");
      await expect(fs.readFile("/nope/x")).rejects.toSatisfy((e) => isGuestError(e, "ENOENT"));
      await expect(fs.writeFile("/file/x", "y")).rejects.toSatisfy((e) => isGuestError(e, "ENOTDIR"));
      await expect(fs.mkdir("/file")).rejects.toSatisfy((e) => isGuestError(e, "EEXIST"));
      await expect(fs.readlink("/file")).rejects.toSatisfy((e) => isGuestError(e, "EINVAL"));
      await expect(fs.readFile("relative")).rejects.toSatisfy((e) => isGuestError(e, "EINVAL"));
      const err = await fs.readFile("/nope/x").catch((e) => e);
      expect(String(err.message)).toContain("/nope/x");
    });
  });
}
