/**
 * htree growth: a full linear directory turned into an index, leaf splits by hash, index nodes
 * split and a new level added at the root.
 */
import { Ext4NoSpaceError } from "./alloc.js";
import { u32 } from "./bytes.js";
import { appendDirBlock, type DirState, finishDx, finishLeaf, hashOf, hashVersion } from "./dir-state.js";
import {
  insertIntoBlockAt,
  type LeafRecord,
  leafEnd,
  maxFree,
  writeDxNode,
  writeDxRoot,
  writeLeaf,
} from "./dir-write.js";
import { FT, parseDirentBlock } from "./dirent.js";
import { type EditContext, key } from "./edit-context.js";
import { Ext4EditError, Ext4UnsupportedError } from "./errors.js";
import { INCOMPAT, INODE_FLAGS } from "./features.js";
import { ROOT_INO } from "./fs.js";
import { type DxEntry, dxSearchBlock, encodeDxEntries, parseDxEntries, parseDxRootInfo } from "./htree.js";
import type { Inode } from "./inode.js";
import { hasIncompat } from "./superblock.js";

/** Turn a full one-block linear directory into an htree: root in block 0, entries in block 1. */
export async function makeIndexed(
  ctx: EditContext,
  dirInode: Inode,
  st: DirState,
  path: string,
): Promise<void> {
  const end = leafEnd(ctx.bs, ctx.csum);
  const b0 = await ctx.store.get(st.pblk[0]);
  const { entries } = parseDirentBlock(b0, 0, end, ctx.bs, ctx.ft);
  const dot = entries.find((e) => key(e.name) === ".");
  const dotdot = entries.find((e) => key(e.name) === "..");
  const recs: LeafRecord[] = entries
    .filter((e) => e !== dot && e !== dotdot)
    .map((e) => ({ inode: e.inode, name: e.name, fileType: e.fileType }));
  const version = hashVersion(ctx);
  recs.sort((a, b) => hashOf(ctx, a.name, version) - hashOf(ctx, b.name, version));
  const leaf = await appendDirBlock(ctx, dirInode, st, path);
  writeLeaf(leaf.buf, end, ctx.bs, ctx.ft, recs);
  st.free[leaf.lblk] = maxFree(leaf.buf, 0, end, ctx.bs, ctx.ft);
  finishLeaf(ctx, dirInode, leaf.pblk, leaf.buf);
  for (const r of recs) {
    const e = st.entries.get(key(r.name));
    if (e) e.lblk = leaf.lblk;
  }
  const root = await ctx.store.get(st.pblk[0]);
  const { off } = writeDxRoot(
    root,
    ctx.bs,
    ctx.ft,
    dirInode.ino,
    dotdot?.inode ?? ROOT_INO,
    ctx.ft ? FT.dir : 0,
    version,
    0,
    [{ hash: 0, block: leaf.lblk }],
    ctx.csum,
  );
  finishDx(ctx, dirInode, st.pblk[0], root, off);
  st.free[0] = -1;
  st.indexed = true;
  dirInode.flags |= INODE_FLAGS.INDEX;
}

