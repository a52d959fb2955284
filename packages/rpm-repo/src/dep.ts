/**
 * Dependency strings: simple `name [op evr]` and rpm's rich (boolean) dependencies
 * `(A and B)`, `(A or B)`, `(A if B [else C])`, `(A unless B [else C])`, `(A with B)`,
 * `(A without B)`, nested with parentheses. Names may hold balanced parentheses (`perl(Foo::Bar)`).
 */
import { DepParseError } from "./errors.js";
import { type Evr, evrCompare, formatEvr, parseEvr } from "./rpmvercmp.js";

/** rpm's RPMSENSE comparison bits. */
export const SENSE_LESS = 0x02;
export const SENSE_GREATER = 0x04;
export const SENSE_EQUAL = 0x08;
export const SENSE_MASK = SENSE_LESS | SENSE_GREATER | SENSE_EQUAL;

export interface SimpleDep {
  readonly kind: "simple";
  readonly name: string;
  /** SENSE_* bits; 0 means any version. */
  readonly flags: number;
  readonly evr: Evr | null;
}

export type RichOp = "and" | "or" | "if" | "unless" | "with" | "without";

export interface RichDep {
  readonly kind: "rich";
  readonly op: RichOp;
  /** and/or/with: two or more operands; without: two; if/unless: [then, cond] or [then, cond, else]. */
  readonly args: readonly Dep[];
}

export type Dep = SimpleDep | RichDep;

const OPS: Record<string, number> = {
  "<": SENSE_LESS,
  "<=": SENSE_LESS | SENSE_EQUAL,
  "=<": SENSE_LESS | SENSE_EQUAL,
  "=": SENSE_EQUAL,
  "==": SENSE_EQUAL,
  ">=": SENSE_GREATER | SENSE_EQUAL,
  "=>": SENSE_GREATER | SENSE_EQUAL,
  ">": SENSE_GREATER,
};

/** primary.xml's `flags` attribute. */
const XML_FLAGS: Record<string, number> = {
  LT: SENSE_LESS,
  LE: SENSE_LESS | SENSE_EQUAL,
  EQ: SENSE_EQUAL,
  GE: SENSE_GREATER | SENSE_EQUAL,
  GT: SENSE_GREATER,
};

const RICH_OPS = new Set<string>(["and", "or", "if", "unless", "with", "without", "else"]);

/** Longest dependency string accepted (rpm has no limit; real ones are far below this). */
const MAX_DEP_LENGTH = 64 * 1024;
/** Deepest nesting accepted (bounds the recursion on hostile input). */
const MAX_DEPTH = 64;

export function simpleDep(name: string, flags = 0, evr: Evr | null = null): SimpleDep {
  return { kind: "simple", name, flags: evr === null ? 0 : flags & SENSE_MASK, evr };
}

/** A dependency from a header or primary.xml entry: the name may itself be a rich dependency. */
export function depFromParts(name: string, flags: number, evr: Evr | null, where = "dependency"): Dep {
  if (name.startsWith("(")) return parseDep(name, where);
  return simpleDep(name, flags, evr);
}

/** Flags for primary.xml's `flags="GE"` etc.; an unknown value is a format error. */
export function xmlFlags(flags: string | undefined, where = "primary"): number {
  if (flags === undefined || flags === "") return 0;
  const f = XML_FLAGS[flags];
  if (f === undefined) throw new DepParseError(`unknown dependency flags "${flags}"`, { file: where });
  return f;
}

class Scanner {
  pos = 0;
  constructor(
    readonly text: string,
    readonly where: string,
  ) {}
  fail(msg: string): never {
    throw new DepParseError(`${msg} in "${this.text.slice(0, 200)}" at character ${this.pos}`, {
      file: this.where,
    });
  }
  skipSpace(): void {
    while (this.pos < this.text.length && /\s/.test(this.text[this.pos]!)) this.pos++;
  }
  atEnd(): boolean {
    return this.pos >= this.text.length;
  }
  peek(): string {
    return this.text[this.pos] ?? "";
  }
  /** A word: up to whitespace or an unbalanced `)`; balanced parentheses stay in the word. */
  word(): string {
    const start = this.pos;
    let depth = 0;
    while (this.pos < this.text.length) {
      const c = this.text[this.pos]!;
      if (/\s/.test(c)) break;
      if (c === "(") depth++;
      else if (c === ")") {
        if (depth === 0) break;
        depth--;
      }
      this.pos++;
    }
    if (depth !== 0) this.fail("unbalanced parenthesis");
    return this.text.slice(start, this.pos);
  }
}

/** Parse a dependency string: `name`, `name op evr`, or a rich dependency in parentheses. */
export function parseDep(text: string, where = "dependency"): Dep {
  if (text.length > MAX_DEP_LENGTH) {
    throw new DepParseError(`dependency string of ${text.length} characters`, { file: where });
  }
  const s = new Scanner(text, where);
  s.skipSpace();
  const dep = s.peek() === "(" ? parseRich(s, 0) : parseSimple(s, false);
  s.skipSpace();
  if (!s.atEnd()) s.fail("trailing text");
  return dep;
}

