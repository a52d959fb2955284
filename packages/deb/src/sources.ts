/**
 * apt's repository lists (sources.list(5)): one-line entries
 *
 *   deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/x.gpg trusted=yes] URI SUITE COMPONENT...
 *
 * in /etc/apt/sources.list and sources.list.d/*.list, and deb822 stanzas (Types, URIs, Suites,
 * Components, Architectures, Signed-By, Trusted, Enabled, Check-Valid-Until, Check-Date,
 * Date-Max-Future, Valid-Until-Max/Min) in sources.list.d/*.sources. "deb-src" entries are ignored. A suite ending in "/"
 * is a flat repository (no components). Signed-By holds absolute keyring paths and/or key
 * fingerprints (40 hex digits, "!" appended to accept that exact key only, not its subkeys).
 */
import type { PkgTarget } from "@imgpatch/pkgkit";
import { parseStanzas } from "./control.js";
import { DebFormatError } from "./errors.js";
import { readGuestText } from "./guest-io.js";

export interface SourceEntry {
  uri: string;
  suite: string;
  /** Empty for a flat repository. */
  components: string[];
  /** Restricts the architectures fetched (arch=). */
  architectures?: string[];
  /** Key files, or an inline ASCII-armored key block (deb822 only). */
  signedBy?: string[] | { inline: string };
  /** trusted=yes: no signature check at all (apt's own opt-out; reported loudly). */
  trusted?: boolean;
  /** check-valid-until=no/yes: overrides Acquire::Check-Valid-Until for this source. */
  checkValidUntil?: boolean;
  /** check-date=no/yes: overrides Acquire::Check-Date (no also disables the Valid-Until check). */
  checkDate?: boolean;
  /** date-max-future=SECONDS: how far in the future the Release's Date may be (Acquire::Max-FutureTime). */
  dateMaxFuture?: number;
  /** valid-until-max/min=SECONDS after the Release's Date (Acquire::Max-ValidTime / Min-ValidTime). */
  validUntilMax?: number;
  validUntilMin?: number;
  /** Where the entry came from ("/etc/apt/sources.list:3", "--repo"). */
  origin: string;
}

const SPLIT = /[\s,]+/;

function normalizeUri(uri: string, origin: string): string {
  if (!/^(https?|file):/.test(uri)) {
    throw new DebFormatError(`${origin}: unsupported URI "${uri}" (http, https and file are)`, {
      file: origin,
    });
  }
  return uri.endsWith("/") ? uri : `${uri}/`;
}

const yesNo = (v: string, what: string, where: string, file: string): boolean => {
  const t = v.trim().toLowerCase();
  if (["yes", "true", "1"].includes(t)) return true;
  if (["no", "false", "0"].includes(t)) return false;
  throw new DebFormatError(`${where}: ${what} "${v.trim()}" is not yes or no`, { file });
};

/** The time-related options (one-line keys, lowercased deb822 field names are the same words). */
function setTimeOption(entry: SourceEntry, key: string, value: string, where: string, file: string): void {
  if (key === "check-valid-until") entry.checkValidUntil = yesNo(value, key, where, file);
  else if (key === "check-date") entry.checkDate = yesNo(value, key, where, file);
  else if (key === "date-max-future" || key === "valid-until-max" || key === "valid-until-min") {
    if (!/^\d{1,10}$/.test(value.trim()))
      throw new DebFormatError(`${where}: ${key} "${value.trim()}" is not a number of seconds`, {
        file,
      });
    const n = Number(value.trim());
    if (key === "date-max-future") entry.dateMaxFuture = n;
    else if (key === "valid-until-max") entry.validUntilMax = n;
    else entry.validUntilMin = n;
  }
}

/** Parses one-line entries; `origin` names the file for messages. */
export function parseOneLineSources(text: string, origin: string): SourceEntry[] {
  const out: SourceEntry[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") return;
    const where = `${origin}:${i + 1}`;
    const m = /^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) throw new DebFormatError(`${where}: cannot parse "${line.slice(0, 100)}"`, { file: origin });
    if (m[1] === "deb-src") return;
    const entry: SourceEntry = {
      uri: normalizeUri(m[3], where),
      suite: m[4],
      components: m[5].trim() === "" ? [] : m[5].trim().split(/\s+/),
      origin: where,
    };
    for (const opt of (m[2] ?? "")
      .trim()
      .split(/\s+/)
      .filter((o) => o !== "")) {
      const eq = opt.indexOf("=");
      if (eq <= 0) throw new DebFormatError(`${where}: bad option "${opt}"`, { file: origin });
      const key = opt.slice(0, eq).replace(/[+-]$/, "");
      const value = opt.slice(eq + 1);
      if (key === "arch") entry.architectures = value.split(",");
      else if (key === "signed-by") entry.signedBy = value.split(",");
      else if (key === "trusted") entry.trusted = value === "yes";
      else setTimeOption(entry, key, value, where, origin);
    }
    if (!entry.suite.endsWith("/") && entry.components.length === 0) {
      throw new DebFormatError(`${where}: suite "${entry.suite}" needs components`, { file: origin });
    }
    out.push(entry);
  });
  return out;
}

