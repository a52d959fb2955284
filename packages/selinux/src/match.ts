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
 *
 * Laziness (speed, not semantics): the constructor only sorts the specs into buckets by what
 * their first path component must look like (`firstComponentBucket`, a short scan); a spec is
 * analysed and indexed when the first key whose first component could match it is looked up.
 * A one-shot job writing under /opt and /etc never indexes the ~3,000 specs of /usr, /var ….
 */
import type { FileContextSpec } from "./file-contexts.js";
import { S_IFMT } from "./file-contexts.js";
import { LazySpecText } from "./lazy-specs.js";
import {
  analyzeSpec,
  compileSpecRegex,
  hasTopLevelAlternation,
  pathKey,
  translateSpecRegex,
} from "./regex.js";
import { type PathSub, substitutePath } from "./subs.js";

export interface FileContextsSources {
  /** file_contexts (text or compiled; a text may be read lazily). */
  specs: readonly FileContextSpec[] | LazySpecText;
  /** file_contexts.homedirs. */
  homedirs?: readonly FileContextSpec[] | LazySpecText;
  /** file_contexts.local. */
  local?: readonly FileContextSpec[] | LazySpecText;
  /** file_contexts.subs (local equivalences), in lookup order (parseSubs). */
  subs?: readonly PathSub[];
  /** file_contexts.subs_dist. */
  distSubs?: readonly PathSub[];
}

