/**
 * The regular expressions of file_contexts, translated into JavaScript.
 *
 * libselinux compiles `^` + REGEX + `$` with PCRE2 and the single option PCRE2_DOTALL, no UTF: the
 * subject is the path's bytes, `.` matches any byte (newline included), `$` matches at the end or
 * before a final newline, `\d \w \s` are the ASCII ("C" tables) classes. Policies use a small POSIX
 * extended-like subset of that. We translate token by token into a RegExp with the `s` flag, run
 * on "binary strings" (one char per byte, see `pathKey`), and refuse with a typed error naming the
 * file and line whatever has no faithful translation (inline options, backreferences, \p, …) —
 * a label we cannot compute the way libselinux does is an error, not a guess.
 */
import { SelinuxRegexError } from "./errors.js";

const POSIX_CLASSES: Record<string, string> = {
  alpha: "A-Za-z",
  digit: "0-9",
  alnum: "0-9A-Za-z",
  upper: "A-Z",
  lower: "a-z",
  space: "\\t\\n\\v\\f\\r ",
  blank: "\\t ",
  punct: "!-\\/:-@\\[-`{-~",
  xdigit: "0-9A-Fa-f",
  word: "0-9A-Za-z_",
  cntrl: "\\x00-\\x1f\\x7f",
  graph: "!-~",
  print: " -~",
};

const SPACE_CLASS = "\\t\\n\\v\\f\\r ";

function hex(c: number): string {
  return `\\x${c.toString(16).padStart(2, "0")}`;
}

/** A literal character as a RegExp atom. */
function lit(ch: string): string {
  return hex(ch.charCodeAt(0));
}

const isHex = (c: string | undefined) => c !== undefined && /^[0-9A-Fa-f]$/.test(c);

/**
 * Translates the PCRE pattern `^REGEX$` (as libselinux anchors it) into a JavaScript RegExp.
 * `file`/`line` name the spec in errors.
 */
export function compileSpecRegex(regex: string, file: string, line?: number): RegExp {
  const { source } = translateSpecRegex(regex, file, line);
  try {
    return new RegExp(source, "s");
  } catch (err) {
    throw new SelinuxRegexError(file, line, regex, `not a valid expression (${(err as Error).message})`);
  }
}

/**
 * The JavaScript source for `^REGEX$` (flag `s`), and how many capturing groups it has (to
 * combine several into one alternation and tell which one matched).
 */
export function translateSpecRegex(
  regex: string,
  file: string,
  line?: number,
): { source: string; captures: number } {
  const src = `^${regex}$`;
  const fail = (why: string): never => {
    throw new SelinuxRegexError(file, line, regex, why);
  };
  let out = "";
  let i = 0;
  let groups = 0;
  let captures = 0;
  /** After an atom a quantifier may follow. */
  const n = src.length;
  while (i < n) {
    const c = src[i];
    switch (c) {
      case "\\": {
        const { text, next } = escapeOutside(src, i, fail);
        out += text;
        i = next;
        continue;
      }
      case ".":
        out += ".";
        break;
      case "^":
        out += "^";
        break;
      case "$":
        out += "(?=\\n?$)";
        break;
      case "[": {
        const { text, next } = charClass(src, i, fail);
        out += text;
        i = next;
        continue;
      }
      case "(": {
        if (src[i + 1] === "*") fail("backtracking verbs (*…) are not supported");
        if (src[i + 1] === "?") {
          const rest = src.slice(i + 2, i + 4);
          if (rest.startsWith(":") || rest.startsWith("=") || rest.startsWith("!")) {
            out += `(?${rest[0]}`;
            i += 3;
            groups++;
            continue;
          }
          if (rest === "<=" || rest === "<!") {
            out += `(?${rest}`;
            i += 4;
            groups++;
            continue;
          }
          if (rest.startsWith("#")) {
            const close = src.indexOf(")", i);
            if (close < 0) fail("unterminated comment group");
            i = close + 1;
            continue;
          }
          fail(`group syntax "(?${rest[0] ?? ""}" (inline options, named groups…) is not supported`);
        }
        out += "(";
        groups++;
        captures++;
        break;
      }
      case ")":
        if (groups === 0) fail("unmatched )");
        groups--;
        out += ")";
        break;
      case "|":
        out += "|";
        break;
      case "*":
      case "+":
      case "?": {
        out += c;
        const nx = src[i + 1];
        if (nx === "+") fail("possessive quantifiers are not supported");
        if (nx === "?") {
          out += "?";
          i++;
        }
        break;
      }
      case "{": {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(src.slice(i));
        if (m) {
          if (m[3] !== undefined && m[3] !== "" && Number(m[3]) < Number(m[1]))
            fail("quantifier range out of order");
          out += m[0];
          i += m[0].length;
          if (src[i] === "+") fail("possessive quantifiers are not supported");
          if (src[i] === "?") {
            out += "?";
            i++;
          }
          continue;
        }
        if (/^\{,\d*\}/.test(src.slice(i))) fail("{,n} differs between PCRE2 versions");
        out += lit(c);
        break;
      }
      default:
        out += /[A-Za-z0-9_/]/.test(c) ? c : lit(c);
    }
    i++;
  }
  if (groups !== 0) fail("missing )");
  try {
    new RegExp(out, "s");
  } catch (err) {
    fail(`not a valid expression (${(err as Error).message})`);
  }
  return { source: out, captures };
}

