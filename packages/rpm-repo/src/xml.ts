/**
 * Streaming XML for repository metadata: a small non-validating tokenizer specialised to what
 * repomd/primary/filelists/other use (elements, attributes, text, the five predefined entities and
 * character references, comments, CDATA, processing instructions). Document type declarations are
 * refused outright (no internal entities, so no entity expansion). A general parser (saxes) spent
 * most of the benchmark's time on position tracking and per-character state dispatch; this one
 * finds tokens with `indexOf` and slices.
 *
 * Memory stays bounded by the largest single token (text run or tag), which is capped: an
 * incomplete token at the end of a chunk is carried over, and a carry longer than `maxText` is a
 * RepoLimitError. Every failure is a RepoFormatError naming the file and the character offset.
 */
import { RepoFormatError, RepoLimitError } from "./errors.js";

export interface XmlHandlers {
  open(name: string, attrs: Record<string, string>): void;
  close(name: string): void;
  /** Text directly inside the current element (possibly in several calls per run). */
  text?(text: string): void;
}

export interface XmlLimits {
  /** Longest text run or tag, in characters. */
  maxText: number;
  /** Deepest element nesting. */
  maxDepth: number;
  /** Decompressed bytes in total. */
  maxBytes: number;
}

export const DEFAULT_XML_LIMITS: XmlLimits = { maxText: 1 << 20, maxDepth: 64, maxBytes: 8 * 2 ** 30 };

export const LT = 0x3c;
export const GT = 0x3e;
export const SLASH = 0x2f;
export const BANG = 0x21;
export const QMARK = 0x3f;
export const EQ = 0x3d;
export const DQUOTE = 0x22;
export const SQUOTE = 0x27;

export const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;

/** XML name characters, simplified: ASCII letters, digits, `_ : . -`, and anything non-ASCII. */
export function isNameChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x3a) ||
    c === 0x5f ||
    c === 0x2d ||
    c === 0x2e ||
    c >= 0x80
  );
}

export const isNameStart = (c: number) =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c === 0x3a || c >= 0x80;

const ENTITIES: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

/** Thrown inside the tokenizer; turned into a RepoFormatError with the file and offset. */
export class Malformed extends Error {}

/** Replace entity and character references; anything else after `&` is malformed. */
export function decodeEntities(s: string): string {
  let out = "";
  let from = 0;
  for (let amp = s.indexOf("&"); amp >= 0; amp = s.indexOf("&", from)) {
    const semi = s.indexOf(";", amp + 1);
    if (semi < 0 || semi - amp > 12) throw new Malformed("unterminated entity reference");
    const ref = s.slice(amp + 1, semi);
    let rep: string | undefined;
    if (ref.startsWith("#")) {
      const cp = /^#x[0-9a-fA-F]{1,6}$/.test(ref)
        ? Number.parseInt(ref.slice(2), 16)
        : /^#[0-9]{1,7}$/.test(ref)
          ? Number(ref.slice(1))
          : -1;
      // XML's Char production: no NUL/C0 controls other than tab/LF/CR, no surrogates, no FFFE/FFFF.
      const ok =
        cp === 0x9 ||
        cp === 0xa ||
        cp === 0xd ||
        (cp >= 0x20 && cp <= 0xd7ff) ||
        (cp >= 0xe000 && cp <= 0xfffd) ||
        (cp >= 0x10000 && cp <= 0x10ffff);
      if (!ok) throw new Malformed(`bad character reference &${ref};`);
      rep = String.fromCodePoint(cp);
    } else {
      rep = ENTITIES[ref];
      if (rep === undefined) throw new Malformed(`undefined entity &${ref.slice(0, 20)};`);
    }
    out += s.slice(from, amp) + rep;
    from = semi + 1;
  }
  return out + s.slice(from);
}

const SPECIAL_IN_ATTR = /[<&\t\n\r]/;

export function attrValue(raw: string): string {
  if (!SPECIAL_IN_ATTR.test(raw)) return raw;
  if (raw.includes("<")) throw new Malformed("'<' in an attribute value");
  // Attribute-value normalisation: literal whitespace characters become spaces (before entities,
  // so &#10; survives).
  return decodeEntities(raw.replace(/[\t\n\r]/g, " "));
}

/**
 * Element and attribute names seen so far, so that a repeated name (metadata uses a few dozen)
 * costs a comparison instead of a new string. Bounded: past `MAX_NAMES` names are just sliced.
 */
class NameCache {
  private readonly byKey = new Map<number, string[]>();
  private size = 0;

