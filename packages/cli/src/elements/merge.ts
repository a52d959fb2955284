/**
 * Merging the elements' directories into one hooks tree, following diskimage-builder's generate_hooks:
 * for each element (in closure order) and each top-level directory of it (symlinks followed, `tests`
 * skipped), every visible entry (`ls`: names starting with "." are not listed) is copied with `cp -a`.
 *  - An entry that already exists as a regular FILE at that level is a duplicated hook: DIB aborts.
 *  - A directory entry (e.g. `os-refresh-config/configure.d`) merges into an existing directory, and
 *    files inside it are silently overwritten: the element copied last wins. We report each such
 *    collision (element that lost, element that won, whether the contents differ).
 * `cp -a` keeps symlinks below the top level as symlinks, and dot-files inside copied directories.
 * Modes are normalised to what a git checkout under umask 022 gives: 0755 if any execute bit, else
 * 0644; directories 0755; owner root.
 */
import { lstat, readdir, readFile, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import type { ElementInfo } from "./elements-path.js";
import { DuplicateHookError, ElementError } from "./errors.js";

export type MergedKind = "file" | "dir" | "symlink";

export interface MergedEntry {
  /** Path relative to the hooks root, "/"-separated (e.g. "install.d/10-foo"). */
  rel: string;
  kind: MergedKind;
  /** Element that provided this entry (the last one copied, for overwritten files). */
  element: string;
  /** Host path of the source (files and symlinks). */
  source?: string;
  /** Normalised mode (files 0644/0755, dirs 0755). */
  mode: number;
  /** Symlink text. */
  target?: string;
  size?: number;
}

export interface HookCollision {
  rel: string;
  /** Element whose copy was overwritten. */
  lost: string;
  /** Element whose copy is kept. */
  won: string;
  identical: boolean;
}

export interface MergedHooks {
  entries: Map<string, MergedEntry>;
  collisions: HookCollision[];
  /** Top-level files of elements (README, element-deps, package-installs.yaml...), not merged. */
  topFiles: Array<{ element: string; name: string; source: string }>;
}

/** Limits a hostile or runaway element tree. */
export const MAX_MERGED_ENTRIES = 200_000;

export function normalisedMode(hostMode: number, isDir: boolean): number {
  if (isDir) return 0o755;
  return hostMode & 0o111 ? 0o755 : 0o644;
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([readFile(a), readFile(b)]);
  return x.equals(y);
}

export interface MergeOptions {
  /** Turn DIB's duplicated-hook abort into "last copied wins" (still reported as collisions). */
  allowDuplicateHooks?: boolean;
}

export async function mergeElements(
  elements: readonly ElementInfo[],
  options: MergeOptions = {},
): Promise<MergedHooks> {
  const merged: MergedHooks = { entries: new Map(), collisions: [], topFiles: [] };
  const duplicates = new Map<string, string[]>();

  const put = async (entry: MergedEntry): Promise<void> => {
    const old = merged.entries.get(entry.rel);
    if (old) {
      if (old.kind === "dir" && entry.kind === "dir") return;
      if ((old.kind === "dir") !== (entry.kind === "dir")) {
        throw new ElementError(
          "EELEMENT_MERGE",
          `${entry.rel}: a directory in one element and a file in another (${old.element}, ${entry.element})`,
        );
      }
      const identical =
        old.kind === entry.kind &&
        (old.kind === "symlink"
          ? old.target === entry.target
          : await sameContent(old.source!, entry.source!)) &&
        old.mode === entry.mode;
      merged.collisions.push({ rel: entry.rel, lost: old.element, won: entry.element, identical });
    } else if (merged.entries.size >= MAX_MERGED_ENTRIES) {
      throw new ElementError(
        "EELEMENT_MERGE",
        `more than ${MAX_MERGED_ENTRIES} files in the merged elements`,
      );
    }
    merged.entries.set(entry.rel, entry);
  };

  /** cp -a of one host path to `rel` (recursive for directories, symlinks kept). */
  const copy = async (element: string, hostPath: string, rel: string): Promise<void> => {
    const st = await lstat(hostPath);
    if (st.isSymbolicLink()) {
      await put({
        rel,
        kind: "symlink",
        element,
        source: hostPath,
        mode: 0o777,
        target: await readlink(hostPath),
      });
    } else if (st.isDirectory()) {
      await put({ rel, kind: "dir", element, mode: 0o755 });
      for (const n of (await readdir(hostPath)).sort()) await copy(element, join(hostPath, n), `${rel}/${n}`);
    } else if (st.isFile()) {
      await put({
        rel,
        kind: "file",
        element,
        source: hostPath,
        mode: normalisedMode(st.mode, false),
        size: st.size,
      });
    }
    // devices, fifos, sockets in an element tree are ignored
  };

  for (const el of elements) {
    for (const top of (await readdir(el.path)).sort()) {
      const topPath = join(el.path, top);
      let st: Awaited<ReturnType<typeof stat>>;
      try {
        st = await stat(topPath); // find -follow
      } catch {
        continue;
      }
      if (st.isFile()) {
        merged.topFiles.push({ element: el.name, name: top, source: topPath });
        continue;
      }
      if (!st.isDirectory() || top === "tests") continue;
      await put({ rel: top, kind: "dir", element: el.name, mode: 0o755 });
      for (const name of (await readdir(topPath)).sort()) {
        if (name.startsWith(".")) continue; // `ls` does not list dot-files
        const rel = `${top}/${name}`;
        const existing = merged.entries.get(rel);
        if (existing && existing.kind === "file") {
          const list = duplicates.get(rel) ?? [existing.element];
          list.push(el.name);
          duplicates.set(rel, list);
          if (!options.allowDuplicateHooks) continue;
        }
        await copy(el.name, join(topPath, name), rel);
      }
    }
  }
  if (duplicates.size > 0 && !options.allowDuplicateHooks) {
    throw new DuplicateHookError([...duplicates].map(([path, elements]) => ({ path, elements })));
  }
  return merged;
}

/** Direct children of a merged directory, sorted. */
export function mergedChildren(merged: MergedHooks, dir: string): MergedEntry[] {
  const prefix = `${dir}/`;
  const out: MergedEntry[] = [];
  for (const e of merged.entries.values()) {
    if (e.rel.startsWith(prefix) && !e.rel.slice(prefix.length).includes("/")) out.push(e);
  }
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

/** Every entry below a merged directory (depth-first, parents before children). */
export function mergedSubtree(merged: MergedHooks, dir: string): MergedEntry[] {
  const prefix = `${dir}/`;
  return [...merged.entries.values()]
    .filter((e) => e.rel.startsWith(prefix))
    .sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}
