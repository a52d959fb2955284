/**
 * Attribute writes: set and remove attributes in the short-form and single-leaf forms, the way
 * xfs_attr_leaf.c lays them out, so xfs_repair and the kernel read them back unchanged.
 *
 * - Short form: entries appended; the attribute fork offset (di_forkoff) is chosen like
 *   xfs_attr_shortform_bytesfit (attr2: move it to give the attribute fork room, keeping
 *   room for the data fork and a minimal btree root on both sides); an attribute fork is created
 *   when the inode has none, and removed when its last attribute goes.
 * - Names or values of 255 bytes or more, or a short form that no longer fits, move to a leaf
 *   block at attribute-fork block 0 (xfs_attr_shortform_to_leaf). The leaf is rewritten whole on
 *   every change: entries sorted by hash, names/values packed from the block end, usedbytes,
 *   firstused and one free-map region exact, no holes. It goes back to short form when
 *   everything fits again (xfs_attr_leaf_to_shortform).
 * - Values too large for a leaf entry (3/4 of a block) are stored remote, in their own
 *   attribute-fork blocks (v5: one XARM header per block).
 * - More than one leaf: node form, the leaves under a dabtree as deep as their number needs
 *   (da-btree-write.ts, shared with directories), laid out whole when a leaf form outgrows its
 *   block and when a tree is down to two leaves; in between changed one leaf at a time
 *   (attr-node-write.ts).
 * - A first attribute beside a data-fork bmbt: the fork offset leaves the data fork room for its
 *   root as it is (xfs_attr_shortform_bytesfit), or the default offset, and the root moves into a
 *   block when it no longer fits (xfs_bmap_add_attrfork_btree).
 * - An attribute fork whose mappings outgrow the inode becomes a bmbt (and extents again when
 *   they fit), through the data fork's generic bmbt code (file-write.ts, whichfork = attr).
 */

import { POSIX_ACL_ACCESS, POSIX_ACL_DEFAULT, SGI_ACL_DEFAULT, SGI_ACL_FILE } from "./attr.js";
import { attrForkBesideBmbt, bytesFit, defaultAttrOffset, setForkoff } from "./attr-fork.js";
import {
  ATTR_LEAF_MAGIC,
  ATTR_LOCAL,
  ATTR_NSP_MASK,
  ATTR_ROOT,
  ATTR_SECURE,
  ATTR3_LEAF_MAGIC,
  decodeAttrLeaf,
} from "./attr-leaf.js";
import { nodeRemoveAttr, nodeSetAttr, nodeTreeSmall } from "./attr-node-write.js";
import { ATTR3_RMT_HDR_SIZE, ATTR3_RMT_MAGIC, remoteBlocks } from "./attr-remote.js";
import { decodeSfAttrs, type XfsRawAttr } from "./attr-sf.js";
import { readForkExtents } from "./bmap.js";
import { btreeDeleteAt, btreeInsert } from "./btree-update.js";
import { be16, setBe16, setBe32, setBe64 } from "./bytes.js";
import { DA_NODE_MAGIC, DA3_NODE_MAGIC } from "./da-btree.js";
import { type DaBlock, type DaHost, daBuild, daNodeEntries } from "./da-btree-write.js";
import { daHashName } from "./dir2-hash.js";
import { dirLocalToBlock } from "./dir2-write.js";
import type { XfsEditor } from "./editor.js";
import { XfsFormatError, XfsFsError, type XfsLocation, XfsUnsupportedError } from "./errors.js";
import { bmbtTree, buildFork, freeBmbtBlocks } from "./file-write.js";
import { forkArea, mergeExtents, type XfsExtent } from "./fork.js";
import { FMT_BTREE, FMT_EXTENTS, FMT_LOCAL, S_IFDIR, S_IFLNK, S_IFMT, type XfsInode } from "./inode.js";
import { writeSymlinkTarget } from "./symlink.js";

/** Names and values this long or longer cannot be short-form (XFS_ATTR_SF_ENTSIZE_MAX). */
const SF_ENTSIZE_MAX = 0xff;
const XATTR_SIZE_MAX = 65536;

export interface Attr {
  flags: number;
  name: Uint8Array;
  value: Uint8Array;
}

export function sameAttr(a: { flags: number; name: Uint8Array }, flags: number, name: Uint8Array): boolean {
  if ((a.flags & ATTR_NSP_MASK) !== (flags & ATTR_NSP_MASK) || a.name.length !== name.length) return false;
  for (let i = 0; i < name.length; i++) if (a.name[i] !== name[i]) return false;
  return true;
}

