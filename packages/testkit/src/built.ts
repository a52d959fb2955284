// Images (or any files) built by scripts and real tools, made once per content key and shared by
// every test file and run: the slow fixtures of the suite (make-xfs-base-image.sh, mkfs + protofile
// trees) are rebuilt only when what they are made from changes.
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FIXTURES_WORK } from "./fixtures.js";
import { findTool, runToolOk } from "./tools.js";

/** Where built files live: beside the decompressed fixtures, under their own name. */
export const BUILT_DIR = join(FIXTURES_WORK, "built");

/** What a build is made from; any change gives a new key (and a new build). */
export interface BuildInputs {
  /** Short readable name, the start of the cached file's name. */
  name: string;
  /** Files whose contents the build reads (scripts and what they source). */
  files?: readonly string[];
  /** Arguments, environment and anything else that changes the result, as strings. */
  params?: readonly string[];
  /** Tools the build runs: a different installed binary (path, size, mtime) is a new key. */
  tools?: readonly string[];
}

/** The content key of a build: sha256 over its inputs, 16 hex digits. */
export function buildKey(inputs: BuildInputs): string {
  const h = createHash("sha256");
  h.update(`name\0${inputs.name}\0`);
  for (const f of inputs.files ?? []) h.update(`file\0${f}\0`).update(readFileSync(f)).update("\0");
  for (const p of inputs.params ?? []) h.update(`param\0${p}\0`);
  for (const t of inputs.tools ?? []) {
    const path = findTool(t);
    const st = path ? statSync(path) : undefined;
    h.update(`tool\0${t}\0${path ?? "-"}\0${st?.size ?? 0}\0${st?.mtimeMs ?? 0}\0`);
  }
  return h.digest("hex").slice(0, 16);
}

const LOCK_POLL_MS = 100;
/** A lock directory without an owner's pid this long after it was made is an orphan. */
const ORPHAN_LOCK_MS = 30_000;
/** Entries unused this long are removed when a new one is made (the key changed since). */
const STALE_MS = 7 * 24 * 3600 * 1000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Take the build lock of `final` (a directory made with mkdir, which is atomic): test files run in
 * parallel processes, and the second one asking for a build waits for the first instead of
 * repeating it. A lock whose owner died is taken over.
 */
async function withLock<T>(final: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${final}.lock`;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const owner = Number(await readFile(join(lock, "pid"), "utf8").catch(() => "0"));
      // No pid yet: the owner is between mkdir and writing it, or died there (an old lock).
      const age = Date.now() - ((await stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now());
      if (owner > 0 ? !alive(owner) : age > ORPHAN_LOCK_MS) await rm(lock, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
    }
  }
  try {
    await writeFile(join(lock, "pid"), String(process.pid));
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

async function pruneStale(keep: string): Promise<void> {
  const now = Date.now();
  for (const n of await readdir(BUILT_DIR).catch(() => [] as string[])) {
    if (n === keep || n.endsWith(".lock") || n.includes(".tmp-")) continue;
    const p = join(BUILT_DIR, n);
    const st = await stat(p).catch(() => undefined);
    if (st && now - st.mtimeMs > STALE_MS) await rm(p, { recursive: true, force: true }).catch(() => {});
  }
}

const inProcess = new Map<string, Promise<string>>();

/**
 * Path of the file `build(out)` makes, built once per key and cached under BUILT_DIR (shared:
 * treat it as read-only, take a `builtCopy` to modify it). `build` writes `out` (a private path);
 * it is renamed into place only when it completes.
 */
export function built(inputs: BuildInputs, build: (out: string) => Promise<void>): Promise<string> {
  const name = `${inputs.name}-${buildKey(inputs)}`;
  let p = inProcess.get(name);
  if (!p) {
    p = buildOnce(name, build);
    inProcess.set(name, p);
    p.catch(() => inProcess.delete(name));
  }
  return p;
}

async function buildOnce(name: string, build: (out: string) => Promise<void>): Promise<string> {
  const final = join(BUILT_DIR, name);
  await mkdir(BUILT_DIR, { recursive: true });
  const hit = async () => {
    if (!(await stat(final).catch(() => undefined))) return false;
    const now = new Date();
    await utimes(final, now, now).catch(() => {}); // mark it used, for pruneStale
    return true;
  };
  if (await hit()) return final;
  return withLock(final, async () => {
    if (await hit()) return final;
    const tmp = join(BUILT_DIR, `${name}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
    try {
      await build(tmp);
      await rename(tmp, final);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    await pruneStale(name);
    return final;
  });
}

/** A private, writable copy of a `built` file at `dst` (the caller's own temp dir). */
export async function builtCopy(
  inputs: BuildInputs,
  build: (out: string) => Promise<void>,
  dst: string,
): Promise<string> {
  await copyFile(await built(inputs, build), dst);
  return dst;
}

/**
 * Copy `src` to `dst` leaving all-zero blocks as holes (`cp --sparse=always`): a full copy of a
 * mostly empty raw image writes every zero byte (Node's copyFile does), which under a loaded disk
 * costs seconds per copy.
 */
export async function copySparse(src: string, dst: string): Promise<string> {
  await runToolOk("cp", ["--sparse=always", src, dst]);
  return dst;
}
