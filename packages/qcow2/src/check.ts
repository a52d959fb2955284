import type { BlockDevice } from "@imgpatch/disk";
import { readBitmapDirectory } from "./bitmaps.js";
import { getU64, setU64, viewOf } from "./bytes.js";
import { Qcow2FormatError, Qcow2UnsupportedError } from "./errors.js";
import { parseExtensions } from "./extensions.js";
import {
  AUTOCLEAR_BITMAPS,
  INCOMPAT_EXTL2,
  MAX_L1_BYTES,
  MAX_REFTABLE_BYTES,
  MAX_SNAPSHOTS,
  parseHeader,
  type Qcow2Header,
} from "./header.js";
import { DeviceHostFile, type HostFile, isHostFile, NodeHostFile } from "./host-file.js";
import { decodeCompressed, FLAG_COMPRESSED, FLAG_COPIED, FLAG_ZERO, stdOffset } from "./l2-entry.js";

/**
 * Consistency check of a qcow2 image, with the same accounting as `qemu-img check`:
 *
 *  1. Every reference the metadata makes is counted in an in-memory table — the header cluster,
 *     the active L1 table, its L2 tables and data clusters (compressed clusters: every cluster
 *     their byte span touches), each snapshot's L1/L2 tables and clusters, the snapshot table,
 *     the refcount table, the bitmap directory/tables/data, and every refcount block.
 *  2. Those counts are compared with the on-disk refcounts for every cluster of the file:
 *     on-disk higher → a leak (harmless wasted space), lower → a corruption (the cluster could be
 *     handed out again while still in use).
 *  3. COPIED flags of the active L1/L2 entries must say "refcount is exactly 1".
 *
 * Structural faults found on the way (misaligned tables or clusters, references ≥ a cluster
 * past the end of the file, refcount blocks outside the image or shared, refcount overflow,
 * bad subcluster bitmaps) are corruptions too. Counts agree with qemu-img's JSON report.
 */
export interface Qcow2CheckResult {
  /** Errors that prevented checking part of the image (unreadable refcount blocks...). */
  checkErrors: number;
  /** Clusters whose on-disk refcount is higher than the references to them. */
  leaks: number;
  /** Problems that can lose data if the image is written. */
  corruptions: number;
  /** Leaked clusters whose refcount was fixed (repair: "leaks"). */
  leaksFixed: number;
  corruptionsFixed: number;
  /** End of the last cluster in use (referenced or refcounted). */
  imageEndOffset: number;
  /** Guest clusters (virtual size / cluster size, rounded up). */
  totalClusters: number;
  /** Guest clusters with storage in the active L1 (data, preallocated zero, compressed). */
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  /** One line per finding, in qemu-img's wording where it has one. */
  messages: string[];
  /** Cluster indexes reported as leaked (at most the first 10,000). */
  leakedClusters: number[];
}

export interface CheckQcow2Options {
  /** "leaks": lower the refcount of leaked clusters to the real number of references. */
  repair?: "leaks";
}

/** What the check needs of a snapshot table entry. */
interface SnapshotRef {
  id: string;
  name: string;
  l1TableOffset: number;
  l1Size: number;
  misaligned: boolean;
}

const L1E_RESERVED_HI = 0x7f00_0000;
const L1E_RESERVED_LO = 0x1ff;
const L2E_STD_RESERVED_HI = 0x3f00_0000;
const L2E_STD_RESERVED_LO = 0x1fe;
const MAX_LISTED_LEAKS = 10_000;
const TWO_POW_53 = 2 ** 53;
const MAX_SNAPSHOT_EXTRA = 1024 * 1024;
const MAX_SNAPSHOT_TABLE = 64 * 1024 * 1024;
/** One 32-bit in-memory reference count per host cluster: at most 1 GiB of them. */
const MAX_CHECK_CLUSTERS = 2 ** 28;

/** Check (and optionally repair leaks in) a qcow2 image given by path, HostFile or BlockDevice. */
export async function checkQcow2(
  source: string | HostFile | BlockDevice,
  options: CheckQcow2Options = {},
): Promise<Qcow2CheckResult> {
  const writable = options.repair !== undefined;
  let host: HostFile;
  let owns = false;
  if (typeof source === "string") {
    host = await NodeHostFile.open(source, { readOnly: !writable });
    owns = true;
  } else if (isHostFile(source)) host = source;
  else host = new DeviceHostFile(source);
  try {
    const first = await new Checker(host).run();
    if (options.repair !== "leaks" || first.leaks === 0) return first;
    const fixed = await repairLeaks(host, first);
    const again = await new Checker(host).run();
    again.leaksFixed = fixed;
    return again;
  } finally {
    if (owns) await host.close();
  }
}

