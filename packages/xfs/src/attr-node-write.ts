/**
 * Node-form attribute forks changed in place (xfs_attr_node_addname / xfs_attr_node_removename):
 * the dabtree is descended by the name's hash to the one leaf that holds it or will, and only
 * that leaf (plus its remote value blocks) is rewritten; the rest of the fork stays as it is.
 *
 * - A leaf that overflows splits in two by bytes (xfs_attr3_leaf_split): the lower hashes stay,
 *   the upper ones move to a new block linked after it, and the parent gets an entry for it —
 *   nodes that overflow split up to the root (da-btree-write.ts, shared with directories).
 * - A leaf that empties is unlinked from its siblings and freed, and its entry leaves the
 *   parent; an emptied node goes the same way, and a root left with one child node takes that
 *   child's entries (xfs_da3_root_join). Partly filled leaves are not joined (the format bounds
 *   only the maximum fill; xfs_repair checks no minimum).
 * - Down to two leaves under the root, the caller lays the attributes out whole instead
 *   (attr-write.ts), which turns a small tree back into one leaf or short form.
 *
 * Returns false, having changed nothing, where it leaves the work to the whole layout: a hash
 * shared across a leaf boundary (the name may sit in the next leaf), a split that two leaves
 * cannot hold, a tree of one or two leaves.
 */
import { ATTR_LEAF_MAGIC, ATTR_NSP_MASK, ATTR3_LEAF_MAGIC, decodeAttrLeaf } from "./attr-leaf.js";
import { remoteBlocks } from "./attr-remote.js";
import {
  allocAttrBlocks,
  attrLeafFits,
  firstUnused,
  flushAttrExtents,
  freeAttrBlocks,
  isLocal,
  type LeafAttr,
  leafBytes,
  mapAttrBlock,
  sameAttr,
  writeLeaf,
  writeRemoteValue,
} from "./attr-write.js";
import { be16, be32, setBe32, setBe64 } from "./bytes.js";
import { DA_NODE_MAGIC, DA_NODE_MAXDEPTH, DA3_NODE_MAGIC } from "./da-btree.js";
import {
  type DaBlock,
  type DaHost,
  type DaPathStep,
  daAddSibling,
  daFixHashPath,
  daNodeEntries,
  readDaNode,
  writeDaNode,
} from "./da-btree-write.js";
import { daHashName } from "./dir2-hash.js";
import type { XfsEditor } from "./editor.js";
import { XfsFormatError, XfsFsError } from "./errors.js";
import type { XfsExtent } from "./fork.js";
import { FMT_BTREE, FMT_EXTENTS, type XfsInode } from "./inode.js";

interface NodeFork {
  ed: XfsEditor;
  inode: XfsInode;
  exts: XfsExtent[];
  host: DaHost;
}

/** The attribute fork's dabtree as da-btree-write.ts sees it, or null when the fork is not node form. */
async function openNodeFork(ed: XfsEditor, inode: XfsInode): Promise<NodeFork | null> {
  if (!inode.forkoff || (inode.aformat !== FMT_EXTENTS && inode.aformat !== FMT_BTREE)) return null;
  if (inode.anextents === 0) return null;
  const g = ed.fs.geometry;
  const exts = (await ed.fs.forkExtents(inode, "attr")).map((e) => ({ ...e }));
  const at = { file: ed.device.name, inode: inode.ino, structure: "attribute dabtree" };
  const block = async (fblock: number, fresh: boolean): Promise<DaBlock> => {
    const fsb = mapAttrBlock(exts, fblock);
    if (fsb < 0) throw new XfsFormatError(`attribute block ${fblock} is not mapped`, at);
    const off = g.fsbToByte(fsb);
    const buf = fresh
      ? ed.ctx.bufs.fresh(off, g.blockSize, "attribute block")
      : await ed.ctx.bufs.read(off, g.blockSize, "attribute block");
    return { buf, fsb, fblock };
  };
  const host: DaHost = {
    v5: g.v5,
    nodeMax: daNodeEntries(g.blockSize, g.v5),
    at,
    read: (fblock) => block(fblock, false),
    fresh: async () => {
      const lblk = firstUnused(exts, 1);
      await allocAttrBlocks(ed, inode, exts, lblk, 1);
      return block(lblk, true);
    },
    written: (blk) => {
      const b = blk.buf.data;
      if (g.v5) {
        setBe64(b, 16, g.fsbToDaddr(blk.fsb));
        b.set(g.metaUuid.subarray(0, 16), 32);
        setBe64(b, 48, inode.ino);
      }
      ed.ctx.bufs.dirty(blk.buf, g.v5 ? { crcOffset: 12, lsnOffset: 24 } : {});
    },
  };
  const root = await host.read(0);
  const magic = be16(root.buf.data, 8);
  if (magic !== (g.v5 ? DA3_NODE_MAGIC : DA_NODE_MAGIC)) return null;
  return { ed, inode, exts, host };
}

