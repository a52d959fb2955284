/**
 * RPM payload decompression: the streaming decoders live in @imgpatch/pkgkit (shared with .deb
 * members); this module maps rpm's PAYLOADCOMPRESSOR names onto them and makes corrupt payloads fail
 * with RpmFormatError.
 */
import {
  type Compressor,
  decompress as decompressWith,
  SUPPORTED_COMPRESSORS,
  sniffCompressor,
} from "@imgpatch/pkgkit";
import { RpmFormatError, RpmUnsupportedError } from "./errors.js";

export { type Compressor, SUPPORTED_COMPRESSORS, sniffCompressor };

/** Maps the header's PAYLOADCOMPRESSOR to a decoder, refusing what we cannot decode. */
export function compressorFor(name: string, where: { file?: string; offset?: number } = {}): Compressor {
  switch (name) {
    case "gzip":
    case "zstd":
    case "xz":
    case "bzip2":
      return name;
    case "":
    case "none":
    case "identity":
      return "none";
    case "lzma":
      throw new RpmUnsupportedError(
        "payload compressor lzma (legacy LZMA_Alone) is not supported: no maintained pure-JavaScript decoder; " +
          "rebuild the package with xz or zstd payloads",
        where,
      );
    default:
      throw new RpmUnsupportedError(`unknown payload compressor "${name}"`, where);
  }
}

/** Decompresses a payload stream; malformed input fails with RpmFormatError. */
export function decompress(
  kind: Compressor,
  input: AsyncIterable<Uint8Array>,
  where: { file?: string; offset?: number } = {},
): AsyncIterable<Uint8Array> {
  return decompressWith(kind, input, where, RpmFormatError);
}
