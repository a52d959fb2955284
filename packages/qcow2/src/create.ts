import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import { type BlockDevice, FileDevice, UnsupportedError } from "@imgpatch/disk";
import { type BackingResolver, probeFormat, resolveBackingPath } from "./backing.js";
import { setU64, viewOf } from "./bytes.js";
import type { Qcow2Device } from "./device.js";
import {
  DEFAULT_FEATURE_NAMES,
  EXT_BACKING_FORMAT,
  featureTableExtension,
  serializeExtensions,
  stringExtension,
} from "./extensions.js";
import {
  COMPRESSION_ZLIB,
  COMPRESSION_ZSTD,
  INCOMPAT_COMPRESSION,
  INCOMPAT_EXTL2,
  MAX_BACKING_NAME,
  MAX_CLUSTER_BITS,
  MAX_L1_BYTES,
  MIN_CLUSTER_BITS,
  type Qcow2Header,
  serializeHeader,
  V2_HEADER_LENGTH,
  V3_HEADER_LENGTH,
} from "./header.js";
import { type HostFile, NodeHostFile } from "./host-file.js";
import { openQcow2 } from "./open.js";

export interface CreateQcow2Options {
  /** Virtual size in bytes (optional with a backing file: defaults to its size). */
  size?: number;
  /** Power of two, 512 B .. 2 MiB (default 64 KiB). */
  clusterSize?: number;
  /** 2 or 3 (default 3). */
  version?: 2 | 3;
  /** Extended L2 entries with 32 subclusters (v3, clusters >= 16 KiB). */
  extendedL2?: boolean;
  /** 1, 2, 4, 8, 16, 32 or 64 (default 16; v2 requires 16). */
  refcountBits?: number;
  /** Compression used for compressed clusters (v3 only for zstd; default zlib). */
  compression?: "zlib" | "zstd";
  /** Backing image: the name stored in the header (relative names are relative to the new image). */
  backing?: { path: string; format?: "qcow2" | "raw" };
  /** Replace an existing file (default: fail if it exists). */
  overwrite?: boolean;
  /** Open the result read-only (default false). */
  readOnly?: boolean;
  /** Passed to openQcow2 for the backing image. */
  backingResolver?: BackingResolver;
  /** Cache budgets for the returned device (see OpenQcow2Options). */
  l2CacheBytes?: number;
  refcountCacheBytes?: number;
  /** Backing policy of the returned device (see OpenQcow2Options.allowBacking). */
  allowBacking?: readonly string[];
  /**
   * Default directory of the returned device's backing policy. Default: the directory of the
   * backing file given here — the caller named it, so it is trusted and its own links are
   * confined to its directory (not the new image's).
   */
  backingRoot?: string;
}

