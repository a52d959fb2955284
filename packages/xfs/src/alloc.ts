/**
 * Extent allocation inside an AG (xfs_alloc.c): the bnobt and cntbt change together, the AGFL is
 * refilled or trimmed to the length the btrees may need before each allocation or free, every
 * change of ownership is mirrored in the rmapbt (rmap.ts), and the AGF counters (freeblks,
 * longest, btreeblks, flcount, rmap_blocks) and the superblock's free-block delta follow.
 *
 * Accounting, as xfs_repair counts it: agf_freeblks is the sum of the free-space records; blocks
 * on the AGFL and blocks of the bnobt/cntbt/rmapbt beyond their roots (agf_btreeblks) are not free
 * space but are still counted in sb_fdblocks = sum(freeblks + flcount + btreeblks). So moving a
 * block between free space, the AGFL and those btrees never changes sb_fdblocks; handing blocks to
 * an owner outside the AG's own metadata (a file, an inode chunk, the inobt) does.
 */
import {
  type Agf,
  agbOffset,
  agflPop,
  agflPush,
  agLength,
  decodeAgf,
  encodeAgf,
  NULLAGBLOCK,
  readAgfBuf,
  readAgflBuf,
  type SpaceGeometry,
} from "./ag.js";
import { agReservation } from "./ag-resv.js";
import { Btree, type BtreeHost, computeMaxLevels, type Ptr } from "./btree.js";
import { type AllocRec, bnobtOps, cntbtOps } from "./btree-alloc.js";
import { RMAP_OWN, type RmapKey, type RmapRec, rmapbtOps } from "./btree-rmap.js";
import { btreeDeleteAt, btreeInsert, btreeUpdateAt } from "./btree-update.js";
import type { BufCache, MetaBuf } from "./buf.js";
import { be16, be64, setBe16, setBe64 } from "./bytes.js";
import { XfsFormatError, XfsFsError } from "./errors.js";
import { type OwnerInfo, rmapMap, rmapUnmap } from "./rmap.js";

/** Superblock counters changed by the engine; the caller folds them into the superblock. */
export interface SbDelta {
  fdblocks: number;
  icount: number;
  ifree: number;
}

/** What every space operation needs: geometry, the buffer cache, and the counter deltas. */
export interface SpaceContext {
  geo: SpaceGeometry;
  bufs: BufCache;
  delta: SbDelta;
}

export interface AllocRequest {
  minlen: number;
  maxlen: number;
  /** Prefer an extent starting at or near this AG block. */
  near?: number;
  /** Only an extent starting exactly here. */
  exact?: number;
  /** Start block must be a multiple of this (inode chunks). */
  alignment?: number;
  /** Lowest and highest acceptable start block. */
  minAgbno?: number;
  maxAgbno?: number;
  owner: OwnerInfo;
}

export interface Extent {
  agbno: number;
  len: number;
}

function noSpace(agno: number): XfsFsError {
  return new XfsFsError("ENOSPC", `no space left in AG ${agno}`, `AG ${agno}`);
}

/** One AG's free-space state: AGF, AGFL and the three AGF btrees. */
export class AgSpace {
  readonly bno: Btree<AllocRec, AllocRec>;
  readonly cnt: Btree<AllocRec, AllocRec>;
  readonly rmap?: Btree<RmapRec, RmapKey>;
  private readonly allocMaxLevels: number;
  private readonly rmapMaxLevels: number;

