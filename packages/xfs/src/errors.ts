/**
 * XFS-layer errors. Structural problems name the structure and where it lives (AG, block, inode);
 * path errors carry a POSIX-style code (ENOENT, ENOTDIR, ELOOP...) and the guest path, shaped like
 * the ext4 package's errors so the CLI handles both the same way.
 */
import {
  ChecksumError,
  type ErrorLocation,
  FormatError,
  ImgpatchError,
  UnsupportedError,
} from "@imgpatch/disk";

/** Where inside the filesystem a problem was found. */
export interface XfsLocation extends ErrorLocation {
  /** The on-disk structure, e.g. "superblock", "AGF 2", "bnobt block", "directory leaf". */
  structure?: string;
  /** Allocation group number. */
  agno?: number;
  /** Filesystem block number (agno << agblklog | agbno) or, for AG-relative structures, the agbno. */
  block?: number;
  /** Inode number. */
  inode?: number;
}

function describe(where: XfsLocation): string {
  const parts: string[] = [];
  if (where.structure) parts.push(where.structure);
  if (where.agno !== undefined) parts.push(`AG ${where.agno}`);
  if (where.inode !== undefined) parts.push(`inode ${where.inode}`);
  if (where.block !== undefined) parts.push(`block ${where.block}`);
  return parts.length ? `[${parts.join(", ")}] ` : "";
}

/** Metadata that does not follow the XFS format. */
export class XfsFormatError extends FormatError {
  readonly structure?: string;
  readonly agno?: number;
  readonly block?: number;
  readonly inode?: number;
  constructor(message: string, where: XfsLocation = {}) {
    super(describe(where) + message, { file: where.file, offset: where.offset });
    this.structure = where.structure;
    this.agno = where.agno;
    this.block = where.block;
    this.inode = where.inode;
  }
}

/** A metadata CRC32C does not match (v5 filesystems). */
export class XfsChecksumError extends ChecksumError {
  readonly structure?: string;
  readonly agno?: number;
  readonly block?: number;
  readonly inode?: number;
  readonly expected: number;
  readonly actual: number;
  constructor(message: string, expected: number, actual: number, where: XfsLocation = {}) {
    super(
      `${describe(where)}${message} (stored 0x${expected.toString(16)}, computed 0x${actual.toString(16)})`,
      { file: where.file, offset: where.offset },
    );
    this.structure = where.structure;
    this.agno = where.agno;
    this.block = where.block;
    this.inode = where.inode;
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * A valid filesystem this package refuses to interpret or to change: an unknown incompat feature,
 * `needsrepair`, a realtime subvolume or external log for writes, a dirty log for writes.
 * `feature` is a stable name callers can branch on ("incompat:0x40", "needsrepair", "dirty-log"...).
 */
export class XfsUnsupportedError extends UnsupportedError {
  readonly feature: string;
  constructor(feature: string, message: string, where: XfsLocation = {}) {
    super(describe(where) + message, { file: where.file, offset: where.offset });
    this.feature = feature;
  }
}

export type XfsFsErrorCode =
  | "ENOENT"
  | "ENOTDIR"
  | "EISDIR"
  | "ELOOP"
  | "EINVAL"
  | "ENODATA"
  | "EFBIG"
  | "ENAMETOOLONG"
  | "EEXIST"
  | "ENOTEMPTY"
  | "ENOSPC"
  | "EROFS";

/** A path-level error, shaped like Node's system errors (code, path). */
export class XfsFsError extends ImgpatchError {
  readonly path: string;
  constructor(code: XfsFsErrorCode, message: string, path: string) {
    super(code, `${code}: ${message}, '${path}'`, { file: path });
    this.path = path;
  }
}
