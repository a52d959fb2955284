/** Recursive guest tree operations (rm -rf, cp -a inside the guest, copy-in from the host). */
import { lstatSync, readFileSync, type Stats } from "node:fs";
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import type { StepProgress } from "../commands/progress.js";
import type { GuestFs } from "../guest/guest-fs.js";

/** rm -rf of one guest path (symlinks removed, never followed). */
export async function removeTree(fs: GuestFs, path: string): Promise<number> {
  const st = await fs.lstat(path);
  let n = 1;
  if (st.type === "directory") {
    for (const name of await fs.readdir(path))
      n += await removeTree(fs, `${path === "/" ? "" : path}/${name}`);
    await fs.rmdir(path);
  } else {
    await fs.unlink(path);
  }
  return n;
}

/** cp -a within the guest (modes, owners, times, symlinks, xattrs kept; hard links become copies). */
export async function copyTree(fs: GuestFs, from: string, to: string): Promise<number> {
  const st = await fs.lstat(from);
  if (st.type === "directory") {
    if (`${to}/`.startsWith(`${from}/`)) throw new Error(`cannot copy ${from} into itself (${to})`);
    await fs.mkdir(to, { mode: st.mode, uid: st.uid, gid: st.gid });
    let n = 1;
    for (const name of await fs.readdir(from)) n += await copyTree(fs, `${from}/${name}`, `${to}/${name}`);
    await fs.utimes(to, st.atime, st.mtime);
    await copyXattrs(fs, from, to);
    return n;
  }
  if (st.type === "symlink") {
    await fs.symlink(await fs.readlink(from), to, { uid: st.uid, gid: st.gid });
  } else if (st.type === "file") {
    await fs.writeFile(to, await fs.readFile(from), {
      mode: st.mode,
      uid: st.uid,
      gid: st.gid,
      mtime: st.mtime,
      flag: "wx",
    });
  } else {
    throw new Error(`cannot copy ${st.type} ${from}`);
  }
  await copyXattrs(fs, from, to);
  return 1;
}

async function copyXattrs(fs: GuestFs, from: string, to: string): Promise<void> {
  for (const name of await fs.listxattr(from)) {
    const v = await fs.getxattr(from, name);
    if (v) await fs.setxattr(to, name, v);
  }
}

export interface CopyInOptions {
  uid?: number;
  gid?: number;
  /** Reports file bytes copied of the tree's total (which costs a walk of the host tree first). */
  progress?: StepProgress;
}

/** Bytes of the regular files under a host path (symlinks not followed). */
async function hostTreeBytes(path: string): Promise<number> {
  const st = await lstat(path);
  if (st.isFile()) return st.size;
  if (!st.isDirectory()) return 0;
  let n = 0;
  for (const name of await readdir(path)) n += await hostTreeBytes(join(path, name));
  return n;
}

/**
 * --copy-in HOSTPATH:GUESTDIR: copies a host file or directory tree into an existing guest directory,
 * keeping modes, times and symlinks (symlinks are copied as links, never followed on the host).
 * Owners are root unless overridden (host uids mean nothing in the guest).
 */
export async function copyIn(
  fs: GuestFs,
  hostPath: string,
  guestDir: string,
  options: CopyInOptions = {},
): Promise<number> {
  const dest = `${guestDir === "/" ? "" : guestDir}/${basename(resolve(hostPath))}`;
  const bar = options.progress;
  if (!bar) return copyInEntry(fs, hostPath, dest, options);
  const total = await hostTreeBytes(hostPath);
  let done = 0;
  bar.update(0, total);
  return copyInEntry(fs, hostPath, dest, {
    ...options,
    onFile: (bytes) => {
      done += bytes;
      bar.update(done, total);
    },
  });
}

/** Host reads kept in flight ahead of the (sequential) guest writes of one directory. */
const READ_AHEAD = 16;
/** Files up to this size are read with sync calls: cheaper than four thread-pool round trips. */
const SYNC_READ_MAX = 64 * 1024;
/** Files up to this size are read ahead; bigger ones are read when their turn comes. */
const READ_AHEAD_MAX_FILE = 1 << 20;

interface HostEntry {
  st: Stats;
  data?: Uint8Array;
}

async function readHostEntry(hostPath: string): Promise<HostEntry> {
  const st = lstatSync(hostPath);
  if (st.isFile() && st.size <= SYNC_READ_MAX) return { st, data: readFileSync(hostPath) };
  if (st.isFile() && st.size <= READ_AHEAD_MAX_FILE) return { st, data: await readFile(hostPath) };
  return { st };
}

async function copyInEntry(
  fs: GuestFs,
  hostPath: string,
  dest: string,
  o: CopyInOptions & { onFile?: (bytes: number) => void },
  pre?: Promise<HostEntry>,
): Promise<number> {
  const { st, data } = await (pre ?? readHostEntry(hostPath));
  const uid = o.uid ?? 0;
  const gid = o.gid ?? 0;
  if (st.isDirectory()) {
    const exists = await fs.lstat(dest).catch(() => null);
    if (!exists) await fs.mkdir(dest, { mode: st.mode & 0o7777, uid, gid });
    let n = 1;
    const names = (await readdir(hostPath)).sort();
    // Small files are read from the host a few entries ahead, so host I/O overlaps guest writes;
    // the guest still sees the entries in sorted order.
    const ahead: Array<Promise<HostEntry>> = [];
    const start = (i: number) => {
      const p = readHostEntry(join(hostPath, names[i]));
      p.catch(() => {}); // awaited (and reported) in order below
      ahead[i] = p;
    };
    for (let i = 0; i < Math.min(READ_AHEAD, names.length); i++) start(i);
    for (let i = 0; i < names.length; i++) {
      if (i + READ_AHEAD < names.length) start(i + READ_AHEAD);
      n += await copyInEntry(fs, join(hostPath, names[i]), `${dest}/${names[i]}`, o, ahead[i]);
      ahead[i] = undefined as unknown as Promise<HostEntry>;
    }
    await fs.utimes(dest, st.atime, st.mtime);
    return n;
  }
  if (st.isSymbolicLink()) {
    await fs.symlink(await readlink(hostPath), dest, { uid, gid });
    return 1;
  }
  if (st.isFile()) {
    await fs.writeFile(dest, data ?? (await readFile(hostPath)), {
      mode: st.mode & 0o7777,
      uid,
      gid,
      mtime: st.mtime,
    });
    o.onFile?.(st.size);
    return 1;
  }
  return 0; // devices/fifos/sockets on the host are not copied
}
