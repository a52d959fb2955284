/**
 * The per-AG metadata reservation the kernel keeps (libxfs xfs_ag_resv.c): at mount it sets
 * aside, in every AG, enough free blocks for the finobt, refcountbt and rmapbt to grow to their
 * largest possible size, less what they already use. Ordinary allocations (file data,
 * directories, attributes, bmbt blocks, inode chunks) may not dip into it, so an AG the editor
 * fills must keep these blocks free too — else the kernel finds its reservation short at mount
 * ("Per-AG reservation for AG N failed") and may run out of space in a btree split.
 *
 * Per tree, ask = the tree's maximum size, used = its current size:
 * - finobt (xfs_finobt_calc_reserves): max size of an inode btree indexing every inode the AG
 *   could hold, agblocks · inopblock / 64 records (the log's blocks are not counted in the AG
 *   that holds it); used = agi_fblocks with inobtcount, else counted by walking the tree — here
 *   taken as 0 (holding back a few blocks more than the kernel, never fewer);
 * - refcountbt (xfs_refcountbt_calc_reserves, reflink): max size for agblocks records (log
 *   excluded); used = agf_refcount_blocks;
 * - rmapbt (xfs_rmapbt_calc_reserves): the larger of 1% of the AG and its max size for agblocks
 *   records (log excluded). Its blocks live in the free space (AGFL), so at mount the kernel
 *   hides the whole ask from the free-block count, not ask − used (__xfs_ag_resv_init); that is
 *   what must be there for the mount to get its reservation, so that is what is kept here.
 * Plus the allocator's set-aside (xfs_alloc_set_aside: 4 AGFL blocks + 4 per AG).
 * The kernel checks the sum over all AGs against the free-block count; keeping each AG's share
 * in that AG is stricter and also what allocation in the AG later needs.
 * Max size (xfs_btree_calc_size) with half-full blocks: leaves = ⌈records / leaf minrecs⌉, then
 * each level above ⌈below / node minrecs⌉ up to one root, all summed. minrecs = maxrecs / 2,
 * maxrecs = (block size − header) / entry size:
 *
 * | tree       | header (v5 / v4) | leaf record | node entry (keys + ptr) |
 * | ---------- | ---------------- | ----------- | ----------------------- |
 * | inobt      | 56 / 16          | 16          | 4 + 4                   |
 * | refcountbt | 56               | 12          | 4 + 4                   |
 * | rmapbt     | 56               | 24          | 2 × 20 + 4              |
 */
import type { Agf, SpaceGeometry } from "./ag.js";

/** xfs_btree_calc_size: blocks of a tree of `records` records with half-full blocks. */
export function btreeMaxSize(leafMinrecs: number, nodeMinrecs: number, records: number): number {
  let level = Math.ceil(records / leafMinrecs);
  let blocks = level;
  while (level > 1) {
    level = Math.ceil(level / nodeMinrecs);
    blocks += level;
  }
  return blocks;
}

function minrecs(geo: SpaceGeometry, entry: number): number {
  const hdr = geo.crc ? 56 : 16;
  return Math.floor(Math.floor((geo.blockSize - hdr) / entry) / 2);
}

/** Blocks the kernel holds back in this AG beyond what its metadata btrees already use. */
export function agReservation(geo: SpaceGeometry, agno: number, agf: Agf): number {
  let agblocks = agf.length;
  if (geo.logAgno === agno && geo.logBlocks) agblocks -= geo.logBlocks;
  let reserve = 0;
  if (geo.finobt) {
    const records = Math.floor((agblocks * geo.inopblock) / 64);
    reserve += btreeMaxSize(minrecs(geo, 16), minrecs(geo, 8), records);
  }
  if (geo.reflink) {
    const ask = btreeMaxSize(minrecs(geo, 12), minrecs(geo, 8), agblocks);
    reserve += Math.max(0, ask - agf.refcountBlocks);
  }
  if (geo.rmapbt) {
    const ask = Math.max(
      Math.floor(agblocks / 100),
      btreeMaxSize(minrecs(geo, 24), minrecs(geo, 44), agblocks),
    );
    reserve += ask;
  }
  return reserve + 8;
}