function unsupported(ed: XfsEditor, inode: XfsInode, feature: string, what: string): XfsUnsupportedError {
  return new XfsUnsupportedError(feature, `${what} cannot be written yet`, {
    file: ed.device.name,
    inode: inode.ino,
  });
}

// ---------------------------------------------------------------- short form

function sfBytes(attrs: Attr[]): number {
  return 4 + attrs.reduce((n, a) => n + 3 + a.name.length + a.value.length, 0);
}

function canBeSf(attrs: Attr[]): boolean {
  return attrs.every((a) => a.name.length < SF_ENTSIZE_MAX && a.value.length < SF_ENTSIZE_MAX);
}

function writeSfAttrs(inode: XfsInode, attrs: Attr[]): void {
  const area = forkArea(inode, "attr");
  if (!area) throw new Error("no attribute fork");
  const out = inode.raw;
  out.fill(0, area.start, area.start + area.size);
  let p = area.start;
  setBe16(out, p, sfBytes(attrs));
  out[p + 2] = attrs.length;
  p += 4;
  for (const a of attrs) {
    out[p] = a.name.length;
    out[p + 1] = a.value.length;
    out[p + 2] = a.flags & ATTR_NSP_MASK;
    out.set(a.name, p + 3);
    out.set(a.value, p + 3 + a.name.length);
    p += 3 + a.name.length + a.value.length;
  }
  inode.aformat = FMT_LOCAL;
  inode.anextents = 0;
}

// ---------------------------------------------------------------- leaf

function leafHdrSize(v5: boolean): number {
  return v5 ? 80 : 32;
}
const localSize = (a: Attr) => (3 + a.name.length + a.value.length + 3) & ~3;
const remoteSize = (a: { name: Uint8Array }) => (11 + a.name.length + 3) & ~3;

export interface LeafAttr extends Attr {
  /** Remote value location (attribute-fork block) when stored remote. */
  remote?: { blk: number; len: number };
}

export function isLocal(a: Attr, blksize: number): boolean {
  return localSize(a) < (blksize >> 1) + (blksize >> 2);
}

export function leafBytes(attrs: LeafAttr[], v5: boolean): number {
  let used = leafHdrSize(v5) + attrs.length * 8;
  for (const a of attrs) used += a.remote ? remoteSize(a) : localSize(a);
  return used;
}
export function attrLeafFits(attrs: LeafAttr[], blksize: number, v5: boolean): boolean {
  return leafBytes(attrs, v5) <= blksize;
}

async function attrExtents(ed: XfsEditor, inode: XfsInode): Promise<XfsExtent[]> {
  return readForkExtents(ed.fs.geometry, inode, "attr", (o, l) => ed.device.read(o, l), {
    file: ed.device.name,
  });
}

export function mapAttrBlock(exts: XfsExtent[], lblk: number): number {
  for (const e of exts)
    if (lblk >= e.startoff && lblk < e.startoff + e.blockcount) return e.startblock + (lblk - e.startoff);
  return -1;
}

/**
 * Records a change of the attribute fork's mapping in `exts` (merged: logically and physically
 * contiguous neighbours join, as the kernel's do). The fork itself is written once per call, by
 * flushAttrExtents, so a change that maps many blocks does not rebuild a bmbt per block.
 */
function writeAttrExtents(exts: XfsExtent[]): void {
  exts.splice(0, exts.length, ...mergeExtents(exts));
}

/**
 * Stores the attribute fork's mapping: extents format while the records fit the fork, else a bmbt
 * (the data fork's generic bmbt with whichfork = attr: xfs_bmap_extents_to_btree), and back to
 * extents once they fit again (xfs_bmap_btree_to_extents).
 */
export async function flushAttrExtents(ed: XfsEditor, inode: XfsInode, exts: XfsExtent[]): Promise<void> {
  const area = forkArea(inode, "attr");
  if (!area || inode.aformat === FMT_LOCAL) return;
  writeAttrExtents(exts);
  if (inode.aformat === FMT_BTREE) {
    const t = bmbtTree(ed.ctx, ed.alloc, inode, "attr");
    if (exts.length > Math.floor(area.size / 16)) {
      // Still a bmbt: only the records that changed go out and in (a node-form change maps or
      // unmaps a block or two; relaying the whole tree each time would cost O(attributes)).
      const key = (e: XfsExtent) => `${e.startoff}:${e.startblock}:${e.blockcount}:${e.unwritten}`;
      const old: XfsExtent[] = [];
      for await (const r of t.records()) old.push(r);
      const want = new Set(exts.map(key));
      const have = new Set(old.map(key));
      for (const r of old) {
        if (want.has(key(r))) continue;
        const cur = await t.lookup({ startoff: r.startoff }, "eq");
        if (!cur)
          throw new XfsFormatError(`attribute bmbt lost its record at ${r.startoff}`, { inode: inode.ino });
        await btreeDeleteAt(t, cur);
      }
      for (const r of exts) if (!have.has(key(r))) await btreeInsert(t, { ...r });
      inode.anextents = exts.length;
      return;
    }
    await freeBmbtBlocks(ed.ctx, ed.alloc, inode, await t.blocks(), "attr");
  }
  await buildFork(
    ed.ctx,
    ed.alloc,
    inode,
    exts.map((x) => ({ ...x })),
    "attr",
  );
}