class Checker {
  private readonly file: string;
  header!: Qcow2Header;
  private cs = 0;
  private bits = 0;
  private extL2 = false;
  private l2Bytes = 0;
  private fileLength = 0;
  /** In-memory reference counts, one per host cluster. */
  refs = new Uint32Array(0);
  private nbClusters = 0;
  private maxRefcount = 0;
  reftable: number[] = [];
  private readonly res: Qcow2CheckResult = {
    checkErrors: 0,
    leaks: 0,
    corruptions: 0,
    leaksFixed: 0,
    corruptionsFixed: 0,
    imageEndOffset: 0,
    totalClusters: 0,
    allocatedClusters: 0,
    fragmentedClusters: 0,
    compressedClusters: 0,
    messages: [],
    leakedClusters: [],
  };

  constructor(private readonly host: HostFile) {
    this.file = host.name;
  }

  private corrupt(message: string): void {
    this.res.corruptions++;
    this.res.messages.push(`ERROR ${message}`);
  }

  /** Read with zeros past the end of the file (as qemu's block layer does). */
  private async readZ(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    if (offset < this.fileLength) await this.host.read(offset, buf);
    return buf;
  }

  async run(): Promise<Qcow2CheckResult> {
    const host = this.host;
    this.fileLength = host.length;
    const head = new Uint8Array(Math.min(512, host.length));
    await host.read(0, head);
    const header = parseHeader(head, this.file);
    this.header = header;
    this.cs = 2 ** header.clusterBits;
    this.bits = 2 ** header.refcountOrder;
    this.maxRefcount = this.bits >= 32 ? 0xffff_ffff : 2 ** this.bits - 1;
    this.extL2 = (header.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
    this.l2Bytes = this.cs;
    const cs = this.cs;
    this.res.totalClusters = Math.ceil(header.size / cs);
    this.nbClusters = Math.ceil(this.fileLength / cs);
    if (this.nbClusters > MAX_CHECK_CLUSTERS) {
      // qemu refuses past INT_MAX clusters; we bound the in-memory table at 1 GiB
      throw new Qcow2UnsupportedError(
        "check",
        `${this.nbClusters} clusters of ${cs} bytes: too many to check in memory`,
        { file: this.file },
      );
    }
    this.refs = new Uint32Array(this.nbClusters);

    const cluster0 = await this.readZ(0, cs);
    const extLimit = header.backingFileOffset !== 0 ? Math.min(header.backingFileOffset, cs) : cs;
    const exts = parseExtensions(cluster0, header.headerLength, extLimit, this.file);

    if (header.l1Size * 8 > MAX_L1_BYTES) {
      throw new Qcow2FormatError("l1_size", `${header.l1Size} entries exceed the 32 MiB L1 limit`, {
        file: this.file,
        offset: 36,
      });
    }
    const rtBytes = header.refcountTableClusters * cs;
    if (rtBytes > MAX_REFTABLE_BYTES) {
      throw new Qcow2FormatError("refcount_table_clusters", "refcount table exceeds 8 MiB", {
        file: this.file,
        offset: 56,
      });
    }
    const rt = viewOf(await this.readZ(header.refcountTableOffset, rtBytes));
    this.reftable = [];
    for (let i = 0; i < rtBytes / 8; i++) this.reftable.push(rawU64(rt, i * 8));

    // 1. references
    await this.inc(0, cs);
    await this.checkL1(header.l1TableOffset, header.l1Size, true);
    let snapshots: SnapshotRef[] = [];
    let snapshotsSize = 0;
    try {
      ({ snapshots, size: snapshotsSize } = await this.readSnapshots());
    } catch (err) {
      this.res.checkErrors++;
      this.res.messages.push(`snapshot table unreadable: ${(err as Error).message}`);
    }
    for (const sn of snapshots) {
      if (sn.misaligned) {
        this.corrupt(`snapshot ${sn.id} (${sn.name}): L1 table is not cluster aligned`);
      } else if (sn.l1Size * 8 > MAX_L1_BYTES) {
        this.corrupt(`snapshot ${sn.id} (${sn.name}): L1 table is too large`);
      } else await this.checkL1(sn.l1TableOffset, sn.l1Size, false);
    }
    await this.inc(header.snapshotsOffset, snapshotsSize);
    await this.inc(header.refcountTableOffset, rtBytes);
    if (exts.cryptoHeader) await this.inc(exts.cryptoHeader.offset, exts.cryptoHeader.length);
    if (exts.bitmaps && header.autoclearFeatures & AUTOCLEAR_BITMAPS) await this.countBitmaps(exts.bitmaps);
    await this.checkRefblocks();

    // 2. compare with the on-disk refcounts
    let highest = 0;
    await this.forEachOnDisk(this.nbClusters, (i, onDisk) => {
      const ref = this.refs[i]!;
      if (onDisk > 0 || ref > 0) highest = i;
      if (onDisk === ref) return;
      if (onDisk < ref) {
        this.corrupt(`cluster ${i} refcount=${onDisk} reference=${ref}`);
      } else {
        this.res.leaks++;
        this.res.messages.push(`Leaked cluster ${i} refcount=${onDisk} reference=${ref}`);
        if (this.res.leakedClusters.length < MAX_LISTED_LEAKS) this.res.leakedClusters.push(i);
      }
    });
    // 3. COPIED flags of the active tables
    await this.checkCopied();
    this.res.imageEndOffset = (highest + 1) * cs;
    return this.res;
  }

  /**
   * The snapshot table, read leniently (what is wrong inside an entry is for the checks to
   * report): each entry's L1 table and the table's total size.
   */
  private async readSnapshots(): Promise<{ snapshots: SnapshotRef[]; size: number }> {
    const { nbSnapshots, snapshotsOffset, version } = this.header;
    const out: SnapshotRef[] = [];
    if (nbSnapshots === 0) return { snapshots: out, size: 0 };
    if (nbSnapshots > MAX_SNAPSHOTS) {
      throw new Qcow2FormatError("nb_snapshots", `${nbSnapshots} exceeds ${MAX_SNAPSHOTS}`, {
        file: this.file,
        offset: 60,
      });
    }
    const dec = new TextDecoder();
    let pos = snapshotsOffset;
    for (let i = 0; i < nbSnapshots; i++) {
      // past the end of the file the table reads as zeros, as through qemu's block layer
      const v = viewOf(await this.readZ(pos, 40));
      const idLen = v.getUint16(12);
      const nameLen = v.getUint16(14);
      const extra = v.getUint32(36);
      if (extra > MAX_SNAPSHOT_EXTRA) {
        throw new Qcow2FormatError(`snapshot[${i}]`, `extra data size ${extra} is absurd`, {
          file: this.file,
          offset: pos + 36,
        });
      }
      if (version >= 3 && extra < 16) this.corrupt(`snapshot table entry ${i} is incomplete`);
      const names = await this.readZ(pos + 40 + extra, idLen + nameLen);
      out.push({
        id: dec.decode(names.subarray(0, idLen)),
        name: dec.decode(names.subarray(idLen)),
        // beyond 2^53 it is past any file (placed at 2^53); alignment is a low-word matter
        l1TableOffset: getU64(v, 0) >= 0 ? getU64(v, 0) : TWO_POW_53,
        misaligned: v.getUint32(4) % this.cs !== 0,
        l1Size: v.getUint32(8),
      });
      pos += Math.ceil((40 + extra + idLen + nameLen) / 8) * 8;
      if (pos - snapshotsOffset > MAX_SNAPSHOT_TABLE) {
        throw new Qcow2FormatError("snapshot table", "is larger than 64 MiB", {
          file: this.file,
          offset: snapshotsOffset,
        });
      }
    }
    return { snapshots: out, size: pos - snapshotsOffset };
  }

  /** Count a reference to every cluster [offset, offset+size) touches. */
  private async inc(offset: number, size: number): Promise<void> {
    if (size <= 0) return;
    const cs = this.cs;
    if (offset + size - this.fileLength >= cs) {
      this.corrupt(
        `counting reference for region exceeding the end of the file by one cluster or more: offset 0x${offset.toString(16)} size 0x${size.toString(16)}`,
      );
      return;
    }
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + size - 1) / cs);
    if (last >= this.refs.length) {
      const grown = new Uint32Array(last + 1);
      grown.set(this.refs);
      this.refs = grown;
      this.nbClusters = last + 1;
    }
    for (let k = first; k <= last; k++) {
      if (this.refs[k] === this.maxRefcount) {
        this.corrupt(`overflow cluster offset=0x${(k * cs).toString(16)}`);
        continue;
      }
      this.refs[k]!++;
    }
  }

  private async checkL1(l1Offset: number, l1Size: number, active: boolean): Promise<void> {
    if (l1Size === 0) return;
    await this.inc(l1Offset, l1Size * 8);
    // entries past the end of the file read as zeros (unallocated): only the rest is walked
    const n = this.entriesInFile(l1Offset, l1Size);
    const l1 = viewOf(await this.readZ(l1Offset, n * 8));
    for (let i = 0; i < n; i++) {
      const hi = l1.getUint32(i * 8);
      const lo = l1.getUint32(i * 8 + 4);
      if (hi === 0 && lo === 0) continue;
      if (hi & L1E_RESERVED_HI || lo & L1E_RESERVED_LO) {
        this.corrupt(`found L1 entry with reserved bits set: ${hex(hi, lo)}`);
      }
      const l2 = stdOffset(hi, lo);
      await this.inc(l2, this.cs);
      if (l2 % this.cs !== 0) {
        this.corrupt(`l2_offset=${l2.toString(16)}: Table is not cluster aligned; L1 entry corrupted`);
      }
      await this.checkL2(l2, active);
    }
  }

  /** How many of `count` 8-byte entries at `offset` lie (at least partly) inside the file. */
  private entriesInFile(offset: number, count: number): number {
    return Math.max(0, Math.min(count, Math.ceil((this.fileLength - offset) / 8)));
  }

  private async checkL2(l2Offset: number, active: boolean): Promise<void> {
    const cs = this.cs;
    const t = viewOf(await this.readZ(l2Offset, this.l2Bytes));
    const eb = this.extL2 ? 16 : 8;
    const n = this.l2Bytes / eb;
    let nextContiguous = 0;
    for (let i = 0; i < n; i++) {
      const at = i * eb;
      const hi = t.getUint32(at);
      const lo = t.getUint32(at + 4);
      const zeroBm = this.extL2 ? t.getUint32(at + 8) : 0;
      const allocBm = this.extL2 ? t.getUint32(at + 12) : 0;
      if (hi & FLAG_COMPRESSED) {
        if (hi & FLAG_COPIED) {
          this.corrupt("copied flag must never be set for compressed clusters");
        }
        if (zeroBm !== 0 || allocBm !== 0) {
          this.corrupt(`compressed cluster ${i} with non-zero subcluster allocation bitmap`);
          continue;
        }
        const ref = decodeCompressed(hi, lo, this.header.clusterBits);
        await this.inc(ref.offset, ref.sectors * 512 - (ref.offset % 512));
        if (active) {
          this.res.allocatedClusters++;
          this.res.compressedClusters++;
          this.res.fragmentedClusters++;
        }
        continue;
      }
      if (hi & L2E_STD_RESERVED_HI || lo & L2E_STD_RESERVED_LO) {
        this.corrupt(`found l2 entry with reserved bits set: ${hex(hi, lo)}`);
      }
      const off = stdOffset(hi, lo);
      const zeroFlag = !this.extL2 && (lo & FLAG_ZERO) !== 0;
      if (off === 0) {
        if (!zeroFlag && allocBm !== 0) {
          this.corrupt("Unallocated cluster has non-zero subcluster allocation map");
        }
        continue;
      }
      if ((zeroBm & allocBm) !== 0) {
        this.corrupt(
          `offset=${off.toString(16)}: Allocated cluster has corrupted subcluster allocation bitmap`,
        );
      }
      if (off % cs !== 0) {
        this.corrupt(`offset=${off.toString(16)}: cluster is not properly aligned; L2 entry corrupted`);
      }
      if (active) {
        this.res.allocatedClusters++;
        if (nextContiguous !== 0 && off !== nextContiguous) this.res.fragmentedClusters++;
        nextContiguous = off + cs;
      }
      await this.inc(off, cs);
    }
  }

  private async countBitmaps(ext: { nbBitmaps: number; directorySize: number; directoryOffset: number }) {
    const cs = this.cs;
    await this.inc(ext.directoryOffset, ext.directorySize);
    let list: Awaited<ReturnType<typeof readBitmapDirectory>>;
    try {
      list = await readBitmapDirectory(this.host, ext);
    } catch (err) {
      this.corrupt(`bitmap directory: ${(err as Error).message}`);
      return;
    }
    for (const b of list) {
      await this.inc(b.tableOffset, b.tableSize * 8);
      if (b.tableOffset % cs !== 0 || b.tableOffset + b.tableSize * 8 > this.fileLength) {
        this.corrupt(`bitmap "${b.name}": table offset invalid`);
        break;
      }
      const t = viewOf(await this.readZ(b.tableOffset, b.tableSize * 8));
      for (let k = 0; k < b.tableSize; k++) {
        const hi = t.getUint32(k * 8);
        const lo = t.getUint32(k * 8 + 4);
        const off = stdOffset(hi, lo);
        if (hi & 0xff00_0000 || lo & 0x1fe || (off !== 0 && lo & 1) || off % cs !== 0) {
          this.corrupt(`bitmap "${b.name}" table entry ${k} is invalid`);
          continue;
        }
        if (off !== 0) await this.inc(off, cs);
      }
    }
  }

  private async checkRefblocks(): Promise<void> {
    const cs = this.cs;
    for (let i = 0; i < this.reftable.length; i++) {
      const raw = this.reftable[i]!;
      if (raw % 512 !== 0) {
        this.corrupt(`refcount table entry ${i} has reserved bits set`);
        continue;
      }
      if (raw % cs !== 0) {
        this.corrupt(`refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
        continue;
      }
      const cluster = raw / cs;
      if (cluster >= this.nbClusters) {
        this.corrupt(`refcount block ${i} is outside image`);
        continue;
      }
      if (raw !== 0) {
        await this.inc(raw, cs);
        if (this.refs[cluster] !== 1) this.corrupt(`refcount block ${i} refcount=${this.refs[cluster]}`);
      }
    }
  }

  /**
   * Visit the on-disk refcount of clusters [0, count). Unreadable refcounts (misaligned block
   * pointers) count as check errors and are skipped.
   */
  private async forEachOnDisk(count: number, visit: (cluster: number, refcount: number) => void) {
    const perBlock = (this.cs * 8) / this.bits;
    for (let ti = 0; ti * perBlock < count; ti++) {
      const base = ti * perBlock;
      const end = Math.min(count, base + perBlock);
      const raw = ti < this.reftable.length ? this.reftable[ti]! : 0;
      const off = raw - (raw % 512);
      if (raw < 0 || (off !== 0 && off % this.cs !== 0)) {
        for (let c = base; c < end; c++) {
          this.res.checkErrors++;
          if (this.res.messages.length < 1000) this.res.messages.push(`Can't get refcount for cluster ${c}`);
        }
        continue;
      }
      if (off === 0) {
        for (let c = base; c < end; c++) visit(c, 0);
        continue;
      }
      const blk = await this.readZ(off, this.cs);
      for (let c = base; c < end; c++) visit(c, readRefcount(blk, c - base, this.bits));
    }
  }

  /** On-disk refcount of one cluster (-1 when unreadable). */
  private async onDisk(cluster: number, cache: Map<number, Uint8Array>): Promise<number> {
    const perBlock = (this.cs * 8) / this.bits;
    const ti = Math.floor(cluster / perBlock);
    if (ti >= this.reftable.length) return 0;
    const raw = this.reftable[ti]!;
    const off = raw - (raw % 512);
    if (raw < 0 || off % this.cs !== 0) return -1;
    if (off === 0) return 0;
    let blk = cache.get(off);
    if (!blk) {
      if (cache.size > 64) cache.clear();
      blk = await this.readZ(off, this.cs);
      cache.set(off, blk);
    }
    return readRefcount(blk, cluster - ti * perBlock, this.bits);
  }

  private async checkCopied(): Promise<void> {
    const { l1TableOffset, l1Size } = this.header;
    if (l1Size === 0) return;
    const cache = new Map<number, Uint8Array>();
    const n = this.entriesInFile(l1TableOffset, l1Size);
    const l1 = viewOf(await this.readZ(l1TableOffset, n * 8));
    const eb = this.extL2 ? 16 : 8;
    for (let i = 0; i < n; i++) {
      const hi = l1.getUint32(i * 8);
      const lo = l1.getUint32(i * 8 + 4);
      const l2 = stdOffset(hi, lo);
      if (l2 === 0) continue;
      const rc = await this.onDisk(Math.floor(l2 / this.cs), cache);
      if (rc < 0) continue;
      if ((rc === 1) !== ((hi & FLAG_COPIED) !== 0)) {
        this.corrupt(`OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex(hi, lo)} refcount=${rc}`);
      }
      const t = viewOf(await this.readZ(l2, this.l2Bytes));
      for (let j = 0; j < this.l2Bytes / eb; j++) {
        const ehi = t.getUint32(j * eb);
        const elo = t.getUint32(j * eb + 4);
        if (ehi & FLAG_COMPRESSED) continue;
        const off = stdOffset(ehi, elo);
        if (off === 0) continue; // unallocated or plain zero
        const r = await this.onDisk(Math.floor(off / this.cs), cache);
        if (r < 0) continue;
        if ((r === 1) !== ((ehi & FLAG_COPIED) !== 0)) {
          this.corrupt(`OFLAG_COPIED data cluster: l2_entry=${hex(ehi, elo)} refcount=${r}`);
        }
      }
    }
  }
}

