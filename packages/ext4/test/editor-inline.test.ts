/**
 * inline_data creation as the kernel does it, judged by e2fsck and debugfs: small files and
 * symlinks too long for a fast link live in the inode (i_block + system.data), new directories
 * start inline (parent number + one empty record), grow into system.data, and move to a block
 * when full; entries are added, removed and renamed in place; truncate and rewrite keep or
 * convert the layout; a filesystem without inline_data never gets it.
 */
import { FileDevice } from "@imgpatch/disk";
import { Ext4Fs } from "@imgpatch/ext4";
import {
  type DebugfsStat,
  debugfs,
  debugfsCat,
  debugfsLs,
  debugfsStat,
  debugfsXattrs,
  describeWithTools,
  tempDir,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { expectClean, FEATURE_SETS, makeImage, openEditor } from "./editor-helpers.js";

const INLINE_FL = 0x10000000;
const EXTENTS_FL = 0x80000;

const inlineSize = (st: DebugfsStat) => st.inlineDataSize ?? -1;
const isInline = (st: DebugfsStat) => (st.flags & INLINE_FL) !== 0;
const names = async (path: string, dir: string) =>
  (await debugfsLs(path, dir))
    .map((e) => e.name)
    .filter((n) => n !== "." && n !== "..")
    .sort();

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "ext4 editor: inline_data", () => {
  it("files and symlinks: inline when they fit the inode, fast or block otherwise", async () => {
    const dir = await tempDir("edi-");
    const path = await makeImage(dir, "f", FEATURE_SETS["ext4-inline"], "16M");
    const ed = await openEditor(path);
    const files: Record<string, number> = {
      tiny: 5,
      sixty: 60,
      mid: 100,
      max: 128,
      over: 129,
      big: 5000,
      empty: 0,
    };
    for (const [n, size] of Object.entries(files)) await ed.writeFile(`/${n}`, "q".repeat(size));
    // Streamed content that turns out small is inline too.
    await ed.writeFile(
      "/streamed",
      (async function* () {
        yield new TextEncoder().encode("part one, ");
        yield new TextEncoder().encode("part two");
      })(),
    );
    const targets: Record<string, string> = {
      fast: "t".repeat(59),
      inl: "u".repeat(60),
      inl2: "v".repeat(128),
      slow: "w".repeat(129),
    };
    for (const [n, t] of Object.entries(targets)) await ed.symlink(t, `/l-${n}`);
    // Many small files in a row (the editor's fast path for small files must keep them inline).
    await ed.mkdir("/many");
    for (let i = 0; i < 200; i++) await ed.writeFile(`/many/file-${i}`, `content ${i}`);
    await ed.close();
    await expectClean(path);

    for (const [n, size] of Object.entries(files)) {
      const st = await debugfsStat(path, `/${n}`);
      expect(st.size, n).toBe(size);
      const inline = size > 0 && size <= 128;
      expect(isInline(st), n).toBe(inline);
      expect((st.flags & EXTENTS_FL) !== 0, n).toBe(!inline);
      if (inline) {
        expect(inlineSize(st), n).toBe(Math.max(60, size));
        expect(st.blockcount, n).toBe(0);
      }
      expect((await debugfsCat(path, `/${n}`)).toString(), n).toBe("q".repeat(size));
      // system.data is no user-visible attribute.
      expect(Object.keys(await debugfsXattrs(path, `/${n}`)), n).toEqual([]);
    }
    expect(isInline(await debugfsStat(path, "/streamed"))).toBe(true);
    const many = await Ext4Fs.open(await FileDevice.open(path, { readOnly: true }));
    for (let i = 0; i < 200; i += 37) {
      const st = await debugfsStat(path, `/many/file-${i}`);
      expect(isInline(st), `file-${i}`).toBe(true);
      expect((await many.readFile(`/many/file-${i}`)).toString()).toBe(`content ${i}`);
    }
    await many.close();
    expect((await debugfsCat(path, "/streamed")).toString()).toBe("part one, part two");
    for (const [n, t] of Object.entries(targets)) {
      const st = await debugfsStat(path, `/l-${n}`);
      expect(isInline(st), n).toBe(n.startsWith("inl"));
      if (n === "fast") expect(st.linkTarget, n).toBe(t);
    }
    const fs = await Ext4Fs.open(await FileDevice.open(path, { readOnly: true }));
    for (const [n, t] of Object.entries(targets)) expect(await fs.readlink(`/l-${n}`), n).toBe(t);
    expect((await fs.readFile("/mid")).toString()).toBe("q".repeat(100));
    await fs.close();
  });

  it("directories: inline, grown into system.data, moved to a block when full", async () => {
    const dir = await tempDir("edi-");
    const path = await makeImage(dir, "d", FEATURE_SETS["ext4-inline"], "16M");
    const ed = await openEditor(path);
    await ed.mkdir("/empty");
    await ed.mkdir("/small");
    await ed.writeFile("/small/a", "1");
    await ed.writeFile("/small/b", "2");
    await ed.mkdir("/small/sub");
    await ed.mkdir("/grown");
    // 12 bytes a record: 4 fit i_block's 56 bytes, the 5th grows system.data to its maximum.
    for (let i = 0; i < 6; i++) await ed.writeFile(`/grown/f${i}`, String(i));
    await ed.mkdir("/full");
    for (let i = 0; i < 30; i++) await ed.writeFile(`/full/file-${i}`, String(i));
    await ed.close();
    await expectClean(path);

    const e = await debugfsStat(path, "/empty");
    expect(isInline(e)).toBe(true);
    expect(e.size).toBe(60);
    expect(inlineSize(e)).toBe(60);
    expect(e.links).toBe(2);
    expect(await names(path, "/empty")).toEqual([]);
    const s = await debugfsStat(path, "/small");
    expect(isInline(s)).toBe(true);
    expect(s.size).toBe(60);
    expect(s.links).toBe(3);
    expect(await names(path, "/small")).toEqual(["a", "b", "sub"]);
    const sub = await debugfsLs(path, "/small/sub");
    expect(sub.find((x) => x.name === "..")?.inode).toBe(s.inode);
    const g = await debugfsStat(path, "/grown");
    expect(isInline(g)).toBe(true);
    expect(g.size).toBe(128);
    expect(inlineSize(g)).toBe(128);
    expect(await names(path, "/grown")).toEqual(["f0", "f1", "f2", "f3", "f4", "f5"]);
    const f = await debugfsStat(path, "/full");
    expect(isInline(f)).toBe(false);
    expect(f.flags & EXTENTS_FL).toBeTruthy();
    expect(f.size % 1024).toBe(0);
    expect((await names(path, "/full")).length).toBe(30);
    // Converted like the kernel: "." and ".." of 12 bytes, then the inline records as they lay —
    // i_block held file-0..2 (file-2 keeping i_block's 8 spare bytes), system.data file-3..6.
    const recs = [...(await debugfs(path, ["ls /full"])).matchAll(/(\d+)\s+\((\d+)\)\s+(\S+)/g)].map(
      (m) => `${m[3]}:${m[2]}`,
    );
    expect(recs.slice(0, 9)).toEqual([
      ".:12",
      "..:12",
      "file-0:16",
      "file-1:16",
      "file-2:24",
      "file-3:16",
      "file-4:16",
      "file-5:16",
      "file-6:16",
    ]);

    // Removing and renaming entries in both inline regions, moving inline dirs around.
    const ed2 = await openEditor(path);
    await ed2.unlink("/grown/f0"); // first record of i_block
    await ed2.unlink("/grown/f5"); // in system.data
    await ed2.rename("/grown/f4", "/grown/renamed-four");
    await ed2.rename("/small/a", "/grown/from-small");
    await ed2.rename("/small/sub", "/grown/sub"); // an inline dir moves: its parent number changes
    await ed2.rename("/grown/f1", "/grown/f2"); // replaces a target
    await ed2.rmdir("/empty");
    await ed2.close();
    await expectClean(path);
    expect(await names(path, "/grown")).toEqual(["f2", "f3", "from-small", "renamed-four", "sub"]);
    expect(await names(path, "/small")).toEqual(["b"]);
    const moved = await debugfsLs(path, "/grown/sub");
    expect(moved.find((x) => x.name === "..")?.inode).toBe(g.inode);
    expect((await debugfsStat(path, "/small")).links).toBe(2);
    expect((await debugfsStat(path, "/grown")).links).toBe(3);
    expect(isInline(await debugfsStat(path, "/grown"))).toBe(true);
    expect((await debugfsCat(path, "/grown/f2")).toString()).toBe("1");
    expect((await debugfsLs(path, "/")).some((x) => x.name === "empty")).toBe(false);
  });

  it("truncate, rewrite and xattrs next to inline data", async () => {
    const dir = await tempDir("edi-");
    const path = await makeImage(dir, "t", FEATURE_SETS["ext4-inline"], "16M");
    const ed = await openEditor(path);
    for (const n of ["shrink", "growin", "growout", "zero", "emptied", "rewrite-big", "xa"])
      await ed.writeFile(`/${n}`, "r".repeat(90));
    await ed.truncate("/shrink", 20);
    await ed.truncate("/growin", 120);
    await ed.truncate("/growout", 3000);
    await ed.truncate("/zero", 0);
    await ed.writeFile("/emptied", "");
    await ed.writeFile("/rewrite-big", "B".repeat(2000));
    await ed.writeFile("/block", "b".repeat(3000));
    await ed.writeFile("/block", "small now"); // a block file stays in blocks, like the kernel
    await ed.setxattr("/xa", "user.note", "v".repeat(40));
    await ed.writeAt("/xa", 90, "s".repeat(30)); // 120 bytes no longer fit next to the attribute
    await ed.close();
    await expectClean(path);
    const want: Record<string, [string, boolean]> = {
      shrink: ["r".repeat(20), true],
      growin: ["r".repeat(90) + "\0".repeat(30), true],
      growout: ["r".repeat(90) + "\0".repeat(2910), false],
      zero: ["", true], // the kernel keeps a truncated inline file inline
      emptied: ["", true],
      "rewrite-big": ["B".repeat(2000), false],
      block: ["small now", false],
      xa: ["r".repeat(90) + "s".repeat(30), false],
    };
    for (const [n, [content, inline]] of Object.entries(want)) {
      const st = await debugfsStat(path, `/${n}`);
      expect(isInline(st), n).toBe(inline);
      expect(st.size, n).toBe(content.length);
      expect((await debugfsCat(path, `/${n}`)).toString("latin1"), n).toBe(content);
    }
    expect(Buffer.from((await debugfsXattrs(path, "/xa"))["user.note"]).toString()).toBe("v".repeat(40));
  });

  it("without inline_data (or with 128-byte inodes) nothing is inline", async () => {
    const dir = await tempDir("edi-");
    for (const set of ["ext4-csum", "ext4-128"] as const) {
      const path = await makeImage(dir, set, FEATURE_SETS[set], "16M");
      const ed = await openEditor(path);
      await ed.writeFile("/f", "tiny");
      await ed.mkdir("/d");
      await ed.symlink("x".repeat(100), "/l");
      await ed.close();
      await expectClean(path);
      for (const p of ["/f", "/d", "/l"])
        expect(isInline(await debugfsStat(path, p)), `${set} ${p}`).toBe(false);
    }
  });
});
