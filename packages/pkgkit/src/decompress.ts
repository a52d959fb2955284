/**
 * Streaming decompression of package payloads and archive members (RPM payloads, .deb members,
 * repository indexes). Every decoder consumes an async iterable of compressed chunks and
 * yields decompressed chunks, so memory stays bounded by a few blocks whatever the payload size.
 *
 *   gzip   fflate's streaming Gunzip (input pushed in 4 KiB pieces to bound each burst of output)
 *   zstd   fzstd's streaming Decompress (same)
 *   xz     xz-decompress (WASM xz-embedded) through a web ReadableStream; rpm's SHA-256 block checks,
 *          which xz-embedded cannot verify, are dropped on the way (xz-check.ts)
 *   bzip2  seek-bzip, driven one block (≤ 900 kB) at a time with a bounded look-ahead of input
 *   none   passthrough ("ufdio" packages)
 *   lzma   (legacy LZMA_Alone) no maintained pure-JS decoder: the callers refuse it by name
 *
 * Corrupt input fails with `errors` (default PkgFormatError), so each package keeps its own error type.
 */
import { createRequire } from "node:module";
import { ReadableStream } from "node:stream/web";
import { Gunzip } from "fflate";
import { Decompress as ZstdDecompress } from "fzstd";
import { type FormatErrorClass, PkgFormatError } from "./errors.js";
import { xzDropUnsupportedCheck } from "./xz-check.js";

const require = createRequire(import.meta.url);
const PUSH_PIECE = 4 * 1024;

export type Compressor = "gzip" | "zstd" | "xz" | "bzip2" | "none";
export const SUPPORTED_COMPRESSORS: readonly Compressor[] = ["gzip", "zstd", "xz", "bzip2", "none"];

/** Starts of the compressed formats, used to spot ufdio payloads whose header says nothing. */
export function sniffCompressor(head: Uint8Array): Compressor | undefined {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58) return "xz";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return "bzip2";
  if (head[0] === 0x30 && head[1] === 0x37 && head[2] === 0x30 && head[3] === 0x37) return "none";
  return undefined;
}

export function decompress(
  kind: Compressor,
  input: AsyncIterable<Uint8Array>,
  where: { file?: string; offset?: number } = {},
  errors: FormatErrorClass = PkgFormatError,
): AsyncIterable<Uint8Array> {
  switch (kind) {
    case "none":
      return input;
    case "gzip":
      return pushDecoder("gzip", input, where, errors, (ondata) => {
        const g = new Gunzip((data, final) => ondata(data, final === true));
        return (chunk, final) => g.push(chunk, final);
      });
    case "zstd":
      return pushDecoder("zstd", input, where, errors, (ondata) => {
        const z = new ZstdDecompress((data, final) => ondata(data, final === true));
        return (chunk, final) => z.push(chunk, final);
      });
    case "xz":
      return xzDecode(xzDropUnsupportedCheck(input, where, errors), where, errors);
    case "bzip2":
      return bzip2Decode(input, where, errors);
  }
}

function wrapError(
  name: string,
  e: unknown,
  where: { file?: string; offset?: number },
  errors: FormatErrorClass,
): Error {
  if (e instanceof errors) return e;
  return new errors(`${name} payload is corrupt: ${(e as Error)?.message ?? String(e)}`, where, {
    cause: e,
  });
}

type Push = (chunk: Uint8Array, final: boolean) => void;

async function* pushDecoder(
  name: string,
  input: AsyncIterable<Uint8Array>,
  where: { file?: string; offset?: number },
  errors: FormatErrorClass,
  make: (ondata: (data: Uint8Array, final: boolean) => void) => Push,
): AsyncIterable<Uint8Array> {
  let out: Uint8Array[] = [];
  let ended = false;
  const push = make((data, final) => {
    if (data.length > 0) out.push(data);
    if (final) ended = true;
  });
  const step = (chunk: Uint8Array, final: boolean) => {
    try {
      push(chunk, final);
    } catch (e) {
      throw wrapError(name, e, where, errors);
    }
  };
  for await (const chunk of input) {
    for (let i = 0; i < chunk.length; i += PUSH_PIECE) {
      step(chunk.subarray(i, i + PUSH_PIECE), false);
      if (out.length > 0) {
        const ready = out;
        out = [];
        yield* ready;
      }
    }
  }
  step(new Uint8Array(0), true);
  yield* out;
  if (!ended) throw new errors(`${name} payload is truncated`, where);
}

