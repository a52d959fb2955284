/**
 * primary.xml scanned as bytes, specialised to its shape (see primary.ts for the layout). The
 * general tokenizer (xml.ts) decodes the whole document into strings and builds an attribute
 * record per tag; on a 20,000-package primary that was most of the parse time and, through the
 * slices, kept the decompressed text alive. Here the decompressed bytes are scanned one top-level
 * element (a `<package>`) at a time with `indexOf`, attributes are read only for the elements the
 * solver needs, and only the values kept become strings (fresh, so no chunk stays referenced).
 *
 * Checked as the tokenizer checks: UTF-8, element nesting and names matching, attribute syntax,
 * entities, no DOCTYPE, one root, limits (depth, text length, element size, total bytes). Not
 * checked, because nothing reads them: repeated attributes and `<` in values of ignored elements.
 * Every failure is a RepoFormatError (or RepoLimitError) naming the file and a byte offset.
 */
import { isAscii, isUtf8 } from "node:buffer";
import {
  type Dep,
  depFromParts,
  SENSE_EQUAL,
  SENSE_GREATER,
  SENSE_LESS,
  simpleDep,
  xmlFlags,
} from "./dep.js";
import { RepoFormatError, RepoLimitError } from "./errors.js";
import type { PackageMeta } from "./package-meta.js";
import type { Evr } from "./rpmvercmp.js";
import { decodeEntities, isNameChar, isNameStart, isSpace, Malformed } from "./xml.js";

export interface ScanLimits {
  maxPackages: number;
  maxEntries: number;
  /** Longest kept text (a name, a file path). */
  maxText: number;
  /** Largest top-level element (one package) held in memory at once. */
  maxElement: number;
  /** Deepest nesting, the root included. */
  maxDepth: number;
  /** Decompressed bytes in total. */
  maxBytes: number;
}

const LT = 0x3c;
const GT = 0x3e;
const SLASH = 0x2f;
const BANG = 0x21;
const QMARK = 0x3f;
const EQ = 0x3d;
const DQUOTE = 0x22;
const SQUOTE = 0x27;
const AMP = 0x26;

const DEP_FIELDS = new Set<string>([
  "rpm:provides",
  "rpm:requires",
  "rpm:conflicts",
  "rpm:obsoletes",
  "rpm:recommends",
  "rpm:suggests",
  "rpm:supplements",
  "rpm:enhances",
]);
type DepField =
  | "provides"
  | "requires"
  | "conflicts"
  | "obsoletes"
  | "recommends"
  | "suggests"
  | "supplements"
  | "enhances";

/** Elements whose attributes are read; every other element's are only skipped over. */
const WANTS_ATTRS = new Set<string>(["version", "checksum", "location", "size", "rpm:entry"]);

/** Shared by every package without such entries; replaced (never pushed to) when entries come. */
const NO_DEPS: Dep[] = Object.freeze([]) as unknown as Dep[];
const NO_FILES: string[] = Object.freeze([]) as unknown as string[];

/** Tag names seen so far (a few dozen in metadata), so a repeated name costs a comparison. */
class ByteNames {
  private readonly byKey = new Map<number, string[]>();
  private size = 0;
  get(b: Buffer, from: number, to: number): string {
    const key = (to - from) * 0x10000 + b[from]! * 0x100 + b[to - 1]!;
    const list = this.byKey.get(key);
    if (list !== undefined) for (const s of list) if (sameAscii(b, from, to, s)) return s;
    const s = b.toString("utf8", from, to);
    if (this.size < 512 && isAsciiString(s)) {
      this.size++;
      if (list === undefined) this.byKey.set(key, [s]);
      else list.push(s);
    }
    return s;
  }
}

function isAsciiString(s: string): boolean {
  for (let k = 0; k < s.length; k++) if (s.charCodeAt(k) > 0x7f) return false;
  return true;
}

