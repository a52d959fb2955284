/**
 * The subset of the guest's apt configuration that changes what apt chooses:
 *
 *   /etc/apt/apt.conf, /etc/apt/apt.conf.d/*   (apt.conf(5) syntax: `A::B "v";`, `A { B "v"; };`,
 *                                               comments //, /* *\/, #; #clear and #include ignored)
 *     APT::Install-Recommends, APT::Install-Suggests, APT::Default-Release, APT::Architectures
 *   /etc/apt/preferences, /etc/apt/preferences.d/*   (apt_preferences(5) stanzas: Package, Pin,
 *                                               Pin-Priority; "release a=,n=,o=,l=,c=,v=",
 *                                               "version GLOB", "origin HOST"; specific pins win,
 *                                               then the Default-Release's 990, then "*" pins; the
 *                                               first match in file order in each group)
 */
import type { PkgTarget } from "@imgpatch/pkgkit";
import { parseStanzas } from "./control.js";
import { DebFormatError } from "./errors.js";
import { readGuestText } from "./guest-io.js";

export interface AptSettings {
  installRecommends: boolean;
  installSuggests: boolean;
  defaultRelease?: string;
  /** Every key as read, lowercased ("apt::install-recommends" → "false"). */
  values: Map<string, string>;
  pins: Pin[];
}

export interface Pin {
  /** "*" or names / globs / /regex/. */
  packages: string[];
  kind: "release" | "version" | "origin";
  /** release: key → value (a, n, o, l, c, v, or a bare suite/codename). */
  conditions: Map<string, string>;
  pattern: string;
  priority: number;
  origin: string;
}

/** Parses apt.conf syntax into flat lowercased keys. */
export function parseAptConf(
  text: string,
  file: string,
  into = new Map<string, string>(),
): Map<string, string> {
  const src = text.replace(/\/\*[\s\S]*?\*\//g, " ");
  const tokens: string[] = [];
  const re = /"([^"]*)"|([{};])|(\/\/[^\n]*|#[^\n]*)|([^\s{};"]+)/g;
  for (let m = re.exec(src); m; m = re.exec(src)) {
    if (m[3] !== undefined) continue;
    tokens.push(m[1] !== undefined ? `"${m[1]}` : (m[2] ?? m[4]));
  }
  const scope: string[] = [];
  let i = 0;
  while (i < tokens.length) {
    const t = tokens[i];
    if (t === "}") {
      scope.pop();
      i++;
      if (tokens[i] === ";") i++;
      continue;
    }
    if (t === ";") {
      i++;
      continue;
    }
    const key = t.startsWith('"') ? t.slice(1) : t;
    const next = tokens[i + 1];
    if (next === "{") {
      scope.push(key);
      i += 2;
      continue;
    }
    if (next?.startsWith('"')) {
      into.set([...scope, key].join("::").toLowerCase(), next.slice(1));
      i += 2;
      if (tokens[i] === ";") i++;
      continue;
    }
    if (next === ";") {
      i += 2; // a bare list entry (`"a"; "b";` inside a scope) or a value-less key
      continue;
    }
    throw new DebFormatError(`apt.conf: cannot parse near "${key.slice(0, 40)}"`, { file });
  }
  return into;
}

const truthy = (v: string | undefined, dflt: boolean) =>
  v === undefined ? dflt : ["1", "yes", "true", "with", "on", "enable"].includes(v.toLowerCase());

export function parsePreferences(text: string, file: string): Pin[] {
  const pins: Pin[] = [];
  for (const s of parseStanzas(text, { file, comments: true })) {
    const pkg = s.get("Package");
    const pin = s.get("Pin");
    const prio = s.get("Pin-Priority");
    if (!pkg || !pin || !prio) continue;
    if (!/^-?\d+$/.test(prio.trim()))
      throw new DebFormatError(`Pin-Priority "${prio}" is not a number`, { file });
    const m = /^(release|version|origin)\s*(.*)$/.exec(pin.trim());
    if (!m) throw new DebFormatError(`Pin "${pin}" is not release/version/origin`, { file });
    const conditions = new Map<string, string>();
    if (m[1] === "release") {
      for (const c of m[2]
        .split(",")
        .map((x) => x.trim())
        .filter((x) => x !== "")) {
        const eq = c.indexOf("=");
        if (eq > 0)
          conditions.set(
            c.slice(0, eq).trim(),
            c
              .slice(eq + 1)
              .trim()
              .replace(/^"|"$/g, ""),
          );
        else conditions.set("a", c); // a bare word names the archive
      }
    }
    pins.push({
      packages: pkg.trim().split(/\s+/),
      kind: m[1] as Pin["kind"],
      conditions,
      pattern: m[2].trim().replace(/^"|"$/g, ""),
      priority: Number(prio.trim()),
      origin: file,
    });
  }
  return pins;
}

