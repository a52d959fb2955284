/**
 * Package relationship fields (deb-control(5) "Depends" syntax): comma-separated groups of
 * "|"-separated alternatives, each "name[:archqual] [(op version)] [[arch list]] [<profiles>]".
 * Binary packages carry no architecture or profile restrictions; they are parsed and kept so source
 * stanzas do not break the parser. The obsolete "<" and ">" mean "<=" and ">=", as dpkg reads them.
 */
import { DebFormatError } from "./errors.js";
import { parseVersion, type VersionOp } from "./version.js";

export interface Relation {
  name: string;
  /** ":any", ":native", ":amd64"... without the colon; undefined when absent. */
  archQualifier?: string;
  op?: VersionOp;
  version?: string;
  /** [arch list] restriction, as written. */
  archRestriction?: string[];
}

/** One comma-separated group: satisfied by any of its alternatives. */
export type RelationGroup = Relation[];

const NAME = /^[a-z0-9][a-z0-9+.-]*$/;
const MAX_RELATION_FIELD = 256 * 1024;

export function parseRelations(
  text: string | undefined,
  where: { file?: string; field?: string } = {},
): RelationGroup[] {
  if (!text || text.trim() === "") return [];
  const at = { file: where.file };
  if (text.length > MAX_RELATION_FIELD)
    throw new DebFormatError(`${where.field ?? "relation"} field too long`, at);
  const out: RelationGroup[] = [];
  for (const group of text.split(",")) {
    if (group.trim() === "") continue; // a trailing comma is tolerated
    const alts: Relation[] = [];
    for (const alt of group.split("|")) {
      const m =
        /^\s*([^\s:([<]+)(?::([a-z0-9-]+))?\s*(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([^)\s]+)\s*\))?\s*(?:\[([^\]]*)\])?\s*(?:<[^>]*>\s*)*$/.exec(
          alt,
        );
      if (!m || !NAME.test(m[1])) {
        throw new DebFormatError(
          `${where.field ?? "relation"}: cannot parse "${alt.trim().slice(0, 80)}"`,
          at,
        );
      }
      const rel: Relation = { name: m[1] };
      if (m[2]) rel.archQualifier = m[2];
      if (m[3]) {
        rel.op = (m[3] === "<" ? "<=" : m[3] === ">" ? ">=" : m[3]) as VersionOp;
        parseVersion(m[4], at);
        rel.version = m[4];
      }
      if (m[5] !== undefined) rel.archRestriction = m[5].trim().split(/\s+/);
      alts.push(rel);
    }
    out.push(alts);
  }
  return out;
}

export function formatRelation(r: Relation): string {
  return `${r.name}${r.archQualifier ? `:${r.archQualifier}` : ""}${r.op ? ` (${r.op} ${r.version})` : ""}`;
}

export function formatGroup(g: RelationGroup): string {
  return g.map(formatRelation).join(" | ");
}
