/** The xz check rewriter moved to @imgpatch/pkgkit; re-exported here. */
import { xzDropUnsupportedCheck as dropWith } from "@imgpatch/pkgkit";
import { RpmFormatError } from "./errors.js";

export { xzCheckSize } from "@imgpatch/pkgkit";

/** Rewrites xz streams whose check xz-embedded cannot verify into check-None streams (RpmFormatError on damage). */
export function xzDropUnsupportedCheck(
  input: AsyncIterable<Uint8Array>,
  where: { file?: string; offset?: number } = {},
): AsyncIterable<Uint8Array> {
  return dropWith(input, where, RpmFormatError);
}
