/**
 * `imgpatch get GUEST HOST`: copies a guest file or tree out to the host. The path named is
 * resolved inside the guest (`get IMAGE /etc/os-release` gives the guest's file, not a host
 * symlink to ../usr/lib/os-release that would read the host's); symlinks inside a tree are
 * recreated as symlinks (never followed onto host paths), nothing existing on the host is
 * overwritten or written through (files are created exclusively; an existing host symlink in the
 * way is an error), and setuid/setgid bits are dropped.
 */
import { chmodSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { ImgpatchError } from "@imgpatch/disk";
import type { GuestFs, GuestStats } from "../guest/guest-fs.js";
import { guestBasename } from "../guest/paths.js";

export interface CopyOutResult {
  files: number;
  dirs: number;
  symlinks: number;
  skipped: Array<{ path: string; why: string }>;
}

/** The host destination already exists (we never overwrite on the host). */
export class HostPathExistsError extends ImgpatchError {
  constructor(path: string) {
    super("EEXIST", "already exists on the host; not overwritten", { file: path });
  }
}

async function hostExists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Copies `guestPath` to `hostPath`; when `hostPath` is an existing host directory (a real one, not a
 * symlink), the copy goes inside it under the guest name.
 */
export async function copyOut(fs: GuestFs, guestPath: string, hostPath: string): Promise<CopyOutResult> {
  const result: CopyOutResult = { files: 0, dirs: 0, symlinks: 0, skipped: [] };
  let dest = hostPath;
  try {
    const st = await lstat(hostPath);
    if (st.isDirectory()) dest = join(hostPath, guestBasename(guestPath) || "root");
    else throw new HostPathExistsError(hostPath);
  } catch (err) {
    if (err instanceof HostPathExistsError) throw err;
  }
  await copyEntry(fs, guestPath, dest, result, true);
  return result;
}

/**
 * Runs a host operation that creates `dest` exclusively; an existing path is HostPathExistsError.
 * The host side uses synchronous calls: a tree of 100,000s of small entries is a few syscalls per
 * entry, each far cheaper than a thread-pool round trip, and nothing else runs meanwhile.
 */
function exclusive(dest: string, op: () => unknown): void {
  try {
    op();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new HostPathExistsError(dest);
    throw err;
  }
}

async function copyEntry(
  fs: GuestFs,
  src: string,
  dest: string,
  r: CopyOutResult,
  top = false,
  known?: GuestStats,
): Promise<void> {
  // Below the top, mkdir, writeFile "wx" and symlink refuse an existing path (a dangling symlink
  // included) themselves: no separate host lstat per entry.
  if (top && (await hostExists(dest))) throw new HostPathExistsError(dest);
  // The named path follows its symlinks (in the guest, like cp -H); entries below it do not.
  const st = known ?? (top ? await fs.stat(src) : await fs.lstat(src));
  switch (st.type) {
    case "directory": {
      exclusive(dest, () => mkdirSync(dest, { mode: 0o700 }));
      r.dirs++;
      const prefix = src === "/" ? "/" : `${src}/`;
      // readdirStats lists the entries with their stats (no guest lookup per entry).
      const entries = fs.readdirStats
        ? await fs.readdirStats(src)
        : (await fs.readdir(src)).map((name) => ({ name, stats: undefined }));
      for (const e of entries) await copyEntry(fs, prefix + e.name, join(dest, e.name), r, false, e.stats);
      chmodSync(dest, st.mode & 0o1777);
      utimesSync(dest, st.atime, st.mtime);
      return;
    }
    case "file": {
      const data = await fs.readFile(src);
      exclusive(dest, () => writeFileSync(dest, data, { flag: "wx", mode: 0o600 }));
      chmodSync(dest, st.mode & 0o1777);
      utimesSync(dest, st.atime, st.mtime);
      r.files++;
      return;
    }
    case "symlink": {
      const target = await fs.readlink(src);
      exclusive(dest, () => symlinkSync(target, dest));
      r.symlinks++;
      return;
    }
    default:
      r.skipped.push({ path: src, why: `${st.type} not copied to the host` });
  }
}
