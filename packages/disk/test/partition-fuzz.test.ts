import { readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, runToolOk, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { beforeAll, expect, it } from "vitest";
import {
  CountingDevice,
  ImgpatchError,
  MemoryDevice,
  openPartition,
  readPartitionTable,
} from "../src/index.js";
import { fixGptCrcs } from "./helpers/tables.js";

// Random damage to real partition tables made by sfdisk: whatever the bytes, reading must end
// in a valid table, null, or a typed ImgpatchError — never a hang, a RangeError or a crash.

const SECTORS = 8192; // 4 MiB disks keep each run cheap

interface Seed {
  name: string;
  image: Uint8Array;
  /** Sectors worth damaging: MBR, EBRs, GPT headers and entry arrays. */
  hot: number[];
  /** GPT sector size (for recomputing CRCs), 0 for MBR. */
  gptSectorSize: number;
}

const seeds: Seed[] = [];

async function sfdiskImage(dir: string, name: string, script: string): Promise<Uint8Array> {
  const path = join(dir, name);
  await writeFile(path, "");
  await truncate(path, SECTORS * 512);
  await runToolOk("sfdisk", ["-q", "--no-reread", "--no-tell-kernel", path], { input: script });
  return new Uint8Array(await readFile(path));
}

describeWithTools(["sfdisk"], "fuzz: mutated sfdisk tables → typed errors or valid results", () => {
  beforeAll(async () => {
    const dir = await tempDir("disk-fuzz-");
    const mbr = await sfdiskImage(
      dir,
      "mbr.img",
      "label: dos\nsize=512K, type=83\ntype=5\nsize=512K, type=83\nsize=512K, type=82\nsize=256K, type=83\ntype=83\n",
    );
    const table = (await readPartitionTable(new MemoryDevice(mbr)))!;
    const ebrs = table.partitions
      .filter((p) => p.kind === "logical")
      .map((p) => Math.floor(p.entryOffset / 512));
    seeds.push({ name: "mbr+logicals", image: mbr, hot: [0, ...ebrs], gptSectorSize: 0 });
    const gpt = await sfdiskImage(
      dir,
      "gpt.img",
      'label: gpt\nsize=256K, type=21686148-6449-6E6F-744E-656564454649, name="bios"\nsize=1M, type=U, name="esp"\ntype=L, name="root"\n',
    );
    seeds.push({
      name: "gpt",
      image: gpt,
      hot: [0, 1, 2, 3, SECTORS - 1, SECTORS - 33, SECTORS - 32],
      gpt: true,
    });
    expect(ebrs.length).toBe(4);
  });

  const mutation = fc.record({
    seed: fc.nat(),
    edits: fc.array(
      fc.record({
        sector: fc.nat(),
        offset: fc.nat({ max: 511 }),
        kind: fc.constantFrom("byte", "u32", "u64", "zero"),
        value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      }),
      { minLength: 1, maxLength: 8 },
    ),
    fixCrcs: fc.boolean(),
    lenient: fc.boolean(),
    truncateTo: fc.option(fc.integer({ min: 0, max: SECTORS * 512 }), { freq: 8 }),
  });

  it("every mutation ends in a table, null or an ImgpatchError, with bounded reads", async () => {
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const seed = seeds[m.seed % seeds.length];
        let img = seed.image.slice();
        const dv = new DataView(img.buffer);
        for (const e of m.edits) {
          const base = seed.hot[e.sector % seed.hot.length] * 512;
          if (e.kind === "byte") img[base + e.offset] = Number(e.value & 0xffn);
          else if (e.kind === "u32")
            dv.setUint32(base + Math.min(e.offset, 508), Number(e.value & 0xffffffffn), true);
          else if (e.kind === "u64") dv.setBigUint64(base + Math.min(e.offset, 504), e.value, true);
          else img.fill(0, base + e.offset, base + 512);
        }
        const ss = seed.gptSectorSize;
        if (ss > 0 && m.fixCrcs) {
          // Recompute CRCs so the damage reaches the semantic checks instead of stopping at the CRC.
          fixGptCrcs(img, ss, 1);
          fixGptCrcs(img, ss, img.length / ss - 1);
        }
        if (m.truncateTo !== null) img = img.slice(0, m.truncateTo);
        const device = new CountingDevice(new MemoryDevice(img, { name: "fuzz.img" }));
        let table: Awaited<ReturnType<typeof readPartitionTable>>;
        try {
          table = await readPartitionTable(device, { lenient: m.lenient });
        } catch (err) {
          if (!(err instanceof ImgpatchError)) throw err;
          expect(err.file).toBe("fuzz.img");
          return;
        } finally {
          // Bounded work, whatever the damage: a table is read in a handful of sectors, and a
          // cycle of EBR links must not walk on (counted reads, not wall time).
          expect(device.counts.reads).toBeLessThan(1000);
        }
        if (!table || m.lenient) return;
        // A strict result is trustworthy: every partition fits the disk and can be opened.
        for (const p of table.partitions) {
          expect(p.start).toBeGreaterThan(0);
          expect(p.start + p.size).toBeLessThanOrEqual(img.length);
          if (p.kind !== "extended") {
            const view = await openPartition(device, p.number, { table });
            expect(view.size).toBe(p.size);
          }
        }
      }),
      { numRuns: 1500, seed: Number(process.env.FUZZ_SEED ?? 20261207) },
    );
  });
});
