/**
 * Path equivalences: `file_contexts.subs_dist` (shipped by the policy) and `file_contexts.subs`
 * (local, `semanage fcontext -a -e`). Each line is `SRC DST` (whitespace separated, `#` comments,
 * lines with fewer than two fields skipped); a lookup key equal to SRC or below `SRC/` is rewritten
 * with DST in its place before matching. As libselinux does: the later line of a file is tried
 * first (its list is built by prepending), the first SRC that applies wins, a DST of "/" does not
 * double the slash, and the local file applies before the distribution file (which then applies
 * to the result).
 */

export interface PathSub {
  src: string;
  dst: string;
}

function isCSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** Parses a subs file into lookup order (last line first). */
export function parseSubs(data: Uint8Array | string): PathSub[] {
  const text = typeof data === "string" ? data : Buffer.from(data).toString("latin1");
  const out: PathSub[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.split("\0")[0];
    const fields: string[] = [];
    let i = 0;
    while (fields.length < 2 && i < line.length) {
      while (i < line.length && isCSpace(line.charCodeAt(i))) i++;
      if (fields.length === 0 && line[i] === "#") break;
      const f0 = i;
      while (i < line.length && !isCSpace(line.charCodeAt(i))) i++;
      if (i > f0) fields.push(line.slice(f0, i));
    }
    if (fields.length === 2) out.unshift({ src: fields[0], dst: fields[1] });
  }
  return out;
}

/** Applies the first matching equivalence of `subs`, or returns undefined. */
export function applySub(subs: readonly PathSub[], key: string): string | undefined {
  for (const s of subs) {
    if (!key.startsWith(s.src)) continue;
    const next = key[s.src.length];
    if (next !== undefined && next !== "/") continue;
    const cut = next === "/" && s.dst === "/" ? s.src.length + 1 : s.src.length;
    return s.dst + key.slice(cut);
  }
  return undefined;
}

/** libselinux's selabel_sub_key: local subs first, then the distribution's on the result. */
export function substitutePath(local: readonly PathSub[], dist: readonly PathSub[], key: string): string {
  const a = applySub(local, key);
  if (a !== undefined) return applySub(dist, a) ?? a;
  return applySub(dist, key) ?? key;
}