/** Are bytes [from, to) the ASCII string `s`? (`s` must be ASCII.) */
function sameAscii(b: Buffer, from: number, to: number, s: string): boolean {
  if (to - from !== s.length) return false;
  for (let k = 0; k < s.length; k++) if (b[from + k] !== s.charCodeAt(k)) return false;
  return true;
}

/** Thrown when the buffer ends inside the element being scanned: wait for more bytes. */
const INCOMPLETE = -1;

class Scanner {
  private readonly names = new ByteNames();
  private readonly stack: string[] = [];
  // The current tag's attributes: name, value start, value end (raw bytes, quotes excluded).
  private attrCount = 0;
  private readonly attrNames: string[] = [];
  private readonly attrFrom: number[] = [];
  private readonly attrTo: number[] = [];
  private b: Buffer = Buffer.alloc(0);
  private ascii = true;
  /** Bytes consumed before the current buffer, for error offsets. */
  consumed = 0;
  /** Position of the token being read in the current buffer. */
  at = 0;
  count = 0;
  state: "prolog" | "root" | "epilog" = "prolog";

  // The package being read.
  private p: PackageMeta | null = null;
  private entries = 0;
  private depList: Dep[] | null = null;
  private field: "name" | "arch" | "checksum" | "file" | null = null;
  private text = "";
  private checksumType = "";
  // The package's <version> attribute ranges in the current buffer (provides reuse its Evr).
  private vEpoch0 = -1;
  private vEpoch1 = -1;
  private vVer0 = -1;
  private vVer1 = -1;
  private vRel0 = -1;
  private vRel1 = -1;
  // The last Evr built for an entry (requirements of one package often repeat it).
  private lastEvr: Evr | null = null;

  constructor(
    private readonly repo: string,
    private readonly where: string,
    private readonly limits: ScanLimits,
    private readonly onPackage: (p: PackageMeta) => void,
  ) {}

  private fail(msg: string, limit = false): never {
    const m = `package ${this.count + 1}${this.p?.name ? ` (${this.p.name})` : ""}: ${msg}`;
    throw limit ? new RepoLimitError(m, { file: this.where }) : new RepoFormatError(m, { file: this.where });
  }

  private str(from: number, to: number): string {
    const b = this.b;
    const s = b.toString(this.ascii ? "latin1" : "utf8", from, to);
    return hasByte(b, AMP, from, to) ? decodeEntities(s) : s;
  }

  /**
   * Scan `b` (already UTF-8-checked but for an incomplete sequence at its end); returns how many bytes were consumed. The
   * rest is an incomplete element, handed back with more bytes; with `final` there is no rest.
   */
  run(b: Buffer, ascii: boolean, final: boolean): number {
    this.b = b;
    this.ascii = ascii;
    const n = b.length;
    let i = 0;
    while (i < n) {
      this.at = i;
      const c = b[i]!;
      if (c !== LT) {
        if (this.state !== "root") {
          if (!isSpace(c))
            throw new Malformed(`text ${this.state === "prolog" ? "before" : "after"} the root element`);
          i++;
          continue;
        }
        // Text directly inside <metadata>: ignored.
        const j = b.indexOf(LT, i);
        if (j < 0) return final ? n : i;
        i = j;
        continue;
      }
      if (i + 1 >= n) {
        if (final) throw new Malformed("document ends inside a tag");
        return i;
      }
      const c1 = b[i + 1]!;
      let next: number;
      if (c1 === QMARK) next = this.skipPast(i + 2, "?>");
      else if (c1 === BANG) next = this.bang(i, final, false);
      else if (c1 === SLASH) next = this.rootEnd(i);
      else if (this.state === "prolog") next = this.rootStart(i);
      else if (this.state === "epilog") throw new Malformed("element after the root element");
      else next = this.element(i);
      if (next === INCOMPLETE) {
        if (final) {
          throw new Malformed(
            this.stack.length > 0
              ? `unclosed element <${this.stack[this.stack.length - 1]}>`
              : "document ends inside a tag",
          );
        }
        this.stack.length = 0;
        this.abandonPackage();
        return i;
      }
      i = next;
    }
    return n;
  }