const attrOwner = (inode: XfsInode, off: number) => ({
  owner: BigInt(inode.ino),
  offset: BigInt(off),
  attrFork: true,
});

/** Allocates `n` contiguous blocks mapped at attribute-fork block `lblk`. */
export async function allocAttrBlocks(
  ed: XfsEditor,
  inode: XfsInode,
  exts: XfsExtent[],
  lblk: number,
  n: number,
): Promise<number> {
  const g = ed.fs.geometry;
  const r = await ed.alloc.alloc(g.inoToAgno(inode.ino), {
    minlen: n,
    maxlen: n,
    near: g.inoToAgbno(inode.ino),
    owner: attrOwner(inode, lblk),
  });
  if (!r) throw new XfsFsError("ENOSPC", "no space for attribute blocks", `<inode ${inode.ino}>`);
  const fsb = g.agbToFsb(r.agno, r.ext.agbno);
  exts.push({ startoff: lblk, startblock: fsb, blockcount: n, unwritten: false });
  writeAttrExtents(exts);
  inode.nblocks += n;
  return fsb;
}

/** Frees the blocks mapped at [lblk, lblk + n), trimming or splitting the extents that hold them. */
export async function freeAttrBlocks(
  ed: XfsEditor,
  inode: XfsInode,
  exts: XfsExtent[],
  lblk: number,
  n: number,
): Promise<void> {
  const g = ed.fs.geometry;
  const end = lblk + n;
  const out: XfsExtent[] = [];
  let freed = 0;
  for (const e of exts) {
    const eEnd = e.startoff + e.blockcount;
    const lo = Math.max(lblk, e.startoff);
    const hi = Math.min(end, eEnd);
    if (lo >= hi) {
      out.push(e);
      continue;
    }
    const fsb = e.startblock + (lo - e.startoff);
    for (let b = 0; b < hi - lo; b++) ed.ctx.bufs.forget(g.fsbToByte(fsb + b));
    await ed.alloc.free(g.fsbToAgno(fsb), g.fsbToAgbno(fsb), hi - lo, attrOwner(inode, lo));
    inode.nblocks -= hi - lo;
    freed += hi - lo;
    if (e.startoff < lo) out.push({ ...e, blockcount: lo - e.startoff });
    if (hi < eEnd)
      out.push({ ...e, startoff: hi, startblock: e.startblock + (hi - e.startoff), blockcount: eEnd - hi });
  }
  if (freed !== n)
    throw new XfsFormatError(`attribute blocks ${lblk}+${n} are not all mapped`, { inode: inode.ino });
  exts.splice(0, exts.length, ...out);
  writeAttrExtents(exts);
}

/**
 * Maps attribute-fork blocks 0..n-1: one contiguous run when the free space has one, else
 * block by block. Returns each block's fs block.
 */
async function allocAttrRun(ed: XfsEditor, inode: XfsInode, exts: XfsExtent[], n: number): Promise<number[]> {
  const g = ed.fs.geometry;
  const r =
    n > 1
      ? await ed.alloc.alloc(g.inoToAgno(inode.ino), {
          minlen: n,
          maxlen: n,
          near: g.inoToAgbno(inode.ino),
          owner: attrOwner(inode, 0),
        })
      : null;
  if (!r) {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(await allocAttrBlocks(ed, inode, exts, i, 1));
    return out;
  }
  const fsb = g.agbToFsb(r.agno, r.ext.agbno);
  exts.push({ startoff: 0, startblock: fsb, blockcount: n, unwritten: false });
  writeAttrExtents(exts);
  inode.nblocks += n;
  return Array.from({ length: n }, (_, i) => fsb + i);
}