  private constructor(
    readonly ctx: SpaceContext,
    readonly agno: number,
    readonly agfBuf: MetaBuf,
    readonly agflBuf: MetaBuf,
    readonly agf: Agf,
  ) {
    const geo = ctx.geo;
    const host = (which: "bno" | "cnt" | "rmap"): BtreeHost<never> => ({
      bufs: ctx.bufs,
      blockSize: geo.blockSize,
      crc: geo.crc,
      uuid: geo.metaUuid,
      owner: agno,
      agno,
      ptrToOffset: (p: Ptr) => this.blockOffset(p, which),
      getRoot: () =>
        which === "bno"
          ? { ptr: agf.bnoRoot, levels: agf.bnoLevel }
          : which === "cnt"
            ? { ptr: agf.cntRoot, levels: agf.cntLevel }
            : { ptr: agf.rmapRoot, levels: agf.rmapLevel },
      setRoot: (p: Ptr, levels: number) => {
        if (which === "bno") [agf.bnoRoot, agf.bnoLevel] = [p, levels];
        else if (which === "cnt") [agf.cntRoot, agf.cntLevel] = [p, levels];
        else [agf.rmapRoot, agf.rmapLevel] = [p, levels];
        this.writeAgf();
      },
      allocBlock: async () => {
        const b = agflPop(geo, this.agflBuf, agf, agno);
        agf.btreeblks++;
        if (which === "rmap") agf.rmapBlocks++;
        this.writeAgf();
        return b;
      },
      freeBlock: async (p: Ptr) => {
        agflPush(geo, ctx.bufs, this.agflBuf, agf, p);
        agf.btreeblks--;
        if (which === "rmap") agf.rmapBlocks--;
        this.writeAgf();
      },
    });
    this.bno = new Btree(bnobtOps, host("bno") as BtreeHost<AllocRec>);
    this.cnt = new Btree(cntbtOps, host("cnt") as BtreeHost<AllocRec>);
    if (geo.rmapbt) this.rmap = new Btree(rmapbtOps, host("rmap") as BtreeHost<RmapKey>);
    const minLeaf = Math.floor(this.bno.leafMax / 2);
    const minNode = Math.floor(this.bno.nodeMax / 2);
    this.allocMaxLevels = computeMaxLevels(minLeaf, minNode, Math.ceil((geo.agBlocks + 1) / 2));
    this.rmapMaxLevels = this.rmap
      ? computeMaxLevels(Math.floor(this.rmap.leafMax / 2), Math.floor(this.rmap.nodeMax / 2), geo.agBlocks)
      : 0;
  }

  static async open(ctx: SpaceContext, agno: number): Promise<AgSpace> {
    const agfBuf = await readAgfBuf(ctx.geo, ctx.bufs, agno);
    const agf = decodeAgf(ctx.geo, agfBuf, agno);
    const agflBuf = await readAgflBuf(ctx.geo, ctx.bufs, agno);
    return new AgSpace(ctx, agno, agfBuf, agflBuf, agf);
  }

  get length(): number {
    return agLength(this.ctx.geo, this.agno);
  }

  private blockOffset(p: Ptr, which: string): number {
    if (p < 0 || p >= this.length || p === NULLAGBLOCK) {
      throw new XfsFormatError(`${which}bt pointer ${p} outside the AG`, {
        agno: this.agno,
        file: this.ctx.geo.file,
      });
    }
    return agbOffset(this.ctx.geo, this.agno, p);
  }

  writeAgf(): void {
    encodeAgf(this.ctx.geo, this.ctx.bufs, this.agfBuf, this.agf);
  }

  /** Blocks the AGFL must hold before a change to the free-space and rmap btrees (xfs_alloc_min_freelist). */
  minFreelist(): number {
    const a = this.agf;
    let n = Math.min(a.bnoLevel + 1, this.allocMaxLevels) + Math.min(a.cntLevel + 1, this.allocMaxLevels);
    if (this.rmap) n += Math.min(a.rmapLevel + 1, this.rmapMaxLevels);
    return n;
  }

  private async refreshLongest(): Promise<void> {
    const last = await this.cnt.edge(true);
    this.agf.longest = last ? last.rec.blockcount : 0;
    this.writeAgf();
  }

  /** A free-space record from a damaged tree must not hand out blocks past the AG's end. */
  private checkFreeRecord(r: AllocRec): void {
    if (r.blockcount === 0 || r.startblock + r.blockcount > this.length) {
      throw new XfsFormatError(`free extent ${r.startblock}+${r.blockcount} does not fit the AG`, {
        structure: "bnobt",
        agno: this.agno,
        file: this.ctx.geo.file,
      });
    }
  }