  get(b: string, from: number, to: number): string {
    const key = (to - from) * 0x10000 + b.charCodeAt(from) * 0x100 + b.charCodeAt(to - 1);
    const list = this.byKey.get(key);
    if (list !== undefined) {
      for (const s of list) if (s.length === to - from && b.startsWith(s, from)) return s;
    }
    const s = b.slice(from, to);
    if (this.size < MAX_NAMES) {
      this.size++;
      if (list === undefined) this.byKey.set(key, [s]);
      else list.push(s);
    }
    return s;
  }
}

const MAX_NAMES = 512;

class Tokenizer {
  private readonly names = new NameCache();
  /** Open elements, innermost last. */
  private readonly stack: string[] = [];
  private rootClosed = false;
  seenRoot = false;
  /** Characters consumed before the current buffer. */
  consumed = 0;
  /** Where in the current buffer the token being read starts (for error offsets). */
  at = 0;

  constructor(
    private readonly h: XmlHandlers,
    private readonly maxDepth: number,
    private readonly where: string,
  ) {}

  get depth(): number {
    return this.stack.length;
  }

  /**
   * Tokenize `b` from the start; returns how many characters were consumed (the rest is an
   * incomplete token, handed back with the next chunk). With `final`, everything must be consumed.
   */
  run(b: string, final: boolean): number {
    const n = b.length;
    let i = 0;
    while (i < n) {
      this.at = i;
      if (b.charCodeAt(i) !== LT) {
        let j = b.indexOf("<", i);
        if (j < 0) {
          if (!final) return i;
          j = n;
        }
        this.text(b, i, j);
        i = j;
        continue;
      }
      if (i + 1 >= n) {
        if (!final) return i;
        throw new Malformed("document ends inside a tag");
      }
      const c1 = b.charCodeAt(i + 1);
      let next: number;
      if (c1 === SLASH) next = this.endTag(b, i);
      else if (c1 === QMARK) next = this.skipUntil(b, i + 2, "?>", "processing instruction");
      else if (c1 === BANG) next = this.bang(b, i, final);
      else next = this.startTag(b, i);
      if (next < 0) {
        if (!final) return i;
        throw new Malformed("document ends inside a tag");
      }
      i = next;
    }
    return n;
  }

  finish(): void {
    if (this.stack.length > 0) throw new Malformed(`unclosed element <${this.stack[this.stack.length - 1]}>`);
  }

  private text(b: string, from: number, to: number): void {
    if (this.stack.length === 0) {
      for (let k = from; k < to; k++) {
        if (!isSpace(b.charCodeAt(k))) throw new Malformed("text outside the root element");
      }
      return;
    }
    if (this.h.text === undefined) return;
    const raw = b.slice(from, to);
    this.h.text(raw.includes("&") ? decodeEntities(raw) : raw);
  }

  private skipUntil(b: string, from: number, end: string, what: string): number {
    const k = b.indexOf(end, from);
    if (k < 0) return -1;
    if (what === "CDATA section") {
      if (this.stack.length === 0) throw new Malformed("CDATA outside the root element");
      this.h.text?.(b.slice(from, k));
    }
    return k + end.length;
  }

  private bang(b: string, i: number, final: boolean): number {
    if (b.startsWith("<!--", i)) return this.skipUntil(b, i + 4, "-->", "comment");
    if (b.startsWith("<![CDATA[", i)) return this.skipUntil(b, i + 9, "]]>", "CDATA section");
    if (!final && b.length - i < 9) return -1;
    throw new Malformed("document type declarations are not accepted");
  }

  private endTag(b: string, i: number): number {
    const gt = b.indexOf(">", i + 2);
    if (gt < 0) return -1;
    let e = gt;
    while (e > i + 2 && isSpace(b.charCodeAt(e - 1))) e--;
    const open = this.stack.pop();
    // Compared in place: the common case allocates nothing.
    const name =
      open !== undefined && e - i - 2 === open.length && b.startsWith(open, i + 2) ? open : b.slice(i + 2, e);
    if (open !== name) {
      throw new Malformed(
        open === undefined
          ? `</${name.slice(0, 40)}> without an open element`
          : `</${name.slice(0, 40)}> closes <${open}>`,
      );
    }
    this.h.close(name);
    if (this.stack.length === 0) this.rootClosed = true;
    return gt + 1;
  }