/** First unmapped run of `n` attribute-fork blocks at or after block 1 (block 0 is the leaf). */
export function firstUnused(exts: XfsExtent[], n: number): number {
  let at = 1;
  for (const e of [...exts].sort((a, b) => a.startoff - b.startoff)) {
    if (e.startoff + e.blockcount <= at) continue;
    if (e.startoff - at >= n) return at;
    at = Math.max(at, e.startoff + e.blockcount);
  }
  return at;
}

export async function writeRemoteValue(
  ed: XfsEditor,
  inode: XfsInode,
  exts: XfsExtent[],
  value: Uint8Array,
): Promise<number> {
  const g = ed.fs.geometry;
  const n = remoteBlocks(value.length, g.blockSize, g.v5);
  const lblk = firstUnused(exts, n);
  const fsb = await allocAttrBlocks(ed, inode, exts, lblk, n);
  let pos = 0;
  for (let k = 0; k < n; k++) {
    const buf = ed.ctx.bufs.fresh(g.fsbToByte(fsb + k), g.blockSize, "remote attribute block");
    const b = buf.data;
    if (g.v5) {
      const bytes = Math.min(g.blockSize - ATTR3_RMT_HDR_SIZE, value.length - pos);
      setBe32(b, 0, ATTR3_RMT_MAGIC);
      setBe32(b, 4, pos);
      setBe32(b, 8, bytes);
      b.set(g.metaUuid.subarray(0, 16), 16);
      setBe64(b, 32, inode.ino);
      setBe64(b, 40, g.fsbToDaddr(fsb + k));
      b.set(value.subarray(pos, pos + bytes), ATTR3_RMT_HDR_SIZE);
      pos += bytes;
      ed.ctx.bufs.dirty(buf, { crcOffset: 12, lsnOffset: 48 });
    } else {
      const bytes = Math.min(g.blockSize, value.length - pos);
      b.set(value.subarray(pos, pos + bytes), 0);
      pos += bytes;
      ed.ctx.bufs.dirty(buf, {});
    }
  }
  return lblk;
}

/** Writes the whole leaf block at attribute-fork block 0. */
export async function writeLeaf(
  ed: XfsEditor,
  inode: XfsInode,
  fsb: number,
  attrs: LeafAttr[],
  fresh: boolean,
  sib: { forw: number; back: number } = { forw: 0, back: 0 },
): Promise<void> {
  const g = ed.fs.geometry;
  const bs = g.blockSize;
  const v5 = g.v5;
  const off = g.fsbToByte(fsb);
  const buf = fresh
    ? ed.ctx.bufs.fresh(off, bs, "attribute leaf")
    : await ed.ctx.bufs.read(off, bs, "attribute leaf");
  const b = buf.data;
  b.fill(0);
  setBe32(b, 0, sib.forw);
  setBe32(b, 4, sib.back);
  setBe16(b, 8, v5 ? ATTR3_LEAF_MAGIC : ATTR_LEAF_MAGIC);
  const hdr = leafHdrSize(v5);
  const h = v5 ? 56 : 12;
  const sorted = attrs.map((a) => ({ a, hash: daHashName(a.name) })).sort((x, y) => x.hash - y.hash);
  let top = bs;
  let used = 0;
  sorted.forEach(({ a, hash }, i) => {
    const size = a.remote ? remoteSize(a) : localSize(a);
    top -= size;
    used += size;
    const e = hdr + i * 8;
    setBe32(b, e, hash);
    setBe16(b, e + 4, top);
    b[e + 6] = (a.flags & ATTR_NSP_MASK) | (a.remote ? 0 : ATTR_LOCAL);
    if (a.remote) {
      setBe32(b, top, a.remote.blk);
      setBe32(b, top + 4, a.remote.len);
      b[top + 8] = a.name.length;
      b.set(a.name, top + 9);
    } else {
      setBe16(b, top, a.value.length);
      b[top + 2] = a.name.length;
      b.set(a.name, top + 3);
      b.set(a.value, top + 3 + a.name.length);
    }
  });
  setBe16(b, h, sorted.length);
  setBe16(b, h + 2, used);
  // firstused: the lowest name offset (v5 stores a full block as 0: XFS_ATTR3_LEAF_NULLOFF).
  setBe16(b, h + 4, top === 65536 ? 0 : top);
  b[h + 6] = 0; // holes
  const base = hdr + sorted.length * 8;
  setBe16(b, h + 8, base);
  setBe16(b, h + 10, top - base);
  if (v5) {
    setBe64(b, 16, g.fsbToDaddr(fsb));
    b.set(g.metaUuid.subarray(0, 16), 32);
    setBe64(b, 48, inode.ino);
  }
  ed.ctx.bufs.dirty(buf, v5 ? { crcOffset: 12, lsnOffset: 24 } : {});
}

