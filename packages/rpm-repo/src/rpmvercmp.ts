/**
 * rpm's version comparison (rpmvercmp) and EVR comparison as libsolv applies it for dnf.
 *
 * A version string is split into maximal runs of ASCII digits or ASCII letters; every other
 * character separates runs, except `~` (sorts before anything, even the end of the string: a
 * pre-release) and `^` (sorts after the end of the string but before any further run: a
 * post-release snapshot). Digit runs compare numerically (leading zeros ignored, longer wins), letter
 * runs by byte order, and a digit run beats a letter run.
 */

enum Ch {
  Tilde = 0x7e,
  Caret = 0x5e,
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isAlpha(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

function isAlnum(c: number): boolean {
  return isDigit(c) || isAlpha(c);
}

/** Compare two version (or release) strings as rpm does: -1, 0 or 1. */
export function rpmvercmp(a: string, b: string): -1 | 0 | 1 {
  if (a === b) return 0;
  let i = 0;
  let j = 0;
  const la = a.length;
  const lb = b.length;
  while (i < la || j < lb) {
    while (
      i < la &&
      !isAlnum(a.charCodeAt(i)) &&
      a.charCodeAt(i) !== Ch.Tilde &&
      a.charCodeAt(i) !== Ch.Caret
    )
      i++;
    while (
      j < lb &&
      !isAlnum(b.charCodeAt(j)) &&
      b.charCodeAt(j) !== Ch.Tilde &&
      b.charCodeAt(j) !== Ch.Caret
    )
      j++;
    const ca = i < la ? a.charCodeAt(i) : 0;
    const cb = j < lb ? b.charCodeAt(j) : 0;
    // `~` sorts before everything, including the end of the other string.
    if (ca === Ch.Tilde || cb === Ch.Tilde) {
      if (ca !== Ch.Tilde) return 1;
      if (cb !== Ch.Tilde) return -1;
      i++;
      j++;
      continue;
    }
    // `^` sorts after the end of the other string but before any other run.
    if (ca === Ch.Caret || cb === Ch.Caret) {
      if (i >= la) return -1;
      if (j >= lb) return 1;
      if (ca !== Ch.Caret) return 1;
      if (cb !== Ch.Caret) return -1;
      i++;
      j++;
      continue;
    }
    if (i >= la || j >= lb) break;
    const si = i;
    const sj = j;
    const numeric = isDigit(ca);
    if (numeric) {
      while (i < la && isDigit(a.charCodeAt(i))) i++;
      while (j < lb && isDigit(b.charCodeAt(j))) j++;
    } else {
      while (i < la && isAlpha(a.charCodeAt(i))) i++;
      while (j < lb && isAlpha(b.charCodeAt(j))) j++;
    }
    // The runs are of different kinds: a numeric run is newer than a letter run.
    if (j === sj) return numeric ? 1 : -1;
    let sa = a.slice(si, i);
    let sb = b.slice(sj, j);
    if (numeric) {
      sa = sa.replace(/^0+/, "");
      sb = sb.replace(/^0+/, "");
      if (sa.length !== sb.length) return sa.length > sb.length ? 1 : -1;
    }
    if (sa !== sb) return sa < sb ? -1 : 1;
  }
  if (i >= la && j >= lb) return 0;
  // Whichever string still has characters left is the newer one.
  return i < la ? 1 : -1;
}

/** An epoch:version-release triple; a missing epoch is "", a missing release is "". */
export interface Evr {
  epoch: string;
  version: string;
  release: string;
}

/** Split `[epoch:]version[-release]` as rpm does (the release starts after the last `-`). */
export function parseEvr(evr: string): Evr {
  let rest = evr;
  let epoch = "";
  const colon = rest.indexOf(":");
  if (colon >= 0 && /^\d*$/.test(rest.slice(0, colon))) {
    epoch = rest.slice(0, colon);
    rest = rest.slice(colon + 1);
  }
  const dash = rest.lastIndexOf("-");
  if (dash >= 0) return { epoch, version: rest.slice(0, dash), release: rest.slice(dash + 1) };
  return { epoch, version: rest, release: "" };
}

export function formatEvr(e: Evr): string {
  const ep = e.epoch !== "" && e.epoch !== "0" ? `${e.epoch}:` : "";
  return e.release === "" ? `${ep}${e.version}` : `${ep}${e.version}-${e.release}`;
}

function epochOf(e: string): string {
  return e === "" ? "0" : e;
}

/**
 * Compare two EVRs. With `matchRelease` (how dependencies match, libsolv's EVRCMP_MATCH_RELEASE),
 * a side without a release matches any release of the same version; otherwise an empty release
 * sorts first.
 */
export function evrCompare(a: Evr, b: Evr, matchRelease = false): -1 | 0 | 1 {
  const ce = rpmvercmp(epochOf(a.epoch), epochOf(b.epoch));
  if (ce !== 0) return ce;
  const cv = rpmvercmp(a.version, b.version);
  if (cv !== 0) return cv;
  if (matchRelease && (a.release === "" || b.release === "")) return 0;
  return rpmvercmp(a.release, b.release);
}
