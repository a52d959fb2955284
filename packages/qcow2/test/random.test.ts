import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, qemuImg, qemuIo, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { beforeAll, it } from "vitest";
import { type CreateQcow2Options, createQcow2, openQcow2, type Qcow2Device } from "../src/index.js";
import { expectCleanAndEqual, expectSameBytes, expectSameMap, randomBytes } from "./helpers.js";

type Op =
  | { kind: "write"; off: number; len: number; seed: number }
  | { kind: "zero" | "discard"; off: number; len: number }
  | { kind: "reopen" };

/** Offsets biased towards cluster and subcluster boundaries, where the bugs live. */
function opArb(size: number, cluster: number): fc.Arbitrary<Op> {
  const offset = fc.oneof(
    fc.integer({ min: 0, max: size - 1 }),
    fc.integer({ min: 0, max: size / cluster - 1 }).map((c) => c * cluster),
    fc
      .tuple(fc.integer({ min: 0, max: size / cluster - 1 }), fc.integer({ min: -3, max: 3 }))
      .map(([c, d]) => Math.min(size - 1, Math.max(0, c * cluster + d))),
  );
  const length = fc.oneof(
    fc.integer({ min: 1, max: 4096 }),
    fc.integer({ min: 1, max: 4 }).map((n) => n * cluster),
    fc.integer({ min: 1, max: 3 * cluster + 1000 }),
  );
  const ranged = fc.tuple(offset, length).map(([off, len]) => ({ off, len: Math.min(len, size - off) }));
  return fc.oneof(
    {
      weight: 5,
      arbitrary: fc.tuple(ranged, fc.nat()).map(([r, seed]) => ({ kind: "write" as const, ...r, seed })),
    },
    { weight: 2, arbitrary: ranged.map((r) => ({ kind: "zero" as const, ...r })) },
    { weight: 2, arbitrary: ranged.map((r) => ({ kind: "discard" as const, ...r })) },
    { weight: 1, arbitrary: fc.constant({ kind: "reopen" as const }) },
  );
}

interface Config {
  name: string;
  create: CreateQcow2Options;
  cluster: number;
  size: number;
  backing?: "raw" | "qcow2";
  /** Start from a qemu-made image with an internal snapshot (every cluster shared). */
  snapshot?: string;
}

const CONFIGS: Config[] = [
  { name: "v2", create: { version: 2, clusterSize: 4096 }, cluster: 4096, size: 1 << 20 },
  { name: "v3", create: { version: 3, clusterSize: 4096 }, cluster: 4096, size: 1 << 20 },
  { name: "v3 extended_l2", create: { extendedL2: true, clusterSize: 16384 }, cluster: 16384, size: 2 << 20 },
  {
    name: "v2 + raw backing",
    create: { version: 2, clusterSize: 4096 },
    cluster: 4096,
    size: 1 << 20,
    backing: "raw",
  },
  {
    name: "v3 + qcow2 backing",
    create: { clusterSize: 4096 },
    cluster: 4096,
    size: 1 << 20,
    backing: "qcow2",
  },
  {
    name: "v3 extended_l2 + raw backing",
    create: { extendedL2: true, clusterSize: 16384 },
    cluster: 16384,
    size: 2 << 20,
    backing: "raw",
  },
  {
    name: "v3 512 B clusters, 1-bit refcounts",
    create: { clusterSize: 512, refcountBits: 1 },
    cluster: 512,
    size: 1 << 19,
  },
  {
    name: "v3 with an internal snapshot (shared L2 tables and clusters)",
    create: {},
    cluster: 4096,
    size: 1 << 20,
    snapshot: "cluster_size=4096",
  },
  {
    name: "extended_l2 with an internal snapshot",
    create: {},
    cluster: 16384,
    size: 1 << 20,
    snapshot: "cluster_size=16384,extended_l2=on",
  },
];

describeWithTools(["qemu-img"], "randomised writes/zero-writes/discards against an in-memory model", () => {
  let dir: string;
  let counter = 0;
  beforeAll(async () => {
    dir = await tempDir("qcow2-random-");
  });

  for (const cfg of CONFIGS) {
    it(`${cfg.name}: matches the model, qemu-img check clean`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(opArb(cfg.size, cfg.cluster), { minLength: 1, maxLength: 25 }),
          async (ops) => {
            const id = counter++;
            const image = join(dir, `r${id}.qcow2`);
            const model = new Uint8Array(cfg.size);
            let backing: CreateQcow2Options["backing"];
            if (cfg.backing) {
              // the backing image is shorter than the overlay: the tail must read as zeros
              const baseBytes = randomBytes((cfg.size * 3) / 4 + 1000, id + 1);
              const raw = join(dir, `b${id}.raw`);
              await writeFile(raw, baseBytes);
              let name = `b${id}.raw`;
              if (cfg.backing === "qcow2") {
                name = `b${id}.qcow2`;
                await qemuImg(["convert", "-O", "qcow2", "-o", "cluster_size=8192", raw, join(dir, name)]);
              }
              model.set(baseBytes);
              backing = { path: name, format: cfg.backing };
            }
            // every other run with the smallest caches: dirty tables get evicted mid-operation
            const caches =
              id % 2 === 0 ? { l2CacheBytes: 2 * cfg.cluster, refcountCacheBytes: 2 * cfg.cluster } : {};
            let dev: Qcow2Device;
            let snapshotBytes: Uint8Array | undefined;
            if (cfg.snapshot) {
              await qemuImg(["create", "-q", "-f", "qcow2", "-o", cfg.snapshot, image, String(cfg.size)]);
              await qemuIo(image, [`write -P ${id % 250} 0 ${cfg.size / 2}`, `write -z ${cfg.size / 2} 64k`]);
              await qemuImg(["snapshot", "-c", "s", image]);
              model.fill(id % 250, 0, cfg.size / 2);
              snapshotBytes = model.slice();
              dev = await openQcow2(image, caches);
            } else dev = await createQcow2(image, { ...cfg.create, ...caches, size: cfg.size, backing });
            try {
              for (const op of ops) {
                if (op.kind === "reopen") {
                  await dev.close();
                  dev = await openQcow2(image, caches);
                } else if (op.kind === "write") {
                  const data = randomBytes(op.len, op.seed + 1);
                  await dev.write(op.off, data);
                  model.set(data, op.off);
                } else {
                  await (op.kind === "zero" ? dev.writeZeroes(op.off, op.len) : dev.discard(op.off, op.len));
                  model.fill(0, op.off, op.off + op.len);
                }
              }
              expectSameBytes(await dev.read(0, cfg.size), model, "own read");
            } finally {
              await dev.close();
            }
            await expectCleanAndEqual(dir, image, model);
            await expectSameMap(image);
            if (snapshotBytes) {
              const view = await openQcow2(image, { snapshot: "s" });
              expectSameBytes(await view.read(0, view.size), snapshotBytes, "snapshot view");
              await view.close();
            }
          },
        ),
        { numRuns: 12, seed: 20261127 + CONFIGS.indexOf(cfg), endOnFailure: true },
      );
    });
  }
});