  private abandonPackage(): void {
    this.p = null;
    this.depList = null;
    this.field = null;
    this.text = "";
  }

  private skipPast(from: number, end: string): number {
    const k = this.b.indexOf(end, from, "latin1");
    return k < 0 ? INCOMPLETE : k + end.length;
  }

  private bang(i: number, final: boolean, inElement: boolean): number {
    const b = this.b;
    if (sameAscii(b, i, Math.min(i + 4, b.length), "<!--")) return this.skipPast(i + 4, "-->");
    if (sameAscii(b, i, Math.min(i + 9, b.length), "<![CDATA[")) {
      if (this.state !== "root") throw new Malformed("CDATA outside the root element");
      const k = b.indexOf("]]>", i + 9, "latin1");
      if (k < 0) return INCOMPLETE;
      if (inElement && this.field !== null)
        this.addText(b.toString(this.ascii ? "latin1" : "utf8", i + 9, k));
      return k + 3;
    }
    if (!final && b.length - i < 9) return INCOMPLETE;
    throw new Malformed("document type declarations are not accepted");
  }

  private rootStart(i: number): number {
    const end = this.tag(i, false);
    if (end === INCOMPLETE) return INCOMPLETE;
    const name = this.tagName;
    if (name !== "metadata")
      throw new RepoFormatError(`root element <${name}>, not <metadata>`, { file: this.where });
    this.state = this.tagSelfClosing ? "epilog" : "root";
    return end;
  }

  private rootEnd(i: number): number {
    const b = this.b;
    const gt = b.indexOf(GT, i + 2);
    if (gt < 0) return INCOMPLETE;
    let e = gt;
    while (e > i + 2 && isSpace(b[e - 1]!)) e--;
    if (this.state !== "root") throw new Malformed("end tag without an open element");
    if (!sameAscii(b, i + 2, e, "metadata"))
      throw new Malformed(`</${b.toString("utf8", i + 2, Math.min(e, i + 42))}> closes <metadata>`);
    this.state = "epilog";
    return gt + 1;
  }

  // The last tag read by tag(): its name and whether it was `<x/>`.
  private tagName = "";
  private tagSelfClosing = false;

  /** Read a start tag at `i`; attributes are recorded when `keep`. Returns the index after `>`. */
  private tag(i: number, keep: boolean): number {
    const b = this.b;
    const n = b.length;
    let j = i + 1;
    if (!isNameStart(b[j]!)) throw new Malformed("bad element name");
    while (j < n && isNameChar(b[j]!)) j++;
    if (j >= n) return INCOMPLETE;
    const name = this.names.get(b, i + 1, j);
    const wants = keep && WANTS_ATTRS.has(name);
    this.attrCount = 0;
    for (;;) {
      const sp = j;
      while (j < n && isSpace(b[j]!)) j++;
      if (j >= n) return INCOMPLETE;
      const c = b[j]!;
      if (c === SLASH || c === GT) {
        let selfClosing = false;
        if (c === SLASH) {
          if (j + 1 >= n) return INCOMPLETE;
          if (b[j + 1] !== GT) throw new Malformed(`bad tag <${name}>`);
          selfClosing = true;
          j++;
        }
        if (j - i > this.limits.maxText)
          throw new RepoLimitError(`XML tag longer than ${this.limits.maxText} bytes`, { file: this.where });
        this.tagName = name;
        this.tagSelfClosing = selfClosing;
        return j + 1;
      }
      if (sp === j) throw new Malformed(`missing space between attributes of <${name}>`);
      const a0 = j;
      if (!isNameStart(c)) throw new Malformed(`bad attribute in <${name}>`);
      while (j < n && isNameChar(b[j]!)) j++;
      const a1 = j;
      while (j < n && isSpace(b[j]!)) j++;
      if (j >= n) return INCOMPLETE;
      if (b[j] !== EQ) throw new Malformed(`attribute without a value in <${name}>`);
      j++;
      while (j < n && isSpace(b[j]!)) j++;
      if (j >= n) return INCOMPLETE;
      const q = b[j]!;
      if (q !== DQUOTE && q !== SQUOTE) throw new Malformed(`unquoted attribute in <${name}>`);
      const close = b.indexOf(q, j + 1);
      if (close < 0) return INCOMPLETE;
      if (wants) {
        const k = this.attrCount++;
        this.attrNames[k] = this.names.get(b, a0, a1);
        this.attrFrom[k] = j + 1;
        this.attrTo[k] = close;
      }
      j = close + 1;
    }
  }

