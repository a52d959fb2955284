/**
 * Inode allocation (xfs_ialloc.c): pick a free inode from the finobt (or the inobt without it),
 * allocate new inode chunks when an AG has none (aligned to sb_inoalignmt; on sparse-inode
 * filesystems a sparse chunk of sb_spino_align blocks when no whole chunk fits), and free inodes
 * (a chunk whose inodes are all free is given back, as the kernel does without `ikeep`). The AGI
 * counters, the finobt, agi_iblocks/fblocks (inobtcount) and the superblock's icount/ifree delta
 * follow every change; chunk and inobt blocks are owned in the rmapbt by OWN_INODES / OWN_INOBT.
 *
 * New chunks are initialised like xfs_ialloc_inode_init: every inode gets the magic, the version
 * (3 on v5, else 2), a generation number and next_unlinked = NULLAGINO; v3 inodes also their own
 * number, the metadata uuid and their CRC. The caller writes the core of the inode it allocates
 * (mode, links, forks) and, when freeing, marks the core free (mode 0) itself.
 */
import {
  type Agi,
  agbOffset,
  agInoToIno,
  decodeAgi,
  encodeAgi,
  inoToAg,
  NULLAGINO,
  readAgiBuf,
  type SpaceGeometry,
} from "./ag.js";
import type { AgSpace, Allocator, SpaceContext } from "./alloc.js";
import { Btree, type BtreeHost, type Ptr } from "./btree.js";
import {
  ALL_FREE,
  finobtOps,
  holemaskToInodes,
  INODES_PER_CHUNK,
  INODES_PER_HOLEMASK_BIT,
  type InobtRec,
  type InoKey,
  inobtOps,
} from "./btree-ialloc.js";
import { RMAP_OWN } from "./btree-rmap.js";
import { btreeDeleteAt, btreeInsert, btreeUpdateAt } from "./btree-update.js";
import { stampCrc } from "./buf.js";
import { setBe16, setBe32, setBe64 } from "./bytes.js";
import { XfsFormatError, XfsFsError } from "./errors.js";

const DINODE_MAGIC = 0x494e;
const DINODE_CRC_OFF = 100;

/** Inodes one allocation covers and the blocks it takes (a 64-inode chunk, or one block of more). */
export function chunkGeometry(geo: SpaceGeometry): { inodes: number; blocks: number } {
  const inodes = Math.max(INODES_PER_CHUNK, geo.inopblock);
  return { inodes, blocks: inodes / geo.inopblock };
}

