/**
 * `--edit FILE:EXPR` as virt-customize/virt-edit run it: a Perl substitution applied to each line of
 * the file in turn, the line's newline removed first and put back after (Perl's `chomp`). Only the
 * `s/RE/REPLACEMENT/FLAGS` form is accepted (any delimiter; bracketing delimiters `s{..}{..}` too),
 * with flags g, i, m, s, x; RE is Perl syntax that has the same meaning in JavaScript, and what does
 * not (inline modifiers, possessive quantifiers, atomic groups, \G, \K, code blocks) is refused
 * rather than misread. REPLACEMENT is a Perl double-quoted string: `$1`…, `${1}`, `$&`, `\1`, `\n`,
 * `\t`, `\\`, `\$`, `\@`, `\u`/`\l`/`\U`/`\L`/`\E` case changes. Library callers can pass a function.
 */

export class EditExprError extends Error {}

export type LineEdit = (line: string, lineNo: number) => string;

interface Piece {
  kind: "text" | "group" | "case";
  text?: string;
  group?: number | "&";
  /** \u \l \U \L \E */
  mode?: "u" | "l" | "U" | "L" | "E";
}

const CLOSERS: Record<string, string> = { "{": "}", "(": ")", "[": "]", "<": ">" };

/** Reads a delimited part starting at `i` (just after the opening delimiter); returns [text, next index]. */
function readPart(s: string, i: number, close: string, open: string | null): [string, number] {
  let depth = 0;
  let out = "";
  for (; i < s.length; i++) {
    const c = s[i]!;
    if (c === "\\" && i + 1 < s.length) {
      // An escaped delimiter stands for the delimiter itself; other escapes are kept for the next stage.
      if (s[i + 1] === close || s[i + 1] === open) out += s[i + 1];
      else out += c + s[i + 1];
      i++;
      continue;
    }
    if (open !== null && c === open) depth++;
    else if (c === close) {
      if (depth === 0) return [out, i + 1];
      depth--;
    }
    out += c;
  }
  throw new EditExprError("unterminated s/// expression");
}

/** Strips `x`-flag whitespace and comments (outside character classes). */
function stripExtended(re: string): string {
  let out = "";
  let inClass = false;
  for (let i = 0; i < re.length; i++) {
    const c = re[i]!;
    if (c === "\\" && i + 1 < re.length) {
      out += c + re[++i];
      continue;
    }
    if (inClass) {
      if (c === "]") inClass = false;
      out += c;
      continue;
    }
    if (c === "[") {
      inClass = true;
      out += c;
    } else if (c === "#") {
      while (i < re.length && re[i] !== "\n") i++;
    } else if (!/\s/.test(c)) out += c;
  }
  return out;
}