  private attrIndex(name: string): number {
    for (let k = 0; k < this.attrCount; k++) if (this.attrNames[k] === name) return k;
    return -1;
  }

  /** An attribute's value as the tokenizer gives it (whitespace normalised, entities replaced). */
  private attr(name: string): string | undefined {
    const k = this.attrIndex(name);
    if (k < 0) return undefined;
    return this.attrValueAt(this.attrFrom[k]!, this.attrTo[k]!);
  }

  private attrValueAt(from: number, to: number): string {
    const b = this.b;
    let special = false;
    for (let k = from; k < to; k++) {
      const c = b[k]!;
      if (c === LT) throw new Malformed("'<' in an attribute value");
      if (c === AMP || c === 0x09 || c === 0x0a || c === 0x0d) special = true;
    }
    const s = b.toString(this.ascii ? "latin1" : "utf8", from, to);
    // Attribute-value normalisation: literal whitespace characters become spaces (before entities).
    return special ? decodeEntities(s.replace(/[\t\n\r]/g, " ")) : s;
  }

  /** One element directly inside <metadata> (normally a package), through its end tag. */
  private element(i0: number): number {
    const b = this.b;
    const n = b.length;
    const stack = this.stack;
    stack.length = 0;
    let i = i0;
    for (;;) {
      if (i >= n) return INCOMPLETE;
      this.at = i;
      if (b[i] !== LT) {
        const j = b.indexOf(LT, i);
        if (j < 0) return INCOMPLETE;
        if (this.field !== null) this.addText(this.str(i, j));
        i = j;
        continue;
      }
      if (i + 1 >= n) return INCOMPLETE;
      const c1 = b[i + 1]!;
      if (c1 === SLASH) {
        const gt = b.indexOf(GT, i + 2);
        if (gt < 0) return INCOMPLETE;
        let e = gt;
        while (e > i + 2 && isSpace(b[e - 1]!)) e--;
        const open = stack.pop()!;
        if (!sameAscii(b, i + 2, e, open) && b.toString("utf8", i + 2, e) !== open)
          throw new Malformed(`</${b.toString("utf8", i + 2, Math.min(e, i + 42))}> closes <${open}>`);
        this.close(open);
        i = gt + 1;
        if (stack.length === 0) return i;
        continue;
      }
      if (c1 === QMARK) {
        i = this.skipPast(i + 2, "?>");
        if (i === INCOMPLETE) return INCOMPLETE;
        continue;
      }
      if (c1 === BANG) {
        i = this.bang(i, false, true);
        if (i === INCOMPLETE) return INCOMPLETE;
        continue;
      }
      const end = this.tag(i, this.p !== null || stack.length === 0);
      if (end === INCOMPLETE) return INCOMPLETE;
      const name = this.tagName;
      // +1: <metadata> is open around us.
      if (stack.length + 1 >= this.limits.maxDepth) {
        throw new RepoLimitError(`XML nested deeper than ${this.limits.maxDepth}`, {
          file: this.where,
          offset: this.consumed + i,
        });
      }
      stack.push(name);
      this.open(name, stack.length);
      if (this.tagSelfClosing) {
        stack.pop();
        this.close(name);
        if (stack.length === 0) return end;
      }
      i = end;
    }
  }

