/**
 * A repository's Release file and its signature, checked as apt does:
 *
 *   InRelease    a cleartext-signed message (RFC 4880 §7): "-----BEGIN PGP SIGNED MESSAGE-----",
 *                "Hash:" headers, a blank line, the dash-escaped text, then an armored SIGNATURE
 *                block. The signed bytes are the text with "- " escapes removed, trailing spaces and
 *                tabs stripped from every line, lines joined by CRLF, without the final line break;
 *                the signature type is 0x01 (canonical text).
 *   Release      the same text, with Release.gpg an armored detached binary signature (type 0x00).
 *
 * The signature must verify with a key from the source's Signed-By files, or from the guest's
 * /etc/apt/trusted.gpg.d and /etc/apt/trusted.gpg when it names none. Signed-By fingerprints then
 * select keys from those keyrings (a primary key's fingerprint also accepts its subkeys, "FPR!" only
 * that exact key), as sources.list(5) says. Any BAD signature fails; at least one good signature is
 * required. The hashes (SHA256) then vouch for every index.
 *
 * Freshness, as apt's Release handling: a Valid-Until in the past refuses the repository (unless
 * Acquire::Check-Valid-Until is false or the source says check-valid-until=no), and so does a Date
 * more than Acquire::Max-FutureTime (default 10 s; source option date-max-future) in the future
 * (unless Acquire::Check-Date is false or check-date=no — which also turns the Valid-Until check off).
 * Acquire::Max-ValidTime / Min-ValidTime (and the source's valid-until-max/min) cap or extend the
 * Valid-Until, counted from Date.
 */
import { readFile } from "node:fs/promises";
import { type ErrorLocation, ImgpatchError } from "@imgpatch/disk";
import {
  dearmor,
  OpenPgpError,
  type OpenPgpPublicKey,
  PacketTag,
  type PkgTarget,
  parsePackets,
  parsePublicKeys,
  parseSignatureBody,
  verifySignature,
} from "@imgpatch/pkgkit";
import { parseStanza, type Stanza } from "./control.js";
import { DebFormatError } from "./errors.js";
import { readGuestBytes } from "./guest-io.js";
import type { SourceEntry } from "./sources.js";

/** A Release file's signature is missing, bad, or made by no trusted key. */
export class DebSignatureError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}) {
    super("ESIGNATURE", message, where);
  }
}

export interface ReleaseFile {
  stanza: Stanza;
  /** SHA256 entries: path relative to the dists/SUITE directory → size and hash. */
  sha256: Map<string, { size: number; hash: string }>;
  architectures: string[];
  components: string[];
  acquireByHash: boolean;
  /** Signer when verified; undefined for trusted=yes sources. */
  signer?: { keyId: string; fingerprint: string; userIds: string[] };
}

const BEGIN_SIGNED = "-----BEGIN PGP SIGNED MESSAGE-----";
const BEGIN_SIG = "-----BEGIN PGP SIGNATURE-----";

/** Splits a cleartext-signed message into the canonical signed bytes, the text, and the signature armor. */
export function splitCleartext(
  text: string,
  file: string,
): { signed: Uint8Array; text: string; armor: string } {
  const lines = text.split("\n").map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
  if (lines[0] !== BEGIN_SIGNED) throw new DebSignatureError("not a cleartext-signed message", { file });
  let i = 1;
  for (; i < lines.length && lines[i] !== ""; i++) {
    if (!/^Hash: /.test(lines[i]))
      throw new DebSignatureError(`unexpected armor header "${lines[i].slice(0, 40)}"`, { file });
  }
  if (i >= lines.length) throw new DebSignatureError("cleartext header has no blank line", { file });
  const body: string[] = [];
  for (i++; i < lines.length && lines[i] !== BEGIN_SIG; i++) {
    const l = lines[i];
    if (l.startsWith("-") && !l.startsWith("- "))
      throw new DebSignatureError(`unescaped dash line ${i + 1}`, { file });
    body.push(l.startsWith("- ") ? l.slice(2) : l);
  }
  if (i >= lines.length) throw new DebSignatureError("no signature block after the signed text", { file });
  const canonical = body.map((l) => l.replace(/[ \t]+$/, "")).join("\r\n");
  return {
    signed: Buffer.from(canonical, "utf8"),
    text: `${body.join("\n")}\n`,
    armor: lines.slice(i).join("\n"),
  };
}

/** A Release file is expired (Valid-Until passed) or dated in the future. */
export class DebReleaseDateError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}) {
    super("ERELEASEDATE", message, where);
  }
}

