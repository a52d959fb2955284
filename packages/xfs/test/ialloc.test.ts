// Inode allocation against the real tools. Allocated inodes get an in-use core (an empty regular
// file) without a directory entry, so xfs_repair -n must report exactly those inodes as
// disconnected and nothing else: that proves the inobt/finobt records, the chunks' inode cores,
// the rmap records of chunks and inobt blocks, and the AGI and superblock counters agree.
import { describeWithTools, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { agbToFsb, inoToAg } from "../src/ag.js";
import type { AgInodes } from "../src/ialloc.js";
import {
  dbFields,
  FEATURE_SETS,
  type HolderExtent,
  mkfsImage,
  openSpace,
  rootEntries,
  type SpaceHarness,
  unexpectedFindings,
  writeFreeInode,
  writeHolder,
  writeInUseInode,
  XFS_TOOLS,
  xfsDb,
} from "./space-helpers.js";

function expectAgiMatches(path: string, ag: AgInodes): void {
  const f = dbFields(xfsDb(path, [`agi ${ag.agno}`, "print"]));
  expect({
    count: Number(f.get("count")),
    freecount: Number(f.get("freecount")),
    level: Number(f.get("level")),
  }).toEqual({ count: ag.agi.count, freecount: ag.agi.freecount, level: ag.agi.level });
}

async function allocSome(h: SpaceHarness, n: number, agno: number, into: Set<number>): Promise<void> {
  for (let i = 0; i < n; i++) {
    const ino = await h.inodes.allocInode(agno);
    expect(into.has(ino)).toBe(false);
    into.add(ino);
  }
  await h.alloc.commit();
  for (const ino of into) await writeInUseInode(h, ino);
}

async function freeSome(h: SpaceHarness, which: number[], inUse: Set<number>): Promise<void> {
  for (const ino of which) {
    await writeFreeInode(h, ino);
    await h.inodes.freeInode(ino);
    inUse.delete(ino);
  }
  await h.alloc.commit();
}

describeWithTools(XFS_TOOLS, "inode allocation (xfs_repair -n, xfs_db)", () => {
  // 64 KiB blocks hold 128 inodes: one allocation is a block, two inobt records.
  const sets: Record<string, [string[], number]> = {
    v4: [FEATURE_SETS.v4, 64],
    v5: [FEATURE_SETS.v5, 64],
    "v5-1k": [FEATURE_SETS["v5-1k"], 64],
    "v5-rmap-reflink": [FEATURE_SETS["v5-rmap-reflink"], 64],
    "v5 64k blocks": [["-b", "size=65536"], 256],
  };
  for (const [name, [args, size]] of Object.entries(sets)) {
    it(`${name}: new chunks, frees that empty whole chunks, counters back to where they were`, async () => {
      const dir = await tempDir("xfs-ialloc-");
      const path = mkfsImage(dir, "i.img", args, size);
      const before = dbFields(xfsDb(path, ["sb 0", "print icount ifree fdblocks"]));
      const h = await openSpace(path);
      try {
        const inUse = new Set<number>();
        await allocSome(h, 300, 1, inUse);
        expect(unexpectedFindings(path, inUse)).toEqual([]);
        const ag1 = await h.inodes.ag(1);
        expectAgiMatches(path, ag1);
        expect(ag1.agi.count).toBeGreaterThanOrEqual(320); // five or more 64-inode chunks

        // Free a contiguous run (whole chunks go back to free space) and a scattered set.
        const sorted = [...inUse].sort((a, b) => a - b);
        const run = sorted.slice(40, 200);
        const scattered = sorted.filter((_, i) => i % 7 === 3 && (i < 40 || i >= 200));
        await freeSome(h, [...run, ...scattered], inUse);
        expect(unexpectedFindings(path, inUse)).toEqual([]);
        expectAgiMatches(path, ag1);

        // Allocate again (reuses the partly free chunks through the finobt or inobt), then free all.
        await allocSome(h, 50, 1, inUse);
        expect(unexpectedFindings(path, inUse)).toEqual([]);
        await freeSome(h, [...inUse], inUse);
        expect(unexpectedFindings(path, [])).toEqual([]);
        expectAgiMatches(path, ag1);
        if (h.geo.inopblock <= 64) {
          expect(ag1.agi.count).toBe(0);
          const after = dbFields(xfsDb(path, ["sb 0", "print icount ifree fdblocks"]));
          expect(after).toEqual(before);
        } else {
          // As the kernel: chunks of a block holding more than 64 inodes are kept when empty.
          expect(ag1.agi.freecount).toBe(ag1.agi.count);
        }
      } finally {
        await h.close();
      }
    });
  }

  it("v5 1k: the inobt and finobt split to two levels and shrink back to one", async () => {
    const dir = await tempDir("xfs-ialloc-deep-");
    const path = mkfsImage(dir, "deep.img", FEATURE_SETS["v5-1k"], 64);
    const h = await openSpace(path);
    try {
      const inUse = new Set<number>();
      // 60 chunk records fill a 1 KiB inobt leaf; 4000 inodes take 63 chunks.
      await allocSome(h, 4000, 0, inUse);
      const ag = await h.inodes.ag(0);
      expect(ag.agi.level).toBe(2);
      expect(unexpectedFindings(path, inUse)).toEqual([]);
      expectAgiMatches(path, ag);
      // Every other inode free: every chunk is in the finobt.
      const sorted = [...inUse].sort((a, b) => a - b);
      await freeSome(
        h,
        sorted.filter((_, i) => i % 2 === 1),
        inUse,
      );
      expect(ag.agi.freeLevel).toBe(2);
      expect(unexpectedFindings(path, inUse)).toEqual([]);
      expectAgiMatches(path, ag);
      await freeSome(h, [...inUse], inUse);
      expect([ag.agi.level, ag.agi.freeLevel]).toEqual([1, 1]);
      expect(unexpectedFindings(path, [])).toEqual([]);
      const f = dbFields(xfsDb(path, ["agi 0", "print free_level ino_blocks fino_blocks"]));
      expect([f.get("free_level"), f.get("ino_blocks"), f.get("fino_blocks")]).toEqual(["1", "1", "1"]);
    } finally {
      await h.close();
    }
  });

  it("sparse inodes: with no free aligned chunk left, a sparse chunk is allocated", async () => {
    const dir = await tempDir("xfs-ialloc-sparse-");
    // 64 MiB, 4 KiB blocks, 4 AGs of 4096 blocks; chunks are 8 blocks, sparse alignment 4.
    const path = mkfsImage(dir, "sparse.img", [], 64, 32);
    const holders = [...rootEntries(path).entries()].filter(([n]) => /^f\d+$/.test(n)).map(([, ino]) => ino);
    const h = await openSpace(path);
    try {
      expect(h.geo.sparseInodes).toBe(true);
      const align = h.geo.inoAlign;
      const half = align / 2;
      expect(h.geo.spinoAlign).toBe(half);
      // Own the first half of every aligned chunk window of AG 1, so that only half windows stay free.
      const ag = await h.alloc.ag(1);
      const owned = new Map<number, HolderExtent[]>(holders.map((i) => [i, []]));
      let k = 0;
      for (let w = 0; w + align <= ag.length; w += align) {
        const holder = holders[Math.floor(k / 21)];
        const list = owned.get(holder) as HolderExtent[];
        const ext = await ag.alloc({
          minlen: half,
          maxlen: half,
          exact: w,
          owner: { owner: BigInt(holder), offset: BigInt(list.length * half) },
        });
        if (!ext) continue;
        list.push({ off: list.length * half, fsb: agbToFsb(h.geo, 1, ext.agbno), len: ext.len });
        k++;
      }
      expect(await ag.findBySize(align, align, align)).toBeNull();
      const inUse = new Set<number>();
      await allocSome(h, 40, 1, inUse);
      for (const [ino, list] of owned) await writeHolder(h, ino, list);
      const agi = await h.inodes.ag(1);
      const recs = await agi.records();
      expect(recs.some((r) => r.holemask !== 0)).toBe(true);
      for (const ino of inUse) expect(inoToAg(h.geo, ino).agno).toBe(1);
      expect(unexpectedFindings(path, inUse)).toEqual([]);
      expectAgiMatches(path, agi);
      // Freeing them gives the sparse chunks back.
      await freeSome(h, [...inUse], inUse);
      expect(unexpectedFindings(path, [])).toEqual([]);
      expect(agi.agi.count).toBe(0);
    } finally {
      await h.close();
    }
  });
});
