/**
 * Fetching from repositories: http(s) and file:// URIs, every download checked against the size and
 * SHA256 that vouch for it (the Release file for indexes, the Packages stanza for .debs), kept in a
 * content-addressed cache so a second run downloads nothing:
 *
 *   $IMGPATCH_CACHE_DIR, else $XDG_CACHE_HOME/imgpatch, else ~/.cache/imgpatch
 *     deb/sha256/<hash>         verified files (indexes as fetched, .debs)
 *     deb/release/<uri-key>     the last InRelease per suite (re-fetched each run, verified each time)
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ChecksumError, type ErrorLocation, ImgpatchError } from "@imgpatch/disk";

/** A download failed (network, HTTP status, missing file). */
export class DebFetchError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}, options?: { cause?: unknown }) {
    super("EFETCH", message, where, options);
  }
}

/**
 * The repository could not be reached at all (network error, HTTP error status, no Release):
 * callers may leave the work to the guest's first boot. Damaged or oversized content is never this.
 */
export class DebUnreachableError extends DebFetchError {}

export function cacheDir(): string {
  const base =
    process.env.IMGPATCH_CACHE_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "imgpatch");
  return join(base, "deb");
}

export type FetchProgress = (event: {
  url: string;
  received: number;
  total?: number;
  done: boolean;
  cached: boolean;
}) => void;

export interface Fetcher {
  /** Bytes of a small file (InRelease, Release.gpg) with no known hash; undefined on 404. */
  fetchSmall(url: string, max?: number): Promise<Uint8Array | undefined>;
  /** A file with known size and SHA256: the path of the verified cached copy. */
  fetchVerified(url: string, size: number, sha256: string): Promise<string>;
}

const MAX_SMALL = 32 * 1024 * 1024;

async function* body(url: string): AsyncIterable<Uint8Array> {
  if (url.startsWith("file:")) {
    for await (const c of createReadStream(fileURLToPath(url))) yield c as Uint8Array;
    return;
  }
  let res: Response;
  try {
    res = await fetch(url, { redirect: "follow" });
  } catch (cause) {
    throw new DebUnreachableError(
      `cannot fetch ${url}: ${(cause as Error).message}`,
      { file: url },
      { cause },
    );
  }
  if (!res.ok || !res.body)
    throw new DebUnreachableError(`cannot fetch ${url}: HTTP ${res.status}`, { file: url });
  for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) yield c;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export function createFetcher(opts: { cache?: string; progress?: FetchProgress } = {}): Fetcher {
  const cache = opts.cache ?? cacheDir();
  return {
    async fetchSmall(url, max = MAX_SMALL) {
      if (url.startsWith("file:")) {
        const p = fileURLToPath(url);
        if (!(await exists(p))) return undefined;
        const st = await stat(p);
        if (st.size > max) throw new DebFetchError(`${url}: ${st.size} bytes is too large`, { file: url });
        return new Uint8Array(await readFile(p));
      }
      let res: Response;
      try {
        res = await fetch(url, { redirect: "follow" });
      } catch (cause) {
        throw new DebUnreachableError(
          `cannot fetch ${url}: ${(cause as Error).message}`,
          { file: url },
          { cause },
        );
      }
      if (res.status === 404) return undefined;
      if (!res.ok) throw new DebUnreachableError(`cannot fetch ${url}: HTTP ${res.status}`, { file: url });
      const buf = new Uint8Array(await res.arrayBuffer());
      if (buf.length > max)
        throw new DebFetchError(`${url}: ${buf.length} bytes is too large`, { file: url });
      return buf;
    },

    async fetchVerified(url, size, sha256) {
      const dir = join(cache, "sha256");
      const final = join(dir, sha256);
      if (await exists(final)) {
        opts.progress?.({ url, received: size, total: size, done: true, cached: true });
        return final;
      }
      await mkdir(dir, { recursive: true });
      const tmp = `${final}.${process.pid}.part`;
      const h = createHash("sha256");
      let received = 0;
      const out = createWriteStream(tmp);
      try {
        for await (const c of body(url)) {
          received += c.length;
          if (received > size)
            throw new ChecksumError(`longer than the ${size} bytes its index states`, { file: url });
          h.update(c);
          if (!out.write(c)) await new Promise<void>((r) => out.once("drain", () => r()));
          opts.progress?.({ url, received, total: size, done: false, cached: false });
        }
        await new Promise<void>((resolve, reject) =>
          out.end((e?: Error | null) => (e ? reject(e) : resolve())),
        );
        const got = h.digest("hex");
        if (received !== size || got !== sha256) {
          throw new ChecksumError(
            `SHA256 ${got} (${received} bytes) does not match ${sha256} (${size} bytes)`,
            { file: url },
          );
        }
        await rename(tmp, final);
        opts.progress?.({ url, received, total: size, done: true, cached: false });
        return final;
      } catch (e) {
        out.destroy();
        await rm(tmp, { force: true });
        throw e;
      }
    },
  };
}