/** Generation numbers: a fixed mix of the inode number (reproducible images, unlike the kernel's random). */
function generation(ino: number): number {
  let x = (ino ^ 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** Write freshly initialised (free) inodes into AG blocks [agbno, agbno+blocks). */
export function initInodeBlocks(ctx: SpaceContext, agno: number, agbno: number, blocks: number): void {
  const geo = ctx.geo;
  for (let k = 0; k < blocks; k++) {
    const buf = ctx.bufs.fresh(agbOffset(geo, agno, agbno + k), geo.blockSize, "inode block");
    buf.inodes = true;
    const b = buf.data;
    for (let i = 0; i < geo.inopblock; i++) {
      const off = i * geo.inodeSize;
      const ino = agInoToIno(geo, agno, (agbno + k) * geo.inopblock + i);
      setBe16(b, off, DINODE_MAGIC);
      b[off + 4] = geo.crc ? 3 : 2;
      setBe32(b, off + 92, generation(ino));
      setBe32(b, off + 96, NULLAGINO);
      if (geo.crc) {
        setBe64(b, off + 152, ino);
        b.set(geo.metaUuid.subarray(0, 16), off + 160);
        stampCrc(b.subarray(off, off + geo.inodeSize), DINODE_CRC_OFF);
      }
    }
    ctx.bufs.dirty(buf, {});
  }
}

/** Mask (bit i = inode startino+i) of the inodes a record really holds. */
export function allocMask(rec: InobtRec): bigint {
  return ALL_FREE & ~holemaskToInodes(rec.holemask);
}

function lowBit(v: bigint): number {
  let i = 0;
  let x = v;
  while ((x & 1n) === 0n) {
    x >>= 1n;
    i++;
  }
  return i;
}

/** One AG's inode state: AGI, inobt and finobt. */
export class AgInodes {
  readonly inobt: Btree<InobtRec, InoKey>;
  readonly finobt?: Btree<InobtRec, InoKey>;

  private constructor(
    readonly ctx: SpaceContext,
    readonly space: AgSpace,
    readonly agno: number,
    readonly agiBuf: Awaited<ReturnType<typeof readAgiBuf>>,
    readonly agi: Agi,
  ) {
    const geo = ctx.geo;
    const host = (fin: boolean): BtreeHost<InoKey> => ({
      bufs: ctx.bufs,
      blockSize: geo.blockSize,
      crc: geo.crc,
      uuid: geo.metaUuid,
      owner: agno,
      agno,
      ptrToOffset: (p: Ptr) => {
        if (p < 0 || p >= space.length) {
          throw new XfsFormatError(`${fin ? "finobt" : "inobt"} pointer ${p} outside the AG`, {
            agno,
            file: geo.file,
          });
        }
        return agbOffset(geo, agno, p);
      },
      getRoot: () =>
        fin ? { ptr: agi.freeRoot, levels: agi.freeLevel } : { ptr: agi.root, levels: agi.level },
      setRoot: (p, levels) => {
        if (fin) [agi.freeRoot, agi.freeLevel] = [p, levels];
        else [agi.root, agi.level] = [p, levels];
        this.writeAgi();
      },
      allocBlock: async (near) => {
        const ext = await space.alloc({
          minlen: 1,
          maxlen: 1,
          near: near >= 0 ? near : fin ? agi.freeRoot : agi.root,
          owner: { owner: RMAP_OWN.INOBT },
        });
        if (!ext) throw new XfsFsError("ENOSPC", "no block for the inode btree", `AG ${agno}`);
        if (geo.inobtCount) {
          if (fin) agi.fblocks++;
          else agi.iblocks++;
          this.writeAgi();
        }
        return ext.agbno;
      },
      freeBlock: async (p) => {
        await space.free(p, 1, { owner: RMAP_OWN.INOBT });
        if (geo.inobtCount) {
          if (fin) agi.fblocks--;
          else agi.iblocks--;
          this.writeAgi();
        }
      },
    });
    this.inobt = new Btree(inobtOps(geo.sparseInodes), host(false));
    if (geo.finobt) this.finobt = new Btree(finobtOps(geo.sparseInodes), host(true));
  }

  static async open(ctx: SpaceContext, space: AgSpace): Promise<AgInodes> {
    const buf = await readAgiBuf(ctx.geo, ctx.bufs, space.agno);
    return new AgInodes(ctx, space, space.agno, buf, decodeAgi(ctx.geo, buf, space.agno));
  }

  writeAgi(): void {
    encodeAgi(this.ctx.geo, this.ctx.bufs, this.agiBuf, this.agi);
  }

  private fail(message: string): XfsFormatError {
    return new XfsFormatError(message, { structure: "inobt", agno: this.agno, file: this.ctx.geo.file });
  }

  /** The inobt record holding AG inode `agino`, with a cursor on it. */
  private async recordOf(agino: number) {
    const cur = await this.inobt.lookup({ startino: agino }, "le");
    if (!cur || agino >= cur.rec.startino + INODES_PER_CHUNK) return null;
    return cur;
  }

  /** finobt mirror of a changed inobt record: insert, update or delete by its free count. */
  private async syncFinobt(rec: InobtRec): Promise<void> {
    const t = this.finobt;
    if (!t) return;
    const cur = await t.lookup({ startino: rec.startino }, "eq");
    if (rec.freecount === 0) {
      if (cur) await btreeDeleteAt(t, cur);
    } else if (cur) await btreeUpdateAt(t, cur, rec);
    else await btreeInsert(t, rec);
  }

  /** Allocate and initialise a new chunk (or a sparse part of one); false when no space fits. */
  async allocChunk(): Promise<boolean> {
    const geo = this.ctx.geo;
    const chunkBlocks = chunkGeometry(geo).blocks;
    const align = Math.max(geo.inoAlign, 1);
    const owner = { owner: RMAP_OWN.INODES };
    let ext = null;
    if (this.agi.newino !== NULLAGINO) {
      const after = Math.floor(this.agi.newino / geo.inopblock) + chunkBlocks;
      if (after % align === 0 && after + chunkBlocks <= this.space.length) {
        ext = await this.space.alloc({ minlen: chunkBlocks, maxlen: chunkBlocks, exact: after, owner });
      }
    }
    ext ??= await this.space.alloc({
      minlen: chunkBlocks,
      maxlen: chunkBlocks,
      near: this.agi.root,
      alignment: align,
      owner,
    });
    let sparse = false;
    if (!ext && geo.sparseInodes && geo.spinoAlign > 0 && geo.spinoAlign < chunkBlocks) {
      const maxAgbno = Math.floor(geo.agBlocks / align) * align - chunkBlocks;
      ext = await this.space.alloc({
        minlen: geo.spinoAlign,
        maxlen: geo.spinoAlign,
        alignment: geo.spinoAlign,
        minAgbno: align,
        maxAgbno,
        owner,
      });
      sparse = ext !== null;
    }
    if (!ext) return false;
    // The allocator charged the blocks to free space; the inodes are now counted instead.
    initInodeBlocks(this.ctx, this.agno, ext.agbno, ext.len);
    const newInodes = ext.len * geo.inopblock;
    const firstAgino = ext.agbno * geo.inopblock;
    // Records start at chunk-aligned inode numbers; one block of > 64 inodes makes several records.
    const recs: InobtRec[] = [];
    if (!sparse) {
      for (let i = 0; i < newInodes; i += INODES_PER_CHUNK) {
        recs.push({
          startino: firstAgino + i,
          holemask: 0,
          count: INODES_PER_CHUNK,
          freecount: INODES_PER_CHUNK,
          free: ALL_FREE,
        });
      }
    } else {
      const recStart = Math.floor(ext.agbno / align) * align * geo.inopblock;
      const first = (firstAgino - recStart) / INODES_PER_HOLEMASK_BIT;
      const bits = newInodes / INODES_PER_HOLEMASK_BIT;
      let filled = 0;
      for (let i = first; i < first + bits; i++) filled |= 1 << i;
      const existing = await this.inobt.lookup({ startino: recStart }, "eq");
      if (existing) {
        const r = existing.rec;
        if ((r.holemask & filled) !== filled)
          throw this.fail(`sparse chunk ${recStart}: new inodes overlap the record`);
        const merged = {
          ...r,
          holemask: r.holemask & ~filled,
          count: r.count + newInodes,
          freecount: r.freecount + newInodes,
        };
        await btreeUpdateAt(this.inobt, existing, merged);
        await this.syncFinobt(merged);
      } else {
        recs.push({
          startino: recStart,
          holemask: 0xffff & ~filled,
          count: newInodes,
          freecount: newInodes,
          free: ALL_FREE,
        });
      }
    }
    for (const r of recs) {
      await btreeInsert(this.inobt, r);
      await this.syncFinobt(r);
    }
    this.agi.count += newInodes;
    this.agi.freecount += newInodes;
    this.agi.newino = firstAgino;
    this.writeAgi();
    this.ctx.delta.icount += newInodes;
    this.ctx.delta.ifree += newInodes;
    return true;
  }

  /** A free inode of this AG (allocating a chunk if needed), or null when the AG cannot give one. */
  async alloc(): Promise<number | null> {
    if (this.agi.freecount === 0 && !(await this.allocChunk())) return null;
    let cur = this.finobt ? await this.finobt.edge(false) : null;
    let rec: InobtRec | undefined = cur?.rec;
    if (!this.finobt) {
      cur = await this.inobt.edge(false);
      while (cur && cur.rec.freecount === 0) if (!(await this.inobt.step(cur, 1))) cur = null;
      rec = cur?.rec;
    }
    if (!rec) throw this.fail(`AGI counts ${this.agi.freecount} free inodes but no record has one`);
    const avail = rec.free & allocMask(rec);
    if (avail === 0n || rec.freecount === 0) throw this.fail(`record ${rec.startino} has no free inode`);
    const i = lowBit(avail);
    const updated = { ...rec, free: rec.free & ~(1n << BigInt(i)), freecount: rec.freecount - 1 };
    const icur = await this.inobt.lookup({ startino: rec.startino }, "eq");
    if (!icur) throw this.fail(`finobt record ${rec.startino} missing from the inobt`);
    await btreeUpdateAt(this.inobt, icur, updated);
    await this.syncFinobt(updated);
    this.agi.freecount--;
    this.writeAgi();
    this.ctx.delta.ifree--;
    return agInoToIno(this.ctx.geo, this.agno, rec.startino + i);
  }

  /** Mark an inode free; a chunk left with no used inode is freed (blocks back to free space). */
  async free(agino: number): Promise<void> {
    const geo = this.ctx.geo;
    const cur = await this.recordOf(agino);
    if (!cur) throw this.fail(`inode ${agino} is in no inode chunk`);
    const rec = cur.rec;
    const bit = 1n << BigInt(agino - rec.startino);
    if ((allocMask(rec) & bit) === 0n) throw this.fail(`inode ${agino} lies in a sparse hole`);
    if ((rec.free & bit) !== 0n) throw this.fail(`inode ${agino} is already free`);
    const updated = { ...rec, free: rec.free | bit, freecount: rec.freecount + 1 };
    if (updated.freecount === updated.count && geo.inopblock <= INODES_PER_CHUNK) {
      await btreeDeleteAt(this.inobt, cur);
      if (this.finobt) {
        const f = await this.finobt.lookup({ startino: rec.startino }, "eq");
        if (f) await btreeDeleteAt(this.finobt, f);
      }
      // Give back each run of blocks the chunk really holds.
      const mask = allocMask(rec);
      const perBlock = geo.inopblock;
      const firstBlock = rec.startino / perBlock;
      let runStart = -1;
      for (let b = 0; b <= INODES_PER_CHUNK / perBlock; b++) {
        const held = b < INODES_PER_CHUNK / perBlock && (mask & (1n << BigInt(b * perBlock))) !== 0n;
        if (held && runStart < 0) runStart = b;
        if (!held && runStart >= 0) {
          for (let k = runStart; k < b; k++) this.ctx.bufs.forget(agbOffset(geo, this.agno, firstBlock + k));
          await this.space.free(firstBlock + runStart, b - runStart, { owner: RMAP_OWN.INODES });
          runStart = -1;
        }
      }
      this.agi.count -= rec.count;
      this.agi.freecount -= rec.count - 1;
      this.ctx.delta.icount -= rec.count;
      this.ctx.delta.ifree -= rec.count - 1;
    } else {
      await btreeUpdateAt(this.inobt, cur, updated);
      await this.syncFinobt(updated);
      this.agi.freecount++;
      this.ctx.delta.ifree++;
    }
    this.writeAgi();
  }

  /** Every inobt record (tests). */
  async records(): Promise<InobtRec[]> {
    const out: InobtRec[] = [];
    for await (const r of this.inobt.records()) out.push(r);
    return out;
  }
}

/** Inode allocation across AGs. */
export class InodeAllocator {
  private readonly ags = new Map<number, AgInodes>();
  constructor(readonly alloc: Allocator) {}

  async ag(agno: number): Promise<AgInodes> {
    let a = this.ags.get(agno);
    if (!a) {
      a = await AgInodes.open(this.alloc.ctx, await this.alloc.ag(agno));
      this.ags.set(agno, a);
    }
    return a;
  }

  /** Allocate an inode, preferring AG `agno`; throws ENOSPC when no AG can give one. */
  async allocInode(agno = 0): Promise<number> {
    const n = this.alloc.ctx.geo.agCount;
    for (let k = 0; k < n; k++) {
      const ino = await (await this.ag((agno + k) % n)).alloc();
      if (ino !== null) return ino;
    }
    throw new XfsFsError("ENOSPC", "no free inode and no room for an inode chunk", this.alloc.ctx.geo.file);
  }

  async freeInode(ino: number): Promise<void> {
    const { agno, agino } = inoToAg(this.alloc.ctx.geo, ino);
    if (agno >= this.alloc.ctx.geo.agCount) {
      throw new XfsFormatError(`inode ${ino} lies past the last AG`, {
        inode: ino,
        file: this.alloc.ctx.geo.file,
      });
    }
    await (await this.ag(agno)).free(agino);
  }
}
