/**
 * Log recovery in memory: the committed transactions between the tail and the head of a dirty
 * log applied to an overlay of 512-byte sectors, the way the kernel's second recovery pass
 * applies them (xfs_buf_item_recover.c, xfs_inode_item_recover.c, xfs_icreate_item.c), so that
 * a reader sees what the kernel sees after mounting. Nothing is written to the device.
 *
 * Applied: buffer items (with cancellation records, inode-buffer unlinked pointers, and on v5 the
 * metadata-LSN check that skips changes older than the block on disk), inode items (core, data and
 * attribute forks, device numbers; v5 LSN check), inode-chunk creation (icreate). Intent items that
 * only concern free space, reverse mapping or reference counts (EFI, RUI, CUI) do not change what a
 * reader sees and are left to the kernel. Refused (XfsUnsupportedError "dirty-log"): v4 logs, an
 * unfinished file-mapping, attribute or exchange intent (BUI, ATTRI, XMI), fork owner changes.
 *
 * Buffer log format (host order):  | 0 type | 2 regions | 4 flags | 6 len (BBs) | 8 blkno s64 |
 *   | 16 map words | 20 dirty bitmap, one bit per 128 bytes |
 * Inode log format (host order):   | 0 type | 2 regions | 4 fields | 8 asize | 10 dsize | 12 pad |
 *   | 16 ino | 24 rdev / pad[16] | 40 blkno s64 | 48 len | 52 boffset |  (52-byte packed variant:
 *   ino at 12, rdev at 20, blkno at 36, len at 44, boffset at 48)
 * Log dinode: the on-disk inode core's layout in host order (timestamps: one u64 with bigtime,
 *   else two s32).
 * Icreate (big-endian after type/size): | 4 agno | 8 agbno | 12 count | 16 isize | 20 length | 24 gen |
 */

import { xfsCrc } from "./buf.js";
import { be16, be32, be64big, le32, setBe16, setBe32, setBe64big, setLe32 } from "./bytes.js";
import { XfsFormatError, type XfsLocation, XfsUnsupportedError } from "./errors.js";
import type { LogItem, LogTransaction } from "./log-records.js";
import type { XfsGeometry } from "./sb.js";

const BB = 512;
const LI_EFI = 0x1236;
const LI_EFD = 0x1237;
const LI_INODE = 0x123b;
const LI_BUF = 0x123c;
const LI_DQUOT = 0x123d;
const LI_QUOTAOFF = 0x123e;
const LI_ICREATE = 0x123f;
/** Intent/done pairs by intent type; the done item names the intent by the id at offset 8. */
const INTENTS: ReadonlyMap<number, { done: number; name: string; readerVisible: boolean }> = new Map([
  [LI_EFI, { done: LI_EFD, name: "extent free", readerVisible: false }],
  [0x1240, { done: 0x1241, name: "reverse-mapping update", readerVisible: false }],
  [0x1242, { done: 0x1243, name: "reference-count update", readerVisible: false }],
  [0x1244, { done: 0x1245, name: "file block-mapping update", readerVisible: true }],
  [0x1246, { done: 0x1247, name: "extended-attribute update", readerVisible: true }],
  [0x1248, { done: 0x1249, name: "file mapping exchange", readerVisible: true }],
]);
const DONE_TYPES = new Set([...INTENTS.values()].map((i) => i.done));

const BLF_INODE_BUF = 0x1;
const BLF_CANCEL = 0x2;
const BLF_DQUOT_BUF = 0x4 | 0x8 | 0x10;
const BLF_CHUNK = 128;

const ILOG_DDATA = 0x2;
const ILOG_DEXT = 0x4;
const ILOG_DBROOT = 0x8;
const ILOG_DEV = 0x10;
const ILOG_ADATA = 0x40;
const ILOG_AEXT = 0x80;
const ILOG_ABROOT = 0x100;
const ILOG_DOWNER = 0x200;
const ILOG_AOWNER = 0x400;
const ILOG_DFORK = ILOG_DDATA | ILOG_DEXT | ILOG_DBROOT;
const ILOG_AFORK = ILOG_ADATA | ILOG_AEXT | ILOG_ABROOT;

const DINODE_MAGIC = 0x494e;
const DIFLAG2_BIGTIME = 1n << 3n;
const DIFLAG2_NREXT64 = 1n << 4n;
const V3_CORE = 176;
const V2_CORE = 100;
const NULL_AGINO = 0xffff_ffff;
const NEXT_UNLINKED = 96;