interface Entry {
  spec: FileContextSpec;
  /** Position in load order (file_contexts, .homedirs, .local): among regex specs, later wins. */
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

/** How many lookups of a candidate set test its specs one by one before it becomes an alternation. */
const SEQUENTIAL_TRIES = 2;

/** Buckets of specs a key may meet whatever its first component is. */
const ANY = "*";

/**
 * What the first two path components of every key a spec can match look like, as a bucket name:
 * `=K` — the spec is exactly "/K" (no meta character or escape); `<H` — the first component
 * starts with H (the literal text before the first meta character or escape, less the character
 * a following `?`, `*` or `{` may drop); `=K/S` — the first component is K and the second S (the
 * spec's text up to its third "/" or its end is literal); `=K<H` — the first is K and the second
 * starts with H; `=K*` — the first is K, the second anything; ANY when nothing is known (no
 * literal head, not starting with "/", or a top-level `|`, which unanchors both halves).
 */
export function firstComponentBucket(regex: string): string {
  // the literal runs and the characters that end them (native matches: this runs for every
  // spec at load, before the JIT has warmed up)
  const m = HEAD.exec(regex);
  if (m === null || hasTopLevelAlternation(regex)) return ANY;
  const stop = m[2];
  if (stop === undefined) return `=${m[1]}`;
  if (stop !== "/") {
    const head = stop === "?" || stop === "*" || stop === "{" ? m[1].slice(0, -1) : m[1];
    return head === "" ? ANY : `<${head}`;
  }
  const k = m[1];
  const m2 = HEAD2.exec(regex.slice(k.length + 2));
  const run = m2 ? m2[1] : "";
  const stop2 = m2?.[2];
  if (stop2 === undefined || stop2 === "/") return `=${k}/${run}`;
  const drop = stop2 === "?" || stop2 === "*" || stop2 === "{";
  // "/K/?": the quantifier takes the "/" itself
  if (drop && run === "") return k === "" ? ANY : `<${k}`;
  const head = drop ? run.slice(0, -1) : run;
  return head === "" ? `=${k}*` : `=${k}<${head}`;
}

/** "/", a run without "/", escapes or meta characters, and what ends it (absent: the end). */
const HEAD = /^\/([^/\\.^$?*+|[({]*)([/\\.^$?*+|[({])?/;
/** The same for the text after the first component's "/". */
const HEAD2 = /^([^/\\.^$?*+|[({]*)([/\\.^$?*+|[({])?/;

/** The buckets a key (cleaned, substituted, starting with "/") may meet, ANY included. */
function keyBuckets(bkey: string): string[] {
  const slash = bkey.indexOf("/", 1);
  const first = slash < 0 ? bkey.slice(1) : bkey.slice(1, slash);
  const out = [ANY, `=${first}`, `=${first}*`];
  for (let n = 1; n <= first.length; n++) out.push(`<${first.slice(0, n)}`);
  if (slash >= 0) {
    const end = bkey.indexOf("/", slash + 1);
    const second = end < 0 ? bkey.slice(slash + 1) : bkey.slice(slash + 1, end);
    out.push(`=${first}/${second}`);
    for (let n = 1; n <= second.length; n++) out.push(`=${first}<${second.slice(0, n)}`);
  }
  return out;
}

/** The text between a key's leading "/" and the next one (or its end). */
function firstComponent(key: string): string {
  const slash = key.indexOf("/", 1);
  return slash < 0 ? key.slice(1) : key.slice(1, slash);
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
  private exactOdd: boolean;
  /** Regex specs by their literal prefix (specPrefix), in order; and the distinct prefix lengths, longest first. */
  private readonly byPrefix = new Map<string, Entry[]>();
  private prefixLengths: number[];
  /** Per longest prefix, stem and file type: the candidates as one sticky alternation, last spec first. */
  private readonly combined = new Map<string, { re: RegExp; groups: number[]; entries: Entry[] }>();
  /** Candidate sets used fewer than SEQUENTIAL_TRIES times: their entries and uses so far. */
  private readonly candidateTries = new Map<string, { n: number; entries: Entry[] }>();
  private readonly subs: readonly PathSub[];
  private readonly distSubs: readonly PathSub[];
  /** Specs of array sources not indexed yet, by firstComponentBucket, with their lookup-order index. */
  private readonly unindexed = new Map<string, Array<{ spec: FileContextSpec; index: number }>>();
  /** Text sources read lazily, each with the index its line numbers start from. */
  private readonly lazy: Array<{ src: LazySpecText; base: number }> = [];
  /** Lookup-order indexes of the lazy specs indexed so far. */
  private readonly lazyIndexed = new Set<number>();
  /** Keys' first two components ("/K/S", or "/K") whose buckets are indexed. */
  private readonly indexedFirst = new Set<string>();
  /** lengthsFor's answers, per first component. */
  private readonly lengthsByFirst = new Map<string, number[]>();
  /** The first components of every equivalence source; undefined when one is not absolute. */
  private readonly subFirsts: Set<string> | undefined;
  private everything = false;

  constructor(sources: FileContextsSources) {
    this.regexSpecs = [];
    this.exactSpecs = [];
    this.exactOdd = false;
    this.prefixLengths = [];
    // lookup order: file_contexts, .homedirs, .local; within a file, line order
    let base = 0;
    for (const source of [sources.specs, sources.homedirs, sources.local]) {
      if (source === undefined) continue;
      if (source instanceof LazySpecText) {
        this.lazy.push({ src: source, base });
        base += source.lineBound + 1;
        continue;
      }
      for (let i = 0; i < source.length; i++) {
        const b = firstComponentBucket(source[i].regex);
        const item = { spec: source[i], index: base + i };
        const list = this.unindexed.get(b);
        if (list) list.push(item);
        else this.unindexed.set(b, [item]);
      }
      base += source.length;
    }
    this.subs = sources.subs ?? [];
    this.distSubs = sources.distSubs ?? [];
    const subs = [...this.subs, ...this.distSubs];
    this.subFirsts = subs.every((x) => x.src.startsWith("/"))
      ? new Set(subs.map((x) => firstComponent(x.src)))
      : undefined;
  }

  /** Indexes the specs of these buckets not indexed yet (all with `buckets` undefined). */
  private index(buckets: ReadonlySet<string> | undefined, first: string): void {
    const add: Array<{ spec: FileContextSpec; index: number }> = [];
    for (const [b, list] of this.unindexed) {
      if (buckets && !buckets.has(b)) continue;
      this.unindexed.delete(b);
      for (const item of list) add.push(item);
    }
    for (const { src, base } of this.lazy) {
      const specs = buckets ? [...src.candidates(first.slice(0, 1)), ...src.candidates("")] : src.all();
      for (const spec of specs) {
        const index = base + spec.line;
        if (this.lazyIndexed.has(index)) continue;
        if (buckets && !buckets.has(firstComponentBucket(spec.regex))) continue;
        this.lazyIndexed.add(index);
        add.push({ spec, index });
      }
    }
    if (add.length === 0) return;
    add.sort((a, b) => a.index - b.index);
    const touched = new Set<Entry[]>();
    let exact = false;
    let regex = false;
    for (const { spec, index } of add) {
      const a = analyzeSpec(spec.regex);
      const e: Entry = { spec, index, stem: a.stem };
      if (a.hasMeta) {
        regex = true;
        this.regexSpecs.push(e);
        const list = this.byPrefix.get(a.prefix);
        if (list) {
          list.push(e);
          touched.add(list);
        } else this.byPrefix.set(a.prefix, [e]);
      } else {
        exact = true;
        e.literal = a.literal;
        if (e.literal === undefined) this.exactOdd = true;
        else {
          const list = this.exactByLiteral.get(e.literal);
          if (list) {
            list.push(e);
            touched.add(list);
          } else this.exactByLiteral.set(e.literal, [e]);
        }
        this.exactSpecs.push(e);
      }
    }
    const byIndex = (x: Entry, y: Entry) => x.index - y.index;
    for (const list of touched) list.sort(byIndex);
    if (exact) this.exactSpecs.sort(byIndex);
    if (regex) {
      this.regexSpecs.sort(byIndex);
      const lengths = [...new Set([...this.byPrefix.keys()].map((k) => k.length))].sort((a, b) => b - a);
      this.prefixLengths = lengths;
      this.lengthsByFirst.clear();
      // alternations built before may lack the new specs
      this.combined.clear();
      this.candidateTries.clear();
    }
  }

  /** Indexes what a key (cleaned and substituted) with this first component may meet. */
  private indexFor(bkey: string, first: string): void {
    if (this.everything) return;
    if (bkey.charCodeAt(0) !== 0x2f) {
      this.indexEverything();
      return;
    }
    const slash = bkey.indexOf("/", 1);
    const end = slash < 0 ? -1 : bkey.indexOf("/", slash + 1);
    const firstTwo = end < 0 ? bkey : bkey.slice(0, end);
    if (this.indexedFirst.has(firstTwo)) return;
    this.indexedFirst.add(firstTwo);
    this.index(new Set(keyBuckets(bkey)), first);
  }

  private indexEverything(): void {
    this.index(undefined, "");
    this.everything = true;
  }

  /** Compiles every expression now (so a policy we cannot follow fails at load, not mid-edit). */
  compileAll(): this {
    this.indexEverything();
    for (const e of this.regexSpecs) regexOf(e);
    for (const e of this.exactSpecs) if (e.literal === undefined) regexOf(e);
    return this;
  }

  /**
   * The prefix lengths a key with this first component K can start with: those of prefixes of
   * "/K/" and of prefixes below "/K/" (a few, instead of every length in the policy).
   */
  private lengthsFor(first: string): number[] {
    let out = this.lengthsByFirst.get(first);
    if (out) return out;
    const head = `/${first}/`;
    const set = new Set<number>();
    for (const p of this.byPrefix.keys()) if (head.startsWith(p) || p.startsWith(head)) set.add(p.length);
    out = [...set].sort((a, b) => b - a);
    this.lengthsByFirst.set(first, out);
    return out;
  }

  /** The longest spec prefix `bkey` starts with ("" at least, when any spec has no prefix). */
  private longestPrefix(bkey: string, first: string): string | undefined {
    const lengths = bkey.charCodeAt(0) === 0x2f ? this.lengthsFor(first) : this.prefixLengths;
    for (const n of lengths) {
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
    // an equivalence applies only to keys in its source's first directory
    if (this.subFirsts === undefined || this.subFirsts.has(firstComponent(key)))
      key = substitutePath(this.subs, this.distSubs, key);
    const bkey = pathKey(key);
    const slash = bkey.indexOf("/", 1);
    const first = slash < 0 ? bkey.slice(1) : bkey.slice(1, slash);
    this.indexFor(bkey, first);
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
    const prefix = this.longestPrefix(bkey, first);
    if (prefix === undefined) return undefined;
    const ckey = `${prefix}\0${fileStem}\0${m}`;
    const c = this.combined.get(ckey);
    if (c === undefined) {
      // the first keys of a candidate set try its specs one by one, last first (libselinux's
      // scan), each expression compiled when reached: a key met once (a unit under /etc/systemd)
      // does not pay for translating and compiling an alternation of ~100 specs
      let tries = this.candidateTries.get(ckey);
      if (tries === undefined) {
        tries = { n: 0, entries: this.candidateEntries(prefix, fileStem, m) };
        this.candidateTries.set(ckey, tries);
      }
      if (++tries.n <= SEQUENTIAL_TRIES) {
        for (const e of tries.entries) if (regexOf(e).test(bkey)) return hit(e);
        return undefined;
      }
    }
    const cc = c ?? this.combinedFor(prefix, fileStem, m);
    cc.re.lastIndex = 0;
    const r = cc.re.exec(bkey);
    if (!r) return undefined;
    for (let i = 0; i < cc.groups.length; i++) if (r[cc.groups[i]] !== undefined) return hit(cc.entries[i]);
    return undefined;
  }

  /** The candidates of a longest prefix, stem and file type, last spec first. */
  private candidateEntries(prefix: string, stem: string, m: number): Entry[] {
    return this.candidates(prefix, stem)
      .filter((e) => m === 0 || e.spec.mode === 0 || e.spec.mode === m)
      .reverse();
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
    const entries = this.candidateEntries(prefix, stem, m);
    const parts: string[] = [];
    const groups: number[] = [];
    let next = 1;
    for (const e of entries) {
      const t = translateSpecRegex(e.spec.regex, e.spec.file, e.spec.line);
      groups.push(next);
      next += 1 + t.captures;
      // `^A|B$`: libselinux searches unanchored, so B may match after any lead (the sticky
      // alternation only tries position 0)
      parts.push(hasTopLevelAlternation(e.spec.regex) ? `([^]*?(?:${t.source}))` : `(${t.source})`);
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
