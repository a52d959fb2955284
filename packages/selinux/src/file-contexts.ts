/**
 * The text form of `file_contexts` (and `.homedirs`, `.local`): one spec a line,
 *
 *   REGEX [FILETYPE] CONTEXT
 *
 * split on C-locale whitespace; `#` starts a comment line; fields past the third are ignored; a
 * line with one field is an error. FILETYPE is `--` (regular file), `-d`, `-l`, `-p` (FIFO), `-s`,
 * `-c`, `-b`; CONTEXT is `user:role:type[:range]` or `<<none>>` ("leave unlabelled"). Bytes above
 * 0x7f are refused, as libselinux refuses them (so every spec is ASCII). This is the reading
 * libselinux 3.x applies (read_spec_entries + process_line); the parser keeps file and line
 * numbers so the matcher can say which spec decided a label and errors can point at it.
 */
import { SelinuxPolicyError } from "./errors.js";

/** S_IFMT values, as `stat.st_mode & S_IFMT` reports them. */
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFIFO = 0o010000;
export const S_IFSOCK = 0o140000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

const TYPE_FLAGS: Record<string, number> = {
  "--": S_IFREG,
  "-d": S_IFDIR,
  "-l": S_IFLNK,
  "-p": S_IFIFO,
  "-s": S_IFSOCK,
  "-c": S_IFCHR,
  "-b": S_IFBLK,
};

/** The S_IFMT value of a FILETYPE field, or undefined (own keys only: "constructor" is no type). */
function typeFlag(field: string): number | undefined {
  return Object.hasOwn(TYPE_FLAGS, field) ? TYPE_FLAGS[field] : undefined;
}

/** The FILETYPE flag written for an S_IFMT value ("" for 0 = any). */
export function fileTypeFlag(mode: number): string {
  for (const [flag, m] of Object.entries(TYPE_FLAGS)) if (m === mode) return flag;
  return "";
}

export interface FileContextSpec {
  /** The regular expression as written (ASCII). */
  regex: string;
  /** S_IFMT value the spec is limited to, 0 for any file type. */
  mode: number;
  /** The context, or null for `<<none>>` (the file is left as it is). */
  context: string | null;
  /** Where it came from, for messages and `--explain`-style reports. */
  file: string;
  /** 1-based line (text files) or 1-based entry index (compiled files). */
  line: number;
}

function isCSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** Up to three fields of a line (C-locale whitespace; the line has no newline, NUL or byte > 0x7f). */
const FIELDS = /^[\t\v\f\r ]*([^\t\v\f\r ]+)(?:[\t\v\f\r ]+([^\t\v\f\r ]+))?(?:[\t\v\f\r ]+([^\t\v\f\r ]+))?/;
const NUL_OR_HIGH = /[\0\x80-\uffff]/;

/** Parses a text file_contexts; `file` names it in errors. */
export function parseFileContexts(data: Uint8Array | string, file: string): FileContextSpec[] {
  const text = typeof data === "string" ? data : Buffer.from(data).toString("latin1");
  // The common case (plain ASCII, no NUL) split by the regular-expression engine: this runs once
  // per policy line at load, mostly before the JIT has warmed up.
  return NUL_OR_HIGH.test(text) ? parseSlow(text, file) : parseAscii(text, file);
}

function parseAscii(text: string, file: string): FileContextSpec[] {
  const specs: FileContextSpec[] = [];
  const lines = text.split("\n");
  // a final newline ends the last line, it does not start another
  const n = lines.length > 0 && lines[lines.length - 1] === "" ? lines.length - 1 : lines.length;
  for (let i = 0; i < n; i++) {
    const m = FIELDS.exec(lines[i]);
    if (m === null || m[1].charCodeAt(0) === 0x23) continue; // blank, or a comment
    const lineNo = i + 1;
    if (m[2] === undefined) throw new SelinuxPolicyError(file, "missing fields", { line: lineNo });
    let mode = 0;
    let context = m[2];
    if (m[3] !== undefined) {
      const t = typeFlag(m[2]);
      if (t === undefined)
        throw new SelinuxPolicyError(file, `invalid file type ${JSON.stringify(m[2])}`, { line: lineNo });
      mode = t;
      context = m[3];
    }
    specs.push({ regex: m[1], mode, context: context === "<<none>>" ? null : context, file, line: lineNo });
  }
  return specs;
}

/** Byte by byte: NULs end lines, bytes above 0x7f in a field are refused. */
function parseSlow(text: string, file: string): FileContextSpec[] {
  const specs: FileContextSpec[] = [];
  let lineNo = 0;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    lineNo++;
    let line = text.slice(start, end);
    start = end + 1;
    // C strings: a NUL ends the line as libselinux sees it
    const nul = line.indexOf("\0");
    if (nul >= 0) line = line.slice(0, nul);
    const fields: string[] = [];
    let i = 0;
    while (i < line.length && isCSpace(line.charCodeAt(i))) i++;
    if (i >= line.length || line[i] === "#") continue;
    while (fields.length < 3 && i < line.length) {
      while (i < line.length && isCSpace(line.charCodeAt(i))) i++;
      const f0 = i;
      while (i < line.length && !isCSpace(line.charCodeAt(i))) {
        if (line.charCodeAt(i) > 0x7f)
          throw new SelinuxPolicyError(file, "non-ASCII character in a spec", { line: lineNo });
        i++;
      }
      if (i > f0) fields.push(line.slice(f0, i));
    }
    if (fields.length < 2) throw new SelinuxPolicyError(file, "missing fields", { line: lineNo });
    const [regex, typeOrContext, maybeContext] = fields;
    let mode = 0;
    let context = typeOrContext;
    if (maybeContext !== undefined) {
      const m = typeFlag(typeOrContext);
      if (m === undefined)
        throw new SelinuxPolicyError(file, `invalid file type ${JSON.stringify(typeOrContext)}`, {
          line: lineNo,
        });
      mode = m;
      context = maybeContext;
    }
    specs.push({ regex, mode, context: context === "<<none>>" ? null : context, file, line: lineNo });
  }
  return specs;
}