interface XzModule {
  XzReadableStream: new (input: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array>;
}

async function* xzDecode(
  input: AsyncIterable<Uint8Array>,
  where: { file?: string; offset?: number },
  errors: FormatErrorClass,
): AsyncIterable<Uint8Array> {
  const { XzReadableStream } = require("xz-decompress") as XzModule;
  const it = input[Symbol.asyncIterator]();
  const compressed = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const r = await it.next();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
  });
  const reader = new XzReadableStream(compressed).getReader();
  let finished = false;
  try {
    for (;;) {
      let r: { done: boolean; value?: Uint8Array };
      try {
        r = await reader.read();
      } catch (e) {
        finished = true; // the library released its context on error
        throw wrapError("xz", e, where, errors);
      }
      if (r.done || !r.value) {
        finished = true;
        break;
      }
      yield r.value;
    }
  } finally {
    // xz-decompress serializes all streams on one global lock that only a finished or cancelled
    // stream releases: a consumer stopping early must cancel, or the next xz payload would wait forever.
    if (!finished) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

/** The slice of seek-bzip we drive: its Bunzip object decodes one block per _init_block/_read_bunzip. */
interface BzStream {
  readByte(): number;
  read(buf: Uint8Array, off: number, len: number): number;
  eof?(): boolean;
  writeByte?(b: number): void;
}
interface BunzipInstance {
  _init_block(): boolean;
  _read_bunzip(): number;
  _start_bunzip(input: BzStream, output: BzStream): void;
  reader: { read(bits: number): number };
  streamCRC: number;
}
interface BunzipModule {
  new (input: BzStream, output: BzStream): BunzipInstance;
  Stream: new () => BzStream;
}

/** Input kept ahead of the decoder: more than the largest compressed bzip2 block (900 kB + overhead). */
const BZ_LOOKAHEAD = 2 * 1024 * 1024;
const BZ_OUT_CHUNK = 256 * 1024;

async function* bzip2Decode(
  input: AsyncIterable<Uint8Array>,
  where: { file?: string; offset?: number },
  errors: FormatErrorClass,
): AsyncIterable<Uint8Array> {
  const Bunzip = require("seek-bzip") as BunzipModule;
  const it = input[Symbol.asyncIterator]();
  let buf = new Uint8Array(0);
  let pos = 0;
  let eof = false;
  const fill = async () => {
    while (!eof && buf.length - pos < BZ_LOOKAHEAD) {
      const r = await it.next();
      if (r.done) {
        eof = true;
        break;
      }
      const next = new Uint8Array(buf.length - pos + r.value.length);
      next.set(buf.subarray(pos));
      next.set(r.value, buf.length - pos);
      buf = next;
      pos = 0;
    }
  };
  const inStream = new Bunzip.Stream();
  inStream.readByte = () => {
    if (pos < buf.length) return buf[pos++];
    if (eof) return -1;
    throw new errors("bzip2 block larger than the decoder's look-ahead", where);
  };
  inStream.eof = () => eof && pos >= buf.length;
  let out = new Uint8Array(BZ_OUT_CHUNK);
  let outLen = 0;
  const ready: Uint8Array[] = [];
  const outStream = new Bunzip.Stream();
  outStream.writeByte = (b: number) => {
    out[outLen++] = b;
    if (outLen === out.length) {
      ready.push(out);
      out = new Uint8Array(BZ_OUT_CHUNK);
      outLen = 0;
    }
  };
  const flush = () => {
    if (outLen > 0) {
      ready.push(out.subarray(0, outLen));
      out = new Uint8Array(BZ_OUT_CHUNK);
      outLen = 0;
    }
    return ready.splice(0);
  };
  await fill();
  let bz: BunzipInstance;
  try {
    bz = new Bunzip(inStream, outStream);
  } catch (e) {
    throw wrapError("bzip2", e, where, errors);
  }
  for (;;) {
    await fill();
    let more: boolean;
    try {
      more = bz._init_block();
      if (more) bz._read_bunzip();
      else {
        const crc = bz.reader.read(32) >>> 0;
        if (crc !== bz.streamCRC)
          throw new Error(`bad stream CRC ${bz.streamCRC.toString(16)} != ${crc.toString(16)}`);
      }
    } catch (e) {
      throw wrapError("bzip2", e, where, errors);
    }
    yield* flush();
    if (!more) {
      // Concatenated streams (pbzip2) continue with a new "BZh" signature.
      await fill();
      if (pos >= buf.length) break;
      try {
        bz._start_bunzip(inStream, outStream);
      } catch (e) {
        throw wrapError("bzip2", e, where, errors);
      }
    }
  }
}
