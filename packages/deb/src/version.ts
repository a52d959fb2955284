/**
 * Debian version numbers (deb-version(7)): [epoch:]upstream[-revision], compared as dpkg does:
 * epochs numerically, then upstream and revision each by alternating non-digit and digit runs.
 * In non-digit runs letters sort before non-letters, and "~" before everything, even the end of the
 * string ("1.0~rc1" < "1.0"); digit runs compare as numbers.
 */
import { DebFormatError } from "./errors.js";

export interface DebVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

/** Parses a version; throws DebFormatError for what dpkg refuses. */
export function parseVersion(text: string, where: { file?: string } = {}): DebVersion {
  const s = text.trim();
  if (s === "") throw new DebFormatError("empty version", where);
  if (/\s/.test(s)) throw new DebFormatError(`version "${s}" contains whitespace`, where);
  let epoch = 0;
  let rest = s;
  const colon = s.indexOf(":");
  if (colon >= 0) {
    const e = s.slice(0, colon);
    if (!/^\d+$/.test(e) || Number(e) > 0x7fffffff)
      throw new DebFormatError(`version "${s}": bad epoch`, where);
    epoch = Number(e);
    rest = s.slice(colon + 1);
  }
  const dash = rest.lastIndexOf("-");
  const upstream = dash >= 0 ? rest.slice(0, dash) : rest;
  const revision = dash >= 0 ? rest.slice(dash + 1) : "";
  if (dash >= 0 && revision === "") throw new DebFormatError(`version "${s}": empty revision`, where);
  if (upstream === "") throw new DebFormatError(`version "${s}": empty upstream version`, where);
  if (!/^[0-9]/.test(upstream))
    throw new DebFormatError(`version "${s}": upstream must start with a digit`, where);
  if (!/^[A-Za-z0-9.+~:-]*$/.test(upstream) || !/^[A-Za-z0-9.+~]*$/.test(revision)) {
    throw new DebFormatError(`version "${s}" has invalid characters`, where);
  }
  return { epoch, upstream, revision };
}

function order(c: number): number {
  if (c >= 0x30 && c <= 0x39) return 0;
  if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) return c;
  if (c === 0x7e) return -1;
  return c === 0 ? 0 : c + 256;
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

/** dpkg's verrevcmp: compares one upstream or revision part. */
export function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while ((i < a.length && !isDigit(a.charCodeAt(i))) || (j < b.length && !isDigit(b.charCodeAt(j)))) {
      const ac = i < a.length ? order(a.charCodeAt(i)) : 0;
      const bc = j < b.length ? order(b.charCodeAt(j)) : 0;
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a.charCodeAt(i) === 0x30) i++;
    while (b.charCodeAt(j) === 0x30) j++;
    while (i < a.length && isDigit(a.charCodeAt(i)) && j < b.length && isDigit(b.charCodeAt(j))) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (i < a.length && isDigit(a.charCodeAt(i))) return 1;
    if (j < b.length && isDigit(b.charCodeAt(j))) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

/** Negative, zero or positive as a sorts before, equal to, or after b (dpkg --compare-versions). */
export function compareVersions(a: string | DebVersion, b: string | DebVersion): number {
  const x = typeof a === "string" ? parseVersion(a) : a;
  const y = typeof b === "string" ? parseVersion(b) : b;
  if (x.epoch !== y.epoch) return x.epoch - y.epoch;
  const u = compareFragment(x.upstream, y.upstream);
  if (u !== 0) return u;
  return compareFragment(x.revision, y.revision);
}

export type VersionOp = "<<" | "<=" | "=" | ">=" | ">>";

/** True when `version op bound` holds. */
export function satisfiesVersion(version: string, op: VersionOp, bound: string): boolean {
  const c = compareVersions(version, bound);
  switch (op) {
    case "<<":
      return c < 0;
    case "<=":
      return c <= 0;
    case "=":
      return c === 0;
    case ">=":
      return c >= 0;
    case ">>":
      return c > 0;
  }
}
