// Property test of the editor's file content path: random sequences of writeFile (dense or
// sparse, from empty to a few hundred blocks), truncate and chmod over the holder files of a
// small two-AG image, so extents-format and bmbt forks are built, replaced and freed in
// fragmented space. After each sequence: xfs_repair -n and xfs_db check are clean, every file
// reads back (through our reader and, as root, through the kernel) exactly as the model says.
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, isRoot, tempDir, withLoopMount } from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/editor.js";
import { FEATURE_SETS, fsCheck, mkfsImage, XFS_TOOLS } from "./space-helpers.js";

type Op =
  | {
      kind: "write";
      file: number;
      blocks: number;
      tail: number;
      holes: number;
      sparse: boolean;
      seed: number;
    }
  | { kind: "truncate"; file: number; frac: number }
  | { kind: "chmod"; file: number; mode: number };

const FILES = 4;
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("write" as const),
      file: fc.integer({ min: 0, max: FILES - 1 }),
      blocks: fc.oneof(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 5, max: 400 })),
      tail: fc.integer({ min: 0, max: 1023 }),
      holes: fc.integer({ min: 0, max: 3 }),
      sparse: fc.boolean(),
      seed: fc.integer({ min: 1, max: 1 << 30 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("truncate" as const),
      file: fc.integer({ min: 0, max: FILES - 1 }),
      frac: fc.double({ min: 0, max: 1.5, noNaN: true }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("chmod" as const),
      file: fc.integer({ min: 0, max: FILES - 1 }),
      mode: fc.integer({ min: 0, max: 0o7777 }),
    }),
  },
);

function content(op: Extract<Op, { kind: "write" }>, bs: number): Uint8Array {
  const n = op.blocks * bs + (op.blocks > 0 ? op.tail : 0);
  const b = new Uint8Array(n);
  let x = op.seed;
  for (let blk = 0; blk * bs < n; blk++) {
    // holes: 0 = dense, else every holes+1-th block is zero (a hole when written sparse)
    if (op.holes > 0 && blk % (op.holes + 1) !== 0) continue;
    for (let i = blk * bs; i < Math.min(n, (blk + 1) * bs); i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      b[i] = x >>> 24 || 1;
    }
  }
  return b;
}

describeWithTools(XFS_TOOLS, "editor property: random file content sequences (xfs_repair -n, kernel)", () => {
  for (const name of ["v5-1k", "v4"]) {
    it(`${name}: files read back as written, image clean`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
          const dir = await tempDir("xfs-edprop-");
          const path = mkfsImage(dir, "e.img", [...FEATURE_SETS[name], "-d", "agcount=2"], 32, FILES);
          const model: { data: Uint8Array; mode: number }[] = Array.from({ length: FILES }, () => ({
            data: new Uint8Array(0),
            mode: 0o644,
          }));
          const dev = await FileDevice.open(path, { readOnly: false });
          const ed = await XfsEditor.open(dev, { timestamp: 1_000_000 });
          try {
            const bs = ed.ctx.geo.blockSize;
            for (const op of ops) {
              const f = `/f${op.file}`;
              if (op.kind === "write") {
                const data = content(op, bs);
                try {
                  await ed.writeFile(f, data, { sparse: op.sparse });
                  model[op.file].data = data;
                } catch (e) {
                  expect(e).toMatchObject({ code: "ENOSPC" });
                }
              } else if (op.kind === "truncate") {
                const len = Math.floor(model[op.file].data.length * op.frac);
                await ed.truncate(f, len);
                const next = new Uint8Array(len);
                next.set(model[op.file].data.subarray(0, len));
                model[op.file].data = next;
              } else {
                await ed.chmod(f, op.mode);
                model[op.file].mode = op.mode;
              }
            }
            for (let i = 0; i < FILES; i++) {
              const got = await ed.readFile(`/f${i}`);
              expect(Buffer.from(got).equals(Buffer.from(model[i].data))).toBe(true);
            }
          } finally {
            await ed.close();
            await dev.close();
          }
          const c = fsCheck(path);
          expect(c.output).toBe("");
          expect(c.clean).toBe(true);
          if (isRoot() && name !== "v4") {
            const mnt = join(dir, "mnt");
            mkdirSync(mnt);
            await withLoopMount(path, mnt, {}, async (m) => {
              for (let i = 0; i < FILES; i++) {
                expect(Buffer.from(readFileSync(join(m, `f${i}`))).equals(Buffer.from(model[i].data))).toBe(
                  true,
                );
                expect(statSync(join(m, `f${i}`)).mode & 0o7777).toBe(model[i].mode);
              }
            });
          }
        }),
        { numRuns: Number(process.env.XFS_PROPERTY_RUNS ?? 10) },
      );
    });
  }
});