/** Insert into an indexed directory: into the leaf the hash leads to, splitting it when full. */
export async function dxInsert(
  ctx: EditContext,
  dirInode: Inode,
  st: DirState,
  rec: LeafRecord,
  path: string,
): Promise<void> {
  const end = leafEnd(ctx.bs, ctx.csum);
  const root = ctx.store.peek(st.pblk[0]) ?? (await ctx.store.get(st.pblk[0]));
  const info = parseDxRootInfo(root);
  if (info.unusedFlags & 1)
    throw new Ext4UnsupportedError("htree", `directory '${path}' has an unsupported index`);
  const version = info.hashVersion;
  const hash = hashOf(ctx, rec.name, version);
  // Path from the root to the leaf.
  interface Level {
    lblk: number;
    off: number;
    at: number;
  }
  const levels: Level[] = [];
  let lblk = 0;
  let off = 0x18 + info.infoLength;
  for (let d = 0; d <= info.indirectLevels; d++) {
    const b = ctx.store.peek(st.pblk[lblk]) ?? (await ctx.store.get(st.pblk[lblk]));
    const slot = dxSearchBlock(b, off, hash);
    if (!slot) throw new Ext4EditError("EINVAL", "empty directory index node", path);
    levels.push({ lblk, off, at: slot.at });
    lblk = slot.lblk;
    off = 8;
  }
  const leafL = lblk;
  const leafBuf = ctx.store.peek(st.pblk[leafL]) ?? (await ctx.store.get(st.pblk[leafL]));
  // (st.free is only consulted for linear directories: not kept up to date here.)
  const at = insertIntoBlockAt(leafBuf, 0, st.hint[leafL] ?? 0, end, ctx.bs, ctx.ft, rec);
  if (at >= 0) {
    st.hint[leafL] = at;
    finishLeaf(ctx, dirInode, st.pblk[leafL], leafBuf);
    st.entries.set(key(rec.name), { ino: rec.inode, ft: rec.fileType, lblk: leafL });
    return;
  }
  // Split the leaf: entries sorted by hash, the upper half moves to a new block.
  const { entries } = parseDirentBlock(leafBuf, 0, end, ctx.bs, ctx.ft);
  const all = [...entries.map((e) => ({ inode: e.inode, name: e.name, fileType: e.fileType })), rec].map(
    (r) => ({
      r,
      h: hashOf(ctx, r.name, version),
    }),
  );
  all.sort((a, b) => a.h - b.h);
  const sizes = all.map((x) => 8 + ((x.r.name.length + 3) & ~3));
  const total = sizes.reduce((a, b) => a + b, 0);
  const acc = 0;
  let cut = -1;
  const candidates: number[] = [];
  for (let i = 1; i < all.length; i++) if (all[i].h !== all[i - 1].h) candidates.push(i);
  // Split point nearest the middle by size whose halves both fit.
  let best = Number.POSITIVE_INFINITY;
  const prefix: number[] = [0];
  for (const s of sizes) prefix.push(prefix[prefix.length - 1] + s);
  for (const i of candidates) {
    const left = prefix[i];
    const right = total - left;
    if (left > end || right > end) continue;
    const d = Math.abs(left - right);
    if (d < best) {
      best = d;
      cut = i;
    }
  }
  void acc;
  if (cut < 0)
    throw new Ext4UnsupportedError("htree", `cannot split a directory leaf of '${path}' (hash collisions)`);
  const splitHash = all[cut].h;
  // An index full at every level with no level left to add: fail before anything is allocated.
  await checkDxRoom(ctx, st, levels, info.indirectLevels, path);
  // Make room in the parent first (may add a level or split index nodes).
  const newLeaf = await appendDirBlock(ctx, dirInode, st, path);
  await dxAddEntry(
    ctx,
    dirInode,
    st,
    levels,
    levels.length - 1,
    { hash: splitHash, block: newLeaf.lblk },
    info.indirectLevels,
    path,
  );
  const lower = all.slice(0, cut).map((x) => x.r);
  const upper = all.slice(cut).map((x) => x.r);
  writeLeaf(leafBuf, end, ctx.bs, ctx.ft, lower);
  writeLeaf(newLeaf.buf, end, ctx.bs, ctx.ft, upper);
  st.hint[leafL] = 0;
  st.hint[newLeaf.lblk] = 0;
  finishLeaf(ctx, dirInode, st.pblk[leafL], leafBuf);
  finishLeaf(ctx, dirInode, newLeaf.pblk, newLeaf.buf);
  // The names moved to the new leaf keep their old lblk: it is only a hint (see inLeaf), and
  // rewriting it would cost a map lookup per moved name on every split.
  st.entries.set(key(rec.name), {
    ino: rec.inode,
    ft: rec.fileType,
    lblk: cut <= all.findIndex((x) => x.r === rec) ? newLeaf.lblk : leafL,
  });
}

