/**
 * Which spec labels a path: libselinux's file backend (label_file.c, the 3.x array form that
 * matchpathcon/setfiles/rpm use up to libselinux 3.7).
 *
 * - The specs are file_contexts, then file_contexts.homedirs, then file_contexts.local, in file
 *   order; then every spec without meta characters (`.^$?*+|[({` outside an escape) is moved
 *   after all the others, keeping their relative order (sort_specs).
 * - A lookup cleans the key (runs of "/" collapse, one trailing "/" goes), applies the path
 *   equivalences (subs.ts), and scans the specs from the LAST to the first: the first spec whose
 *   stem fits, whose file type is 0 or the file's, and whose anchored expression matches wins.
 *   So an exact path beats every expression, and among expressions the later line wins.
 * - The stem is the spec's first path component when it has no meta character ("/usr"); such a
 *   spec is only tried for keys with the same first component. A key in the root directory ("/x")
 *   has no stem and only meets specs without one.
 * - A winning `<<none>>` means "no label" (null), and so does no match at all.
 *
 * Speed (not semantics): expressions are indexed by a literal prefix every match must start
 * with (`specPrefix`); a key only meets the specs whose prefix it starts with, so `/opt/x/y.py`
 * is tried against ~20 of refpolicy's ~2,400 expressions instead of the ~70 of stem /opt and
 * none of the others. Each such candidate set (per longest matching prefix, stem and file type)
 * is one alternation, built and compiled on first use.
 */
import type { FileContextSpec } from "./file-contexts.js";
import { S_IFMT } from "./file-contexts.js";
import { analyzeSpec, compileSpecRegex, pathKey, translateSpecRegex } from "./regex.js";
import { type PathSub, substitutePath } from "./subs.js";

export interface FileContextsSources {
  /** file_contexts (text or compiled). */
  specs: readonly FileContextSpec[];
  /** file_contexts.homedirs. */
  homedirs?: readonly FileContextSpec[];
  /** file_contexts.local. */
  local?: readonly FileContextSpec[];
  /** file_contexts.subs (local equivalences), in lookup order (parseSubs). */
  subs?: readonly PathSub[];
  /** file_contexts.subs_dist. */
  distSubs?: readonly PathSub[];
}

interface Entry {
  spec: FileContextSpec;
  /** Position among the regex specs (later wins). */
  index: number;
  stem: string;
  /** Set for meta-free specs whose escapes are all plain: compared as a string. */
  literal?: string;
  re?: RegExp;
}

export interface LabelMatch {
  /** The context to set, or null (`<<none>>`: leave the file alone). */
  context: string | null;
  spec: FileContextSpec;
  /** The key after cleaning and equivalences, as matched. */
  key: string;
}

function regexOf(e: Entry): RegExp {
  e.re ??= compileSpecRegex(e.spec.regex, e.spec.file, e.spec.line);
  return e.re;
}

/** libselinux's key cleaning: collapse "//" runs, drop one trailing "/". */
export function cleanKey(path: string): string {
  let key = path.includes("//") ? path.replace(/\/{2,}/g, "/") : path;
  if (key.length > 1 && key.endsWith("/")) key = key.slice(0, -1);
  return key;
}

export class FileContexts {
  /** Meta-character specs, in order. */
  private readonly regexSpecs: Entry[];
  /** Meta-free specs (after all regex specs), in order. */
  private readonly exactSpecs: Entry[];
  private readonly exactByLiteral = new Map<string, Entry[]>();
  /** Meta-free specs that still need the expression (an escape like \d). */
  private readonly exactOdd: boolean;
  /** Regex specs by their literal prefix (specPrefix), in order; and the distinct prefix lengths, longest first. */
  private readonly byPrefix = new Map<string, Entry[]>();
  private readonly prefixLengths: number[];
  /** Per longest prefix, stem and file type: the candidates as one sticky alternation, last spec first. */
  private readonly combined = new Map<string, { re: RegExp; groups: number[]; entries: Entry[] }>();
  private readonly subs: readonly PathSub[];
  private readonly distSubs: readonly PathSub[];
  /** Every spec, in lookup order (for checks and `compileAll`). */
  readonly size: number;

  constructor(sources: FileContextsSources) {
    const all = [...sources.specs, ...(sources.homedirs ?? []), ...(sources.local ?? [])];
    this.regexSpecs = [];
    this.exactSpecs = [];
    let odd = false;
    for (const spec of all) {
      const a = analyzeSpec(spec.regex);
      const e: Entry = { spec, index: 0, stem: a.stem };
      if (a.hasMeta) {
        e.index = this.regexSpecs.length;
        this.regexSpecs.push(e);
        const list = this.byPrefix.get(a.prefix);
        if (list) list.push(e);
        else this.byPrefix.set(a.prefix, [e]);
      } else {
        e.literal = a.literal;
        if (e.literal === undefined) odd = true;
        else {
          const list = this.exactByLiteral.get(e.literal) ?? [];
          list.push(e);
          this.exactByLiteral.set(e.literal, list);
        }
        this.exactSpecs.push(e);
      }
    }
    this.exactOdd = odd;
    this.prefixLengths = [...new Set([...this.byPrefix.keys()].map((k) => k.length))].sort((a, b) => b - a);
    this.size = all.length;
    this.subs = sources.subs ?? [];
    this.distSubs = sources.distSubs ?? [];
  }

