/**
 * The editor's fast paths keep state between operations: one shared object per inode (encoded at
 * flush), parent directories cached by path, pending small file data, leaf hints that go stale
 * when an htree leaf splits. These tests change the namespace under those caches and check that
 * every later operation sees the change (e2fsck clean, debugfs and our reader agree).
 */
import { Ext4EditError } from "@imgpatch/ext4";
import { debugfsCat, debugfsLs, describeWithTools, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { expectClean, FEATURE_SETS, makeImage, openEditor } from "./editor-helpers.js";

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
  it("small files through the synchronous paths and their fallbacks (uncached bitmaps, fragmented space, full pending runs, leaf splits)", async () => {
    const dir = await tempDir("edc-");
    const path = await makeImage(dir, "sync", FEATURE_SETS["ext4-csum"], "64M");
    const ed = await openEditor(path);
    const content = (i: number, len: number) => {
      const b = new Uint8Array(len);
      for (let k = 0; k < len; k += 97) b[k] = (i * 31 + k) & 0xff;
      b[len - 1] = i & 0xff;
      return b;
    };
    const expected = new Map<string, Uint8Array>();
    const put = async (p: string, data: Uint8Array) => {
      await ed.writeFile(p, data);
      expected.set(p, data);
    };
    // ~5.4 MiB of 1-5 block files into one directory: htree leaf splits, a full pending run.
    await ed.mkdir("/f");
    for (let i = 0; i < 600; i++) await put(`/f/n${i}`, content(i, ((i % 5) + 1) * 3000));
    // Every other file removed: one-block holes, so multi-block files cannot take one run.
    for (let i = 0; i < 600; i += 2) {
      await ed.unlink(`/f/n${i}`);
      expected.delete(`/f/n${i}`);
    }
    for (let i = 0; i < 200; i++) await put(`/f/m${i}`, content(1000 + i, 4096 * 2 + 1 + i));
    // Top-level directories land in other groups (bitmaps not yet read); then back to /f.
    for (let d = 0; d < 4; d++) {
      await ed.mkdir(`/t${d}`);
      for (let i = 0; i < 20; i++) await put(`/t${d}/x${i}`, content(2000 + d * 20 + i, 100 + i * 50));
    }
    for (let i = 0; i < 50; i++) await put(`/f/late${i}`, content(3000 + i, 1 + i * 200));
    // Read back before anything is flushed.
    for (const p of ["/f/n1", "/f/m7", "/t3/x19", "/f/late49"])
      expect(Buffer.from(await ed.readFile(p)).equals(Buffer.from(expected.get(p) as Uint8Array))).toBe(true);
    await ed.close();
    await expectClean(path);
    const again = await openEditor(path);
    for (const [p, data] of expected) {
      const got = await again.readFile(p);
      expect(Buffer.from(got).equals(Buffer.from(data)), p).toBe(true);
    }
    expect((await again.readdir("/f")).length).toBe(300 + 200 + 50);
    await again.close();
    for (const p of ["/f/n599", "/f/m0", "/f/m199", "/t0/x0", "/t2/x10"])
      expect((await debugfsCat(path, p)).equals(Buffer.from(expected.get(p) as Uint8Array)), p).toBe(true);
  }, 60_000);
});
