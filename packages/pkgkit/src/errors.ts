/**
 * Errors shared by the package layers. The decoders here take the error class to throw as a
 * parameter, so an RPM payload fails with RpmFormatError and a .deb member with DebFormatError.
 */
import { type ErrorLocation, FormatError } from "@imgpatch/disk";

/** Malformed package data found by the shared decoders when the caller names no class of its own. */
export class PkgFormatError extends FormatError {}

/** A FormatError subclass a decoder throws for malformed input. */
export type FormatErrorClass = new (
  message: string,
  where?: ErrorLocation,
  options?: { cause?: unknown },
) => FormatError;
