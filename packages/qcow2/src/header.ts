import { Qcow2FormatError, Qcow2UnsupportedError } from "./errors.js";

/**
 * The qcow2 header (docs/interop/qcow2.txt, "Header"). All fields big-endian. Version 2 headers
 * stop at byte 72; version 3 headers are `header_length` bytes long (>= 104).
 */
export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

type Width = 1 | 4 | 8;
interface FieldDef {
  readonly name: HeaderFieldName;
  readonly at: number;
  readonly width: Width;
  /** First version in which the field exists. */
  readonly since: 2 | 3;
}

export type HeaderFieldName =
  | "magic"
  | "version"
  | "backing_file_offset"
  | "backing_file_size"
  | "cluster_bits"
  | "size"
  | "crypt_method"
  | "l1_size"
  | "l1_table_offset"
  | "refcount_table_offset"
  | "refcount_table_clusters"
  | "nb_snapshots"
  | "snapshots_offset"
  | "incompatible_features"
  | "compatible_features"
  | "autoclear_features"
  | "refcount_order"
  | "header_length"
  | "compression_type";

/** Byte layout of the header, in order. */
export const HEADER_FIELDS: readonly FieldDef[] = [
  { name: "magic", at: 0, width: 4, since: 2 },
  { name: "version", at: 4, width: 4, since: 2 },
  { name: "backing_file_offset", at: 8, width: 8, since: 2 },
  { name: "backing_file_size", at: 16, width: 4, since: 2 },
  { name: "cluster_bits", at: 20, width: 4, since: 2 },
  { name: "size", at: 24, width: 8, since: 2 },
  { name: "crypt_method", at: 32, width: 4, since: 2 },
  { name: "l1_size", at: 36, width: 4, since: 2 },
  { name: "l1_table_offset", at: 40, width: 8, since: 2 },
  { name: "refcount_table_offset", at: 48, width: 8, since: 2 },
  { name: "refcount_table_clusters", at: 56, width: 4, since: 2 },
  { name: "nb_snapshots", at: 60, width: 4, since: 2 },
  { name: "snapshots_offset", at: 64, width: 8, since: 2 },
  { name: "incompatible_features", at: 72, width: 8, since: 3 },
  { name: "compatible_features", at: 80, width: 8, since: 3 },
  { name: "autoclear_features", at: 88, width: 8, since: 3 },
  { name: "refcount_order", at: 96, width: 4, since: 3 },
  { name: "header_length", at: 100, width: 4, since: 3 },
  { name: "compression_type", at: 104, width: 1, since: 3 },
];

export const V2_HEADER_LENGTH = 72;
export const V3_MIN_HEADER_LENGTH = 104;
/** What we write for new v3 images: through compression_type, padded to 8 (as qemu does). */
export const V3_HEADER_LENGTH = 112;

/** Incompatible feature bits. */
export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
export const INCOMPAT_KNOWN =
  INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
/** Compatible feature bits. */
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
/** Autoclear feature bits. */
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

export const CRYPT_NONE = 0;
export const CRYPT_AES = 1;
export const CRYPT_LUKS = 2;

export const COMPRESSION_ZLIB = 0;
export const COMPRESSION_ZSTD = 1;

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21; // qemu's 2 MiB implementation limit
/** qemu's implementation limits, which we share so we never allocate absurd tables. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
export const MAX_BACKING_NAME = 1023;
export const MAX_SNAPSHOTS = 65536;

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
}

const FIELD_KEY: Record<HeaderFieldName, keyof Qcow2Header | null> = {
  magic: null,
  version: "version",
  backing_file_offset: "backingFileOffset",
  backing_file_size: "backingFileSize",
  cluster_bits: "clusterBits",
  size: "size",
  crypt_method: "cryptMethod",
  l1_size: "l1Size",
  l1_table_offset: "l1TableOffset",
  refcount_table_offset: "refcountTableOffset",
  refcount_table_clusters: "refcountTableClusters",
  nb_snapshots: "nbSnapshots",
  snapshots_offset: "snapshotsOffset",
  incompatible_features: "incompatibleFeatures",
  compatible_features: "compatibleFeatures",
  autoclear_features: "autoclearFeatures",
  refcount_order: "refcountOrder",
  header_length: "headerLength",
  compression_type: "compressionType",
};

const BIGINT_FIELDS = new Set<HeaderFieldName>([
  "incompatible_features",
  "compatible_features",
  "autoclear_features",
]);

export function headerField(name: HeaderFieldName): FieldDef {
  const f = HEADER_FIELDS.find((d) => d.name === name);
  if (!f) throw new Error(`unknown header field ${name}`);
  return f;
}

/**
 * Decode and validate the fixed header from the first bytes of the file. `fileSize` bounds every
 * offset; `file` names the image in errors. Feature-bit policy (dirty, corrupt...) is left to the
 * caller; structural nonsense is rejected here.
 */
