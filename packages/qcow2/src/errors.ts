import { type ErrorLocation, FormatError, UnsupportedError } from "@imgpatch/disk";

/**
 * A qcow2 structure violates the format (or points somewhere impossible). `field` names the
 * header field or table entry at fault, e.g. "l1_table_offset" or "L2[12] of L1[3]".
 */
export class Qcow2FormatError extends FormatError {
  readonly field: string;
  constructor(field: string, message: string, where: ErrorLocation = {}, options?: { cause?: unknown }) {
    super(`${field}: ${message}`, where, options);
    this.field = field;
  }
}

/** The image is valid but uses a feature this implementation refuses (encryption, unknown bits...). */
export class Qcow2UnsupportedError extends UnsupportedError {
  readonly feature: string;
  constructor(feature: string, message: string, where: ErrorLocation = {}) {
    super(`${feature}: ${message}`, where);
    this.feature = feature;
  }
}

/** The backing chain refers back to an image already in the chain. */
export class Qcow2BackingLoopError extends Qcow2FormatError {
  readonly chain: readonly string[];
  constructor(chain: readonly string[], where: ErrorLocation = {}) {
    super("backing_file", `backing chain loops: ${chain.join(" -> ")}`, where);
    this.chain = chain;
  }
}