  /** Nor the AG headers or the internal log, whatever the free-space trees say. */
  private checkNotFixedMetadata(agbno: number, len: number): void {
    const geo = this.ctx.geo;
    const headerBlocks = Math.ceil((4 * geo.sectorSize) / geo.blockSize);
    const inLog =
      geo.logAgno === this.agno &&
      geo.logStart !== undefined &&
      geo.logBlocks !== undefined &&
      agbno < geo.logStart + geo.logBlocks &&
      agbno + len > geo.logStart;
    if (agbno < headerBlocks || inLog) {
      throw new XfsFormatError(
        `free-space trees offer blocks ${agbno}+${len}, which hold the AG headers or the log`,
        {
          structure: "bnobt",
          agno: this.agno,
          file: this.ctx.geo.file,
        },
      );
    }
  }

  /** Take [agbno, agbno+len) out of the free-space trees; it must lie inside one free extent. */
  async removeFree(agbno: number, len: number): Promise<void> {
    const cur = await this.bno.lookup({ startblock: agbno, blockcount: 0 }, "le");
    const r = cur?.rec;
    if (!cur || !r || r.startblock + r.blockcount < agbno + len) {
      throw new XfsFormatError(`blocks ${agbno}+${len} are not free`, {
        structure: "bnobt",
        agno: this.agno,
        file: this.ctx.geo.file,
      });
    }
    this.checkFreeRecord(r);
    this.checkNotFixedMetadata(agbno, len);
    const ccur = await this.cnt.lookup(r, "eq");
    if (!ccur)
      throw new XfsFormatError(`free extent ${r.startblock}+${r.blockcount} missing from the cntbt`, {
        structure: "cntbt",
        agno: this.agno,
        file: this.ctx.geo.file,
      });
    const left: AllocRec = { startblock: r.startblock, blockcount: agbno - r.startblock };
    const right: AllocRec = {
      startblock: agbno + len,
      blockcount: r.startblock + r.blockcount - agbno - len,
    };
    await btreeDeleteAt(this.cnt, ccur);
    if (left.blockcount > 0) await btreeInsert(this.cnt, left);
    if (right.blockcount > 0) await btreeInsert(this.cnt, right);
    const bcur = await this.bno.lookup(r, "eq");
    if (!bcur)
      throw new XfsFormatError("bnobt record vanished (the tree is inconsistent)", {
        structure: "bnobt",
        agno: this.agno,
        file: this.ctx.geo.file,
      });
    if (left.blockcount > 0) {
      await btreeUpdateAt(this.bno, bcur, left);
      if (right.blockcount > 0) await btreeInsert(this.bno, right);
    } else if (right.blockcount > 0) await btreeUpdateAt(this.bno, bcur, right);
    else await btreeDeleteAt(this.bno, bcur);
    this.agf.freeblks -= len;
    await this.refreshLongest();
  }