// ---------------------------------------------------------------- read current state

interface AttrState {
  form: "none" | "sf" | "leaf" | "node";
  attrs: LeafAttr[];
  exts: XfsExtent[];
  leafFsb: number;
}

async function readState(ed: XfsEditor, inode: XfsInode): Promise<AttrState> {
  const at: XfsLocation = { file: ed.device.name, inode: inode.ino, structure: "attribute fork" };
  const area = forkArea(inode, "attr");
  if (!area) return { form: "none", attrs: [], exts: [], leafFsb: -1 };
  if (area.format === FMT_LOCAL) {
    const raw = decodeSfAttrs(inode.raw.slice(area.start, area.start + area.size), at);
    return {
      form: "sf",
      attrs: raw.map((a) => ({ flags: a.flags, name: a.name, value: a.value ?? new Uint8Array() })),
      exts: [],
      leafFsb: -1,
    };
  }
  const exts = await attrExtents(ed, inode);
  if (inode.anextents === 0 || exts.length === 0) return { form: "none", attrs: [], exts: [], leafFsb: -1 };
  const fsb = mapAttrBlock(exts, 0);
  if (fsb < 0) throw new XfsFormatError("attribute block 0 is not mapped", at);
  const g = ed.fs.geometry;
  const buf = await ed.ctx.bufs.read(g.fsbToByte(fsb), g.blockSize, "attribute leaf");
  const magic = be16(buf.data, 8);
  if (magic === (g.v5 ? DA3_NODE_MAGIC : DA_NODE_MAGIC)) {
    // Node form: every attribute with its value (rewritten whole on change, see rebuild).
    const all = await ed.fs.inodeAttrs(inode);
    return {
      form: "node",
      attrs: all.map((a) => ({ flags: a.flags, name: a.name, value: a.value })),
      exts,
      leafFsb: -1,
    };
  }
  if (magic !== (g.v5 ? ATTR3_LEAF_MAGIC : ATTR_LEAF_MAGIC))
    throw new XfsFormatError(`bad attribute block magic 0x${magic.toString(16)}`, at);
  const leaf = decodeAttrLeaf(buf.data, g.v5, at);
  const attrs: LeafAttr[] = [];
  for (const e of leaf.entries as (XfsRawAttr & { hashval: number })[]) {
    if (e.remote) {
      const stored = (await ed.fs.inodeAttrs(inode)).find((s) => sameAttr(s, e.flags, e.name));
      attrs.push({
        flags: e.flags,
        name: e.name,
        value: stored?.value ?? new Uint8Array(),
        remote: e.remote,
      });
    } else attrs.push({ flags: e.flags, name: e.name, value: e.value ?? new Uint8Array() });
  }
  return { form: "leaf", attrs, exts, leafFsb: fsb };
}

// ---------------------------------------------------------------- set / remove

/** Creates or replaces attribute (namespace `flags`, `name`) on `inode`; the caller stores the inode. */
export async function setAttr(
  ed: XfsEditor,
  inode: XfsInode,
  flags: number,
  name: Uint8Array,
  value: Uint8Array,
): Promise<void> {
  if (name.length === 0 || name.length > 255)
    throw new XfsFsError("EINVAL", "bad attribute name length", `<inode ${inode.ino}>`);
  if (value.length > XATTR_SIZE_MAX)
    throw new XfsFsError("EFBIG", "attribute value too large", `<inode ${inode.ino}>`);
  // Node form: only the leaf the hash leads to changes (attr-node-write.ts).
  if (await nodeSetAttr(ed, inode, flags, name, value)) return;
  const st = await readState(ed, inode);
  const next: LeafAttr[] = st.attrs.filter((a) => !sameAttr(a, flags, name));
  const replaced = st.attrs.find((a) => sameAttr(a, flags, name));
  next.push({ flags: flags & ATTR_NSP_MASK, name, value });
  await store(ed, inode, st, next, replaced);
}