interface LeafAt {
  path: DaPathStep[];
  leaf: DaBlock;
  attrs: LeafAttr[];
  forw: number;
  back: number;
}

/** Root-to-leaf descent by hash: in each node the first entry whose hash is not below it, else the last. */
async function descend(nf: NodeFork, hash: number): Promise<LeafAt> {
  const { host } = nf;
  const g = nf.ed.fs.geometry;
  const path: DaPathStep[] = [];
  let blk = await host.read(0);
  const seen = new Set<number>();
  for (let depth = 0; ; depth++) {
    const b = blk.buf.data;
    const magic = be16(b, 8);
    if (magic === (g.v5 ? ATTR3_LEAF_MAGIC : ATTR_LEAF_MAGIC))
      return { path, leaf: blk, attrs: leafAttrs(nf, blk), forw: be32(b, 0), back: be32(b, 4) };
    if (
      magic !== (g.v5 ? DA3_NODE_MAGIC : DA_NODE_MAGIC) ||
      depth >= DA_NODE_MAXDEPTH ||
      seen.has(blk.fblock)
    )
      throw new XfsFormatError(`attribute dabtree block ${blk.fblock} is neither node nor leaf`, host.at);
    seen.add(blk.fblock);
    const node = readDaNode(host, blk);
    let idx = node.entries.findIndex((e) => e.hashval >= hash);
    if (idx < 0) idx = node.entries.length - 1;
    path.push({ blk, idx });
    blk = await host.read(node.entries[idx].before);
  }
}

/** A leaf block's entries (remote ones by their name record: the value stays where it is). */
function leafAttrs(nf: NodeFork, blk: DaBlock): LeafAttr[] {
  const g = nf.ed.fs.geometry;
  const b = blk.buf.data;
  if (be16(b, 8) !== (g.v5 ? ATTR3_LEAF_MAGIC : ATTR_LEAF_MAGIC))
    throw new XfsFormatError(`attribute block ${blk.fblock} is not a leaf`, {
      ...nf.host.at,
      block: blk.fsb,
    });
  return decodeAttrLeaf(b, g.v5, { ...nf.host.at, block: blk.fsb }).entries.map((e) =>
    e.remote
      ? { flags: e.flags, name: e.name, value: new Uint8Array(), remote: e.remote }
      : { flags: e.flags, name: e.name, value: e.value ?? new Uint8Array() },
  );
}

const lastHashOf = (attrs: LeafAttr[]) => attrs.reduce((m, a) => Math.max(m, daHashName(a.name)), 0);

/**
 * Is the fork a node tree down to one or two leaves under its root (after a removal that
 * collapsed it)? The caller then lays it out whole: one leaf, or short form, when it fits.
 */
export async function nodeTreeSmall(ed: XfsEditor, inode: XfsInode): Promise<boolean> {
  const nf = await openNodeFork(ed, inode);
  if (!nf) return false;
  const root = readDaNode(nf.host, await nf.host.read(0));
  return root.level === 1 && root.entries.length <= 2;
}

/** Root node has one or two children that are leaves: small enough for the whole layout. */
function tooSmall(nf: NodeFork, at: LeafAt): boolean {
  if (at.path.length !== 1) return false;
  return readDaNode(nf.host, at.path[0].blk).entries.length <= 2;
}

/** Could a name with this hash also sit in the next leaf (equal hashes across the boundary)? */
function spills(at: LeafAt, hash: number): boolean {
  return at.forw !== 0 && at.attrs.length > 0 && lastHashOf(at.attrs) === hash;
}

/**
 * Sets an attribute in a node-form fork by changing the one leaf its hash leads to. Returns false
 * (nothing changed) when the fork is not node form or the whole layout should do it.
 */
