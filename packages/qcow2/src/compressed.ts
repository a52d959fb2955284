import { createRequire } from "node:module";
import { inflateRawSync } from "node:zlib";
import { COMPRESSION_ZLIB, COMPRESSION_ZSTD } from "./header.js";

// The JS decoders are loaded on first use (synchronously, through their CommonJS builds): most
// runs never need them — zlib clusters go through node:zlib — and loading them costs start-up time.
const load = createRequire(import.meta.url);
let fflateModule: typeof import("fflate") | undefined;
let fzstdModule: typeof import("fzstd") | undefined;
function fflate(): typeof import("fflate") {
  if (fflateModule === undefined) fflateModule = load("fflate") as typeof import("fflate");
  return fflateModule;
}
function fzstd(): typeof import("fzstd") {
  if (fzstdModule === undefined) fzstdModule = load("fzstd") as typeof import("fzstd");
  return fzstdModule;
}

/**
 * Compressed clusters. qemu writes zlib clusters as raw deflate streams (no zlib header, window
 * bits -12) and zstd clusters as zstd frames. A stream is followed by whatever shares its last
 * sector (often the next compressed cluster), so decompression must stop once a full cluster
 * has been produced and ignore what follows.
 */
export class DecompressError extends Error {}

/** Decompress `data` into `out` (exactly one cluster). Throws DecompressError on bad input. */
export function decompressCluster(data: Uint8Array, out: Uint8Array, type: number): void {
  if (type === COMPRESSION_ZLIB) {
    // Fast path: the native inflater (several times faster than the JS one, which matters when a
    // compressed base's metadata clusters are read on every run). Streams it does not accept —
    // truncated ones that still fill the cluster, which qemu reads — take the JS path below.
    try {
      const native = inflateRawSync(data, { maxOutputLength: out.length });
      if (native.length === out.length) {
        out.set(native);
        return;
      }
    } catch {
      // decided below
    }
    let result: Uint8Array;
    try {
      result = fflate().inflateSync(data, { out });
    } catch (err) {
      throw new DecompressError(`deflate: ${(err as Error).message}`);
    }
    if (result.length !== out.length) {
      throw new DecompressError(`deflate stream produced ${result.length} of ${out.length} bytes`);
    }
    if (result.buffer !== out.buffer || result.byteOffset !== out.byteOffset) out.set(result);
    return;
  }
  if (type === COMPRESSION_ZSTD) {
    let filled = 0;
    let pos = 0;
    while (filled < out.length) {
      const len = zstdFrameLength(data, pos);
      let part: Uint8Array;
      try {
        part = fzstd().decompress(data.subarray(pos, pos + len));
      } catch (err) {
        throw new DecompressError(`zstd: ${(err as Error).message}`);
      }
      if (part.length > out.length - filled) {
        throw new DecompressError(`zstd frame produced more than a cluster (${filled + part.length} bytes)`);
      }
      out.set(part, filled);
      filled += part.length;
      pos += len;
      if (part.length === 0 && pos >= data.length) break;
    }
    if (filled !== out.length)
      throw new DecompressError(`zstd data produced ${filled} of ${out.length} bytes`);
    return;
  }
  throw new DecompressError(`unknown compression type ${type}`);
}

const FCS_BYTES = [0, 2, 4, 8];
const DICT_BYTES = [0, 1, 2, 4];

/**
 * Length of the zstd frame starting at `pos` (RFC 8878 §3.1.1), found by walking its block
 * headers, so trailing bytes from the next cluster are not fed to the decoder.
 */
export function zstdFrameLength(data: Uint8Array, pos: number): number {
  const start = pos;
  const need = (n: number) => {
    if (pos + n > data.length) throw new DecompressError("zstd frame truncated");
  };
  need(5);
  const magic = data[pos]! | (data[pos + 1]! << 8) | (data[pos + 2]! << 16) | (data[pos + 3]! << 24);
  if (magic >>> 0 !== 0xfd2fb528) throw new DecompressError("zstd: bad frame magic");
  const fhd = data[pos + 4]!;
  pos += 5;
  const single = (fhd >> 5) & 1;
  const fcsFlag = fhd >> 6;
  pos += single ? 0 : 1;
  pos += DICT_BYTES[fhd & 3]!;
  pos += fcsFlag === 0 ? (single ? 1 : 0) : FCS_BYTES[fcsFlag]!;
  for (;;) {
    need(3);
    const h = data[pos]! | (data[pos + 1]! << 8) | (data[pos + 2]! << 16);
    pos += 3;
    const last = h & 1;
    const type = (h >> 1) & 3;
    const size = h >>> 3;
    if (type === 3) throw new DecompressError("zstd: reserved block type");
    pos += type === 1 ? 1 : size;
    need(0);
    if (last) break;
  }
  if ((fhd >> 2) & 1) pos += 4;
  need(0);
  return pos - start;
}