/** The byte image of a freshly created qcow2 (header, refcount structures, empty L1). */
export function buildEmptyImage(options: CreateQcow2Options & { size: number }): Uint8Array {
  const cs = options.clusterSize ?? 65536;
  const version = options.version ?? 3;
  const refcountBits = options.refcountBits ?? 16;
  const clusterBits = Math.log2(cs);
  const fail = (m: string) => {
    throw new UnsupportedError(`cannot create qcow2: ${m}`);
  };
  if (!Number.isInteger(clusterBits) || clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    fail(`cluster size ${cs} must be a power of two between 512 and 2 MiB`);
  }
  if (version !== 2 && version !== 3) fail(`version ${version} (must be 2 or 3)`);
  const order = Math.log2(refcountBits);
  if (!Number.isInteger(order) || order < 0 || order > 6)
    fail(`refcount bits ${refcountBits} (1..64, power of two)`);
  if (version === 2 && refcountBits !== 16) fail("version 2 images have 16-bit refcounts");
  if (options.extendedL2 && (version !== 3 || cs < 16384))
    fail("extended L2 needs version 3 and clusters >= 16 KiB");
  if (options.compression === "zstd" && version !== 3) fail("zstd compression needs version 3");
  const size = options.size;
  if (!Number.isSafeInteger(size) || size < 0) fail(`size ${size}`);
  const l2Entries = cs / (options.extendedL2 ? 16 : 8);
  const l1Size = Math.ceil(size / cs / l2Entries);
  if (l1Size * 8 > MAX_L1_BYTES) fail(`size ${size} needs an L1 table over 32 MiB; use larger clusters`);
  const l1Clusters = Math.ceil((l1Size * 8) / cs);
  const perBlock = (cs * 8) / refcountBits;
  // Layout: [header][refcount table: T][refcount blocks: B][L1: n]; B and T must cover it all.
  let T = 1;
  let B = 1;
  for (;;) {
    const total = 1 + T + B + l1Clusters;
    const nb = Math.ceil(total / perBlock);
    const nt = Math.ceil((nb * 8) / cs);
    if (nb === B && nt === T) break;
    B = Math.max(B, nb);
    T = Math.max(T, nt);
  }
  const total = 1 + T + B + l1Clusters;
  const header: Qcow2Header = {
    version,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits,
    size,
    cryptMethod: 0,
    l1Size,
    l1TableOffset: l1Size > 0 ? (1 + T + B) * cs : 0,
    refcountTableOffset: cs,
    refcountTableClusters: T,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatibleFeatures:
      (options.extendedL2 ? INCOMPAT_EXTL2 : 0n) |
      (options.compression === "zstd" ? INCOMPAT_COMPRESSION : 0n),
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: order,
    headerLength: version === 3 ? V3_HEADER_LENGTH : V2_HEADER_LENGTH,
    compressionType: options.compression === "zstd" ? COMPRESSION_ZSTD : COMPRESSION_ZLIB,
  };
  const exts: { type: number; data: Uint8Array }[] = [];
  if (options.backing?.format) exts.push(stringExtension(EXT_BACKING_FORMAT, options.backing.format));
  const nameBytes = options.backing ? new TextEncoder().encode(options.backing.path) : new Uint8Array(0);
  if (nameBytes.length > MAX_BACKING_NAME) fail("backing file name longer than 1023 bytes");
  // The feature-name table is optional (a hint for tools); like qemu, leave it out when it would not
  // fit in cluster 0 together with the backing name (512-byte clusters).
  let extBytes = serializeExtensions(exts);
  if (version === 3) {
    const withTable = serializeExtensions([...exts, featureTableExtension(DEFAULT_FEATURE_NAMES)]);
    if (header.headerLength + withTable.length + nameBytes.length <= cs) extBytes = withTable;
  }
  const nameAt = header.headerLength + extBytes.length;
  if (nameAt + nameBytes.length > cs) fail("header, extensions and backing name do not fit in one cluster");
  if (options.backing) {
    header.backingFileOffset = nameAt;
    header.backingFileSize = nameBytes.length;
  }
  const image = new Uint8Array((1 + T + B) * cs);
  image.set(serializeHeader(header), 0);
  image.set(extBytes, header.headerLength);
  image.set(nameBytes, nameAt);
  const view = viewOf(image);
  for (let b = 0; b < B; b++) setU64(view, cs + b * 8, (1 + T + b) * cs);
  // refcount 1 for every cluster of the layout (the L1 clusters are zero but counted)
  for (let c = 0; c < total; c++) {
    const blockAt = (1 + T + Math.floor(c / perBlock)) * cs;
    const i = c % perBlock;
    const bitPos = i * refcountBits;
    if (refcountBits >= 8) {
      const at = blockAt + bitPos / 8 + refcountBits / 8 - 1; // big-endian: value 1 in the last byte
      image[at] = 1;
    } else {
      image[blockAt + (bitPos >> 3)]! |= 1 << (bitPos & 7);
    }
  }
  // L1 clusters follow; they are all zero, so the file is just extended to cover them.
  const out = new Uint8Array(total * cs);
  out.set(image);
  return out;
}

/** Create a qcow2 image and open it read-write. */
export async function createQcow2(
  target: string | HostFile,
  options: CreateQcow2Options,
): Promise<Qcow2Device> {
  let size = options.size;
  let format = options.backing?.format;
  const targetPath = typeof target === "string" ? target : null;
  const resolved = options.backing ? resolveBackingPath(options.backing.path, targetPath) : null;
  if (options.backing && (size === undefined || format === undefined)) {
    if (resolved === null)
      throw new UnsupportedError("cannot create qcow2: relative backing name needs a target path");
    format ??= await probeFormat(resolved);
    if (size === undefined) size = await imageSize(resolved, format, options.allowBacking);
  }
  if (size === undefined) throw new UnsupportedError("cannot create qcow2: size is required");
  const bytes = buildEmptyImage({
    ...options,
    size,
    backing: options.backing ? { path: options.backing.path, format } : undefined,
  });
  if (typeof target === "string") {
    if (options.overwrite) await rm(target, { force: true });
    const host = await NodeHostFile.open(target, { create: true });
    try {
      await host.write(0, bytes);
      await host.sync();
    } finally {
      await host.close();
    }
  } else {
    await target.write(0, bytes);
    await target.sync();
  }
  return openQcow2(target, {
    readOnly: options.readOnly,
    backing: options.backingResolver,
    l2CacheBytes: options.l2CacheBytes,
    refcountCacheBytes: options.refcountCacheBytes,
    allowBacking: options.allowBacking,
    backingRoot: options.backingRoot ?? (resolved !== null ? dirname(resolved) : undefined),
  });
}

/** Create a v3 qcow2 overlay over `backingPath` (stored as given; relative to the overlay). */
export async function createOverlay(
  path: string,
  backingPath: string,
  options: Omit<CreateQcow2Options, "backing" | "size"> & { backingFormat?: "qcow2" | "raw" } = {},
): Promise<Qcow2Device> {
  return createQcow2(path, {
    ...options,
    backing: { path: backingPath, format: options.backingFormat },
  });
}

async function imageSize(path: string, format: string, allowBacking?: readonly string[]): Promise<number> {
  let dev: BlockDevice;
  if (format === "qcow2") dev = await openQcow2(path, { readOnly: true, backing: "none", allowBacking });
  else dev = await FileDevice.open(path, { readOnly: true });
  try {
    return dev.size;
  } finally {
    await dev.close();
  }
}
