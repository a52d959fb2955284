/**
 * RFC 822-style stanzas as Debian writes them (deb-control(5), deb822(5)): "Field: value" lines,
 * continuation lines starting with a space or tab, stanzas separated by blank lines. Used for a
 * package's control file, dpkg's status database, Packages and Release indexes and .sources files.
 *
 * Field names compare case-insensitively; the original spelling and order are kept so a stanza can
 * be written back unchanged. Multi-line values keep their continuation lines verbatim (leading space
 * included), as dpkg copies them.
 */
import { DebFormatError } from "./errors.js";

export class Stanza {
  /** Fields in file order, names as spelled. */
  readonly fields: [string, string][] = [];
  private readonly index = new Map<string, number>();
  /** Line (1-based) where the stanza starts, for messages. */
  line = 0;

  get(name: string): string | undefined {
    const i = this.index.get(name.toLowerCase());
    return i === undefined ? undefined : this.fields[i][1];
  }

  has(name: string): boolean {
    return this.index.has(name.toLowerCase());
  }

  /** Sets a field, replacing an existing one in place or appending. */
  set(name: string, value: string): void {
    const i = this.index.get(name.toLowerCase());
    if (i === undefined) {
      this.index.set(name.toLowerCase(), this.fields.length);
      this.fields.push([name, value]);
    } else this.fields[i] = [this.fields[i][0], value];
  }

  delete(name: string): void {
    const i = this.index.get(name.toLowerCase());
    if (i === undefined) return;
    this.fields.splice(i, 1);
    this.index.clear();
    for (const [j, [n]] of this.fields.entries()) this.index.set(n.toLowerCase(), j);
  }

  /** The stanza as text, one trailing newline. */
  format(): string {
    // A value starting on the next line (Conffiles, Description-less lists) has no space after ":".
    return this.fields
      .map(([n, v]) => (v === "" || v.startsWith("\n") ? `${n}:${v}\n` : `${n}: ${v}\n`))
      .join("");
  }
}

export interface ParseOptions {
  /** Name for errors. */
  file?: string;
  /** Skip lines starting with "#" (deb822 .sources files allow comments; control files do not). */
  comments?: boolean;
}

/** Bound on one field value (the largest real ones, Description and Conffiles, are a few KiB). */
export const MAX_FIELD = 1 << 20;

/** Parses every stanza. Malformed lines are a DebFormatError naming the line. */
export function parseStanzas(text: string, opts: ParseOptions = {}): Stanza[] {
  const out: Stanza[] = [];
  let cur: Stanza | undefined;
  let lastName: string | undefined;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i];
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (opts.comments && line.startsWith("#")) continue;
    if (line.trim() === "") {
      cur = undefined;
      lastName = undefined;
      continue;
    }
    if (line[0] === " " || line[0] === "\t") {
      if (!cur || lastName === undefined) {
        throw new DebFormatError(`line ${i + 1}: continuation line outside a field`, { file: opts.file });
      }
      const value = `${cur.get(lastName)}\n${line}`;
      if (value.length > MAX_FIELD) {
        throw new DebFormatError(`line ${i + 1}: field ${lastName} longer than ${MAX_FIELD} bytes`, {
          file: opts.file,
        });
      }
      cur.set(lastName, value);
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) throw new DebFormatError(`line ${i + 1}: expected "Field: value"`, { file: opts.file });
    const name = line.slice(0, colon);
    if (!/^[!-9;-~]+$/.test(name)) {
      throw new DebFormatError(`line ${i + 1}: bad field name "${name.slice(0, 40)}"`, { file: opts.file });
    }
    if (!cur) {
      cur = new Stanza();
      cur.line = i + 1;
      out.push(cur);
    }
    if (cur.has(name))
      throw new DebFormatError(`line ${i + 1}: duplicate field ${name}`, { file: opts.file });
    cur.set(name, line.slice(colon + 1).trim());
    lastName = name;
  }
  return out;
}

/** Parses text holding exactly one stanza (a control file). */
export function parseStanza(text: string, opts: ParseOptions = {}): Stanza {
  const all = parseStanzas(text, opts);
  if (all.length !== 1)
    throw new DebFormatError(`expected one stanza, found ${all.length}`, { file: opts.file });
  return all[0];
}
