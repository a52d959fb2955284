/**
 * fast-check: random setxattr/removexattr sequences on one file against a model, growing the
 * attribute fork from short form through leaf to node form (values of 10 B to remote, so a
 * 1 KiB-block leaf holds a few: a two-level dabtree within a few hundred attributes) and
 * shrinking it again, changed one leaf at a time in node form (splits, joins, emptied leaves);
 * then all but one small attribute removed: short form again.
 * Oracles at the peak and at the end: our reader lists exactly the model's names and values,
 * `xfs_repair -n` is clean and `xfs_db check` silent, and as root (v5: this kernel refuses v4)
 * `getfattr -d -m -` through a read-only loop mount lists exactly the model.
 */
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, isRoot, mkfsXfs, withLoopMount, xfsDb, xfsRepairCheck } from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/index.js";
import { imageDir, pseudoBytes, V4_ARGS } from "./images.js";

const exec = promisify(execFile);
const RUNS = Number(process.env.XFS_ATTR_PROPERTY_RUNS ?? 3);
/** Name, mkfs arguments, whether this kernel mounts it (it refuses v4). */
const SETS: [string, string[], boolean][] = [
  ["v5 rmapbt 1 KiB", ["-m", "rmapbt=1", "-b", "size=1024"], true],
  ["v4 1 KiB", [...V4_ARGS, "-b", "size=1024"], false],
];
/** Value sizes: short-form, local in a leaf, near a leaf's local limit (one per 1 KiB leaf: many leaves), remote. */
const SIZES = [10, 120, 300, 700, 700, 700, 900, 2500];

// Unbiased: fast-check's small-value bias would make most ops removes of the same few names.
const opsArb = fc.array(
  fc.noBias(
    fc.record({
      set: fc.boolean(),
      name: fc.nat({ max: 3000 }),
      size: fc.nat({ max: SIZES.length - 1 }),
      pick: fc.nat({ max: 1 << 30 }),
    }),
  ),
  { minLength: 600, maxLength: 900, size: "max" },
);

const attrName = (n: number) => `user.p${n}${"x".repeat(n % 23)}`;

/** As root, on a set the kernel mounts: `getfattr -d -m -` through a read-only mount lists exactly the model. */
async function kernelCheck(img: string, model: Map<string, Buffer>, stage: string): Promise<void> {
  const mnt = `${img}.mnt`;
  await mkdir(mnt, { recursive: true });
  await withLoopMount(img, mnt, {}, async (m) => {
    const { stdout } = await exec("getfattr", ["-d", "-m", "-", "-e", "hex", join(m, "f")], {
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

async function checkImage(
  img: string,
  dev: FileDevice,
  model: Map<string, Buffer>,
  stage: string,
  kernel: boolean,
) {
  const r = await xfsRepairCheck(img);
  expect(r.clean, `${stage}: ${r.output}`).toBe(true);
  expect((await xfsDb(img, ["check"])).trim(), stage).toBe("");
  const ed = await XfsEditor.open(dev);
  try {
    expect((await ed.fs.listxattr("/f")).sort(), stage).toEqual([...model.keys()].sort());
    for (const [n, v] of model)
      expect(Buffer.from(await ed.fs.getxattr("/f", n)).equals(v), `${stage} ${n}`).toBe(true);
  } finally {
    await ed.close();
  }
  if (kernel && isRoot()) await kernelCheck(img, model, stage);
}

describeWithTools(["mkfs.xfs", "xfs_db", "xfs_repair"], "attribute write property", () => {
  for (const [set, args, kernel] of SETS) {
    it(`${set}: random set/remove sequences through short form, leaf and node and back`, {
      timeout: 1_800_000,
    }, async () => {
      const dir = await imageDir();
      let run = 0;
      const forms = new Set<string>();
      let deepest = 0;
      await fc.assert(
        fc.asyncProperty(opsArb, async (ops) => {
          const img = join(dir, `attr-prop-${run++}.img`);
          await mkfsXfs(img, {
            size: 64 << 20,
            args,
            proto: { type: "dir", entries: {} },
          });
          const dev = await FileDevice.open(img);
          const model = new Map<string, Buffer>();
          try {
            const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
            await ed.writeFile("/f", "x");
            const ino = (await ed.fs.stat("/f")).ino;
            // Grow for the first 75% (mostly sets), shrink after (mostly removes).
            const peak = Math.floor(ops.length * 0.75);
            for (const [i, op] of ops.entries()) {
              const growing = i < peak;
              const doSet = growing ? op.set || op.pick % 4 !== 0 : op.set && op.pick % 4 === 0;
              if (doSet) {
                const name = attrName(op.name);
                const v = pseudoBytes(SIZES[op.size] + (op.pick % 13), op.pick);
                await ed.setxattr("/f", name, v);
                model.set(name, v);
              } else if (model.size > 0) {
                const keys = [...model.keys()];
                const name = keys[op.pick % keys.length];
                await ed.removexattr("/f", name);
                model.delete(name);
              }
              forms.add(await ed.fs.attrForm(await ed.fs.readInode(ino)));
              if (i === peak) {
                const g = ed.fs.geometry;
                const inode = await ed.fs.readInode(ino);
                if ((await ed.fs.attrForm(inode)) === "node") {
                  const exts = await ed.fs.forkExtents(inode, "attr");
                  const e0 = exts.find((e) => e.startoff === 0);
                  if (e0) {
                    const b = await ed.device.read(g.fsbToByte(e0.startblock), 64);
                    const at = g.v5 ? 58 : 14;
                    deepest = Math.max(deepest, (b[at] << 8) | b[at + 1]);
                  }
                }
                await ed.sync();
                await checkImage(img, dev, model, `run ${run} peak (${model.size} attributes)`, kernel);
              }
            }
            // All but one small attribute go: short form again.
            await ed.setxattr("/f", "user.last", Buffer.from("one"));
            model.set("user.last", Buffer.from("one"));
            for (const k of [...model.keys()]) {
              if (k === "user.last") continue;
              await ed.removexattr("/f", k);
              model.delete(k);
            }
            const last = await ed.fs.attrForm(await ed.fs.readInode(ino));
            forms.add(last);
            expect(last).toBe("shortform");
            await ed.close();
            await checkImage(img, dev, model, `run ${run} end`, kernel);
          } finally {
            await dev.close();
          }
        }),
        { numRuns: RUNS, endOnFailure: true },
      );
      expect([...forms]).toEqual(expect.arrayContaining(["shortform", "leaf", "node"]));
      expect(deepest).toBeGreaterThanOrEqual(2);
    });
  }
});
