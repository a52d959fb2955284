/**
 * Shell-style globs over guest paths (for --delete): `*`, `?` and `[...]` inside one path component;
 * components are matched against the guest's directory entries (dot-files only when the pattern
 * component starts with "."). Symlinked directories are not descended into while globbing.
 */

import { lstatOrNull } from "../guest/fs-util.js";
import type { GuestFs } from "../guest/guest-fs.js";
import { splitGuestPath } from "../guest/paths.js";

export function hasGlobChars(s: string): boolean {
  return /[*?[]/.test(s);
}

export function globComponentToRegExp(glob: string): RegExp {
  let re = "^";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end < 0) {
        re += "\\[";
        continue;
      }
      let body = glob.slice(i + 1, end);
      if (body.startsWith("!")) body = `^${body.slice(1)}`;
      re += `[${body.replace(/\\/g, "\\\\")}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\\]]/g, "\\$&");
  }
  return new RegExp(`${re}$`);
}

/** Guest paths matching an absolute glob, sorted. A pattern without glob characters matches itself if it exists. */
export async function guestGlob(fs: GuestFs, pattern: string): Promise<string[]> {
  const parts = splitGuestPath(pattern);
  let current = ["/"];
  for (const part of parts) {
    const next: string[] = [];
    for (const dir of current) {
      const base = dir === "/" ? "" : dir;
      if (!hasGlobChars(part)) {
        const p = `${base}/${part}`;
        if (await lstatOrNull(fs, p)) next.push(p);
        continue;
      }
      const st = await lstatOrNull(fs, dir);
      if (st?.type !== "directory") continue;
      const re = globComponentToRegExp(part);
      for (const name of await fs.readdir(dir)) {
        if (name.startsWith(".") && !part.startsWith(".")) continue;
        if (re.test(name)) next.push(`${base}/${name}`);
      }
    }
    current = next;
  }
  return current.filter((p) => p !== "/").sort();
}
