/**
 * An attribute fork in B+tree (bmbt) format: remote values set one by one with a one-block file
 * written between them, so each value's block lies apart from the last and the attribute fork's
 * mappings cannot merge. Once they outgrow the fork's literal area (two or three records beside
 * an empty data fork) the fork becomes a bmbt (`core.aformat = 3`); with more than one bmbt leaf
 * the in-inode root moves down a level. Removing attributes brings it back to extents format,
 * then removes the fork.
 *
 * Oracles: `xfs_repair -n` clean and `xfs_db check` after each stage, `xfs_db -r` fork format and
 * extent count, and as root the kernel (read-only loop mount, `getfattr -d -m -`) lists exactly
 * our attributes with their values (this kernel refuses v4: xfs_repair and xfs_db judge there).
 */
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, isRoot, mkfsXfs, withLoopMount, xfsDb, xfsRepairCheck } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/index.js";
import { imageDir, pseudoBytes, V4_ARGS } from "./images.js";

const run = promisify(execFile);

interface Case {
  name: string;
  args: string[];
  /** Remote values to set (each its own mapping): enough for more than one bmbt leaf where cheap. */
  count: number;
  /** Value size: remote (over 3/4 of a block), one block with the v5 header. */
  value: number;
  kernel: boolean;
}

const SETS: Case[] = [
  { name: "v5 4 KiB blocks", args: [], count: 40, value: 3500, kernel: true },
  // 1 KiB blocks: a bmbt leaf holds 59 records, so 140 mappings need three leaves and a node.
  {
    name: "v5 rmapbt 1 KiB blocks",
    args: ["-m", "rmapbt=1", "-b", "size=1024"],
    count: 140,
    value: 900,
    kernel: true,
  },
  {
    name: "v4 1 KiB blocks, 256 B inodes",
    args: [...V4_ARGS, "-b", "size=1024", "-i", "size=256"],
    count: 30,
    value: 900,
    kernel: false,
  },
];

async function dbField(img: string, ino: number, field: string): Promise<string> {
  const out = await xfsDb(img, [`inode ${ino}`, `print ${field}`]);
  const m = new RegExp(`^${field.replace(/\./g, "\\.")} = (.*)$`, "m").exec(out);
  if (!m) throw new Error(`xfs_db printed no ${field}: ${out}`);
  return m[1];
}

const attrValue = (i: number, size: number, gen: number) => pseudoBytes(size + (i % 7), 1000 * gen + i);

describeWithTools(["mkfs.xfs", "xfs_db", "xfs_repair"], "attribute fork as a bmbt", () => {
  for (const set of SETS) {
    it(`${set.name}: extents → bmbt → extents → no fork`, { timeout: 600_000 }, async () => {
      const dir = await imageDir();
      const img = join(dir, "attr-btree.img");
      await mkfsXfs(img, { size: 128 << 20, args: set.args, proto: { type: "dir", entries: {} } });
      const dev = await FileDevice.open(img);
      // The model: attribute name → value.
      const model = new Map<string, Buffer>();
      let ino = 0;
      const check = async (stage: string) => {
        await dev.flush();
        const r = await xfsRepairCheck(img);
        expect(r.clean, `${stage}: ${r.output}`).toBe(true);
        expect((await xfsDb(img, ["check"])).trim(), stage).toBe("");
        const ed = await XfsEditor.open(dev);
        const names = (await ed.fs.listxattr("/target")).sort();
        expect(names, stage).toEqual([...model.keys()].sort());
        for (const [n, v] of model)
          expect(Buffer.from(await ed.fs.getxattr("/target", n)), `${stage} ${n}`).toEqual(v);
        await ed.close();
        if (set.kernel && isRoot()) {
          const mnt = join(dir, "mnt");
          await mkdir(mnt, { recursive: true });
          await withLoopMount(img, mnt, {}, async (m) => {
            const { stdout } = await run("getfattr", ["-d", "-m", "-", "-e", "hex", join(m, "target")], {
              maxBuffer: 64 << 20,
            });
            const seen = new Map<string, string>();
            for (const line of stdout.split("\n")) {
              const eq = line.indexOf("=0x");
              if (eq > 0) seen.set(line.slice(0, eq), line.slice(eq + 3));
            }
            expect([...seen.keys()].sort(), stage).toEqual([...model.keys()].sort());
            for (const [n, v] of model) expect(seen.get(n), `${stage} kernel ${n}`).toBe(v.toString("hex"));
          });
        }
      };
      try {
        const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        await ed.writeFile("/target", "attributes live here\n");
        ino = (await ed.fs.stat("/target")).ino;
        await ed.mkdir("/spacers");
        for (let i = 0; i < set.count; i++) {
          const name = `user.v${String(i).padStart(4, "0")}`;
          const v = attrValue(i, set.value, 0);
          await ed.setxattr("/target", name, v);
          model.set(name, v);
          // A one-block file allocated next: the next value's block is not adjacent to this one.
          await ed.writeFile(`/spacers/s${i}`, pseudoBytes(100, i));
        }
        await ed.close();
        await check("grown");
        expect(await dbField(img, ino, "core.aformat")).toBe("3 (btree)");
        const grown = Number(await dbField(img, ino, "core.naextents"));
        expect(grown).toBeGreaterThan(set.count / 2);
        const level = Number(await dbField(img, ino, "a.bmbt.level"));
        if (set.count > 120) expect(level).toBeGreaterThanOrEqual(2);

        // Replace every third value (new remote blocks, old ones freed) and drop every fifth.
        const ed2 = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        for (let i = 0; i < set.count; i++) {
          const name = `user.v${String(i).padStart(4, "0")}`;
          if (i % 5 === 0) {
            await ed2.removexattr("/target", name);
            model.delete(name);
          } else if (i % 3 === 0) {
            const v = attrValue(i, set.value, 1);
            await ed2.setxattr("/target", name, v);
            model.set(name, v);
          }
        }
        await ed2.close();
        await check("changed");
        expect(await dbField(img, ino, "core.aformat")).toBe("3 (btree)");

        // Shrink until the mappings fit the inode again: extents format.
        const ed3 = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        const left = [...model.keys()].sort();
        for (const name of left.slice(1)) {
          await ed3.removexattr("/target", name);
          model.delete(name);
        }
        await ed3.close();
        await check("shrunk");
        expect(await dbField(img, ino, "core.aformat")).toBe("2 (extents)");

        // The last one goes: no attribute fork.
        const ed4 = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        await ed4.removexattr("/target", left[0]);
        model.delete(left[0]);
        await ed4.close();
        await check("emptied");
        expect(await dbField(img, ino, "core.forkoff")).toBe("0");
      } finally {
        await dev.close();
      }
    });
  }
});