function escapeOutside(src: string, i: number, fail: (why: string) => never): { text: string; next: number } {
  const c = src[i + 1];
  if (c === undefined) return fail("trailing backslash");
  switch (c) {
    case "d":
    case "D":
    case "w":
    case "W":
    case "b":
    case "B":
    case "n":
    case "t":
    case "r":
    case "f":
      return { text: `\\${c}`, next: i + 2 };
    case "s":
      return { text: `[${SPACE_CLASS}]`, next: i + 2 };
    case "S":
      return { text: `[^${SPACE_CLASS}]`, next: i + 2 };
    case "e":
      return { text: "\\x1b", next: i + 2 };
    case "a":
      return { text: "\\x07", next: i + 2 };
    case "A":
      return { text: "^", next: i + 2 };
    case "z":
      return { text: "$", next: i + 2 };
    case "Z":
      return { text: "(?=\\n?$)", next: i + 2 };
    case "E":
      return { text: "", next: i + 2 };
    case "Q": {
      const end = src.indexOf("\\E", i + 2);
      const body = end < 0 ? src.slice(i + 2) : src.slice(i + 2, end);
      // an unterminated \Q runs to the end of the pattern, our own `$` included (as in PCRE)
      return { text: [...body].map(lit).join(""), next: end < 0 ? src.length : end + 2 };
    }
    case "x": {
      const x = hexEscape(src, i, fail);
      return { text: hex(x.code), next: x.next };
    }
  }
  if (/[A-Za-z0-9]/.test(c)) return fail(`escape \\${c} is not supported`);
  return { text: lit(c), next: i + 2 };
}

function hexEscape(src: string, i: number, fail: (why: string) => never): { code: number; next: number } {
  let j = i + 2;
  if (src[j] === "{") {
    const close = src.indexOf("}", j);
    const digits = close < 0 ? "" : src.slice(j + 1, close);
    if (!/^[0-9A-Fa-f]{1,8}$/.test(digits)) fail("bad \\x{…} escape");
    const code = Number.parseInt(digits, 16);
    if (code > 0xff) fail("\\x{…} above 0xff (needs UTF mode)");
    return { code, next: close + 1 };
  }
  let digits = "";
  while (digits.length < 2 && isHex(src[j])) digits += src[j++];
  return { code: digits === "" ? 0 : Number.parseInt(digits, 16), next: j };
}

