/**
 * Reading the remote parts of inode forks: symlink targets in blocks (one v5 header per mapped
 * extent, xfs_readlink_bmap) and attribute forks in short-form, leaf and node form with remote
 * values. XfsFs wraps these with its caches.
 */
import { ATTR_LEAF_MAGIC, ATTR3_LEAF_MAGIC, decodeAttrLeaf } from "./attr-leaf.js";
import { assembleRemoteValue, remoteBlocks } from "./attr-remote.js";
import { decodeSfAttrs, type XfsRawAttr } from "./attr-sf.js";
import { findExtent } from "./bmap.js";
import { be16, be32, be64, le32 } from "./bytes.js";
import { checkDa3Block, DA_NODE_MAGIC, DA_NODE_MAXDEPTH, DA3_NODE_MAGIC, decodeDaNode } from "./da-btree.js";
import { XfsChecksumError, XfsFormatError, type XfsLocation } from "./errors.js";
import { type ForkKind, forkArea, forkLocalBytes, type XfsExtent } from "./fork.js";
import { FMT_LOCAL, S_IFLNK, S_IFMT, type XfsInode } from "./inode.js";
import { crcMatches, sectorCrc, type XfsGeometry } from "./sb.js";

/** XFS_SYMLINK_MAXLEN. */
const SYMLINK_MAXLEN = 1024;
const SYMLINK_MAGIC = 0x58534c4d; // "XSLM"
/**
 * v5 remote symlink header, once per mapped extent: magic, offset, bytes, crc (over the whole
 * extent), uuid (16), owner @32, blkno @40, lsn @48.
 */
const SYMLINK_HDR = 56;
/** Largest xattr value (Linux XATTR_SIZE_MAX). */
const XATTR_SIZE_MAX = 65536;

export interface ForkReadContext {
  readonly geometry: XfsGeometry;
  readonly deviceName: string;
  readAt(offset: number, len: number): Promise<Uint8Array>;
  forkExtents(inode: XfsInode, which: ForkKind): Promise<XfsExtent[]>;
}

/** An attribute as stored: namespace flags, name, value. */
export interface StoredAttr {
  flags: number;
  name: Uint8Array;
  value: Uint8Array;
}

/** Which attribute fork form `inode` has (none, shortform, leaf, or node). */
export async function attrFormOf(
  ctx: ForkReadContext,
  inode: XfsInode,
): Promise<"none" | "shortform" | "leaf" | "node"> {
  const area = forkArea(inode, "attr");
  if (!area) return "none";
  if (area.format === FMT_LOCAL) return "shortform";
  const exts = await ctx.forkExtents(inode, "attr");
  if (exts.length === 0) return "none";
  const { b } = await attrBlock(ctx, exts, 0, {
    file: ctx.deviceName,
    structure: "attribute fork",
    inode: inode.ino,
  });
  const magic = be16(b, 8);
  return magic === DA_NODE_MAGIC || magic === DA3_NODE_MAGIC ? "node" : "leaf";
}

/** Target bytes of a symlink inode (inline or in remote blocks). */
export async function readSymlink(ctx: ForkReadContext, inode: XfsInode): Promise<Uint8Array> {
  const at = { file: ctx.deviceName, structure: "symlink", inode: inode.ino };
  if ((inode.mode & S_IFMT) !== S_IFLNK) throw new XfsFormatError("not a symlink inode", at);
  if (inode.size <= 0 || inode.size > SYMLINK_MAXLEN)
    throw new XfsFormatError(`symlink length ${inode.size}`, at);
  if (inode.format === FMT_LOCAL) return forkLocalBytes(inode, "data", at);
  const g = ctx.geometry;
  const exts = await ctx.forkExtents(inode, "data");
  const out = new Uint8Array(inode.size);
  let pos = 0;
  // One header (v5) per mapped extent, its CRC covering the whole extent (xfs_readlink_bmap).
  let next = 0;
  for (const e of exts) {
    if (pos >= inode.size) break;
    if (e.startoff !== next || e.blockcount > 8)
      throw new XfsFormatError(`symlink mapping at file block ${e.startoff} is not contiguous`, at);
    next = e.startoff + e.blockcount;
    const offset = g.fsbToByte(e.startblock);
    const b = await ctx.readAt(offset, e.blockcount * g.blockSize);
    const space = g.v5 ? b.length - SYMLINK_HDR : b.length;
    const n = Math.min(space, inode.size - pos);
    if (g.v5) {
      const bat = { ...at, offset };
      if (be32(b, 0) !== SYMLINK_MAGIC) throw new XfsFormatError("bad remote symlink magic", bat);
      if (!crcMatches(b, b.length, 12))
        throw new XfsChecksumError(
          "remote symlink block CRC mismatch",
          le32(b, 12),
          sectorCrc(b, b.length, 12),
          bat,
        );
      if (
        be32(b, 4) !== pos ||
        be32(b, 8) !== n ||
        be64(b, 32) !== inode.ino ||
        be64(b, 40) !== g.fsbToDaddr(e.startblock)
      )
        throw new XfsFormatError("remote symlink block header does not match", bat);
      out.set(b.subarray(SYMLINK_HDR, SYMLINK_HDR + n), pos);
    } else out.set(b.subarray(0, n), pos);
    pos += n;
  }
  if (pos < inode.size) throw new XfsFormatError(`symlink blocks hold ${pos} of ${inode.size} bytes`, at);
  return out;
}