  private addText(t: string): void {
    this.text = this.text.length === 0 ? t : this.text + t;
    if (this.text.length > this.limits.maxText)
      throw new RepoLimitError(`XML text longer than ${this.limits.maxText} characters`, {
        file: this.where,
      });
  }

  private open(name: string, depth: number): void {
    if (depth === 1) {
      if (name !== "package") return;
      if (this.count >= this.limits.maxPackages)
        throw new RepoLimitError(`more than ${this.limits.maxPackages} packages`, { file: this.where });
      this.p = newPackage(this.repo);
      this.entries = 0;
      this.vVer0 = -1;
      return;
    }
    const p = this.p;
    if (p === null) return;
    switch (name) {
      case "package":
        this.fail("<package> inside <package>");
        break;
      case "name":
      case "arch":
      case "file":
        this.field = name;
        this.text = "";
        return;
      case "checksum":
        this.field = "checksum";
        this.checksumType = this.attr("type") ?? "";
        this.text = "";
        return;
      case "version": {
        const v = this.attrIndex("ver");
        if (v < 0) this.fail("<version> without ver");
        const e = this.attrIndex("epoch");
        const r = this.attrIndex("rel");
        p.evr = {
          epoch: e < 0 ? "" : this.attrValueAt(this.attrFrom[e]!, this.attrTo[e]!),
          version: this.attrValueAt(this.attrFrom[v]!, this.attrTo[v]!),
          release: r < 0 ? "" : this.attrValueAt(this.attrFrom[r]!, this.attrTo[r]!),
        };
        this.vEpoch0 = e < 0 ? -1 : this.attrFrom[e]!;
        this.vEpoch1 = e < 0 ? -1 : this.attrTo[e]!;
        this.vVer0 = this.attrFrom[v]!;
        this.vVer1 = this.attrTo[v]!;
        this.vRel0 = r < 0 ? -1 : this.attrFrom[r]!;
        this.vRel1 = r < 0 ? -1 : this.attrTo[r]!;
        return;
      }
      case "location":
        p.location = this.attr("href") ?? "";
        return;
      case "size": {
        const s = this.attr("package");
        p.size = s !== undefined && /^\d{1,15}$/.test(s) ? Number(s) : 0;
        return;
      }
      case "rpm:entry":
        this.entry();
        return;
      default:
        if (DEP_FIELDS.has(name)) {
          const f = name.slice(4) as DepField;
          // A repeated list (<rpm:requires> twice) adds to the first.
          if (p[f] === NO_DEPS) p[f] = [];
          this.depList = p[f];
        }
    }
  }

  private entry(): void {
    const list = this.depList;
    if (list === null) return;
    if (++this.entries > this.limits.maxEntries)
      this.fail(`more than ${this.limits.maxEntries} dependency entries`, true);
    const b = this.b;
    const k = this.attrIndex("name");
    if (k < 0 || this.attrFrom[k] === this.attrTo[k]) this.fail("dependency entry without a name");
    const n0 = this.attrFrom[k]!;
    // rpmlib() requirements are rpm's own, not the solver's.
    if (sameAscii(b, n0, Math.min(n0 + 7, this.attrTo[k]!), "rpmlib(")) return;
    const name = this.attrValueAt(n0, this.attrTo[k]!);
    const fk = this.attrIndex("flags");
    let flags = 0;
    if (fk >= 0) {
      const f0 = this.attrFrom[fk]!;
      flags = this.attrTo[fk]! - f0 === 2 ? flagBits(b[f0]!, b[f0 + 1]!) : -1;
      if (flags < 0) flags = xmlFlags(this.attrValueAt(f0, this.attrTo[fk]!), this.where);
    }
    const evr = this.entryEvr();
    list.push(
      name.charCodeAt(0) === 0x28 ? depFromParts(name, flags, evr, this.where) : simpleDep(name, flags, evr),
    );
  }

