/**
 * File content (the data fork of regular files): read the block mapping, release it, and write new
 * content. New content gets extents from alloc.ts near the inode (as long as each can be, up to the
 * 21-bit extent length), the bytes are written straight to the device, and the fork is built in
 * the form the kernel would use: extents format while the records fit in the inode's data fork,
 * else a bmbt (xfs_bmap_extents_to_btree: an inode root over leaf blocks, through the generic
 * B+tree). Runs of all-zero blocks can be left as holes (`sparse`). Every data extent and bmbt
 * block is recorded in the rmapbt with the file's inode number and offset.
 *
 * On a reflink filesystem, releasing a file's shared blocks drops its reference to them
 * (refcount-write.ts) instead of freeing them.
 */
import { agbToFsb, fsbToAg, inoToAg } from "./ag.js";
import type { Allocator, SpaceContext } from "./alloc.js";
import { Btree, INODE_ROOT_PTR, NULL_PTR } from "./btree.js";
import { type BmbtKey, type BmbtRec, bmbtOps, bmdrMaxRecs, readBmdr, writeBmdr } from "./btree-bmap.js";
import { btreeInsert } from "./btree-update.js";
import { XfsFormatError, XfsFsError } from "./errors.js";
import { type ForkKind, forkArea, forkExtents, MAX_EXTLEN, packExtent, type XfsExtent } from "./fork.js";
import { DIFLAG2_REFLINK, FMT_BTREE, FMT_EXTENTS, FMT_LOCAL, type XfsInode } from "./inode.js";
import { sharedRanges } from "./refcount.js";
import { refcountDecrement } from "./refcount-write.js";
import { rmapUnmap } from "./rmap.js";

/** A fork's bytes inside `inode.raw` (the data fork unless `which` says otherwise). */
function dataFork(inode: XfsInode, which: ForkKind = "data"): Uint8Array {
  const area = forkArea(inode, which);
  if (!area) throw new Error(`no ${which} fork`);
  return inode.raw.subarray(area.start, area.start + area.size);
}

function rmapOwner(inode: XfsInode, fileOff: number, bmbt = false, which: ForkKind = "data") {
  return { owner: BigInt(inode.ino), offset: BigInt(fileOff), bmbtBlock: bmbt, attrFork: which === "attr" };
}

/**
 * The bmbt of an inode's data fork (or, with `which` = "attr", its attribute fork: one generic
 * bmbt for both, as xfs_bmbt_init_cursor's whichfork), rooted in `inode.raw`; block counts go to
 * `inode.nblocks`.
 */
export function bmbtTree(
  ctx: SpaceContext,
  alloc: Allocator,
  inode: XfsInode,
  which: ForkKind = "data",
): Btree<BmbtRec, BmbtKey> {
  const geo = ctx.geo;
  const fork = () => dataFork(inode, which);
  const home = inoToAg(geo, inode.ino).agno;
  return new Btree<BmbtRec, BmbtKey>(bmbtOps, {
    bufs: ctx.bufs,
    blockSize: geo.blockSize,
    crc: geo.crc,
    uuid: geo.metaUuid,
    owner: inode.ino,
    ptrToOffset: (p) => {
      const { agno, agbno } = fsbToAg(geo, p);
      if (agno >= geo.agCount || agbno >= geo.agBlocks) {
        throw new XfsFormatError(`bmbt pointer ${p} outside the filesystem`, {
          inode: inode.ino,
          file: geo.file,
        });
      }
      return (agno * geo.agBlocks + agbno) * geo.blockSize;
    },
    getRoot: () => ({ ptr: INODE_ROOT_PTR, levels: readBmdr(fork()).level + 1 }),
    setRoot: () => {
      throw new Error("a bmbt root stays in the inode");
    },
    allocBlock: async (near) => {
      const hint = near >= 0 ? fsbToAg(geo, near) : { agno: home, agbno: 0 };
      const r = await alloc.alloc(hint.agno, {
        minlen: 1,
        maxlen: 1,
        near: hint.agbno,
        owner: rmapOwner(inode, 0, true, which),
      });
      if (!r) throw new XfsFsError("ENOSPC", "no space left for a bmbt block", `<inode ${inode.ino}>`);
      inode.nblocks++;
      return agbToFsb(geo, r.agno, r.ext.agbno);
    },
    freeBlock: async (p) => {
      const { agno, agbno } = fsbToAg(geo, p);
      await alloc.free(agno, agbno, 1, rmapOwner(inode, 0, true, which));
      inode.nblocks--;
    },
    inodeRoot: {
      read: () => readBmdr(fork()),
      write: (root) => writeBmdr(fork(), root),
      maxRecs: () => bmdrMaxRecs(fork().length),
    },
  });
}

