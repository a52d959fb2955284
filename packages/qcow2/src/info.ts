import { stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { hostLinkPolicy, inspectHostLink } from "@imgpatch/disk";
import { probeFormat, resolveBackingPath } from "./backing.js";
import { readBitmapDirectory } from "./bitmaps.js";
import { viewOf } from "./bytes.js";
import {
  AUTOCLEAR_BITMAPS,
  COMPAT_LAZY_REFCOUNTS,
  COMPRESSION_ZSTD,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  INCOMPAT_EXTL2,
} from "./header.js";
import { openQcow2 } from "./open.js";

/**
 * What `qemu-img info --output=json` reports about an image, read without qemu. `toQemuJson`
 * gives the same object shape (kebab-case keys, same optional fields) for direct comparison.
 */
export interface ImageInfo {
  filename: string;
  format: "qcow2" | "raw";
  virtualSize: number;
  /** Bytes the file occupies on disk (allocated blocks). */
  actualSize: number;
  dirtyFlag: boolean;
  clusterSize?: number;
  qcow2?: Qcow2FormatInfo;
  /** Backing name as stored in the header. */
  backingFilename?: string;
  /** The backing name resolved against the image's directory (qemu's path_combine). */
  fullBackingFilename?: string;
  /** From the backing-format header extension. */
  backingFilenameFormat?: string;
  snapshots?: SnapshotInfo[];
}

export interface Qcow2FormatInfo {
  compat: "0.10" | "1.1";
  compressionType: "zlib" | "zstd";
  refcountBits: number;
  /** v3 only. */
  lazyRefcounts?: boolean;
  corrupt?: boolean;
  extendedL2?: boolean;
  bitmaps?: { name: string; granularity: number; flags: ("in-use" | "auto")[] }[];
  dataFile?: string;
}

export interface SnapshotInfo {
  id: string;
  name: string;
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  vmClockSec: number;
  vmClockNsec: number;
  /** Instruction count at the snapshot (v3 extra data, when recorded). */
  icount?: number;
}

export interface InfoOptions {
  /** Also describe every image below (like --backing-chain): the result lists top first. */
  backingChain?: boolean;
  /** Backing policy of the chain walk (see OpenQcow2Options.allowBacking); a refused link throws UnsafeImageError. */
  allowBacking?: readonly string[];
}

/** Snapshot ids and names are C strings for qemu: they end at the first NUL. */
function cString(s: string): string {
  const nul = s.indexOf("\0");
  return nul < 0 ? s : s.slice(0, nul);
}

/** qemu's path_combine: a relative backing name is taken relative to the image's directory. */
export function combineBackingPath(imagePath: string, backing: string): string {
  if (backing.startsWith("/") || /^[a-z+]+:/i.test(backing)) return backing;
  const slash = imagePath.lastIndexOf("/");
  if (slash < 0) return backing;
  return imagePath.slice(0, slash + 1) + backing;
}

/** Facts about one image (qcow2 or raw) at `path`. */
export async function imageInfo(path: string): Promise<ImageInfo> {
  const st = await stat(path);
  const actualSize = st.blocks * 512;
  const format = await probeFormat(path);
  if (format === "raw") {
    // qemu sees a raw file in whole 512-byte sectors (the last one padded)
    const virtualSize = Math.ceil(st.size / 512) * 512;
    return { filename: path, format: "raw", virtualSize, actualSize, dirtyFlag: false };
  }
  const dev = await openQcow2(path, { readOnly: true, backing: "none", onWarning: () => {} });
  try {
    const h = dev.header;
    const v3 = h.version >= 3;
    const q: Qcow2FormatInfo = {
      compat: v3 ? "1.1" : "0.10",
      compressionType: h.compressionType === COMPRESSION_ZSTD ? "zstd" : "zlib",
      refcountBits: 2 ** h.refcountOrder,
    };
    if (v3) {
      q.lazyRefcounts = (h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n;
      q.corrupt = (h.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n;
      q.extendedL2 = (h.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
      const ext = dev.extensions.bitmaps;
      // qemu ignores the bitmaps extension when the autoclear bit was cleared by an unaware writer
      if (ext && h.autoclearFeatures & AUTOCLEAR_BITMAPS && ext.nbBitmaps > 0) {
        q.bitmaps = (await readBitmapDirectory(dev.hostFile, ext)).map((b) => ({
          name: b.name,
          granularity: 2 ** b.granularityBits,
          flags: [...(b.flags & 1 ? (["in-use"] as const) : []), ...(b.flags & 2 ? (["auto"] as const) : [])],
        }));
      }
      if (dev.extensions.dataFile !== undefined) q.dataFile = dev.extensions.dataFile;
    }
    const info: ImageInfo = {
      filename: path,
      format: "qcow2",
      virtualSize: Math.floor(h.size / 512) * 512, // qemu counts whole sectors
      actualSize,
      dirtyFlag: (h.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
      clusterSize: dev.clusterSize,
      qcow2: q,
    };
    const backingName = dev.backingInfo ? cString(dev.backingInfo.name) : "";
    if (backingName !== "") {
      info.backingFilename = backingName;
      info.fullBackingFilename = combineBackingPath(path, backingName);
      if (dev.extensions.backingFormat !== undefined)
        info.backingFilenameFormat = dev.extensions.backingFormat;
    }
    if (dev.snapshots.length > 0) {
      info.snapshots = [];
      const fixed = new Uint8Array(40);
      for (const s of dev.snapshots) {
        // 64-bit fields are taken from the raw entry: qemu prints them whatever their size
        await dev.hostFile.read(s.entryOffset, fixed);
        const fv = viewOf(fixed);
        const clock = fv.getBigUint64(24);
        const extra = viewOf(s.extraData);
        const vmState = s.extraData.length >= 8 ? extra.getBigUint64(0) : BigInt(fv.getUint32(32));
        const out: SnapshotInfo = {
          id: cString(s.id),
          name: cString(s.name),
          vmStateSize: Number(BigInt.asIntN(64, vmState)),
          dateSec: s.dateSec,
          dateNsec: s.dateNsec,
          vmClockSec: Number(clock / 1_000_000_000n),
          vmClockNsec: Number(clock % 1_000_000_000n),
        };
        if (s.extraData.length >= 24) {
          const icount = extra.getBigUint64(16);
          if (icount !== 0xffff_ffff_ffff_ffffn) out.icount = Number(BigInt.asIntN(64, icount));
        }
        info.snapshots.push(out);
      }
    }
    return info;
  } finally {
    await dev.close();
  }
}

/** The image and, with `backingChain`, every image below it (top first; loops are refused). */
export async function qcow2Info(path: string, options: InfoOptions = {}): Promise<ImageInfo[]> {
  const out: ImageInfo[] = [await imageInfo(path)];
  if (!options.backingChain) return out;
  const seen = new Set<string>([path]);
  const policy = await hostLinkPolicy([dirname(resolve(path)), ...(options.allowBacking ?? [])]);
  for (;;) {
    const top = out[out.length - 1]!;
    if (top.backingFilename === undefined) return out;
    const link = {
      kind: "backing file",
      name: top.backingFilename,
      referrer: top.filename,
      referrerPath: top.filename,
    };
    const verdict = await inspectHostLink(link, policy);
    if (verdict.error) throw verdict.error;
    const next = resolveBackingPath(top.backingFilename, top.filename) ?? top.backingFilename;
    const shown = top.fullBackingFilename ?? next;
    if (seen.has(next)) throw new Error(`backing chain loops at ${shown}`);
    seen.add(next);
    const info = await imageInfo(next);
    info.filename = shown;
    out.push(info);
  }
}

/** JSON value as qemu-img prints it. */
export type QemuJson = null | boolean | number | string | QemuJson[] | { [key: string]: QemuJson };

/** The object `qemu-img info --output=json` prints for this image. */
export function toQemuJson(info: ImageInfo): Record<string, QemuJson> {
  const o: Record<string, QemuJson> = {
    "virtual-size": info.virtualSize,
    filename: info.filename,
    format: info.format,
    "actual-size": info.actualSize,
    "dirty-flag": info.dirtyFlag,
  };
  if (info.clusterSize !== undefined) o["cluster-size"] = info.clusterSize;
  if (info.backingFilename !== undefined) o["backing-filename"] = info.backingFilename;
  if (info.fullBackingFilename !== undefined) o["full-backing-filename"] = info.fullBackingFilename;
  if (info.backingFilenameFormat !== undefined) o["backing-filename-format"] = info.backingFilenameFormat;
  if (info.snapshots) {
    o.snapshots = info.snapshots.map((s) => {
      const j: Record<string, QemuJson> = {
        "vm-clock-nsec": s.vmClockNsec,
        name: s.name,
        "date-sec": s.dateSec,
        "date-nsec": s.dateNsec,
        "vm-clock-sec": s.vmClockSec,
        id: s.id,
        "vm-state-size": s.vmStateSize,
      };
      if (s.icount !== undefined) j.icount = s.icount;
      return j;
    });
  }
  const q = info.qcow2;
  if (q) {
    const data: Record<string, QemuJson> = {
      compat: q.compat,
      "compression-type": q.compressionType,
      "refcount-bits": q.refcountBits,
    };
    if (q.lazyRefcounts !== undefined) data["lazy-refcounts"] = q.lazyRefcounts;
    if (q.corrupt !== undefined) data.corrupt = q.corrupt;
    if (q.extendedL2 !== undefined) data["extended-l2"] = q.extendedL2;
    if (q.bitmaps) {
      data.bitmaps = q.bitmaps.map((b) => ({
        flags: [...b.flags],
        name: b.name,
        granularity: b.granularity,
      }));
    }
    if (q.dataFile !== undefined) data["data-file"] = q.dataFile;
    o["format-specific"] = { type: "qcow2", data };
  }
  return o;
}
