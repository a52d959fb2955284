/**
 * Shared-extent queries (xfs_refcount.c, read side): on a reflink filesystem, is any block of an
 * AG extent shared by more than one file mapping? The refcount btree root and level live in the
 * AGF; records with the CoW flag (staging extents) are not sharing.
 */
import { type Agf, agbOffset, type SpaceGeometry } from "./ag.js";
import { Btree, type Ptr } from "./btree.js";
import { REFC_COW_FLAG, type RefcountKey, type RefcountRec, refcountbtOps } from "./btree-refcount.js";
import type { BufCache } from "./buf.js";
import { XfsFormatError } from "./errors.js";

export function refcountTree(
  geo: SpaceGeometry,
  bufs: BufCache,
  agno: number,
  agf: Agf,
): Btree<RefcountRec, RefcountKey> {
  const len = agf.length;
  return new Btree(refcountbtOps, {
    bufs,
    blockSize: geo.blockSize,
    crc: geo.crc,
    uuid: geo.metaUuid,
    owner: agno,
    agno,
    ptrToOffset: (p: Ptr) => {
      if (p < 0 || p >= len)
        throw new XfsFormatError(`refcountbt pointer ${p} outside the AG`, { agno, file: geo.file });
      return agbOffset(geo, agno, p);
    },
    getRoot: () => ({ ptr: agf.refcountRoot, levels: agf.refcountLevel }),
    setRoot: () => {
      throw new Error("refcountbt is read-only here");
    },
    allocBlock: () => Promise.reject(new Error("refcountbt is read-only here")),
    freeBlock: () => Promise.reject(new Error("refcountbt is read-only here")),
  });
}

/** The shared parts (refcount > 1) of AG extent [agbno, agbno+len), in block order. */
export async function sharedRanges(
  geo: SpaceGeometry,
  bufs: BufCache,
  agno: number,
  agf: Agf,
  agbno: number,
  len: number,
): Promise<{ agbno: number; len: number; refcount: number }[]> {
  if (!geo.reflink) return [];
  const t = refcountTree(geo, bufs, agno, agf);
  const out: { agbno: number; len: number; refcount: number }[] = [];
  await t.queryRange({ startblock: agbno }, { startblock: agbno + len - 1 }, (r) => {
    if (r.startblock & REFC_COW_FLAG || r.refcount < 2) return;
    const s = Math.max(r.startblock, agbno);
    const e = Math.min(r.startblock + r.blockcount, agbno + len);
    if (s < e) out.push({ agbno: s, len: e - s, refcount: r.refcount });
  });
  return out;
}

/** True when any block of the extent is shared. */
export async function isShared(
  geo: SpaceGeometry,
  bufs: BufCache,
  agno: number,
  agf: Agf,
  agbno: number,
  len: number,
): Promise<boolean> {
  return (await sharedRanges(geo, bufs, agno, agf, agbno, len)).length > 0;
}
