/**
 * ext4-layer errors. Structural problems name the structure and the block or inode number;
 * path errors carry a POSIX-style code (ENOENT, ENOTDIR, ELOOP...) and the guest path.
 */
import {
  ChecksumError,
  type ErrorLocation,
  FormatError,
  ImgpatchError,
  UnsupportedError,
} from "@imgpatch/disk";

/** Where inside the filesystem a problem was found. */
export interface Ext4Location extends ErrorLocation {
  /** The on-disk structure, e.g. "superblock", "group descriptor 3", "extent block". */
  structure?: string;
  /** Filesystem block number. */
  block?: number;
  /** Inode number. */
  inode?: number;
}

function describe(where: Ext4Location): string {
  const parts: string[] = [];
  if (where.structure) parts.push(where.structure);
  if (where.inode !== undefined) parts.push(`inode ${where.inode}`);
  if (where.block !== undefined) parts.push(`block ${where.block}`);
  return parts.length ? `[${parts.join(", ")}] ` : "";
}

/** Metadata that does not follow the ext2/3/4 format. */
export class Ext4FormatError extends FormatError {
  readonly structure?: string;
  readonly block?: number;
  readonly inode?: number;
  constructor(message: string, where: Ext4Location = {}) {
    super(describe(where) + message, { file: where.file, offset: where.offset });
    this.structure = where.structure;
    this.block = where.block;
    this.inode = where.inode;
  }
}

/** A metadata checksum does not match. */
export class Ext4ChecksumError extends ChecksumError {
  readonly structure?: string;
  readonly block?: number;
  readonly inode?: number;
  readonly expected: number;
  readonly actual: number;
  constructor(message: string, expected: number, actual: number, where: Ext4Location = {}) {
    super(
      `${describe(where)}${message} (stored 0x${expected.toString(16)}, computed 0x${actual.toString(16)})`,
      { file: where.file, offset: where.offset },
    );
    this.structure = where.structure;
    this.block = where.block;
    this.inode = where.inode;
    this.expected = expected;
    this.actual = actual;
  }
}

/** A valid feature this reader refuses to interpret (encryption, compression...). */
export class Ext4UnsupportedError extends UnsupportedError {
  readonly feature: string;
  constructor(feature: string, message: string, where: Ext4Location = {}) {
    super(describe(where) + message, { file: where.file, offset: where.offset });
    this.feature = feature;
  }
}

export type FsErrorCode =
  | "ENOENT"
  | "ENOTDIR"
  | "EISDIR"
  | "ELOOP"
  | "EINVAL"
  | "ENODATA"
  | "EFBIG"
  | "ENAMETOOLONG";

/** A path-level error, shaped like Node's system errors (code, path). */
export class Ext4FsError extends ImgpatchError {
  readonly path: string;
  constructor(code: FsErrorCode, message: string, path: string) {
    super(code, `${code}: ${message}, '${path}'`, { file: path });
    this.path = path;
  }
}

export type EditErrorCode =
  | "EEXIST"
  | "ENOTEMPTY"
  | "EPERM"
  | "EISDIR"
  | "ENOTDIR"
  | "ENOENT"
  | "EINVAL"
  | "ELOOP"
  | "EMLINK"
  | "ENAMETOOLONG"
  | "ENODATA";

/** A path-level editing error (code like Node's: EEXIST, ENOTEMPTY...). */
export class Ext4EditError extends ImgpatchError {
  readonly path: string;
  constructor(code: EditErrorCode, message: string, path: string) {
    super(code, `${code}: ${message}, '${path}'`, { file: path });
    this.path = path;
  }
}
