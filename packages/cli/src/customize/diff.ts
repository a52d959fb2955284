/**
 * `imgpatch diff A B`: what differs between two guest trees — entries only in one, and for entries in
 * both: type, mode, owner, symlink target, size or content (xxh64 of the bytes). Times are ignored.
 */
import xxhash from "xxhash-wasm";
import type { GuestFs, GuestStats } from "../guest/guest-fs.js";
import { walkGuest } from "./walk.js";

export type DiffKind = "added" | "removed" | "type" | "mode" | "owner" | "target" | "content";

export interface DiffEntry {
  path: string;
  kinds: DiffKind[];
  /** Human-readable details ("mode 0644 -> 0600", ...). */
  details: string[];
}

let hasher: Awaited<ReturnType<typeof xxhash>> | undefined;

async function hashFile(fs: GuestFs, path: string): Promise<bigint> {
  hasher ??= await xxhash();
  return hasher.h64Raw(await fs.readFile(path));
}

async function collect(fs: GuestFs, root: string): Promise<Map<string, GuestStats>> {
  const out = new Map<string, GuestStats>();
  for await (const e of walkGuest(fs, root))
    out.set(e.path.slice(root === "/" ? 0 : root.length) || "/", e.stats);
  return out;
}

const oct = (m: number) => m.toString(8).padStart(4, "0");

export async function diffGuests(a: GuestFs, b: GuestFs, root = "/"): Promise<DiffEntry[]> {
  const [ta, tb] = await Promise.all([collect(a, root), collect(b, root)]);
  const out: DiffEntry[] = [];
  const paths = [...new Set([...ta.keys(), ...tb.keys()])].sort((x, y) =>
    Buffer.compare(Buffer.from(x), Buffer.from(y)),
  );
  const full = (p: string) => (root === "/" ? p : `${root}${p === "/" ? "" : p}`);
  for (const p of paths) {
    const sa = ta.get(p);
    const sb = tb.get(p);
    if (!sa) {
      out.push({ path: p, kinds: ["added"], details: [`added ${sb!.type}`] });
      continue;
    }
    if (!sb) {
      out.push({ path: p, kinds: ["removed"], details: [`removed ${sa.type}`] });
      continue;
    }
    const kinds: DiffKind[] = [];
    const details: string[] = [];
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
        if (sa.size !== sb.size || (await hashFile(a, full(p))) !== (await hashFile(b, full(p)))) {
          kinds.push("content");
          details.push(sa.size !== sb.size ? `size ${sa.size} -> ${sb.size}` : "content differs");
        }
      }
    }
    if (sa.uid !== sb.uid || sa.gid !== sb.gid) {
      kinds.push("owner");
      details.push(`owner ${sa.uid}:${sa.gid} -> ${sb.uid}:${sb.gid}`);
    }
    if (kinds.length > 0) out.push({ path: p, kinds, details });
  }
  return out;
}
