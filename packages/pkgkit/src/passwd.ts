/**
 * The guest's own user and group databases (/etc/passwd, /etc/group), read through the target —
 * never the host's. "root" always maps to 0 even when the files lack it (as rpm and dpkg do).
 */
import type { PkgTarget } from "./target.js";

export interface OwnerDb {
  users: Map<string, number>;
  groups: Map<string, number>;
}

/** Largest passwd/group file we read (a bound against hostile guests). */
const MAX_DB_SIZE = 16 * 1024 * 1024;

async function readText(target: PkgTarget, path: string): Promise<string | undefined> {
  const st = await target.lstat(path);
  if (!st) return undefined;
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const c of target.readFile(path)) {
    total += c.length;
    if (total > MAX_DB_SIZE) break;
    parts.push(c);
  }
  return Buffer.concat(parts).toString("utf8");
}

/** Parses colon-separated databases: name in field 0, numeric id in field 2. */
export function parseIdFile(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#") || line.startsWith("+") || line.startsWith("-")) continue;
    const f = line.split(":");
    if (f.length < 3 || !/^\d+$/.test(f[2])) continue;
    if (!out.has(f[0])) out.set(f[0], Number(f[2]));
  }
  return out;
}

export async function readOwnerDb(target: PkgTarget): Promise<OwnerDb> {
  const users = parseIdFile((await readText(target, "/etc/passwd")) ?? "");
  const groups = parseIdFile((await readText(target, "/etc/group")) ?? "");
  if (!users.has("root")) users.set("root", 0);
  if (!groups.has("root")) groups.set("root", 0);
  return { users, groups };
}
