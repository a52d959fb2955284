// Attributes given at creation (`createXattrs`, how SELinux labels are written): each directory
// `mkdir -p` makes, new files (small, and one whose holes make a bmbt), symlinks and device nodes
// carry them from the call that creates them (short-form attribute fork); a replaced file is not
// asked. Judged by xfs_repair -n / xfs_db check, xfs_db (forkoff, the short-form attribute), and
// the kernel's getfattr through a read-only loop mount (v5; this kernel does not mount V4).
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeAsRoot, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/editor.js";
import { dbFields, FEATURE_SETS, fsCheck, mkfsImage, xfsDb } from "./space-helpers.js";

const label = (path: string, mode: number) =>
  `system_u:object_r:t${(mode >> 12).toString(8)}_${path.split("/").length}_t:s0`;

describeAsRoot(
  ["mkfs.xfs", "xfs_repair", "xfs_db", "getfattr", "losetup"],
  "XfsEditor: attributes at creation",
  () => {
    for (const name of ["v5", "v4"]) {
      it(`${name}: every created inode carries them`, async () => {
        const dir = await tempDir("xfs-create-xattrs-");
        const path = mkfsImage(dir, "x.img", FEATURE_SETS[name], 64);
        const dev = await FileDevice.open(path, { readOnly: false });
        const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        const asked: string[] = [];
        const createXattrs = (p: string, mode: number) => {
          asked.push(p);
          return { "security.selinux": new TextEncoder().encode(`${label(p, mode)}\0`) };
        };
        const bs = ed.ctx.geo.blockSize;
        const holey = new Uint8Array(60 * bs);
        for (let b = 0; b < 60; b += 2) holey.fill(b + 1, b * bs, b * bs + 10);
        try {
          await ed.mkdir("/a/b/c", { recursive: true, createXattrs });
          await ed.writeFile("/a/b/c/small", "hello", { createXattrs });
          await ed.writeFile("/a/holey", holey, { sparse: true, createXattrs });
          await ed.symlink("target", "/a/link", { createXattrs });
          await ed.symlink("t".repeat(300), "/a/longlink", { createXattrs });
          await ed.mknod("/a/pipe", "fifo", 0o600, 0, 0, { createXattrs });
          const before = asked.length;
          await ed.writeFile("/a/b/c/small", "replaced", { createXattrs });
          expect(asked.length).toBe(before);
        } finally {
          await ed.close();
          await dev.close();
        }
        const made: Array<[string, number]> = [
          ["/a", 0o040000],
          ["/a/b", 0o040000],
          ["/a/b/c", 0o040000],
          ["/a/b/c/small", 0o100000],
          ["/a/holey", 0o100000],
          ["/a/link", 0o120000],
          ["/a/longlink", 0o120000],
          ["/a/pipe", 0o010000],
        ];
        expect(asked.sort()).toEqual(made.map(([p]) => p).sort());
        const c = fsCheck(path);
        expect(c.output).toBe("");
        expect(c.clean).toBe(true);
        const holeyCore = dbFields(xfsDb(path, ["path /a/holey", "print core.format core.forkoff"]));
        expect(holeyCore.get("core.format")).toBe("3 (btree)");
        expect(Number(holeyCore.get("core.forkoff"))).toBeGreaterThan(0);
        for (const [p, mode] of made) {
          const f = dbFields(
            xfsDb(path, [`path ${p}`, "print a.sfattr.list[0].name a.sfattr.list[0].value"]),
          );
          expect([p, f.get("a.sfattr.list[0].name"), f.get("a.sfattr.list[0].value")]).toEqual([
            p,
            '"selinux"',
            `"${label(p, mode)}\\000"`,
          ]);
        }
        if (name === "v4") return; // this kernel has no V4 support (CONFIG_XFS_SUPPORT_V4): xfs_db only
        const mnt = join(dir, "mnt");
        mkdirSync(mnt);
        await withLoopMount(path, mnt, {}, async (m) => {
          for (const [p, mode] of made) {
            const v = execFileSync("getfattr", ["-h", "--only-values", "-n", "security.selinux", m + p], {
              encoding: "latin1",
            });
            expect([p, v.replace(/\0$/, "")]).toEqual([p, label(p, mode)]);
          }
        });
      });
    }
  },
);