/** Lower leaked refcounts on disk to the computed reference counts. Returns how many were fixed. */
async function repairLeaks(host: HostFile, found: Qcow2CheckResult): Promise<number> {
  if (found.leakedClusters.length < found.leaks) {
    throw new Qcow2FormatError("refcounts", `too many leaks (${found.leaks}) to repair in one pass`, {
      file: host.name,
    });
  }
  // Recompute the references: the repair writes exactly what the check expects.
  const probe = new Checker(host);
  await probe.run();
  const { refs, header, reftable } = probe;
  const cs = 2 ** header.clusterBits;
  const bits = 2 ** header.refcountOrder;
  const perBlock = (cs * 8) / bits;
  const byBlock = new Map<number, number[]>();
  for (const k of found.leakedClusters) {
    const ti = Math.floor(k / perBlock);
    const list = byBlock.get(ti) ?? [];
    list.push(k);
    byBlock.set(ti, list);
  }
  let fixed = 0;
  for (const [ti, list] of byBlock) {
    const off = reftable[ti]!;
    const blk = new Uint8Array(cs);
    await host.read(off, blk);
    for (const k of list) {
      writeRefcount(blk, k - ti * perBlock, bits, refs[k] ?? 0);
      fixed++;
    }
    await host.write(off, blk);
  }
  await host.sync();
  return fixed;
}

