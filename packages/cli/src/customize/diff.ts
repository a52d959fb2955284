/**
 * `imgpatch diff A B`: what differs between two guest trees — entries only in one, and for entries in
 * both: type, mode, owner, symlink target, size or content. Times are ignored. Content is compared
 * only when the sizes match, byte for byte (both files are in memory anyway); files are read by
 * the inode number their listing gave (readFileOfEntry) where the filesystem offers it, several at
 * once.
 */
import type { GuestFs, GuestStats } from "../guest/guest-fs.js";
import { walkGuestBatches } from "./walk.js";

export type DiffKind = "added" | "removed" | "type" | "mode" | "owner" | "target" | "content";

export interface DiffEntry {
  path: string;
  kinds: DiffKind[];
  /** Human-readable details ("mode 0644 -> 0600", ...). */
  details: string[];
}

/** Content comparisons in flight (their reads overlap). */
const CONTENT_IN_FLIGHT = 16;

function readEntry(fs: GuestFs, path: string, stats: GuestStats): Promise<Uint8Array> {
  return fs.readFileOfEntry ? fs.readFileOfEntry(path, stats) : fs.readFile(path);
}

async function sameContent(
  a: GuestFs,
  b: GuestFs,
  path: string,
  sa: GuestStats,
  sb: GuestStats,
): Promise<boolean> {
  const [da, db] = await Promise.all([readEntry(a, path, sa), readEntry(b, path, sb)]);
  return Buffer.from(da.buffer, da.byteOffset, da.byteLength).equals(db);
}

async function collect(fs: GuestFs, root: string): Promise<Map<string, GuestStats>> {
  const out = new Map<string, GuestStats>();
  const cut = root === "/" ? 0 : root.length;
  for await (const batch of walkGuestBatches(fs, root))
    for (const e of batch) out.set(e.path.slice(cut) || "/", e.stats);
  return out;
}

/**
 * Paths sorted by their UTF-8 bytes. UTF-16 order is the same except where surrogates meet
 * U+E000..U+FFFF: only then are the paths encoded (once each, not per comparison).
 */
function sortBytewise(paths: string[]): string[] {
  if (!paths.some((p) => /[\uD800-\uFFFF]/.test(p)))
    return paths.sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  const keyed = paths.map((p) => ({ key: Buffer.from(p), p }));
  keyed.sort((x, y) => Buffer.compare(x.key, y.key));
  return keyed.map((k) => k.p);
}

const oct = (m: number) => m.toString(8).padStart(4, "0");

export async function diffGuests(a: GuestFs, b: GuestFs, root = "/"): Promise<DiffEntry[]> {
  const [ta, tb] = await Promise.all([collect(a, root), collect(b, root)]);
  const paths = [...ta.keys()];
  for (const p of tb.keys()) if (!ta.has(p)) paths.push(p);
  sortBytewise(paths);
  const full = (p: string) => (root === "/" ? p : `${root}${p === "/" ? "" : p}`);
  // One slot per path, filled in any order (content reads overlap), printed in path order.
  const slots: Array<DiffEntry | undefined> = new Array(paths.length);
  const pending = new Set<Promise<void>>();
  for (let i = 0; i < paths.length; i++) {
    const p = paths[i];
    const sa = ta.get(p);
    const sb = tb.get(p);
    if (!sa) {
      slots[i] = { path: p, kinds: ["added"], details: [`added ${sb!.type}`] };
      continue;
    }
    if (!sb) {
      slots[i] = { path: p, kinds: ["removed"], details: [`removed ${sa.type}`] };
      continue;
    }
    const kinds: DiffKind[] = [];
    const details: string[] = [];
    const owner = () => {
      if (sa.uid !== sb.uid || sa.gid !== sb.gid) {
        kinds.push("owner");
        details.push(`owner ${sa.uid}:${sa.gid} -> ${sb.uid}:${sb.gid}`);
      }
      if (kinds.length > 0) slots[i] = { path: p, kinds, details };
    };
    if (sa.type !== sb.type) {
      kinds.push("type");
      details.push(`type ${sa.type} -> ${sb.type}`);
    } else {
      if (sa.type !== "symlink" && sa.mode !== sb.mode) {
        kinds.push("mode");
        details.push(`mode ${oct(sa.mode)} -> ${oct(sb.mode)}`);
      }
      if (sa.type === "symlink") {
        const [la, lb] = await Promise.all([a.readlink(full(p)), b.readlink(full(p))]);
        if (la !== lb) {
          kinds.push("target");
          details.push(`target ${la} -> ${lb}`);
        }
      } else if (sa.type === "file") {
        if (sa.size !== sb.size) {
          kinds.push("content");
          details.push(`size ${sa.size} -> ${sb.size}`);
        } else if (sa.size > 0) {
          const job = sameContent(a, b, full(p), sa, sb).then((same) => {
            if (!same) {
              // "content" goes before "owner", as the kinds are listed.
              kinds.push("content");
              details.push("content differs");
            }
            owner();
          });
          const tracked = job.finally(() => pending.delete(tracked));
          tracked.catch(() => {}); // the failure surfaces through race/all below
          pending.add(tracked);
          if (pending.size >= CONTENT_IN_FLIGHT) await Promise.race(pending);
          continue;
        }
      }
    }
    owner();
  }
  await Promise.all(pending);
  return slots.filter((e): e is DiffEntry => e !== undefined);
}
