/**
 * Random-access byte sources an RPM is read from: pkgkit's (a file on the host read positionally,
 * never loaded whole, or a buffer in memory), with short reads failing as RpmFormatError naming
 * the offset.
 */
import { type ByteSource, openSource as openWith } from "@imgpatch/pkgkit";
import { RpmFormatError } from "./errors.js";

export type { ByteSource } from "@imgpatch/pkgkit";

/** Opens a path as a file source, or wraps a buffer. */
export function openSource(input: string | Uint8Array, name?: string): Promise<ByteSource> {
  return openWith(input, name, RpmFormatError);
}
