/**
 * YAML for element files (package-installs.yaml, svc-map) and recipes, read with the `yaml`
 * library. diskimage-builder reads these files with PyYAML, i.e. YAML 1.1 (`yes`/`no`/`on`/`off`
 * are booleans), so that is the schema used here. Anchors, aliases, flow style and block scalars
 * all work; the input is bounded in size and alias expansion (a "billion laughs" file is refused),
 * and every failure is an ElementFormatError naming the file and line.
 */
import { parseDocument } from "yaml";
import { ElementFormatError } from "./errors.js";

export type YamlValue = null | boolean | number | string | YamlValue[] | { [k: string]: YamlValue };

const MAX_YAML_BYTES = 1 << 20;
/** Aliases a document may expand (the library's own guard against exponential expansion). */
const MAX_ALIASES = 1000;

export function parseYaml(text: string, file: string): YamlValue {
  if (text.length > MAX_YAML_BYTES) throw new ElementFormatError("file too large", file);
  const doc = parseDocument(text, { version: "1.1", uniqueKeys: true, prettyErrors: false });
  const problem = doc.errors[0];
  if (problem) {
    const line = problem.linePos?.[0]?.line;
    throw new ElementFormatError(`${line ? `line ${line}: ` : ""}${problem.message.split("\n")[0]}`, file);
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (err) {
    throw new ElementFormatError(`cannot expand: ${(err as Error).message.split("\n")[0]}`, file);
  }
  return plain(value, file);
}

/** Only JSON-like values leave here: dates, binary, sets and maps with non-string keys are refused. */
function plain(v: unknown, file: string): YamlValue {
  if (v === null || v === undefined) return null;
  if (typeof v === "string" || typeof v === "boolean") return v;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new ElementFormatError(`number out of range: ${v}`, file);
    return v;
  }
  if (Array.isArray(v)) return v.map((x) => plain(x, file));
  if (Object.getPrototypeOf(v) === Object.prototype) {
    const out: { [k: string]: YamlValue } = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = plain(x, file);
    return out;
  }
  throw new ElementFormatError(`unsupported YAML value (${Object.prototype.toString.call(v)})`, file);
}
