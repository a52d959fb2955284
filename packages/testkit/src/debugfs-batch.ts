// Many debugfs reads in one debugfs process. A tree check that asks for stat, contents, xattrs and
// listings of every path spawned ~5 debugfs processes per path (each opening the filesystem anew):
// under load that is ~100 ms a process, most of the ext4 suite's time. Here the same commands run
// from one command file and the answers are exactly what the one-path functions return; whenever
// debugfs reports any error, every answer comes from those functions instead, so failures read
// the same as before.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  catToSize,
  type DebugfsDirEntry,
  type DebugfsStat,
  debugfsCat,
  debugfsLs,
  debugfsQuote,
  debugfsRaw,
  debugfsStat,
  debugfsXattrs,
  type FsTarget,
  isSlowSymlink,
  parseDebugfsLs,
  parseDebugfsStat,
  parseEaListNames,
} from "./e2fs.js";
import { tempDir } from "./temp.js";

/** What to read: paths to stat, to read (`cat`), whose xattrs to read, directories to list. */
export interface DebugfsBatchRequest {
  stat?: readonly string[];
  cat?: readonly string[];
  xattrs?: readonly string[];
  ls?: readonly string[];
}

/**
 * Run `commands` in one debugfs (`-f -`, which echoes `debugfs: <command>` before each output) and
 * split stdout at the echoes. Undefined when debugfs reported an error or the echoes are not all
 * there in order (then the caller asks one command at a time).
 */
async function runBatch(target: FsTarget, commands: readonly string[]): Promise<string[] | undefined> {
  if (commands.length === 0) return [];
  const r = await debugfsRaw(target, commands);
  if (r.exitCode !== 0 || r.stderr !== "") return undefined;
  const out = r.stdout.toString("utf8");
  if (commands.length === 1) return [out]; // one command goes through -R: no echo
  const parts: string[] = [];
  let start = 0;
  for (const [i, c] of commands.entries()) {
    const marker = `debugfs: ${c}\n`;
    // The echo starts a line at or after the previous output's start.
    let at = out.indexOf(marker, start);
    while (at > 0 && out[at - 1] !== "\n") at = out.indexOf(marker, at + 1);
    if (at < 0 || (i === 0 && at !== 0)) return undefined;
    if (i > 0) parts.push(out.slice(start, at));
    start = at + marker.length;
  }
  parts.push(out.slice(start));
  return parts;
}

/** The answers of one batch; each getter returns what the corresponding debugfs* function would. */
export class DebugfsBatch {
  private constructor(
    private readonly target: FsTarget,
    private readonly stats: Map<string, DebugfsStat> | undefined,
    private readonly cats: Map<string, Buffer> | undefined,
    private readonly xattrMap: Map<string, Record<string, Buffer>> | undefined,
    private readonly lists: Map<string, DebugfsDirEntry[]> | undefined,
  ) {}

  /** Read everything `req` names, in two debugfs processes (the second for xattr values and slow symlinks). */
  static async read(target: FsTarget, req: DebugfsBatchRequest): Promise<DebugfsBatch> {
    const statPaths = [...new Set([...(req.stat ?? []), ...(req.cat ?? [])])];
    const catPaths = [...new Set(req.cat ?? [])];
    const xattrPaths = [...new Set(req.xattrs ?? [])];
    const lsDirs = [...new Set(req.ls ?? [])];
    const dir = await tempDir("imgpatch-dfsbatch-");
    const file = (kind: string, i: number) => join(dir, `${kind}${i}`);
    const q = debugfsQuote;
    const first = [
      ...statPaths.map((p) => `stat ${q(p)}`),
      ...lsDirs.map((d) => `ls -p ${q(d)}`),
      ...xattrPaths.map((p) => `ea_list ${q(p)}`),
      ...catPaths.map((p, i) => `dump ${q(p)} ${q(file("cat", i))}`),
    ];
    const fail = () => new DebugfsBatch(target, undefined, undefined, undefined, undefined);
    const a = await runBatch(target, first);
    if (!a) return fail();
    const stats = new Map<string, DebugfsStat>();
    const lists = new Map<string, DebugfsDirEntry[]>();
    const names = new Map<string, string[]>();
    let k = 0;
    try {
      for (const p of statPaths) stats.set(p, parseDebugfsStat(a[k++] as string));
      for (const d of lsDirs) lists.set(d, parseDebugfsLs(a[k++] as string));
      for (const p of xattrPaths) names.set(p, parseEaListNames(a[k++] as string));
    } catch {
      return fail();
    }
    // Second pass: attribute values (ea_get -f, as debugfsXattrs) and slow symlinks' targets.
    const slow = [...stats].filter(([, st]) => isSlowSymlink(st)).map(([p]) => p);
    const gets: [string, string, string][] = [];
    for (const [p, ns] of names) for (const n of ns) gets.push([p, n, file("xa", gets.length)]);
    const second = [
      ...gets.map(([p, n, f]) => `ea_get -f ${q(f)} ${q(p)} ${q(n)}`),
      ...slow.map((p, i) => `dump ${q(p)} ${q(file("link", i))}`),
    ];
    if (!(await runBatch(target, second))) return fail();
    const xattrMap = new Map<string, Record<string, Buffer>>();
    for (const p of xattrPaths) xattrMap.set(p, {});
    for (const [p, n, f] of gets) (xattrMap.get(p) as Record<string, Buffer>)[n] = await readFile(f);
    for (const [i, p] of slow.entries()) {
      const st = stats.get(p) as DebugfsStat;
      st.linkTarget = catToSize(await readFile(file("link", i)), st).toString("utf8");
    }
    const cats = new Map<string, Buffer>();
    for (const [i, p] of catPaths.entries()) {
      cats.set(p, catToSize(await readFile(file("cat", i)), stats.get(p) as DebugfsStat));
    }
    return new DebugfsBatch(target, stats, cats, xattrMap, lists);
  }

  /** True when the answers came from the batch (false: debugfs reported an error, see the class). */
  get batched(): boolean {
    return this.stats !== undefined;
  }

  /** As debugfsStat. */
  stat(path: string): Promise<DebugfsStat> {
    const st = this.stats?.get(path);
    return st ? Promise.resolve(st) : debugfsStat(this.target, path);
  }

  /** As debugfsCat. */
  cat(path: string): Promise<Buffer> {
    const b = this.cats?.get(path);
    return b ? Promise.resolve(b) : debugfsCat(this.target, path);
  }

  /** As debugfsXattrs. */
  xattrs(path: string): Promise<Record<string, Buffer>> {
    const x = this.xattrMap?.get(path);
    return x ? Promise.resolve(x) : debugfsXattrs(this.target, path);
  }

  /** As debugfsLs. */
  ls(dir: string): Promise<DebugfsDirEntry[]> {
    const l = this.lists?.get(dir);
    return l ? Promise.resolve(l) : debugfsLs(this.target, dir);
  }
}
