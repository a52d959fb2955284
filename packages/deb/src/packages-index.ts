/**
 * Loading repositories: for each source, the Release file (InRelease, else Release + Release.gpg)
 * verified against the source's trusted keys, then the Packages index of every component for each
 * of the guest's architectures the Release lists (and "all" when it lists it, unless it says
 * "No-Support-for-Architecture-all: Packages"), picked in apt's preference (.xz, .gz, plain), size and SHA256 checked against the
 * Release before it is decompressed and parsed.
 */
import { readFile } from "node:fs/promises";
import { ChecksumError } from "@imgpatch/disk";
import { type Compressor, decompress, type PkgTarget } from "@imgpatch/pkgkit";
import { parseStanza, type Stanza } from "./control.js";
import { DebFormatError } from "./errors.js";
import { DebFetchError, DebUnreachableError, type Fetcher } from "./index-fetch.js";
import { parseRelations, type Relation } from "./relation.js";
import {
  checkReleaseDates,
  DebSignatureError,
  loadSourceKeys,
  parseRelease,
  type ReleaseFile,
  splitCleartext,
  verifyDetachedRelease,
  verifyInRelease,
} from "./release.js";
import type { SourceEntry } from "./sources.js";

export interface RepoPackage {
  name: string;
  version: string;
  architecture: string;
  stanza: Stanza;
  /** URL of the .deb, its size and SHA256 from the index. */
  url: string;
  size: number;
  sha256: string;
  source: SourceEntry;
  release: ReleaseFile;
  provides: Relation[];
}

export interface LoadedRepo {
  source: SourceEntry;
  release: ReleaseFile;
  /** "verified by KEY" or the loud reason it was not. */
  trust: string;
  packages: RepoPackage[];
}

export interface LoadOptions {
  fetcher: Fetcher;
  /** The guest's architectures (native first). */
  architectures: string[];
  /** Accept repositories whose Release signature cannot be verified (apt's --allow-unauthenticated). */
  allowUnauthenticated?: boolean;
  /** Extra trusted key files on the host. */
  hostKeys?: string[];
  /** The guest's apt.conf values (lowercased keys): Acquire::Check-Valid-Until, Check-Date, Max-FutureTime. */
  aptValues?: ReadonlyMap<string, string>;
  /** Accept expired Release files (loud). */
  allowExpired?: boolean;
  /** "Now" for the Release date checks (ms since the epoch; tests). */
  now?: number;
  warn?: (message: string) => void;
}

const INDEX_EXT: [string, Compressor][] = [
  [".xz", "xz"],
  [".gz", "gzip"],
  ["", "none"],
];

/** Largest decompressed Packages index we parse (Debian main amd64 is ~45 MiB). */
const MAX_INDEX = 512 * 1024 * 1024;

function distBase(s: SourceEntry): string {
  return s.suite.endsWith("/") ? `${s.uri}${s.suite === "./" ? "" : s.suite}` : `${s.uri}dists/${s.suite}/`;
}

/** The Release (verified, or loudly not), then refused if apt would refuse its dates. */
async function loadRelease(
  target: PkgTarget,
  s: SourceEntry,
  opts: LoadOptions,
): Promise<{ release: ReleaseFile; trust: string }> {
  const base = distBase(s);
  const inRelease = await opts.fetcher.fetchSmall(`${base}InRelease`);
  const detached = inRelease ? undefined : await opts.fetcher.fetchSmall(`${base}Release`);
  if (!inRelease && !detached)
    throw new DebUnreachableError(`${s.origin}: ${base} has neither InRelease nor Release`, { file: base });
  const r = await verifyRelease(target, s, opts, base, inRelease, detached);
  checkReleaseDates(r.release, s, `${base}${inRelease ? "InRelease" : "Release"}`, {
    aptValues: opts.aptValues,
    allowExpired: opts.allowExpired,
    now: opts.now,
    warn: opts.warn,
  });
  return r;
}