/** Removes an attribute; ENODATA when absent. The caller stores the inode. */
export async function removeAttr(
  ed: XfsEditor,
  inode: XfsInode,
  flags: number,
  name: Uint8Array,
): Promise<void> {
  if (await nodeRemoveAttr(ed, inode, flags, name)) {
    if (!(await nodeTreeSmall(ed, inode))) return;
    // Collapsed to a leaf or two: laid out whole, into one leaf or short form when it fits.
    const st = await readState(ed, inode);
    await store(ed, inode, st, st.attrs);
    return;
  }
  const st = await readState(ed, inode);
  const old = st.attrs.find((a) => sameAttr(a, flags, name));
  if (!old) throw new XfsFsError("ENODATA", "no such attribute", `<inode ${inode.ino}>`);
  await store(
    ed,
    inode,
    st,
    st.attrs.filter((a) => a !== old),
    old,
  );
}

/** Lays the attributes `next` out in the form they need, then writes the fork's mapping. */
async function store(
  ed: XfsEditor,
  inode: XfsInode,
  st: AttrState,
  next: LeafAttr[],
  dropped?: LeafAttr,
): Promise<void> {
  await storeForms(ed, inode, st, next, dropped);
  await flushAttrExtents(ed, inode, st.exts);
}

async function storeForms(
  ed: XfsEditor,
  inode: XfsInode,
  st: AttrState,
  next: LeafAttr[],
  dropped?: LeafAttr,
): Promise<void> {
  const g = ed.fs.geometry;
  if (st.form === "node") {
    // Node form is rewritten whole: every block goes, values are written again.
    await freeAll(ed, inode, st);
    for (const a of next) a.remote = undefined;
  } else if (dropped?.remote) {
    // The remote value of a replaced or removed attribute goes first.
    await freeAttrBlocks(
      ed,
      inode,
      st.exts,
      dropped.remote.blk,
      remoteBlocks(dropped.remote.len, g.blockSize, g.v5),
    );
  }
  if (next.length === 0) {
    await freeAll(ed, inode, st);
    // xfs_attr_fork_remove: no attribute fork at all.
    const area = forkArea(inode, "attr");
    if (area) inode.raw.fill(0, area.start, area.start + area.size);
    setForkoff(inode, 0);
    inode.aformat = FMT_EXTENTS;
    inode.anextents = 0;
    return;
  }
  // Short form when everything fits the inode.
  if (canBeSf(next)) {
    const bytes = sfBytes(next);
    let fo = bytesFitFor(ed, inode, bytes, st.form);
    if (
      !inode.forkoff &&
      inode.format === FMT_LOCAL &&
      inode.size > (fo ? fo * 8 : defaultAttrOffset(ed, inode))
    ) {
      // xfs_bmap_add_attrfork: the new fork goes at bytesfit's offset (capped at maxforkoff, which
      // can lie inside the local data) or the default one; local data that does not fit before it
      // moves out first (xfs_bmap_add_attrfork_local), then the short form is tried again — a
      // 300-byte symlink target on a 512-byte inode beside a label
      await localDataToBlock(ed, inode);
      fo = bytesFitFor(ed, inode, bytes, st.form);
    }
    if (fo) {
      await freeAll(ed, inode, st);
      for (const a of next) a.remote = undefined;
      if (inode.format === FMT_BTREE && !inode.forkoff) await attrForkBesideBmbt(ed, inode, fo);
      else setForkoff(inode, fo);
      writeSfAttrs(inode, next);
      return;
    }
  }
  if (st.form === "leaf") {
    // In place while one leaf holds everything.
    await fillRemote(ed, inode, st, next);
    if (attrLeafFits(next, g.blockSize, g.v5)) {
      await writeLeaf(ed, inode, st.leafFsb, next, false);
      return;
    }
    await freeAll(ed, inode, st);
    for (const a of next) a.remote = undefined;
  }
  if (st.form === "sf" || st.form === "none") {
    // xfs_attr_shortform_to_leaf: an attribute fork in extents form.
    if (!inode.forkoff) {
      let fo = bytesFit(ed, inode, 16) || defaultAttrOffset(ed, inode) >> 3;
      if (inode.format === FMT_LOCAL && inode.size > fo * 8) {
        // xfs_bmap_add_attrfork_local: a local data fork that would not fit beside the new
        // attribute fork moves to a block first (a directory to block form, a symlink target out).
        await localDataToBlock(ed, inode);
        fo = bytesFit(ed, inode, 16) || defaultAttrOffset(ed, inode) >> 3;
      }
      if (inode.format === FMT_BTREE) await attrForkBesideBmbt(ed, inode, fo);
      else setForkoff(inode, fo);
    }
    const area = forkArea(inode, "attr");
    if (area) inode.raw.fill(0, area.start, area.start + area.size);
    inode.aformat = FMT_EXTENTS;
    inode.anextents = 0;
    st.exts = [];
  }
  await rebuild(ed, inode, st, next);
}

