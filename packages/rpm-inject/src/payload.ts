/**
 * Streams a package's payload: decompression, cpio parsing, matching each archive entry with its
 * header file, and verification of every file's content against the header digest — all in one
 * pass with bounded memory.
 */
import { createHash, type Hash } from "node:crypto";
import { ChunkReader, CPIO_CRC, readCpioHeader } from "./cpio.js";
import { compressorFor, decompress, sniffCompressor } from "./decompress.js";
import { RpmDigestError, RpmFormatError, RpmUnsupportedError } from "./errors.js";
import type { RpmFileEntry } from "./files.js";
import { safeGuestPath } from "./guest-path.js";
import type { RpmPackage } from "./package.js";
import { SigTag } from "./tags.js";

export interface PayloadEntry {
  file: RpmFileEntry;
  /** True when this archive entry carries the content (false for earlier members of a hard-link set). */
  hasData: boolean;
  /** Offset of the entry's cpio header in the decompressed payload. */
  offset: number;
  /**
   * The content, verified against the header digest as it is read (the last chunk is only yielded
   * after the digest matched). Consume it or leave it: the iterator drains and verifies what is left.
   */
  content: AsyncIterable<Uint8Array>;
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/** Per-entry cpio overhead bound used to cap how much a payload may expand (decompression bombs). */
const ENTRY_OVERHEAD = 110 + 4096 + 8;

/** Upper bound of the decompressed payload implied by the header. */
export function payloadSizeBound(pkg: RpmPackage): number {
  let total = 512 + ENTRY_OVERHEAD; // trailer and block padding
  for (const f of pkg.files) total += ENTRY_OVERHEAD + f.size + 4;
  if (pkg.payload.archiveSize !== undefined) total = Math.min(total, pkg.payload.archiveSize + 512);
  return total;
}

/** The compressed payload bytes, hashed on the way (payload digest and the legacy MD5 signature). */
async function* compressedPayload(pkg: RpmPackage, verify: boolean): AsyncIterable<Uint8Array> {
  const { payload, source } = pkg;
  const hashers: { name: string; expected: string; hash: Hash }[] = [];
  if (verify && payload.digest) {
    hashers.push({
      name: "payload digest",
      expected: payload.digest.hex,
      hash: createHash(payload.digest.algo),
    });
  }
  const md5 = pkg.signature.binary(SigTag.MD5);
  if (verify && md5 && md5.length === 16 && !payload.digest) {
    const h = createHash("md5").update(pkg.header.bytes);
    hashers.push({ name: "header+payload md5", expected: Buffer.from(md5).toString("hex"), hash: h });
  }
  for await (const chunk of source.stream(payload.offset, source.size)) {
    for (const h of hashers) h.hash.update(chunk);
    yield chunk;
  }
  for (const h of hashers) {
    const actual = h.hash.digest("hex");
    if (actual !== h.expected) {
      throw new RpmDigestError(h.name, h.expected, actual, { file: source.name, offset: payload.offset });
    }
  }
}

/**
 * Checks the compressed payload against the package's payload digest (or the MD5 signature of old
 * packages) without decompressing. Returns false when the package carries neither.
 */
export async function verifyCompressedPayload(pkg: RpmPackage): Promise<boolean> {
  const hasDigest = pkg.payload.digest !== undefined || pkg.signature.binary(SigTag.MD5) !== undefined;
  if (!hasDigest) return false;
  for await (const _ of compressedPayload(pkg, true)) {
    // hashing happens in the generator
  }
  return true;
}

async function decompressedPayload(pkg: RpmPackage, verify: boolean): Promise<AsyncIterable<Uint8Array>> {
  const { payload, source } = pkg;
  const where = { file: source.name, offset: payload.offset };
  if (payload.format !== "cpio") {
    throw new RpmUnsupportedError(`payload format "${payload.format}" is not cpio`, where);
  }
  let kind = compressorFor(payload.compressor, where);
  // ufdio packages write no compressor tag, which reads as gzip: trust the bytes in that case.
  if (kind === "gzip" && payload.size >= 4) {
    const sniffed = sniffCompressor(await source.read(payload.offset, 4));
    if (sniffed === "none") kind = "none";
  }
  return decompress(kind, compressedPayload(pkg, verify), where);
}

export interface IteratePayloadOptions {
  /** Verify payload and file digests (default true). */
  verify?: boolean;
}

/**
 * Iterates over the payload's entries in archive order. Ends with a check that every non-ghost file
 * of the header was present.
 */
export async function* iteratePayload(
  pkg: RpmPackage,
  options: IteratePayloadOptions = {},
): AsyncIterable<PayloadEntry> {
  const verify = options.verify ?? true;
  const file = pkg.source.name;
  const byPath = new Map<string, RpmFileEntry>();
  for (const f of pkg.files) byPath.set(f.path, f);
  const reader = new ChunkReader(await decompressedPayload(pkg, verify), payloadSizeBound(pkg), file);
  const seen = new Set<number>();
  const algo = pkg.fileDigestAlgo.node;
  try {
    yield* entriesOf(pkg, reader, byPath, seen, algo, verify);
  } finally {
    await reader.close();
  }
}

async function* entriesOf(
  pkg: RpmPackage,
  reader: ChunkReader,
  byPath: Map<string, RpmFileEntry>,
  seen: Set<number>,
  algo: string,
  verify: boolean,
): AsyncIterable<PayloadEntry> {
  const file = pkg.source.name;
  for (;;) {
    const hdr = await readCpioHeader(reader, file);
    if (!hdr) break;
    const where = { file, offset: hdr.offset };
    let entry: RpmFileEntry | undefined;
    if (hdr.index !== undefined) {
      entry = pkg.files[hdr.index];
      if (!entry)
        throw new RpmFormatError(
          `stripped cpio entry refers to file #${hdr.index} of ${pkg.files.length}`,
          where,
        );
    } else {
      const path = safeGuestPath(hdr.name ?? "", where);
      entry = byPath.get(path);
      if (!entry) throw new RpmFormatError(`payload entry ${path} is not in the header's file list`, where);
      if ((hdr.mode & 0o170000) !== (entry.mode & 0o170000)) {
        throw new RpmFormatError(
          `payload entry ${path} has mode 0${hdr.mode.toString(8)}, header says 0${entry.mode.toString(8)}`,
          where,
        );
      }
    }
    if (seen.has(entry.index)) throw new RpmFormatError(`payload lists ${entry.path} twice`, where);
    seen.add(entry.index);

    // Which entry carries the data: in a hard-link set only the last member of the set does.
    const lastOfSet = entry.hardlinks ? entry.hardlinks[entry.hardlinks.length - 1] === entry.index : true;
    let size: number;
    let hasData: boolean;
    if (hdr.index !== undefined) {
      hasData = entry.type === "symlink" || (entry.type === "file" && lastOfSet);
      size = hasData ? (entry.type === "symlink" ? Buffer.byteLength(entry.linkTarget) : entry.size) : 0;
    } else {
      size = hdr.size;
      hasData = entry.type === "file" ? size > 0 || entry.size === 0 : entry.type === "symlink";
      const expected =
        entry.type === "symlink"
          ? Buffer.byteLength(entry.linkTarget)
          : entry.type === "file"
            ? entry.size
            : 0;
      if (hasData && size !== expected) {
        throw new RpmFormatError(
          `payload entry ${entry.path} has ${size} bytes, header says ${expected}`,
          where,
        );
      }
      if (!hasData && !entry.hardlinks && entry.type === "file") {
        throw new RpmFormatError(
          `payload entry ${entry.path} has no data but the header says ${entry.size} bytes`,
          where,
        );
      }
    }
    const dataStart = reader.position;
    let started = false;
    let left = entry.type === "symlink" ? 0 : size;
    const fileWhere = { file: `${file}:${entry.path}`, offset: dataStart };
    const e = entry;
    const checkSum = hdr.magic === CPIO_CRC && verify && hasData && e.type === "file";
    const content = async function* (): AsyncIterable<Uint8Array> {
      if (started) return;
      started = true;
      if (e.type === "symlink") {
        const bytes = size > 0 ? await reader.readExact(size, "symlink target") : new Uint8Array(0);
        const target = new TextDecoder().decode(bytes);
        if (verify && size > 0 && target !== e.linkTarget) {
          throw new RpmFormatError(
            `symlink ${e.path} points to "${target}" in the payload, "${e.linkTarget}" in the header`,
            fileWhere,
          );
        }
        if (bytes.length > 0) yield bytes;
        return;
      }
      const hash = verify && hasData && e.digest !== "" ? createHash(algo) : undefined;
      let sum = 0;
      let pending: Uint8Array | undefined;
      for await (const chunk of reader.readRange(size, `content of ${e.path}`)) {
        left -= chunk.length;
        hash?.update(chunk);
        if (checkSum) for (let i = 0; i < chunk.length; i++) sum = (sum + chunk[i]) >>> 0;
        if (pending) yield pending;
        pending = chunk;
      }
      if (hash) {
        const actual = hash.digest("hex");
        if (actual !== e.digest) throw new RpmDigestError(`file ${e.path}`, e.digest, actual, fileWhere);
      }
      if (checkSum && sum !== hdr.check) {
        throw new RpmDigestError(
          `file ${e.path} (cpio 070702 checksum)`,
          hex8(hdr.check),
          hex8(sum),
          fileWhere,
        );
      }
      if (pending) yield pending;
    };
    yield { file: entry, hasData, offset: hdr.offset, content: content() };
    if (!started) {
      for await (const _ of content()) {
        // drain (and verify) what the consumer skipped
      }
    } else if (left > 0) {
      // The consumer stopped part way (its own business); keep the archive in step.
      await reader.skip(left, `rest of ${entry.path}`);
    }
    await reader.pad(4, "cpio data padding");
  }
  // Drain what follows the trailer (block padding): this also ends the compressed stream, which is
  // when the payload digest is checked.
  for await (const _ of reader.rest()) {
    // bounded by the reader's size limit
  }
  // Every file that should be in the archive must have been seen.
  for (const f of pkg.files) {
    if (!f.ghost && !seen.has(f.index)) {
      throw new RpmFormatError(`${f.path} is in the header but missing from the payload`, {
        file,
        offset: pkg.payload.offset,
      });
    }
  }
}

/** Streams the whole payload and verifies every digest without writing anything. */
export async function verifyPayload(pkg: RpmPackage): Promise<{ entries: number; bytes: number }> {
  let entries = 0;
  let bytes = 0;
  for await (const e of iteratePayload(pkg)) {
    entries++;
    for await (const c of e.content) bytes += c.length;
  }
  return { entries, bytes };
}
