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
 * /etc/apt/trusted.gpg.d and /etc/apt/trusted.gpg when there is none. Any BAD signature fails;
 * at least one good signature is required. The hashes (SHA256) then vouch for every index.
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
  if (source.signedBy && "inline" in source.signedBy)
    add(Buffer.from(source.signedBy.inline), `${source.origin} Signed-By`);
  else if (source.signedBy) {
    for (const p of source.signedBy) {
      if (!p.startsWith("/"))
        throw new DebSignatureError(
          `${source.origin}: Signed-By fingerprints are not supported, give key files`,
          { file: source.origin },
        );
      await readKeyFile(p);
    }
  } else {
    if (await target.lstat("/etc/apt/trusted.gpg")) await readKeyFile("/etc/apt/trusted.gpg");
    const dir = "/etc/apt/trusted.gpg.d";
    const names = (await target.lstat(dir)) && target.readdir ? (await target.readdir(dir)).sort() : [];
    for (const n of names) if (/\.(gpg|asc)$/.test(n)) await readKeyFile(`${dir}/${n}`);
  }
  for (const h of hostKeys) add(new Uint8Array(await readFile(h)), h);
  return keys;
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
