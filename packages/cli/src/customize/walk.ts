/** Walking guest trees (ls -R, diff) and `ls -l` style mode strings. */
import {
  type GuestDirEntry,
  type GuestFileType,
  type GuestFs,
  GuestFsError,
  type GuestStats,
} from "../guest/guest-fs.js";

export interface WalkEntry {
  path: string;
  /** The entry's name as its directory lists it (the root: its path). */
  name: string;
  stats: GuestStats;
}

/** Directory listings a walk keeps in flight ahead of where it is (readdirStats only). */
const PREFETCH = 16;
/** How far below the top of the walk's stack it looks for directories to prefetch. */
const PREFETCH_SCAN = 256;

/**
 * Depth-first, parents before children, names sorted bytewise; symlinks are reported, never
 * followed. `maxEntries` bounds the walk on hostile images. The mount point of a filesystem
 * imgpatch cannot read (an ESP's vfat: readdir says EPERM) is reported, its contents are not.
 * Where the filesystem has readdirStats, entries come with their stats (no lookup per path) and
 * the listings of the next directories the walk will enter are read ahead, several at once, so the
 * image reads overlap instead of each waiting for the one before.
 */
export async function* walkGuest(
  fs: GuestFs,
  root: string,
  maxEntries = 10_000_000,
): AsyncGenerator<WalkEntry> {
  for await (const batch of walkGuestBatches(fs, root, maxEntries)) yield* batch;
}

/** Entries walkGuest gathers before handing them on (one asynchronous step per batch, not per entry). */
const BATCH = 512;

/**
 * walkGuest's entries in walk order, in arrays of up to BATCH: a walk of 100,000s of entries
 * spends less time in the async-generator protocol (a promise per step).
 */
export async function* walkGuestBatches(
  fs: GuestFs,
  root: string,
  maxEntries = 10_000_000,
): AsyncGenerator<WalkEntry[]> {
  let count = 0;
  let batch: WalkEntry[] = [];
  type Item = { path: string; name: string; stats?: GuestStats; listing?: Promise<GuestDirEntry[]> };
  // Entries listed by readdirStats carry their stats; the others are lstat'ed when popped.
  const stack: Item[] = [{ path: root, name: root }];
  let inFlight = 0;
  const list = (item: Item): Promise<GuestDirEntry[]> => {
    const p = fs.readdirStats!(item.path);
    inFlight++;
    const done = () => {
      inFlight--;
    };
    p.then(done, done);
    return p;
  };
  const prefetch = () => {
    for (let i = stack.length - 1; i >= 0 && i >= stack.length - PREFETCH_SCAN && inFlight < PREFETCH; i--) {
      const it = stack[i];
      if (it.listing || it.stats?.type !== "directory") continue;
      it.listing = list(it);
      // Awaited when the walk gets there; until then a failure must not count as unhandled.
      it.listing.catch(() => {});
    }
  };
  while (stack.length > 0) {
    const top = stack.pop()!;
    const path = top.path;
    const stats = top.stats ?? (await fs.lstat(path));
    if (++count > maxEntries) throw new Error(`more than ${maxEntries} entries under ${root}`);
    batch.push({ path, name: top.name, stats });
    if (batch.length >= BATCH) {
      yield batch;
      batch = [];
    }
    if (stats.type !== "directory") continue;
    const prefix = path === "/" ? "/" : `${path}/`;
    try {
      if (fs.readdirStats) {
        const entries = await (top.listing ?? list(top));
        for (let i = entries.length - 1; i >= 0; i--)
          stack.push({ path: prefix + entries[i].name, name: entries[i].name, stats: entries[i].stats });
        prefetch();
      } else {
        const names = await fs.readdir(path);
        for (let i = names.length - 1; i >= 0; i--) stack.push({ path: prefix + names[i], name: names[i] });
      }
    } catch (err) {
      if (err instanceof GuestFsError && err.code === "EPERM") continue;
      throw err;
    }
  }
  if (batch.length > 0) yield batch;
}

const TYPE_CHAR: Record<GuestFileType, string> = {
  file: "-",
  directory: "d",
  symlink: "l",
  chardev: "c",
  blockdev: "b",
  fifo: "p",
  socket: "s",
};

/** "drwxr-xr-x", with s/S and t/T for setuid, setgid and sticky, as ls -l prints. */
export function modeString(type: GuestFileType, mode: number): string {
  const rwx = (bits: number, special: boolean, ch: string) => {
    const x = bits & 1;
    const last = special ? (x ? ch : ch.toUpperCase()) : x ? "x" : "-";
    return `${bits & 4 ? "r" : "-"}${bits & 2 ? "w" : "-"}${last}`;
  };
  return (
    TYPE_CHAR[type] +
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, "s") +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, "s") +
    rwx(mode & 7, (mode & 0o1000) !== 0, "t")
  );
}