export interface LogReplayStats {
  transactions: number;
  buffers: number;
  inodes: number;
  icreates: number;
  /** Changes skipped: cancelled buffers, or metadata on disk newer than the change (v5 LSNs). */
  skipped: number;
  /** Intents left for the kernel that do not change what a reader sees (free space, rmap, refcount). */
  pendingIntents: number;
}

export interface LogReplay {
  /** Replayed sectors by 512-byte sector number. */
  sectors: Map<number, Uint8Array>;
  stats: LogReplayStats;
}

type ReadAt = (offset: number, length: number) => Promise<Uint8Array>;

/** Reads little-endian u16/u64 of host-order log structures. */
function le16(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}
function le64big(b: Uint8Array, o: number): bigint {
  return BigInt(le32(b, o)) | (BigInt(le32(b, o + 4)) << 32n);
}

/** Where the v5 metadata LSN and CRC of a block live, by its magic number; uuid offset for the LSN check. */
function v5Layout(
  blk: Uint8Array,
): { lsn: number; crc: number; uuid: number; daUuid?: boolean; noLsn?: boolean } | undefined {
  const m32 = be32(blk, 0);
  switch (m32) {
    case 0x41423342: // AB3B bnobt
    case 0x41423343: // AB3C cntbt
    case 0x49414233: // IAB3 inobt
    case 0x46494233: // FIB3 finobt
    case 0x524d4233: // RMB3 rmapbt
    case 0x52334643: // R3FC refcountbt
      return { lsn: 24, crc: 52, uuid: 32 };
    case 0x424d4133: // BMA3 bmbt
      return { lsn: 32, crc: 64, uuid: 40 };
    case 0x58414746: // XAGF
      return { lsn: 208, crc: 216, uuid: 64 };
    case 0x5841464c: // XAFL
      return { lsn: 24, crc: 32, uuid: 8 };
    case 0x58414749: // XAGI
      return { lsn: 320, crc: 312, uuid: 296 };
    case 0x58534c4d: // XSLM symlink
      return { lsn: 48, crc: 12, uuid: 16 };
    case 0x58444233: // XDB3
    case 0x58444433: // XDD3
    case 0x58444633: // XDF3
      return { lsn: 16, crc: 4, uuid: 24 };
    case 0x5841524d: // XARM: written synchronously, never LSN-ordered
      return { lsn: 48, crc: 12, uuid: 16, noLsn: true };
    case 0x58465342: // XFSB
      return { lsn: 240, crc: 224, uuid: -1 };
  }
  switch (be16(blk, 8)) {
    case 0x3df1: // dir3 leaf1
    case 0x3dff: // dir3 leafn
    case 0x3ebe: // da3 node
    case 0x3bee: // attr3 leaf
      return { lsn: 24, crc: 12, uuid: 32, daUuid: true };
  }
  return undefined;
}