async function listDir(target: PkgTarget, dir: string): Promise<string[]> {
  return (await target.lstat(dir)) && target.readdir ? (await target.readdir(dir)).sort() : [];
}

/** Reads the guest's apt settings; `overrides` are -o style "Key=value" pairs applied last. */
export async function readAptSettings(
  target: PkgTarget,
  overrides: Record<string, string> = {},
): Promise<AptSettings> {
  const values = new Map<string, string>();
  const main = await readGuestText(target, "/etc/apt/apt.conf", 1 << 20);
  for (const n of await listDir(target, "/etc/apt/apt.conf.d")) {
    // apt reads files in alphanumeric order and ignores other names (apt.conf(5)).
    if (!/^[A-Za-z0-9_.-]+$/.test(n) || n.includes(".dpkg-")) continue;
    const t = await readGuestText(target, `/etc/apt/apt.conf.d/${n}`, 1 << 20);
    if (t !== undefined) parseAptConf(t, `/etc/apt/apt.conf.d/${n}`, values);
  }
  if (main !== undefined) parseAptConf(main, "/etc/apt/apt.conf", values);
  for (const [k, v] of Object.entries(overrides)) values.set(k.toLowerCase(), v);
  const pins: Pin[] = [];
  const prefs = await readGuestText(target, "/etc/apt/preferences", 1 << 20);
  if (prefs !== undefined) pins.push(...parsePreferences(prefs, "/etc/apt/preferences"));
  for (const n of await listDir(target, "/etc/apt/preferences.d")) {
    if (!/^[A-Za-z0-9_.-]+$/.test(n) || (n.includes(".") && !n.endsWith(".pref"))) continue;
    const t = await readGuestText(target, `/etc/apt/preferences.d/${n}`, 1 << 20);
    if (t !== undefined) pins.push(...parsePreferences(t, `/etc/apt/preferences.d/${n}`));
  }
  return {
    installRecommends: truthy(values.get("apt::install-recommends"), true),
    installSuggests: truthy(values.get("apt::install-suggests"), false),
    defaultRelease: values.get("apt::default-release"),
    values,
    pins,
  };
}

function glob(pattern: string, s: string): boolean {
  if (pattern.startsWith("/") && pattern.endsWith("/") && pattern.length > 1) {
    try {
      return new RegExp(pattern.slice(1, -1)).test(s);
    } catch {
      return false;
    }
  }
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replace(/\*/g, ".*")
      .replace(/\?/g, ".")}$`,
  );
  return re.test(s);
}

export interface PinTarget {
  name: string;
  version: string;
  /** The Release fields of the repository it comes from. */
  release?: {
    suite?: string;
    codename?: string;
    origin?: string;
    label?: string;
    component?: string;
    version?: string;
    host?: string;
  };
}

function pinMatches(p: Pin, t: PinTarget): boolean {
  if (p.kind === "version") return glob(p.pattern, t.version);
  if (!t.release) return false;
  if (p.kind === "origin") return p.pattern === (t.release.host ?? "");
  const r = t.release;
  const field: Record<string, string | undefined> = {
    a: r.suite,
    n: r.codename,
    o: r.origin,
    l: r.label,
    c: r.component,
    v: r.version,
  };
  for (const [k, v] of p.conditions) {
    const have = field[k];
    if (have === undefined || !glob(v, have)) {
      if (k === "a" && r.codename !== undefined && glob(v, r.codename)) continue;
      return false;
    }
  }
  return true;
}

/** apt's pin priority of a repository version (installed versions: 100 unless pinned). */
export function pinPriority(settings: AptSettings, t: PinTarget, dflt: number): number {
  const specific = settings.pins.find(
    (p) => !p.packages.includes("*") && p.packages.some((g) => glob(g, t.name)) && pinMatches(p, t),
  );
  if (specific) return specific.priority;
  // apt creates the Default-Release pin before it reads preferences: for its release it comes
  // before every general pin (first match wins).
  if (
    settings.defaultRelease &&
    t.release &&
    (t.release.suite === settings.defaultRelease || t.release.codename === settings.defaultRelease)
  )
    return 990;
  const general = settings.pins.find((p) => p.packages.includes("*") && pinMatches(p, t));
  if (general) return general.priority;
  return dflt;
}