/** A Signed-By fingerprint: 40 hex digits (v4), uppercase in apt; "!" = that exact key only. */
export interface KeyFingerprint {
  fingerprint: string;
  exact: boolean;
}

/** Splits Signed-By values into keyring paths and fingerprints; anything else is refused as apt does. */
export function splitSignedBy(
  values: readonly string[],
  origin: string,
): { files: string[]; fingerprints: KeyFingerprint[] } {
  const files: string[] = [];
  const fingerprints: KeyFingerprint[] = [];
  for (const v of values) {
    if (v === "") continue;
    if (v.startsWith("/")) {
      files.push(v);
      continue;
    }
    const exact = v.endsWith("!");
    const fpr = (exact ? v.slice(0, -1) : v).toLowerCase();
    if (!/^[0-9a-f]{40}$/.test(fpr))
      throw new DebSignatureError(
        `${origin}: Signed-By "${v.slice(0, 60)}" is neither an absolute keyring path nor a key fingerprint (40 hex digits)`,
        { file: origin },
      );
    fingerprints.push({ fingerprint: fpr, exact });
  }
  return { files, fingerprints };
}

/**
 * The keys Signed-By fingerprints select: a key whose own fingerprint is listed, or (without "!") a
 * subkey whose primary key's fingerprint is. The primary is found among the loaded keys; when it
 * was skipped (an algorithm we cannot verify with) its key id — the fingerprint's low 64 bits —
 * stands in for it.
 */
export function selectKeysByFingerprint(
  keys: readonly OpenPgpPublicKey[],
  fingerprints: readonly KeyFingerprint[],
): OpenPgpPublicKey[] {
  const primaries = new Map<string, string>();
  for (const k of keys) if (!k.subkey) primaries.set(k.keyId, k.fingerprint);
  return keys.filter((k) =>
    fingerprints.some((f) => {
      if (k.fingerprint === f.fingerprint) return true;
      if (f.exact || !k.subkey) return false;
      const primary = primaries.get(k.primaryKeyId);
      return primary !== undefined ? primary === f.fingerprint : f.fingerprint.endsWith(k.primaryKeyId);
    }),
  );
}

/** Keys a source trusts: its Signed-By files (or inline block), else the guest's trusted.gpg(.d). */
export async function loadSourceKeys(
  target: PkgTarget,
  source: SourceEntry,
  hostKeys: string[] = [],
): Promise<OpenPgpPublicKey[]> {
  const keys: OpenPgpPublicKey[] = [];
  const add = (data: Uint8Array, name: string) => {
    try {
      keys.push(...parsePublicKeys(data, name).keys);
    } catch (e) {
      if (e instanceof OpenPgpError) throw new DebSignatureError(`${name}: ${e.message}`, { file: name });
      throw e;
    }
  };
  const readKeyFile = async (path: string) => {
    const text = await readGuestBytes(target, path, 4 << 20);
    if (!text)
      throw new DebSignatureError(`${source.origin}: key file ${path} is not in the guest`, { file: path });
    add(text, path);
  };
  const signedBy =
    source.signedBy && !("inline" in source.signedBy)
      ? splitSignedBy(source.signedBy, source.origin)
      : { files: [], fingerprints: [] };
  if (source.signedBy && "inline" in source.signedBy)
    add(Buffer.from(source.signedBy.inline), `${source.origin} Signed-By`);
  else if (signedBy.files.length > 0) {
    for (const p of signedBy.files) await readKeyFile(p);
  } else {
    if (await target.lstat("/etc/apt/trusted.gpg")) await readKeyFile("/etc/apt/trusted.gpg");
    const dir = "/etc/apt/trusted.gpg.d";
    const names = (await target.lstat(dir)) && target.readdir ? (await target.readdir(dir)).sort() : [];
    for (const n of names) if (/\.(gpg|asc)$/.test(n)) await readKeyFile(`${dir}/${n}`);
  }
  for (const h of hostKeys) add(new Uint8Array(await readFile(h)), h);
  if (signedBy.fingerprints.length === 0) return keys;
  const selected = selectKeysByFingerprint(keys, signedBy.fingerprints);
  if (selected.length === 0)
    throw new DebSignatureError(
      `${source.origin}: no key in ${signedBy.files.length > 0 ? signedBy.files.join(", ") : "the trusted keyrings"} has the Signed-By fingerprint ${signedBy.fingerprints.map((f) => `${f.fingerprint.toUpperCase()}${f.exact ? "!" : ""}`).join(", ")}`,
      { file: source.origin },
    );
  return selected;
}

