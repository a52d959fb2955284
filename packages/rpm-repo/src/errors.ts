/**
 * Typed errors of the repository layer. Each names the file (repomd.xml, primary, an rpmdb, a
 * .repo file) and where known the byte offset, so the CLI prints one clear line.
 */
import {
  ChecksumError,
  type ErrorLocation,
  FormatError,
  ImgpatchError,
  IoError,
  UnsupportedError,
} from "@imgpatch/disk";

/** Repository metadata, a .repo file or an rpmdb does not follow its format. */
export class RepoFormatError extends FormatError {}

/** A dependency string that is not `name [op evr]` or a well-formed rich dependency. */
export class DepParseError extends RepoFormatError {}

/** Metadata whose checksum (from repomd.xml) does not match its bytes. */
export class RepoChecksumError extends ChecksumError {
  readonly expected: string;
  readonly actual: string;
  constructor(what: string, expected: string, actual: string, where: ErrorLocation = {}) {
    super(`${what}: checksum mismatch (expected ${expected}, got ${actual})`, where);
    this.expected = expected;
    this.actual = actual;
  }
}

/** Metadata larger or more numerous than any real repository: refused before it costs memory. */
export class RepoLimitError extends RepoFormatError {}

/** A repository that cannot be read (missing directory or file, refused connection, DNS...). */
export class RepoUnreachableError extends IoError {}

/** A valid input using something we do not handle (an unknown rpmdb backend, a compression...). */
export class RepoUnsupportedError extends UnsupportedError {}

/** The request cannot be satisfied; `chain` lists the dependency path that fails, outermost first. */
export class UnsolvableError extends ImgpatchError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super("EUNSOLVABLE", `cannot resolve the install: ${problems.join("; ")}`);
    this.problems = problems;
  }
}
