/**
 * Typed errors shared by every layer. Each carries a stable `code`, and where it applies the
 * file (image path or guest path) and byte offset it concerns, so a CLI can print one clear line.
 */
export interface ErrorLocation {
  /** Image file, device name or guest path the error concerns. */
  file?: string;
  /** Byte offset inside `file` (or inside the device) where the problem was found. */
  offset?: number;
}

export class ImgpatchError extends Error {
  readonly code: string;
  readonly file?: string;
  readonly offset?: number;

  constructor(code: string, message: string, where: ErrorLocation = {}, options?: { cause?: unknown }) {
    super(formatMessage(message, where), options);
    this.name = new.target.name;
    this.code = code;
    this.file = where.file;
    this.offset = where.offset;
  }
}

function formatMessage(message: string, where: ErrorLocation): string {
  const parts: string[] = [];
  if (where.file !== undefined) parts.push(where.file);
  if (where.offset !== undefined) parts.push(`offset ${where.offset} (0x${where.offset.toString(16)})`);
  return parts.length > 0 ? `${parts.join(" @ ")}: ${message}` : message;
}

/** Input bytes do not follow the format (bad magic, bad checksum, field out of range...). */
export class FormatError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}, options?: { cause?: unknown }) {
    super("EFORMAT", message, where, options);
  }
}

/** A checksum stored on disk does not match the bytes it covers. */
export class ChecksumError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}) {
    super("ECHECKSUM", message, where);
  }
}

/** A read or write reaches outside the device. */
export class OutOfRangeError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}) {
    super("ERANGE", message, where);
  }
}

/** A write was attempted on a device or image opened read-only. */
export class ReadOnlyError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}) {
    super("EROFS", message, where);
  }
}

/** The input is valid but uses something this implementation refuses to handle. */
export class UnsupportedError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}) {
    super("EUNSUPPORTED", message, where);
  }
}

/** An operating-system I/O error, wrapped with the file it happened on. */
export class IoError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}, options?: { cause?: unknown }) {
    super("EIO", message, where, options);
  }
}

/** A partition entry reaches outside the disk (or outside the area its table allows). */
export class PartitionRangeError extends FormatError {
  readonly partition: number;
  constructor(partition: number, message: string, where: ErrorLocation = {}) {
    super(`partition ${partition}: ${message}`, where);
    this.partition = partition;
  }
}

/** Two partition entries claim the same sectors. */
export class PartitionOverlapError extends FormatError {
  readonly partition: number;
  readonly other: number;
  constructor(partition: number, other: number, message: string, where: ErrorLocation = {}) {
    super(`partition ${partition} overlaps partition ${other}: ${message}`, where);
    this.partition = partition;
    this.other = other;
  }
}

/** A partition number that the table does not have (or that cannot be opened as a volume). */
export class PartitionNotFoundError extends ImgpatchError {
  readonly partition: number;
  constructor(partition: number, message: string, where: ErrorLocation = {}) {
    super("ENOPART", message, where);
    this.partition = partition;
  }
}

/**
 * The input was recognised, but as an image format or filesystem imgpatch does not handle
 * (vmdk, vhdx, xfs, LUKS...). `format` is the detected name, so callers can branch on it.
 */
export class UnsupportedFormatError extends UnsupportedError {
  readonly format: string;
  constructor(format: string, message: string, where: ErrorLocation = {}) {
    super(message, where);
    this.format = format;
  }
}

/** Why a link named inside an image is not followed (see host-policy.ts). */
export type UnsafeLinkReason =
  /** `json:{…}`, `nbd:`, `http://`…: not a host file at all. */
  | "protocol"
  /** Under /proc, /sys or /dev: never followed, whatever is allowed. */
  | "system"
  /** A device node, FIFO, socket or directory: never followed. */
  | "not-regular"
  /** A regular file outside every allowed directory: trusted with --allow-backing / allowBacking. */
  | "outside"
  /** A relative name with no directory to resolve it against. */
  | "unresolvable"
  /** The file changed between the check and the open (a swap race). */
  | "changed";

/**
 * An image names a host file (backing file, external data file, extent...) that the backing
 * policy refuses to open: following it could copy host files the image's author chose into
 * what imgpatch writes. `file` is the image holding the name.
 */
export class UnsafeImageError extends ImgpatchError {
  /** "backing file", "data file", "extent"... */
  readonly link: string;
  /** The name exactly as stored in the image. */
  readonly storedName: string;
  /** Where it resolves to (after symlinks when it exists), null when it cannot be resolved. */
  readonly target: string | null;
  readonly reason: UnsafeLinkReason;
  /** Why, and what would trust it (the message without the link). */
  readonly detail: string;
  /** The directory whose allowance would let it be followed (reason "outside" only). */
  readonly trust?: string;
  constructor(
    link: string,
    storedName: string,
    target: string | null,
    reason: UnsafeLinkReason,
    detail: string,
    where: ErrorLocation = {},
    trust?: string,
  ) {
    super(
      "EUNSAFE",
      `unsafe image: ${link} "${storedName}"${target && target !== storedName ? ` -> ${target}` : ""}: ${detail}`,
      where,
    );
    this.link = link;
    this.storedName = storedName;
    this.target = target;
    this.reason = reason;
    this.detail = detail;
    this.trust = trust;
  }
}