  /** Return [agbno, agbno+len) to the free-space trees, merging with free neighbours. */
  async addFree(agbno: number, len: number): Promise<void> {
    const where = { structure: "bnobt", agno: this.agno, file: this.ctx.geo.file };
    if (agbno + len > this.length) throw new XfsFormatError(`freeing ${agbno}+${len} past the AG end`, where);
    this.checkNotFixedMetadata(agbno, len);
    const lcur = await this.bno.lookup({ startblock: agbno, blockcount: 0 }, "le");
    const l = lcur?.rec;
    if (l && l.startblock + l.blockcount > agbno)
      throw new XfsFormatError(`blocks ${agbno}+${len} are already free`, where);
    const rcur = await this.bno.lookup({ startblock: agbno, blockcount: 0 }, "ge");
    const r = rcur?.rec;
    if (r && r.startblock < agbno + len)
      throw new XfsFormatError(`blocks ${agbno}+${len} are already free`, where);
    const haveLeft = l !== undefined && l.startblock + l.blockcount === agbno;
    const haveRight = r !== undefined && r.startblock === agbno + len;
    let start = agbno;
    let count = len;
    if (haveLeft && l) {
      const c = await this.cnt.lookup(l, "eq");
      if (!c) throw new XfsFormatError("cntbt lacks a bnobt record", where);
      await btreeDeleteAt(this.cnt, c);
      start = l.startblock;
      count += l.blockcount;
    }
    if (haveRight && r) {
      const c = await this.cnt.lookup(r, "eq");
      if (!c) throw new XfsFormatError("cntbt lacks a bnobt record", where);
      await btreeDeleteAt(this.cnt, c);
      count += r.blockcount;
    }
    const merged = { startblock: start, blockcount: count };
    if (haveLeft && l) {
      if (haveRight && r) {
        const rc = await this.bno.lookup(r, "eq");
        if (rc) await btreeDeleteAt(this.bno, rc);
      }
      const lc = await this.bno.lookup(l, "eq");
      if (!lc) throw new XfsFormatError("bnobt record vanished (the tree is inconsistent)", where);
      await btreeUpdateAt(this.bno, lc, merged);
    } else if (haveRight && r) {
      const rc = await this.bno.lookup(r, "eq");
      if (!rc) throw new XfsFormatError("bnobt record vanished (the tree is inconsistent)", where);
      await btreeUpdateAt(this.bno, rc, merged);
    } else await btreeInsert(this.bno, merged);
    await btreeInsert(this.cnt, merged);
    this.agf.freeblks += len;
    await this.refreshLongest();
  }

  /** Bring the AGFL to exactly the length the btrees may need (xfs_alloc_fix_freelist). */
  async fixFreelist(): Promise<void> {
    const agf = this.agf;
    let need = this.minFreelist();
    while (agf.flcount > need) {
      const b = agflPop(this.ctx.geo, this.agflBuf, agf, this.agno);
      this.writeAgf();
      if (this.rmap) await rmapUnmap(this.rmap, b, 1, { owner: RMAP_OWN.AG });
      await this.addFree(b, 1);
      need = this.minFreelist();
    }
    while (agf.flcount < need) {
      const want = need - agf.flcount;
      const ext = await this.findBySize(1, want, 1);
      if (!ext) throw noSpace(this.agno);
      await this.removeFree(ext.agbno, ext.len);
      if (this.rmap) await rmapMap(this.rmap, ext.agbno, ext.len, { owner: RMAP_OWN.AG });
      for (let b = ext.agbno; b < ext.agbno + ext.len; b++)
        agflPush(this.ctx.geo, this.ctx.bufs, this.agflBuf, agf, b);
      this.writeAgf();
      need = this.minFreelist();
    }
  }

  // ---- finding free extents ------------------------------------------------------------------

  private fit(r: AllocRec, req: AllocRequest, at?: number): Extent | null {
    const align = req.alignment ?? 1;
    const lo = Math.max(r.startblock, req.minAgbno ?? 0);
    const end = r.startblock + r.blockcount;
    let start = at !== undefined ? Math.max(at, lo) : lo;
    start = Math.ceil(start / align) * align;
    const maxStart = req.maxAgbno ?? Number.MAX_SAFE_INTEGER;
    if (start > maxStart || start + req.minlen > end) return null;
    return { agbno: start, len: Math.min(req.maxlen, end - start) };
  }

  /** Best fit by size: the smallest free extent that takes maxlen, else the largest >= minlen. */
  async findBySize(
    minlen: number,
    maxlen: number,
    alignment: number,
    req?: AllocRequest,
  ): Promise<Extent | null> {
    const q: AllocRequest = req ?? { minlen, maxlen, alignment, owner: { owner: RMAP_OWN.NULL } };
    let cur = await this.cnt.lookup({ blockcount: maxlen, startblock: 0 }, "ge");
    if (cur) {
      do {
        const e = this.fit(cur.rec, q);
        if (e) return e;
      } while (await this.cnt.step(cur, 1));
    }
    // Nothing holds maxlen: walk down from the largest extent for the longest fit >= minlen.
    cur = await this.cnt.edge(true);
    let best: Extent | null = null;
    if (cur) {
      do {
        if (cur.rec.blockcount < minlen || (best && cur.rec.blockcount <= best.len)) break;
        const e = this.fit(cur.rec, q);
        if (e && (!best || e.len > best.len)) best = e;
      } while (await this.cnt.step(cur, -1));
    }
    return best;
  }