/** ENOSPC when every index level on the path is full and no level can be added. */
export async function checkDxRoom(
  ctx: EditContext,
  st: DirState,
  levels: { lblk: number; off: number }[],
  indirect: number,
  path: string,
): Promise<void> {
  for (let i = levels.length - 1; i >= 0; i--) {
    const node = parseDxEntries(await ctx.store.get(st.pblk[levels[i].lblk]), levels[i].off);
    if (node.count < node.limit) return;
  }
  const maxIndirect = hasIncompat(ctx.sb, INCOMPAT.large_dir) ? 2 : 1;
  if (indirect >= maxIndirect)
    throw new Ext4NoSpaceError("blocks", `directory index of '${path}' is full`, path);
}

/** Insert (hash → block) after levels[i].at in index node i, splitting or adding a level as needed. */
export async function dxAddEntry(
  ctx: EditContext,
  dirInode: Inode,
  st: DirState,
  levels: { lblk: number; off: number; at: number }[],
  i: number,
  entry: DxEntry,
  indirect: number,
  path: string,
): Promise<void> {
  const lv = levels[i];
  const buf = await ctx.store.get(st.pblk[lv.lblk]);
  const node = parseDxEntries(buf, lv.off);
  if (node.count < node.limit) {
    const entries = [...node.entries];
    entries.splice(lv.at + 1, 0, entry);
    writeDxEntries(ctx, dirInode, st, lv.lblk, buf, lv.off, node.limit, entries);
    return;
  }
  const maxIndirect = hasIncompat(ctx.sb, INCOMPAT.large_dir) ? 2 : 1;
  if (i === 0) {
    if (indirect >= maxIndirect)
      throw new Ext4NoSpaceError("blocks", `directory index of '${path}' is full`, path);
    // Add a level: the root's entries move to a new index node.
    const child = await appendDirBlock(ctx, dirInode, st, path);
    st.free[child.lblk] = -1;
    const moved = [...node.entries];
    moved.splice(lv.at + 1, 0, entry);
    const { off: coff } = writeDxNode(child.buf, ctx.bs, moved, ctx.csum);
    finishDx(ctx, dirInode, child.pblk, child.buf, coff);
    const info = parseDxRootInfo(buf);
    const { off } = writeDxRoot(
      buf,
      ctx.bs,
      ctx.ft,
      dirInode.ino,
      u32(buf, 12),
      ctx.ft ? FT.dir : 0,
      info.hashVersion,
      indirect + 1,
      [{ hash: 0, block: child.lblk }],
      ctx.csum,
    );
    finishDx(ctx, dirInode, st.pblk[0], buf, off);
    if (moved.length > parseDxEntries(child.buf, coff).limit) throw new Error("dx node overflow");
    return;
  }
  // Split an interior node in two; the upper half's first hash goes up.
  const entries = [...node.entries];
  entries.splice(lv.at + 1, 0, entry);
  const half = entries.length >> 1;
  const lower = entries.slice(0, half);
  const upper = entries.slice(half);
  const right = await appendDirBlock(ctx, dirInode, st, path);
  st.free[right.lblk] = -1;
  await dxAddEntry(
    ctx,
    dirInode,
    st,
    levels,
    i - 1,
    { hash: upper[0].hash, block: right.lblk },
    indirect,
    path,
  );
  writeDxEntries(ctx, dirInode, st, lv.lblk, buf, lv.off, node.limit, lower);
  const { off: roff } = writeDxNode(right.buf, ctx.bs, upper, ctx.csum);
  finishDx(ctx, dirInode, right.pblk, right.buf, roff);
}

export function writeDxEntries(
  ctx: EditContext,
  dirInode: Inode,
  st: DirState,
  lblk: number,
  buf: Uint8Array,
  off: number,
  limit: number,
  entries: DxEntry[],
): void {
  // entries[0]'s hash slot holds limit/count.
  encodeDxEntries(buf, off, { limit, entries });
  finishDx(ctx, dirInode, st.pblk[lblk], buf, off);
}
