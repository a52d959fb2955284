// The generic B+tree in its long form with an in-inode root: a holder file's data fork becomes a
// bmbt that grows past what the inode root holds (the root moves into a block, a new level) and
// shrinks back (the root pulls its only child in again). xfs_repair -n checks the bmbt blocks
// (headers, owner, keys, levels, minimum fill), the extent count against the fork format, the
// block count and every rmap record of data and bmbt blocks; xfs_db reads the fork back.
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { describeWithTools, isRoot, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { agbToFsb, fsbToAg } from "../src/ag.js";
import { Btree, INODE_ROOT_PTR, NULL_PTR } from "../src/btree.js";
import { type BmbtKey, type BmbtRec, bmbtOps, bmdrMaxRecs, readBmdr, writeBmdr } from "../src/btree-bmap.js";
import { btreeDeleteAt, btreeInsert } from "../src/btree-update.js";
import { stampCrc } from "../src/buf.js";
import { setBe32, setBe64 } from "../src/bytes.js";
import {
  dbFields,
  fsCheck,
  mkfsImage,
  openSpace,
  rootEntries,
  type SpaceHarness,
  XFS_TOOLS,
  xfsDb,
} from "./space-helpers.js";

async function bmbtFile(h: SpaceHarness, ino: number) {
  const g = h.xgeo;
  const inodeOff = g.inoToByte(ino);
  const inode = await h.dev.read(inodeOff, g.inodeSize);
  const core = g.v5 ? 176 : 100;
  const fork = inode.subarray(core);
  let bmbtBlocks = 0;
  const owner = (fileOff: number, bmbt = false) => ({
    owner: BigInt(ino),
    offset: BigInt(fileOff),
    bmbtBlock: bmbt,
  });
  const tree = new Btree<BmbtRec, BmbtKey>(bmbtOps, {
    bufs: h.ctx.bufs,
    blockSize: h.geo.blockSize,
    crc: h.geo.crc,
    uuid: h.geo.metaUuid,
    owner: ino,
    ptrToOffset: (p) => g.fsbToByte(p),
    getRoot: () => ({ ptr: INODE_ROOT_PTR, levels: readBmdr(fork).level + 1 }),
    setRoot: () => {
      throw new Error("bmbt root stays in the inode");
    },
    allocBlock: async (near) => {
      const hint = near >= 0 ? fsbToAg(h.geo, near) : { agno: 0, agbno: 0 };
      const r = await h.alloc.alloc(hint.agno, {
        minlen: 1,
        maxlen: 1,
        near: hint.agbno,
        owner: owner(0, true),
      });
      if (!r) throw new Error("ENOSPC");
      bmbtBlocks++;
      return agbToFsb(h.geo, r.agno, r.ext.agbno);
    },
    freeBlock: async (p) => {
      const { agno, agbno } = fsbToAg(h.geo, p);
      await h.alloc.free(agno, agbno, 1, owner(0, true));
      bmbtBlocks--;
    },
    inodeRoot: {
      read: () => readBmdr(fork),
      write: (root) => writeBmdr(fork, root),
      maxRecs: () => bmdrMaxRecs(fork.length),
    },
  });
  // Start as xfs_bmap_extents_to_btree leaves it: an inode root of level 1 over one leaf.
  const leafFsb = await tree.host.allocBlock(NULL_PTR);
  tree.writeNode({
    ptr: leafFsb,
    level: 0,
    left: NULL_PTR,
    right: NULL_PTR,
    recs: [],
    keys: [],
    highKeys: [],
    ptrs: [],
  });
  writeBmdr(fork, { level: 1, keys: [{ startoff: 0 }], ptrs: [leafFsb] });
  const save = async (extents: BmbtRec[]) => {
    inode[5] = 3; // btree format
    const blocks = extents.reduce((s, e) => s + e.blockcount, 0) + bmbtBlocks;
    const last = extents[extents.length - 1];
    setBe64(inode, 56, (last.startoff + last.blockcount) * g.blockSize);
    setBe64(inode, 64, blocks);
    setBe32(inode, 76, extents.length);
    if (g.v5) stampCrc(inode, 100);
    await h.alloc.commit();
    await h.dev.write(inodeOff, inode);
  };
  return { tree, owner, save, levels: () => readBmdr(fork).level + 1, root: () => readBmdr(fork) };
}

describeWithTools(XFS_TOOLS, "bmbt through the generic B+tree (xfs_repair -n, xfs_db)", () => {
  for (const [name, args] of [
    ["v5 1k rmapbt", ["-b", "size=1024", "-m", "rmapbt=1"]],
    [
      "v4 1k",
      ["-b", "size=1024", "-m", "crc=0,finobt=0,reflink=0,rmapbt=0,bigtime=0,inobtcount=0", "-i", "sparse=0"],
    ],
  ] as const) {
    it(`${name}: a fork grows to a 3-level bmbt with the root pushed into a block, then shrinks back`, async () => {
      const dir = await tempDir("xfs-bmbt-");
      const path = mkfsImage(dir, "b.img", [...args], 64, 1);
      const ino = rootEntries(path).get("f0") as number;
      const h = await openSpace(path);
      try {
        const f = await bmbtFile(h, ino);
        const extents: BmbtRec[] = [];
        // 1500 one-block extents at every other file block: no two merge, 59 fit a 1 KiB leaf.
        for (let i = 0; i < 1500; i++) {
          const r = await h.alloc.alloc(0, { minlen: 1, maxlen: 1, owner: f.owner(2 * i) });
          if (!r) throw new Error("ENOSPC");
          const rec = {
            startoff: 2 * i,
            startblock: agbToFsb(h.geo, r.agno, r.ext.agbno),
            blockcount: 1,
            unwritten: false,
          };
          await btreeInsert(f.tree, rec);
          extents.push(rec);
        }
        expect(f.levels()).toBe(3);
        await f.save(extents);
        let c = fsCheck(path);
        expect(c.output).toBe("");
        expect(c.clean).toBe(true);
        const core = dbFields(xfsDb(path, [`inode ${ino}`, "print core.format core.nextents core.nblocks"]));
        expect(core.get("core.format")).toBe("3 (btree)");
        expect(Number(core.get("core.nextents"))).toBe(1500);
        const got: BmbtRec[] = [];
        for await (const r of f.tree.records()) got.push(r);
        expect(got).toEqual(extents);

        // Remove 1450 of them (every record but each 30th): leaves merge, the root comes back in.
        for (let i = extents.length - 1; i >= 0; i--) {
          if (i % 30 === 0) continue;
          const e = extents[i];
          const cur = await f.tree.lookup({ startoff: e.startoff }, "eq");
          if (!cur) throw new Error(`extent ${e.startoff} not found`);
          await btreeDeleteAt(f.tree, cur);
          const { agno, agbno } = fsbToAg(h.geo, e.startblock);
          await h.alloc.free(agno, agbno, 1, f.owner(e.startoff));
          extents.splice(i, 1);
        }
        expect(extents.length).toBe(50);
        expect(f.levels()).toBe(2);
        await f.save(extents);
        c = fsCheck(path);
        expect(c.output).toBe("");
        expect(c.clean).toBe(true);
        const back = xfsDb(path, [`inode ${ino}`, "bmap"])
          .trim()
          .split("\n");
        expect(back.length).toBe(50);
        if (isRoot() && h.geo.crc) {
          // The kernel checks every bmbt block it reads (CRC, owner, blkno, LSN not ahead of the log).
          const mnt = join(dir, "mnt");
          mkdirSync(mnt);
          await withLoopMount(path, mnt, {}, async (m) => {
            const out = execFileSync("xfs_io", ["-r", "-c", "fiemap", join(m, "f0")], { encoding: "utf8" });
            const mapped = out.split("\n").filter((l) => /^\s*\d+: \[/.test(l) && !l.includes("hole"));
            expect(mapped.length).toBe(50);
          });
        }
      } finally {
        await h.close();
      }
    });
  }
});