/** Extents read from a damaged inode must stay inside one AG and must not overlap or go backwards. */
function checkExtents(ctx: SpaceContext, inode: XfsInode, extents: XfsExtent[]): XfsExtent[] {
  const geo = ctx.geo;
  let end = 0;
  for (const e of extents) {
    const { agno, agbno } = fsbToAg(geo, e.startblock);
    const agLen = agno < geo.agCount - 1 ? geo.agBlocks : geo.dblocks - agno * geo.agBlocks;
    if (agno >= geo.agCount || e.blockcount === 0 || agbno + e.blockcount > agLen || e.startoff < end) {
      throw new XfsFormatError(
        `data extent ${e.startoff}+${e.blockcount} at block ${e.startblock} is invalid`,
        {
          structure: "data fork",
          inode: inode.ino,
          file: geo.file,
        },
      );
    }
    end = e.startoff + e.blockcount;
  }
  return extents;
}

/** The data fork's extents and (for a bmbt) its blocks. */
export async function dataMapping(
  ctx: SpaceContext,
  alloc: Allocator,
  inode: XfsInode,
): Promise<{ extents: XfsExtent[]; bmbtBlocks: number[] }> {
  if (inode.format === FMT_EXTENTS) {
    return {
      extents: checkExtents(ctx, inode, forkExtents(inode, "data", { file: ctx.geo.file })),
      bmbtBlocks: [],
    };
  }
  if (inode.format === FMT_BTREE) {
    const t = bmbtTree(ctx, alloc, inode);
    const extents: XfsExtent[] = [];
    for await (const r of t.records()) extents.push(r);
    return { extents: checkExtents(ctx, inode, extents), bmbtBlocks: await t.blocks() };
  }
  if (inode.format === FMT_LOCAL) return { extents: [], bmbtBlocks: [] };
  throw new XfsFormatError(`data fork format ${inode.format}`, { inode: inode.ino, file: ctx.geo.file });
}

/**
 * The data fork's mapping — what releasing it gives back. Blocks shared with another file
 * (reflink) are not freed by the release but lose this file's reference (freeMapping).
 */
export async function releasableMapping(
  ctx: SpaceContext,
  alloc: Allocator,
  inode: XfsInode,
): Promise<{ extents: XfsExtent[]; bmbtBlocks: number[] }> {
  return dataMapping(ctx, alloc, inode);
}

