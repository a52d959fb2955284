/**
 * The order diskimage-builder's dib-run-parts gives a phase directory: regular files (symlinks
 * followed) that are executable and whose names match ^[0-9A-Za-z_-]+$, sorted with `LANG=C sort -n`
 * (by the leading number, names without one counting as 0, ties broken bytewise). environment.d files
 * (names matching ^[0-9A-Za-z_.-]+$, executable or not) are sourced first, in the same order.
 */

export const SCRIPT_NAME_RE = /^[0-9A-Za-z_-]+$/;
export const ENV_NAME_RE = /^[0-9A-Za-z_.-]+$/;

function leadingNumber(s: string): number {
  const m = /^\s*(-?)(\d+)/.exec(s);
  if (!m) return 0;
  const n = Number(m[2]);
  return m[1] === "-" && n !== 0 ? -n : n;
}

/** `LC_ALL=C sort -n` comparison. */
export function compareSortN(a: string, b: string): number {
  const d = leadingNumber(a) - leadingNumber(b);
  if (d !== 0) return d < 0 ? -1 : 1;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export interface RunPartsCandidate {
  name: string;
  executable: boolean;
  /** Regular file after following symlinks. */
  regular: boolean;
}

export interface RunPartsSelection {
  run: string[];
  ignored: Array<{ name: string; why: string }>;
}

export function selectScripts(candidates: readonly RunPartsCandidate[]): RunPartsSelection {
  const run: string[] = [];
  const ignored: Array<{ name: string; why: string }> = [];
  for (const c of candidates) {
    if (!c.regular) continue; // subdirectories (install-type dirs, helpers) are not scripts
    if (!c.executable) ignored.push({ name: c.name, why: "not executable" });
    else if (!SCRIPT_NAME_RE.test(c.name))
      ignored.push({ name: c.name, why: "name does not match [0-9A-Za-z_-]+" });
    else run.push(c.name);
  }
  return { run: run.sort(compareSortN), ignored };
}

export function selectEnvironmentFiles(candidates: readonly RunPartsCandidate[]): string[] {
  return candidates
    .filter((c) => c.regular && ENV_NAME_RE.test(c.name))
    .map((c) => c.name)
    .sort(compareSortN);
}
