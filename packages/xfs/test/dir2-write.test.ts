/**
 * Short-form and block directory writes through XfsEditor + dir2Writer: names added until the
 * directory turns into a block and nearly fills it, then removed until it is short-form again.
 * Oracles: xfs_repair -n, xfs_db ls (names, inode numbers, types, hash check), and as root the
 * kernel's readdir through a read-only mount.
 */
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, isRoot, mkfsXfs, withLoopMount, xfsDb, xfsRepairCheck } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { dir2Writer, XfsEditor } from "../src/index.js";
import { imageDir, V4_ARGS } from "./images.js";

const SETS: [string, string[]][] = [
  ["v5-rmap", ["-m", "rmapbt=1"]],
  ["v5", []],
  ["v4", V4_ARGS],
  ["v5-1k", ["-b", "size=1024"]],
  ["v5-2k-inodes", ["-i", "size=2048"]],
  ["v4-ci", [...V4_ARGS, "-n", "version=ci"]],
];

async function dbNames(img: string, dir: string): Promise<string[]> {
  const out = await xfsDb(img, [`ls ${dir}`]);
  const names: string[] = [];
  for (const line of out.split("\n")) {
    const m = /^\d+\s+(\d+)\s+(\w+)\s+0x[0-9a-f]+\s+\d+\s+(.*) \((good|bad)\)$/.exec(line.trim());
    if (!m) continue;
    expect(m[4], line).toBe("good");
    if (m[3] !== "." && m[3] !== "..") names.push(m[3]);
  }
  return names.sort();
}

async function kernelNames(img: string, dir: string, sub: string): Promise<string[] | undefined> {
  if (!isRoot()) return undefined;
  const mnt = join(dir, "mnt");
  await mkdir(mnt, { recursive: true });
  try {
    return await withLoopMount(img, mnt, {}, async (m) => (await readdir(join(m, sub))).sort());
  } catch (e) {
    // This kernel refuses v4 and ASCII-ci: xfs_db is the read-back oracle there.
    if (String(e).includes("wrong fs type")) return undefined;
    throw e;
  }
}

describeWithTools(["mkfs.xfs", "xfs_db", "xfs_repair"], "dir2 writes (short form and block)", () => {
  for (const [name, args] of SETS) {
    it(`${name}: sf → block → leaf, adds and removes, clean at every stage`, async () => {
      const dir = await imageDir();
      const img = join(dir, `${name}.img`);
      await mkfsXfs(img, {
        size: 64 << 20,
        args,
        proto: { type: "dir", entries: { d: { type: "dir", entries: {} } } },
      });
      const dev = await FileDevice.open(img);
      const expected = new Set<string>();
      const check = async (form: string) => {
        await dev.flush();
        const r = await xfsRepairCheck(img);
        expect(r.output, r.output).toMatch(/No modify flag set/);
        expect(r.clean, r.output).toBe(true);
        expect(await dbNames(img, "/d")).toEqual([...expected].sort());
        const k = await kernelNames(img, dir, "d");
        if (k) expect(k).toEqual([...expected].sort());
        const ed2 = await XfsEditor.open(dev, { directories: dir2Writer });
        expect(await ed2.fs.dirForm(await ed2.fs.readInode((await ed2.fs.stat("/d")).ino))).toBe(form);
      };
      try {
        const ed = await XfsEditor.open(dev, { directories: dir2Writer, timestamp: 1_700_000_000 });
        for (let i = 0; i < 4; i++) {
          await ed.writeFile(`/d/f${i}`, `file ${i}\n`);
          expect.soft(ed.fs.warnings).toEqual([]);
          expected.add(`f${i}`);
        }
        await ed.close();
        await check("shortform");
        let ed2 = await XfsEditor.open(dev, { directories: dir2Writer, timestamp: 1_700_000_000 });
        let i = 4;
        // Grow into a block, then past it into leaf form (block → data block + leaf1).
        let form = "shortform";
        let extra = 0;
        while (extra < 40) {
          const n = `entry-with-a-name-${i}`;
          await ed2.writeFile(`/d/${n}`, "x");
          expected.add(n);
          i++;
          if (form !== "leaf" && i % 10 === 0) {
            form = await ed2.fs.dirForm(await ed2.fs.readInode((await ed2.fs.stat("/d")).ino));
            if (form === "block") {
              await ed2.close();
              await check("block");
              ed2 = await XfsEditor.open(dev, { directories: dir2Writer, timestamp: 1_700_000_000 });
            }
          }
          if (form === "leaf") extra++;
          expect(i).toBeLessThan(5000);
        }
        await ed2.close();
        expect(expected.size).toBeGreaterThan(20);
        await check("leaf");

        // Remove from the middle and the ends, then all but a few.
        const ed3 = await XfsEditor.open(dev, { directories: dir2Writer, timestamp: 1_700_000_000 });
        const names = [...expected];
        for (const n of [names[1], names[names.length - 1], names[Math.floor(names.length / 2)]]) {
          await ed3.unlink(`/d/${n}`);
          expected.delete(n);
        }
        await ed3.close();
        await check("leaf");
        const ed4 = await XfsEditor.open(dev, { directories: dir2Writer, timestamp: 1_700_000_000 });
        await ed4.writeFile("/d/again", "y");
        expected.add("again");
        await ed4.close();
        await check("leaf");
        const ed5 = await XfsEditor.open(dev, { directories: dir2Writer });
        for (const n of expected) expect((await ed5.readFile(`/d/${n}`)).length).toBeGreaterThan(0);
        await ed5.close();
      } finally {
        await dev.close();
      }
    });
  }
});

