/** Typed errors of the SELinux labelling code: every one names the policy file (and line/offset). */
import { ImgpatchError } from "@imgpatch/disk";

/** A policy file (file_contexts, .bin, subs, config) is malformed or uses what we cannot follow. */
export class SelinuxPolicyError extends ImgpatchError {
  /** 1-based line in `file` for text files. */
  readonly line?: number;
  constructor(file: string, message: string, where: { line?: number; offset?: number } = {}) {
    super("ESEPOLICY", where.line !== undefined ? `line ${where.line}: ${message}` : message, {
      file,
      offset: where.offset,
    });
    this.line = where.line;
  }
}

/** A regular expression of a spec uses PCRE syntax that has no faithful JavaScript translation. */
export class SelinuxRegexError extends SelinuxPolicyError {
  readonly regex: string;
  constructor(file: string, line: number | undefined, regex: string, why: string) {
    super(file, `regular expression ${JSON.stringify(regex)}: ${why}`, { line });
    this.regex = regex;
  }
}