async function verifyRelease(
  target: PkgTarget,
  s: SourceEntry,
  opts: LoadOptions,
  base: string,
  inRelease: Uint8Array | undefined,
  detached: Uint8Array | undefined,
): Promise<{ release: ReleaseFile; trust: string }> {
  if (s.trusted) {
    opts.warn?.(`WARNING: ${s.origin}: ${base} is marked trusted=yes: its Release signature is NOT checked`);
    const text = Buffer.from((inRelease ?? detached) as Uint8Array).toString("utf8");
    const body = text.startsWith("-----BEGIN PGP SIGNED MESSAGE-----")
      ? splitCleartext(text, base).text
      : text;
    return { release: parseRelease(body, `${base}Release`), trust: "NOT VERIFIED (trusted=yes)" };
  }
  try {
    const keys = await loadSourceKeys(target, s, opts.hostKeys);
    if (inRelease) {
      const r = verifyInRelease(Buffer.from(inRelease).toString("utf8"), keys, `${base}InRelease`);
      return { release: r, trust: `verified (key ${r.signer?.fingerprint})` };
    }
    const sig = await opts.fetcher.fetchSmall(`${base}Release.gpg`);
    if (!sig)
      throw new DebSignatureError(`${base}Release is not signed (no Release.gpg)`, {
        file: `${base}Release`,
      });
    const r = verifyDetachedRelease(
      detached as Uint8Array,
      Buffer.from(sig).toString("utf8"),
      keys,
      `${base}Release`,
    );
    return { release: r, trust: `verified (key ${r.signer?.fingerprint})` };
  } catch (e) {
    if (!(e instanceof DebSignatureError) || !opts.allowUnauthenticated) throw e;
    opts.warn?.(`WARNING: ${s.origin}: ${e.message} — continuing UNAUTHENTICATED as asked`);
    const text = Buffer.from((inRelease ?? detached) as Uint8Array).toString("utf8");
    const body = inRelease ? splitCleartext(text, base).text : text;
    return { release: parseRelease(body, `${base}Release`), trust: `NOT VERIFIED: ${e.message}` };
  }
}

async function readIndex(path: string, kind: Compressor, name: string): Promise<string> {
  const parts: Uint8Array[] = [];
  let total = 0;
  async function* src() {
    yield new Uint8Array(await readFile(path));
  }
  for await (const c of decompress(kind, src(), { file: name }, DebFormatError)) {
    total += c.length;
    if (total > MAX_INDEX) throw new DebFormatError(`index larger than ${MAX_INDEX} bytes`, { file: name });
    parts.push(c);
  }
  return Buffer.concat(parts).toString("utf8");
}

const QUICK = new Set(["package", "version", "architecture", "filename", "size", "sha256"]);

/**
 * One index entry: the few fields every entry needs are read by a quick line scan; the full stanza
 * (and its Provides) is parsed only when the resolver looks at the package — most of an archive's
 * 60,000 entries never are (this keeps the resolution's time and memory down).
 */
class IndexEntry implements RepoPackage {
  private parsed?: Stanza;
  private prov?: Relation[];
  constructor(
    readonly name: string,
    readonly version: string,
    readonly architecture: string,
    readonly url: string,
    readonly size: number,
    readonly sha256: string,
    readonly source: SourceEntry,
    readonly release: ReleaseFile,
    private readonly text: string,
    private readonly file: string,
    private readonly line: number,
    readonly hasProvides: boolean,
  ) {}
  get stanza(): Stanza {
    if (!this.parsed) {
      this.parsed = parseStanza(this.text, { file: `${this.file} (stanza at line ${this.line})` });
    }
    return this.parsed;
  }
  get provides(): Relation[] {
    if (!this.prov) {
      this.prov = this.hasProvides
        ? parseRelations(this.stanza.get("Provides"), { file: this.file, field: "Provides" }).map((g) => g[0])
        : [];
    }
    return this.prov;
  }
}