export function parseHeader(bytes: Uint8Array, file: string): Qcow2Header {
  const where = (name: HeaderFieldName) => ({ file, offset: headerField(name).at });
  if (bytes.length < V2_HEADER_LENGTH) {
    throw new Qcow2FormatError("header", `file too short for a qcow2 header (${bytes.length} bytes)`, {
      file,
      offset: 0,
    });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0) !== QCOW2_MAGIC) {
    throw new Qcow2FormatError("magic", "not a qcow2 image (bad magic)", where("magic"));
  }
  const version = view.getUint32(4);
  if (version !== 2 && version !== 3) {
    throw new Qcow2UnsupportedError("version", `qcow2 version ${version} is not supported`, where("version"));
  }
  const h = {} as Record<string, number | bigint>;
  for (const f of HEADER_FIELDS) {
    const key = FIELD_KEY[f.name];
    if (!key) continue;
    if (f.since > version) continue;
    if (f.width === 8) {
      const big = view.getBigUint64(f.at);
      if (BIGINT_FIELDS.has(f.name)) h[key] = big;
      else {
        if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
          throw new Qcow2FormatError(f.name, `value ${big} is out of range`, where(f.name));
        }
        h[key] = Number(big);
      }
    } else if (f.width === 4) h[key] = view.getUint32(f.at);
    else h[key] = 0; // 1-byte fields are read below once header_length is known
  }
  if (version === 2) {
    h.incompatibleFeatures = 0n;
    h.compatibleFeatures = 0n;
    h.autoclearFeatures = 0n;
    h.refcountOrder = 4;
    h.headerLength = V2_HEADER_LENGTH;
    h.compressionType = 0;
  } else {
    const len = h.headerLength as number;
    if (len < V3_MIN_HEADER_LENGTH || len % 8 !== 0) {
      throw new Qcow2FormatError(
        "header_length",
        `${len} is invalid (must be >= 104 and a multiple of 8)`,
        where("header_length"),
      );
    }
    if (len > bytes.length) {
      throw new Qcow2FormatError("header_length", `${len} exceeds the first cluster`, where("header_length"));
    }
    h.compressionType = len > 104 ? view.getUint8(104) : 0;
  }
  const header = h as unknown as Qcow2Header;
  header.version = version;

  const cb = header.clusterBits;
  if (cb < MIN_CLUSTER_BITS || cb > MAX_CLUSTER_BITS) {
    throw new Qcow2FormatError(
      "cluster_bits",
      `${cb} is out of range (${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS})`,
      where("cluster_bits"),
    );
  }
  if (header.refcountOrder > 6) {
    throw new Qcow2FormatError(
      "refcount_order",
      `${header.refcountOrder} exceeds 6`,
      where("refcount_order"),
    );
  }
  if (header.headerLength > 1 << cb) {
    throw new Qcow2FormatError("header_length", "header is larger than a cluster", where("header_length"));
  }
  return header;
}

/** Serialise the fixed header into a buffer of `header.headerLength` bytes (padding zeroed). */
export function serializeHeader(header: Qcow2Header): Uint8Array {
  const bytes = new Uint8Array(header.headerLength);
  const view = new DataView(bytes.buffer);
  for (const f of HEADER_FIELDS) {
    if (f.since > header.version) continue;
    writeField(view, f, header);
  }
  return bytes;
}

function writeField(view: DataView, f: FieldDef, header: Qcow2Header): void {
  if (f.name === "magic") {
    view.setUint32(f.at, QCOW2_MAGIC);
    return;
  }
  if (f.name === "compression_type" && header.headerLength <= 104) return;
  const key = FIELD_KEY[f.name]!;
  const v = header[key];
  if (f.width === 8) view.setBigUint64(f.at, typeof v === "bigint" ? v : BigInt(v));
  else if (f.width === 4) view.setUint32(f.at, Number(v));
  else view.setUint8(f.at, Number(v));
}

/**
 * The smallest byte span covering the named fields, serialised from `header`: what an update
 * has to write (fields that change together are adjacent, so one write keeps them atomic).
 */
export function headerFieldSpan(
  header: Qcow2Header,
  names: readonly HeaderFieldName[],
): { offset: number; bytes: Uint8Array } {
  const defs = names.map(headerField);
  const start = Math.min(...defs.map((d) => d.at));
  const end = Math.max(...defs.map((d) => d.at + d.width));
  const all = serializeHeader(header);
  return { offset: start, bytes: all.slice(start, end) };
}

export function clusterSizeOf(header: Qcow2Header): number {
  return 2 ** header.clusterBits;
}

export function hasExtendedL2(header: Qcow2Header): boolean {
  return (header.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
}
