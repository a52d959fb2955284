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
import { DEP_LISTS, type PackageMeta } from "./package-meta.js";
import type { Evr } from "./rpmvercmp.js";
import {
  BANG,
  DQUOTE,
  decodeEntities,
  EQ,
  GT,
  isNameChar,
  isNameStart,
  isSpace,
  LT,
  Malformed,
  QMARK,
  SLASH,
  SQUOTE,
} from "./xml.js";

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

const AMP = 0x26;

// Codes of the element and attribute names the scanner acts on (0: any other name).
const N_PACKAGE = 1;
const N_NAME = 2;
const N_ARCH = 3;
const N_FILE = 4;
const N_CHECKSUM = 5;
const N_VERSION = 6;
const N_LOCATION = 7;
const N_SIZE = 8;
const N_ENTRY = 9;
const N_DEP = 16;
// Attributes.
const A_NAME = 32;
const A_FLAGS = 33;
const A_EPOCH = 34;
const A_VER = 35;
const A_REL = 36;
const A_TYPE = 37;
const A_HREF = 38;
const A_PACKAGE = 39;

const CODES = new Map<string, number>([
  ["package", N_PACKAGE],
  ["name", N_NAME],
  ["arch", N_ARCH],
  ["file", N_FILE],
  ["checksum", N_CHECKSUM],
  ["version", N_VERSION],
  ["location", N_LOCATION],
  ["size", N_SIZE],
  ["rpm:entry", N_ENTRY],
  ...DEP_LISTS.map((l, k) => [`rpm:${l}`, N_DEP + k] as [string, number]),
]);
const ATTR_CODES = new Map<string, number>([
  ["name", A_NAME],
  ["flags", A_FLAGS],
  ["epoch", A_EPOCH],
  ["ver", A_VER],
  ["rel", A_REL],
  ["type", A_TYPE],
  ["href", A_HREF],
  ["package", A_PACKAGE],
]);

/** Shared by every package without such entries; replaced (never pushed to) when entries come. */
const NO_DEPS: Dep[] = Object.freeze([]) as unknown as Dep[];
const NO_FILES: string[] = Object.freeze([]) as unknown as string[];

/**
 * Names seen so far in a direct-mapped table (metadata uses a few dozen), so a repeated name costs
 * a byte comparison instead of a new string; `code` is the last name's code from `codes`.
 */
