/**
 * The editor's fast paths keep state between operations: one shared object per inode (encoded at
 * flush), parent directories cached by path, pending small file data, leaf hints that go stale
 * when an htree leaf splits. These tests change the namespace under those caches and check that
 * every later operation sees the change (e2fsck clean, debugfs and our reader agree).
 */
import { Ext4EditError } from "@imgpatch/ext4";
import { debugfsCat, debugfsLs, describeWithTools, e2fsck, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { FEATURE_SETS, makeImage, openEditor } from "./editor-helpers.js";

async function expectClean(path: string): Promise<void> {
  const r = await e2fsck(path);
  expect(r.problems, r.output).toEqual([]);
  expect(r.clean, r.output).toBe(true);
}

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "ext4 editor: caches between operations", () => {
  it("cached parent paths follow renames, removals and a symlink replaced by a directory", async () => {
    const dir = await tempDir("edc-");
    const path = await makeImage(dir, "paths", FEATURE_SETS["ext4-csum"]);
    const ed = await openEditor(path);
    await ed.mkdir("/a/b", { recursive: true });
    await ed.writeFile("/a/b/one", "1");
    // The parent "/a/b" is cached now; move it away.
    await ed.rename("/a", "/c");
    await expect(ed.writeFile("/a/b/two", "2")).rejects.toBeInstanceOf(Ext4EditError);
    await ed.writeFile("/c/b/two", "2");
    // A new /a/b is another directory.
    await ed.mkdir("/a/b", { recursive: true });
    await ed.writeFile("/a/b/three", "3");
    // A path through a symlink, then the symlink replaced by a real directory.
    await ed.symlink("/c/b", "/l");
    await ed.writeFile("/l/four", "4");
    await ed.unlink("/l");
    await ed.mkdir("/l");
    await ed.writeFile("/l/five", "5");
    // A removed directory no longer takes files.
    await ed.unlink("/a/b/three");
    await ed.rmdir("/a/b");
    await expect(ed.writeFile("/a/b/six", "6")).rejects.toBeInstanceOf(Ext4EditError);
    expect((await ed.readdir("/c/b")).sort()).toEqual(["four", "one", "two"]);
    await ed.close();
    await expectClean(path);
    expect((await debugfsLs(path, "/c/b")).map((e) => e.name).sort()).toEqual([
      ".",
      "..",
      "four",
      "one",
      "two",
    ]);
    expect((await debugfsLs(path, "/l")).map((e) => e.name).sort()).toEqual([".", "..", "five"]);
    expect((await debugfsLs(path, "/a")).map((e) => e.name).sort()).toEqual([".", ".."]);
    expect((await debugfsCat(path, "/c/b/four")).toString()).toBe("4");
  });

  it("names moved by htree leaf splits can be removed and replaced; reads see pending inodes and data", async () => {
    const dir = await tempDir("edc-");
    const path = await makeImage(dir, "split", FEATURE_SETS["ext4-1k"]);
    const ed = await openEditor(path);
    await ed.mkdir("/d");
    const n = 3000;
    for (let i = 0; i < n; i++) await ed.writeFile(`/d/name-${i}`, `content ${i}`);
    // Every name, whatever leaf it ended up in: replace some by rename, remove others.
    for (let i = 0; i < n; i += 7) {
      await ed.writeFile("/d/replacement", `replaced ${i}`);
      await ed.rename("/d/replacement", `/d/name-${i}`);
    }
    for (let i = 3; i < n; i += 7) await ed.unlink(`/d/name-${i}`);
    // Reads in between see pending inodes and pending data.
    expect((await ed.readFile("/d/name-7")).toString()).toBe("replaced 7");
    expect((await ed.readFile("/d/name-8")).toString()).toBe("content 8");
    await ed.writeFile("/d/late", "late");
    await ed.close();
    await expectClean(path);
    const names = new Set((await debugfsLs(path, "/d")).map((e) => e.name));
    expect(names.size).toBe(n - Math.ceil((n - 3) / 7) + 3);
    expect(names.has("name-3")).toBe(false);
    expect(names.has("replacement")).toBe(false);
    expect((await debugfsCat(path, "/d/name-14")).toString()).toBe("replaced 14");
    expect((await debugfsCat(path, "/d/name-15")).toString()).toBe("content 15");
    expect((await debugfsCat(path, "/d/late")).toString()).toBe("late");
  }, 60_000);

  it("blocks of small files still being written are reused by a large file: the large one wins", async () => {
    const dir = await tempDir("edc-");
    const path = await makeImage(dir, "reuse", FEATURE_SETS["ext4-csum"], "64M");
    const ed = await openEditor(path);
    await ed.mkdir("/s");
    // 6 MiB of small files: at least one 4 MiB run of pending data goes to the device meanwhile.
    const small = (i: number) => new Uint8Array(12_288).fill(i & 0xff);
    for (let i = 0; i < 512; i++) await ed.writeFile(`/s/f${i}`, small(i));
    for (let i = 0; i < 512; i++) await ed.unlink(`/s/f${i}`);
    const big = new Uint8Array(6 << 20);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i >> 12) & 0xff;
    await ed.writeFile("/s/big", big);
    // And a small file over the same blocks again, read back before anything is flushed.
    await ed.writeFile("/s/again", small(7));
    expect(Buffer.from(await ed.readFile("/s/again")).equals(Buffer.from(small(7)))).toBe(true);
    await ed.close();
    await expectClean(path);
    expect((await debugfsCat(path, "/s/big")).equals(Buffer.from(big))).toBe(true);
    expect((await debugfsCat(path, "/s/again")).equals(Buffer.from(small(7)))).toBe(true);
  }, 60_000);
});
