/**
 * Hostile input: random byte mutations of the metadata the reader actually looks at (recorded
 * from a pristine read: superblock, log, inodes, directory, dabtree, attribute, bmbt and symlink
 * blocks) must give typed errors or valid results, with bounded I/O (no hang on cycles). On v5,
 * half the cases recompute the mutated structure's CRC so the mutation reaches the parsers
 * behind the checksum.
 */
import { readFile } from "node:fs/promises";
import { CountingDevice, ImgpatchError, MemoryDevice } from "@imgpatch/disk";
import { describeWithTools, xfsRepairCheck } from "@imgpatch/testkit";
import fc from "fast-check";
import { beforeAll, expect, it } from "vitest";
import { be16, be32, sectorCrc, setLe32, XfsFs } from "../src/index.js";
import { buildFuzzImage, imageDir } from "./images.js";

interface FuzzImage {
  name: string;
  bytes: Uint8Array;
  /** Metadata read units (offset, length) seen during a pristine exercise. */
  regions: { offset: number; length: number }[];
  v5: boolean;
}

/** Device reads allowed for one case: a pristine exercise needs far fewer; cycles would need unboundedly many. */
const READ_BUDGET = 200_000;
const tally = { cases: 0, typedErrors: 0, crcFixed: 0 };
const RUNS = Number(process.env.XFS_FUZZ_RUNS ?? 300);

class BudgetError extends Error {}

/** Reads everything reachable; returns nothing, throws only on untyped failures. */
async function exercise(dev: MemoryDevice, withContent: boolean): Promise<void> {
  const counted = new CountingDevice(dev);
  const budget = {
    read: counted.read.bind(counted),
  };
  counted.read = async (o: number, l: number) => {
    if (counted.counts.reads > READ_BUDGET) throw new BudgetError(`more than ${READ_BUDGET} reads`);
    return budget.read(o, l);
  };
  const guard = async (p: Promise<unknown>): Promise<void> => {
    try {
      await p;
    } catch (e) {
      if (!(e instanceof ImgpatchError)) throw e;
      tally.typedErrors++;
    }
  };
  let fs: XfsFs;
  try {
    fs = await XfsFs.open(counted);
  } catch (e) {
    if (!(e instanceof ImgpatchError)) throw e;
    tally.typedErrors++;
    return;
  }
  await guard(
    (async () => {
      let n = 0;
      for await (const e of fs.walk("/")) {
        if (++n > 3000) break;
        const p = e.path;
        await guard(fs.lstat(p));
        await guard(fs.stat(p));
        await guard(
          fs.llistxattr(p).then(async (names) => {
            for (const x of names) await guard(fs.lgetxattr(p, x));
          }),
        );
        if (e.stats.isDirectory()) await guard(fs.readdir(p, { withFileTypes: true }));
        if (e.stats.isSymbolicLink()) await guard(fs.readlink(p));
        if (withContent && e.stats.isFile()) await guard(fs.readFile(p, { maxSize: 1 << 20 }));
      }
    })(),
  );
  await guard(fs.stat("/node/node-entry-with-a-long-name-77"));
  await guard(fs.stat("/pnode/proto-node-entry-with-long-name-7"));
}

/** Recomputes the CRC of the v5 structure at `off` (by its magic); false when it has none. */
function fixCrc(b: Uint8Array, off: number, len: number, sectSize: number): boolean {
  const s = b.subarray(off, off + len);
  if (len >= 176 && be16(s, 0) === 0x494e) {
    for (let i = 0; i + 512 <= len; i += 512)
      if (be16(s, i) === 0x494e) setLe32(s, i + 100, sectorCrc(s.subarray(i, i + 512), 512, 100));
    return true;
  }
  const m32 = be32(s, 0);
  const m16 = be16(s, 8);
  let crcOff: number | undefined;
  let size = len;
  if (m32 === 0x58465342) {
    crcOff = 224;
    size = sectSize;
  } else if (m32 === 0x58444233 || m32 === 0x58444433) crcOff = 4;
  else if (m32 === 0x424d4133) crcOff = 64;
  else if (m32 === 0x5841524d || m32 === 0x58534c4d) crcOff = 12;
  else if ([0x3bee, 0x3ebe, 0x3df1, 0x3dff].includes(m16)) crcOff = 12;
  if (crcOff === undefined) return false;
  setLe32(s, crcOff, sectorCrc(s, size, crcOff));
  return true;
}