/** A bracket expression starting at src[i] === "[". */
function charClass(src: string, i: number, fail: (why: string) => never): { text: string; next: number } {
  let j = i + 1;
  let out = "[";
  if (src[j] === "^") {
    out += "^";
    j++;
  }
  let first = true;
  for (;;) {
    const c = src[j];
    if (c === undefined) return fail("missing ] of a character class");
    if (c === "]" && !first) {
      j++;
      break;
    }
    first = false;
    if (c === "[" && src[j + 1] === ":") {
      const close = src.indexOf(":]", j + 2);
      const name = close < 0 ? "" : src.slice(j + 2, close);
      const cls = POSIX_CLASSES[name];
      if (cls === undefined) return fail(`POSIX class [:${name}:] is not supported`);
      out += cls;
      j = close + 2;
      continue;
    }
    if (c === "[" && (src[j + 1] === "." || src[j + 1] === "="))
      return fail("collating elements [. .] / [= =] are not supported");
    if (c === "\\") {
      const e = src[j + 1];
      if (e === undefined) return fail("trailing backslash");
      const simple: Record<string, string> = {
        d: "0-9",
        w: "0-9A-Za-z_",
        s: SPACE_CLASS,
        n: "\\n",
        t: "\\t",
        r: "\\r",
        f: "\\f",
        e: "\\x1b",
        a: "\\x07",
        b: "\\x08",
      };
      if (simple[e] !== undefined) {
        out += simple[e];
        j += 2;
        continue;
      }
      if (e === "x") {
        const x = hexEscape(src, j, fail);
        out += hex(x.code);
        j = x.next;
        continue;
      }
      if (/[A-Za-z0-9]/.test(e)) return fail(`escape \\${e} inside [] is not supported`);
      out += lit(e);
      j += 2;
      continue;
    }
    if (c === "-") {
      // a range operator between two members, else a literal hyphen (first/last position)
      const atEdge = out.endsWith("[") || out.endsWith("[^") || src[j + 1] === "]";
      out += atEdge ? "\\-" : "-";
      j++;
      continue;
    }
    out += lit(c);
    j++;
  }
  return { text: `${out}]`, next: j };
}

/**
 * libselinux's spec_hasMetaChars: whether the regex has any of `.^$?*+|[({` outside a
 * backslash escape, and the length of the literal prefix before the first one.
 */
export function specMeta(regex: string): { hasMeta: boolean; prefixLen: number } {
  for (let i = 0; i < regex.length; i++) {
    const c = regex[i];
    if (c === "\\") {
      i++;
      continue;
    }
    if (".^$?*+|[({".includes(c)) return { hasMeta: true, prefixLen: i };
  }
  return { hasMeta: false, prefixLen: regex.length };
}

/**
 * libselinux's get_stem_from_spec: the first path component ("/usr") when it holds no meta
 * character (a backslash does not count), else "" (no stem).
 */
export function specStem(regex: string): string {
  const slash = regex.indexOf("/", 1);
  if (slash < 0) return "";
  for (let i = 0; i < slash; i++) if (".^$?*+|[({".includes(regex[i])) return "";
  return regex.slice(0, slash);
}

/**
 * A literal every path the spec matches starts with (the candidate filter of match.ts): the
 * characters before the first meta character or non-plain escape, less the last one when a
 * quantifier that may drop it (`?`, `*`, `{`) follows. "" when the expression has an alternation
 * `|` outside any group or bracket (its branches need not share a prefix) or starts with a meta.
 * Shorter than the longest true prefix is always safe: it only admits more candidates.
 */
export function specPrefix(regex: string): string {
  if (hasTopLevelAlternation(regex)) return "";
  let out = "";
  let last = 0;
  for (let i = 0; i < regex.length; i++) {
    const c = regex[i];
    if (c === "\\") {
      const e = regex[i + 1];
      if (e === undefined || /[A-Za-z0-9]/.test(e)) return out;
      last = out.length;
      out += e;
      i++;
      continue;
    }
    if (".^$?*+|[({".includes(c)) return c === "?" || c === "*" || c === "{" ? out.slice(0, last) : out;
    last = out.length;
    out += c;
  }
  return out;
}