class ByteNames {
  private readonly slots: (string | undefined)[] = new Array(1024).fill(undefined);
  private readonly slotCodes = new Int32Array(1024);
  code = 0;
  constructor(private readonly codes: Map<string, number>) {}
  get(b: Buffer, from: number, to: number): string {
    const len = to - from;
    const h = (len * 131 + b[from]! * 31 + b[to - 1]! + (len > 4 ? b[from + 4]! * 7 : 0)) & 1023;
    const s = this.slots[h];
    if (s !== undefined && sameAscii(b, from, to, s)) {
      this.code = this.slotCodes[h]!;
      return s;
    }
    const t = b.toString("utf8", from, to);
    this.code = this.codes.get(t) ?? 0;
    if (s === undefined && isAsciiString(t)) {
      this.slots[h] = t;
      this.slotCodes[h] = this.code;
    }
    return t;
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
  private readonly names = new ByteNames(CODES);
  private readonly attrNameCache = new ByteNames(ATTR_CODES);
  private readonly stack: string[] = [];
  private readonly codeStack: number[] = [];
  // The current tag's attributes: name, value start, value end (raw bytes, quotes excluded).
  private attrCount = 0;
  private readonly attrCodes: number[] = [];
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
  /** Code of the element whose text is being collected (name, arch, checksum, file), or 0. */
  private field = 0;
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
    this.field = 0;
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
      if (inElement && this.field !== 0) this.addText(b.toString(this.ascii ? "latin1" : "utf8", i + 9, k));
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
  private tagCode = 0;
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
    const code = this.names.code;
    const wants = keep && code >= N_CHECKSUM && code <= N_ENTRY;
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
        this.tagCode = code;
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
        this.attrNameCache.get(b, a0, a1);
        this.attrCodes[k] = this.attrNameCache.code;
        this.attrFrom[k] = j + 1;
        this.attrTo[k] = close;
      }
      j = close + 1;
    }
  }

  private attrIndex(code: number): number {
    for (let k = 0; k < this.attrCount; k++) if (this.attrCodes[k] === code) return k;
    return -1;
  }

  /** An attribute's value as the tokenizer gives it (whitespace normalised, entities replaced). */
  private attr(code: number): string | undefined {
    const k = this.attrIndex(code);
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
    const codes = this.codeStack;
    stack.length = 0;
    codes.length = 0;
    let i = i0;
    for (;;) {
      if (i >= n) return INCOMPLETE;
      this.at = i;
      if (b[i] !== LT) {
        const j = b.indexOf(LT, i);
        if (j < 0) return INCOMPLETE;
        if (this.field !== 0) this.addText(this.str(i, j));
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
        const code = codes.pop()!;
        if (!sameAscii(b, i + 2, e, open) && b.toString("utf8", i + 2, e) !== open)
          throw new Malformed(`</${b.toString("utf8", i + 2, Math.min(e, i + 42))}> closes <${open}>`);
        this.close(code);
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
      const code = this.tagCode;
      // +1: <metadata> is open around us.
      if (stack.length + 1 >= this.limits.maxDepth) {
        throw new RepoLimitError(`XML nested deeper than ${this.limits.maxDepth}`, {
          file: this.where,
          offset: this.consumed + i,
        });
      }
      stack.push(this.tagName);
      codes.push(code);
      this.open(code, stack.length);
      if (this.tagSelfClosing) {
        stack.pop();
        codes.pop();
        this.close(code);
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

  private open(code: number, depth: number): void {
    if (depth === 1) {
      if (code !== N_PACKAGE) return;
      if (this.count >= this.limits.maxPackages)
        throw new RepoLimitError(`more than ${this.limits.maxPackages} packages`, { file: this.where });
      this.p = newPackage(this.repo);
      this.entries = 0;
      this.vVer0 = -1;
      return;
    }
    const p = this.p;
    if (p === null) return;
    switch (code) {
      case 0:
        return;
      case N_PACKAGE:
        this.fail("<package> inside <package>");
        break;
      case N_NAME:
      case N_ARCH:
      case N_FILE:
        this.field = code;
        this.text = "";
        return;
      case N_CHECKSUM:
        this.field = N_CHECKSUM;
        this.checksumType = this.attr(A_TYPE) ?? "";
        this.text = "";
        return;
      case N_VERSION: {
        const v = this.attrIndex(A_VER);
        if (v < 0) this.fail("<version> without ver");
        const e = this.attrIndex(A_EPOCH);
        const r = this.attrIndex(A_REL);
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
      case N_LOCATION:
        p.location = this.attr(A_HREF) ?? "";
        return;
      case N_SIZE: {
        const s = this.attr(A_PACKAGE);
        p.size = s !== undefined && /^\d{1,15}$/.test(s) ? Number(s) : 0;
        return;
      }
      case N_ENTRY:
        this.entry();
        return;
      default:
        if (code >= N_DEP && code < N_DEP + DEP_LISTS.length) {
          const f = DEP_LISTS[code - N_DEP]!;
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
    const k = this.attrIndex(A_NAME);
    if (k < 0 || this.attrFrom[k] === this.attrTo[k]) this.fail("dependency entry without a name");
    const n0 = this.attrFrom[k]!;
    // rpmlib() requirements are rpm's own, not the solver's.
    if (sameAscii(b, n0, Math.min(n0 + 7, this.attrTo[k]!), "rpmlib(")) return;
    const name = this.attrValueAt(n0, this.attrTo[k]!);
    const fk = this.attrIndex(A_FLAGS);
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
    const v = this.attrIndex(A_VER);
    if (v < 0) return null;
    const b = this.b;
    const e = this.attrIndex(A_EPOCH);
    const r = this.attrIndex(A_REL);
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

  private close(code: number): void {
    const p = this.p;
    if (p === null || code === 0) return;
    if (code === N_PACKAGE && this.stack.length === 0) {
      if (p.name === "" || p.arch === "" || p.evr.version === "") this.fail("missing name, arch or version");
      if (p.location === "" && this.repo !== "@System") this.fail("missing location");
      this.count++;
      this.onPackage(p);
      this.abandonPackage();
      return;
    }
    if (this.field !== 0 && code === this.field) {
      const v = this.text.trim();
      if (code === N_NAME) p.name = v;
      else if (code === N_ARCH) p.arch = v;
      else if (code === N_CHECKSUM) p.checksum = { type: this.checksumType, value: v.toLowerCase() };
      else {
        if (++this.entries > this.limits.maxEntries)
          this.fail(`more than ${this.limits.maxEntries} files`, true);
        if (p.files === NO_FILES) p.files = [];
        p.files.push(v);
      }
      this.field = 0;
      this.text = "";
      return;
    }
    if (code >= N_DEP) this.depList = null;
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
