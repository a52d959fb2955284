/**
 * mkdir with { recursive: true } finds the longest existing prefix and makes the rest: it must
 * behave like `mkdir -p` — through guest symlinks (relative and absolute, resolved in the guest),
 * with ".." components, refusing a file or a dangling symlink in the way — and every directory
 * it makes must be a real one (e2fsck clean, debugfs sees it with the mode and owner asked for).
 */
import { Ext4EditError } from "@imgpatch/ext4";
import { debugfsLs, debugfsStat, describeWithTools, e2fsck, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { FEATURE_SETS, makeImage, openEditor } from "./editor-helpers.js";

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "ext4 editor: mkdir -p", () => {
  for (const set of ["ext4-csum", "ext2"] as const) {
    it(`walks existing prefixes, symlinks and ".." like mkdir -p (${set})`, async () => {
      const dir = await tempDir("edm-");
      const path = await makeImage(dir, set, FEATURE_SETS[set]);
      const ed = await openEditor(path);
      // Three new levels: the first one made is returned, and all get the mode and owner.
      expect(await ed.mkdir("/opt/a/b", { recursive: true, mode: 0o750, uid: 7, gid: 8 })).toBe("/opt");
      // Nothing new: undefined, as node's fs.mkdir.
      expect(await ed.mkdir("/opt/a/b", { recursive: true })).toBeUndefined();
      expect(await ed.mkdir("/opt/a/b/c", { recursive: true })).toBe("/opt/a/b/c");
      // Through guest symlinks: relative (/lib -> usr/lib) and absolute (/abs -> /opt/a).
      await ed.mkdir("/usr/lib", { recursive: true });
      await ed.symlink("usr/lib", "/lib");
      await ed.symlink("/opt/a", "/abs");
      expect(await ed.mkdir("/lib/x/y", { recursive: true })).toBe("/lib/x");
      expect(await ed.mkdir("/abs/b/deep", { recursive: true })).toBe("/abs/b/deep");
      // ".." after a directory made in the same call, and after an existing one.
      expect(await ed.mkdir("/n1/../n2/n3", { recursive: true })).toBe("/n1");
      expect(await ed.mkdir("/opt/../n4", { recursive: true })).toBe("/opt/../n4");
      // In the way: a regular file (ENOTDIR) and a dangling symlink (EEXIST, as mkdir -p says).
      await ed.writeFile("/opt/file", "x");
      await ed.symlink("/nowhere", "/dangling");
      const refused = async (p: string, code: string) => {
        const e = await ed.mkdir(p, { recursive: true }).catch((x: unknown) => x);
        expect(e).toBeInstanceOf(Ext4EditError);
        expect((e as Ext4EditError).code).toBe(code);
      };
      await refused("/opt/file/sub", "ENOTDIR");
      await refused("/opt/file", "ENOTDIR");
      await refused("/dangling/sub", "EEXIST");
      // A file written right after into a directory made by mkdir -p (its parent is cached).
      await ed.writeFile("/lib/x/y/z", "zz");
      await ed.close();

      const r = await e2fsck(path);
      expect(r.problems, r.output).toEqual([]);
      expect(r.clean, r.output).toBe(true);
      const names = async (p: string) => (await debugfsLs(path, p)).map((e) => e.name).sort();
      expect(await names("/")).toEqual(
        expect.arrayContaining(["abs", "dangling", "lib", "n1", "n2", "n4", "opt", "usr"]),
      );
      expect(await names("/")).not.toContain("nowhere");
      expect(await names("/opt/a/b")).toEqual([".", "..", "c", "deep"]);
      expect(await names("/usr/lib")).toEqual([".", "..", "x"]);
      expect(await names("/usr/lib/x/y")).toEqual([".", "..", "z"]);
      expect(await names("/n2")).toEqual([".", "..", "n3"]);
      expect(await names("/n1")).toEqual([".", ".."]);
      for (const p of ["/opt", "/opt/a", "/opt/a/b"]) {
        const st = await debugfsStat(path, p);
        expect(st.type, p).toBe("dir");
        expect(st.mode & 0o7777, p).toBe(0o750);
        expect([st.uid, st.gid], p).toEqual([7, 8]);
        expect(st.links, p).toBe(p === "/opt/a/b" ? 4 : 3);
      }
      // Directories made with the default mode; link counts of parents that got subdirectories.
      expect((await debugfsStat(path, "/usr/lib/x")).mode & 0o7777).toBe(0o755);
      expect((await debugfsStat(path, "/n2")).links).toBe(3);
    });
  }
});
