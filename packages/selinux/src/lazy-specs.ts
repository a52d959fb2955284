/**
 * A text file_contexts read lazily: the lines a lookup could meet are found by native
 * regular-expression scans over the whole text and parsed then, so a one-shot job that writes
 * under /opt and /etc parses ~800 of refpolicy's ~5,300 lines instead of all of them.
 *
 * The text is still checked for every error the full parse reports (a line with one field, a
 * file type that is none of `-- -d -l -p -s -c -b`) when it is opened, by two scans; when either
 * finds something the full parse runs and throws with the line number. Text with NUL or bytes
 * above 0x7f is parsed in full up front (the byte-by-byte reading; libselinux refuses those bytes).
 */
import type { FileContextSpec } from "./file-contexts.js";
import { parseFileContexts } from "./file-contexts.js";

/** One spec field: no C-locale blank, no newline. */
const F = "[^\\t\\v\\f\\r \\n]";
const B = "[\\t\\v\\f\\r ]";
// The scans run over "\n" + text + "\n" and start at a newline (an unanchored literal start is
// far faster for the engine than a multiline "^", which it tries at every position).
/** A spec line with a single field (parseAscii: "missing fields"). */
const ONE_FIELD = new RegExp(`\\n${B}*[^\\t\\v\\f\\r #\\n]${F}*${B}*(?=\\n)`);
/** A spec line whose three fields have a second that is not a file type. */
const BAD_TYPE = new RegExp(
  `\\n${B}*[^\\t\\v\\f\\r #\\n]${F}*${B}+(?!(?:--|-d|-l|-p|-s|-c|-b)${B})${F}+${B}+${F}`,
);
const NUL_OR_HIGH = /[\0\x80-\uffff]/;

/** Escapes a string for use inside a RegExp source. */
function escapeRe(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&");
}

export class LazySpecText {
  readonly file: string;
  /** "\n" + the text + "\n". */
  private readonly scan: string;
  /** Parsed in full (non-ASCII text, or after a scan found an error the parse did not confirm). */
  private readonly eager?: FileContextSpec[];
  private allSpecs?: FileContextSpec[];
  /** candidates() per first character. */
  private readonly byChar = new Map<string, FileContextSpec[]>();
  /** Specs of the lines holding a "|". */
  private barSpecs?: FileContextSpec[];
  /** Offsets (in `scan`) of the newline before each line: line n starts after lineStarts[n - 1]. */
  private lineStarts?: number[];

  constructor(data: Uint8Array | string, file: string) {
    this.file = file;
    const text = typeof data === "string" ? data : Buffer.from(data).toString("latin1");
    this.scan = `\n${text}\n`;
    if (NUL_OR_HIGH.test(text) || ONE_FIELD.test(this.scan) || BAD_TYPE.test(this.scan))
      // throws the parse's error with its line (or, if the scan was over-eager, reads it all)
      this.eager = parseFileContexts(text, file);
  }

  /** No line number exceeds this. */
  get lineBound(): number {
    return this.scan.length;
  }

  /** Every spec, in file order. */
  all(): FileContextSpec[] {
    this.allSpecs ??= this.eager ?? parseFileContexts(this.scan.slice(1, -1), this.file);
    return this.allSpecs;
  }

  /** The line number of the line after the newline at `nl`. */
  private lineAt(nl: number): number {
    if (!this.lineStarts) {
      const starts: number[] = [];
      const scan = this.scan;
      for (let i = scan.indexOf("\n"); i >= 0 && i < scan.length - 1; i = scan.indexOf("\n", i + 1))
        starts.push(i);
      this.lineStarts = starts;
    }
    const starts = this.lineStarts;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] < nl) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  }

  /** The specs of the lines after the newlines at `nls` (ascending), parsed as one text. */
  private specsAt(nls: readonly number[]): FileContextSpec[] {
    if (nls.length === 0) return [];
    const lines: string[] = [];
    for (const nl of nls) lines.push(this.scan.slice(nl + 1, this.scan.indexOf("\n", nl + 1)));
    // every line holds a spec (comments and blank lines are never picked): specs[i] is line i's
    const specs = parseFileContexts(lines.join("\n"), this.file);
    for (let i = 0; i < specs.length; i++) specs[i].line = this.lineAt(nls[specs[i].line - 1]);
    return specs;
  }

  /**
   * Specs of the lines whose first field starts with "/" + `c` (`c` one character), or — with
   * `c` "" — starts otherwise (not with "/"; "/" and a character that cannot begin a literal path
   * name; one character and a quantifier), and of every line holding a `|`. A superset of what a
   * key whose first component starts with `c` can meet besides the specs of other first
   * characters (the caller filters by firstComponentBucket).
   */
  candidates(c: string): FileContextSpec[] {
    if (this.eager) return this.eager;
    let out = this.byChar.get(c);
    if (out) return out;
    out = [];
    const head =
      c === "" ? `(?:[^\\t\\v\\f\\r #\\n/]|/[^A-Za-z0-9_~@%,:=!"'<>&;\`-]|/.[?*{])` : `/${escapeRe(c)}`;
    const re = new RegExp(`\\n${B}*${head}`, "g");
    const scan = this.scan;
    const nls: number[] = [];
    for (let m = re.exec(scan); m !== null; m = re.exec(scan)) {
      nls.push(m.index);
      re.lastIndex = scan.indexOf("\n", m.index + 1);
    }
    for (const s of this.specsAt(nls)) out.push(s);
    if (!this.barSpecs) {
      const bars: number[] = [];
      for (let i = scan.indexOf("|"); i >= 0; i = scan.indexOf("|", i + 1)) {
        const nl = scan.lastIndexOf("\n", i);
        // a "|" in a comment is no spec's
        if (/^[\t\v\f\r ]*#/.test(scan.slice(nl + 1, i))) {
          i = scan.indexOf("\n", i);
          continue;
        }
        bars.push(nl);
        i = scan.indexOf("\n", i);
      }
      this.barSpecs = this.specsAt(bars);
    }
    // a line may be in both lists: the caller keeps one of each line
    for (const s of this.barSpecs) out.push(s);
    this.byChar.set(c, out);
    return out;
  }
}