/** All attributes of an inode as stored (namespace flags, name, value bytes). */
export async function readAttrs(ctx: ForkReadContext, inode: XfsInode): Promise<StoredAttr[]> {
  const at = { file: ctx.deviceName, structure: "attribute fork", inode: inode.ino };
  const area = forkArea(inode, "attr");
  let raw: XfsRawAttr[] = [];
  if (!area) raw = [];
  else if (area.format === FMT_LOCAL) raw = decodeSfAttrs(forkLocalBytes(inode, "attr", at), at);
  else if (inode.anextents > 0) raw = await attrLeafEntries(ctx, inode, at);
  const out: StoredAttr[] = [];
  for (const a of raw) {
    let value = a.value;
    if (!value) {
      const r = a.remote;
      if (!r || r.len > XATTR_SIZE_MAX)
        throw new XfsFormatError(`remote attribute value of ${r?.len} bytes`, at);
      value = await readRemoteValue(ctx, inode, r.blk, r.len, at);
    }
    out.push({ flags: a.flags, name: a.name, value });
  }
  return out;
}

async function attrBlock(
  ctx: ForkReadContext,
  exts: XfsExtent[],
  lblk: number,
  at: XfsLocation,
): Promise<{ b: Uint8Array; daddr: number }> {
  const i = findExtent(exts, lblk);
  if (i < 0) throw new XfsFormatError(`attribute block ${lblk} is not mapped`, at);
  const e = exts[i];
  const fsb = e.startblock + (lblk - e.startoff);
  const g = ctx.geometry;
  return { b: await ctx.readAt(g.fsbToByte(fsb), g.blockSize), daddr: g.fsbToDaddr(fsb) };
}

async function attrLeafEntries(
  ctx: ForkReadContext,
  inode: XfsInode,
  at: XfsLocation,
): Promise<XfsRawAttr[]> {
  const g = ctx.geometry;
  const exts = await ctx.forkExtents(inode, "attr");
  const chk = { owner: inode.ino, uuid: g.metaUuid };
  // Descend from block 0 to the leftmost leaf, then follow the leaf chain.
  let lblk = 0;
  let { b, daddr } = await attrBlock(ctx, exts, lblk, at);
  let level = Number.POSITIVE_INFINITY;
  for (let depth = 0; ; depth++) {
    const magic = be16(b, 8);
    if (magic !== DA_NODE_MAGIC && magic !== DA3_NODE_MAGIC) break;
    const bat = { ...at, structure: "attribute node", block: lblk };
    if (depth >= DA_NODE_MAXDEPTH || magic !== (g.v5 ? DA3_NODE_MAGIC : DA_NODE_MAGIC))
      throw new XfsFormatError("bad attribute node", bat);
    if (g.v5) checkDa3Block(b, { ...chk, daddr }, bat);
    const node = decodeDaNode(b, g.v5, bat);
    if (node.level >= level) throw new XfsFormatError("attribute node levels do not decrease", bat);
    level = node.level;
    lblk = node.entries[0].before;
    ({ b, daddr } = await attrBlock(ctx, exts, lblk, at));
  }
  const out: XfsRawAttr[] = [];
  const seen = new Set<number>();
  for (;;) {
    const bat = { ...at, structure: "attribute leaf", block: lblk };
    if (seen.has(lblk)) throw new XfsFormatError("attribute leaf chain loops", bat);
    seen.add(lblk);
    if (be16(b, 8) !== (g.v5 ? ATTR3_LEAF_MAGIC : ATTR_LEAF_MAGIC))
      throw new XfsFormatError(`bad attribute leaf magic 0x${be16(b, 8).toString(16)}`, bat);
    if (g.v5) checkDa3Block(b, { ...chk, daddr }, bat);
    const leaf = decodeAttrLeaf(b, g.v5, bat);
    for (const e of leaf.entries) out.push(e);
    if (leaf.forw === 0) break;
    lblk = leaf.forw;
    ({ b, daddr } = await attrBlock(ctx, exts, lblk, at));
  }
  return out;
}

async function readRemoteValue(
  ctx: ForkReadContext,
  inode: XfsInode,
  blk: number,
  len: number,
  at: XfsLocation,
): Promise<Uint8Array> {
  const g = ctx.geometry;
  const exts = await ctx.forkExtents(inode, "attr");
  const n = remoteBlocks(len, g.blockSize, g.v5);
  const blocks: { data: Uint8Array; daddr: number }[] = [];
  for (let k = 0; k < n; k++) {
    const { b, daddr } = await attrBlock(ctx, exts, blk + k, at);
    blocks.push({ data: b, daddr });
  }
  return assembleRemoteValue(blocks, len, g.v5, inode.ino, g.metaUuid, at);
}