describeWithTools(["mkfs.xfs", "xfs_repair"], "fuzzed XFS metadata", () => {
  const images: FuzzImage[] = [];
  beforeAll(async () => {
    const dir = await imageDir();
    for (const v4 of [false, true]) {
      const built = await buildFuzzImage(dir, v4);
      expect((await xfsRepairCheck(built.path)).clean).toBe(true);
      const bytes = new Uint8Array(await readFile(built.path));
      const rec = new CountingDevice(new MemoryDevice(bytes, { readOnly: true }), { log: true });
      const fs = await XfsFs.open(rec);
      const g = fs.geometry;
      const seen = new Set<string>();
      const regions: FuzzImage["regions"] = [];
      const add = (offset: number, length: number) => {
        const key = `${offset}:${length}`;
        if (seen.has(key)) return;
        seen.add(key);
        regions.push({ offset, length });
      };
      for await (const e of fs.walk("/")) {
        await fs.inodeXattrs(e.inode);
        if (e.stats.isSymbolicLink()) await fs.readSymlinkInode(e.inode);
        // Inodes are read in 64-inode chunks: target each inode in use on its own.
        add(g.inoToByte(e.ino), g.inodeSize);
      }
      // Every other metadata read (superblock, log, directory, attribute, bmbt, symlink blocks).
      for (const r of rec.log) if (r.op === "read" && r.length <= g.dirBlockSize) add(r.offset, r.length);
      images.push({ name: v4 ? "v4" : "v5", bytes, regions, v5: !v4 });
    }
  });

  it(
    "mutations give typed errors or valid results with bounded reads",
    async () => {
      for (const img of images) {
        expect(img.regions.length).toBeGreaterThan(40);
        await exercise(new MemoryDevice(img.bytes, { readOnly: true }), true);
      }
      const before = tally.typedErrors;
      await fc.assert(
        fc.asyncProperty(
          fc.nat(),
          fc.nat(),
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()), {
            minLength: 1,
            maxLength: 4,
          }),
          fc.boolean(),
          async (which, rsel, muts, fix) => {
            const img = images[which % images.length];
            const region = img.regions[rsel % img.regions.length];
            const b = img.bytes;
            const saved = b.slice(region.offset, region.offset + region.length);
            try {
              for (const [pos, val, bitflip] of muts) {
                const at = region.offset + (pos % region.length);
                b[at] = bitflip ? b[at] ^ (1 << (val & 7)) : val;
              }
              if (fix && img.v5 && fixCrc(b, region.offset, region.length, be16(b, 102) || 512))
                tally.crcFixed++;
              tally.cases++;
              try {
                await exercise(new MemoryDevice(b, { readOnly: true }), (rsel & 3) === 0);
              } catch (e) {
                if (e instanceof BudgetError) throw new Error(`${img.name} @${region.offset}: ${e.message}`);
                throw new Error(
                  `${img.name} @${region.offset}+${region.length}: untyped ${(e as Error)?.stack ?? e}`,
                );
              }
            } finally {
              b.set(saved, region.offset);
            }
          },
        ),
        {
          numRuns: Number(process.env.XFS_FUZZ_RUNS ?? 300),
          seed: Number(process.env.XFS_FUZZ_SEED ?? 20261207),
        },
      );
      if (process.env.XFS_FUZZ_RUNS) console.log(tally);
      // The mutations must reach the parsers (this can fail).
      expect(tally.typedErrors - before).toBeGreaterThan(30);
      expect(tally.crcFixed).toBeGreaterThan(20);
    },
    120_000 + RUNS * 500,
  );
});
