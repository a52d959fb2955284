/**
 * Opening an RPM: lead, signature header (padded to 8 bytes), main header, then the payload offset.
 * Header digests are verified on open; the payload is only streamed later (see payload.ts).
 */
import { createHash } from "node:crypto";
import { RpmDigestError, RpmFormatError } from "./errors.js";
import { type FileDigestAlgo, fileDigestAlgo, type RpmFileEntry, readFileEntries } from "./files.js";
import { HEADER_INTRO_SIZE, parseHeaderIntro, RpmHeader } from "./header.js";
import { LEAD_SIZE, parseLead, type RpmLead } from "./lead.js";
import {
  countFileTriggers,
  readDeps,
  readScriptlets,
  readTriggers,
  type Scriptlet,
  type Trigger,
} from "./metadata.js";
import { type ByteSource, openSource } from "./source.js";
import { DigestAlgo, RegionTag, SigTag, Tag } from "./tags.js";

export interface PayloadInfo {
  /** Byte offset of the (compressed) payload in the RPM file. */
  offset: number;
  /** Compressed payload size (to the end of the file). */
  size: number;
  format: string;
  /** Compressor name from the header ("gzip" when absent, as rpm assumes). */
  compressor: string;
  flags: string;
  /** Digest of the compressed payload (PAYLOADDIGEST) and its algorithm, when present. */
  digest?: { algo: string; hex: string };
  /** Uncompressed archive size when the package records it. */
  archiveSize?: number;
}

export interface RpmInfo {
  name: string;
  epoch?: number;
  version: string;
  release: string;
  arch: string;
  /** name-[epoch:]version-release.arch */
  nevra: string;
  summary: string;
}

export interface ReadRpmOptions {
  /** Skip checking the header digest (for inspection of damaged packages). Default false. */
  skipHeaderDigest?: boolean;
}

export class RpmPackage {
  readonly info: RpmInfo;
  readonly files: RpmFileEntry[];
  readonly fileDigestAlgo: FileDigestAlgo;
  readonly scriptlets: Scriptlet[];
  readonly triggers: Trigger[];
  readonly fileTriggerCount: number;
  readonly requires: string[];
  readonly provides: string[];
  readonly payload: PayloadInfo;
  /** Package format: 3, 4 or 6. */
  readonly format: number;
  /** Which header digests were present and verified ("sha256", "sha1"). */
  readonly headerDigests: string[];

  constructor(
    readonly source: ByteSource,
    readonly lead: RpmLead,
    readonly signature: RpmHeader,
    readonly header: RpmHeader,
    payloadOffset: number,
    headerDigests: string[],
  ) {
    const h = header;
    const name = h.string(Tag.NAME);
    const version = h.string(Tag.VERSION);
    const release = h.string(Tag.RELEASE);
    if (name === undefined || version === undefined || release === undefined) {
      throw new RpmFormatError("header lacks NAME, VERSION or RELEASE", {
        file: source.name,
        offset: h.fileOffset,
      });
    }
    const epoch = h.number(Tag.EPOCH);
    const arch = h.string(Tag.ARCH) ?? "noarch";
    this.info = {
      name,
      epoch,
      version,
      release,
      arch,
      nevra: `${name}-${epoch !== undefined ? `${epoch}:` : ""}${version}-${release}.${arch}`,
      summary: h.string(Tag.SUMMARY) ?? "",
    };
    // rpm 4 still writes lead version 3; a v4 header is recognized by its immutable region.
    this.format = h.number(Tag.RPMFORMAT) ?? (h.has(RegionTag.HEADERIMMUTABLE) ? 4 : 3);
    this.headerDigests = headerDigests;
    this.fileDigestAlgo = fileDigestAlgo(h);
    this.files = readFileEntries(h);
    this.scriptlets = readScriptlets(h);
    this.triggers = readTriggers(h);
    this.fileTriggerCount = countFileTriggers(h);
    this.requires = readDeps(h, Tag.REQUIRENAME, Tag.REQUIREFLAGS, Tag.REQUIREVERSION);
    this.provides = readDeps(h, Tag.PROVIDENAME, Tag.PROVIDEFLAGS, Tag.PROVIDEVERSION);

    const digestHex = h.strings(Tag.PAYLOADDIGEST)?.[0];
    const digestAlgoId = h.number(Tag.PAYLOADDIGESTALGO) ?? 8;
    const digestAlgo = DigestAlgo[digestAlgoId];
    if (digestHex !== undefined && !digestAlgo) {
      throw new RpmFormatError(`unknown payload digest algorithm ${digestAlgoId}`, {
        file: source.name,
        offset: h.fileOffsetOf(Tag.PAYLOADDIGESTALGO),
      });
    }
    const archiveSize =
      signature.number(SigTag.LONGARCHIVESIZE) ??
      signature.number(SigTag.PAYLOADSIZE) ??
      h.number(Tag.ARCHIVESIZE);
    this.payload = {
      offset: payloadOffset,
      size: source.size - payloadOffset,
      format: h.string(Tag.PAYLOADFORMAT) ?? "cpio",
      compressor: h.string(Tag.PAYLOADCOMPRESSOR) ?? "gzip",
      flags: h.string(Tag.PAYLOADFLAGS) ?? "",
      digest:
        digestHex !== undefined && digestAlgo
          ? { algo: digestAlgo.node, hex: digestHex.toLowerCase() }
          : undefined,
      archiveSize,
    };
  }