  /** The entry's EVR, or null without `ver`; shares the package's or the previous entry's when equal. */
  private entryEvr(): Evr | null {
    const v = this.attrIndex("ver");
    if (v < 0) return null;
    const b = this.b;
    const e = this.attrIndex("epoch");
    const r = this.attrIndex("rel");
    const e0 = e < 0 ? -1 : this.attrFrom[e]!;
    const e1 = e < 0 ? -1 : this.attrTo[e]!;
    const r0 = r < 0 ? -1 : this.attrFrom[r]!;
    const r1 = r < 0 ? -1 : this.attrTo[r]!;
    const v0 = this.attrFrom[v]!;
    const v1 = this.attrTo[v]!;
    const p = this.p!;
    if (
      this.vVer0 >= 0 &&
      sameRange(b, v0, v1, this.vVer0, this.vVer1) &&
      sameRange(b, e0, e1, this.vEpoch0, this.vEpoch1) &&
      sameRange(b, r0, r1, this.vRel0, this.vRel1)
    )
      return p.evr;
    const last = this.lastEvr;
    if (
      last !== null &&
      sameAscii(b, v0, v1, last.version) &&
      (e < 0 ? last.epoch === "" : sameAscii(b, e0, e1, last.epoch) && last.epoch !== "") &&
      (r < 0 ? last.release === "" : sameAscii(b, r0, r1, last.release) && last.release !== "")
    )
      return last;
    const evr: Evr = {
      epoch: e < 0 ? "" : this.attrValueAt(e0, e1),
      version: this.attrValueAt(v0, v1),
      release: r < 0 ? "" : this.attrValueAt(r0, r1),
    };
    // Only plain ASCII values are compared byte for byte later.
    this.lastEvr =
      isAsciiString(evr.epoch + evr.version + evr.release) &&
      !/[&\t\n\r]/.test(evr.epoch + evr.version + evr.release)
        ? evr
        : null;
    return evr;
  }

  private close(name: string): void {
    const p = this.p;
    if (p === null) return;
    if (name === "package" && this.stack.length === 0) {
      if (p.name === "" || p.arch === "" || p.evr.version === "") this.fail("missing name, arch or version");
      if (p.location === "" && this.repo !== "@System") this.fail("missing location");
      this.count++;
      this.onPackage(p);
      this.abandonPackage();
      return;
    }
    if (this.field !== null && name === this.field) {
      const v = this.text.trim();
      if (this.field === "name") p.name = v;
      else if (this.field === "arch") p.arch = v;
      else if (this.field === "checksum") p.checksum = { type: this.checksumType, value: v.toLowerCase() };
      else {
        if (++this.entries > this.limits.maxEntries)
          this.fail(`more than ${this.limits.maxEntries} files`, true);
        if (p.files === NO_FILES) p.files = [];
        p.files.push(v);
      }
      this.field = null;
      this.text = "";
      return;
    }
    if (DEP_FIELDS.has(name)) this.depList = null;
  }
}

/** Does byte `c` occur in [from, to)? (A native indexOf would search to the buffer's end.) */
function hasByte(b: Buffer, c: number, from: number, to: number): boolean {
  for (let k = from; k < to; k++) if (b[k] === c) return true;
  return false;
}

/** Byte ranges equal (both absent counts as equal). */
function sameRange(b: Buffer, a0: number, a1: number, c0: number, c1: number): boolean {
  if (a0 < 0 || c0 < 0) return a0 < 0 && c0 < 0;
  if (a1 - a0 !== c1 - c0) return false;
  for (let k = 0; k < a1 - a0; k++) if (b[a0 + k] !== b[c0 + k]) return false;
  return true;
}

/** primary's two-letter flags (EQ LT LE GT GE) from their bytes; -1 for anything else. */
function flagBits(c0: number, c1: number): number {
  if (c0 === 0x45 && c1 === 0x51) return SENSE_EQUAL;
  if (c0 === 0x4c) return c1 === 0x54 ? SENSE_LESS : c1 === 0x45 ? SENSE_LESS | SENSE_EQUAL : -1;
  if (c0 === 0x47) return c1 === 0x54 ? SENSE_GREATER : c1 === 0x45 ? SENSE_GREATER | SENSE_EQUAL : -1;
  return -1;
}

