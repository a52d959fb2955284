/**
 * Allocation-group headers (xfs_ag.c, xfs_alloc.c, xfs_ialloc.c): the AGF (free space), the AGI
 * (inodes) and the AGFL (the free-list ring of blocks reserved for the free-space and rmap btrees),
 * plus the small geometry the space engine needs. Each header sits in its own sector at the start
 * of the AG: superblock copy in sector 0, AGF in 1, AGI in 2, AGFL in 3. v5 headers carry uuid,
 * LSN and a CRC32C over the whole sector.
 *
 * AGF (big-endian):
 *
 * | off | size | field            | off | size | field               |
 * |-----|------|------------------|-----|------|---------------------|
 * | 0   | 4    | magic 'XAGF'     | 52  | 4    | freeblks            |
 * | 4   | 4    | versionnum (1)   | 56  | 4    | longest             |
 * | 8   | 4    | seqno (AG no.)   | 60  | 4    | btreeblks           |
 * | 12  | 4    | length (blocks)  | 64  | 16   | uuid (v5)           |
 * | 16  | 12   | roots bno,cnt,rmap | 80 | 4   | rmap_blocks         |
 * | 28  | 12   | levels bno,cnt,rmap| 84 | 4   | refcount_blocks     |
 * | 40  | 4    | flfirst          | 88  | 4    | refcount_root       |
 * | 44  | 4    | fllast           | 92  | 4    | refcount_level      |
 * | 48  | 4    | flcount          | 208 | 8    | lsn; 216: crc (LE)  |
 *
 * AGI (big-endian):
 *
 * | off | size | field          | off | size | field                          |
 * |-----|------|----------------|-----|------|--------------------------------|
 * | 0   | 4    | magic 'XAGI'   | 32  | 4    | newino                         |
 * | 4   | 4    | versionnum (1) | 36  | 4    | dirino (unused, NULLAGINO)     |
 * | 8   | 4    | seqno          | 40  | 256  | unlinked[64] buckets           |
 * | 12  | 4    | length         | 296 | 16   | uuid (v5); 312: crc (LE)       |
 * | 16  | 4    | count          | 320 | 8    | lsn                            |
 * | 20  | 4    | root (inobt)   | 328 | 4    | free_root (finobt)             |
 * | 24  | 4    | level          | 332 | 4    | free_level                     |
 * | 28  | 4    | freecount      | 336 | 8    | iblocks, fblocks (inobtcount)  |
 *
 * AGFL: v5 header magic 'XAFL' (0), seqno (4), uuid (8), lsn (24), crc (32, LE), then the ring of
 * 32-bit AG block numbers at 36; v4 has no header and the ring starts at 0. The ring holds
 * flcount entries from flfirst to fllast inclusive, wrapping at the end of the sector.
 */

import type { BufCache, MetaBuf } from "./buf.js";
import { verifyCrc } from "./buf.js";
import { be32, setBe32 } from "./bytes.js";
import { XfsFormatError } from "./errors.js";
import { VERSION_ALIGNBIT, type XfsGeometry } from "./sb.js";

export const AGF_MAGIC = 0x58414746;
export const AGI_MAGIC = 0x58414749;
export const AGFL_MAGIC = 0x5841464c;
export const NULLAGBLOCK = 0xffffffff;
export const NULLAGINO = 0xffffffff;

