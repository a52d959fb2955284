/**
 * Where a repository's bytes come from: a local directory (plain path or `file://`) or an
 * `http(s)://` base URL. Paths inside the repository come from its own metadata, so they are
 * checked to stay under the base (no `..`, no absolute path, no other scheme).
 */
import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  RepoChecksumError,
  RepoFormatError,
  RepoLimitError,
  RepoUnreachableError,
  RepoUnsupportedError,
} from "./errors.js";

export interface RepoSource {
  /** The base URL or directory as given (used in messages). */
  readonly base: string;
  /** Stream one file of the repository by its path relative to the base. */
  open(rel: string): AsyncIterable<Uint8Array>;
  /** A URL or path for the file, for messages and for handing packages to rpm-inject. */
  locate(rel: string): string;
}

function checkRel(rel: string, base: string): void {
  if (
    rel === "" ||
    rel.startsWith("/") ||
    /^[a-z][a-z0-9+.-]*:/i.test(rel) ||
    rel.split("/").some((s) => s === "..") ||
    rel.includes("\0") ||
    rel.includes("\\")
  ) {
    throw new RepoFormatError(`repository path "${rel.slice(0, 200)}" leaves the repository`, { file: base });
  }
}

/** Open a repository base: a directory, a `file://` URL or an `http(s)://` URL. */
export function repoSource(base: string): RepoSource {
  if (/^https?:\/\//i.test(base)) return httpSource(base);
  const dir = base.startsWith("file://") ? fileURLToPath(base) : base;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(dir)) throw new RepoUnsupportedError(`repository scheme of ${base}`);
  return {
    base,
    locate: (rel) => {
      checkRel(rel, base);
      return join(dir, rel);
    },
    open(rel) {
      checkRel(rel, base);
      return readLocal(join(dir, rel));
    },
  };
}

async function* readLocal(file: string): AsyncIterable<Uint8Array> {
  try {
    yield* createReadStream(file, { highWaterMark: 4 * 1024 * 1024 });
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === "ENOENT" || code === "EACCES" || code === "ENOTDIR" || code === "EISDIR")
      throw new RepoUnreachableError(`cannot read: ${(e as Error).message}`, { file }, { cause: e });
    throw e;
  }
}

function httpSource(base: string): RepoSource {
  const root = base.endsWith("/") ? base : `${base}/`;
  const locate = (rel: string) => {
    checkRel(rel, base);
    return new URL(rel, root).href;
  };
  return {
    base,
    locate,
    async *open(rel) {
      const url = locate(rel);
      let res: Response;
      try {
        res = await fetch(url);
      } catch (e) {
        // undici reports DNS failures, refused connections and TLS errors as "fetch failed".
        const why = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
        throw new RepoUnreachableError(`cannot fetch: ${why}`, { file: url }, { cause: e });
      }
      if (!res.ok || res.body === null) {
        throw new RepoFormatError(`HTTP ${res.status} ${res.statusText}`, { file: url });
      }
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) yield chunk;
    },
  };
}

const HASHES: Record<string, string> = {
  sha: "sha1",
  sha1: "sha1",
  sha224: "sha224",
  sha256: "sha256",
  sha384: "sha384",
  sha512: "sha512",
  md5: "md5",
};

export interface Checksum {
  type: string;
  value: string;
}

/** A node:crypto hash for a repomd checksum type, or a typed refusal of an unknown one. */
export function hashFor(type: string, where: string): Hash {
  const algo = HASHES[type.toLowerCase()];
  if (algo === undefined) throw new RepoUnsupportedError(`checksum type "${type}"`, { file: where });
  return createHash(algo);
}

/**
 * Pass `input` through, hashing it and bounding its size; when it ends, compare with `expected`
 * (if given) and throw RepoChecksumError on a mismatch. Callers act on parsed data only after the
 * stream ended, so a mismatch discards everything read from it.
 */
export async function* verified(
  input: AsyncIterable<Uint8Array>,
  expected: Checksum | null,
  maxBytes: number,
  where: string,
): AsyncIterable<Uint8Array> {
  const hash = expected === null ? null : hashFor(expected.type, where);
  let total = 0;
  for await (const chunk of input) {
    total += chunk.length;
    if (total > maxBytes) throw new RepoLimitError(`more than ${maxBytes} bytes`, { file: where });
    hash?.update(chunk);
    yield chunk;
  }
  if (hash !== null && expected !== null) {
    const actual = hash.digest("hex");
    if (actual !== expected.value.toLowerCase()) {
      throw new RepoChecksumError(where, expected.value, actual, { file: where });
    }
  }
}

/** Read a whole (small) stream into one buffer, bounded. */
export async function readAll(
  input: AsyncIterable<Uint8Array>,
  maxBytes: number,
  where: string,
): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const c of input) {
    total += c.length;
    if (total > maxBytes) throw new RepoLimitError(`more than ${maxBytes} bytes`, { file: where });
    parts.push(c);
  }
  return Buffer.concat(parts);
}