/** Applies `transactions` (commit order) and returns the replayed sectors. */
export async function replayLogTransactions(
  geo: XfsGeometry,
  readAt: ReadAt,
  transactions: readonly LogTransaction[],
  where: XfsLocation,
): Promise<LogReplay> {
  const loc = (structure: string, daddr?: number): XfsLocation => ({
    ...where,
    structure,
    offset: daddr === undefined ? where.offset : daddr * BB,
  });
  if (!geo.v5)
    throw new XfsUnsupportedError(
      "dirty-log",
      "the log of this v4 (crc=0) filesystem needs recovery, which is only done for v5: mount it once with a kernel that supports v4, or boot the guest",
      loc("log"),
    );
  const sectors = new Map<number, Uint8Array>();
  const stats: LogReplayStats = {
    transactions: 0,
    buffers: 0,
    inodes: 0,
    icreates: 0,
    skipped: 0,
    pendingIntents: 0,
  };
  const devSectors = Math.floor((geo.dblocks * geo.blockSize) / BB);
  const getBuf = async (daddr: number, lenBB: number, what: string): Promise<Uint8Array> => {
    if (!Number.isSafeInteger(daddr) || daddr < 0 || lenBB <= 0 || daddr + lenBB > devSectors)
      throw new XfsFormatError(
        `log names ${lenBB} sectors at ${daddr}, outside the filesystem`,
        loc(what, daddr),
      );
    const b = await readAt(daddr * BB, lenBB * BB);
    for (let i = 0; i < lenBB; i++) {
      const s = sectors.get(daddr + i);
      if (s) b.set(s, i * BB);
    }
    return b;
  };
  const putBuf = (daddr: number, b: Uint8Array): void => {
    for (let i = 0; i * BB < b.length; i++) sectors.set(daddr + i, b.slice(i * BB, (i + 1) * BB));
  };
  /** Buffers whose v5 CRC is recomputed at the end, as the write verifier would: daddr → length, LSN. */
  const touched = new Map<number, { lenBB: number; lsn: bigint }>();

  // Pass 1: cancellation records (blkno:len → references).
  const cancels = new Map<string, number>();
  const key = (blkno: bigint, len: number) => `${blkno}:${len}`;
  for (const t of transactions)
    for (const it of t.items) {
      if (it.type !== LI_BUF) continue;
      const f = it.regions[0];
      if (f.length < 20) throw new XfsFormatError("buffer log item too short", loc("log buffer item"));
      if (le16(f, 4) & BLF_CANCEL) {
        const k = key(le64big(f, 8), le16(f, 6));
        cancels.set(k, (cancels.get(k) ?? 0) + 1);
      }
    }
  const isCancelled = (blkno: bigint, len: number): boolean => (cancels.get(key(blkno, len)) ?? 0) > 0;

  // Intents and their done items (ids are host-order u64 at offset 8).
  const pending = new Map<bigint, string>();
  const pendingVisible = new Map<bigint, string>();

  for (const t of transactions) {
    stats.transactions++;
    // Item order within a transaction as recovery reorders it: buffers and icreates, then inodes
    // and the rest, then inode buffers, then cancellations.
    const order = (it: LogItem): number => {
      if (it.type === LI_ICREATE) return 0;
      if (it.type !== LI_BUF) return 1;
      const flags = le16(it.regions[0], 4);
      if (flags & BLF_CANCEL) return 3;
      if (flags & BLF_INODE_BUF) return 2;
      return 0;
    };
    const items = [...t.items].sort((a, b) => order(a) - order(b));
    for (const it of items) {
      const f = it.regions[0];
      if (it.type === LI_BUF) await applyBuffer(it, t.lsn);
      else if (it.type === LI_INODE) await applyInode(it, t.lsn);
      else if (it.type === LI_ICREATE) await applyIcreate(f);
      else if (it.type === LI_DQUOT || it.type === LI_QUOTAOFF) stats.skipped++;
      else if (INTENTS.has(it.type)) {
        if (f.length < 16) throw new XfsFormatError("intent log item too short", loc("log intent item"));
        const intent = INTENTS.get(it.type) as { name: string; readerVisible: boolean };
        (intent.readerVisible ? pendingVisible : pending).set(le64big(f, 8), intent.name);
      } else if (DONE_TYPES.has(it.type)) {
        if (f.length < 16) throw new XfsFormatError("done log item too short", loc("log done item"));
        const id = le64big(f, 8);
        pending.delete(id);
        pendingVisible.delete(id);
      } else {
        throw new XfsUnsupportedError(
          "dirty-log",
          `the log holds an item of type 0x${it.type.toString(16)} this reader cannot replay: mount the filesystem once (or boot the guest) first`,
          loc("log"),
        );
      }
    }
  }
  if (pendingVisible.size > 0)
    throw new XfsUnsupportedError(
      "dirty-log",
      `the log holds an unfinished ${[...pendingVisible.values()][0]} that only the kernel can complete: mount the filesystem once (or boot the guest) first`,
      loc("log"),
    );
  stats.pendingIntents = pending.size;

  // What the write verifiers would do: stamp the LSN and the CRC of each replayed metadata block.
  for (const [daddr, { lenBB, lsn }] of touched) {
    const b = await getBuf(daddr, lenBB, "replayed block");
    const lay = v5Layout(b);
    if (!lay || lay.crc + 4 > b.length) continue;
    if (lay.lsn + 8 <= b.length) setBe64big(b, lay.lsn, lsn);
    const crcLen = be32(b, 0) === 0x58465342 ? geo.sectSize : b.length;
    setLe32(b, lay.crc, xfsCrc(b.subarray(0, crcLen), lay.crc));
    putBuf(daddr, b);
  }
  return { sectors, stats };

  /** The metadata LSN of a v5 block (-1n: unknown, recover over it), as xlog_recover_get_buf_lsn. */
  function bufLsn(b: Uint8Array): bigint {
    const lay = v5Layout(b);
    if (!lay || lay.noLsn || lay.lsn + 8 > b.length) return -1n;
    const lsn = be64big(b, lay.lsn);
    if (lay.uuid >= 0) {
      const want = lay.daUuid ? geo.sb.uuid : geo.metaUuid;
      for (let i = 0; i < 16; i++) if (b[lay.uuid + i] !== want[i]) return -1n;
    } else {
      const want = geo.metaUuid;
      const off = geo.features.metaUuid ? 248 : 32;
      for (let i = 0; i < 16; i++) if (b[off + i] !== want[i]) return -1n;
    }
    return lsn;
  }

  async function applyBuffer(it: LogItem, lsn: bigint): Promise<void> {
    const f = it.regions[0];
    const flags = le16(f, 4);
    const lenBB = le16(f, 6);
    const blkno = le64big(f, 8);
    const mapWords = le32(f, 16);
    if (20 + mapWords * 4 > f.length || mapWords * 32 * BLF_CHUNK > lenBB * BB + 32 * BLF_CHUNK)
      throw new XfsFormatError("buffer log item bitmap larger than its buffer", loc("log buffer item"));
    const k = key(blkno, lenBB);
    if (flags & BLF_CANCEL) {
      const n = cancels.get(k) ?? 0;
      if (n <= 1) cancels.delete(k);
      else cancels.set(k, n - 1);
      stats.skipped++;
      return;
    }
    if (isCancelled(blkno, lenBB) || flags & BLF_DQUOT_BUF) {
      stats.skipped++;
      return;
    }
    const daddr = Number(blkno);
    const b = await getBuf(daddr, lenBB, "logged buffer");
    const onDisk = bufLsn(b);
    if (onDisk !== 0n && onDisk !== -1n && onDisk >= lsn) {
      stats.skipped++;
      return;
    }
    // Dirty runs of 128-byte chunks, one region each (a run may be split over regions).
    const bit = (i: number) => (le32(f, 20 + (i >>> 5) * 4) >>> (i & 31)) & 1;
    const nbits = mapWords * 32;
    let r = 1;
    let i = 0;
    const runs: Array<[number, number]> = [];
    while (i < nbits) {
      if (!bit(i)) {
        i++;
        continue;
      }
      let n = 0;
      while (i + n < nbits && bit(i + n)) n++;
      // A contiguous run may be logged as several regions (page boundaries).
      let off = i;
      let left = n;
      while (left > 0) {
        const reg = it.regions[r];
        if (!reg)
          throw new XfsFormatError(
            "buffer log item has fewer regions than dirty runs",
            loc("log buffer item", daddr),
          );
        const take = Math.min(left, Math.floor(reg.length / BLF_CHUNK));
        if (take <= 0)
          throw new XfsFormatError("buffer log region shorter than a chunk", loc("log buffer item", daddr));
        runs.push([off * BLF_CHUNK, r]);
        off += take;
        left -= take;
        r++;
      }
      i += n;
    }
    if (flags & BLF_INODE_BUF) {
      // Only the unlinked-list pointers come from an inode buffer item.
      const isz = geo.inodeSize;
      for (const [start, ri] of runs) {
        const reg = it.regions[ri];
        for (
          let ino = Math.floor(start / isz);
          ino * isz < start + reg.length && ino * isz < b.length;
          ino++
        ) {
          const at = ino * isz + NEXT_UNLINKED;
          if (at < start || at + 4 > start + reg.length) continue;
          b.set(reg.subarray(at - start, at - start + 4), at);
          const dino = b.subarray(ino * isz, (ino + 1) * isz);
          if (be16(dino, 0) === DINODE_MAGIC && dino[4] >= 3) stampInodeCrc(dino);
        }
      }
    } else {
      for (const [start, ri] of runs) {
        const reg = it.regions[ri];
        const len = Math.min(reg.length - (reg.length % BLF_CHUNK), b.length - start);
        if (start >= b.length)
          throw new XfsFormatError("buffer log region past its buffer", loc("log buffer item", daddr));
        b.set(reg.subarray(0, len), start);
      }
      touched.set(daddr, { lenBB, lsn });
    }
    putBuf(daddr, b);
    stats.buffers++;
  }

  function stampInodeCrc(dino: Uint8Array): void {
    setLe32(dino, 100, xfsCrc(dino, 100));
  }

  async function applyInode(it: LogItem, lsn: bigint): Promise<void> {
    const f = it.regions[0];
    // The 64-bit layout pads ilf_ino to 8 bytes; the packed 32-bit one (52 bytes) does not.
    const o =
      f.length === 56
        ? { rdev: 24, blkno: 40, len: 48, boffset: 52 }
        : f.length === 52
          ? { rdev: 20, blkno: 36, len: 44, boffset: 48 }
          : undefined;
    if (!o) throw new XfsFormatError(`inode log item of ${f.length} bytes`, loc("log inode item"));
    const fields = le32(f, 4);
    const asize = le16(f, 8);
    const dsize = le16(f, 10);
    const rdev = le32(f, o.rdev);
    const blkno = le64big(f, o.blkno);
    const lenBB = le32(f, o.len);
    const boffset = le32(f, o.boffset);
    if (isCancelled(blkno, lenBB)) {
      stats.skipped++;
      return;
    }
    if (fields & (ILOG_DOWNER | ILOG_AOWNER))
      throw new XfsUnsupportedError(
        "dirty-log",
        "the log holds a fork owner change (an extent swap) that only the kernel can replay: mount the filesystem once (or boot the guest) first",
        loc("log inode item"),
      );
    const daddr = Number(blkno);
    const isz = geo.inodeSize;
    if (lenBB <= 0 || lenBB > 1024 || boffset < 0 || boffset + isz > lenBB * BB)
      throw new XfsFormatError(
        "inode log item points outside its inode buffer",
        loc("log inode item", daddr),
      );
    const b = await getBuf(daddr, lenBB, "inode cluster");
    const dip = b.subarray(boffset, boffset + isz);
    const ld = it.regions[1];
    if (be16(dip, 0) !== DINODE_MAGIC)
      throw new XfsFormatError("the inode a log item replays into has no inode magic", loc("inode", daddr));
    if (!ld || ld.length < 96 || le16(ld, 0) !== DINODE_MAGIC)
      throw new XfsFormatError("log inode core has a bad magic number", loc("log inode item", daddr));
    if (dip[4] >= 3) {
      const onDisk = be64big(dip, 112);
      if (onDisk !== 0n && onDisk !== 0xffff_ffff_ffff_ffffn && onDisk > lsn) {
        stats.skipped++;
        return;
      }
    }
    const version = ld[4];
    if (version >= 3 && ld.length < V3_CORE)
      throw new XfsFormatError("log inode core shorter than a v3 inode core", loc("log inode item", daddr));
    const flags2 = version >= 3 ? le64big(ld, 120) : 0n;
    const sw16 = (o: number) => setBe16(dip, o, le16(ld, o));
    const sw32 = (o: number) => setBe32(dip, o, le32(ld, o));
    const sw64 = (o: number) => setBe64big(dip, o, le64big(ld, o));
    const ts = (o: number) => {
      if (flags2 & DIFLAG2_BIGTIME) sw64(o);
      else {
        sw32(o);
        sw32(o + 4);
      }
    };
    sw16(0);
    sw16(2);
    dip[4] = ld[4];
    dip[5] = ld[5];
    setBe16(dip, 6, 0);
    sw32(8);
    sw32(12);
    sw32(16);
    sw16(20);
    sw16(22);
    ts(32);
    ts(40);
    ts(48);
    sw64(56);
    sw64(64);
    sw32(72);
    dip[82] = ld[82];
    dip[83] = ld[83];
    sw32(84);
    sw16(88);
    sw16(90);
    sw32(92);
    if (version >= 3) {
      sw64(104);
      ts(144);
      sw64(120);
      sw32(128);
      sw64(152);
      setBe64big(dip, 112, lsn);
      dip.fill(0, 132, 144);
      dip.set(ld.subarray(160, 176), 160);
      dip.fill(0, 24, 32);
    } else {
      dip.fill(0, 24, 32); // v2 pad and a reset flush counter
    }
    if (flags2 & DIFLAG2_NREXT64) {
      sw64(24);
      sw32(76);
      sw16(80);
    } else {
      sw32(76);
      sw16(80);
    }
    const core = version >= 3 ? V3_CORE : V2_CORE;
    const forkoff = dip[82] * 8;
    if (core + forkoff > isz)
      throw new XfsFormatError("replayed inode fork offset past the inode", loc("log inode item", daddr));
    const dForkSize = forkoff ? forkoff : isz - core;
    const aForkStart = core + forkoff;
    const aForkSize = isz - aForkStart;
    if (fields & ILOG_DEV) setBe32(dip, core, rdev);
    let next = 2;
    if (fields & ILOG_DFORK) {
      const reg = it.regions[next++];
      if (!reg || reg.length < dsize)
        throw new XfsFormatError("inode log item lacks its data fork", loc("log inode item", daddr));
      if (fields & ILOG_DBROOT)
        bmbtToBmdr(reg.subarray(0, dsize), dip.subarray(core, core + dForkSize), daddr);
      else {
        if (dsize > dForkSize)
          throw new XfsFormatError("logged data fork larger than the fork", loc("log inode item", daddr));
        dip.set(reg.subarray(0, dsize), core);
      }
    }
    if (fields & ILOG_AFORK) {
      const reg = it.regions[next++];
      if (!reg || reg.length < asize || forkoff === 0)
        throw new XfsFormatError("inode log item lacks its attribute fork", loc("log inode item", daddr));
      if (fields & ILOG_ABROOT) bmbtToBmdr(reg.subarray(0, asize), dip.subarray(aForkStart, isz), daddr);
      else {
        if (asize > aForkSize)
          throw new XfsFormatError(
            "logged attribute fork larger than the fork",
            loc("log inode item", daddr),
          );
        dip.set(reg.subarray(0, asize), aForkStart);
      }
    }
    if (version >= 3) stampInodeCrc(dip);
    putBuf(daddr, b);
    stats.inodes++;
  }

  /** An in-memory bmbt root (a long-format btree block) into the on-disk fork root (bmdr). */
  function bmbtToBmdr(src: Uint8Array, dst: Uint8Array, daddr: number): void {
    const hdr = geo.v5 ? 72 : 24;
    if (src.length < hdr || dst.length < 4)
      throw new XfsFormatError("logged btree root too short", loc("log inode item", daddr));
    const level = be16(src, 4);
    const numrecs = be16(src, 6);
    const srcMax = Math.floor((src.length - hdr) / 16);
    const dstMax = Math.floor((dst.length - 4) / 16);
    if (numrecs > srcMax || numrecs > dstMax)
      throw new XfsFormatError("logged btree root holds more records than fit", loc("log inode item", daddr));
    setBe16(dst, 0, level);
    setBe16(dst, 2, numrecs);
    dst.set(src.subarray(hdr, hdr + numrecs * 8), 4);
    dst.set(src.subarray(hdr + srcMax * 8, hdr + srcMax * 8 + numrecs * 8), 4 + dstMax * 8);
  }

  async function applyIcreate(f: Uint8Array): Promise<void> {
    if (f.length < 28 || le16(f, 2) !== 1)
      throw new XfsFormatError("inode-create log item malformed", loc("log icreate item"));
    const agno = be32(f, 4);
    const agbno = be32(f, 8);
    const count = be32(f, 12);
    const isize = be32(f, 16);
    const length = be32(f, 20);
    const gen = be32(f, 24);
    if (agno >= geo.agCount || agbno === 0 || agbno + length > geo.agBlocks || isize !== geo.inodeSize)
      throw new XfsFormatError("inode-create log item outside the filesystem", loc("log icreate item"));
    if (count !== length * geo.inodesPerBlock || count === 0 || count > 64)
      throw new XfsFormatError("inode-create count does not match its length", loc("log icreate item"));
    // Cluster buffers as the kernel sizes them; a cancelled cluster means the chunk was freed again.
    let clusterBytes = 8192;
    if (geo.v5) {
      const bigger = clusterBytes * (geo.inodeSize / 256);
      if (geo.sb.inoalignmt * geo.blockSize >= bigger) clusterBytes = bigger;
    }
    const blocksPerCluster = Math.max(1, Math.floor(clusterBytes / geo.blockSize));
    const bbPerCluster = (blocksPerCluster * geo.blockSize) / BB;
    for (let c = 0; c * blocksPerCluster < length; c++) {
      const d = geo.agbToDaddr(agno, agbno + c * blocksPerCluster);
      if (isCancelled(BigInt(d), bbPerCluster)) {
        stats.skipped++;
        return;
      }
    }
    const daddr = geo.agbToDaddr(agno, agbno);
    const b = new Uint8Array(length * geo.blockSize);
    for (let i = 0; i < count; i++) {
      const dino = b.subarray(i * isize, (i + 1) * isize);
      setBe16(dino, 0, DINODE_MAGIC);
      dino[4] = geo.v5 ? 3 : 2;
      setBe32(dino, 92, gen);
      setBe32(dino, NEXT_UNLINKED, NULL_AGINO);
      if (geo.v5) {
        setBe64big(dino, 152, BigInt(geo.aginoToIno(agno, agbno * geo.inodesPerBlock + i)));
        dino.set(geo.metaUuid, 160);
        stampInodeCrc(dino);
      }
    }
    putBuf(daddr, b);
    stats.icreates++;
  }
}