/** What the space engine needs to know about the filesystem (taken from the superblock). */
export interface SpaceGeometry {
  /** Device name for errors. */
  file: string;
  blockSize: number;
  blockLog: number;
  sectorSize: number;
  agBlocks: number;
  agBlockLog: number;
  agCount: number;
  /** Data blocks of the whole filesystem (the last AG may be shorter). */
  dblocks: number;
  crc: boolean;
  /** sb_meta_uuid (or sb_uuid without the meta_uuid feature), stamped in v5 metadata. */
  metaUuid: Uint8Array;
  finobt: boolean;
  rmapbt: boolean;
  reflink: boolean;
  sparseInodes: boolean;
  inobtCount: boolean;
  /** New inodes get the bigtime / large-extent-count flags (v5 features). */
  bigtime?: boolean;
  nrext64?: boolean;
  inodeSize: number;
  inodeLog: number;
  inopblock: number;
  inopbLog: number;
  /** sb_inoalignmt in blocks when the ALIGN feature is set, else 1. */
  inoAlign: number;
  /** sb_spino_align in blocks (sparse inodes), else 0. */
  spinoAlign: number;
  /** Internal log: AG-relative extent [logAgbno, +logBlocks) in AG `logAgno`, or none. */
  logAgno?: number;
  logStart?: number;
  logBlocks?: number;
}

/** The space engine's geometry from the superblock geometry (sb.ts). */
export function spaceGeometry(g: XfsGeometry, file: string): SpaceGeometry {
  const sb = g.sb;
  const f = g.features;
  const internalLog = sb.logstart !== 0;
  return {
    file,
    blockSize: g.blockSize,
    blockLog: g.blockLog,
    sectorSize: g.sectSize,
    agBlocks: g.agBlocks,
    agBlockLog: g.agblklog,
    agCount: g.agCount,
    dblocks: g.dblocks,
    crc: f.crc,
    metaUuid: g.metaUuid,
    finobt: f.finobt,
    rmapbt: f.rmapbt,
    reflink: f.reflink,
    sparseInodes: f.sparseInodes,
    inobtCount: f.inobtcount,
    bigtime: f.bigtime,
    nrext64: f.nrext64,
    inodeSize: g.inodeSize,
    inodeLog: g.inodeLog,
    inopblock: g.inodesPerBlock,
    inopbLog: g.inopblog,
    inoAlign: (sb.versionnum & VERSION_ALIGNBIT) !== 0 && sb.inoalignmt > 0 ? sb.inoalignmt : 1,
    spinoAlign: f.sparseInodes ? sb.spinoAlign : 0,
    logAgno: internalLog ? g.fsbToAgno(sb.logstart) : undefined,
    logStart: internalLog ? g.fsbToAgbno(sb.logstart) : undefined,
    logBlocks: internalLog ? sb.logblocks : undefined,
  };
}

export function agLength(geo: SpaceGeometry, agno: number): number {
  return agno < geo.agCount - 1 ? geo.agBlocks : geo.dblocks - agno * geo.agBlocks;
}
/** Device byte offset of an AG block. */
export function agbOffset(geo: SpaceGeometry, agno: number, agbno: number): number {
  return (agno * geo.agBlocks + agbno) * geo.blockSize;
}
/** fsblock number (agno << agblklog | agbno) of an AG block. */
export function agbToFsb(geo: SpaceGeometry, agno: number, agbno: number): number {
  return agno * 2 ** geo.agBlockLog + agbno;
}
export function fsbToAg(geo: SpaceGeometry, fsb: number): { agno: number; agbno: number } {
  const div = 2 ** geo.agBlockLog;
  return { agno: Math.floor(fsb / div), agbno: fsb % div };
}
/** Inodes numbers: agno << (agblklog + inopblog) | agino. */
export function inoToAg(geo: SpaceGeometry, ino: number): { agno: number; agino: number } {
  const div = 2 ** (geo.agBlockLog + geo.inopbLog);
  return { agno: Math.floor(ino / div), agino: ino % div };
}
export function agInoToIno(geo: SpaceGeometry, agno: number, agino: number): number {
  return agno * 2 ** (geo.agBlockLog + geo.inopbLog) + agino;
}
/** Number of AGFL slots in a sector. */
export function agflSize(geo: SpaceGeometry): number {
  return Math.floor((geo.sectorSize - (geo.crc ? 36 : 0)) / 4);
}