function parseSimple(s: Scanner, inRich: boolean): SimpleDep {
  const name = s.word();
  if (name === "") s.fail("missing name");
  if (inRich && RICH_OPS.has(name)) s.fail(`operator "${name}" where a name belongs`);
  const save = s.pos;
  s.skipSpace();
  const opStart = s.pos;
  while (!s.atEnd() && "<>=".includes(s.peek())) s.pos++;
  const op = s.text.slice(opStart, s.pos);
  if (op === "") {
    s.pos = save;
    return simpleDep(name);
  }
  const flags = OPS[op];
  if (flags === undefined) s.fail(`unknown operator "${op}"`);
  s.skipSpace();
  const evr = s.word();
  if (evr === "" || evr.startsWith("(")) s.fail(`missing version after "${op}"`);
  return simpleDep(name, flags, parseEvr(evr));
}

function parseOperand(s: Scanner, depth: number): Dep {
  s.skipSpace();
  if (s.peek() === "(") return parseRich(s, depth + 1);
  return parseSimple(s, true);
}

function parseRich(s: Scanner, depth: number): Dep {
  if (depth > MAX_DEPTH) s.fail("rich dependency nested too deeply");
  s.pos++; // "("
  const first = parseOperand(s, depth);
  s.skipSpace();
  if (s.peek() === ")") {
    // rpm accepts a single dependency in parentheses.
    s.pos++;
    return first;
  }
  if (s.atEnd()) s.fail("unterminated rich dependency");
  const op = s.word();
  if (!RICH_OPS.has(op) || op === "else") s.fail(`unknown rich operator "${op}"`);
  const args: Dep[] = [first, parseOperand(s, depth)];
  for (;;) {
    s.skipSpace();
    if (s.peek() === ")") break;
    if (s.atEnd()) s.fail("unterminated rich dependency");
    const next = s.word();
    if ((op === "if" || op === "unless") && next === "else" && args.length === 2) {
      args.push(parseOperand(s, depth));
    } else if (next === op && (op === "and" || op === "or" || op === "with")) {
      args.push(parseOperand(s, depth));
    } else {
      s.fail(`"${next}" cannot follow "${op}" here`);
    }
  }
  s.pos++; // ")"
  // As rpm: with/without relate capabilities of one package, so only simple deps (or further
  // with/without) may appear under them.
  if ((op === "with" || op === "without") && args.some((a) => !onlyWith(a))) {
    s.fail(`only simple dependencies may appear under "${op}"`);
  }
  return { kind: "rich", op: op as RichOp, args };
}

function onlyWith(d: Dep): boolean {
  return d.kind === "simple" || ((d.op === "with" || d.op === "without") && d.args.every(onlyWith));
}

function opString(flags: number): string {
  switch (flags & SENSE_MASK) {
    case SENSE_LESS:
      return "<";
    case SENSE_LESS | SENSE_EQUAL:
      return "<=";
    case SENSE_EQUAL:
      return "=";
    case SENSE_GREATER | SENSE_EQUAL:
      return ">=";
    case SENSE_GREATER:
      return ">";
    default:
      return "";
  }
}

/** The dependency as rpm prints it. */
export function formatDep(d: Dep): string {
  if (d.kind === "simple") {
    const op = opString(d.flags);
    return op === "" || d.evr === null ? d.name : `${d.name} ${op} ${formatEvr(d.evr)}`;
  }
  if (d.op === "if" || d.op === "unless") {
    const base = `${formatDep(d.args[0]!)} ${d.op} ${formatDep(d.args[1]!)}`;
    return d.args.length === 3 ? `(${base} else ${formatDep(d.args[2]!)})` : `(${base})`;
  }
  return `(${d.args.map(formatDep).join(` ${d.op} `)})`;
}

/**
 * Does a provide (name, flags, evr) satisfy a simple requirement? The names must already be equal.
 * Ranges overlap as in rpm/libsolv: an unversioned side matches anything; a side without a release
 * matches every release of its version.
 */
export function rangesOverlap(pFlags: number, pEvr: Evr | null, rFlags: number, rEvr: Evr | null): boolean {
  if (pEvr === null || rEvr === null || (pFlags & SENSE_MASK) === 0 || (rFlags & SENSE_MASK) === 0)
    return true;
  const sense = evrCompare(pEvr, rEvr, true);
  if (sense < 0) return (pFlags & SENSE_GREATER) !== 0 || (rFlags & SENSE_LESS) !== 0;
  if (sense > 0) return (pFlags & SENSE_LESS) !== 0 || (rFlags & SENSE_GREATER) !== 0;
  return (
    ((pFlags & SENSE_EQUAL) !== 0 && (rFlags & SENSE_EQUAL) !== 0) ||
    ((pFlags & SENSE_LESS) !== 0 && (rFlags & SENSE_LESS) !== 0) ||
    ((pFlags & SENSE_GREATER) !== 0 && (rFlags & SENSE_GREATER) !== 0)
  );
}

/** Every simple dependency named anywhere in `d` (the names a solver must look up). */
export function simpleDepsOf(d: Dep, out: SimpleDep[] = []): SimpleDep[] {
  if (d.kind === "simple") out.push(d);
  else for (const a of d.args) simpleDepsOf(a, out);
  return out;
}
