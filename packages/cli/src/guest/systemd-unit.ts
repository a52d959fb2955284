/**
 * systemd unit-file syntax (systemd.syntax(7)): [Section] headers, KEY=VALUE lines, "#"/";" comment
 * lines, a trailing backslash continuing a value on the next line (comment lines inside a continuation
 * are skipped), and keys that may repeat (an empty assignment resets list-valued keys).
 */
import { FormatError } from "@imgpatch/disk";

export interface UnitEntry {
  key: string;
  value: string;
  line: number;
}

export interface UnitSection {
  name: string;
  entries: UnitEntry[];
}

export interface UnitFile {
  sections: UnitSection[];
}

/** Caps a unit file's size so a hostile guest cannot make us parse megabytes of nonsense. */
export const MAX_UNIT_FILE_BYTES = 1 << 20;

export function parseUnitFile(text: string, file = "<unit>"): UnitFile {
  if (text.length > MAX_UNIT_FILE_BYTES) throw new FormatError("unit file too large", { file });
  const lines = text.split(/\r?\n/);
  const sections: UnitSection[] = [];
  let current: UnitSection | undefined;
  for (let i = 0; i < lines.length; i++) {
    const startLine = i + 1;
    let line = lines[i].trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    // Join continuation lines: a trailing backslash becomes a space; comment lines inside are skipped.
    while (line.endsWith("\\") && i + 1 < lines.length) {
      line = `${line.slice(0, -1)} `;
      let next = lines[++i].trim();
      while ((next.startsWith("#") || next.startsWith(";")) && i + 1 < lines.length) next = lines[++i].trim();
      if (next.startsWith("#") || next.startsWith(";")) break;
      line += next;
    }
    if (line.endsWith("\\")) line = line.slice(0, -1);
    if (line.startsWith("[")) {
      if (!line.endsWith("]")) throw new FormatError(`line ${startLine}: bad section header`, { file });
      current = { name: line.slice(1, -1), entries: [] };
      sections.push(current);
      continue;
    }
    const eq = line.indexOf("=");
    if (eq <= 0) throw new FormatError(`line ${startLine}: expected KEY=VALUE`, { file });
    if (!current) throw new FormatError(`line ${startLine}: assignment outside of a section`, { file });
    current.entries.push({
      key: line.slice(0, eq).trim(),
      value: line.slice(eq + 1).trim(),
      line: startLine,
    });
  }
  return { sections };
}

/** All values of a key across every section of that name, in order (repeated sections merge). */
export function unitValues(unit: UnitFile, section: string, key: string): string[] {
  const out: string[] = [];
  for (const s of unit.sections) {
    if (s.name !== section) continue;
    for (const e of s.entries) if (e.key === key) out.push(e.value);
  }
  return out;
}

/** Last value of a key (the one systemd uses for single-valued settings). */
export function unitValue(unit: UnitFile, section: string, key: string): string | undefined {
  const v = unitValues(unit, section, key);
  return v.length > 0 ? v[v.length - 1] : undefined;
}

/**
 * A whitespace-separated list setting: the values of every assignment, split into words (quotes
 * removed); an empty assignment clears what came before, as systemd does for list settings.
 */
export function unitList(unit: UnitFile, section: string, key: string): string[] {
  let out: string[] = [];
  for (const v of unitValues(unit, section, key)) {
    if (v === "") {
      out = [];
      continue;
    }
    out.push(...splitWords(v));
  }
  return out;
}

function splitWords(v: string): string[] {
  const words: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(v); m !== null; m = re.exec(v)) words.push(m[1] ?? m[2] ?? m[3]);
  return words;
}

/** Renders sections back to text (used for units we write). */
export function renderUnitFile(sections: Array<[string, Array<[string, string]>]>): string {
  return sections
    .map(([name, entries]) => `[${name}]\n${entries.map(([k, v]) => `${k}=${v}\n`).join("")}`)
    .join("\n");
}
