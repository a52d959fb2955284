/**
 * Big directories: 100,000 names (1 to ~190 bytes) added by the editor's directory writer grow
 * a directory to node form with a dabtree over hundreds of leafn blocks and several free-index
 * blocks; a writer with tiny dabtree nodes (valid: the format only bounds the maximum) makes
 * the tree four levels deep with a few thousand names. Then the directory shrinks back through
 * leaf and block to short form with every block freed.
 *
 * Oracles: `xfs_repair -n` clean after every stage, `xfs_db -r` for the fork format, the dabtree
 * root's level and the free-block counter, `xfs_db ls` names (with its hash check) for the
 * smaller directories, and as root the kernel's readdir through a read-only loop mount (this
 * kernel refuses v4: there xfs_db is the read-back oracle). Our reader must resolve random
 * names with a handful of device reads each (the hash index, not a scan).
 *
 * Names go in through `ed.link` for the first few hundred (the public call, through every form
 * change), then through the editor's DirectoryWriter in transactions of 1,000 names (a call per
 * name costs the per-call path lookups and commit work, not the directory code tested here).
 */
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { CountingDevice, FileDevice } from "@imgpatch/disk";
import {
  describeWithTools,
  fullSuite,
  isRoot,
  mkfsXfs,
  withLoopMount,
  xfsDb,
  xfsRepairCheck,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { type DirectoryWriter, dir2Writer, dir2WriterWith, XfsEditor, XfsFs } from "../src/index.js";
import { storeInode } from "../src/inode-create.js";
import { imageDir, V4_ARGS } from "./images.js";

const enc = new TextEncoder();
const PAD = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(6);

/** Unique names of varied length: base-36 number, and for 4 in 5 a dash and up to 185 more. */
function nameOf(i: number): string {
  return i % 5 === 0 ? i.toString(36) : `${i.toString(36)}-${PAD.slice(0, (i * 37) % 186)}`;
}

function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x;
  };
}

/** Adds or removes `names` in /d (hard links to /f) in editor transactions of `batch` names. */
async function bulk(ed: XfsEditor, names: string[], add: boolean, batch = 1000): Promise<void> {
  const w = ed.directoryWriter;
  for (let i = 0; i < names.length; i += batch) {
    ed.check();
    const dir = await ed.inodeOf("/d", false);
    const f = await ed.inodeOf("/f", false);
    const part = names.slice(i, i + batch);
    for (const n of part) {
      if (add) await w.addEntry(ed, dir, enc.encode(n), f.ino, f.mode);
      else await w.removeEntry(ed, dir, enc.encode(n));
    }
    f.nlink += add ? part.length : -part.length;
    await storeInode(ed.ctx, dir);
    await storeInode(ed.ctx, f);
    await ed.finish();
  }
}

async function dbField(img: string, cmds: string[], field: string): Promise<string> {
  const out = await xfsDb(img, [...cmds, `print ${field}`]);
  const m = new RegExp(`^${field.replace(/\./g, "\\.")} = (.*)$`, "m").exec(out);
  if (!m) throw new Error(`xfs_db printed no ${field}: ${out}`);
  return m[1];
}

async function dbNames(img: string): Promise<string[]> {
  const out = await xfsDb(img, ["ls /d"]);
  const names: string[] = [];
  for (const line of out.split("\n")) {
    const m = /^\d+\s+\d+\s+\w+\s+0x[0-9a-f]+\s+\d+\s+(.*) \((good|bad)\)$/.exec(line.trim());
    if (!m) continue;
    expect(m[2], line).toBe("good");
    if (m[1] !== "." && m[1] !== "..") names.push(m[1]);
  }
  return names.sort();
}

/** The kernel's listing of /d, or undefined where it cannot run (not root, v4 refused). */
async function kernelNames(img: string, dir: string): Promise<string[] | undefined> {
  if (!isRoot()) return undefined;
  const mnt = join(dir, "mnt");
  await mkdir(mnt, { recursive: true });
  try {
    return await withLoopMount(img, mnt, {}, async (m) => (await readdir(join(m, "d"))).sort());
  } catch (e) {
    if (String(e).includes("wrong fs type")) return undefined;
    throw e;
  }
}

interface Case {
  name: string;
  args: string[];
  count: number;
  writer: DirectoryWriter;
  /** Lowest dabtree root level expected at the peak. */
  level: number;
  /** Free-index blocks expected at the peak (at least). */
  freeBlocks: number;
  /** Shrink back to short form as well. */
  shrink: boolean;
  kernel: boolean;
}

