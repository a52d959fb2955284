/**
 * A small YAML reader for the subset diskimage-builder element files use (package-installs.yaml,
 * svc-map): block mappings and sequences by indentation, plain/quoted scalars, `~`/`null`/empty as
 * null, true/false, comments. Flow collections other than `[]`/`{}` and anchors are refused.
 */
import { ElementFormatError } from "./errors.js";

export type YamlValue = null | boolean | number | string | YamlValue[] | { [k: string]: YamlValue };

interface Line {
  indent: number;
  text: string;
  no: number;
}

const MAX_YAML_BYTES = 1 << 20;

export function parseYamlLite(text: string, file: string): YamlValue {
  if (text.length > MAX_YAML_BYTES) throw new ElementFormatError("file too large", file);
  const trimmed = text.trim();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      return JSON.parse(trimmed) as YamlValue;
    } catch {
      throw new ElementFormatError("flow-style YAML is only accepted when it is JSON", file);
    }
  }
  const lines: Line[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const noComment = stripComment(raw);
    if (noComment.trim() === "" || noComment.trim() === "---") return;
    if (raw.includes("\t") && /^\s*\t/.test(raw))
      throw new ElementFormatError(`line ${i + 1}: tab indentation`, file);
    lines.push({
      indent: noComment.length - noComment.trimStart().length,
      text: noComment.trim(),
      no: i + 1,
    });
  });
  if (lines.length === 0) return null;
  let pos = 0;

  const parseBlock = (indent: number): YamlValue => {
    const first = lines[pos];
    if (first.text.startsWith("- ") || first.text === "-") {
      const arr: YamlValue[] = [];
      while (
        pos < lines.length &&
        lines[pos].indent === indent &&
        (lines[pos].text.startsWith("- ") || lines[pos].text === "-")
      ) {
        const l = lines[pos];
        const rest = l.text === "-" ? "" : l.text.slice(2).trim();
        if (rest === "") {
          pos++;
          arr.push(pos < lines.length && lines[pos].indent > indent ? parseBlock(lines[pos].indent) : null);
        } else if (/^[^"'][^:]*:(\s|$)/.test(rest) || /^["'][^"']*["']:(\s|$)/.test(rest)) {
          // "- key: value" starts a mapping whose further keys are indented past the dash.
          lines[pos] = { indent: indent + 2, text: rest, no: l.no };
          arr.push(parseBlock(indent + 2));
        } else {
          pos++;
          arr.push(scalar(rest, l.no));
        }
      }
      return arr;
    }
    const obj: { [k: string]: YamlValue } = {};
    while (pos < lines.length && lines[pos].indent === indent) {
      const l = lines[pos];
      const m = /^("([^"]*)"|'([^']*)'|[^:]+?)\s*:(\s+(.*))?$/.exec(l.text);
      if (!m) throw new ElementFormatError(`line ${l.no}: expected "key: value"`, file);
      const key = m[2] ?? m[3] ?? m[1];
      const rest = (m[5] ?? "").trim();
      pos++;
      if (rest !== "") obj[key] = scalar(rest, l.no);
      else if (pos < lines.length && lines[pos].indent > indent) obj[key] = parseBlock(lines[pos].indent);
      else if (pos < lines.length && lines[pos].indent === indent && lines[pos].text.startsWith("- ")) {
        obj[key] = parseBlock(indent);
      } else obj[key] = null;
    }
    if (pos < lines.length && lines[pos].indent > indent) {
      throw new ElementFormatError(`line ${lines[pos].no}: unexpected indentation`, file);
    }
    return obj;
  };

  const scalar = (s: string, no: number): YamlValue => {
    if (s === "~" || s === "null" || s === "Null" || s === "NULL") return null;
    if (/^(true|True|TRUE|yes|Yes)$/.test(s)) return true;
    if (/^(false|False|FALSE|no|No)$/.test(s)) return false;
    if (s === "[]") return [];
    if (s === "{}") return {};
    if (s.startsWith('"') && s.endsWith('"') && s.length >= 2) return JSON.parse(s) as string;
    if (s.startsWith("'") && s.endsWith("'") && s.length >= 2) return s.slice(1, -1).replace(/''/g, "'");
    if (/^[[{&*!|>]/.test(s)) throw new ElementFormatError(`line ${no}: unsupported YAML construct`, file);
    if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
    return s;
  };

  const root = parseBlock(lines[0].indent);
  if (pos < lines.length) throw new ElementFormatError(`line ${lines[pos].no}: unexpected content`, file);
  return root;
}

function stripComment(line: string): string {
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === "#" && (i === 0 || /\s/.test(line[i - 1]))) {
      return line.slice(0, i);
    }
  }
  return line;
}