function checkUuid(
  geo: SpaceGeometry,
  b: Uint8Array,
  off: number,
  structure: string,
  agno: number,
  offset: number,
): void {
  for (let i = 0; i < 16; i++) {
    if (b[off + i] !== geo.metaUuid[i]) {
      throw new XfsFormatError("uuid is not this filesystem's", { structure, agno, file: geo.file, offset });
    }
  }
}

export interface Agf {
  seqno: number;
  length: number;
  bnoRoot: number;
  cntRoot: number;
  rmapRoot: number;
  bnoLevel: number;
  cntLevel: number;
  rmapLevel: number;
  flfirst: number;
  fllast: number;
  flcount: number;
  freeblks: number;
  longest: number;
  btreeblks: number;
  rmapBlocks: number;
  refcountBlocks: number;
  refcountRoot: number;
  refcountLevel: number;
}

export const AGF_LAYOUT = { crcOffset: 216, lsnOffset: 208 };
export const AGI_LAYOUT = { crcOffset: 312, lsnOffset: 320 };
export const AGFL_LAYOUT = { crcOffset: 32, lsnOffset: 24 };

function agHeaderOffset(geo: SpaceGeometry, agno: number, sector: number): number {
  return agno * geo.agBlocks * geo.blockSize + sector * geo.sectorSize;
}

export async function readAgfBuf(geo: SpaceGeometry, bufs: BufCache, agno: number): Promise<MetaBuf> {
  const buf = await bufs.read(agHeaderOffset(geo, agno, 1), geo.sectorSize, `AGF ${agno}`);
  bufs.pin(buf);
  return buf;
}

export function decodeAgf(geo: SpaceGeometry, buf: MetaBuf, agno: number): Agf {
  const b = buf.data;
  const where = { structure: "AGF", agno, file: geo.file, offset: buf.offset };
  if (be32(b, 0) !== AGF_MAGIC) throw new XfsFormatError(`bad magic 0x${be32(b, 0).toString(16)}`, where);
  if (be32(b, 4) !== 1) throw new XfsFormatError(`version ${be32(b, 4)}`, where);
  if (geo.crc) {
    // A buffer changed in memory has its CRC stamped at commit; it was checked when first read.
    if (!buf.checked && !buf.dirty) verifyCrc(b, AGF_LAYOUT.crcOffset, where);
    buf.checked = true;
    checkUuid(geo, b, 64, "AGF", agno, buf.offset);
  }
  const agf: Agf = {
    seqno: be32(b, 8),
    length: be32(b, 12),
    bnoRoot: be32(b, 16),
    cntRoot: be32(b, 20),
    rmapRoot: be32(b, 24),
    bnoLevel: be32(b, 28),
    cntLevel: be32(b, 32),
    rmapLevel: be32(b, 36),
    flfirst: be32(b, 40),
    fllast: be32(b, 44),
    flcount: be32(b, 48),
    freeblks: be32(b, 52),
    longest: be32(b, 56),
    btreeblks: be32(b, 60),
    rmapBlocks: be32(b, 80),
    refcountBlocks: be32(b, 84),
    refcountRoot: be32(b, 88),
    refcountLevel: be32(b, 92),
  };
  const len = agLength(geo, agno);
  const size = agflSize(geo);
  const bad =
    agf.seqno !== agno
      ? `seqno ${agf.seqno}`
      : agf.length !== len
        ? `length ${agf.length}, expected ${len}`
        : agf.bnoRoot >= len || agf.cntRoot >= len
          ? "btree root outside the AG"
          : agf.bnoLevel < 1 || agf.bnoLevel > 9 || agf.cntLevel < 1 || agf.cntLevel > 9
            ? "btree level out of range"
            : geo.rmapbt && (agf.rmapRoot >= len || agf.rmapLevel < 1 || agf.rmapLevel > 9)
              ? "rmap root or level out of range"
              : agf.flfirst >= size || agf.fllast >= size || agf.flcount > size
                ? "free list indexes out of range"
                : agf.flcount !== 0 && ((agf.fllast - agf.flfirst + size) % size) + 1 !== agf.flcount
                  ? `free list ring ${agf.flfirst}..${agf.fllast} does not hold ${agf.flcount} blocks`
                  : agf.freeblks > len
                    ? "freeblks larger than the AG"
                    : undefined;
  if (bad) throw new XfsFormatError(bad, where);
  return agf;
}