  /** The free extent nearest `near` (xfs_alloc_ag_vextent_near, simplified: closest start). */
  private async findNear(req: AllocRequest, near: number): Promise<Extent | null> {
    const key = { startblock: near, blockcount: 0 };
    let best: Extent | null = null;
    let bestDist = Number.POSITIVE_INFINITY;
    const consider = (e: Extent | null) => {
      if (!e) return;
      const d = Math.abs(e.agbno - near);
      if (d < bestDist || (d === bestDist && best && e.len > best.len)) {
        best = e;
        bestDist = d;
      }
    };
    // Scan left from the extent holding `near`, then right; each side stops at its first fit.
    const left = await this.bno.lookup(key, "le");
    if (left) {
      do {
        const r = left.rec;
        const e = this.fit(
          r,
          req,
          r.startblock <= near ? Math.min(near, r.startblock + r.blockcount - req.minlen) : undefined,
        );
        if (e) {
          consider(e);
          break;
        }
      } while (await this.bno.step(left, -1));
    }
    const right = await this.bno.lookup({ startblock: near + 1, blockcount: 0 }, "ge");
    if (right) {
      do {
        const r = right.rec;
        if (r.startblock - near > bestDist) break;
        const e = this.fit(r, req);
        if (e) {
          consider(e);
          break;
        }
      } while (await this.bno.step(right, 1));
    }
    return best;
  }

  private async findExact(req: AllocRequest, at: number): Promise<Extent | null> {
    const cur = await this.bno.lookup({ startblock: at, blockcount: 0 }, "le");
    if (!cur) return null;
    const r = cur.rec;
    if (r.startblock + r.blockcount < at + req.minlen) return null;
    return { agbno: at, len: Math.min(req.maxlen, r.startblock + r.blockcount - at) };
  }

  // ---- public operations ---------------------------------------------------------------------

  /**
   * Allocate one extent of minlen..maxlen blocks for `req.owner`, or null when the AG has no fit.
   * Records the owner in the rmapbt and charges sb_fdblocks.
   */
  async alloc(req: AllocRequest): Promise<Extent | null> {
    if (req.minlen < 1 || req.maxlen < req.minlen) throw new RangeError("bad allocation length");
    // The AGFL refill and the btree splits need room beyond the request, and the blocks the
    // kernel reserves for its metadata btrees in this AG are not ours (xfs_alloc_space_available).
    const avail =
      this.agf.freeblks +
      this.agf.flcount -
      this.minFreelist() -
      1 -
      agReservation(this.ctx.geo, this.agno, this.agf);
    if (avail < req.minlen) return null;
    if (req.maxlen > avail) req = { ...req, maxlen: avail };
    await this.fixFreelist();
    let ext: Extent | null;
    if (req.exact !== undefined) ext = await this.findExact(req, req.exact);
    else if (req.near !== undefined) ext = await this.findNear(req, req.near);
    else ext = await this.findBySize(req.minlen, req.maxlen, req.alignment ?? 1, req);
    if (!ext) return null;
    await this.removeFree(ext.agbno, ext.len);
    if (this.rmap) await rmapMap(this.rmap, ext.agbno, ext.len, req.owner);
    this.ctx.delta.fdblocks -= ext.len;
    this.writeAgf();
    return ext;
  }

  /** Free an extent that `owner` held (its rmap record goes too). */
  async free(agbno: number, len: number, owner: OwnerInfo): Promise<void> {
    await this.fixFreelist();
    if (this.rmap) await rmapUnmap(this.rmap, agbno, len, owner);
    await this.addFree(agbno, len);
    this.ctx.delta.fdblocks += len;
    this.writeAgf();
  }