const REFUSED: Array<[RegExp, string]> = [
  [/\(\?[a-z^-]*[:)]/, "inline modifiers (?i) etc."],
  [/\(\?>/, "atomic groups"],
  [/[*+?}]\+/, "possessive quantifiers"],
  [/\\[GKzZA]/, "\\G, \\K, \\A, \\z and \\Z"],
  [/\(\?\??\{/, "code blocks"],
  [/\\[pP]\{/, "Unicode properties"],
];

function translateRegex(re: string, flags: string): RegExp {
  const src = flags.includes("x") ? stripExtended(re) : re;
  // Only look for unsupported constructs outside escapes.
  const plain = src.replace(/\\\\/g, "");
  for (const [pat, what] of REFUSED) {
    if (pat.test(plain))
      throw new EditExprError(`the expression uses ${what}, which imgpatch cannot translate`);
  }
  let js = "";
  for (const f of flags) {
    if (f === "g" || f === "x") continue;
    if (f === "i" || f === "m" || f === "s") js += f;
    else throw new EditExprError(`flag "${f}" is not supported (g, i, m, s, x are)`);
  }
  try {
    return new RegExp(src, `${js}${flags.includes("g") ? "g" : ""}u`);
  } catch {
    try {
      return new RegExp(src, `${js}${flags.includes("g") ? "g" : ""}`);
    } catch (err) {
      throw new EditExprError(`invalid regular expression: ${(err as Error).message}`);
    }
  }
}

function parseReplacement(r: string): Piece[] {
  const pieces: Piece[] = [];
  let text = "";
  const flush = () => {
    if (text) pieces.push({ kind: "text", text });
    text = "";
  };
  for (let i = 0; i < r.length; i++) {
    const c = r[i]!;
    if (c === "\\" && i + 1 < r.length) {
      const n = r[++i]!;
      if (/[1-9]/.test(n)) {
        flush();
        pieces.push({ kind: "group", group: Number(n) });
      } else if (n === "n") text += "\n";
      else if (n === "t") text += "\t";
      else if (n === "r") text += "\r";
      else if (n === "e") text += "\x1b";
      else if (n === "0") text += "\0";
      else if ("ulULE".includes(n)) {
        flush();
        pieces.push({ kind: "case", mode: n as Piece["mode"] });
      } else text += n; // \\ \$ \@ \/ and any other escaped character stand for themselves
      continue;
    }
    if (c === "$") {
      const m = /^\$(?:(\d+)|\{(\d+)\}|(&))/.exec(r.slice(i));
      if (m) {
        flush();
        pieces.push({ kind: "group", group: m[3] ? "&" : Number(m[1] ?? m[2]) });
        i += m[0].length - 1;
        continue;
      }
      throw new EditExprError(`"${r.slice(i, i + 12)}": only $1…, \${N} and $& can be interpolated`);
    }
    if (c === "@" && /^@[A-Za-z_{]/.test(r.slice(i))) {
      throw new EditExprError(
        `"${r.slice(i, i + 12)}": array interpolation is not supported (escape it as \\@)`,
      );
    }
    text += c;
  }
  flush();
  return pieces;
}

function render(pieces: Piece[], match: string, groups: Array<string | undefined>): string {
  let out = "";
  let once: "u" | "l" | null = null;
  let span: "U" | "L" | null = null;
  const put = (s: string) => {
    if (s === "") return;
    let v = span === "U" ? s.toUpperCase() : span === "L" ? s.toLowerCase() : s;
    if (once) {
      v = (once === "u" ? v[0]!.toUpperCase() : v[0]!.toLowerCase()) + v.slice(1);
      once = null;
    }
    out += v;
  };
  for (const p of pieces) {
    if (p.kind === "text") put(p.text!);
    else if (p.kind === "group") put(p.group === "&" ? match : (groups[(p.group as number) - 1] ?? ""));
    else if (p.mode === "u" || p.mode === "l") once = p.mode;
    else span = p.mode === "E" ? null : (p.mode as "U" | "L");
  }
  return out;
}

/** Compiles `s/RE/REPLACEMENT/FLAGS` into a per-line edit. */
export function compileEditExpr(expr: string): LineEdit {
  const e = expr.trim();
  if (!e.startsWith("s") || e.length < 4 || /[\w\s]/.test(e[1]!)) {
    throw new EditExprError(`"${expr}": only s/RE/REPLACEMENT/FLAGS expressions are supported`);
  }
  const open = e[1]!;
  const close = CLOSERS[open] ?? open;
  const bracketed = close !== open;
  const [re, afterRe] = readPart(e, 2, close, bracketed ? open : null);
  let i = afterRe;
  let open2 = open;
  if (bracketed) {
    while (i < e.length && /\s/.test(e[i]!)) i++;
    open2 = e[i] ?? "";
    if (!open2) throw new EditExprError("missing replacement part");
    i++;
  }
  const close2 = CLOSERS[open2] ?? open2;
  const [repl, afterRepl] = readPart(e, i, close2, close2 !== open2 ? open2 : null);
  const flags = e.slice(afterRepl);
  if (!/^[a-z]*$/.test(flags)) throw new EditExprError(`"${flags}": unexpected text after the expression`);
  if (flags.includes("e")) throw new EditExprError("the e flag (evaluate Perl code) is not supported");
  const regex = translateRegex(re, flags);
  const pieces = parseReplacement(repl);
  return (line) =>
    line.replace(regex, (match: string, ...rest: unknown[]) => {
      // rest: groups…, offset, whole string[, named groups]
      const named = typeof rest[rest.length - 1] === "object" ? 1 : 0;
      const groups = rest.slice(0, rest.length - 2 - named) as Array<string | undefined>;
      return render(pieces, match, groups);
    });
}

/**
 * Applies a line edit to a file's text the way virt-edit does: each line without its newline,
 * newlines put back (a last line without one gets one, as Perl's print does).
 */
export function editText(text: string, edit: LineEdit): string {
  if (text === "") return "";
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.map((l, i) => `${edit(l, i + 1)}\n`).join("");
}
