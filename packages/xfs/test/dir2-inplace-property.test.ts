/**
 * fast-check: the in-place edits of directory data and leaf blocks (dir2-inplace.ts). Random
 * phases of adds and removes in one directory drive it block → leaf → node and partly back, with
 * removal patterns that make the data blocks' unused regions merge on both sides (every other
 * name, then the ones between; runs of neighbours) and re-adds of other name lengths that must
 * land in the holes the bestfree table names. After every phase: the reader's lookups agree with
 * the model for present and absent names, an existing name is refused (EEXIST through the
 * leaf's byte search); at the end `readdir`, `xfs_db ls` (hash check), `xfs_repair -n` (which
 * checks every bestfree table, leaf order, stale count and the free index) and, as root on v5, the
 * kernel's listing through a read-only loop mount agree with the model.
 *
 * xfs_db 6.1's `ls` lists some names of a leaf directory with holes in its data section (freed
 * data blocks, as the kernel leaves them too) more than once, while the kernel lists each once;
 * its listing is compared as a set.
 */
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, isRoot, mkfsXfs, withLoopMount, xfsDb, xfsRepairCheck } from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { dir2Writer, XfsEditor } from "../src/index.js";
import { imageDir, V4_ARGS } from "./images.js";

const RUNS = Number(process.env.XFS_INPLACE_PROPERTY_RUNS ?? 2);
/** Name, mkfs args, kernel-mountable, adds multiplier (8 KiB directory blocks hold twice the names). */
const SETS: [string, string[], boolean, number][] = [
  ["v5", [], true, 1],
  ["v4", V4_ARGS, false, 1],
  ["v5-dir8k", ["-n", "size=8192"], true, 2],
];

type Pattern = "random" | "alternate" | "run";
interface Phase {
  adds: number;
  /** Share of the names present removed after the adds, in per mille. */
  removes: number;
  pattern: Pattern;
  namePad: number;
}
const phaseArb: fc.Arbitrary<Phase> = fc.record({
  adds: fc.integer({ min: 20, max: 700 }),
  removes: fc.integer({ min: 0, max: 900 }),
  pattern: fc.constantFrom<Pattern>("random", "alternate", "run"),
  namePad: fc.nat({ max: 60 }),
});
const phasesArb = fc.array(phaseArb, { minLength: 3, maxLength: 5 });

/** Names to remove from `names` (in insertion order) following the pattern. */
function victims(names: string[], share: number, pattern: Pattern, pick: number): string[] {
  const n = Math.floor((names.length * share) / 1000);
  if (n === 0) return [];
  if (pattern === "alternate") {
    // Every other name first (holes between live entries), then the ones between (the holes merge).
    const out = names.filter((_, i) => i % 2 === 0).slice(0, n);
    if (out.length < n) out.push(...names.filter((_, i) => i % 2 === 1).slice(0, n - out.length));
    return out;
  }
  if (pattern === "run") {
    const start = pick % Math.max(1, names.length - n + 1);
    return names.slice(start, start + n);
  }
  const out: string[] = [];
  let x = pick >>> 0;
  const pool = [...names];
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out.push(pool.splice(x % pool.length, 1)[0]);
  }
  return out;
}

describeWithTools(["mkfs.xfs", "xfs_db", "xfs_repair"], "dir2 in-place edits property", () => {
  for (const [set, args, kernel, scale] of SETS) {
    it(
      `${set}: add/remove phases through block, leaf and node form agree with the model; xfs_repair clean`,
      async () => {
        const dir = await imageDir();
        let run = 0;
        const forms = new Set<string>();
        await fc.assert(
          fc.asyncProperty(phasesArb, fc.nat(), async (phases, pick) => {
            const img = join(dir, `inplace-${set}-${run++}.img`);
            await mkfsXfs(img, {
              size: 64 << 20,
              args,
              proto: { type: "dir", entries: { d: { type: "dir", entries: {} } } },
            });
            const dev = await FileDevice.open(img);
            const model: string[] = [];
            const present = new Set<string>();
            let serial = 0;
            try {
              const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
              const form = async () => ed.fs.dirForm(await ed.fs.readInode((await ed.fs.stat("/d")).ino));
              for (const [p, ph] of phases.entries()) {
                for (let i = 0; i < ph.adds * scale; i++) {
                  const name = `n${serial++}-${"p".repeat((ph.namePad + i) % 61)}`;
                  await ed.writeFile(`/d/${name}`, "");
                  model.push(name);
                  present.add(name);
                }
                forms.add(await form());
                const gone = victims(model, ph.removes, ph.pattern, pick + p);
                for (const name of gone) {
                  await ed.unlink(`/d/${name}`);
                  present.delete(name);
                }
                model.splice(0, model.length, ...model.filter((n) => present.has(n)));
                forms.add(await form());
                // Lookups through the hash index: a sample of present and removed names.
                for (const name of model.filter((_, i) => i % 37 === 0))
                  expect(await ed.fs.exists(`/d/${name}`), name).toBe(true);
                for (const name of gone.filter((_, i) => i % 37 === 0))
                  expect(await ed.fs.exists(`/d/${name}`), name).toBe(false);
                if (model.length > 0) {
                  // The writer's own check (the leaf's byte search), not the reader's lookup.
                  const dino = await ed.inodeOf("/d", true);
                  const name = new TextEncoder().encode(model[pick % model.length]);
                  await expect(dir2Writer.addEntry(ed, dino, name, dino.ino, 0o100644)).rejects.toMatchObject(
                    {
                      code: "EEXIST",
                    },
                  );
                }
              }
              await ed.close();
              await dev.flush();
              const want = [...model].sort();
              const ed2 = await XfsEditor.open(dev);
              expect((await ed2.readdir("/d")).sort()).toEqual(want);
              await ed2.close();
              const listed: string[] = [];
              for (const line of (await xfsDb(img, ["ls /d"])).split("\n")) {
                const m = /^\d+\s+\d+\s+\w+\s+0x[0-9a-f]+\s+\d+\s+(.*) \((good|bad)\)$/.exec(line.trim());
                if (!m) continue;
                expect(m[2], line).toBe("good");
                if (m[1] !== "." && m[1] !== "..") listed.push(m[1]);
              }
              expect([...new Set(listed)].sort()).toEqual(want);
              const r = await xfsRepairCheck(img);
              expect(r.clean, r.output).toBe(true);
              if (kernel && isRoot()) {
                const mnt = join(dir, "mnt");
                await mkdir(mnt, { recursive: true });
                await withLoopMount(img, mnt, {}, async (m) => {
                  expect((await readdir(join(m, "d"))).sort()).toEqual(want);
                });
              }
            } finally {
              await dev.close();
            }
          }),
          { numRuns: RUNS, seed: Number(process.env.XFS_INPLACE_PROPERTY_SEED ?? 1208) },
        );
        // The phases reached leaf and node form (this can fail).
        expect(forms.has("leaf")).toBe(true);
        expect(forms.has("node")).toBe(true);
      },
      240_000 + RUNS * 120_000,
    );
  }
});
