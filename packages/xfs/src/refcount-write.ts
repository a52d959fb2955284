/**
 * Reference-count decrements (xfs_refcount.c, the "adjust" side) for copy-on-write: one file
 * stops sharing AG blocks [agbno, agbno+len). Records over the range lose one reference; a
 * record down to 1 goes (unshared blocks have no record), and records left side by side with
 * the same count are joined, as xfs_repair rebuilds them (it compares the tree with the
 * records it derives from the rmapbt, maximally merged).
 *
 * The refcount btree's blocks come from the AG's free space with the REFC owner (as
 * xfs_refcountbt_alloc_block does), counted in agf_refcount_blocks; root and level in the AGF.
 */
import { agbOffset } from "./ag.js";
import type { AgSpace } from "./alloc.js";
import { Btree, type Ptr } from "./btree.js";
import { REFC_COW_FLAG, type RefcountKey, type RefcountRec, refcountbtOps } from "./btree-refcount.js";
import { RMAP_OWN } from "./btree-rmap.js";
import { btreeDeleteAt, btreeInsert } from "./btree-update.js";
import { XfsFormatError, XfsFsError } from "./errors.js";

const REFC_OWNER = { owner: RMAP_OWN.REFC };

function writableRefcountTree(ag: AgSpace): Btree<RefcountRec, RefcountKey> {
  const { ctx, agno, agf } = ag;
  const geo = ctx.geo;
  return new Btree(refcountbtOps, {
    bufs: ctx.bufs,
    blockSize: geo.blockSize,
    crc: geo.crc,
    uuid: geo.metaUuid,
    owner: agno,
    agno,
    ptrToOffset: (p: Ptr) => {
      if (p < 0 || p >= agf.length)
        throw new XfsFormatError(`refcountbt pointer ${p} outside the AG`, { agno, file: geo.file });
      return agbOffset(geo, agno, p);
    },
    getRoot: () => ({ ptr: agf.refcountRoot, levels: agf.refcountLevel }),
    setRoot: (p: Ptr, levels: number) => {
      agf.refcountRoot = p;
      agf.refcountLevel = levels;
      ag.writeAgf();
    },
    allocBlock: async () => {
      const ext = await ag.alloc({ minlen: 1, maxlen: 1, near: agf.refcountRoot, owner: REFC_OWNER });
      if (!ext) throw new XfsFsError("ENOSPC", "no space for a refcount btree block", `<AG ${agno}>`);
      agf.refcountBlocks++;
      ag.writeAgf();
      return ext.agbno;
    },
    freeBlock: async (p: Ptr) => {
      ctx.bufs.forget(agbOffset(geo, agno, p));
      await ag.free(p, 1, REFC_OWNER);
      agf.refcountBlocks--;
      ag.writeAgf();
    },
  });
}

async function records(t: Btree<RefcountRec, RefcountKey>, lo: number, hi: number): Promise<RefcountRec[]> {
  const out: RefcountRec[] = [];
  if (hi < lo) return out;
  await t.queryRange({ startblock: lo }, { startblock: hi }, (r) => {
    if (!(r.startblock & REFC_COW_FLAG)) out.push({ ...r });
  });
  return out.filter((r) => r.startblock <= hi && r.startblock + r.blockcount > lo);
}

async function remove(t: Btree<RefcountRec, RefcountKey>, r: RefcountRec): Promise<void> {
  const cur = await t.lookup({ startblock: r.startblock }, "eq");
  if (!cur)
    throw new XfsFormatError(`refcount record at ${r.startblock} vanished`, { structure: "refcountbt" });
  await btreeDeleteAt(t, cur);
}

/** One reference less on AG blocks [agbno, agbno+len), every one of which is shared now. */
export async function refcountDecrement(ag: AgSpace, agbno: number, len: number): Promise<void> {
  await ag.fixFreelist();
  const t = writableRefcountTree(ag);
  const end = agbno + len;
  const hit = await records(t, agbno, end - 1);
  let covered = 0;
  for (const r of hit) covered += Math.min(end, r.startblock + r.blockcount) - Math.max(agbno, r.startblock);
  if (covered !== len)
    throw new XfsFormatError(`refcount records cover ${covered} of ${len} shared blocks at ${agbno}`, {
      structure: "refcountbt",
      agno: ag.agno,
    });
  // Neighbours just outside the range may join the decremented pieces.
  const around = [...(await records(t, agbno - 1, agbno - 1)), ...(await records(t, end, end))].filter(
    (r) => !hit.some((h) => h.startblock === r.startblock),
  );
  const pieces: RefcountRec[] = [...around];
  for (const r of hit) {
    const s = Math.max(agbno, r.startblock);
    const e = Math.min(end, r.startblock + r.blockcount);
    if (r.startblock < s) pieces.push({ ...r, blockcount: s - r.startblock });
    pieces.push({ startblock: s, blockcount: e - s, refcount: r.refcount - 1 });
    if (e < r.startblock + r.blockcount)
      pieces.push({ startblock: e, blockcount: r.startblock + r.blockcount - e, refcount: r.refcount });
  }
  for (const r of [...hit, ...around]) await remove(t, r);
  pieces.sort((a, b) => a.startblock - b.startblock);
  const merged: RefcountRec[] = [];
  for (const p of pieces) {
    if (p.refcount < 2) continue;
    const last = merged[merged.length - 1];
    if (last && last.startblock + last.blockcount === p.startblock && last.refcount === p.refcount)
      last.blockcount += p.blockcount;
    else merged.push({ ...p });
  }
  for (const r of merged) await btreeInsert(t, r);
}
