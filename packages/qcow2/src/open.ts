import { realpath } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import {
  type BlockDevice,
  type HostLinkPolicy,
  hostLinkPolicy,
  IoError,
  openHostLink,
  ReadOnlyError,
} from "@imgpatch/disk";
import { type BackingRef, type BackingResolver, probeHostFormat, resolveBackingPath } from "./backing.js";
import { ClusterMap, loadL1 } from "./cluster-map.js";
import { type BackingInfo, Qcow2Device } from "./device.js";
import { Qcow2BackingLoopError, Qcow2FormatError, Qcow2UnsupportedError } from "./errors.js";
import { featureName, parseExtensions } from "./extensions.js";
import {
  COMPRESSION_ZLIB,
  COMPRESSION_ZSTD,
  CRYPT_AES,
  CRYPT_NONE,
  INCOMPAT_COMPRESSION,
  INCOMPAT_CORRUPT,
  INCOMPAT_DATA_FILE,
  INCOMPAT_DIRTY,
  INCOMPAT_EXTL2,
  INCOMPAT_KNOWN,
  MAX_BACKING_NAME,
  parseHeader,
  type Qcow2Header,
} from "./header.js";
import { DeviceHostFile, type HostFile, isHostFile, NodeHostFile, RawHostDevice } from "./host-file.js";
import { Refcounts } from "./refcount.js";
import { readSnapshotTable } from "./snapshots.js";

export interface OpenQcow2Options {
  /** Open read-only (default false). */
  readOnly?: boolean;
  /**
   * How to open the backing image: "auto" (default: resolve relative names against the image's
   * directory, honour the backing-format extension, probe otherwise), "none" (unallocated
   * clusters read as zeros — for inspecting one layer), or a resolver function.
   */
  backing?: "auto" | "none" | BackingResolver;
  /** Open an internal snapshot (by id or name) as a read-only view. */
  snapshot?: string;
  /** Budget for cached L2 tables in bytes (default 32 MiB; at least two tables). */
  l2CacheBytes?: number;
  /** Budget for cached refcount blocks in bytes (default 4 MiB; at least two blocks). */
  refcountCacheBytes?: number;
  /** Receives warnings (dirty or corrupt images opened read-only). Default: process.emitWarning. */
  onWarning?: (message: string) => void;
  /** Name for errors when opening a BlockDevice or HostFile. */
  name?: string;
  /**
   * Path of the external data file (default: the name in the image, relative to it). A path given
   * here is the caller's choice and is not subject to the backing policy.
   */
  dataFile?: string;
  /**
   * Backing policy: directories (or single files) that backing links and the external data file
   * may lead to, subdirectories included, besides `backingRoot`. Every link of the chain must
   * resolve, after symlinks, to a regular file inside one of them; /proc, /sys, /dev, device
   * nodes, FIFOs, sockets, `json:` and protocol names are never followed. A refused link throws
   * UnsafeImageError (from @imgpatch/disk).
   */
  allowBacking?: readonly string[];
  /**
   * The directory links may lead to by default: the directory of the image opened (of `path` for
   * a HostFile or BlockDevice source; none without one). An overlay made over an image the user
   * named passes that image's directory here, so links cannot reach the overlay's own directory.
   */
  backingRoot?: string;
  /** Host path of a HostFile or BlockDevice source: relative backing names resolve against it. */
  path?: string;
  /** @internal canonical paths of the images above (loop detection). */
  chain?: readonly string[];
  /** @internal the chain's policy, fixed by the top image. */
  policy?: HostLinkPolicy;
  /** @internal close a HostFile source with the device. */
  ownsHost?: boolean;
}

const DEFAULT_L2_CACHE = 32 * 1024 * 1024;
const DEFAULT_REFCOUNT_CACHE = 4 * 1024 * 1024;

/**
 * Open a qcow2 image from a path, a BlockDevice (fixed size: the image cannot grow past it) or
 * a HostFile. Everything is validated before anything can be written.
 */
