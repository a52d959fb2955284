// Files as a RHEL-family guest has them: every inode carries a security.selinux attribute (a
// short-form attribute fork, so the data fork is smaller), some carry attributes big enough to
// live in blocks (counted in the inode's block count). The kernel writes them; the editor then
// replaces, grows into a bmbt, and truncates the contents. The attributes must come through
// untouched (kernel getfattr), the contents read back, and xfs_repair -n / xfs_db check stay clean.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeAsRoot, describeWithTools, isRoot, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/editor.js";
import { dbFields, FEATURE_SETS, fsCheck, mkfsImage, xfsDb } from "./space-helpers.js";

const LABEL = "system_u:object_r:etc_t:s0";

function getfattr(file: string, name: string): string {
  return execFileSync("getfattr", ["--only-values", "-n", name, file], { encoding: "latin1" });
}

describeAsRoot(
  ["mkfs.xfs", "xfs_repair", "xfs_db", "setfattr", "getfattr", "losetup"],
  "XfsEditor on files with attribute forks",
  () => {
    for (const name of ["v5", "v5-1k"]) {
      it(`${name}: contents change, SELinux labels and block attributes stay`, async () => {
        const dir = await tempDir("xfs-xattr-files-");
        const path = mkfsImage(dir, "x.img", FEATURE_SETS[name], 64);
        const mnt = join(dir, "mnt");
        mkdirSync(mnt);
        const bigValue = "v".repeat(3000);
        await withLoopMount(path, mnt, { rw: true }, async (m) => {
          for (let i = 0; i < 4; i++) {
            execFileSync("sh", ["-c", `printf 'original %d' ${i} > ${m}/f${i}`]);
            execFileSync("setfattr", ["-n", "security.selinux", "-v", LABEL, join(m, `f${i}`)]);
          }
          execFileSync("setfattr", ["-n", "user.big", "-v", bigValue, join(m, "f3")]);
        });
        const forkoff = Number(dbFields(xfsDb(path, ["path /f0", "print core.forkoff"])).get("core.forkoff"));
        expect(forkoff).toBeGreaterThan(0);
        const dev = await FileDevice.open(path, { readOnly: false });
        const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        const bs = ed.ctx.geo.blockSize;
        const holey = new Uint8Array(120 * bs);
        for (let b = 0; b < 120; b += 2) holey.fill(b + 1, b * bs, b * bs + 10);
        try {
          await ed.writeFile("/f0", holey, { sparse: true });
          await ed.writeFile("/f1", new Uint8Array(5 * bs + 7).fill(0x41));
          await ed.truncate("/f2", 3);
          await ed.writeFile("/f3", holey, { sparse: true });
          expect(
            new TextDecoder().decode(await ed.getxattr("/f0", "security.selinux")).replace(/\0$/, ""),
          ).toBe(LABEL);
        } finally {
          await ed.close();
          await dev.close();
        }
        const f0 = dbFields(xfsDb(path, ["path /f0", "print core.format core.forkoff core.nextents"]));
        expect(f0.get("core.format")).toBe("3 (btree)");
        expect(Number(f0.get("core.forkoff"))).toBe(forkoff);
        const c = fsCheck(path);
        expect(c.output).toBe("");
        expect(c.clean).toBe(true);
        await withLoopMount(path, mnt, {}, async (m) => {
          for (let i = 0; i < 4; i++)
            expect(getfattr(join(m, `f${i}`), "security.selinux").replace(/\0$/, "")).toBe(LABEL);
          expect(getfattr(join(m, "f3"), "user.big")).toBe(bigValue);
          expect(Buffer.from(readFileSync(join(m, "f0"))).equals(Buffer.from(holey))).toBe(true);
          expect(readFileSync(join(m, "f1")).length).toBe(5 * bs + 7);
          expect(readFileSync(join(m, "f2"), "utf8")).toBe("ori");
          expect(Buffer.from(readFileSync(join(m, "f3"))).equals(Buffer.from(holey))).toBe(true);
        });
      });
    }
  },
);

describeWithTools(
  ["mkfs.xfs", "xfs_repair", "xfs_db"],
  "XfsEditor: setxattr/removexattr (R's attr-write)",
  () => {
    for (const name of ["v5", "v4"]) {
      it(`${name}: labels on new files, a leaf-sized attribute, removal; data forks keep working`, async () => {
        const dir = await tempDir("xfs-setxattr-");
        const path = mkfsImage(dir, "a.img", FEATURE_SETS[name], 64);
        const dev = await FileDevice.open(path, { readOnly: false });
        const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        const bs = ed.ctx.geo.blockSize;
        try {
          await ed.mkdir("/etc");
          for (let i = 0; i < 5; i++) {
            await ed.writeFile(`/etc/f${i}`, new Uint8Array((i + 1) * bs).fill(i));
            await ed.setxattr(`/etc/f${i}`, "security.selinux", `${LABEL}\0`);
          }
          await ed.setxattr("/etc", "security.selinux", `${LABEL}\0`);
          await ed.setxattr("/etc/f1", "user.big", "b".repeat(400));
          await ed.removexattr("/etc/f2", "security.selinux");
          await expect(ed.removexattr("/etc/f2", "security.selinux")).rejects.toMatchObject({
            code: "ENODATA",
          });
          // Content written after the attribute fork exists (smaller data fork, bmbt of holes).
          const holey = new Uint8Array(80 * bs);
          for (let b = 0; b < 80; b += 2) holey[b * bs] = 9;
          await ed.writeFile("/etc/f0", holey, { sparse: true });
          expect(new TextDecoder().decode(await ed.getxattr("/etc/f0", "security.selinux"))).toBe(
            `${LABEL}\0`,
          );
          expect(Buffer.from(await ed.readFile("/etc/f0")).equals(Buffer.from(holey))).toBe(true);
          expect(await ed.listxattr("/etc/f2")).toEqual([]);
        } finally {
          await ed.close();
          await dev.close();
        }
        const c = fsCheck(path);
        expect(c.output).toBe("");
        expect(c.clean).toBe(true);
        if (isRoot() && name === "v5") {
          const mnt = join(dir, "mnt");
          mkdirSync(mnt);
          await withLoopMount(path, mnt, {}, async (m) => {
            expect(getfattr(join(m, "etc/f3"), "security.selinux")).toBe(`${LABEL}\0`);
            expect(getfattr(join(m, "etc/f1"), "user.big")).toBe("b".repeat(400));
            expect(readFileSync(join(m, "etc/f4")).length).toBe(5 * bs);
          });
        }
      });
    }
  },
);