/** Free a mapping's blocks and reset the fork to an empty extent list. */
async function freeMapping(
  ctx: SpaceContext,
  alloc: Allocator,
  inode: XfsInode,
  mapping: { extents: XfsExtent[]; bmbtBlocks: number[] },
): Promise<void> {
  const geo = ctx.geo;
  const reflinked = geo.reflink && (inode.flags2 & DIFLAG2_REFLINK) !== 0n;
  for (const e of mapping.extents) {
    const { agno, agbno } = fsbToAg(geo, e.startblock);
    const ag = await alloc.ag(agno);
    const owner = (b: number) => ({ ...rmapOwner(inode, e.startoff + (b - agbno)), unwritten: e.unwritten });
    const free = async (b: number, n: number) => {
      // Contents still waiting in the cache must not land on blocks that get a new owner.
      ctx.bufs.forgetRange((agno * geo.agBlocks + b) * geo.blockSize, n * geo.blockSize);
      await alloc.free(agno, b, n, owner(b));
    };
    // Shared blocks stay with the other files: this file's rmap record and reference go.
    const shared = reflinked ? await sharedRanges(geo, ctx.bufs, agno, ag.agf, agbno, e.blockcount) : [];
    let cur = agbno;
    for (const sh of shared) {
      if (sh.agbno > cur) await free(cur, sh.agbno - cur);
      if (ag.rmap) {
        await ag.fixFreelist();
        await rmapUnmap(ag.rmap, sh.agbno, sh.len, owner(sh.agbno));
      }
      await refcountDecrement(ag, sh.agbno, sh.len);
      cur = sh.agbno + sh.len;
    }
    if (cur < agbno + e.blockcount) await free(cur, agbno + e.blockcount - cur);
    inode.nblocks -= e.blockcount;
  }
  for (const b of mapping.bmbtBlocks) {
    const { agno, agbno } = fsbToAg(geo, b);
    ctx.bufs.forget((agno * geo.agBlocks + agbno) * geo.blockSize);
    await alloc.free(agno, agbno, 1, rmapOwner(inode, 0, true));
    inode.nblocks--;
  }
  dataFork(inode).fill(0);
  inode.format = FMT_EXTENTS;
  inode.nextents = 0;
}

/** Give back every block of the data fork; the fork becomes an empty extent list. */
export async function releaseData(ctx: SpaceContext, alloc: Allocator, inode: XfsInode): Promise<void> {
  await freeMapping(ctx, alloc, inode, await releasableMapping(ctx, alloc, inode));
}

/** Extents up to this many bytes are written through the buffer cache, larger ones directly. */
const SMALL_DATA = 64 * 1024;

function allZero(b: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (b[i] !== 0) return false;
  return true;
}

export interface WriteDataOptions {
  /** Leave runs of all-zero blocks unallocated (holes). */
  sparse?: boolean;
}

/** Bytes a streamed source is gathered into before its blocks are allocated and written. */
const STAGE_BYTES = 8 << 20;

/** File content as the writers take it: one buffer, or chunks (a stream). */
export type DataSource = Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/**
 * Places file blocks: allocates extents for runs of blocks (near the previous one, so a file
 * written in pieces still gets long contiguous extents, merged as they touch), writes the bytes
 * (small runs through the buffer cache, large ones straight to the device), and records them.
 */
export class BlockPlacer {
  readonly extents: XfsExtent[] = [];
  private agno: number;
  private near: number;
  constructor(
    private readonly ctx: SpaceContext,
    private readonly alloc: Allocator,
    private readonly inode: XfsInode,
    private readonly sparse: boolean,
  ) {
    const { agno, agino } = inoToAg(ctx.geo, inode.ino);
    this.agno = agno;
    this.near = Math.floor(agino / ctx.geo.inopblock);
  }

  /**
   * Place `len` bytes of `data` as the file's blocks from `firstBlock` on (`len` a whole number
   * of blocks except at the end of the file, whose last block is padded with zeros).
   */
  async put(firstBlock: number, data: Uint8Array, len: number): Promise<void> {
    const bs = this.ctx.geo.blockSize;
    const nblocks = Math.ceil(len / bs);
    const zero = (b: number) => this.sparse && allZero(data, b * bs, Math.min((b + 1) * bs, len));
    for (let b = 0; b < nblocks; ) {
      if (zero(b)) {
        b++;
        continue;
      }
      const s = b;
      while (b < nblocks && !zero(b)) b++;
      await this.putRun(firstBlock, data, len, s, b);
    }
  }