/** Moves a local (short-form) data fork into a block, as the kernel does before adding an attribute fork. */
async function localDataToBlock(ed: XfsEditor, inode: XfsInode): Promise<void> {
  const kind = inode.mode & S_IFMT;
  if (kind === S_IFDIR) return dirLocalToBlock(ed, inode);
  if (kind === S_IFLNK) {
    const area = forkArea(inode, "data");
    if (!area) throw new XfsFormatError("symlink without a data fork", { inode: inode.ino });
    const target = inode.raw.slice(area.start, area.start + inode.size);
    return writeSymlinkTarget(ed.ctx, ed.alloc, inode, target, true);
  }
  throw unsupported(
    ed,
    inode,
    "local-data-attr",
    "a local data fork of this file type beside an attribute fork",
  );
}

/** Frees every block of the attribute fork (leaves, nodes, remote values); the fork stays, empty. */
async function freeAll(ed: XfsEditor, inode: XfsInode, st: AttrState): Promise<void> {
  if (st.form !== "leaf" && st.form !== "node") return;
  for (const e of [...st.exts]) await freeAttrBlocks(ed, inode, st.exts, e.startoff, e.blockcount);
  // The mapping (and a bmbt's blocks) goes now, before the fork changes form.
  await flushAttrExtents(ed, inode, st.exts);
  st.form = "none";
  st.leafFsb = -1;
}

/**
 * Lays all attributes out from scratch: one leaf at block 0, or (when they need more) leaves at
 * blocks 1.. chained forw/back under a level-1 dabtree node at block 0; remote values after.
 */
async function rebuild(ed: XfsEditor, inode: XfsInode, st: AttrState, attrs: LeafAttr[]): Promise<void> {
  const g = ed.fs.geometry;
  const bs = g.blockSize;
  const v5 = g.v5;
  const sorted = attrs.map((a) => ({ a, hash: daHashName(a.name) })).sort((x, y) => x.hash - y.hash);
  // Partition into leaves by size (remote entries count their small name records).
  const size = (a: LeafAttr) => 8 + (isLocal(a, bs) ? localSize(a) : remoteSize(a));
  const leaves: LeafAttr[][] = [[]];
  let used = leafHdrSize(v5);
  for (const { a } of sorted) {
    if (used + size(a) > bs) {
      leaves.push([]);
      used = leafHdrSize(v5);
    }
    leaves[leaves.length - 1].push(a);
    used += size(a);
  }
  const single = leaves.length === 1;
  // Blocks: leaf at 0 (single), or the dabtree root at 0 and leaves at 1..L; any lower nodes
  // and remote values after them.
  const leafLblk = leaves.map((_, i) => (single ? 0 : i + 1));
  // One run for the root, the leaves and the lower nodes when there is one, so the mapping stays a
  // single extent (small inodes have room for only a couple).
  const nodeMax = daNodeEntries(bs, v5);
  let lower = 0;
  for (let row = leaves.length; !single && row > nodeMax; row = Math.ceil(row / nodeMax))
    lower += Math.ceil(row / nodeMax);
  const run = await allocAttrRun(ed, inode, st.exts, leaves.length + (single ? 0 : 1 + lower));
  const rootFsb = single ? -1 : run[0];
  const leafFsbs = single ? run : run.slice(1, 1 + leaves.length);
  const nodeLblks = run.slice(1 + leaves.length).map((_, i) => 1 + leaves.length + i);
  await fillRemote(ed, inode, st, attrs);
  for (let i = 0; i < leaves.length; i++) {
    const forw = i + 1 < leaves.length ? leafLblk[i + 1] : 0;
    const back = i > 0 ? leafLblk[i - 1] : 0;
    await writeLeaf(ed, inode, leafFsbs[i], leaves[i], true, { forw, back });
  }
  st.form = single ? "leaf" : "node";
  st.leafFsb = single ? leafFsbs[0] : -1;
  if (single) return;
  // The dabtree over the leaves, as deep as their number needs (da-btree-write.ts).
  const block = (fsb: number, fblock: number): DaBlock => ({
    buf: ed.ctx.bufs.fresh(g.fsbToByte(fsb), bs, "attribute node"),
    fsb,
    fblock,
  });
  const host: DaHost = {
    v5,
    nodeMax,
    at: { file: ed.device.name, inode: inode.ino, structure: "attribute dabtree node" },
    read: async () => {
      throw new Error("attribute dabtree layout reads nothing");
    },
    fresh: async () => {
      const lblk = nodeLblks.shift();
      if (lblk !== undefined) return block(run[lblk], lblk);
      const at = firstUnused(st.exts, 1);
      return block(await allocAttrBlocks(ed, inode, st.exts, at, 1), at);
    },
    written: (blk) => {
      const b = blk.buf.data;
      if (v5) {
        setBe64(b, 16, g.fsbToDaddr(blk.fsb));
        b.set(g.metaUuid.subarray(0, 16), 32);
        setBe64(b, 48, inode.ino);
      }
      ed.ctx.bufs.dirty(blk.buf, v5 ? { crcOffset: 12, lsnOffset: 24 } : {});
    },
  };
  const children = leaves.map((l, i) => ({ hashval: daHashName(l[l.length - 1].name), before: leafLblk[i] }));
  await daBuild(host, children, block(rootFsb, 0), host.nodeMax);
}

