/**
 * A whole-tree relabel, like `setfiles -F` (or `restorecon -RF /`): every file, directory, link and
 * node gets the full context the policy assigns to its path (user, role, type and range, not only
 * the type); a path whose spec is `<<none>>`, or that no spec matches, is left as it is (and its
 * children are still visited, as setfiles does). Only labels that differ are written.
 */

import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK } from "./file-contexts.js";
import type { FileContexts } from "./match.js";
import { contextFromXattr, contextXattr, SELINUX_XATTR } from "./policy.js";

export type TreeFileType = "file" | "directory" | "symlink" | "chardev" | "blockdev" | "fifo" | "socket";

const MODE_OF: Record<TreeFileType, number> = {
  file: S_IFREG,
  directory: S_IFDIR,
  symlink: S_IFLNK,
  chardev: S_IFCHR,
  blockdev: S_IFBLK,
  fifo: S_IFIFO,
  socket: S_IFSOCK,
};

export function modeOfType(type: TreeFileType): number {
  return MODE_OF[type];
}

/** What a relabel needs of a filesystem (a GuestFs fits); xattr calls act on a symlink itself. */
export interface LabelTree {
  readdir(path: string): Promise<string[]>;
  lstat(path: string): Promise<{ type: TreeFileType }>;
  lgetxattr(path: string, name: string): Promise<Uint8Array | undefined>;
  lsetxattr(path: string, name: string, value: Uint8Array): Promise<void>;
}

export interface RelabelOptions {
  /** Where to start (default "/"). */
  root?: string;
  /**
   * Called for a path the walk cannot enter or label (e.g. a mount imgpatch cannot edit); return
   * true to skip it and go on, false (default: rethrow) to stop.
   */
  onError?: (path: string, err: unknown) => boolean;
}

export interface RelabelReport {
  /** Paths looked at. */
  visited: number;
  /** Labels written (different or missing before). */
  changed: number;
  /** Paths left alone: `<<none>>` or no matching spec. */
  unlabelled: number;
  /** Paths skipped through onError. */
  skipped: string[];
}

function join(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

/** Labels one path (whose type is known); returns whether it changed. */
export async function labelPath(
  tree: Pick<LabelTree, "lgetxattr" | "lsetxattr">,
  contexts: FileContexts,
  path: string,
  type: TreeFileType,
): Promise<"changed" | "same" | "none"> {
  const ctx = contexts.lookup(path, MODE_OF[type]);
  if (ctx === null) return "none";
  const old = await tree.lgetxattr(path, SELINUX_XATTR);
  if (old !== undefined && contextFromXattr(old) === ctx && old[old.length - 1] === 0) return "same";
  await tree.lsetxattr(path, SELINUX_XATTR, contextXattr(ctx));
  return "changed";
}

/** Relabels every path under `root` (depth first, names in readdir order). */
export async function relabelTree(
  tree: LabelTree,
  contexts: FileContexts,
  options: RelabelOptions = {},
): Promise<RelabelReport> {
  const report: RelabelReport = { visited: 0, changed: 0, unlabelled: 0, skipped: [] };
  const onError = options.onError ?? (() => false);
  const visit = async (path: string, type: TreeFileType): Promise<void> => {
    report.visited++;
    try {
      const r = await labelPath(tree, contexts, path, type);
      if (r === "changed") report.changed++;
      else if (r === "none") report.unlabelled++;
    } catch (err) {
      if (!onError(path, err)) throw err;
      report.skipped.push(path);
      return;
    }
    if (type !== "directory") return;
    let names: string[];
    try {
      names = await tree.readdir(path);
    } catch (err) {
      if (!onError(path, err)) throw err;
      report.skipped.push(path);
      return;
    }
    for (const name of names) {
      const child = join(path, name);
      let st: { type: TreeFileType };
      try {
        st = await tree.lstat(child);
      } catch (err) {
        if (!onError(child, err)) throw err;
        report.skipped.push(child);
        continue;
      }
      await visit(child, st.type);
    }
  };
  const root = options.root ?? "/";
  await visit(root, (await tree.lstat(root)).type);
  return report;
}
