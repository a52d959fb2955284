/**
 * A whole-tree relabel, like `setfiles -F` (or `restorecon -RF /`): every file, directory, link and
 * node gets the full context the policy assigns to its path (user, role, type and range, not only
 * the type); a path whose spec is `<<none>>`, or that no spec matches, is left as it is (and its
 * children are still visited, as setfiles does).
 */

import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK } from "./file-contexts.js";
import type { FileContexts } from "./match.js";
import { contextXattr, SELINUX_XATTR } from "./policy.js";

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
  /** Labels written. */
  changed: number;
  /** Paths left alone: `<<none>>` or no matching spec. */
  unlabelled: number;
  /** Paths skipped through onError. */
  skipped: string[];
}

function join(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

/**
 * Relabels every path under `root`. Two passes: the whole tree is read first (names, types),
 * then the labels are written — a writer whose reads must first flush its pending writes (the ext4
 * editor) then flushes once, not once per file. Every label is written (as setfiles -F would
 * find them all different on a fresh image; rewriting an equal value is cheap).
 */
export async function relabelTree(
  tree: LabelTree,
  contexts: FileContexts,
  options: RelabelOptions = {},
): Promise<RelabelReport> {
  const report: RelabelReport = { visited: 0, changed: 0, unlabelled: 0, skipped: [] };
  const onError = options.onError ?? (() => false);
  const todo: Array<{ path: string; context: string }> = [];
  const root = options.root ?? "/";
  // an explicit stack (deep trees must not overflow the JS stack); children in readdir order
  const stack: Array<{ path: string; type: TreeFileType }> = [
    { path: root, type: (await tree.lstat(root)).type },
  ];
  while (stack.length > 0) {
    const { path, type } = stack.pop() as { path: string; type: TreeFileType };
    report.visited++;
    const context = contexts.lookup(path, MODE_OF[type]);
    if (context === null) report.unlabelled++;
    else todo.push({ path, context });
    if (type !== "directory") continue;
    let names: string[];
    try {
      names = await tree.readdir(path);
    } catch (err) {
      if (!onError(path, err)) throw err;
      report.skipped.push(path);
      continue;
    }
    const children: Array<{ path: string; type: TreeFileType }> = [];
    for (const name of names) {
      const child = join(path, name);
      try {
        children.push({ path: child, type: (await tree.lstat(child)).type });
      } catch (err) {
        if (!onError(child, err)) throw err;
        report.skipped.push(child);
      }
    }
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]);
  }
  for (const { path, context } of todo) {
    try {
      await tree.lsetxattr(path, SELINUX_XATTR, contextXattr(context));
      report.changed++;
    } catch (err) {
      if (!onError(path, err)) throw err;
      report.skipped.push(path);
    }
  }
  return report;
}
