// Property test of the space engine: random sequences of extent allocations (by size, near a block,
// exact) and frees (whole, head, tail), inode allocations and frees, after a fragmentation step that
// splits the bnobt/cntbt (and rmapbt) to two or more levels. The model is what the test owns:
// extents held by holder files (written into their data forks) and in-use inodes. Checks:
// - mid-sequence: xfs_repair -n and xfs_db check find nothing but our in-use inodes being
//   disconnected; every AGF field matches xfs_db; xfs_db freesp counts the AGF's freeblks plus the AGFL;
// - end: after freeing everything the test owns, the image is clean, the btrees are back to one
//   level, and freeblks + flcount + btreeblks of every AG equals its value right after mkfs.
import { describeWithTools, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { agbToFsb, fsbToAg } from "../src/ag.js";
import type { AgSpace } from "../src/alloc.js";
import {
  dbFields,
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

type Op =
  | { kind: "alloc"; len: number; mode: "size" | "near" | "exact"; at: number; agno: number }
  | { kind: "free"; pick: number; part: "all" | "head" | "tail" }
  | { kind: "ialloc"; n: number; agno: number }
  | { kind: "ifree"; pick: number; n: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("alloc" as const),
      len: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 5, max: 300 })),
      mode: fc.constantFrom("size" as const, "near" as const, "exact" as const),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
      agno: fc.integer({ min: 0, max: 1 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("free" as const),
      pick: fc.double({ min: 0, max: 1, noNaN: true }),
      part: fc.constantFrom("all" as const, "head" as const, "tail" as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("ialloc" as const),
      n: fc.integer({ min: 1, max: 90 }),
      agno: fc.integer({ min: 0, max: 1 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("ifree" as const),
      pick: fc.double({ min: 0, max: 1, noNaN: true }),
      n: fc.integer({ min: 1, max: 60 }),
    }),
  },
);

interface Owned extends HolderExtent {
  holder: number;
}

/** The test's model: owned extents per holder, in-use inodes. */
class Model {
  readonly owned: Owned[] = [];
  readonly inUse = new Set<number>();
  private readonly next = new Map<number, number>();
  constructor(
    readonly holders: number[],
    readonly room: number,
  ) {}
  /** A holder with room for one more extent, and the file offset the extent gets there. */
  slot(): { holder: number; off: number } | null {
    for (const holder of this.holders) {
      if (this.owned.filter((o) => o.holder === holder).length < this.room) {
        const off = this.next.get(holder) ?? 0;
        return { holder, off };
      }
    }
    return null;
  }
  add(o: Owned): void {
    this.owned.push(o);
    this.next.set(o.holder, Math.max(this.next.get(o.holder) ?? 0, o.off + o.len));
  }
}

async function writeHolders(h: SpaceHarness, m: Model): Promise<void> {
  for (const holder of m.holders)
    await writeHolder(
      h,
      holder,
      m.owned.filter((o) => o.holder === holder),
    );
}

async function freeOwned(h: SpaceHarness, m: Model, i: number, part: "all" | "head" | "tail"): Promise<void> {
  const o = m.owned[i];
  const { agno, agbno } = fsbToAg(h.geo, o.fsb);
  const ag = await h.alloc.ag(agno);
  const owner = { owner: BigInt(o.holder), offset: BigInt(o.off) };
  if (part === "all" || o.len < 2) {
    await ag.free(agbno, o.len, owner);
    m.owned.splice(i, 1);
    return;
  }
  const cut = Math.max(1, Math.floor(o.len / 2));
  if (part === "head") {
    await ag.free(agbno, cut, owner);
    o.fsb += cut;
    o.off += cut;
    o.len -= cut;
  } else {
    await ag.free(agbno + o.len - cut, cut, { owner: owner.owner, offset: BigInt(o.off + o.len - cut) });
    o.len -= cut;
  }
}

function agfTotals(ag: AgSpace): number {
  return ag.agf.freeblks + ag.agf.flcount + ag.agf.btreeblks;
}

async function checkAgfs(path: string, h: SpaceHarness): Promise<void> {
  for (let agno = 0; agno < 2; agno++) {
    const ag = await h.alloc.ag(agno);
    const f = dbFields(xfsDb(path, [`agf ${agno}`, "print"]));
    const a = ag.agf;
    const ours = [a.freeblks, a.longest, a.flcount, a.btreeblks, a.bnoLevel, a.cntLevel, a.flfirst, a.fllast];
    const theirs = [
      "freeblks",
      "longest",
      "flcount",
      "btreeblks",
      "bnolevel",
      "cntlevel",
      "flfirst",
      "fllast",
    ].map((k) => Number(f.get(k)));
    expect(theirs).toEqual(ours);
    if (h.geo.rmapbt)
      expect([Number(f.get("rmapblocks")), Number(f.get("rmaplevel"))]).toEqual([a.rmapBlocks, a.rmapLevel]);
    const sp = xfsDb(path, [`freesp -s -a ${agno}`]);
    // freesp counts the blocks on the AGFL as free too.
    expect(Number(/total free blocks (\d+)/.exec(sp)?.[1])).toBe(a.freeblks + a.flcount);
  }
}

async function runSequence(args: string[], ops: Op[]): Promise<{ maxBno: number; maxRmap: number }> {
  const dir = await tempDir("xfs-prop-");
  const path = mkfsImage(dir, "p.img", args, 48, 40);
  const holders = [...rootEntries(path).entries()].filter(([n]) => /^f\d+$/.test(n)).map(([, ino]) => ino);
  const h = await openSpace(path);
  try {
    const room = Math.floor((h.geo.inodeSize - (h.geo.crc ? 176 : 100)) / 16);
    const m = new Model(holders, room);
    const initial = [agfTotals(await h.alloc.ag(0)), agfTotals(await h.alloc.ag(1))];

    // Fragment AG 0: 300 single blocks taken in a row from its largest free extent, every other
    // one given back — 150 free fragments split the 1 KiB-block bnobt/cntbt (121 records a leaf).
    const ag0 = await h.alloc.ag(0);
    const big = (await ag0.freeExtents()).reduce((a, b) => (b.blockcount > a.blockcount ? b : a));
    const start = big.startblock + 8;
    for (let i = 0; i < 300; i++) {
      const s = m.slot();
      if (!s) break;
      const ext = await ag0.alloc({
        minlen: 1,
        maxlen: 1,
        exact: start + i,
        owner: { owner: BigInt(s.holder), offset: BigInt(s.off) },
      });
      if (!ext) continue;
      m.add({ holder: s.holder, off: s.off, fsb: agbToFsb(h.geo, 0, ext.agbno), len: 1 });
    }
    for (let i = m.owned.length - 1; i >= 0; i -= 2) await freeOwned(h, m, i, "all");
    let maxBno = Math.max(ag0.agf.bnoLevel, ag0.agf.cntLevel);
    let maxRmap = ag0.agf.rmapLevel;

    for (const op of ops) {
      if (op.kind === "alloc") {
        const s = m.slot();
        if (!s) continue;
        const ag = await h.alloc.ag(op.agno);
        const at = Math.floor(op.at * (ag.length - 1));
        const req = {
          minlen: Math.max(1, Math.floor(op.len / 2)),
          maxlen: op.len,
          owner: { owner: BigInt(s.holder), offset: BigInt(s.off) },
        };
        const ext = await ag.alloc(
          op.mode === "size" ? req : op.mode === "near" ? { ...req, near: at } : { ...req, exact: at },
        );
        if (ext) {
          expect(ext.len).toBeGreaterThanOrEqual(req.minlen);
          expect(ext.len).toBeLessThanOrEqual(req.maxlen);
          if (op.mode === "exact") expect(ext.agbno).toBe(at);
          const fsb = agbToFsb(h.geo, op.agno, ext.agbno);
          for (const o of m.owned) expect(o.fsb + o.len <= fsb || fsb + ext.len <= o.fsb).toBe(true);
          m.add({ holder: s.holder, off: s.off, fsb, len: ext.len });
        }
      } else if (op.kind === "free") {
        if (m.owned.length === 0) continue;
        await freeOwned(h, m, Math.floor(op.pick * (m.owned.length - 1)), op.part);
      } else if (op.kind === "ialloc") {
        for (let i = 0; i < op.n; i++) m.inUse.add(await h.inodes.allocInode(op.agno));
      } else {
        const all = [...m.inUse].sort((a, b) => a - b);
        const from = Math.floor(op.pick * all.length);
        for (const ino of all.slice(from, from + op.n)) {
          await writeFreeInode(h, ino);
          await h.inodes.freeInode(ino);
          m.inUse.delete(ino);
        }
      }
      maxBno = Math.max(maxBno, ag0.agf.bnoLevel, ag0.agf.cntLevel);
      maxRmap = Math.max(maxRmap, ag0.agf.rmapLevel);
    }

    await h.alloc.commit();
    await writeHolders(h, m);
    for (const ino of m.inUse) await writeInUseInode(h, ino);
    expect(unexpectedFindings(path, m.inUse)).toEqual([]);
    await checkAgfs(path, h);

    // Give everything back: the trees shrink to one level and the free space is whole again.
    while (m.owned.length > 0) await freeOwned(h, m, m.owned.length - 1, "all");
    for (const ino of [...m.inUse]) {
      await writeFreeInode(h, ino);
      await h.inodes.freeInode(ino);
      m.inUse.delete(ino);
    }
    await h.alloc.commit();
    await writeHolders(h, m);
    expect(unexpectedFindings(path, [])).toEqual([]);
    await checkAgfs(path, h);
    for (let agno = 0; agno < 2; agno++) {
      const ag = await h.alloc.ag(agno);
      expect(agfTotals(ag)).toBe(initial[agno]);
      expect([ag.agf.bnoLevel, ag.agf.cntLevel]).toEqual([1, 1]);
      if (h.geo.rmapbt) expect(ag.agf.rmapLevel).toBe(1);
    }
    return { maxBno, maxRmap };
  } finally {
    await h.close();
  }
}

const SETS: Record<string, string[]> = {
  "v5 1k rmapbt": ["-b", "size=1024", "-m", "rmapbt=1", "-d", "agcount=2"],
  "v4 1k": [
    "-b",
    "size=1024",
    "-m",
    "crc=0,finobt=0,reflink=0,rmapbt=0,bigtime=0,inobtcount=0",
    "-i",
    "sparse=0",
    "-d",
    "agcount=2",
  ],
};

describeWithTools(XFS_TOOLS, "space engine property: random alloc/free against xfs_repair/xfs_db", () => {
  for (const [name, args] of Object.entries(SETS)) {
    it(`${name}: btrees split to 2+ levels and merge back; image clean after every sequence`, async () => {
      let deepest = 0;
      let deepestRmap = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 40 }), async (ops) => {
          const r = await runSequence(args, ops);
          deepest = Math.max(deepest, r.maxBno);
          deepestRmap = Math.max(deepestRmap, r.maxRmap);
        }),
        { numRuns: Number(process.env.XFS_PROPERTY_RUNS ?? 10) },
      );
      expect(deepest).toBeGreaterThanOrEqual(2);
      if (args.includes("rmapbt=1")) expect(deepestRmap).toBeGreaterThanOrEqual(2);
    });
  }
});
