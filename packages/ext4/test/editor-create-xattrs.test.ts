/**
 * Attributes given at creation (`createXattrs`, how SELinux labels are written): every inode a
 * call makes — each level of `mkdir -p`, files (inline, small, large), fast and slow symlinks,
 * device nodes — carries them from the start, in the inode body when there is room (256-byte
 * inodes) or in a block (128-byte ones), next to inline data and inline directories (which grow
 * into system.data and move to a block with the label kept). A replaced file is not asked. Judged
 * by e2fsck -fn and debugfs (ea_list/ea_get, stat's File ACL).
 */
import { debugfsStat, debugfsXattrs, describeWithTools, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { expectClean, FEATURE_SETS, makeImage, openEditor } from "./editor-helpers.js";

const label = (path: string, mode: number) =>
  `system_u:object_r:t${(mode >> 12).toString(8)}_${path.split("/").length}_t:s0\0`;

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "ext4 editor: attributes at creation", () => {
  for (const [set, inBody] of [
    ["ext4-csum", true],
    ["ext4-128", false],
    ["ext4-inline", true],
  ] as const) {
    it(`${set}: every created inode has them, ${inBody ? "in the inode" : "in a block"}`, async () => {
      const dir = await tempDir("edx-");
      const path = await makeImage(dir, "f", FEATURE_SETS[set], "16M");
      const ed = await openEditor(path);
      const asked: string[] = [];
      const createXattrs = (p: string, mode: number) => {
        asked.push(p);
        return {
          "security.selinux": new TextEncoder().encode(label(p, mode)),
          "user.k": new Uint8Array([1]),
        };
      };
      await ed.mkdir("/a/b/c", { recursive: true, createXattrs });
      await ed.writeFile("/a/b/c/small", "x".repeat(100), { createXattrs });
      await ed.writeFile("/a/big", new Uint8Array(5000).fill(7), { createXattrs });
      await ed.writeFile("/a/empty", "", { createXattrs });
      await ed.symlink("target", "/a/fast", { createXattrs });
      await ed.symlink("t".repeat(200), "/a/slow", { createXattrs });
      await ed.mknod("/a/pipe", "fifo", 0o600, 0, 0, { createXattrs });
      await ed.mknod("/a/dev", "chardev", 0o600, 1, 3, { createXattrs });
      // an inline directory grows into system.data, then moves to a block; one object answered
      // for all of these (its in-inode layout is reused)
      const shared = { "security.selinux": new TextEncoder().encode("u:r:shared_t:s0\0") };
      const sharedHook = (p: string) => {
        asked.push(p);
        return shared;
      };
      for (let i = 0; i < 40; i++) await ed.writeFile(`/a/b/c/n${i}`, `${i}`, { createXattrs: sharedHook });
      const before = asked.length;
      await ed.writeFile("/a/big", "replaced", { createXattrs }); // existing: keeps its own
      expect(asked.length).toBe(before);
      await ed.close();

      await expectClean(path);
      const S_IFMT = { d: 0o040000, f: 0o100000, l: 0o120000, p: 0o010000, c: 0o020000 };
      const made: Array<[string, number]> = [
        ["/a", S_IFMT.d],
        ["/a/b", S_IFMT.d],
        ["/a/b/c", S_IFMT.d],
        ["/a/b/c/small", S_IFMT.f],
        ["/a/big", S_IFMT.f],
        ["/a/empty", S_IFMT.f],
        ["/a/fast", S_IFMT.l],
        ["/a/slow", S_IFMT.l],
        ["/a/pipe", S_IFMT.p],
        ["/a/dev", S_IFMT.c],
        ...Array.from({ length: 40 }, (_, i): [string, number] => [`/a/b/c/n${i}`, S_IFMT.f]),
      ];
      expect(asked.sort()).toEqual(made.map(([p]) => p).sort());
      for (const [p, mode] of made) {
        const x = await debugfsXattrs(path, p);
        const isShared = p.startsWith("/a/b/c/n");
        expect([p, Buffer.from(x["security.selinux"] ?? []).toString("latin1")]).toEqual([
          p,
          isShared ? "u:r:shared_t:s0\0" : label(p, mode),
        ]);
        expect([p, [...(x["user.k"] ?? [])]]).toEqual([p, isShared ? [] : [1]]);
        const st = await debugfsStat(path, p);
        expect([p, st.fileAcl === 0]).toEqual([p, inBody]);
      }
    });
  }
});
