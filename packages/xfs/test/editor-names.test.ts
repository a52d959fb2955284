// Names through the editor: mkdir (-p), files created by writeFile, symlinks (inline and in
// blocks with v5 headers), hard links, rename (same directory, across directories, replacing a
// file), unlink, rmdir. Oracles: xfs_repair -n + xfs_db check (link counts, directory structure,
// symlink blocks, rmap), and as root the kernel's view through a read-only loop mount.
import { mkdirSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, isRoot, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/editor.js";
import { dbFields, FEATURE_SETS, fsCheck, mkfsImage, XFS_TOOLS, xfsDb } from "./space-helpers.js";

function xfsDbFree(path: string): number {
  return Number(dbFields(xfsDb(path, ["sb 0", "print fdblocks"])).get("fdblocks"));
}

const LONG_TARGET = `/very/long/${"x".repeat(590)}/end`;

describeWithTools(XFS_TOOLS, "XfsEditor: names (xfs_repair -n, kernel)", () => {
  for (const name of ["v5", "v4", "v5-1k", "v5-rmap-reflink"]) {
    it(`${name}: mkdir, create, symlink, link, rename, unlink, rmdir`, async () => {
      const dir = await tempDir("xfs-names-");
      const path = mkfsImage(dir, `${name}.img`, FEATURE_SETS[name], 64, 1);
      const dev = await FileDevice.open(path, { readOnly: false });
      const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
      try {
        expect(await ed.mkdir("/a/b/c", { recursive: true, mode: 0o750 })).toBe("/a");
        await ed.mkdir("/d");
        await expect(ed.mkdir("/d")).rejects.toMatchObject({ code: "EEXIST" });
        await ed.writeFile("/d/new1", "hello", { mode: 0o600, uid: 7, gid: 8 });
        await ed.writeFile("/a/b/c/deep", new Uint8Array(70_000).fill(5));
        await ed.symlink("../d/new1", "/a/short");
        await ed.symlink(LONG_TARGET, "/a/long");
        await ed.link("/d/new1", "/d/hard");
        await ed.rename("/d/new1", "/d/renamed");
        await ed.rename("/d/hard", "/a/b/moved");
        await ed.writeFile("/d/victim", "old");
        await ed.writeFile("/d/src", "new");
        await ed.rename("/d/src", "/d/victim");
        await ed.rename("/a/b/c", "/a/b/c2");
        for (let i = 0; i < 60; i++) await ed.writeFile(`/d/many-${i}`, `n${i}`);
        for (let i = 0; i < 60; i += 3) await ed.unlink(`/d/many-${i}`);
        await ed.mkdir("/gone");
        await ed.rmdir("/gone");
        // Directories moving to another parent: short form, and a block directory.
        await ed.mkdir("/m1");
        await ed.writeFile("/m1/inside", "1");
        await ed.mkdir("/m2");
        for (let i = 0; i < 40; i++) await ed.writeFile(`/m2/entry-with-a-long-name-${i}`, "");
        await ed.rename("/m1", "/d/m1");
        await ed.rename("/m2", "/a/b/m2");
        await expect(ed.rename("/a", "/a/b/m2/a")).rejects.toMatchObject({ code: "EINVAL" });
        // rename(2) replacing: an empty directory by a directory; not a non-empty one, not a file.
        await ed.mkdir("/r1");
        await ed.writeFile("/r1/x", "x");
        await ed.mkdir("/r2");
        await ed.rename("/r1", "/r2");
        await ed.mkdir("/r3");
        await expect(ed.rename("/r3", "/r2")).rejects.toMatchObject({ code: "ENOTEMPTY" });
        await expect(ed.rename("/r3", "/d/victim")).rejects.toMatchObject({ code: "ENOTDIR" });
        await ed.rmdir("/r3");
        await ed.rm("/r2", { recursive: true });
        await expect(ed.rmdir("/d")).rejects.toMatchObject({ code: "ENOTEMPTY" });
        expect(await ed.readlink("/a/long")).toBe(LONG_TARGET);
        expect((await ed.stat("/d/renamed")).nlink).toBe(2);
        expect(new TextDecoder().decode(await ed.readFile("/d/victim"))).toBe("new");
      } finally {
        await ed.close();
        await dev.close();
      }
      const c = fsCheck(path);
      expect(c.output).toBe("");
      expect(c.clean).toBe(true);
      if (isRoot() && name !== "v4") {
        const mnt = join(dir, "mnt");
        mkdirSync(mnt);
        await withLoopMount(path, mnt, {}, async (m) => {
          expect(readdirSync(m).sort()).toEqual(["a", "d", "f0"]);
          expect(readdirSync(join(m, "a/b")).sort()).toEqual(["c2", "m2", "moved"]);
          expect(statSync(join(m, "a/b/m2/..")).ino).toBe(statSync(join(m, "a/b")).ino);
          expect(statSync(join(m, "d/m1/..")).ino).toBe(statSync(join(m, "d")).ino);
          expect(readdirSync(join(m, "a/b/m2")).length).toBe(40);
          expect(statSync(join(m, "a/b")).nlink).toBe(4);
          expect(readFileSync(join(m, "a/b/moved"), "utf8")).toBe("hello");
          expect(statSync(join(m, "a/b/moved")).nlink).toBe(2);
          expect(statSync(join(m, "a")).nlink).toBe(3);
          expect(statSync(join(m, "a/b/c2")).mode & 0o7777).toBe(0o750);
          expect(readlinkSync(join(m, "a/short"))).toBe("../d/new1");
          expect(readlinkSync(join(m, "a/long"))).toBe(LONG_TARGET);
          expect(readFileSync(join(m, "d/victim"), "utf8")).toBe("new");
          expect(readFileSync(join(m, "a/b/c2/deep")).length).toBe(70_000);
          const names = readdirSync(join(m, "d"));
          expect(names.filter((n) => n.startsWith("many-")).length).toBe(40);
          expect(readFileSync(join(m, "d/many-59"), "utf8")).toBe("n59");
        });
      }
    });
  }

  it("v5: device nodes, FIFOs, sockets; rm -r of a tree with files, links, symlinks and a bmbt file", async () => {
    const dir = await tempDir("xfs-names-rm-");
    const path = mkfsImage(dir, "rm.img", FEATURE_SETS.v5, 64);
    const dev = await FileDevice.open(path, { readOnly: false });
    const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
    const before = xfsDbFree(path);
    try {
      await ed.mkdir("/dev");
      await ed.mknod("/dev/null", "chardev", 0o666, 1, 3);
      await ed.mknod("/dev/sda", "blockdev", 0o660, 8, 0);
      await ed.mknod("/dev/big", "chardev", 0o600, 300, 70000);
      await ed.mknod("/fifo", "fifo", 0o644);
      await ed.mknod("/sock", "socket", 0o755);
      await ed.mkdir("/t/u/v", { recursive: true });
      const holey = new Uint8Array(100 * 4096);
      for (let b = 0; b < 100; b += 2) holey[b * 4096] = 1;
      await ed.writeFile("/t/u/v/holey", holey, { sparse: true });
      for (let i = 0; i < 30; i++) await ed.writeFile(`/t/u/f${i}`, new Uint8Array(5000 + i));
      await ed.link("/t/u/f1", "/keep");
      await ed.symlink(LONG_TARGET, "/t/long");
      await ed.rm("/t", { recursive: true });
      await expect(ed.rm("/t")).rejects.toMatchObject({ code: "ENOENT" });
      await ed.rm("/t", { force: true });
      expect((await ed.stat("/keep")).nlink).toBe(1);
    } finally {
      await ed.close();
      await dev.close();
    }
    const c = fsCheck(path);
    expect(c.output).toBe("");
    expect(c.clean).toBe(true);
    // Everything under /t went back: only /keep's 5001 bytes, /dev and its nodes remain in use.
    expect(before - xfsDbFree(path)).toBeLessThanOrEqual(4);
    if (isRoot()) {
      const mnt = join(dir, "mnt");
      mkdirSync(mnt);
      await withLoopMount(path, mnt, {}, async (m) => {
        expect(readdirSync(m).sort()).toEqual(["dev", "fifo", "keep", "sock"]);
        const n = statSync(join(m, "dev/null"));
        expect([n.isCharacterDevice(), Math.floor(n.rdev / 256), n.rdev % 256, n.mode & 0o7777]).toEqual([
          true,
          1,
          3,
          0o666,
        ]);
        expect(statSync(join(m, "dev/sda")).isBlockDevice()).toBe(true);
        const big = statSync(join(m, "dev/big"));
        expect([
          Number((BigInt(big.rdev) >> 8n) & 0xfffn),
          Number((BigInt(big.rdev) & 0xffn) | ((BigInt(big.rdev) >> 12n) & 0xfff00n)),
        ]).toEqual([300, 70000]);
        expect(statSync(join(m, "fifo")).isFIFO()).toBe(true);
        expect(statSync(join(m, "sock")).isSocket()).toBe(true);
      });
    }
  });
});