function newPackage(repo: string): PackageMeta {
  return {
    name: "",
    arch: "",
    evr: { epoch: "", version: "", release: "" },
    provides: NO_DEPS,
    requires: NO_DEPS,
    conflicts: NO_DEPS,
    obsoletes: NO_DEPS,
    recommends: NO_DEPS,
    suggests: NO_DEPS,
    supplements: NO_DEPS,
    enhances: NO_DEPS,
    files: NO_FILES,
    repo,
    location: "",
    checksum: null,
    size: 0,
  };
}

/** Scan a decompressed primary.xml stream; `onPackage` sees each package as it ends. */
export async function scanPrimary(
  chunks: AsyncIterable<Uint8Array>,
  repo: string,
  where: string,
  onPackage: (p: PackageMeta) => void,
  limits: ScanLimits,
): Promise<number> {
  const s = new Scanner(repo, where, limits, onPackage);
  // Bytes not yet consumed: `parts` (kept as chunks so a long element is joined once, not per chunk).
  let parts: Buffer[] = [];
  let partsLen = 0;
  // Size of the rest the last attempt could not consume: the next attempt waits for twice as much,
  // so an element spread over many small chunks is rescanned a bounded number of times.
  let waitFor = 0;
  let total = 0;
  const attempt = (final: boolean) => {
    const b = parts.length === 1 ? parts[0]! : Buffer.concat(parts, partsLen);
    // A sequence cut by the chunk boundary is checked with the next attempt. The scanner stops only
    // at ASCII bytes ('<', '>'), so it never consumes that unchecked tail.
    let cut = b.length;
    if (!final) {
      let k = b.length - 1;
      while (k >= 0 && b.length - k <= 3 && (b[k]! & 0xc0) === 0x80) k--;
      if (k >= 0 && b[k]! >= 0xc0) {
        const need = b[k]! >= 0xf0 ? 4 : b[k]! >= 0xe0 ? 3 : 2;
        if (b.length - k < need) cut = k;
      }
    }
    const head = b.subarray(0, cut);
    const ascii = isAscii(head);
    if (!ascii && !isUtf8(head))
      throw new RepoFormatError("XML is not valid UTF-8", { file: where, offset: s.consumed });
    let used: number;
    try {
      used = s.run(b, ascii, final);
    } catch (e) {
      if (e instanceof Malformed) {
        throw new RepoFormatError(`bad XML: ${e.message}`, { file: where, offset: s.consumed + s.at });
      }
      throw e;
    }
    s.consumed += used;
    const rest = b.subarray(used);
    parts = rest.length > 0 ? [rest] : [];
    partsLen = rest.length;
    waitFor = 2 * rest.length;
    if (rest.length > limits.maxElement) {
      throw new RepoLimitError(`an XML element larger than ${limits.maxElement} bytes`, {
        file: where,
        offset: s.consumed,
      });
    }
  };
  try {
    for await (const chunk of chunks) {
      total += chunk.length;
      if (total > limits.maxBytes)
        throw new RepoLimitError(`more than ${limits.maxBytes} bytes of XML`, { file: where });
      parts.push(
        Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength),
      );
      partsLen += chunk.length;
      if (partsLen >= waitFor) attempt(false);
    }
    attempt(true);
  } catch (e) {
    if (e instanceof RepoFormatError) throw e;
    const f = e as Error;
    // I/O errors (ENOENT, ECONNRESET…) and typed errors from below pass through as they are.
    if (f instanceof Error && "code" in f && typeof (f as { code: unknown }).code === "string") throw f;
    throw new RepoFormatError(`bad XML: ${f?.message ?? String(f)}`, { file: where, offset: s.consumed });
  }
  if (s.state === "prolog") throw new RepoFormatError("no XML document", { file: where });
  if (s.state === "root") throw new RepoFormatError("bad XML: unclosed element <metadata>", { file: where });
  return s.count;
}