function* scanIndex(
  text: string,
  url: string,
  arch: string,
  source: SourceEntry,
  release: ReleaseFile,
): Iterable<RepoPackage> {
  let pos = 0;
  let line = 1;
  while (pos < text.length) {
    let end = text.indexOf("\n\n", pos);
    if (end < 0) end = text.length;
    const chunk = text.slice(pos, end);
    const startLine = line;
    line += (chunk.match(/\n/g)?.length ?? 0) + 2;
    pos = end + 2;
    if (chunk.trim() === "") continue;
    const f: Record<string, string> = {};
    let provides = false;
    for (const l of chunk.split("\n")) {
      const c = l.indexOf(":");
      if (c <= 0 || l[0] === " " || l[0] === "\t") continue;
      const k = l.slice(0, c).toLowerCase();
      if (QUICK.has(k)) f[k] = l.slice(c + 1).trim();
      else if (k === "provides") provides = true;
    }
    if (!f.package || !f.version || !f.architecture || !f.filename || !f.size || !f.sha256) {
      throw new DebFormatError(
        `stanza at line ${startLine} lacks Package/Version/Architecture/Filename/Size/SHA256`,
        { file: url },
      );
    }
    if (f.architecture !== arch && f.architecture !== "all") continue;
    if (f.filename.includes(".."))
      throw new DebFormatError(`Filename "${f.filename}" contains ".."`, { file: url });
    if (!/^\d+$/.test(f.size) || !/^[0-9a-f]{64}$/.test(f.sha256)) {
      throw new DebFormatError(`stanza at line ${startLine}: bad Size or SHA256`, { file: url });
    }
    yield new IndexEntry(
      f.package,
      f.version,
      f.architecture,
      `${source.uri}${f.filename}`,
      Number(f.size),
      f.sha256,
      source,
      release,
      chunk,
      url,
      startLine,
      provides,
    );
  }
}

/** Loads every source; packages keep their index order. */
export async function loadRepositories(
  target: PkgTarget,
  sources: SourceEntry[],
  opts: LoadOptions,
): Promise<LoadedRepo[]> {
  const out: LoadedRepo[] = [];
  for (const s of sources) {
    const { release, trust } = await loadRelease(target, s, opts);
    const base = distBase(s);

    const noAll = (release.stanza.get("No-Support-for-Architecture-all") ?? "").trim() === "Packages";
    const arches = s.architectures ?? opts.architectures;
    const packages: RepoPackage[] = [];
    const comps = s.components.length === 0 ? [""] : s.components;
    for (const comp of comps) {
      // As apt: binary-all only when the Release lists "all" among its Architectures (and does not say
      // arch-all packages are in the per-architecture indexes); architectures it does not list, never.
      const listed = (a: string) => release.architectures.length === 0 || release.architectures.includes(a);
      const wanted = [
        ...arches.filter(listed),
        ...(!noAll && listed("all") && release.architectures.length > 0 ? ["all"] : []),
      ];
      for (const arch of wanted) {
        const stem = comp === "" ? "Packages" : `${comp}/binary-${arch}/Packages`;
        // apt's order: each compression by hash (when the Release offers it), then by name, the next
        // one when a mirror serves something else (a newer index under the plain name, a missing
        // by-hash file); every candidate is verified against the Release before it is used.
        const picks = INDEX_EXT.map(([ext, kind]) => ({ path: `${stem}${ext}`, kind })).filter((x) =>
          release.sha256.has(x.path),
        );
        if (picks.length === 0) continue;
        let got: { file: string; url: string; kind: Compressor } | undefined;
        const failures: string[] = [];
        for (const pick of picks) {
          const entry = release.sha256.get(pick.path) as { size: number; hash: string };
          const dir = pick.path.includes("/") ? pick.path.slice(0, pick.path.lastIndexOf("/") + 1) : "";
          const urls = [
            ...(release.acquireByHash ? [`${base}${dir}by-hash/SHA256/${entry.hash}`] : []),
            `${base}${pick.path}`,
          ];
          for (const url of urls) {
            try {
              got = {
                file: await opts.fetcher.fetchVerified(url, entry.size, entry.hash),
                url,
                kind: pick.kind,
              };
              break;
            } catch (e) {
              if (!(e instanceof DebFetchError || e instanceof ChecksumError)) throw e;
              failures.push(e.message);
            }
          }
          if (got) break;
        }
        if (!got)
          throw new DebFetchError(`${base}${stem}: no copy matches the Release: ${failures.join("; ")}`, {
            file: `${base}${stem}`,
          });
        const { file, url } = got;
        const text = await readIndex(file, got.kind, url);
        for (const entry of scanIndex(text, url, arch, s, release)) packages.push(entry);
        if (comp === "") break;
      }
    }
    out.push({ source: s, release, trust, packages });
  }
  return out;
}
