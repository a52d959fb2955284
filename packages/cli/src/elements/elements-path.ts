/**
 * Finding elements on ELEMENTS_PATH, as diskimage-builder's element_dependencies does: every directory
 * inside a path entry is an element named after it; when several entries hold the same name the
 * EARLIEST entry wins; an entry that is not a directory is an error. `element-deps` and
 * `element-provides` list one element per line (surrounding blanks and empty lines ignored).
 */
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { InvalidElementsPathError } from "./errors.js";

export interface ElementInfo {
  name: string;
  /** Real host path of the element directory. */
  path: string;
  /** The ELEMENTS_PATH entry it came from. */
  from: string;
  depends: string[];
  provides: string[];
  /** Same-named elements in later path entries that this one hides. */
  overrides: string[];
}

/** Splits a colon-separated ELEMENTS_PATH, dropping empty entries. */
export function parseElementsPath(value: string | readonly string[]): string[] {
  const parts = typeof value === "string" ? value.split(":") : [...value];
  return parts.filter((p) => p !== "");
}

async function readSetFile(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const out = new Set<string>();
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (t !== "") out.add(t);
  }
  return [...out].sort();
}

/** All elements visible on the path, by name. */
export async function findAllElements(elementsPath: readonly string[]): Promise<Map<string, ElementInfo>> {
  const all = new Map<string, ElementInfo>();
  for (const entry of elementsPath) {
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(entry);
    } catch {
      throw new InvalidElementsPathError(entry);
    }
    if (!st.isDirectory()) throw new InvalidElementsPathError(entry);
    const names = (await readdir(entry)).sort();
    for (const name of names) {
      const p = join(entry, name);
      let isDir = false;
      try {
        isDir = (await stat(p)).isDirectory();
      } catch {
        isDir = false; // dangling link
      }
      if (!isDir) continue;
      const existing = all.get(name);
      if (existing) {
        existing.overrides.push(p);
        continue;
      }
      const real = await realpath(p);
      all.set(name, {
        name,
        path: real,
        from: entry,
        depends: await readSetFile(join(real, "element-deps")),
        provides: await readSetFile(join(real, "element-provides")),
        overrides: [],
      });
    }
  }
  return all;
}