  private startTag(b: string, i: number): number {
    const n = b.length;
    let j = i + 1;
    if (!isNameStart(b.charCodeAt(j))) throw new Malformed("bad element name");
    while (j < n && isNameChar(b.charCodeAt(j))) j++;
    if (j >= n) return -1;
    const name = this.names.get(b, i + 1, j);
    const attrs: Record<string, string> = {};
    for (;;) {
      const sp = j;
      while (j < n && isSpace(b.charCodeAt(j))) j++;
      if (j >= n) return -1;
      let c = b.charCodeAt(j);
      let selfClosing = false;
      if (c === SLASH) {
        if (j + 1 >= n) return -1;
        if (b.charCodeAt(j + 1) !== GT) throw new Malformed(`bad tag <${name}>`);
        selfClosing = true;
        j++;
        c = GT;
      }
      if (c === GT) {
        this.openElement(name, attrs);
        if (selfClosing) this.endTagOf(name);
        return j + 1;
      }
      if (sp === j) throw new Malformed(`missing space between attributes of <${name}>`);
      const a0 = j;
      if (!isNameStart(c)) throw new Malformed(`bad attribute in <${name}>`);
      while (j < n && isNameChar(b.charCodeAt(j))) j++;
      const an = this.names.get(b, a0, j);
      while (j < n && isSpace(b.charCodeAt(j))) j++;
      if (j >= n) return -1;
      if (b.charCodeAt(j) !== EQ) throw new Malformed(`attribute ${an} of <${name}> without a value`);
      j++;
      while (j < n && isSpace(b.charCodeAt(j))) j++;
      if (j >= n) return -1;
      const q = b.charCodeAt(j);
      if (q !== DQUOTE && q !== SQUOTE) throw new Malformed(`unquoted attribute ${an} of <${name}>`);
      const close = b.indexOf(q === DQUOTE ? '"' : "'", j + 1);
      if (close < 0) return -1;
      if (Object.hasOwn(attrs, an)) throw new Malformed(`attribute ${an} repeated in <${name}>`);
      attrs[an] = attrValue(b.slice(j + 1, close));
      j = close + 1;
    }
  }

  private openElement(name: string, attrs: Record<string, string>): void {
    if (this.rootClosed) throw new Malformed(`<${name}> after the root element`);
    this.seenRoot = true;
    if (this.stack.length >= this.maxDepth) {
      throw new RepoLimitError(`XML nested deeper than ${this.maxDepth}`, {
        file: this.where,
        offset: this.consumed + this.at,
      });
    }
    this.stack.push(name);
    this.h.open(name, attrs);
  }

  private endTagOf(name: string): void {
    this.stack.pop();
    this.h.close(name);
    if (this.stack.length === 0) this.rootClosed = true;
  }
}

export async function parseXml(
  chunks: AsyncIterable<Uint8Array>,
  h: XmlHandlers,
  where: string,
  limits: XmlLimits = DEFAULT_XML_LIMITS,
): Promise<void> {
  const tok = new Tokenizer(h, limits.maxDepth, where);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let carry = "";
  let total = 0;
  const feed = (s: string, final: boolean) => {
    const b = carry.length === 0 ? s : carry + s;
    let used: number;
    try {
      used = tok.run(b, final);
    } catch (e) {
      if (e instanceof Malformed) {
        // A character offset into the decompressed text (equal to the byte offset for ASCII).
        throw new RepoFormatError(`bad XML: ${e.message}`, { file: where, offset: tok.consumed + tok.at });
      }
      throw e;
    }
    carry = used === b.length ? "" : b.slice(used);
    tok.consumed += used;
    if (carry.length > limits.maxText) {
      throw new RepoLimitError(`XML text or tag longer than ${limits.maxText} characters`, {
        file: where,
        offset: tok.consumed,
      });
    }
  };
  try {
    for await (const chunk of chunks) {
      total += chunk.length;
      if (total > limits.maxBytes) {
        throw new RepoLimitError(`more than ${limits.maxBytes} bytes of XML`, { file: where });
      }
      let s: string;
      try {
        s = decoder.decode(chunk, { stream: true });
      } catch {
        throw new RepoFormatError("XML is not valid UTF-8", { file: where, offset: total - chunk.length });
      }
      feed(s, false);
    }
    let tail: string;
    try {
      tail = decoder.decode();
    } catch {
      throw new RepoFormatError("XML ends inside a UTF-8 sequence", { file: where, offset: total });
    }
    feed(tail, true);
    try {
      tok.finish();
    } catch (e) {
      if (e instanceof Malformed) throw new RepoFormatError(`bad XML: ${e.message}`, { file: where });
      throw e;
    }
  } catch (e) {
    if (e instanceof RepoFormatError) throw e;
    const f = e as Error;
    // I/O errors (ENOENT, ECONNRESET…) and typed errors from below pass through as they are.
    if (f instanceof Error && "code" in f && typeof (f as { code: unknown }).code === "string") throw f;
    throw new RepoFormatError(`bad XML: ${f?.message ?? String(f)}`, { file: where, offset: tok.consumed });
  }
  if (!tok.seenRoot) throw new RepoFormatError("no XML document", { file: where });
}