  /** All free extents in block order (tests, statistics). */
  async freeExtents(): Promise<AllocRec[]> {
    const out: AllocRec[] = [];
    for await (const r of this.bno.records()) out.push(r);
    return out;
  }
}

/**
 * Fold the counter deltas into the primary superblock (icount at byte 128, ifree 136, fdblocks
 * 144, all u64) and clear them. With lazy counters the kernel recomputes these at mount, but
 * xfs_repair compares them with what it counts, so they are kept exact.
 */
export async function applySbDelta(ctx: SpaceContext): Promise<void> {
  const d = ctx.delta;
  if (d.fdblocks === 0 && d.icount === 0 && d.ifree === 0) return;
  const geo = ctx.geo;
  const buf = await ctx.bufs.read(0, geo.sectorSize, "superblock");
  const b = buf.data;
  const fields: [number, number][] = [
    [128, d.icount],
    [136, d.ifree],
    [144, d.fdblocks],
  ];
  for (const [off, delta] of fields) {
    const v = be64(b, off) + delta;
    if (v < 0)
      throw new XfsFormatError(`superblock counter at byte ${off} would go negative`, {
        structure: "superblock",
        file: geo.file,
      });
    setBe64(b, off, v);
  }
  ctx.bufs.dirty(buf, geo.crc ? { crcOffset: 224, lsnOffset: 240 } : {});
  d.fdblocks = 0;
  d.icount = 0;
  d.ifree = 0;
}

/**
 * Set a feature bit in the primary superblock's sb_versionnum (byte 100, u16) if it is not set
 * yet — the kernel does this for VERSION_ATTRBIT when a filesystem gets its first attribute, even
 * on v5, and xfs_db check expects it.
 */
export async function ensureVersionBit(ctx: SpaceContext, bit: number): Promise<void> {
  const buf = await ctx.bufs.read(0, ctx.geo.sectorSize, "superblock");
  const v = be16(buf.data, 100);
  if ((v & bit) === bit) return;
  ctx.bufs.willChange(buf);
  setBe16(buf.data, 100, v | bit);
  ctx.bufs.dirty(buf, ctx.geo.crc ? { crcOffset: 224, lsnOffset: 240 } : {});
}

/** The engine's view of all AGs (opened lazily) and the allocation policy across them. */
export class Allocator {
  private readonly ags = new Map<number, AgSpace>();
  constructor(readonly ctx: SpaceContext) {}

  async ag(agno: number): Promise<AgSpace> {
    let a = this.ags.get(agno);
    if (!a) {
      if (!Number.isInteger(agno) || agno < 0 || agno >= this.ctx.geo.agCount) {
        throw new XfsFormatError(`AG ${agno} does not exist`, { file: this.ctx.geo.file });
      }
      a = await AgSpace.open(this.ctx, agno);
      this.ags.set(agno, a);
    }
    return a;
  }

  /** Allocate in AG `agno` first, then the others in order; null when nothing fits anywhere. */
  async alloc(agno: number, req: AllocRequest): Promise<{ agno: number; ext: Extent } | null> {
    const n = this.ctx.geo.agCount;
    for (let k = 0; k < n; k++) {
      const a = (agno + k) % n;
      const ag = await this.ag(a);
      const r = k === 0 ? req : { ...req, near: undefined, exact: undefined };
      if (k > 0 && req.exact !== undefined) break;
      const ext = await ag.alloc(r);
      if (ext) return { agno: a, ext };
    }
    return null;
  }

  async free(agno: number, agbno: number, len: number, owner: OwnerInfo): Promise<void> {
    await (await this.ag(agno)).free(agbno, len, owner);
  }

  /** Fold the superblock counters and write every changed buffer to the device. */
  async commit(): Promise<void> {
    await applySbDelta(this.ctx);
    await this.ctx.bufs.commit();
  }
}
