/**
 * Typed errors of the RPM layer. Every one names the RPM (or guest path) and, where it applies,
 * the byte offset inside the RPM file, so a CLI can print one clear line.
 */
import {
  ChecksumError,
  type ErrorLocation,
  FormatError,
  ImgpatchError,
  UnsupportedError,
} from "@imgpatch/disk";

/** The RPM does not follow the format: bad magic, index entry past the store, bad cpio... */
export class RpmFormatError extends FormatError {}

/** A path inside the package is unsafe (`..`, empty, NUL, not absolute) or escapes the guest. */
export class RpmPathError extends RpmFormatError {}

/** A digest stored in the package does not match the bytes it covers. */
export class RpmDigestError extends ChecksumError {
  readonly expected: string;
  readonly actual: string;
  constructor(what: string, expected: string, actual: string, where: ErrorLocation = {}) {
    super(`${what}: digest mismatch (expected ${expected}, got ${actual})`, where);
    this.expected = expected;
    this.actual = actual;
  }
}

/** A valid package uses something we cannot handle (lzma payload, non-cpio payload...). */
export class RpmUnsupportedError extends UnsupportedError {}

/** User or group names in the package that the guest's /etc/passwd or /etc/group lack. */
export class RpmOwnerError extends ImgpatchError {
  readonly users: string[];
  readonly groups: string[];
  constructor(message: string, users: string[], groups: string[], where: ErrorLocation = {}) {
    super("EOWNER", message, where);
    this.users = users;
    this.groups = groups;
  }
}

/** The guest tree conflicts with the package (a directory where a file goes, a loop of symlinks...). */
export class InjectConflictError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}) {
    super("ECONFLICT", message, where);
  }
}