  /** The RPM's name as given when opened (path or buffer name). */
  get name(): string {
    return this.source.name;
  }

  async close(): Promise<void> {
    await this.source.close();
  }
}

function pad8(n: number): number {
  return (n + 7) & ~7;
}

async function readHeaderAt(src: ByteSource, offset: number): Promise<RpmHeader> {
  const intro = await src.read(offset, HEADER_INTRO_SIZE);
  const sizes = parseHeaderIntro(intro, src.name, offset, src.size - offset);
  const bytes = await src.read(offset, sizes.totalSize);
  return new RpmHeader(bytes, src.name, offset);
}

function hexDigest(algo: string, data: Uint8Array): string {
  return createHash(algo).update(data).digest("hex");
}

/** Parses an RPM from a ByteSource (taking ownership of it). */
export async function readRpmFrom(src: ByteSource, options: ReadRpmOptions = {}): Promise<RpmPackage> {
  try {
    const lead = parseLead(await src.read(0, LEAD_SIZE), src.name);
    const signature = await readHeaderAt(src, LEAD_SIZE);
    const headerOffset = LEAD_SIZE + pad8(signature.bytes.length);
    const header = await readHeaderAt(src, headerOffset);
    const payloadOffset = headerOffset + header.bytes.length;

    // Header+payload size recorded in the signature: catches truncated or padded files early.
    const sigSize = signature.number(SigTag.LONGSIZE) ?? signature.number(SigTag.SIZE);
    if (sigSize !== undefined && sigSize !== src.size - headerOffset) {
      throw new RpmFormatError(
        sigSize > src.size - headerOffset
          ? `truncated: signature says header+payload is ${sigSize} bytes, file has ${src.size - headerOffset}`
          : `header+payload size ${src.size - headerOffset} differs from the signature's ${sigSize}`,
        { file: src.name, offset: src.size },
      );
    }

    const verified: string[] = [];
    if (!options.skipHeaderDigest) {
      for (const [tag, algo] of [
        [SigTag.SHA3_256, "sha3-256"],
        [SigTag.SHA256, "sha256"],
        [SigTag.SHA1, "sha1"],
      ] as const) {
        const expected = signature.string(tag)?.toLowerCase();
        if (expected === undefined) continue;
        const actual = hexDigest(algo, header.bytes);
        if (actual !== expected) {
          throw new RpmDigestError(`header ${algo}`, expected, actual, {
            file: src.name,
            offset: headerOffset,
          });
        }
        verified.push(algo);
      }
    }
    return new RpmPackage(src, lead, signature, header, payloadOffset, verified);
  } catch (e) {
    await src.close();
    throw e;
  }
}

/** Opens and parses an RPM file (path) or buffer. Close the package when done. */
export async function readRpm(input: string | Uint8Array, options: ReadRpmOptions & { name?: string } = {}) {
  return readRpmFrom(await openSource(input, options.name), options);
}
