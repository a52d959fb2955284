/**
 * Guest path arithmetic. Guest paths are absolute POSIX paths; symlinks are resolved against the
 * guest root, never the host's, and ".." stops at "/".
 */
import { GuestFsError } from "./guest-fs.js";

/** Maximum number of symlinks followed while resolving one path (Linux uses 40). */
export const MAX_SYMLINK_HOPS = 40;

/** Splits an absolute guest path into components, dropping "" and "."; ".." is kept for the resolver. */
export function splitGuestPath(path: string): string[] {
  if (typeof path !== "string" || !path.startsWith("/")) {
    throw new GuestFsError("EINVAL", String(path), "guest paths must be absolute");
  }
  if (path.includes("\0")) throw new GuestFsError("EINVAL", path, "guest path contains a NUL byte");
  return path.split("/").filter((c) => c !== "" && c !== ".");
}

/** Lexical normalisation: collapses "//", "." and ".." (".." at the root stays at the root). */
export function normalizeGuestPath(path: string): string {
  const out: string[] = [];
  for (const c of splitGuestPath(path)) {
    if (c === "..") out.pop();
    else out.push(c);
  }
  return `/${out.join("/")}`;
}

export function guestDirname(path: string): string {
  const p = normalizeGuestPath(path);
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

export function guestBasename(path: string): string {
  const p = normalizeGuestPath(path);
  return p.slice(p.lastIndexOf("/") + 1);
}

export function guestJoin(...parts: string[]): string {
  return normalizeGuestPath(`/${parts.join("/")}`);
}

/** What the resolver needs to know about a canonical (symlink-free) guest path. */
export interface ResolverOps {
  /** "symlink", "directory", "other", or null when absent. */
  kind(canonical: string): Promise<"symlink" | "directory" | "other" | null>;
  readlink(canonical: string): Promise<string>;
}

/**
 * Resolves `path` to a canonical guest path whose parents contain no symlinks. The final component is
 * followed only when `followLast`; it may be absent (the caller then creates it or reports ENOENT).
 * Missing or non-directory parents raise ENOENT / ENOTDIR.
 */
export async function resolveGuestPath(path: string, followLast: boolean, ops: ResolverOps): Promise<string> {
  const pending = splitGuestPath(path);
  const done: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const c = pending.shift()!;
    if (c === "..") {
      done.pop();
      continue;
    }
    const candidate = `/${[...done, c].join("/")}`;
    const isLast = pending.length === 0;
    const kind = await ops.kind(candidate);
    if (kind === null) {
      if (!isLast) throw new GuestFsError("ENOENT", path, `no such directory ${candidate}`);
      done.push(c);
      break;
    }
    if (kind === "symlink" && (!isLast || followLast)) {
      if (++hops > MAX_SYMLINK_HOPS)
        throw new GuestFsError("ELOOP", path, "too many levels of symbolic links");
      const target = await ops.readlink(candidate);
      if (target === "") throw new GuestFsError("ENOENT", path, `empty symlink ${candidate}`);
      if (target.startsWith("/")) done.length = 0;
      pending.unshift(...target.split("/").filter((t) => t !== "" && t !== "."));
      continue;
    }
    if (!isLast && kind !== "directory")
      throw new GuestFsError("ENOTDIR", path, `${candidate} is not a directory`);
    done.push(c);
  }
  return `/${done.join("/")}`;
}
