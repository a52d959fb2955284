/**
 * primary.xml(.gz/.xz/.zst/.bz2): every package's NEVRA, location, checksum and dependencies,
 * streamed (the tokenizer of xml.ts over the decompressor) so memory holds only the parsed packages.
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
import { type Dep, depFromParts, xmlFlags } from "./dep.js";
import { RepoFormatError, RepoLimitError } from "./errors.js";
import type { PackageMeta } from "./package-meta.js";
import { type Checksum, type RepoSource, verified } from "./repo-source.js";
import type { Evr } from "./rpmvercmp.js";
import { DEFAULT_XML_LIMITS, parseXml } from "./xml.js";

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

type DepField =
  | "provides"
  | "requires"
  | "conflicts"
  | "obsoletes"
  | "recommends"
  | "suggests"
  | "supplements"
  | "enhances";
const DEP_FIELDS = new Set<string>([
  "provides",
  "requires",
  "conflicts",
  "obsoletes",
  "recommends",
  "suggests",
  "supplements",
  "enhances",
]);

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

export function entryEvr(a: Record<string, string>): Evr | null {
  if (a.ver === undefined) return null;
  return { epoch: a.epoch ?? "", version: a.ver, release: a.rel ?? "" };
}

/** Shared by every package without such entries; replaced (never pushed to) when entries come. */
const NO_DEPS: Dep[] = Object.freeze([]) as unknown as Dep[];
const NO_FILES: string[] = Object.freeze([]) as unknown as string[];

function primaryPackage(repo: string): PackageMeta {
  return {
    name: "",
    arch: "",
    evr: { epoch: "", version: "", release: "" },
    provides: NO_DEPS,
    requires: NO_DEPS,
    conflicts: NO_DEPS,
    obsoletes: NO_DEPS,
    recommends: NO_DEPS,
    suggests: NO_DEPS,
    supplements: NO_DEPS,
    enhances: NO_DEPS,
    files: NO_FILES,
    repo,
    location: "",
    checksum: null,
    size: 0,
  };
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
export async function parsePrimaryXml(
  xml: AsyncIterable<Uint8Array>,
  repo: string,
  where: string,
  onPackage: (p: PackageMeta) => void,
  limits: MetadataLimits = DEFAULT_METADATA_LIMITS,
): Promise<number> {
  let count = 0;
  let p: PackageMeta | null = null;
  let entries = 0;
  let depList: Dep[] | null = null;
  let field: "name" | "arch" | "checksum" | "file" | null = null;
  let text = "";
  let checksumType = "";
  let sawRoot = false;
  const fail = (msg: string, limit = false): never => {
    const m = `package ${count + 1}${p?.name ? ` (${p.name})` : ""}: ${msg}`;
    throw limit ? new RepoLimitError(m, { file: where }) : new RepoFormatError(m, { file: where });
  };
  await parseXml(
    xml,
    {
      open(name, a) {
        if (!sawRoot) {
          if (name !== "metadata")
            throw new RepoFormatError(`root element <${name}>, not <metadata>`, { file: where });
          sawRoot = true;
          return;
        }
        if (name === "package") {
          if (p !== null) fail("<package> inside <package>");
          if (count >= limits.maxPackages) {
            throw new RepoLimitError(`more than ${limits.maxPackages} packages`, { file: where });
          }
          p = primaryPackage(repo);
          entries = 0;
          return;
        }
        if (p === null) return;
        switch (name) {
          case "name":
          case "arch":
          case "file":
            field = name;
            text = "";
            return;
          case "checksum":
            field = "checksum";
            checksumType = a.type ?? "";
            text = "";
            return;
          case "version":
            if (a.ver === undefined) fail("<version> without ver");
            p.evr = { epoch: a.epoch ?? "", version: a.ver!, release: a.rel ?? "" };
            return;
          case "location":
            p.location = a.href ?? "";
            return;
          case "size":
            p.size = a.package !== undefined && /^\d{1,15}$/.test(a.package) ? Number(a.package) : 0;
            return;
          case "rpm:entry": {
            if (depList === null) return;
            if (++entries > limits.maxEntries)
              fail(`more than ${limits.maxEntries} dependency entries`, true);
            const dn = a.name;
            if (dn === undefined || dn === "") fail("dependency entry without a name");
            // primary does not mark rich deps; rpmlib() requirements are rpm's own, not the solver's.
            if (dn!.startsWith("rpmlib(")) return;
            depList.push(depFromParts(a.name!, xmlFlags(a.flags, where), entryEvr(a), where));
            return;
          }
          default:
            if (name.startsWith("rpm:")) {
              const f = name.slice(4);
              if (DEP_FIELDS.has(f)) {
                // A repeated list (<rpm:requires> twice) adds to the first.
                if (p[f as DepField] === NO_DEPS) p[f as DepField] = [];
                depList = p[f as DepField];
              }
            }
        }
      },
      text(t) {
        if (field !== null) text += t;
      },
      close(name) {
        if (name === "package") {
          if (p === null) return;
          if (p.name === "" || p.arch === "" || p.evr.version === "") fail("missing name, arch or version");
          if (p.location === "" && repo !== "@System") fail("missing location");
          count++;
          onPackage(p);
          p = null;
          return;
        }
        if (p === null) return;
        if (field !== null && name === field) {
          const v = text.trim();
          if (field === "name") p.name = v;
          else if (field === "arch") p.arch = v;
          else if (field === "checksum") p.checksum = { type: checksumType, value: v.toLowerCase() };
          else if (field === "file") {
            if (++entries > limits.maxEntries) fail(`more than ${limits.maxEntries} files`, true);
            if (p.files === NO_FILES) p.files = [];
            p.files.push(v);
          }
          field = null;
          return;
        }
        if (name.startsWith("rpm:") && DEP_FIELDS.has(name.slice(4))) depList = null;
      },
    },
    where,
    { ...DEFAULT_XML_LIMITS, maxDepth: 16 },
  );
  return count;
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