/** bytesFit for the short form (a leaf being converted back frees its fork first). */
function bytesFitFor(ed: XfsEditor, inode: XfsInode, bytes: number, form: AttrState["form"]): number {
  if (form !== "leaf") return bytesFit(ed, inode, bytes);
  // The fork will hold short-form bytes instead of extent records: judge it as if empty.
  const saved = inode.forkoff;
  const fo = bytesFit(ed, inode, bytes);
  inode.forkoff = saved;
  return fo;
}

async function fillRemote(ed: XfsEditor, inode: XfsInode, st: AttrState, attrs: LeafAttr[]): Promise<void> {
  const g = ed.fs.geometry;
  for (const a of attrs) {
    if (a.remote || isLocal(a, g.blockSize)) continue;
    const blk = await writeRemoteValue(ed, inode, st.exts, a.value);
    a.remote = { blk, len: a.value.length };
  }
}

// ---------------------------------------------------------------- Linux names

/**
 * Sets an attribute by its Linux name (user., trusted., security., or the POSIX ACL names, whose
 * xattr-format value is converted to XFS's on-disk ACL).
 */
export async function setXattr(
  ed: XfsEditor,
  inode: XfsInode,
  name: string,
  value: Uint8Array,
): Promise<void> {
  const { flags, bytes } = diskName(name, inode);
  const v = name === POSIX_ACL_ACCESS || name === POSIX_ACL_DEFAULT ? posixToXfsAcl(value, inode) : value;
  await setAttr(ed, inode, flags, bytes, v);
}

export async function removeXattr(ed: XfsEditor, inode: XfsInode, name: string): Promise<void> {
  const { flags, bytes } = diskName(name, inode);
  await removeAttr(ed, inode, flags, bytes);
}

function diskName(name: string, inode: XfsInode): { flags: number; bytes: Uint8Array } {
  const enc = (s: string) => new TextEncoder().encode(s);
  if (name === POSIX_ACL_ACCESS) return { flags: ATTR_ROOT, bytes: enc(SGI_ACL_FILE) };
  if (name === POSIX_ACL_DEFAULT) return { flags: ATTR_ROOT, bytes: enc(SGI_ACL_DEFAULT) };
  for (const [prefix, flags] of [
    ["user.", 0],
    ["trusted.", ATTR_ROOT],
    ["security.", ATTR_SECURE],
  ] as const) {
    if (name.startsWith(prefix) && name.length > prefix.length)
      return { flags, bytes: enc(name.slice(prefix.length)) };
  }
  throw new XfsFsError("EINVAL", `unsupported attribute namespace in '${name}'`, `<inode ${inode.ino}>`);
}

/** posix_acl xattr (le: version 2, then tag u16, perm u16, id u32) → xfs_acl (be: count, then tag u32, id u32, perm u16, pad). */
function posixToXfsAcl(v: Uint8Array, inode: XfsInode): Uint8Array {
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  if (v.length < 4 || (v.length - 4) % 8 !== 0 || dv.getUint32(0, true) !== 2)
    throw new XfsFsError("EINVAL", "malformed POSIX ACL", `<inode ${inode.ino}>`);
  const n = (v.length - 4) / 8;
  const out = new Uint8Array(4 + n * 12);
  setBe32(out, 0, n);
  for (let i = 0; i < n; i++) {
    const tag = dv.getUint16(4 + i * 8, true);
    const perm = dv.getUint16(6 + i * 8, true);
    const id = dv.getUint32(8 + i * 8, true);
    setBe32(out, 4 + i * 12, tag);
    setBe32(out, 8 + i * 12, tag === 0x02 || tag === 0x08 ? id : 0xffffffff);
    setBe16(out, 12 + i * 12, perm);
  }
  return out;
}