export function encodeAgf(geo: SpaceGeometry, bufs: BufCache, buf: MetaBuf, agf: Agf): void {
  bufs.willChange(buf);
  const b = buf.data;
  setBe32(b, 8, agf.seqno);
  setBe32(b, 12, agf.length);
  setBe32(b, 16, agf.bnoRoot);
  setBe32(b, 20, agf.cntRoot);
  setBe32(b, 24, agf.rmapRoot);
  setBe32(b, 28, agf.bnoLevel);
  setBe32(b, 32, agf.cntLevel);
  setBe32(b, 36, agf.rmapLevel);
  setBe32(b, 40, agf.flfirst);
  setBe32(b, 44, agf.fllast);
  setBe32(b, 48, agf.flcount);
  setBe32(b, 52, agf.freeblks);
  setBe32(b, 56, agf.longest);
  setBe32(b, 60, agf.btreeblks);
  setBe32(b, 80, agf.rmapBlocks);
  setBe32(b, 84, agf.refcountBlocks);
  setBe32(b, 88, agf.refcountRoot);
  setBe32(b, 92, agf.refcountLevel);
  bufs.dirty(buf, geo.crc ? AGF_LAYOUT : {});
}

export interface Agi {
  seqno: number;
  length: number;
  count: number;
  root: number;
  level: number;
  freecount: number;
  newino: number;
  dirino: number;
  freeRoot: number;
  freeLevel: number;
  iblocks: number;
  fblocks: number;
}

export async function readAgiBuf(geo: SpaceGeometry, bufs: BufCache, agno: number): Promise<MetaBuf> {
  const buf = await bufs.read(agHeaderOffset(geo, agno, 2), geo.sectorSize, `AGI ${agno}`);
  bufs.pin(buf);
  return buf;
}

export function decodeAgi(geo: SpaceGeometry, buf: MetaBuf, agno: number): Agi {
  const b = buf.data;
  const where = { structure: "AGI", agno, file: geo.file, offset: buf.offset };
  if (be32(b, 0) !== AGI_MAGIC) throw new XfsFormatError(`bad magic 0x${be32(b, 0).toString(16)}`, where);
  if (be32(b, 4) !== 1) throw new XfsFormatError(`version ${be32(b, 4)}`, where);
  if (geo.crc) {
    if (!buf.checked && !buf.dirty) verifyCrc(b, AGI_LAYOUT.crcOffset, where);
    buf.checked = true;
    checkUuid(geo, b, 296, "AGI", agno, buf.offset);
  }
  const agi: Agi = {
    seqno: be32(b, 8),
    length: be32(b, 12),
    count: be32(b, 16),
    root: be32(b, 20),
    level: be32(b, 24),
    freecount: be32(b, 28),
    newino: be32(b, 32),
    dirino: be32(b, 36),
    freeRoot: geo.finobt ? be32(b, 328) : NULLAGBLOCK,
    freeLevel: geo.finobt ? be32(b, 332) : 0,
    iblocks: geo.inobtCount ? be32(b, 336) : 0,
    fblocks: geo.inobtCount ? be32(b, 340) : 0,
  };
  const len = agLength(geo, agno);
  const bad =
    agi.seqno !== agno
      ? `seqno ${agi.seqno}`
      : agi.length !== len
        ? `length ${agi.length}, expected ${len}`
        : agi.root >= len || agi.level < 1 || agi.level > 9
          ? "inobt root or level out of range"
          : geo.finobt && (agi.freeRoot >= len || agi.freeLevel < 1 || agi.freeLevel > 9)
            ? "finobt root or level out of range"
            : agi.freecount > agi.count
              ? "more free inodes than inodes"
              : undefined;
  if (bad) throw new XfsFormatError(bad, where);
  return agi;
}