/** Verifies signature packets (armored) over `signed`; returns the signer or throws DebSignatureError. */
export function verifyArmoredSignatures(
  armor: string,
  signed: Uint8Array,
  sigType: number,
  keys: readonly OpenPgpPublicKey[],
  file: string,
): { keyId: string; fingerprint: string; userIds: string[] } {
  let good: OpenPgpPublicKey | undefined;
  const problems: string[] = [];
  try {
    for (const block of dearmor(armor, "SIGNATURE")) {
      for (const p of parsePackets(block)) {
        if (p.tag !== PacketTag.SIGNATURE) continue;
        let sig: ReturnType<typeof parseSignatureBody>;
        try {
          sig = parseSignatureBody(p.body, p.offset);
        } catch (e) {
          if (e instanceof OpenPgpError && e.unsupported) {
            problems.push(e.message);
            continue;
          }
          throw e;
        }
        const r = verifySignature(sig, keys, [signed], sigType);
        if (r.status === "BAD")
          throw new DebSignatureError(`BAD signature by key ${sig.keyId ?? "?"}: ${r.detail}`, { file });
        if (r.status === "OK" && r.key) good ??= r.key;
        else problems.push(`${r.status}: ${r.detail}`);
      }
    }
  } catch (e) {
    if (e instanceof OpenPgpError)
      throw new DebSignatureError(`signature: ${e.message}`, { file, offset: e.offset });
    throw e;
  }
  if (!good) {
    throw new DebSignatureError(
      `no good signature by a trusted key (${problems.join("; ") || "no signature packets"})`,
      { file },
    );
  }
  return { keyId: good.keyId, fingerprint: good.fingerprint, userIds: good.userIds };
}

/** Parses the Release text (already verified, or trusted). */
export function parseRelease(text: string, file: string): ReleaseFile {
  const stanza = parseStanza(text, { file });
  const sha256 = new Map<string, { size: number; hash: string }>();
  for (const line of (stanza.get("SHA256") ?? "").split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length !== 3) continue;
    if (!/^[0-9a-f]{64}$/.test(f[0]) || !/^\d+$/.test(f[1]))
      throw new DebFormatError(`bad SHA256 line "${line.trim().slice(0, 100)}"`, { file });
    sha256.set(f[2], { hash: f[0], size: Number(f[1]) });
  }
  if (sha256.size === 0)
    throw new DebFormatError("Release has no SHA256 entries (apt refuses weaker hashes)", { file });
  const list = (name: string) =>
    (stanza.get(name) ?? "")
      .trim()
      .split(/\s+/)
      .filter((x) => x !== "");
  return {
    stanza,
    sha256,
    architectures: list("Architectures"),
    components: list("Components"),
    acquireByHash: (stanza.get("Acquire-By-Hash") ?? "").trim() === "yes",
  };
}

/** Verifies an InRelease file and parses it. */
export function verifyInRelease(text: string, keys: readonly OpenPgpPublicKey[], file: string): ReleaseFile {
  const { signed, text: body, armor } = splitCleartext(text, file);
  const signer = verifyArmoredSignatures(armor, signed, 0x01, keys, file);
  return { ...parseRelease(body, file), signer };
}

/** Verifies a Release + Release.gpg pair and parses it. */
export function verifyDetachedRelease(
  release: Uint8Array,
  releaseGpg: string,
  keys: readonly OpenPgpPublicKey[],
  file: string,
): ReleaseFile {
  const signer = verifyArmoredSignatures(releaseGpg, release, 0x00, keys, `${file}.gpg`);
  return { ...parseRelease(Buffer.from(release).toString("utf8"), file), signer };
}

/** apt.conf values and source options that decide the Release date checks. */
export interface ReleaseDateSettings {
  /** Lowercased apt.conf keys (Acquire::Check-Valid-Until, Acquire::Check-Date, Acquire::Max-FutureTime). */
  aptValues?: ReadonlyMap<string, string>;
  /** Accept an expired Release (CLI --allow-expired), loudly. */
  allowExpired?: boolean;
  /** "Now" in ms since the epoch (tests); default Date.now(). */
  now?: number;
  warn?: (message: string) => void;
}

/** RFC 1123 / RFC 2822 dates as Release files write them ("Sat, 10 Jun 2023 08:53:51 UTC"). */
export function parseReleaseDate(text: string): number | undefined {
  const m =
    /^(?:[A-Za-z]{3},\s+)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d{2}):(\d{2}):(\d{2})\s+(UTC|GMT|Z|[+-]\d{4})$/.exec(
      text.trim(),
    );
  if (!m) return undefined;
  const month = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"].indexOf(
    m[2].toLowerCase(),
  );
  if (month < 0) return undefined;
  let t = Date.UTC(Number(m[3]), month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  if (/^[+-]/.test(m[7])) {
    const off = (Number(m[7].slice(1, 3)) * 60 + Number(m[7].slice(3, 5))) * 60_000;
    t += m[7][0] === "+" ? -off : off;
  }
  return Number.isFinite(t) ? t : undefined;
}