const FULL = fullSuite();
const CASES: Case[] = [
  // 4 KiB directory blocks: ~300 leafn under a level-1 root, 3 free-index blocks (2,016 bests each).
  {
    name: "v5 rmapbt, 4 KiB dir blocks, 100,000 names",
    args: ["-m", "rmapbt=1"],
    count: 100_000,
    writer: dir2Writer,
    level: 1,
    freeBlocks: 2,
    shrink: FULL,
    kernel: true,
  },
  // Nodes of at most 4 entries: a dabtree three or four levels deep (4 is the format's deepest).
  {
    name: "v5, nodes of 4 entries, 10,000 names",
    args: [],
    count: 10_000,
    writer: dir2WriterWith({ nodeEntries: 4 }),
    level: 3,
    freeBlocks: 1,
    shrink: true,
    kernel: true,
  },
  {
    name: "v4, nodes of 4 entries, 10,000 names",
    args: V4_ARGS,
    count: 10_000,
    writer: dir2WriterWith({ nodeEntries: 4 }),
    level: 3,
    freeBlocks: 1,
    shrink: true,
    kernel: false,
  },
  ...(FULL
    ? [
        {
          name: "v5, 64 KiB dir blocks, 100,000 names",
          args: ["-n", "size=65536"],
          count: 100_000,
          writer: dir2Writer,
          level: 1,
          freeBlocks: 1,
          shrink: true,
          kernel: true,
        },
        {
          name: "v4, 4 KiB dir blocks, 100,000 names",
          args: V4_ARGS,
          count: 100_000,
          writer: dir2Writer,
          level: 1,
          freeBlocks: 2,
          shrink: true,
          kernel: false,
        },
      ]
    : []),
];