  /** Blocks [s, e) of `data` (file blocks firstBlock+s ...). */
  private async putRun(
    firstBlock: number,
    data: Uint8Array,
    len: number,
    s: number,
    e: number,
  ): Promise<void> {
    const { ctx, alloc, inode } = this;
    const geo = ctx.geo;
    const bs = geo.blockSize;
    for (let off = s; off < e; ) {
      const fileOff = firstBlock + off;
      const want = Math.min(e - off, MAX_EXTLEN);
      const r = await alloc.alloc(this.agno, {
        minlen: 1,
        maxlen: want,
        near: this.near,
        owner: rmapOwner(inode, fileOff),
      });
      if (!r) {
        // Undo what this write allocated before failing.
        for (const x of this.extents) {
          const { agno: a, agbno } = fsbToAg(geo, x.startblock);
          await alloc.free(a, agbno, x.blockcount, rmapOwner(inode, x.startoff));
        }
        this.extents.length = 0;
        throw new XfsFsError("ENOSPC", "no space left for the file's data", `<inode ${inode.ino}>`);
      }
      this.agno = r.agno;
      this.near = r.ext.agbno + r.ext.len;
      const fsb = agbToFsb(geo, r.agno, r.ext.agbno);
      const last = this.extents[this.extents.length - 1];
      if (
        last &&
        last.startoff + last.blockcount === fileOff &&
        last.startblock + last.blockcount === fsb &&
        last.blockcount + r.ext.len <= MAX_EXTLEN
      ) {
        last.blockcount += r.ext.len;
      } else
        this.extents.push({ startoff: fileOff, startblock: fsb, blockcount: r.ext.len, unwritten: false });
      // The bytes: whole blocks straight from the caller's buffer, a short last one padded.
      const byteStart = off * bs;
      const byteEnd = (off + r.ext.len) * bs;
      const at = (r.agno * geo.agBlocks + r.ext.agbno) * bs;
      if (byteEnd - byteStart <= SMALL_DATA) {
        // Small contents wait in the buffer cache and go out with the metadata, adjacent ones
        // in one write (and the editor's reader sees them before that).
        const buf = ctx.bufs.fresh(at, byteEnd - byteStart, "file data");
        buf.transient = true;
        buf.data.set(data.subarray(byteStart, Math.min(byteEnd, len)));
        ctx.bufs.dirty(buf, {});
        off += r.ext.len;
        continue;
      }
      const whole = Math.min(byteEnd, Math.floor(len / bs) * bs);
      if (whole > byteStart) await ctx.bufs.writeThrough(at, data.subarray(byteStart, whole));
      if (whole < byteEnd) {
        const tail = new Uint8Array(byteEnd - Math.max(whole, byteStart));
        tail.set(data.subarray(Math.max(whole, byteStart), Math.min(byteEnd, len)));
        await ctx.bufs.writeThrough(at + Math.max(whole, byteStart) - byteStart, tail);
      }
      off += r.ext.len;
    }
  }
}

/**
 * Replace a regular file's content: allocate and write the new blocks, release the old ones,
 * build the fork, set size and block count. A stream is taken a stage (8 MiB) at a time, so
 * memory stays bounded whatever the file's size. The caller stores the inode (and sets times);
 * a source that throws leaves the new blocks allocated — the editor's transaction undoes them.
 */
