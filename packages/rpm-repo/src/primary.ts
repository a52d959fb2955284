/**
 * primary.xml(.gz/.xz/.zst/.bz2): every package's NEVRA, location, checksum and dependencies,
 * streamed (primary-scan.ts over the decompressor) so memory holds only the parsed packages.
 *
 *   <metadata packages="N">
 *     <package type="rpm">
 *       <name/> <arch/> <version epoch ver rel/> <checksum type pkgid>hex</checksum>
 *       <size package installed archive/> <location href [xml:base]/>
 *       <format>
 *         <rpm:provides|requires|conflicts|obsoletes|recommends|suggests|supplements|enhances>
 *           <rpm:entry name flags(EQ LT LE GT GE) epoch ver rel pre/> …
 *         <file [type="dir|ghost"]>/path</file> …   (only /etc/*, *bin/*, /usr/lib/sendmail)
 *       </format>
 *     </package> …
 *   </metadata>
 *
 * The `packages` count is not trusted (nothing is allocated from it).
 */
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { RepoFormatError } from "./errors.js";
import type { PackageMeta } from "./package-meta.js";
import { scanPrimary } from "./primary-scan.js";
import { type Checksum, type RepoSource, verified } from "./repo-source.js";
import { DEFAULT_XML_LIMITS } from "./xml.js";

export interface MetadataLimits {
  /** Most packages accepted from one primary. */
  maxPackages: number;
  /** Most dependency entries or files in one package. */
  maxEntries: number;
  /** Most compressed bytes read. */
  maxBytes: number;
}

export const DEFAULT_METADATA_LIMITS: MetadataLimits = {
  maxPackages: 2_000_000,
  maxEntries: 200_000,
  maxBytes: 2 * 2 ** 30,
};

/** Decompress by file name, falling back to sniffing the first bytes. */
export async function* decompressed(
  input: AsyncIterable<Uint8Array>,
  href: string,
  where: string,
): AsyncIterable<Uint8Array> {
  let kind: "gzip" | "xz" | "zstd" | "bzip2" | "none" | undefined;
  if (href.endsWith(".gz")) kind = "gzip";
  else if (href.endsWith(".xz")) kind = "xz";
  else if (href.endsWith(".zst")) kind = "zstd";
  else if (href.endsWith(".bz2")) kind = "bzip2";
  else if (href.endsWith(".xml") || href.endsWith(".sqlite")) kind = "none";
  const it = input[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done) return;
  kind ??= sniff(first.value);
  const rest = (async function* () {
    yield first.value;
    for (;;) {
      const n = await it.next();
      if (n.done) return;
      yield n.value;
    }
  })();
  if (kind === "gzip") {
    // node's zlib (native) is several times faster than a JS inflater on large metadata.
    yield* gunzipNative(rest, where);
    return;
  }
  if (kind === "none") {
    yield* rest;
    return;
  }
  const { decompress } = await import("@imgpatch/rpm-inject");
  yield* decompress(kind, rest, { file: where });
}

async function* gunzipNative(input: AsyncIterable<Uint8Array>, where: string): AsyncIterable<Uint8Array> {
  const gunzip = createGunzip({ chunkSize: 1 << 20 });
  const src = Readable.from(input);
  src.on("error", (e) => gunzip.destroy(e));
  src.pipe(gunzip);
  try {
    for await (const chunk of gunzip) yield chunk as Uint8Array;
  } catch (e) {
    if (
      e instanceof Error &&
      "code" in e &&
      typeof e.code === "string" &&
      e.code.startsWith("E") &&
      !e.code.startsWith("ERR_") &&
      !e.code.startsWith("Z_")
    )
      throw e;
    throw new RepoFormatError(`gzip data is corrupt: ${(e as Error).message}`, { file: where }, { cause: e });
  }
}

function sniff(h: Uint8Array): "gzip" | "xz" | "zstd" | "bzip2" | "none" {
  if (h[0] === 0x1f && h[1] === 0x8b) return "gzip";
  if (h[0] === 0xfd && h[1] === 0x37 && h[2] === 0x7a && h[3] === 0x58) return "xz";
  if (h[0] === 0x28 && h[1] === 0xb5 && h[2] === 0x2f && h[3] === 0xfd) return "zstd";
  if (h[0] === 0x42 && h[1] === 0x5a && h[2] === 0x68) return "bzip2";
  return "none";
}

/**
 * A metadata file of a repository as a decompressed stream: its bytes are checked against the
 * checksum repomd.xml gives (and bounded by `maxBytes`) while they are read. `where` names it in errors.
 */
export function openMetadata(
  src: RepoSource,
  href: string,
  checksum: Checksum | null,
  limits: MetadataLimits,
): { where: string; data: AsyncIterable<Uint8Array> } {
  const where = src.locate(href);
  return {
    where,
    data: decompressed(verified(src.open(href), checksum, limits.maxBytes, where), href, where),
  };
}

/** Parse a primary.xml stream (already decompressed). `onPackage` sees each package as it ends. */
export function parsePrimaryXml(
  xml: AsyncIterable<Uint8Array>,
  repo: string,
  where: string,
  onPackage: (p: PackageMeta) => void,
  limits: MetadataLimits = DEFAULT_METADATA_LIMITS,
): Promise<number> {
  return scanPrimary(xml, repo, where, onPackage, {
    maxPackages: limits.maxPackages,
    maxEntries: limits.maxEntries,
    maxText: DEFAULT_XML_LIMITS.maxText,
    // One package with maxEntries entries of ~300 bytes each fits.
    maxElement: 64 * 2 ** 20,
    maxDepth: 16,
    maxBytes: DEFAULT_XML_LIMITS.maxBytes,
  });
}

/** Read a repository's primary metadata (checksum verified against repomd.xml). */
export async function readPrimary(
  src: RepoSource,
  href: string,
  checksum: Checksum | null,
  repo: string,
  onPackage: (p: PackageMeta) => void,
  limits: MetadataLimits = DEFAULT_METADATA_LIMITS,
): Promise<number> {
  const { where, data } = openMetadata(src, href, checksum, limits);
  return parsePrimaryXml(data, repo, where, onPackage, limits);
}