export async function nodeSetAttr(
  ed: XfsEditor,
  inode: XfsInode,
  flags: number,
  name: Uint8Array,
  value: Uint8Array,
): Promise<boolean> {
  const nf = await openNodeFork(ed, inode);
  if (!nf) return false;
  const g = ed.fs.geometry;
  const hash = daHashName(name);
  const at = await descend(nf, hash);
  const old = at.attrs.find((a) => sameAttr(a, flags, name));
  if (!old && spills(at, hash)) return false;
  const next = at.attrs.filter((a) => a !== old);
  const added: LeafAttr = { flags: flags & ATTR_NSP_MASK, name, value };
  // A remote value's leaf entry is its name record; its size is known before the blocks exist.
  if (!isLocal(added, g.blockSize)) added.remote = { blk: 0, len: value.length };
  next.push(added);
  let halves: [LeafAttr[], LeafAttr[]] | null = null;
  if (!attrLeafFits(next, g.blockSize, g.v5)) {
    halves = splitLeaf(next, g.blockSize, g.v5);
    if (!halves) return false;
  }
  // From here on the fork changes.
  if (old?.remote) await freeRemote(nf, old.remote);
  if (added.remote) added.remote.blk = await writeRemoteValue(ed, inode, nf.exts, value);
  await storeLeaf(nf, at, next, halves);
  await flushAttrExtents(ed, inode, nf.exts);
  return true;
}

/**
 * Removes an attribute from a node-form fork (ENODATA when absent). Returns false (nothing
 * changed) when the fork is not node form or the whole layout should do it.
 */
export async function nodeRemoveAttr(
  ed: XfsEditor,
  inode: XfsInode,
  flags: number,
  name: Uint8Array,
): Promise<boolean> {
  const nf = await openNodeFork(ed, inode);
  if (!nf) return false;
  const hash = daHashName(name);
  const at = await descend(nf, hash);
  if (tooSmall(nf, at)) return false;
  const old = at.attrs.find((a) => sameAttr(a, flags, name));
  if (!old) {
    if (spills(at, hash)) return false;
    throw new XfsFsError("ENODATA", "no such attribute", `<inode ${inode.ino}>`);
  }
  if (old.remote) await freeRemote(nf, old.remote);
  const next = at.attrs.filter((a) => a !== old);
  if (next.length === 0) await dropLeaf(nf, at);
  else if (!(await joinSibling(nf, at, next))) await storeLeaf(nf, at, next, null);
  await flushAttrExtents(ed, inode, nf.exts);
  return true;
}

async function freeRemote(nf: NodeFork, r: { blk: number; len: number }): Promise<void> {
  const g = nf.ed.fs.geometry;
  await freeAttrBlocks(nf.ed, nf.inode, nf.exts, r.blk, remoteBlocks(r.len, g.blockSize, g.v5));
}

/** Two leaves by bytes, in hash order, or null when no cut gives two that fit. */
function splitLeaf(attrs: LeafAttr[], bs: number, v5: boolean): [LeafAttr[], LeafAttr[]] | null {
  const sorted = attrs
    .map((a) => ({ a, h: daHashName(a.name) }))
    .sort((x, y) => x.h - y.h)
    .map((x) => x.a);
  // Try cuts from the middle outwards, so the halves come out about even.
  const mid = sorted.length >> 1;
  for (let d = 0; d <= sorted.length; d++) {
    for (const cut of [mid - d, mid + d]) {
      if (cut < 1 || cut >= sorted.length) continue;
      const lo = sorted.slice(0, cut);
      const hi = sorted.slice(cut);
      if (attrLeafFits(lo, bs, v5) && attrLeafFits(hi, bs, v5)) return [lo, hi];
    }
  }
  return null;
}

/** Writes the leaf's new entries (split in two when `halves`), and fixes the hashes above it. */
async function storeLeaf(
  nf: NodeFork,
  at: LeafAt,
  attrs: LeafAttr[],
  halves: [LeafAttr[], LeafAttr[]] | null,
): Promise<void> {
  const { ed, inode, host } = nf;
  const oldLast = lastHashOf(at.attrs);
  if (!halves) {
    await writeLeaf(ed, inode, at.leaf.fsb, attrs, false, { forw: at.forw, back: at.back });
    const last = lastHashOf(attrs);
    if (last !== oldLast) daFixHashPath(host, at.path, last);
    return;
  }
  const [lo, hi] = halves;
  const right = await host.fresh();
  await writeLeaf(ed, inode, at.leaf.fsb, lo, false, { forw: right.fblock, back: at.back });
  await writeLeaf(ed, inode, right.fsb, hi, true, { forw: at.forw, back: at.leaf.fblock });
  if (at.forw !== 0) {
    const next = await host.read(at.forw);
    setBe32(next.buf.data, 4, right.fblock);
    host.written(next);
  }
  await daAddSibling(host, at.path, lastHashOf(lo), lastHashOf(hi), right.fblock);
}

