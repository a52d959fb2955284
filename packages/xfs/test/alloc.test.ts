// Extent allocation against the real tools: extents the engine allocates become the data fork of
// holder files made by mkfs.xfs, so xfs_repair -n checks them against bnobt, cntbt, rmapbt, AGF
// and superblock counters; xfs_db reads the AGF fields back.
import { describeWithTools, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { agbToFsb } from "../src/ag.js";
import type { AgSpace } from "../src/alloc.js";
import {
  dbFields,
  FEATURE_SETS,
  fsCheck,
  type HolderExtent,
  mkfsImage,
  openSpace,
  rootEntries,
  writeHolder,
  XFS_TOOLS,
  xfsDb,
} from "./space-helpers.js";

function expectAgfMatches(path: string, ag: AgSpace): void {
  const f = dbFields(xfsDb(path, [`agf ${ag.agno}`, "print"]));
  const a = ag.agf;
  expect({
    freeblks: Number(f.get("freeblks")),
    longest: Number(f.get("longest")),
    flcount: Number(f.get("flcount")),
    btreeblks: Number(f.get("btreeblks")),
    bnolevel: Number(f.get("bnolevel")),
    cntlevel: Number(f.get("cntlevel")),
  }).toEqual({
    freeblks: a.freeblks,
    longest: a.longest,
    flcount: a.flcount,
    btreeblks: a.btreeblks,
    bnolevel: a.bnoLevel,
    cntlevel: a.cntLevel,
  });
}

describeWithTools(XFS_TOOLS, "extent allocation (xfs_repair -n, xfs_db)", () => {
  for (const [name, args] of Object.entries(FEATURE_SETS)) {
    it(`${name}: allocates near/exact/by size, frees, and the image stays clean`, async () => {
      const dir = await tempDir("xfs-alloc-");
      const path = mkfsImage(dir, `${name}.img`, args, 64, 2);
      const holder = rootEntries(path).get("f0");
      expect(holder).toBeGreaterThan(0);
      const ino = holder as number;
      const h = await openSpace(path);
      try {
        const ag = await h.alloc.ag(0);
        const freeBefore = ag.agf.freeblks + ag.agf.flcount + ag.agf.btreeblks;
        const owned: HolderExtent[] = [];
        let off = 0;
        const take = async (req: { minlen: number; maxlen: number; near?: number; exact?: number }) => {
          const ext = await ag.alloc({ ...req, owner: { owner: BigInt(ino), offset: BigInt(off) } });
          expect(ext).not.toBeNull();
          if (!ext) return;
          owned.push({ off, fsb: agbToFsb(h.geo, 0, ext.agbno), len: ext.len });
          off += ext.len + 1; // a hole between extents keeps the mappings apart
        };
        await take({ minlen: 5, maxlen: 5 });
        await take({ minlen: 1, maxlen: 3, near: 1000 });
        const exactAt = (await ag.freeExtents()).find((r) => r.blockcount > 40);
        if (!exactAt) throw new Error("no free extent");
        await take({ minlen: 7, maxlen: 7, exact: exactAt.startblock + 20 });
        expect(owned[2].fsb).toBe(agbToFsb(h.geo, 0, exactAt.startblock + 20));
        await take({ minlen: 100, maxlen: 400 });
        await take({ minlen: 1, maxlen: 1, near: exactAt.startblock + 19 });
        await h.alloc.commit();
        // The oracle sees unowned allocated blocks (the holder's fork is still empty).
        expect(fsCheck(path).clean).toBe(false);
        await writeHolder(h, ino, owned);
        const held = owned.reduce((s, e) => s + e.len, 0);
        expect(ag.agf.freeblks + ag.agf.flcount + ag.agf.btreeblks).toBe(freeBefore - held);
        let r = fsCheck(path);
        expect(r.output).toBe("");
        expect(r.clean).toBe(true);
        expectAgfMatches(path, ag);

        // Free every other extent (one of them only in part: its tail).
        const kept: HolderExtent[] = [];
        for (const [i, e] of owned.entries()) {
          const { agbno } = { agbno: e.fsb % 2 ** h.geo.agBlockLog };
          if (i % 2 === 0) await ag.free(agbno, e.len, { owner: BigInt(ino), offset: BigInt(e.off) });
          else if (e.len > 2) {
            await ag.free(agbno + 1, e.len - 1, { owner: BigInt(ino), offset: BigInt(e.off + 1) });
            kept.push({ ...e, len: 1 });
          } else kept.push(e);
        }
        await h.alloc.commit();
        await writeHolder(h, ino, kept);
        r = fsCheck(path);
        expect(r.output).toBe("");
        expect(r.clean).toBe(true);
        expectAgfMatches(path, ag);
      } finally {
        await h.close();
      }
    });
  }
});
