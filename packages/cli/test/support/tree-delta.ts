/**
 * What a run did to a guest tree, as the kernel sees it: snapshots of mounted trees (type, mode,
 * owner, link target, content hash — not times) and the delta between two of them.
 */
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";

export interface NodeInfo {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  /** sha256 of a file's content, a symlink's target, "" for others. */
  body: string;
}

export function snapshotTree(root: string): Map<string, NodeInfo> {
  const out = new Map<string, NodeInfo>();
  const walk = (rel: string) => {
    const p = join(root, rel);
    const st = lstatSync(p);
    const type = st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "other";
    const body =
      type === "file"
        ? createHash("sha256").update(readFileSync(p)).digest("hex")
        : type === "symlink"
          ? readlinkSync(p)
          : "";
    out.set(rel === "" ? "/" : `/${rel}`, { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, body });
    if (type === "dir")
      for (const n of readdirSync(p).sort())
        if (!(rel === "" && n === "lost+found")) walk(rel === "" ? n : `${rel}/${n}`);
  };
  walk("");
  return out;
}

export type DeltaKind = "removed" | "added" | "emptied" | "changed";

/** Paths removed, added, emptied (a file now 0 bytes) or otherwise changed (not directories' times). */
export function treeDelta(
  before: Map<string, NodeInfo>,
  after: Map<string, NodeInfo>,
): Map<string, DeltaKind> {
  const empty = createHash("sha256").update("").digest("hex");
  const out = new Map<string, DeltaKind>();
  for (const [p, a] of before) {
    const b = after.get(p);
    if (!b) out.set(p, "removed");
    else if (
      a.type !== b.type ||
      a.mode !== b.mode ||
      a.uid !== b.uid ||
      a.gid !== b.gid ||
      a.body !== b.body
    )
      out.set(p, b.type === "file" && b.body === empty ? "emptied" : "changed");
  }
  for (const p of after.keys()) if (!before.has(p)) out.set(p, "added");
  return new Map([...out].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
}

/** "kind path" lines, for readable test failures. */
export function deltaLines(d: Map<string, DeltaKind>): string[] {
  return [...d].map(([p, k]) => `${k} ${p}`);
}