export async function openQcow2(
  source: string | BlockDevice | HostFile,
  options: OpenQcow2Options = {},
): Promise<Qcow2Device> {
  const readOnlyRequested = options.readOnly ?? false;
  const snapshotView = options.snapshot !== undefined;
  const readOnly = readOnlyRequested || snapshotView;
  let host: HostFile;
  let path: string | null = null;
  let ownsHost = true;
  if (typeof source === "string") {
    path = source;
    host = await NodeHostFile.open(source, { readOnly });
  } else if (isHostFile(source)) {
    host = source;
    ownsHost = options.ownsHost === true;
    path = options.path ?? null;
  } else {
    if (!readOnly && source.readOnly) throw new ReadOnlyError("device is read-only", { file: source.name });
    host = new DeviceHostFile(source);
    ownsHost = false;
    path = options.path ?? null;
  }
  try {
    return await openOn(host, path, ownsHost, readOnly, options);
  } catch (err) {
    if (ownsHost) await host.close().catch(() => {});
    throw err;
  }
}

async function openOn(
  host: HostFile,
  path: string | null,
  ownsHost: boolean,
  readOnly: boolean,
  options: OpenQcow2Options,
): Promise<Qcow2Device> {
  const file = host.name;
  const warn = options.onWarning ?? ((m: string) => process.emitWarning(m, "Qcow2Warning"));
  const first = new Uint8Array(Math.min(512, host.length));
  await host.read(0, first);
  const header = parseHeader(first, file);
  const cs = 2 ** header.clusterBits;
  const cluster0 = new Uint8Array(cs);
  await host.read(0, cluster0);
  checkFeatures(header, file);

  // Extensions and backing name live in cluster 0.
  const hasBacking = header.backingFileOffset !== 0;
  if (hasBacking) {
    if (header.backingFileSize > MAX_BACKING_NAME || header.backingFileSize === 0) {
      throw new Qcow2FormatError("backing_file_size", `${header.backingFileSize} is out of range (1..1023)`, {
        file,
        offset: 16,
      });
    }
    if (
      header.backingFileOffset + header.backingFileSize > cs ||
      header.backingFileOffset < header.headerLength
    ) {
      throw new Qcow2FormatError("backing_file_offset", "backing file name lies outside the first cluster", {
        file,
        offset: 8,
      });
    }
  }
  const extLimit = hasBacking ? header.backingFileOffset : cs;
  const extensions = parseExtensions(cluster0, header.headerLength, extLimit, file);
  const names = extensions.featureNames;
  const unknown = header.incompatibleFeatures & ~INCOMPAT_KNOWN;
  if (unknown !== 0n) {
    const bits: string[] = [];
    for (let b = 0; b < 64; b++) {
      if (unknown & (1n << BigInt(b))) bits.push(featureName(names, 0, b) ?? `bit ${b}`);
    }
    throw new Qcow2UnsupportedError(
      "incompatible_features",
      `unknown incompatible features: ${bits.join(", ")}`,
      {
        file,
        offset: 72,
      },
    );
  }
  const usesDataFile = (header.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n;
  if (usesDataFile && !readOnly) {
    throw new Qcow2UnsupportedError(
      "external data file",
      `images whose data lives in an external file${extensions.dataFile ? ` ("${extensions.dataFile}")` : ""} can only be opened read-only`,
      { file, offset: 72 },
    );
  }
  if (header.incompatibleFeatures & INCOMPAT_DIRTY) {
    if (!readOnly) {
      throw new Qcow2UnsupportedError(
        "dirty",
        "image is marked dirty (refcounts may be stale): repair it with `qemu-img check -r all` before writing, or open it read-only",
        { file, offset: 72 },
      );
    }
    warn(`${file}: image is marked dirty; reading it anyway (refcounts may be stale)`);
  }
  if (header.incompatibleFeatures & INCOMPAT_CORRUPT) {
    if (!readOnly) {
      throw new Qcow2UnsupportedError(
        "corrupt",
        "image is marked corrupt: it may only be opened read-only (repair with `qemu-img check -r all`)",
        { file, offset: 72 },
      );
    }
    warn(`${file}: image is marked corrupt; reading it anyway`);
  }

  const extL2 = (header.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
  const entryBytes = extL2 ? 16 : 8;
  const l2Entries = cs / entryBytes;
  const neededL1 = Math.ceil(header.size / cs / l2Entries);
  if (header.l1Size < neededL1) {
    throw new Qcow2FormatError(
      "l1_size",
      `${header.l1Size} entries cannot map a ${header.size}-byte disk (need ${neededL1})`,
      {
        file,
        offset: 36,
      },
    );
  }
  if (header.nbSnapshots > 0 && header.snapshotsOffset + 40 > host.length) {
    throw new Qcow2FormatError("snapshots_offset", "snapshot table lies past the end of the file", {
      file,
      offset: 64,
    });
  }
  const snapshots = await readSnapshotTable(
    host,
    header.snapshotsOffset,
    header.nbSnapshots,
    cs,
    header.version,
  );

  let l1Offset = header.l1TableOffset;
  let l1Size = header.l1Size;
  let size = header.size;
  let l1Field = "L1";
  if (options.snapshot !== undefined) {
    const sn =
      snapshots.find((s) => s.id === options.snapshot) ?? snapshots.find((s) => s.name === options.snapshot);
    if (!sn)
      throw new Qcow2UnsupportedError("snapshot", `no snapshot with id or name "${options.snapshot}"`, {
        file,
      });
    l1Offset = sn.l1TableOffset;
    l1Size = sn.l1Size;
    size = sn.diskSize ?? header.size;
    l1Field = `snapshot "${sn.name}" L1`;
    if (l1Size < Math.ceil(size / cs / l2Entries)) {
      throw new Qcow2FormatError(l1Field, `${l1Size} entries cannot map ${size} bytes`, {
        file,
        offset: sn.entryOffset,
      });
    }
  }
  const l1 = await loadL1(host, l1Offset, l1Size, cs, l1Field);

  const l2Tables = Math.max(2, Math.floor((options.l2CacheBytes ?? DEFAULT_L2_CACHE) / cs));
  const rcTables = Math.max(2, Math.floor((options.refcountCacheBytes ?? DEFAULT_REFCOUNT_CACHE) / cs));
  let device: Qcow2Device | null = null;
  const map = new ClusterMap(host, header.clusterBits, extL2, l1Offset, l1, l2Tables, async () => {
    await device!.beforeL2WriteBack();
  });
  let refcounts: Refcounts | null = null;
  if (!readOnly) {
    refcounts = await Refcounts.load(host, {
      clusterBits: header.clusterBits,
      refcountOrder: header.refcountOrder,
      tableOffset: header.refcountTableOffset,
      tableClusters: header.refcountTableClusters,
      cacheTables: rcTables,
      onTableMoved: async (offset, clusters) => {
        header.refcountTableOffset = offset;
        header.refcountTableClusters = clusters;
        await device!.writeHeaderFields(["refcount_table_offset", "refcount_table_clusters"]);
      },
    });
  }

  // Backing chain.
  let backing: BlockDevice | null = null;
  let backingInfo: BackingInfo | null = null;
  // qemu keeps the name as a C string: it ends at the first NUL, and an empty name means no backing.
  const rawName = hasBacking
    ? cluster0.subarray(header.backingFileOffset, header.backingFileOffset + header.backingFileSize)
    : new Uint8Array(0);
  const nul = rawName.indexOf(0);
  const nameBytes = nul < 0 ? rawName : rawName.subarray(0, nul);
  const policy = usesDataFile || nameBytes.length > 0 ? await policyOf(path, options) : null;
  if (nameBytes.length > 0) {
    const name = new TextDecoder().decode(nameBytes);
    const ref: BackingRef = {
      name,
      path: resolveBackingPath(name, path),
      format: extensions.backingFormat,
      chain: options.chain ?? (path !== null ? [await realpath(path).catch(() => resolve(path!))] : []),
      referrer: file,
      referrerPath: path,
      offset: header.backingFileOffset,
      policy: policy!,
    };
    backingInfo = { name, path: ref.path ?? undefined, format: ref.format };
    const mode = options.backing ?? "auto";
    if (mode === "none" && !readOnly) {
      // Copy-on-write and zeroing both depend on what the backing image holds.
      throw new Qcow2UnsupportedError(
        "backing_file",
        `the image has a backing file ("${name}"): opening it writable requires opening the backing image too`,
        { file },
      );
    }
    if (mode !== "none") {
      backing = typeof mode === "function" ? await mode(ref) : await openBackingImage(ref, options);
    }
  }

  let dataFile: HostFile | null = null;
  if (usesDataFile) {
    const name = options.dataFile ?? extensions.dataFile;
    if (name === undefined) {
      throw new Qcow2FormatError("external data file", "the image needs a data file but does not name it", {
        file,
        offset: 72,
      });
    }
    try {
      dataFile =
        options.dataFile !== undefined
          ? await NodeHostFile.open(options.dataFile, { readOnly: true })
          : await openDataFile(name, path, file, policy!);
    } catch (err) {
      if (backing) await backing.close();
      throw err;
    }
  }

  device = new Qcow2Device({
    dataFile,
    name: options.name ?? file,
    host,
    header,
    extensions,
    map,
    refcounts,
    backing,
    backingInfo,
    snapshots,
    readOnly,
    size,
    ownsHost,
  });
  return device;
}

function checkFeatures(header: Qcow2Header, file: string): void {
  if (header.cryptMethod !== CRYPT_NONE) {
    const kind =
      header.cryptMethod === CRYPT_AES
        ? "AES"
        : header.cryptMethod === 2
          ? "LUKS"
          : `method ${header.cryptMethod}`;
    throw new Qcow2UnsupportedError("encryption", `encrypted images (${kind}) are not supported`, {
      file,
      offset: 32,
    });
  }
  const extL2 = (header.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
  if (extL2 && header.clusterBits < 14) {
    throw new Qcow2FormatError("cluster_bits", "extended L2 entries need clusters of at least 16 KiB", {
      file,
      offset: 20,
    });
  }
  const flagged = (header.incompatibleFeatures & INCOMPAT_COMPRESSION) !== 0n;
  if (flagged && header.compressionType === COMPRESSION_ZLIB) {
    throw new Qcow2FormatError("compression_type", "compression type bit set but the type is zlib", {
      file,
      offset: 104,
    });
  }
  if (!flagged && header.compressionType !== COMPRESSION_ZLIB) {
    throw new Qcow2FormatError("compression_type", "non-zlib compression without the compression type bit", {
      file,
      offset: 104,
    });
  }
  if (header.compressionType > COMPRESSION_ZSTD) {
    throw new Qcow2UnsupportedError(
      "compression_type",
      `unknown compression type ${header.compressionType}`,
      {
        file,
        offset: 104,
      },
    );
  }
}

/** The chain's policy: inherited from the image above, else the top image's directory plus allowBacking. */
async function policyOf(path: string | null, options: OpenQcow2Options): Promise<HostLinkPolicy> {
  if (options.policy) return options.policy;
  const root = options.backingRoot ?? (path !== null ? dirname(resolve(path)) : undefined);
  return hostLinkPolicy([...(root !== undefined ? [root] : []), ...(options.allowBacking ?? [])]);
}

/**
 * The external data file, under the backing policy. qemu 7.2 resolves a relative name against
 * its working directory; an image moved with its data file has it beside it: the image's
 * directory is tried first, then the working directory (both checked by the policy).
 */
async function openDataFile(
  name: string,
  path: string | null,
  file: string,
  policy: HostLinkPolicy,
): Promise<HostFile> {
  const referrers = [path, join(process.cwd(), "-")].filter((p): p is string => p !== null);
  let lastErr: unknown;
  for (const referrerPath of referrers) {
    try {
      const o = await openHostLink({ kind: "data file", name, referrer: file, referrerPath }, policy);
      return NodeHostFile.fromHandle(o.path, o.handle, o.size, true);
    } catch (err) {
      if (!(err instanceof IoError)) throw err; // refused: never fall back to another directory
      lastErr = err;
    }
  }
  throw lastErr;
}

/** The default resolver: the link opened under the chain's policy, qcow2 (recursively) or raw. */
export async function openBackingImage(
  ref: BackingRef,
  options: OpenQcow2Options = {},
): Promise<BlockDevice> {
  const o = await openHostLink(
    {
      kind: "backing file",
      name: ref.name,
      referrer: ref.referrer,
      referrerPath: ref.referrerPath,
      offset: ref.offset,
    },
    ref.policy,
  );
  const host = NodeHostFile.fromHandle(o.path, o.handle, o.size, true);
  try {
    if (ref.chain.includes(o.target))
      throw new Qcow2BackingLoopError([...ref.chain, o.target], { file: ref.referrer });
    const format = ref.format ?? (await probeHostFormat(host));
    if (format === "qcow2") {
      return await openQcow2(host, {
        readOnly: true,
        backing: options.backing,
        l2CacheBytes: options.l2CacheBytes,
        onWarning: options.onWarning,
        path: o.path,
        chain: [...ref.chain, o.target],
        policy: ref.policy,
        ownsHost: true,
      });
    }
    if (format === "raw") return new RawHostDevice(host);
    throw new Qcow2UnsupportedError("backing format", `backing format "${format}" is not supported`, {
      file: ref.referrer,
    });
  } catch (err) {
    await host.close().catch(() => {});
    throw err;
  }
}
