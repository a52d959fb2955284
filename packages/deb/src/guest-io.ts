/** Small helpers for reading and writing whole guest files through a PkgTarget, bounded. */
import type { PkgTarget } from "@imgpatch/pkgkit";
import { DebFormatError } from "./errors.js";

/** Largest database file we read (dpkg's status of a full desktop is ~3 MiB). */
export const MAX_DB_FILE = 64 * 1024 * 1024;

export async function readGuestBytes(
  target: PkgTarget,
  path: string,
  max = MAX_DB_FILE,
): Promise<Uint8Array | undefined> {
  const st = await target.lstat(path);
  if (!st) return undefined;
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const c of target.readFile(path)) {
    total += c.length;
    if (total > max) throw new DebFormatError(`larger than ${max} bytes`, { file: path });
    parts.push(c);
  }
  return Buffer.concat(parts);
}

export async function readGuestText(
  target: PkgTarget,
  path: string,
  max = MAX_DB_FILE,
): Promise<string | undefined> {
  const b = await readGuestBytes(target, path, max);
  return b === undefined ? undefined : Buffer.from(b).toString("utf8");
}

async function* once(data: Uint8Array): AsyncIterable<Uint8Array> {
  yield data;
}

/** Creates or replaces a root-owned file with the given content. */
export async function writeGuestFile(
  target: PkgTarget,
  path: string,
  data: string | Uint8Array,
  perms = 0o644,
): Promise<void> {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  await target.writeFile(path, once(bytes), perms, bytes.length);
  await target.chown(path, 0, 0);
  await target.chmod(path, perms);
}

/** mkdir -p of root-owned directories. */
export async function ensureGuestDir(target: PkgTarget, path: string, perms = 0o755): Promise<void> {
  const parts = path.split("/").filter((p) => p !== "");
  let cur = "";
  for (const p of parts) {
    cur += `/${p}`;
    if (!(await target.lstat(cur))) {
      await target.mkdir(cur, perms);
      await target.chown(cur, 0, 0);
    }
  }
}
