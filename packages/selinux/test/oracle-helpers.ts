/** Test helpers: matchpathcon as the oracle, and path generators for the spec sets. */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { runToolOk } from "@imgpatch/testkit";
import {
  type FileContextSpec,
  type PolicyReader,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  S_IFSOCK,
} from "../src/index.js";

export const MODES: Array<[number, string]> = [
  [S_IFREG, "f"],
  [S_IFDIR, "d"],
  [S_IFLNK, "l"],
  [S_IFCHR, "c"],
  [S_IFBLK, "b"],
  [S_IFIFO, "p"],
  [S_IFSOCK, "s"],
];

/** A reader over a host directory standing in for the guest root. */
export function hostReader(root: string): PolicyReader {
  return {
    readFile: async (p) => new Uint8Array(await readFile(join(root, p))),
    stat: async (p) => {
      const s = await stat(join(root, p));
      return { mtime: s.mtime, size: s.size, type: s.isDirectory() ? "directory" : "file" };
    },
  };
}

/**
 * matchpathcon -N -n -f FC -m TYPE over many paths; returns the context per path ("<<none>>" when
 * none). Paths must not hold newlines; matchpathcon lstats each on the host, -m overrides that.
 */
export async function matchpathcon(
  fc: string,
  typeFlag: string,
  paths: readonly string[],
): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < paths.length; i += 3000) {
    const batch = paths.slice(i, i + 3000);
    const text = (await runToolOk("matchpathcon", ["-N", "-n", "-f", fc, "-m", typeFlag, "--", ...batch]))
      .toString("latin1")
      .split("\n");
    text.pop();
    if (text.length !== batch.length)
      throw new Error(`matchpathcon printed ${text.length} lines for ${batch.length} paths`);
    out.push(...text.map((l) => l.trim()));
  }
  return out;
}

/** Strings a spec's expression is likely to match (and near misses), by rewriting common forms. */
export function samplesFor(spec: FileContextSpec): string[] {
  const r = spec.regex;
  const variants = new Set<string>();
  for (const [opt, star, plus, alt] of [
    ["", "x", "xy", 0],
    ["/sub/f.conf", "a/b", "zz", 1],
  ] as const) {
    let s = r;
    s = s.replace(/\(\/\.\*\)\?/g, opt);
    s = s.replace(/\(\.\*\/\)\?/g, alt ? "deep/er/" : "");
    s = s.replace(/\[\[:digit:\]\]/g, "7").replace(/\[\[:alpha:\]\]/g, "q");
    s = s.replace(/\[\^\/\]\*/g, alt ? "ab" : "").replace(/\[\^\/\]\+/g, "ab");
    s = s.replace(/\[\^([^\]]*)\]/g, alt ? "Z" : "k");
    s = s.replace(/\[([^\]^])[^\]]*\]/g, "$1");
    s = s.replace(/\.\*/g, star).replace(/\.\+/g, plus);
    for (let k = 0; k < 4; k++) s = s.replace(/\(([^()|]*)\|[^()]*\)/g, "$1");
    s = s.replace(/\\d/g, "4").replace(/\\w/g, "w");
    s = s.replace(/\(([^()]*)\)\?/g, alt ? "$1" : "").replace(/\(([^()]*)\)\*/g, alt ? "$1$1" : "");
    s = s.replace(/\(([^()]*)\)/g, "$1");
    s = s.replace(/(.)\?/g, alt ? "$1" : "").replace(/(.)\+/g, "$1");
    s = s.replace(/\\(.)/g, "$1");
    if (s.startsWith("/") && !s.includes("\n")) variants.add(s);
  }
  const out = [...variants];
  for (const v of [...variants]) out.push(`${v}/child`, v.replace(/\/[^/]*$/, "") || "/");
  return out;
}
