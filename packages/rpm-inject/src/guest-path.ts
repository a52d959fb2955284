/**
 * Guest paths: absolute, "/"-separated, no "." / ".." / empty components, no NUL. Package paths are
 * checked with these before anything is planned, so a hostile name is refused up front.
 */
import { RpmPathError } from "./errors.js";

/** Longest path we accept (Linux PATH_MAX). */
export const MAX_PATH = 4096;
/** Longest single component (NAME_MAX). */
export const MAX_NAME = 255;

/**
 * Normalizes a package path to a safe absolute guest path. Leading "./" (cpio names) and repeated or
 * trailing slashes are tolerated; "..", "." in the middle, NUL and over-long names are refused.
 */
export function safeGuestPath(raw: string, where: { file?: string; offset?: number } = {}): string {
  let p = raw;
  if (p.startsWith("./")) p = p.slice(1);
  if (!p.startsWith("/")) throw new RpmPathError(`path "${raw}" is not absolute`, where);
  if (p.includes("\0")) throw new RpmPathError(`path "${JSON.stringify(raw)}" contains NUL`, where);
  if (p.length > MAX_PATH) throw new RpmPathError(`path longer than ${MAX_PATH} bytes`, where);
  const parts: string[] = [];
  for (const part of p.split("/")) {
    if (part === "") continue;
    if (part === "." || part === "..") {
      throw new RpmPathError(`path "${raw}" contains a "${part}" component`, where);
    }
    if (Buffer.byteLength(part) > MAX_NAME)
      throw new RpmPathError(`path component longer than ${MAX_NAME}`, where);
    parts.push(part);
  }
  if (parts.length === 0) throw new RpmPathError(`path "${raw}" names the root directory`, where);
  return `/${parts.join("/")}`;
}

/** Components of an already-normalized guest path ("/" → []). */
export function splitGuestPath(path: string): string[] {
  return path.split("/").filter((c) => c !== "");
}

export function guestDirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

export function guestBasename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

export function joinGuestPath(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}
