/**
 * `imgpatch get GUEST HOST`: copies a guest file or tree out to the host. The path named is
 * resolved inside the guest (`get IMAGE /etc/os-release` gives the guest's file, not a host
 * symlink to ../usr/lib/os-release that would read the host's); symlinks inside a tree are
 * recreated as symlinks (never followed onto host paths), nothing existing on the host is
 * overwritten or written through (files are created exclusively; an existing host symlink in the
 * way is an error), and setuid/setgid bits are dropped.
 */
import {
  chmodSync,
  closeSync,
  fchmodSync,
  futimesSync,
  lutimesSync,
  mkdirSync,
  openSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { ImgpatchError } from "@imgpatch/disk";
import type { GuestFs, GuestStats } from "../guest/guest-fs.js";
import { guestBasename } from "../guest/paths.js";
import { walkGuestBatches } from "./walk.js";

/** File contents read ahead of the host writes (the guest reads overlap). */
const READS_IN_FLIGHT = 16;

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
  if (await hostExists(dest)) throw new HostPathExistsError(dest);
  // A directory named by its real path is copied by a walk; a single entry, or a directory named
  // through a symlink (followed, like cp -H), by copyEntry.
  const own = await fs.lstat(guestPath);
  if (own.type === "directory") await copyTree(fs, guestPath, own, dest, result);
  else await copyEntry(fs, guestPath, dest, result, true);
  return result;
}

/** A name that is one host path component (a damaged directory may hold "a/../.." or ".."). */
function safeName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0");
}

/**
 * Copies the directory tree at `root` in one walk (walkGuest: listings with stats, read ahead):
 * directories are created as met (0700, so the copy can write into them), file contents are read
 * by inode number where the filesystem offers it (readFileOfEntry), several ahead of the host
 * writes, and the directories' modes and times are set last (adding entries changes a
 * directory's mtime).
 */
async function copyTree(
  fs: GuestFs,
  root: string,
  rootStats: GuestStats,
  dest: string,
  r: CopyOutResult,
): Promise<void> {
  const prefixLen = root === "/" ? 1 : root.length + 1;
  const hostOf = (p: string) => (p === root ? dest : `${dest}/${p.slice(prefixLen)}`);
  const dirs: Array<{ path: string; stats: GuestStats }> = [];
  const reads: Array<{ path: string; stats: GuestStats; data: Promise<Uint8Array> }> = [];
  const writeOne = async () => {
    const f = reads.shift()!;
    writeHostFile(f.path, await f.data, f.stats);
    r.files++;
  };
  let skipUnder: string | undefined;
  try {
    for await (const batch of walkGuestBatches(fs, root))
      for (const e of batch) {
        if (skipUnder !== undefined && e.path.startsWith(skipUnder)) continue;
        skipUnder = undefined;
        if (e.path !== root && !safeName(e.name)) {
          r.skipped.push({ path: e.path, why: "its name is not a single path component" });
          skipUnder = `${e.path}/`;
          continue;
        }
        const st = e.path === root ? rootStats : e.stats;
        const host = hostOf(e.path);
        switch (st.type) {
          case "directory":
            exclusive(host, () => mkdirSync(host, { mode: 0o700 }));
            r.dirs++;
            dirs.push({ path: host, stats: st });
            break;
          case "file": {
            const data = fs.readFileOfEntry ? fs.readFileOfEntry(e.path, st) : fs.readFile(e.path);
            data.catch(() => {}); // awaited in order below; a failure must not go unhandled meanwhile
            reads.push({ path: host, stats: st, data });
            if (reads.length >= READS_IN_FLIGHT) await writeOne();
            break;
          }
          case "symlink": {
            const target = await fs.readlink(e.path);
            exclusive(host, () => symlinkSync(target, host));
            lutimesSync(host, st.atime, st.mtime);
            r.symlinks++;
            break;
          }
          default:
            r.skipped.push({ path: e.path, why: `${st.type} not copied to the host` });
        }
      }
    while (reads.length > 0) await writeOne();
  } finally {
    // Reads still queued after a failure are dropped (each already has a rejection handler).
    reads.length = 0;
  }
  for (let i = dirs.length - 1; i >= 0; i--) {
    const { path, stats } = dirs[i];
    chmodSync(path, stats.mode & 0o1777);
    utimesSync(path, stats.atime, stats.mtime);
  }
}

/** Creates `dest` exclusively with `data`, then its mode (setuid/setgid dropped) and times. */
function writeHostFile(dest: string, data: Uint8Array, st: GuestStats): void {
  let fd = -1;
  exclusive(dest, () => {
    fd = openSync(dest, "wx", 0o600);
  });
  try {
    writeFileSync(fd, data);
    fchmodSync(fd, st.mode & 0o1777);
    futimesSync(fd, st.atime, st.mtime);
  } finally {
    closeSync(fd);
  }
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
