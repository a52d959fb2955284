/**
 * fast-check: random sequences of name adds, removes and renames in one directory, driving it
 * through short form, block, leaf and node and back down (emptied data blocks freed), then every
 * name but one removed: the directory must be back in short form. After each sequence the
 * directory must list exactly the model's names in our reader and in `xfs_db ls` (with its hash
 * check), and `xfs_repair -n` must be clean. ASCII-ci: names equal ignoring ASCII case are one
 * name. The "deep" sets use dabtree nodes of at most 3 entries, so the sequences split nodes up
 * to a multi-level tree and collapse it again.
 */
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, mkfsXfs, xfsDb, xfsRepairCheck } from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { type DirectoryWriter, dir2Writer, dir2WriterWith, XfsEditor } from "../src/index.js";
import { imageDir, V4_ARGS } from "./images.js";

const RUNS = Number(process.env.XFS_DIR_PROPERTY_RUNS ?? 4);
const SETS: [string, string[], DirectoryWriter][] = [
  ["v5", [], dir2Writer],
  ["v4-ci", [...V4_ARGS, "-n", "version=ci"], dir2Writer],
  ["v5-deep", ["-m", "rmapbt=1"], dir2WriterWith({ nodeEntries: 6, leafEntries: 16 })],
  ["v4-deep", V4_ARGS, dir2WriterWith({ nodeEntries: 6, leafEntries: 16 })],
];

type Op = { add: boolean; name: string; pick: number };
/** Renames come from removes: one in three moves the victim to the op's name instead. */
const isRename = (op: Op) => op.pick % 3 === 1;
const nameArb = fc
  .tuple(
    fc.constantFrom("a", "B", "c", "x-", "Long-Name-Part-", "0"),
    fc.nat({ max: 5000 }),
    fc.nat({ max: 40 }),
  )
  .map(([p, n, pad]) => `${p}${n}${"q".repeat(pad)}`);
const opsArb = fc.array(
  fc.record({ add: fc.boolean(), name: nameArb, pick: fc.nat() }).map((o: Op) => o),
  { minLength: 900, maxLength: 1500, size: "max" },
);

/** The dabtree root's level in /d (0: no dabtree node at the leaf section's start). */
async function rootLevel(ed: XfsEditor): Promise<number> {
  const g = ed.fs.geometry;
  const exts = await ed.fs.forkExtents(await ed.fs.readInode((await ed.fs.stat("/d")).ino));
  const leafFsb = 2 ** 35 / g.blockSize;
  const e = exts.find((x) => x.startoff <= leafFsb && leafFsb < x.startoff + x.blockcount);
  if (!e) return 0;
  const b = await ed.device.read(g.fsbToByte(e.startblock + leafFsb - e.startoff), 64);
  const magic = (b[8] << 8) | b[9];
  if (magic !== 0xfebe && magic !== 0x3ebe) return 0;
  const at = g.v5 ? 58 : 14;
  return (b[at] << 8) | b[at + 1];
}

describeWithTools(["mkfs.xfs", "xfs_db", "xfs_repair"], "dir2 write property", () => {
  for (const [set, args, writer] of SETS) {
    it(
      `${set}: random add/remove/rename sequences keep the directory exact and xfs_repair clean, down to short form`,
      async () => {
        const dir = await imageDir();
        let run = 0;
        const forms = new Set<string>();
        const levels: number[] = [];
        await fc.assert(
          fc.asyncProperty(opsArb, fc.nat(), async (ops, split) => {
            // Mostly adds for the first two thirds or more, mostly removes after (grow, then shrink).
            const splitAt = Math.floor((ops.length * 2) / 3) + (split % Math.ceil(ops.length / 3));
            const img = join(dir, `${set}-${run++}.img`);
            await mkfsXfs(img, {
              size: 64 << 20,
              args,
              proto: { type: "dir", entries: { d: { type: "dir", entries: {} } } },
            });
            const dev = await FileDevice.open(img);
            const ci = set.includes("ci");
            const key = (n: string) => (ci ? n.toLowerCase() : n);
            const model = new Map<string, string>();
            try {
              const ed = await XfsEditor.open(dev, { directories: writer, timestamp: 1_700_000_000 });
              for (const [i, op] of ops.entries()) {
                if (i === splitAt) {
                  forms.add(await ed.fs.dirForm(await ed.fs.readInode((await ed.fs.stat("/d")).ino)));
                  levels.push(await rootLevel(ed));
                }
                const adding = i < splitAt ? op.add || op.pick % 8 !== 0 : op.add && op.pick % 4 === 0;
                if (adding) {
                  await ed.writeFile(`/d/${op.name}`, "x");
                  if (!model.has(key(op.name))) model.set(key(op.name), op.name);
                } else if (model.size > 0) {
                  const names = [...model.values()];
                  const victim = names[op.pick % names.length];
                  if (isRename(op) && !model.has(key(op.name))) {
                    await ed.rename(`/d/${victim}`, `/d/${op.name}`);
                    model.delete(key(victim));
                    model.set(key(op.name), op.name);
                  } else {
                    await ed.unlink(`/d/${victim}`);
                    model.delete(key(victim));
                  }
                }
              }
              await ed.close();
              await dev.flush();
              const verify = async () => {
                const want = [...model.values()].sort();
                const ed2 = await XfsEditor.open(dev, { directories: writer });
                expect((await ed2.readdir("/d")).sort()).toEqual(want);
                forms.add(await ed2.fs.dirForm(await ed2.fs.readInode((await ed2.fs.stat("/d")).ino)));
                await ed2.close();
                const ls = await xfsDb(img, ["ls /d"]);
                const listed: string[] = [];
                for (const line of ls.split("\n")) {
                  const m = /^\d+\s+\d+\s+\w+\s+0x[0-9a-f]+\s+\d+\s+(.*) \((good|bad)\)$/.exec(line.trim());
                  if (!m) continue;
                  expect(m[2], line).toBe("good");
                  if (m[1] !== "." && m[1] !== "..") listed.push(m[1]);
                }
                expect(listed.sort()).toEqual(want);
                const r = await xfsRepairCheck(img);
                expect(r.clean, r.output).toBe(true);
              };
              await verify();
              // Every name but one goes: back to short form (node → leaf → block → short form).
              const ed3 = await XfsEditor.open(dev, { directories: writer, timestamp: 1_700_000_000 });
              for (const n of [...model.values()].slice(1)) {
                await ed3.unlink(`/d/${n}`);
                model.delete(key(n));
              }
              const dino = (await ed3.fs.stat("/d")).ino;
              expect(await ed3.fs.dirForm(await ed3.fs.readInode(dino))).toBe("shortform");
              expect((await ed3.fs.readInode(dino)).nblocks).toBe(0);
              await ed3.close();
              await dev.flush();
              await verify();
            } finally {
              await dev.close();
            }
          }),
          { numRuns: RUNS, seed: Number(process.env.XFS_DIR_PROPERTY_SEED ?? 1207) },
        );
        if (process.env.XFS_DIR_PROPERTY_RUNS) console.log(set, [...forms], "root levels", levels);
        // The growth phases reached node form (this can fail), and the end short form.
        expect(forms.has("node")).toBe(true);
        expect(forms.has("shortform")).toBe(true);
        if (set.endsWith("deep")) expect(Math.max(...levels)).toBeGreaterThanOrEqual(2);
      },
      120_000 + RUNS * 30_000,
    );
  }
});
