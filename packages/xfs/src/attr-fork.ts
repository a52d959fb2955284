/**
 * Where an inode's attribute fork starts (di_forkoff, in 8-byte units of the literal area) and
 * how it moves, as xfs_attr_leaf.c / xfs_bmap.c choose it: xfs_attr_shortform_bytesfit,
 * xfs_default_attroffset, and a new attribute fork beside a data-fork bmbt
 * (xfs_bmap_add_attrfork_btree). The data fork keeps its bytes at the start of the literal area;
 * a bmbt root there is encoded again for the fork's new size.
 */
import { NULL_PTR } from "./btree.js";
import { readBmdr, writeBmdr } from "./btree-bmap.js";
import type { XfsEditor } from "./editor.js";
import { XfsFormatError } from "./errors.js";
import { bmbtTree } from "./file-write.js";
import { forkArea } from "./fork.js";
import { coreSize, FMT_BTREE, FMT_DEV, FMT_EXTENTS, FMT_LOCAL, type XfsInode } from "./inode.js";

/** Bytes of a bmdr root with n key/pointer pairs (XFS_BMDR_SPACE_CALC). */
export const bmdrSpace = (n: number) => 4 + n * 16;
export const MINDBTPTRS = 3;
export const MINABTPTRS = 2;

export function litSize(inode: XfsInode): number {
  return inode.raw.length - coreSize(inode.version);
}

/** Bytes the data fork needs now (xfs_attr_shortform_bytesfit's dsize). */
export function dataBytes(inode: XfsInode): number {
  if (inode.format === FMT_LOCAL) return inode.size;
  if (inode.format === FMT_EXTENTS) return inode.nextents * 16;
  return 0;
}

/** xfs_attr_shortform_bytesfit: the fork offset (8-byte units) that fits `bytes` of short-form attributes, or 0. */
export function bytesFit(ed: XfsEditor, inode: XfsInode, bytes: number): number {
  const lit = litSize(inode);
  const offset = (lit - bytes) >> 3;
  if (inode.format === FMT_DEV) {
    const min = 8 >> 3;
    return offset >= min ? min : 0;
  }
  const area = forkArea(inode, "attr");
  if (area && bytes <= area.size) return inode.forkoff;
  if (!ed.fs.features.attr2) return 0;
  let dsize = dataBytes(inode);
  if (inode.format === FMT_BTREE) {
    if (inode.forkoff) return offset < inode.forkoff ? 0 : inode.forkoff;
    // A new attribute fork: the data fork keeps room for its root as it is now.
    const data = forkArea(inode, "data");
    if (data) dsize = bmdrSpace(readBmdr(inode.raw.subarray(data.start, data.start + data.size)).ptrs.length);
  }
  if (inode.format === FMT_EXTENTS && !inode.forkoff && dsize > defaultAttrOffset(ed, inode))
    dsize = bmdrSpace(MINDBTPTRS);
  const minforkoff = (Math.max(dsize, bmdrSpace(MINDBTPTRS)) + 7) >> 3;
  const maxforkoff = (lit - bmdrSpace(MINABTPTRS)) >> 3;
  if (offset >= maxforkoff) return maxforkoff;
  if (offset >= minforkoff) return offset;
  return 0;
}

/** xfs_default_attroffset (bytes): where an attribute fork starts when nothing better fits. */
export function defaultAttrOffset(ed: XfsEditor, inode: XfsInode): number {
  if (inode.format === FMT_DEV) return 8;
  return ed.fs.geometry.inodeSize === 256
    ? litSize(inode) - bmdrSpace(MINABTPTRS)
    : bmdrSpace(6 * MINABTPTRS);
}

/**
 * Moves the attribute fork offset, keeping the data fork's bytes where they are. A bmbt root in
 * the data fork is encoded again for its new size (its pointers sit after `maxrecs` keys, and
 * maxrecs follows the fork size), as the kernel writes the in-memory root back at flush.
 */
export function setForkoff(inode: XfsInode, forkoff: number): void {
  const lit = coreSize(inode.version);
  const data = forkArea(inode, "data");
  const root =
    inode.format === FMT_BTREE && data
      ? readBmdr(inode.raw.subarray(data.start, data.start + data.size))
      : null;
  // The data fork's content stays at the start of the literal area; clear what it no longer owns.
  inode.forkoff = forkoff;
  const newData = forkArea(inode, "data");
  if (data && newData && newData.size < data.size) inode.raw.fill(0, lit + newData.size, lit + data.size);
  if (root && newData) writeBmdr(inode.raw.subarray(newData.start, newData.start + newData.size), root);
}

/**
 * xfs_bmap_add_attrfork_btree: a new attribute fork at `forkoff` beside a data-fork bmbt. The root
 * stays in the inode when its entries fit the smaller data fork; else it moves into a new bmbt
 * block and the inode keeps one pointer to it (xfs_btree_new_iroot).
 */
export async function attrForkBesideBmbt(ed: XfsEditor, inode: XfsInode, forkoff: number): Promise<void> {
  const data = forkArea(inode, "data");
  if (!data) throw new XfsFormatError("btree data fork without an area", { inode: inode.ino });
  const root = readBmdr(inode.raw.subarray(data.start, data.start + data.size));
  if (bmdrSpace(root.ptrs.length) <= forkoff * 8) {
    setForkoff(inode, forkoff);
    return;
  }
  const t = bmbtTree(ed.ctx, ed.alloc, inode);
  const child = await t.host.allocBlock(root.ptrs[0]);
  t.writeNode({
    ptr: child,
    level: root.level,
    left: NULL_PTR,
    right: NULL_PTR,
    recs: [],
    keys: root.keys,
    highKeys: [],
    ptrs: root.ptrs,
  });
  writeBmdr(inode.raw.subarray(data.start, data.start + data.size), {
    level: root.level + 1,
    keys: [root.keys[0]],
    ptrs: [child],
  });
  setForkoff(inode, forkoff);
}