/** Parses a deb822 .sources file. */
export function parseDeb822Sources(text: string, origin: string): SourceEntry[] {
  const out: SourceEntry[] = [];
  for (const s of parseStanzas(text, { file: origin, comments: true })) {
    const where = `${origin}:${s.line}`;
    if ((s.get("Enabled") ?? "yes").trim() === "no") continue;
    const types = (s.get("Types") ?? "").trim().split(SPLIT);
    if (!types.includes("deb")) continue;
    const uris = (s.get("URIs") ?? "")
      .trim()
      .split(SPLIT)
      .filter((x) => x !== "");
    const suites = (s.get("Suites") ?? "")
      .trim()
      .split(SPLIT)
      .filter((x) => x !== "");
    const components = (s.get("Components") ?? "")
      .trim()
      .split(SPLIT)
      .filter((x) => x !== "");
    if (uris.length === 0 || suites.length === 0) {
      throw new DebFormatError(`${where}: a source needs URIs and Suites`, { file: origin });
    }
    const signed = s.get("Signed-By");
    let signedBy: SourceEntry["signedBy"];
    if (signed !== undefined) {
      signedBy = signed.includes("BEGIN PGP PUBLIC KEY BLOCK")
        ? {
            inline: signed
              .split("\n")
              .map((l) => (l.trim() === "." ? "" : l.replace(/^ /, "")))
              .join("\n"),
          }
        : signed.trim().split(SPLIT);
    }
    const arches = s.get("Architectures");
    for (const uri of uris) {
      for (const suite of suites) {
        if (!suite.endsWith("/") && components.length === 0) {
          throw new DebFormatError(`${where}: suite "${suite}" needs Components`, { file: origin });
        }
        const entry: SourceEntry = {
          uri: normalizeUri(uri, where),
          suite,
          components: suite.endsWith("/") ? [] : components,
          architectures: arches ? arches.trim().split(SPLIT) : undefined,
          signedBy,
          trusted: (s.get("Trusted") ?? "").trim() === "yes" ? true : undefined,
          origin: where,
        };
        for (const field of [
          "Check-Valid-Until",
          "Check-Date",
          "Date-Max-Future",
          "Valid-Until-Max",
          "Valid-Until-Min",
        ]) {
          const v = s.get(field);
          if (v !== undefined) setTimeOption(entry, field.toLowerCase(), v, where, origin);
        }
        out.push(entry);
      }
    }
  }
  return out;
}

/** A `--repo` argument: one one-line entry ("deb [options] URI SUITE COMPONENT..."). */
export function parseRepoOption(text: string): SourceEntry {
  const line = text.trim().startsWith("deb") ? text.trim() : `deb ${text.trim()}`;
  const entries = parseOneLineSources(line, "--repo");
  if (entries.length !== 1)
    throw new DebFormatError(`--repo "${text}": expected one "deb URI SUITE COMPONENT..." entry`, {
      file: "--repo",
    });
  return { ...entries[0], origin: "--repo" };
}

/** The guest's own sources: sources.list, sources.list.d/*.list and *.sources, in apt's order. */
export async function readGuestSources(target: PkgTarget): Promise<SourceEntry[]> {
  const out: SourceEntry[] = [];
  const main = await readGuestText(target, "/etc/apt/sources.list", 1 << 20);
  if (main !== undefined) out.push(...parseOneLineSources(main, "/etc/apt/sources.list"));
  const dir = "/etc/apt/sources.list.d";
  const names = (await target.lstat(dir)) && target.readdir ? (await target.readdir(dir)).sort() : [];
  for (const name of names) {
    const path = `${dir}/${name}`;
    // apt ignores names with other characters or suffixes (sources.list(5)).
    if (!/^[A-Za-z0-9_.-]+\.(list|sources)$/.test(name)) continue;
    const text = await readGuestText(target, path, 1 << 20);
    if (text === undefined) continue;
    out.push(...(name.endsWith(".list") ? parseOneLineSources(text, path) : parseDeb822Sources(text, path)));
  }
  return out;
}
