/**
 * Free space as each AG's bnobt records it, for copying only what an XFS filesystem uses
 * (sparsify). Read-only: it reads the AGF and walks the bnobt leaves through its own buffer cache,
 * never the editor's.
 *
 * What counts as free is exactly the bnobt records (free extents sorted by start block, see
 * btree-alloc.ts), whose total is agf_freeblks. Everything else is kept: AG headers, the AGFL and
 * the blocks it holds (xfs_db's freesp lists them as free, but they are reserved for the btrees),
 * btree blocks, inode chunks, file data and the internal log (used space, even when clean: its
 * blocks are never in the bnobt).
 *
 * Conservative by construction: a filesystem whose log is not known clean (a logged transaction
 * may allocate blocks the on-disk bnobt still shows free), or with an external log whose state we
 * cannot read, reports nothing free. An AG whose AGF or bnobt is damaged (bad magic/CRC, records
 * outside the AG, out of order or overlapping, covering the AG headers, an AGF btree root or the
 * log, a total other than agf_freeblks) is reported used as a whole, with a note; one bad AG does
 * not stop the others.
 */
import { agbOffset, agLength, decodeAgf, readAgfBuf, spaceGeometry } from "./ag.js";
import { Btree, type BtreeHost, type Ptr } from "./btree.js";
import { type AllocRec, bnobtOps } from "./btree-alloc.js";
import { BufCache } from "./buf.js";
import { XfsChecksumError, XfsFormatError } from "./errors.js";
import type { XfsFs } from "./fs.js";

/** A byte range of the filesystem's device. */
export interface XfsByteRange {
  offset: number;
  length: number;
}

export interface XfsFreeSpace {
  /** Free ranges in bytes from the start of the filesystem's device, sorted and merged. */
  free: XfsByteRange[];
  freeBytes: number;
  /** Why some or all of the filesystem is treated as used (for reports). */
  notes: string[];
}

/** Clean buffers kept while walking (the bnobt is read once, leaf by leaf). */
const WALK_CACHE_BYTES = 1 << 20;

export async function xfsFreeSpace(fs: XfsFs): Promise<XfsFreeSpace> {
  const free: XfsByteRange[] = [];
  let freeBytes = 0;
  const notes: string[] = [];
  const log = fs.logState();
  if (log.state !== "clean") {
    const why = log.reason ?? log.state;
    return { free, freeBytes, notes: [`the log is not known clean (${why}): copied whole`] };
  }
  const geo = spaceGeometry(fs.geometry, fs.device.name);
  const bufs = new BufCache(fs.device, { crc: geo.crc, maxCleanBytes: WALK_CACHE_BYTES });
  const bs = geo.blockSize;
  for (let agno = 0; agno < geo.agCount; agno++) {
    const len = agLength(geo, agno);
    const where = { structure: "bnobt", agno, file: geo.file };
    const agRanges: XfsByteRange[] = [];
    let agFree = 0;
    try {
      const agf = decodeAgf(geo, await readAgfBuf(geo, bufs, agno), agno);
      const host: BtreeHost<AllocRec> = {
        bufs,
        blockSize: bs,
        crc: geo.crc,
        uuid: geo.metaUuid,
        owner: agno,
        agno,
        ptrToOffset: (p: Ptr) => {
          if (p < 1 || p >= len) throw new XfsFormatError(`pointer ${p} outside the AG`, where);
          return agbOffset(geo, agno, p);
        },
        getRoot: () => ({ ptr: agf.bnoRoot, levels: agf.bnoLevel }),
        setRoot: () => {
          throw new XfsFormatError("read-only walk", where);
        },
        allocBlock: () => Promise.reject(new XfsFormatError("read-only walk", where)),
        freeBlock: () => Promise.reject(new XfsFormatError("read-only walk", where)),
      };
      // Blocks no free extent may touch, whatever the tree says: the AG headers (superblock, AGF,
      // AGI, AGFL sectors), the AGF's btree roots and the internal log. A tree claiming them is
      // damaged (or lying), and copying its AG whole costs less than dropping a live block.
      const reserved: [number, number][] = [[0, Math.ceil((4 * geo.sectorSize) / bs)]];
      for (const [root, on] of [
        [agf.bnoRoot, true],
        [agf.cntRoot, true],
        [agf.rmapRoot, geo.rmapbt],
        [agf.refcountRoot, geo.reflink],
      ] as const)
        if (on) reserved.push([root, root + 1]);
      if (geo.logAgno === agno && geo.logStart !== undefined && geo.logBlocks !== undefined)
        reserved.push([geo.logStart, geo.logStart + geo.logBlocks]);
      let next = 0; // records are sorted and disjoint: each starts at or after the last one's end
      for await (const r of new Btree(bnobtOps, host).records()) {
        if (r.blockcount === 0 || r.startblock < next || r.startblock + r.blockcount > len) {
          throw new XfsFormatError(
            `free extent ${r.startblock}+${r.blockcount} is empty, out of order or outside the AG`,
            where,
          );
        }
        next = r.startblock + r.blockcount;
        for (const [a, b] of reserved) {
          if (r.startblock < b && next > a)
            throw new XfsFormatError(
              `free extent ${r.startblock}+${r.blockcount} covers AG headers, a btree root or the log`,
              where,
            );
        }
        agFree += r.blockcount;
        // A damaged tree repeating records cannot loop long: the order check above ends it.
        if (agFree > agf.freeblks) {
          throw new XfsFormatError(`more free blocks than agf_freeblks (${agf.freeblks})`, where);
        }
        const offset = agbOffset(geo, agno, r.startblock);
        const length = r.blockcount * bs;
        const last = agRanges[agRanges.length - 1];
        if (last && last.offset + last.length === offset) last.length += length;
        else agRanges.push({ offset, length });
      }
      if (agFree !== agf.freeblks) {
        throw new XfsFormatError(`${agFree} free blocks in the bnobt, agf_freeblks ${agf.freeblks}`, where);
      }
    } catch (err) {
      if (!(err instanceof XfsFormatError) && !(err instanceof XfsChecksumError)) throw err;
      notes.push(`AG ${agno}: ${(err as Error).message}: copied whole`);
      continue;
    }
    for (const r of agRanges) {
      const last = free[free.length - 1];
      if (last && last.offset + last.length === r.offset) last.length += r.length;
      else free.push({ ...r });
    }
    freeBytes += agFree * bs;
  }
  return { free, freeBytes, notes };
}
