/**
 * Reverse-mapping updates (xfs_rmap.c): record that an owner gained or lost an AG extent.
 *
 * Records stay maximally merged, as xfs_repair expects (it merges the mappings it observes and
 * wants each one covered by a single record): a new mapping joins a neighbour with the same owner
 * and flags that ends where it starts or starts where it ends (for file mappings only when the
 * file offsets are contiguous too); removing part of a record trims or splits it. Neighbours are
 * found with range queries, which also work when reflinked records overlap. A record whose start
 * moves is deleted and inserted again rather than updated, so key order stays right among
 * overlapping records.
 */
import type { Btree } from "./btree.js";
import { isInodeOwner, RMAP_OWN, type RmapKey, type RmapRec, rmapKeyOf } from "./btree-rmap.js";
import { btreeDeleteAt, btreeInsert, btreeUpdateAt } from "./btree-update.js";
import { XfsFormatError } from "./errors.js";

/** Who an extent belongs to (xfs_owner_info). */
export interface OwnerInfo {
  /** Inode number (as bigint) or one of RMAP_OWN. */
  owner: bigint;
  /** File offset of the first block (file mappings). */
  offset?: bigint;
  attrFork?: boolean;
  bmbtBlock?: boolean;
  unwritten?: boolean;
}

const MAX_LEN = 0xffffffff;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

function recOf(agbno: number, len: number, oi: OwnerInfo): RmapRec {
  return {
    startblock: agbno,
    blockcount: len,
    owner: oi.owner,
    offset: isInodeOwner(oi.owner) && !oi.bmbtBlock ? (oi.offset ?? 0n) : 0n,
    attrFork: oi.attrFork ?? false,
    bmbtBlock: oi.bmbtBlock ?? false,
    unwritten: oi.unwritten ?? false,
  };
}

function sameOwner(a: RmapRec, b: RmapRec): boolean {
  return (
    a.owner === b.owner &&
    a.attrFork === b.attrFork &&
    a.bmbtBlock === b.bmbtBlock &&
    a.unwritten === b.unwritten
  );
}

function ignoresOffset(r: RmapRec): boolean {
  return !isInodeOwner(r.owner) || r.bmbtBlock;
}

/** Can `b` follow `a` in one record? */
function mergeable(a: RmapRec, b: RmapRec): boolean {
  if (a.owner === RMAP_OWN.NULL || !sameOwner(a, b)) return false;
  if (a.startblock + a.blockcount !== b.startblock || a.blockcount + b.blockcount > MAX_LEN) return false;
  return ignoresOffset(a) || a.offset + BigInt(a.blockcount) === b.offset;
}

/** Records overlapping the AG blocks [lo, hi]. */
async function overlapping(t: Btree<RmapRec, RmapKey>, lo: number, hi: number): Promise<RmapRec[]> {
  const out: RmapRec[] = [];
  await t.queryRange(
    { startblock: lo, owner: 0n, offset: 0n },
    { startblock: hi, owner: U64_MAX, offset: U64_MAX },
    (r) => {
      out.push(r);
    },
  );
  return out;
}

async function deleteRec(t: Btree<RmapRec, RmapKey>, r: RmapRec): Promise<void> {
  const cur = await t.lookup(rmapKeyOf(r), "eq");
  if (!cur)
    throw new XfsFormatError(`rmap record ${r.startblock}+${r.blockcount} vanished`, {
      structure: "rmapbt",
      agno: t.host.agno,
    });
  await btreeDeleteAt(t, cur);
}

async function updateLen(t: Btree<RmapRec, RmapKey>, r: RmapRec, blockcount: number): Promise<void> {
  const cur = await t.lookup(rmapKeyOf(r), "eq");
  if (!cur)
    throw new XfsFormatError(`rmap record ${r.startblock}+${r.blockcount} vanished`, {
      structure: "rmapbt",
      agno: t.host.agno,
    });
  await btreeUpdateAt(t, cur, { ...r, blockcount });
}

/** Record that `oi` now owns AG blocks [agbno, agbno+len). */
export async function rmapMap(
  t: Btree<RmapRec, RmapKey>,
  agbno: number,
  len: number,
  oi: OwnerInfo,
): Promise<void> {
  const rec = recOf(agbno, len, oi);
  const around = await overlapping(t, Math.max(agbno - 1, 0), agbno + len);
  for (const r of around) {
    const rs = r.startblock;
    const re = rs + r.blockcount;
    if (rs < agbno + len && re > agbno && sameOwner(r, rec)) {
      throw new XfsFormatError(`rmap: blocks ${agbno}+${len} already mapped to this owner`, {
        structure: "rmapbt",
        agno: t.host.agno,
      });
    }
  }
  const left = agbno > 0 ? around.find((r) => mergeable(r, rec)) : undefined;
  const right = around.find((r) => mergeable(rec, r));
  if (left && right && left.blockcount + len + right.blockcount <= MAX_LEN) {
    await deleteRec(t, right);
    await updateLen(t, left, left.blockcount + len + right.blockcount);
  } else if (left) {
    await updateLen(t, left, left.blockcount + len);
  } else if (right) {
    await deleteRec(t, right);
    await btreeInsert(t, { ...rec, blockcount: len + right.blockcount });
  } else {
    await btreeInsert(t, rec);
  }
}

/** Record that `oi` no longer owns AG blocks [agbno, agbno+len); one record must cover them. */
export async function rmapUnmap(
  t: Btree<RmapRec, RmapKey>,
  agbno: number,
  len: number,
  oi: OwnerInfo,
): Promise<void> {
  const want = recOf(agbno, len, oi);
  const cands = await overlapping(t, agbno, agbno + len - 1);
  const r = cands.find(
    (c) =>
      c.owner === want.owner &&
      c.attrFork === want.attrFork &&
      c.bmbtBlock === want.bmbtBlock &&
      c.startblock <= agbno &&
      c.startblock + c.blockcount >= agbno + len &&
      (ignoresOffset(c) || c.offset + BigInt(agbno - c.startblock) === want.offset),
  );
  if (!r) {
    throw new XfsFormatError(
      `rmap: no record of owner 0x${oi.owner.toString(16)} covers blocks ${agbno}+${len}`,
      {
        structure: "rmapbt",
        agno: t.host.agno,
      },
    );
  }
  const leftLen = agbno - r.startblock;
  const rightLen = r.startblock + r.blockcount - agbno - len;
  if (leftLen === 0) {
    await deleteRec(t, r);
    if (rightLen > 0) {
      const off = ignoresOffset(r) ? r.offset : r.offset + BigInt(leftLen + len);
      await btreeInsert(t, { ...r, startblock: agbno + len, blockcount: rightLen, offset: off });
    }
    return;
  }
  await updateLen(t, r, leftLen);
  if (rightLen > 0) {
    const off = ignoresOffset(r) ? r.offset : r.offset + BigInt(leftLen + len);
    await btreeInsert(t, { ...r, startblock: agbno + len, blockcount: rightLen, offset: off });
  }
}