  /** Compiles every expression now (so a policy we cannot follow fails at load, not mid-edit). */
  compileAll(): this {
    for (const e of this.regexSpecs) regexOf(e);
    for (const e of this.exactSpecs) if (e.literal === undefined) regexOf(e);
    return this;
  }

  /** The longest spec prefix `bkey` starts with ("" at least, when any spec has no prefix). */
  private longestPrefix(bkey: string): string | undefined {
    for (const n of this.prefixLengths) {
      if (n > bkey.length) continue;
      const p = n === bkey.length ? bkey : bkey.slice(0, n);
      if (this.byPrefix.has(p)) return p;
    }
    return undefined;
  }

  /** The regex specs a key with this longest prefix and stem can meet, in order. */
  private candidates(prefix: string, stem: string): Entry[] {
    const out: Entry[] = [];
    for (const n of this.prefixLengths) {
      if (n > prefix.length) continue;
      const list = this.byPrefix.get(n === prefix.length ? prefix : prefix.slice(0, n));
      if (list) for (const e of list) if (e.stem === "" || e.stem === stem) out.push(e);
    }
    return out.sort((a, b) => a.index - b.index);
  }

  /**
   * The spec deciding `path`'s label; `mode` is the file's st_mode (only S_IFMT counts; 0 =
   * any type, as matchpathcon without -m). Undefined when nothing matches.
   */
  match(path: string, mode = 0): LabelMatch | undefined {
    if (path === "") return undefined;
    let key = cleanKey(path);
    key = substitutePath(this.subs, this.distSubs, key);
    const bkey = pathKey(key);
    const slash = bkey.indexOf("/", 1);
    const fileStem = slash < 0 ? "" : bkey.slice(0, slash);
    const m = mode & S_IFMT;
    const fits = (e: Entry) =>
      (e.stem === "" || e.stem === fileStem) && (m === 0 || e.spec.mode === 0 || e.spec.mode === m);
    const hit = (e: Entry): LabelMatch => ({ context: e.spec.context, spec: e.spec, key });
    if (this.exactOdd) {
      for (let i = this.exactSpecs.length - 1; i >= 0; i--) {
        const e = this.exactSpecs[i];
        if (!fits(e)) continue;
        if (e.literal !== undefined ? e.literal === bkey : regexOf(e).test(bkey)) return hit(e);
      }
    } else {
      const list = this.exactByLiteral.get(bkey);
      if (list)
        for (let i = list.length - 1; i >= 0; i--) {
          if (fits(list[i])) return hit(list[i]);
        }
    }
    const prefix = this.longestPrefix(bkey);
    if (prefix === undefined) return undefined;
    const c = this.combinedFor(prefix, fileStem, m);
    c.re.lastIndex = 0;
    const r = c.re.exec(bkey);
    if (!r) return undefined;
    for (let i = 0; i < c.groups.length; i++) if (r[c.groups[i]] !== undefined) return hit(c.entries[i]);
    return undefined;
  }

  /**
   * The candidates of a stem and file type (last spec first) as one anchored alternation: the
   * engine tries the alternatives in order, so the first that matches is the spec libselinux's
   * backward scan would stop at — one exec instead of hundreds of tests.
   */
  private combinedFor(
    prefix: string,
    stem: string,
    m: number,
  ): { re: RegExp; groups: number[]; entries: Entry[] } {
    const key = `${prefix}\0${stem}\0${m}`;
    let c = this.combined.get(key);
    if (c) return c;
    const entries = this.candidates(prefix, stem)
      .filter((e) => m === 0 || e.spec.mode === 0 || e.spec.mode === m)
      .reverse();
    const parts: string[] = [];
    const groups: number[] = [];
    let next = 1;
    for (const e of entries) {
      const t = translateSpecRegex(e.spec.regex, e.spec.file, e.spec.line);
      groups.push(next);
      next += 1 + t.captures;
      parts.push(`(${t.source})`);
    }
    // (?!) never matches: an empty candidate list
    c = { re: new RegExp(parts.length ? parts.join("|") : "(?!)", "sy"), groups, entries };
    this.combined.set(key, c);
    return c;
  }

  /** The context for `path` (null: no label — `<<none>>` or no spec). */
  lookup(path: string, mode = 0): string | null {
    return this.match(path, mode)?.context ?? null;
  }
}
