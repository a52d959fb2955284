/** Walking guest trees (ls -R, diff) and `ls -l` style mode strings. */
import { type GuestFileType, type GuestFs, GuestFsError, type GuestStats } from "../guest/guest-fs.js";

export interface WalkEntry {
  path: string;
  stats: GuestStats;
}

/**
 * Depth-first, parents before children, names sorted bytewise; symlinks are reported, never
 * followed. `maxEntries` bounds the walk on hostile images. The mount point of a filesystem
 * imgpatch cannot read (an ESP's vfat: readdir says EPERM) is reported, its contents are not.
 */
export async function* walkGuest(
  fs: GuestFs,
  root: string,
  maxEntries = 10_000_000,
): AsyncGenerator<WalkEntry> {
  let count = 0;
  const stack: string[] = [root];
  while (stack.length > 0) {
    const path = stack.pop()!;
    const stats = await fs.lstat(path);
    if (++count > maxEntries) throw new Error(`more than ${maxEntries} entries under ${root}`);
    yield { path, stats };
    if (stats.type === "directory") {
      let names: string[];
      try {
        names = await fs.readdir(path);
      } catch (err) {
        if (err instanceof GuestFsError && err.code === "EPERM") continue;
        throw err;
      }
      for (let i = names.length - 1; i >= 0; i--) stack.push(`${path === "/" ? "" : path}/${names[i]}`);
    }
  }
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
