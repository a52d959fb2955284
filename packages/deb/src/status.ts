/**
 * dpkg's view of the guest (dpkg(1) FILES): /var/lib/dpkg/status (one stanza per package, its
 * "Status: want flag state" line), /var/lib/dpkg/diversions (three lines per diversion: the diverted
 * path, where it goes, the diverting package or ":" for a local diversion), and the per-package file
 * lists in /var/lib/dpkg/info.
 */
import type { PkgTarget } from "@imgpatch/pkgkit";
import { parseStanzas, type Stanza } from "./control.js";
import { DebFormatError } from "./errors.js";
import { readGuestText } from "./guest-io.js";

export const DPKG_ADMIN = "/var/lib/dpkg";
export const STATUS_FILE = `${DPKG_ADMIN}/status`;
export const DIVERSIONS_FILE = `${DPKG_ADMIN}/diversions`;
export const INFO_DIR = `${DPKG_ADMIN}/info`;

export interface PackageStatus {
  want: string;
  flag: string;
  state: string;
}

export function parseStatusField(value: string | undefined, file: string): PackageStatus {
  const parts = (value ?? "").split(/\s+/);
  if (parts.length !== 3) throw new DebFormatError(`bad Status "${value ?? ""}"`, { file });
  return { want: parts[0], flag: parts[1], state: parts[2] };
}

export interface Diversion {
  /** The path packages ship. */
  from: string;
  /** Where it is diverted to. */
  to: string;
  /** Diverting package; undefined for a local diversion (":"). */
  by?: string;
}

export interface DpkgState {
  /** Every stanza of the status file, in file order. */
  stanzas: Stanza[];
  /** Stanzas by "name" and by "name:arch". */
  byName: Map<string, Stanza[]>;
  diversions: Map<string, Diversion>;
  /** The guest's native architecture (dpkg --print-architecture), from the status file's essentials. */
  nativeArch?: string;
}

export function parseDiversions(text: string, file = DIVERSIONS_FILE): Map<string, Diversion> {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  if (lines.length % 3 !== 0)
    throw new DebFormatError("diversions file is not a multiple of three lines", { file });
  const out = new Map<string, Diversion>();
  for (let i = 0; i < lines.length; i += 3) {
    const by = lines[i + 2];
    out.set(lines[i], { from: lines[i], to: lines[i + 1], by: by === ":" ? undefined : by });
  }
  return out;
}

export function formatDiversions(d: Map<string, Diversion>): string {
  return [...d.values()].map((x) => `${x.from}\n${x.to}\n${x.by ?? ":"}\n`).join("");
}

/** Reads the guest's dpkg database. A guest without one is not a Debian-family guest: undefined. */
export async function readDpkgState(target: PkgTarget): Promise<DpkgState | undefined> {
  const text = await readGuestText(target, STATUS_FILE);
  if (text === undefined) return undefined;
  const stanzas = parseStanzas(text, { file: STATUS_FILE });
  const byName = new Map<string, Stanza[]>();
  for (const s of stanzas) {
    const name = s.get("Package");
    if (!name) throw new DebFormatError(`stanza at line ${s.line} has no Package`, { file: STATUS_FILE });
    byName.set(name, [...(byName.get(name) ?? []), s]);
  }
  const dtext = await readGuestText(target, DIVERSIONS_FILE);
  const diversions = dtext ? parseDiversions(dtext) : new Map<string, Diversion>();
  // dpkg's own architecture is the one dpkg itself (Essential) is built for.
  const dpkg = byName.get("dpkg")?.[0]?.get("Architecture");
  return { stanzas, byName, diversions, nativeArch: dpkg };
}

/** True when the stanza's package is installed in some form (dpkg's "is installed" for relations). */
export function isPresent(s: Stanza): boolean {
  const st = (s.get("Status") ?? "").split(/\s+/)[2];
  return st !== undefined && st !== "not-installed" && st !== "config-files";
}