/** Whether `|` occurs outside every group and bracket expression (escapes skipped). */
export function hasTopLevelAlternation(regex: string): boolean {
  if (!regex.includes("|")) return false;
  let depth = 0;
  for (let i = 0; i < regex.length; i++) {
    const c = regex[i];
    if (c === "\\") i++;
    else if (c === "(") depth++;
    else if (c === ")") depth = Math.max(0, depth - 1);
    else if (c === "|" && depth === 0) return true;
    else if (c === "[") {
      // a leading "]" (after an optional "^") is a member; [:class:] holds a "]" of its own
      let j = i + 1;
      if (regex[j] === "^") j++;
      if (regex[j] === "]") j++;
      for (; j < regex.length && regex[j] !== "]"; j++) {
        if (regex[j] === "\\") j++;
        else if (regex[j] === "[" && regex[j + 1] === ":") {
          const close = regex.indexOf(":]", j + 2);
          if (close < 0) return true; // malformed: translation refuses it; no prefix meanwhile
          j = close + 1;
        }
      }
      i = j;
    }
  }
  return false;
}

/** libselinux's meta characters `.^$?*+|[({` by char code. */
const META = new Uint8Array(128);
for (const c of ".^$?*+|[({") META[c.charCodeAt(0)] = 1;

/**
 * specMeta, specStem, specPrefix and specLiteral in one pass over the expression (a policy has
 * thousands of specs and this runs once per spec at load, mostly before the JIT has warmed up).
 */
export function analyzeSpec(regex: string): {
  hasMeta: boolean;
  stem: string;
  prefix: string;
  literal: string | undefined;
} {
  const n = regex.length;
  let firstMeta = -1;
  let backslash = false;
  for (let i = 0; i < n; i++) {
    const c = regex.charCodeAt(i);
    if (c === 0x5c) {
      backslash = true;
      i++;
    } else if (c < 128 && META[c] === 1) {
      firstMeta = i;
      break;
    }
  }
  const slash = regex.indexOf("/", 1);
  // get_stem_from_spec: a backslash does not count as meta there
  let stem = "";
  if (slash > 0) {
    let metaBeforeSlash = false;
    for (let i = 0; i < slash; i++) {
      const c = regex.charCodeAt(i);
      if (c < 128 && META[c] === 1) {
        metaBeforeSlash = true;
        break;
      }
    }
    if (!metaBeforeSlash) stem = regex.slice(0, slash);
  }
  if (firstMeta < 0) {
    return { hasMeta: false, stem, prefix: "", literal: backslash ? specLiteral(regex) : regex };
  }
  return {
    hasMeta: true,
    stem,
    prefix: backslash ? specPrefix(regex) : plainPrefix(regex, firstMeta),
    literal: undefined,
  };
}

/** specPrefix of an expression without backslashes before its first meta character at `at`. */
function plainPrefix(regex: string, at: number): string {
  if (hasTopLevelAlternation(regex)) return "";
  const c = regex[at];
  return regex.slice(0, c === "?" || c === "*" || c === "{" ? Math.max(0, at - 1) : at);
}

/** The literal a meta-free spec stands for, or undefined when an escape is not a plain one. */
export function specLiteral(regex: string): string | undefined {
  let out = "";
  for (let i = 0; i < regex.length; i++) {
    const c = regex[i];
    if (c === "\\") {
      const e = regex[i + 1];
      if (e === undefined || /[A-Za-z0-9]/.test(e)) return undefined;
      out += e;
      i++;
      continue;
    }
    out += c;
  }
  return out;
}

const NON_ASCII = /[\x80-\uffff]/;

/** A guest path as the byte string the expressions run on (one char per UTF-8 byte). */
export function pathKey(path: string): string {
  return !NON_ASCII.test(path) ? path : Buffer.from(path, "utf8").toString("latin1");
}