describeWithTools(["mkfs.xfs", "xfs_db", "xfs_repair"], "dir2: big directories", () => {
  for (const c of CASES) {
    it(
      `${c.name}: grows to node form, reads back through the hash index, shrinks to short form`,
      async () => {
        const dir = await imageDir();
        const img = join(dir, "big.img");
        await mkfsXfs(img, {
          size: 1 << 30,
          args: c.args,
          proto: { type: "dir", entries: { d: { type: "dir", entries: {} } } },
        });
        const fdblocks0 = await dbField(img, ["sb 0"], "fdblocks");
        const names = Array.from({ length: c.count }, (_, i) => nameOf(i));
        const dev = await FileDevice.open(img);
        let ino = 0;
        try {
          const ed = await XfsEditor.open(dev, { directories: c.writer, timestamp: 1_700_000_000 });
          const g0 = ed.fs.geometry;
          await ed.writeFile("/f", "x");
          // The first names through the public call: short form → block → leaf → node.
          const viaLink = 600;
          for (const n of names.slice(0, viaLink)) await ed.link("/f", `/d/${n}`);
          // (4 KiB directory blocks are in node form by now; 64 KiB ones in block or leaf form.)
          const early = await ed.fs.dirForm(await ed.fs.readInode((await ed.fs.stat("/d")).ino));
          expect(g0.dirBlockSize > 4096 ? ["block", "leaf"] : ["node"]).toContain(early);
          await bulk(ed, names.slice(viaLink), true);
          expect(await ed.fs.dirForm(await ed.fs.readInode((await ed.fs.stat("/d")).ino))).toBe("node");
          await expect(ed.link("/f", `/d/${names[c.count >> 1]}`)).rejects.toMatchObject({ code: "EEXIST" });
          ino = (await ed.fs.stat("/d")).ino;
          await ed.close();
          await dev.flush();

          const r = await xfsRepairCheck(img);
          expect(r.clean, r.output).toBe(true);
          const at = [`inode ${ino}`];
          expect(await dbField(img, at, "core.format")).toBe("3 (btree)");
          const g = (await XfsFs.open(dev)).geometry;
          const leafFsb = 2 ** 35 / g.blockSize;
          const level = Number(await dbField(img, [...at, `dblock ${leafFsb}`], "nhdr.level"));
          expect(level).toBeGreaterThanOrEqual(c.level);
          expect(level).toBeLessThanOrEqual(4);

          // Our reader: random present names and absent ones, a few reads each.
          const counted = new CountingDevice(dev);
          const fs = await XfsFs.open(counted);
          const exts = await fs.forkExtents(await fs.readInode(ino));
          const free = exts
            .filter((e) => e.startoff >= 2 ** 36 / g.blockSize)
            .reduce((n, e) => n + e.blockcount / g.dirBlockFsbs, 0);
          expect(free).toBeGreaterThanOrEqual(c.freeBlocks);
          const dirBlocks = exts.reduce((n, e) => n + e.blockcount / g.dirBlockFsbs, 0);
          await fs.stat(`/d/${names[0]}`);
          const rnd = lcg(c.count);
          const r0 = counted.counts.reads;
          const picks = 300;
          for (let k = 0; k < picks; k++) {
            const n = names[rnd() % c.count];
            expect((await fs.lstat(`/d/${n}`)).nlink).toBe(c.count + 1);
          }
          const perName = (counted.counts.reads - r0) / picks;
          expect(perName).toBeLessThan(8);
          expect(dirBlocks).toBeGreaterThan(30 * perName);
          for (let k = 0; k < 20; k++)
            await expect(fs.lstat(`/d/${nameOf(c.count + k)}`)).rejects.toMatchObject({ code: "ENOENT" });

          const want = [...names].sort();
          const k = c.kernel ? await kernelNames(img, dir) : undefined;
          if (k) expect(k).toEqual(want);
          if (!k && c.count <= 20_000) expect(await dbNames(img)).toEqual(want);
          if (!c.shrink) return;

          // Shrink: remove in random order, checking the forms on the way down.
          const order = [...names];
          const rnd2 = lcg(7);
          for (let i = order.length - 1; i > 0; i--) {
            const j = rnd2() % (i + 1);
            [order[i], order[j]] = [order[j], order[i]];
          }
          // The first dozen names (in the first data block) stay, too long together for short
          // form: as the kernel, a leaf directory becomes a block directory once its other data
          // blocks are gone, and short form once the names fit the inode.
          const keep = names.slice(0, 12);
          const gone = order.filter((n) => !keep.includes(n));
          const stages = [0.9, 0.99, 1];
          const forms = new Set<string>();
          let done = 0;
          for (const s of stages) {
            const upto = Math.floor(gone.length * s);
            const part = gone.slice(done, upto);
            const ed2 = await XfsEditor.open(dev, { directories: c.writer, timestamp: 1_700_000_000 });
            // The last few hundred through the public call: node → leaf → block → short form.
            const tail = s === 1 ? part.splice(Math.max(0, part.length - 300)) : [];
            await bulk(ed2, part, false, 500);
            for (const n of tail) {
              await ed2.unlink(`/d/${n}`);
              forms.add(await ed2.fs.dirForm(await ed2.fs.readInode(ino)));
            }
            forms.add(await ed2.fs.dirForm(await ed2.fs.readInode(ino)));
            await ed2.close();
            await dev.flush();
            done = upto;
            const r2 = await xfsRepairCheck(img);
            expect(r2.clean, `after removing to ${s}: ${r2.output}`).toBe(true);
          }
          expect([...forms]).toEqual(["node", "leaf", "block"]);
          expect(await dbNames(img)).toEqual([...keep].sort());
          const last = [names[5], names[10]];
          const ed3 = await XfsEditor.open(dev, { directories: c.writer, timestamp: 1_700_000_000 });
          for (const n of keep.filter((x) => !last.includes(x))) await ed3.unlink(`/d/${n}`);
          expect(await ed3.fs.dirForm(await ed3.fs.readInode(ino))).toBe("shortform");
          await ed3.close();
          await dev.flush();
          const r3 = await xfsRepairCheck(img);
          expect(r3.clean, r3.output).toBe(true);
          expect(await dbField(img, [`inode ${ino}`], "core.format")).toBe("1 (local)");
          expect(await dbField(img, [`inode ${ino}`], "core.nblocks")).toBe("0");
          expect(await dbNames(img)).toEqual([...last].sort());
          const k2 = c.kernel ? await kernelNames(img, dir) : undefined;
          if (k2) expect(k2).toEqual([...last].sort());
          // No block is left unowned or doubly owned (xfs_db check sees leaks without rmapbt too),
          // and the free space is back to where it was, give or take the space btrees' shape.
          expect((await xfsDb(img, ["check"])).trim()).toBe("");
          const fdblocks = Number(await dbField(img, ["sb 0"], "fdblocks"));
          expect(Math.abs(fdblocks - (Number(fdblocks0) - 1))).toBeLessThan(16);
        } finally {
          await dev.close();
        }
      },
      FULL ? 1_800_000 : 600_000,
    );
  }
});