export function encodeAgi(geo: SpaceGeometry, bufs: BufCache, buf: MetaBuf, agi: Agi): void {
  bufs.willChange(buf);
  const b = buf.data;
  setBe32(b, 8, agi.seqno);
  setBe32(b, 12, agi.length);
  setBe32(b, 16, agi.count);
  setBe32(b, 20, agi.root);
  setBe32(b, 24, agi.level);
  setBe32(b, 28, agi.freecount);
  setBe32(b, 32, agi.newino);
  setBe32(b, 36, agi.dirino);
  if (geo.finobt) {
    setBe32(b, 328, agi.freeRoot);
    setBe32(b, 332, agi.freeLevel);
  }
  if (geo.inobtCount) {
    setBe32(b, 336, agi.iblocks);
    setBe32(b, 340, agi.fblocks);
  }
  bufs.dirty(buf, geo.crc ? AGI_LAYOUT : {});
}

export async function readAgflBuf(geo: SpaceGeometry, bufs: BufCache, agno: number): Promise<MetaBuf> {
  const buf = await bufs.read(agHeaderOffset(geo, agno, 3), geo.sectorSize, `AGFL ${agno}`);
  bufs.pin(buf);
  if (geo.crc) {
    const where = { structure: "AGFL", agno, file: geo.file, offset: buf.offset };
    if (be32(buf.data, 0) !== AGFL_MAGIC)
      throw new XfsFormatError(`bad magic 0x${be32(buf.data, 0).toString(16)}`, where);
    if (be32(buf.data, 4) !== agno) throw new XfsFormatError(`seqno ${be32(buf.data, 4)}`, where);
    if (!buf.checked && !buf.dirty) verifyCrc(buf.data, AGFL_LAYOUT.crcOffset, where);
    buf.checked = true;
    checkUuid(geo, buf.data, 8, "AGFL", agno, buf.offset);
  }
  return buf;
}

function agflSlot(geo: SpaceGeometry, i: number): number {
  return (geo.crc ? 36 : 0) + 4 * i;
}

/** The blocks on the free list, first to last. */
export function agflBlocks(geo: SpaceGeometry, agfl: MetaBuf, agf: Agf): number[] {
  const out: number[] = [];
  const size = agflSize(geo);
  for (let k = 0, i = agf.flfirst; k < agf.flcount; k++, i = (i + 1) % size) {
    out.push(be32(agfl.data, agflSlot(geo, i)));
  }
  return out;
}

/** Take the first block off the free list (xfs_alloc_get_freelist); the caller writes the AGF. */
export function agflPop(geo: SpaceGeometry, agfl: MetaBuf, agf: Agf, agno: number): number {
  if (agf.flcount === 0)
    throw new XfsFormatError("free list is empty", { structure: "AGFL", agno, file: geo.file });
  const bno = be32(agfl.data, agflSlot(geo, agf.flfirst));
  if (bno >= agf.length) {
    throw new XfsFormatError(`free list block ${bno} outside the AG`, {
      structure: "AGFL",
      agno,
      file: geo.file,
      offset: agfl.offset,
    });
  }
  agf.flfirst = (agf.flfirst + 1) % agflSize(geo);
  agf.flcount--;
  return bno;
}

/** Append a block to the free list (xfs_alloc_put_freelist); the caller writes the AGF. */
export function agflPush(geo: SpaceGeometry, bufs: BufCache, agfl: MetaBuf, agf: Agf, bno: number): void {
  const size = agflSize(geo);
  if (agf.flcount >= size)
    throw new XfsFormatError("free list is full", { structure: "AGFL", agno: agf.seqno, file: geo.file });
  bufs.willChange(agfl);
  agf.fllast = (agf.fllast + 1) % size;
  agf.flcount++;
  setBe32(agfl.data, agflSlot(geo, agf.fllast), bno);
  bufs.dirty(agfl, geo.crc ? AGFL_LAYOUT : {});
}
