/**
 * xz-decompress (xz-embedded) only knows the None, CRC32 and CRC64 integrity checks, but rpm writes
 * its xz payloads with SHA-256 checks (and any xz stream may use them). This streaming rewriter turns such a stream into one with
 * check type None: it walks the container without decoding (block headers, LZMA2 chunk headers,
 * block padding), drops each block's check field, and rewrites the index and footer to match.
 * Integrity is not lost: the payload digest and every file's digest are still verified.
 *
 * xz container facts used (xz-file-format spec):
 *   stream header  6-byte magic FD 37 7A 58 5A 00, 2 flag bytes (check type in the low nibble of the
 *                  second), CRC32 of the flags
 *   block          header ((first byte + 1) × 4 bytes), LZMA2 data, zero padding to 4, check
 *   LZMA2 chunk    control 0x00 end; 0x01/0x02 uncompressed, u16 BE size-1; ≥ 0x80 LZMA, 2 bytes
 *                  unpacked-size low bits, u16 BE packed size-1, one props byte when control ≥ 0xC0
 *   index          0x00, varint record count, (unpadded size, uncompressed size) varints per block,
 *                  zero padding to 4, CRC32
 *   stream footer  CRC32, u32 LE backward size (index size / 4 - 1), flags, "YZ"
 */
import { crc32 } from "node:zlib";
import { ChunkReader } from "./chunk-reader.js";
import { type FormatErrorClass, PkgFormatError } from "./errors.js";

const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const SUPPORTED_CHECKS = new Set([0, 1, 4]);

export function xzCheckSize(type: number): number {
  return type === 0 ? 0 : 4 << Math.floor((type - 1) / 3);
}

function u32le(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

function encodeVarint(n: number, out: number[]): void {
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/** Rewrites xz streams whose check xz-embedded cannot verify into check-None streams. */
export async function* xzDropUnsupportedCheck(
  input: AsyncIterable<Uint8Array>,
  where: { file?: string; offset?: number } = {},
  errors: FormatErrorClass = PkgFormatError,
): AsyncIterable<Uint8Array> {
  const r = new ChunkReader(input, Number.MAX_SAFE_INTEGER, where.file ?? "<xz>", errors);
  const fail = (msg: string): never => {
    throw new errors(`xz payload: ${msg}`, {
      file: where.file,
      offset: (where.offset ?? 0) + r.position,
    });
  };
  const varint = async (): Promise<{ value: number; bytes: number }> => {
    let value = 0;
    let mul = 1;
    for (let i = 0; i < 9; i++) {
      const b = (await r.readExact(1, "xz varint"))[0];
      value += (b & 0x7f) * mul;
      mul *= 0x80;
      if ((b & 0x80) === 0) return { value, bytes: i + 1 };
    }
    return fail("varint too long");
  };

  let first = true;
  while (!(await r.atEnd())) {
    const head = await r.readExact(first ? 12 : 4, "xz stream header");
    if (!first && head.every((b) => b === 0)) continue; // stream padding
    first = false;
    const header =
      head.length === 12 ? head : new Uint8Array([...head, ...(await r.readExact(8, "xz stream header"))]);
    for (let i = 0; i < 6; i++) if (header[i] !== XZ_MAGIC[i]) fail("bad stream magic");
    const check = header[7] & 0x0f;
    if (SUPPORTED_CHECKS.has(check)) {
      // Nothing to rewrite: hand the rest over untouched.
      yield header;
      yield* r.rest();
      return;
    }
    const checkSize = xzCheckSize(check);
    const flags = new Uint8Array([header[6], header[7] & 0xf0]);
    yield new Uint8Array([...XZ_MAGIC, ...flags, ...u32le(crc32(flags))]);

    // Blocks until the index indicator (0x00).
    for (;;) {
      const size = (await r.readExact(1, "xz block header"))[0];
      if (size === 0) break;
      const blockStart = r.position - 1;
      const rest = await r.readExact(size * 4 + 3, "xz block header");
      yield new Uint8Array([size, ...rest]);
      for (;;) {
        const control = (await r.readExact(1, "LZMA2 chunk"))[0];
        yield new Uint8Array([control]);
        if (control === 0x00) break;
        let packed: number;
        if (control === 0x01 || control === 0x02) {
          const s = await r.readExact(2, "LZMA2 chunk");
          yield s;
          packed = ((s[0] << 8) | s[1]) + 1;
        } else if (control >= 0x80) {
          const s = await r.readExact(control >= 0xc0 ? 5 : 4, "LZMA2 chunk");
          yield s;
          packed = ((s[2] << 8) | s[3]) + 1;
        } else {
          return fail(`bad LZMA2 control byte 0x${control.toString(16)}`);
        }
        yield* r.readRange(packed, "LZMA2 chunk data");
      }
      const pad = (4 - ((r.position - blockStart) % 4)) % 4;
      if (pad > 0) yield await r.readExact(pad, "xz block padding");
      await r.skip(checkSize, "xz block check");
    }

    // Index: rewrite unpadded sizes without the check field.
    const count = await varint();
    const body: number[] = [0x00];
    encodeVarint(count.value, body);
    for (let i = 0; i < count.value; i++) {
      const unpadded = await varint();
      const uncompressed = await varint();
      if (unpadded.value < checkSize) fail("index record smaller than its check");
      encodeVarint(unpadded.value - checkSize, body);
      encodeVarint(uncompressed.value, body);
    }
    const inPad = (4 - (r.position % 4)) % 4;
    await r.skip(inPad, "xz index padding");
    await r.skip(4, "xz index CRC");
    while (body.length % 4 !== 0) body.push(0);
    const index = new Uint8Array(body);
    yield index;
    yield u32le(crc32(index));
    const footer = await r.readExact(12, "xz stream footer");
    if (footer[10] !== 0x59 || footer[11] !== 0x5a) fail("bad stream footer magic");
    const backward = u32le((index.length + 4) / 4 - 1);
    const tail = new Uint8Array([...backward, ...flags]);
    yield new Uint8Array([...u32le(crc32(tail)), ...tail, 0x59, 0x5a]);
  }
}