/** "3d 4h 5min 6s", as apt prints durations in these messages (units below the first all shown). */
function span(ms: number): string {
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const min = Math.floor(s / 60);
  s -= min * 60;
  if (d > 0) return `${d}d ${h}h ${min}min ${s}s`;
  if (h > 0) return `${h}h ${min}min ${s}s`;
  if (min > 0) return `${min}min ${s}s`;
  return `${s}s`;
}

const conf = (values: ReadonlyMap<string, string> | undefined, key: string, dflt: boolean): boolean => {
  const v = values?.get(key)?.toLowerCase();
  if (v === undefined) return dflt;
  return ["1", "yes", "true", "with", "on", "enable"].includes(v);
};

/**
 * Refuses a Release file apt would refuse for its dates: Date too far in the future, Valid-Until
 * passed. `file` names the Release in the error.
 */
export function checkReleaseDates(
  release: ReleaseFile,
  source: SourceEntry,
  file: string,
  o: ReleaseDateSettings = {},
): void {
  const now = o.now ?? Date.now();
  const checkDate = source.checkDate ?? conf(o.aptValues, "acquire::check-date", true);
  if (!checkDate) return;
  const dateText = release.stanza.get("Date");
  const date = dateText === undefined ? undefined : parseReleaseDate(dateText);
  if (dateText !== undefined && date === undefined)
    o.warn?.(`WARNING: ${file}: invalid 'Date' entry "${dateText.trim().slice(0, 60)}" (not checked)`);
  if (date !== undefined) {
    const maxFutureText = o.aptValues?.get("acquire::max-futuretime");
    const maxFuture =
      source.dateMaxFuture ??
      (maxFutureText !== undefined && /^\d+$/.test(maxFutureText.trim()) ? Number(maxFutureText) : 10);
    if (date - maxFuture * 1000 > now)
      throw new DebReleaseDateError(
        `Release file for ${source.uri} ${source.suite} is not valid yet (invalid for another ${span(date - now)}: Date ${dateText?.trim()}); check this machine's clock, or set check-date=no on the source`,
        { file },
      );
  }
  const checkValidUntil = source.checkValidUntil ?? conf(o.aptValues, "acquire::check-valid-until", true);
  if (!checkValidUntil) return;
  const untilText = release.stanza.get("Valid-Until");
  let until: number | undefined;
  if (untilText !== undefined) {
    until = parseReleaseDate(untilText);
    if (until === undefined)
      throw new DebFormatError(`invalid 'Valid-Until' entry "${untilText.trim().slice(0, 60)}"`, { file });
  }
  // Acquire::Max-ValidTime / Min-ValidTime (seconds after Date; "::LABEL" variants first, the
  // source's valid-until-max/min before both) cap or extend Valid-Until, as apt does.
  const label = release.stanza.get("Label")?.trim().toLowerCase();
  const seconds = (key: string): number | undefined => {
    const v = (label ? o.aptValues?.get(`${key}::${label}`) : undefined) ?? o.aptValues?.get(key);
    return v !== undefined && /^\d{1,10}$/.test(v.trim()) && Number(v) > 0 ? Number(v) : undefined;
  };
  const maxAge = source.validUntilMax ?? seconds("acquire::max-validtime");
  const minAge = source.validUntilMin ?? seconds("acquire::min-validtime");
  let why = untilText === undefined ? "" : `Valid-Until ${untilText.trim()}`;
  if (minAge !== undefined && until !== undefined && date !== undefined && date + minAge * 1000 > until) {
    until = date + minAge * 1000;
    why = `Date + Min-ValidTime ${minAge} s`;
  }
  if (maxAge !== undefined && date !== undefined && (until === undefined || date + maxAge * 1000 < until)) {
    until = date + maxAge * 1000;
    why = `Date + Max-ValidTime ${maxAge} s`;
  }
  if (until !== undefined && until < now) {
    const msg = `Release file for ${source.uri} ${source.suite} is expired (invalid since ${span(now - until)}: ${why})`;
    if (!o.allowExpired)
      throw new DebReleaseDateError(
        `${msg}; --allow-expired, Acquire::Check-Valid-Until "false" in the guest's apt.conf or check-valid-until=no on the source accepts it`,
        { file },
      );
    o.warn?.(`WARNING: ${msg} — used anyway as asked (--allow-expired)`);
  }
}