/** Sibling links around a block that leaves its level. */
async function unlink(nf: NodeFork, forw: number, back: number): Promise<void> {
  const { host } = nf;
  if (back !== 0) {
    const b = await host.read(back);
    setBe32(b.buf.data, 0, forw);
    host.written(b);
  }
  if (forw !== 0) {
    const f = await host.read(forw);
    setBe32(f.buf.data, 4, back);
    host.written(f);
  }
}

async function freeBlock(nf: NodeFork, blk: DaBlock): Promise<void> {
  await freeAttrBlocks(nf.ed, nf.inode, nf.exts, blk.fblock, 1);
}

/**
 * An emptied leaf leaves the tree: unlinked, freed, its entry taken out of the parent, and
 * emptied nodes after it (xfs_da3_join); a root left with one child node absorbs it.
 */
async function dropLeaf(nf: NodeFork, at: LeafAt): Promise<void> {
  const { host } = nf;
  await unlink(nf, at.forw, at.back);
  await freeBlock(nf, at.leaf);
  for (let d = at.path.length - 1; d >= 0; d--) {
    const step = at.path[d];
    const node = readDaNode(host, step.blk);
    const wasLast = step.idx === node.entries.length - 1;
    node.entries.splice(step.idx, 1);
    if (node.entries.length > 0) {
      writeDaNode(host, step.blk, node);
      if (wasLast) daFixHashPath(host, at.path.slice(0, d), node.entries[node.entries.length - 1].hashval);
      break;
    }
    if (d === 0) throw new XfsFormatError("attribute dabtree root emptied", host.at);
    await unlink(nf, node.forw, node.back);
    await freeBlock(nf, step.blk);
  }
  // xfs_da3_root_join: a root over a single node takes that node's entries, one level down.
  for (;;) {
    const rootBlk = at.path[0].blk;
    const root = readDaNode(host, rootBlk);
    if (root.level < 2 || root.entries.length !== 1) return;
    const child = await host.read(root.entries[0].before);
    const c = readDaNode(host, child);
    writeDaNode(host, rootBlk, { forw: 0, back: 0, level: c.level, entries: c.entries });
    await freeBlock(nf, child);
  }
}

/**
 * xfs_attr3_leaf_toosmall / xfs_attr3_leaf_unbalance: a leaf under 3/8 full after a removal takes
 * in a sibling under the same parent when both fit 3/4 of a block; the right one of the pair
 * leaves the tree. Returns false when no sibling qualifies (the caller writes the leaf alone).
 */
async function joinSibling(nf: NodeFork, at: LeafAt, attrs: LeafAttr[]): Promise<boolean> {
  const { ed, inode, host } = nf;
  const g = ed.fs.geometry;
  const bs = g.blockSize;
  if (leafBytes(attrs, g.v5) > (bs * 3) / 8) return false;
  const step = at.path[at.path.length - 1];
  const parent = readDaNode(host, step.blk);
  for (const sibIdx of [step.idx + 1, step.idx - 1]) {
    if (sibIdx < 0 || sibIdx >= parent.entries.length) continue;
    const sib = await host.read(parent.entries[sibIdx].before);
    const all = [...attrs, ...leafAttrs(nf, sib)];
    if (leafBytes(all, g.v5) > (bs * 3) / 4) continue;
    const sibForw = be32(sib.buf.data, 0);
    const sibBack = be32(sib.buf.data, 4);
    const thisLeft = sibIdx > step.idx;
    const left = thisLeft ? at.leaf : sib;
    const right = thisLeft ? sib : at.leaf;
    const leftIdx = Math.min(step.idx, sibIdx);
    const rightForw = thisLeft ? sibForw : at.forw;
    const leftBack = thisLeft ? at.back : sibBack;
    await writeLeaf(ed, inode, left.fsb, all, false, { forw: rightForw, back: leftBack });
    parent.entries[leftIdx].hashval = lastHashOf(all);
    writeDaNode(host, step.blk, parent);
    const rightPath = [...at.path.slice(0, -1), { blk: step.blk, idx: leftIdx + 1 }];
    await dropLeaf(nf, { path: rightPath, leaf: right, attrs: [], forw: rightForw, back: left.fblock });
    return true;
  }
  return false;
}