describeWithTools(["mkfs.xfs", "xfs_db", "xfs_repair"], "dir2 writes (leaf and node)", () => {
  for (const [name, args] of SETS) {
    it(`${name}: names added to and removed from leaf and node directories made by mkfs`, async () => {
      const dir = await imageDir();
      const img = join(dir, `${name}.img`);
      const many = (n: number, prefix: string) => {
        const e: Record<string, { type: "dir"; entries: Record<string, never> }> = {};
        for (let i = 0; i < n; i++) e[`${prefix}${i}`] = { type: "dir", entries: {} };
        return e;
      };
      await mkfsXfs(img, {
        size: 96 << 20,
        args,
        proto: {
          type: "dir",
          entries: {
            leaf: { type: "dir", entries: many(300, "leaf-form-entry-") },
            node: { type: "dir", entries: many(2000, "node-form-directory-entry-") },
          },
        },
      });
      const dev = await FileDevice.open(img);
      try {
        const ed = await XfsEditor.open(dev, { directories: dir2Writer, timestamp: 1_700_000_000 });
        const forms: string[] = [];
        for (const d of ["leaf", "node"])
          forms.push(await ed.fs.dirForm(await ed.fs.readInode((await ed.fs.stat(`/${d}`)).ino)));
        expect(forms).toEqual(["leaf", "node"]);
        const expected = new Map<string, Set<string>>();
        for (const d of ["leaf", "node"]) expected.set(d, new Set(await ed.fs.readdir(`/${d}`)));
        // Directory blocks in the leaf section (leaf1/leafn and dabtree nodes).
        const leafBlocks = async (d: string) => {
          const g = ed.fs.geometry;
          const lo = 2 ** 35 / g.blockSize;
          const exts = await ed.fs.forkExtents(await ed.fs.readInode((await ed.fs.stat(`/${d}`)).ino));
          return exts
            .filter((e) => e.startoff >= lo && e.startoff < 2 * lo)
            .reduce((n, e) => n + e.blockcount / g.dirBlockFsbs, 0);
        };
        const before = [await leafBlocks("leaf"), await leafBlocks("node")];
        for (let i = 0; i < 600; i++) {
          for (const d of ["leaf", "node"]) {
            const n = `added-${d}-${i}-${"z".repeat(i % 40)}`;
            await ed.writeFile(`/${d}/${n}`, `${i}`);
            expected.get(d)?.add(n);
          }
        }
        for (const d of ["leaf", "node"]) {
          for (const n of [...(expected.get(d) ?? [])].filter((_, k) => k % 13 === 5)) {
            if (n.startsWith("added-")) await ed.unlink(`/${d}/${n}`);
            else continue;
            expected.get(d)?.delete(n);
          }
        }
        // leaf1 → node (free index, leafn), then the root leafn split under a dabtree root; the
        // node directory's leafn blocks split too.
        expect(await ed.fs.dirForm(await ed.fs.readInode((await ed.fs.stat("/leaf")).ino))).toBe("node");
        expect(await leafBlocks("leaf")).toBeGreaterThanOrEqual(before[0] + 2);
        expect(await leafBlocks("node")).toBeGreaterThan(before[1]);
        await ed.close();
        await dev.flush();
        const r = await xfsRepairCheck(img);
        expect(r.clean, r.output).toBe(true);
        const verify = async () => {
          for (const d of ["leaf", "node"]) {
            const want = [...(expected.get(d) ?? [])].sort();
            expect(await dbNames(img, `/${d}`)).toEqual(want);
            const k = await kernelNames(img, dir, d);
            if (k) expect(k).toEqual(want);
          }
        };
        await verify();
        // Remove names until data blocks become empty: they are unmapped and freed.
        const ed2 = await XfsEditor.open(dev, { directories: dir2Writer, timestamp: 1_700_000_000 });
        const dataBlocks = async (d: string) => {
          const g = ed2.fs.geometry;
          const exts = await ed2.fs.forkExtents(await ed2.fs.readInode((await ed2.fs.stat(`/${d}`)).ino));
          return exts.filter((e) => e.startoff < 2 ** 35 / g.blockSize).reduce((n, e) => n + e.blockcount, 0);
        };
        const full = [await dataBlocks("leaf"), await dataBlocks("node")];
        for (const d of ["leaf", "node"]) {
          const names = [...(expected.get(d) ?? [])];
          // Every added name (they filled new data blocks at the end) and a few originals.
          for (const n of names.filter((x, k) => x.startsWith("added-") || k % 97 === 3)) {
            if (n.startsWith("added-")) await ed2.unlink(`/${d}/${n}`);
            else await ed2.rmdir(`/${d}/${n}`);
            expected.get(d)?.delete(n);
          }
        }
        expect(await dataBlocks("leaf")).toBeLessThan(full[0]);
        expect(await dataBlocks("node")).toBeLessThan(full[1]);
        await ed2.close();
        await dev.flush();
        const r2 = await xfsRepairCheck(img);
        expect(r2.clean, r2.output).toBe(true);
        await verify();
      } finally {
        await dev.close();
      }
    });
  }
});
