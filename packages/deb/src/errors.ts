/**
 * Typed errors of the Debian layer. Each names the .deb, index or guest file and, where it applies,
 * the byte offset, so the CLI prints one clear line.
 */
import { type ErrorLocation, FormatError, ImgpatchError, UnsupportedError } from "@imgpatch/disk";

/** A .deb, tar member, control file or index does not follow its format. */
export class DebFormatError extends FormatError {}

/** A path inside a package is unsafe (`..`, NUL, escaping the guest). */
export class DebPathError extends DebFormatError {}

/** Valid data we do not handle (an lzma member, a tar entry type). */
export class DebUnsupportedError extends UnsupportedError {}

/** The guest tree conflicts with the package (a directory where a file goes...). */
export class DebConflictError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}) {
    super("ECONFLICT", message, where);
  }
}
