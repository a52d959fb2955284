/**
 * fast-check: random sequences of name adds and removes in one directory, driving it through
 * short form, block, leaf and node and back down (emptied data blocks freed). After each sequence
 * the directory must list exactly the model's names in our reader and in `xfs_db ls` (with its
 * hash check), and `xfs_repair -n` must be clean. ASCII-ci: names equal ignoring ASCII case are
 * one name.
 */
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, mkfsXfs, xfsDb, xfsRepairCheck } from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { dir2Writer, XfsEditor } from "../src/index.js";
import { imageDir, V4_ARGS } from "./images.js";

const RUNS = Number(process.env.XFS_DIR_PROPERTY_RUNS ?? 4);
const SETS: [string, string[]][] = [
  ["v5", []],
  ["v4-ci", [...V4_ARGS, "-n", "version=ci"]],
];

type Op = { add: boolean; name: string; pick: number };
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

describeWithTools(["mkfs.xfs", "xfs_db", "xfs_repair"], "dir2 write property", () => {
  for (const [set, args] of SETS) {
    it(
      `${set}: random add/remove sequences keep the directory exact and xfs_repair clean`,
      async () => {
        const dir = await imageDir();
        let run = 0;
        const forms = new Set<string>();
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
              const ed = await XfsEditor.open(dev, { directories: dir2Writer, timestamp: 1_700_000_000 });
              for (const [i, op] of ops.entries()) {
                if (i === splitAt)
                  forms.add(await ed.fs.dirForm(await ed.fs.readInode((await ed.fs.stat("/d")).ino)));
                const adding = i < splitAt ? op.add || op.pick % 8 !== 0 : op.add && op.pick % 4 === 0;
                if (adding) {
                  await ed.writeFile(`/d/${op.name}`, "x");
                  if (!model.has(key(op.name))) model.set(key(op.name), op.name);
                } else if (model.size > 0) {
                  const names = [...model.values()];
                  const victim = names[op.pick % names.length];
                  await ed.unlink(`/d/${victim}`);
                  model.delete(key(victim));
                }
              }
              await ed.close();
              await dev.flush();
              const want = [...model.values()].sort();
              const ed2 = await XfsEditor.open(dev, { directories: dir2Writer });
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
            } finally {
              await dev.close();
            }
          }),
          { numRuns: RUNS, seed: Number(process.env.XFS_DIR_PROPERTY_SEED ?? 1207) },
        );
        if (process.env.XFS_DIR_PROPERTY_RUNS) console.log(set, [...forms]);
        // The growth phases reached node form (this can fail).
        expect(forms.has("node")).toBe(true);
      },
      120_000 + RUNS * 30_000,
    );
  }
});