export async function writeData(
  ctx: SpaceContext,
  alloc: Allocator,
  inode: XfsInode,
  data: DataSource,
  opts: WriteDataOptions = {},
): Promise<void> {
  const bs = ctx.geo.blockSize;
  // All or nothing: the new blocks are allocated and written first; the old ones are freed only
  // once that worked, so ENOSPC leaves the file as it was.
  const old = await releasableMapping(ctx, alloc, inode);
  const placer = new BlockPlacer(ctx, alloc, inode, opts.sparse === true);
  let size = 0;
  if (data instanceof Uint8Array) {
    await placer.put(0, data, data.length);
    size = data.length;
  } else {
    let stage: Uint8Array | undefined;
    let filled = 0;
    for await (const chunk of data as AsyncIterable<Uint8Array>) {
      if (!(chunk instanceof Uint8Array))
        throw new XfsFsError("EINVAL", "file data chunks must be bytes", `<inode ${inode.ino}>`);
      let at = 0;
      // Whole stages straight from a large chunk, without copying.
      while (filled === 0 && chunk.length - at >= STAGE_BYTES) {
        await placer.put(size / bs, chunk.subarray(at, at + STAGE_BYTES), STAGE_BYTES);
        at += STAGE_BYTES;
        size += STAGE_BYTES;
      }
      while (at < chunk.length) {
        stage ??= new Uint8Array(STAGE_BYTES);
        const n = Math.min(chunk.length - at, STAGE_BYTES - filled);
        stage.set(chunk.subarray(at, at + n), filled);
        filled += n;
        at += n;
        if (filled === STAGE_BYTES) {
          await placer.put(size / bs, stage, STAGE_BYTES);
          size += STAGE_BYTES;
          filled = 0;
        }
      }
    }
    if (filled > 0) await placer.put(size / bs, stage as Uint8Array, filled);
    size += filled;
  }
  const extents = placer.extents;
  await freeMapping(ctx, alloc, inode, old);
  inode.nblocks += extents.reduce((n, x) => n + x.blockcount, 0);
  inode.size = size;
  await buildFork(ctx, alloc, inode, extents);
}

/**
 * Write a fork (data, or attr with `which`) holding `extents` (sorted, already allocated and
 * counted in nblocks) into an inode whose fork is empty: extents format while the records fit,
 * else a bmbt (xfs_bmap_extents_to_btree: one leaf under an inode root of level 1, then the
 * records). xfs_repair wants exactly this threshold: a btree fork whose records would fit the
 * inode is "too low for file format".
 */
export async function buildFork(
  ctx: SpaceContext,
  alloc: Allocator,
  inode: XfsInode,
  extents: XfsExtent[],
  which: ForkKind = "data",
): Promise<void> {
  const fork = dataFork(inode, which);
  fork.fill(0);
  const room = Math.floor(fork.length / 16);
  const setForm = (format: number) => {
    if (which === "data") [inode.format, inode.nextents] = [format, extents.length];
    else [inode.aformat, inode.anextents] = [format, extents.length];
  };
  if (extents.length <= room) {
    setForm(FMT_EXTENTS);
    extents.forEach((x, i) => {
      packExtent(fork, 16 * i, x);
    });
    return;
  }
  setForm(FMT_BTREE);
  const t = bmbtTree(ctx, alloc, inode, which);
  const leaf = await t.host.allocBlock(extents[0].startblock);
  t.writeNode({
    ptr: leaf,
    level: 0,
    left: NULL_PTR,
    right: NULL_PTR,
    recs: [],
    keys: [],
    highKeys: [],
    ptrs: [],
  });
  writeBmdr(fork, { level: 1, keys: [{ startoff: 0 }], ptrs: [leaf] });
  for (const x of extents) await btreeInsert(t, x);
}

/** Free a bmbt's blocks (the fork is rebuilt after); the fork's extents stay allocated. */
export async function freeBmbtBlocks(
  ctx: SpaceContext,
  alloc: Allocator,
  inode: XfsInode,
  blocks: number[],
  which: ForkKind = "data",
): Promise<void> {
  const geo = ctx.geo;
  for (const b of blocks) {
    const { agno, agbno } = fsbToAg(geo, b);
    ctx.bufs.forget((agno * geo.agBlocks + agbno) * geo.blockSize);
    await alloc.free(agno, agbno, 1, rmapOwner(inode, 0, true, which));
    inode.nblocks--;
  }
  dataFork(inode, which).fill(0);
  if (which === "data") [inode.format, inode.nextents] = [FMT_EXTENTS, 0];
  else [inode.aformat, inode.anextents] = [FMT_EXTENTS, 0];
}