function readRefcount(blk: Uint8Array, i: number, bits: number): number {
  const v = viewOf(blk);
  if (bits === 16) return v.getUint16(i * 2);
  if (bits === 32) return v.getUint32(i * 4);
  if (bits === 64) return Math.max(0, getU64(v, i * 8));
  if (bits === 8) return blk[i]!;
  const bit = i * bits;
  return (blk[bit >> 3]! >> (bit & 7)) & ((1 << bits) - 1);
}

function writeRefcount(blk: Uint8Array, i: number, bits: number, value: number): void {
  const v = viewOf(blk);
  if (bits === 16) v.setUint16(i * 2, value);
  else if (bits === 32) v.setUint32(i * 4, value);
  else if (bits === 64) setU64(v, i * 8, value);
  else if (bits === 8) blk[i] = value;
  else {
    const bit = i * bits;
    const mask = ((1 << bits) - 1) << (bit & 7);
    blk[bit >> 3] = (blk[bit >> 3]! & ~mask) | ((value << (bit & 7)) & mask);
  }
}

/** A 64-bit table entry as a number (-1 when above 2^53). */
function rawU64(v: DataView, at: number): number {
  return getU64(v, at);
}

function hex(hi: number, lo: number): string {
  return (BigInt(hi >>> 0) * 0x1_0000_0000n + BigInt(lo >>> 0)).toString(16);
}
