/**
 * Package signatures: the OpenPGP signatures in the signature header, checked against trusted
 * public keys, as `rpm -K` / `rpm -i` do.
 *
 *   tag 268 RSAHEADER, 267 DSAHEADER   one signature packet over the main header (rpm ≥ 4.1)
 *   tag 278 OPENPGP                    base64 signature packets over the main header (rpm ≥ 4.19)
 *   tag 1002 PGP, 1005 GPG, 1006 PGP5  one signature packet over header + payload (legacy, --rpmv3)
 *
 * Keys come from key files (armored or binary) and, when injecting into a guest, from the guest's
 * own keyring: every file in /etc/pki/rpm-gpg and the file:// keys its yum/dnf repo files name,
 * read inside the guest.
 */
import { createHash, createVerify, type Hash, type Verify } from "node:crypto";
import { readFile } from "node:fs/promises";
import { type ErrorLocation, ImgpatchError } from "@imgpatch/disk";
import { keyMatches, SUPPORTED_SIG_ALGOS, verifiesStreamed, verifyWith } from "@imgpatch/pkgkit";
import { guestDirname, joinGuestPath, splitGuestPath } from "./guest-path.js";
import {
  HashAlgo,
  hashAlgoName,
  OpenPgpError,
  type OpenPgpPublicKey,
  type OpenPgpSignature,
  parsePublicKeys,
  parseSignaturePacket,
  pubkeyAlgoName,
  type SkippedKey,
} from "./openpgp.js";
import type { RpmPackage } from "./package.js";
import { SigTag } from "./tags.js";
import { type InjectTarget, resolveGuestPath } from "./target.js";

/**
 * - `"required"`: the package must carry a signature made by a trusted key; unsigned packages fail.
 * - `"if-present"` (default): an unsigned package passes; a signed one must verify with a trusted
 *   key (a bad signature or an unknown key fails, as with dnf's gpgcheck).
 * - `"ignore"`: signatures are not looked at (digests are still checked).
 */
export type SignatureMode = "required" | "if-present" | "ignore";

export const DEFAULT_SIGNATURE_MODE: SignatureMode = "if-present";

export type SignatureFailure = "bad" | "nokey" | "unsigned" | "unsupported";

/** A package signature check failed under the policy. Nothing was written. */
export class RpmSignatureError extends ImgpatchError {
  constructor(
    message: string,
    readonly reason: SignatureFailure,
    /** The signature checks behind the verdict (empty for "unsigned"). */
    readonly checks: SignatureCheck[],
    where: ErrorLocation = {},
  ) {
    super("ESIGNATURE", message, where);
  }
  /** Issuer key id (16 hex digits) of the first signature without a trusted key, for NOKEY. */
  get keyId(): string | undefined {
    return this.checks.find((c) => c.status === this.reasonStatus())?.keyId;
  }
  private reasonStatus(): SignatureCheck["status"] {
    return this.reason === "nokey" ? "NOKEY" : this.reason === "bad" ? "BAD" : "UNSUPPORTED";
  }
}

export type SignatureStatus = "OK" | "BAD" | "NOKEY" | "UNSUPPORTED";

export interface SignatureCheck {
  /** Signature-header tag (268, 267, 278, 1002, 1005, 1006). */
  tag: number;
  /** What the signature covers. */
  range: "header" | "header+payload";
  /** rpm -Kv's wording, e.g. "Header V4 RSA/SHA256 Signature, key ID 1a2b3c4d". */
  label: string;
  status: SignatureStatus;
  /** Issuer key id, 16 hex digits, when the signature names one. */
  keyId?: string;
  /** The trusted key that verified it (status OK). */
  signer?: { keyId: string; fingerprint: string; userIds: string[]; source: string };
  /** Signature creation time (seconds), when recorded. */
  created?: number;
  /** Why it is not OK. */
  detail?: string;
  /** Byte offset of the signature value in the RPM file. */
  offset?: number;
}

/** Formats a check as `rpm -Kv` prints it. */
export function formatSignatureCheck(c: SignatureCheck): string {
  return `${c.label}: ${c.status}${c.detail && c.status !== "NOKEY" ? ` (${c.detail})` : ""}`;
}

// ---------------------------------------------------------------------------------------------
// Keyring

/** Largest key file read (from the host or the guest); real ones are a few KiB. */
export const MAX_KEY_FILE_SIZE = 1024 * 1024;

/** Trusted public keys, looked up by key id. */
export class RpmKeyring {
  readonly keys: OpenPgpPublicKey[] = [];
  /** Key packets that were skipped (encryption subkeys, unsupported algorithms). */
  readonly skipped: SkippedKey[] = [];
  /** Files that could not be used, with the reason (guest files only; host files throw). */
  readonly problems: { source: string; reason: string }[] = [];
  /** Files the keys were read from. */
  readonly sources: string[] = [];

  /** Adds the keys of one key file's content; throws `RpmKeyError` when it is not a key file. */
  add(data: Uint8Array, source: string): OpenPgpPublicKey[] {
    let parsed: ReturnType<typeof parsePublicKeys>;
    try {
      parsed = parsePublicKeys(data, source);
    } catch (e) {
      if (e instanceof OpenPgpError)
        throw new RpmKeyError(`${source}: ${e.message}`, { file: source, offset: e.offset });
      throw e;
    }
    if (parsed.keys.length === 0 && parsed.skipped.length === 0) {
      throw new RpmKeyError(`${source}: no public key in the file`, { file: source });
    }
    for (const k of parsed.keys) {
      if (!this.keys.some((x) => x.fingerprint === k.fingerprint)) this.keys.push(k);
    }
    this.skipped.push(...parsed.skipped);
    this.sources.push(source);
    return parsed.keys;
  }

  /** Adds every key of another keyring. */
  merge(other: RpmKeyring): void {
    for (const k of other.keys)
      if (!this.keys.some((x) => x.fingerprint === k.fingerprint)) this.keys.push(k);
    this.skipped.push(...other.skipped);
    this.problems.push(...other.problems);
    this.sources.push(...other.sources);
  }

  /** Keys (primary or subkeys) whose key id is `keyId` (16 hex digits, any case). */
  find(keyId: string): OpenPgpPublicKey[] {
    const id = keyId.toLowerCase();
    return this.keys.filter((k) => k.keyId === id);
  }

  /** Reads key files from the host (armored or binary). */
  static async fromFiles(paths: string[]): Promise<RpmKeyring> {
    const ring = new RpmKeyring();
    for (const p of paths) {
      let data: Buffer;
      try {
        data = await readFile(p);
      } catch (e) {
        throw new RpmKeyError(`${p}: cannot read key file: ${(e as Error).message}`, { file: p });
      }
      if (data.length > MAX_KEY_FILE_SIZE) {
        throw new RpmKeyError(`${p}: ${data.length} bytes is too large for a key file`, { file: p });
      }
      ring.add(new Uint8Array(data), p);
    }
    return ring;
  }
}

/** A key file given by the user is unreadable or not an OpenPGP public key. */
export class RpmKeyError extends ImgpatchError {
  constructor(message: string, where: ErrorLocation = {}) {
    super("EKEY", message, where);
  }
}

/** Where the guest keeps the keys rpm/dnf trust. */
export const GUEST_KEY_DIR = "/etc/pki/rpm-gpg";
export const GUEST_REPO_DIR = "/etc/yum.repos.d";

/** Reads a small regular guest file (symlinks followed inside the guest); refuses anything else. */
async function readGuestFile(target: InjectTarget, path: string): Promise<Uint8Array> {
  const st = await followedStat(target, path);
  if (!st) throw new Error("missing");
  if (st.type !== "file") throw new Error(`not a regular file (${st.type})`);
  if (st.size > MAX_KEY_FILE_SIZE) throw new Error(`${st.size} bytes, larger than ${MAX_KEY_FILE_SIZE}`);
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const c of target.readFile(path)) {
    size += c.length;
    if (size > MAX_KEY_FILE_SIZE) throw new Error(`larger than ${MAX_KEY_FILE_SIZE} bytes`);
    parts.push(c);
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** Type and size of a guest path with every symlink followed inside the guest, or undefined. */
async function followedStat(
  target: InjectTarget,
  path: string,
): Promise<{ type: string; size: number } | undefined> {
  const resolved = await resolveGuestPath(
    path,
    { typeOf: async (p) => (await target.lstat(p))?.type, readlink: (p) => target.readlink(p) },
    true,
    target.name,
  );
  return target.lstat(resolved);
}

/** At most this many entries are read from the guest's key directory and repo directory each. */
export const MAX_GUEST_KEY_FILES = 1000;

/** The `gpgkey=` values of a yum/dnf .repo file (several per line, continuation lines included). */
export function repoGpgKeys(text: string): string[] {
  const out: string[] = [];
  let inKey = false;
  for (const raw of text.split(/\r?\n/)) {
    if (/^\s*[#;]/.test(raw)) continue;
    const m = /^gpgkey\s*=(.*)$/i.exec(raw.trim());
    let values: string | undefined;
    if (m && !/^\s/.test(raw)) {
      inKey = true;
      values = m[1];
    } else if (inKey && /^\s+\S/.test(raw) && !raw.includes("=")) {
      values = raw;
    } else {
      inKey = false;
    }
    if (values !== undefined) out.push(...values.split(/[\s,]+/).filter((v) => v !== ""));
  }
  return out;
}

/**
 * The guest's trusted keys: every file in /etc/pki/rpm-gpg, plus the `gpgkey=file:///...` keys of
 * /etc/yum.repos.d/*.repo, all read inside the guest (symlinks resolved in the guest). dnf
 * variables ($releasever, $basearch...) in a key path match any name in that directory. Files that
 * are not key files are recorded in `problems`, not fatal. Targets without `readdir` give an empty
 * keyring.
 */
export async function loadGuestKeyring(target: InjectTarget): Promise<RpmKeyring> {
  const ring = new RpmKeyring();
  const readdir = target.readdir?.bind(target);
  if (!readdir) {
    ring.problems.push({ source: target.name, reason: "the target cannot list directories: no guest keys" });
    return ring;
  }
  const list = async (dir: string): Promise<string[]> => {
    try {
      if ((await followedStat(target, dir))?.type !== "dir") return [];
      const names = (await readdir(dir)).filter((n) => n !== "." && n !== "..").sort();
      if (names.length > MAX_GUEST_KEY_FILES) {
        const reason = `only the first ${MAX_GUEST_KEY_FILES} of ${names.length} entries are read`;
        ring.problems.push({ source: `guest:${dir}`, reason });
      }
      return names.slice(0, MAX_GUEST_KEY_FILES);
    } catch (e) {
      ring.problems.push({ source: `guest:${dir}`, reason: (e as Error).message });
      return [];
    }
  };
  const paths = new Set<string>();
  for (const n of await list(GUEST_KEY_DIR)) paths.add(joinGuestPath(GUEST_KEY_DIR, n));
  for (const n of await list(GUEST_REPO_DIR)) {
    if (!n.endsWith(".repo")) continue;
    const repo = joinGuestPath(GUEST_REPO_DIR, n);
    let text: string;
    try {
      text = Buffer.from(await readGuestFile(target, repo)).toString("utf8");
    } catch (e) {
      ring.problems.push({ source: `guest:${repo}`, reason: (e as Error).message });
      continue;
    }
    for (const url of repoGpgKeys(text)) {
      if (!url.startsWith("file://")) continue; // remote keys are fetched by dnf, not here
      const path = decodeURIComponent(url.slice("file://".length));
      if (!path.startsWith("/")) continue;
      if (!path.includes("$")) {
        paths.add(path);
        continue;
      }
      // A dnf variable in the name: take every file of that directory the pattern matches.
      const dir = guestDirname(path);
      if (dir.includes("$")) continue;
      const base = splitGuestPath(path).pop() ?? "";
      const re = new RegExp(
        `^${base
          .split(/\$\{?[A-Za-z0-9_]+\}?/)
          .map((s) => s.replace(/[.*+?^()|[\]\\{}]/g, "\\$&"))
          .join("[^/]*")}$`,
      );
      for (const n2 of await list(dir)) if (re.test(n2)) paths.add(joinGuestPath(dir, n2));
    }
  }
  for (const p of paths) {
    const source = `guest:${p}`;
    try {
      ring.add(await readGuestFile(target, p), source);
    } catch (e) {
      ring.problems.push({ source, reason: (e as Error).message });
    }
  }
  return ring;
}

// ---------------------------------------------------------------------------------------------
// Signatures of a package

interface FoundSignature {
  tag: number;
  range: "header" | "header+payload";
  offset?: number;
  sig?: OpenPgpSignature;
  /** Parse failure (the check is then BAD or UNSUPPORTED). */
  error?: OpenPgpError;
}

const HEADER_SIG_TAGS = [SigTag.OPENPGP, SigTag.RSAHEADER, SigTag.DSAHEADER] as const;
const LEGACY_SIG_TAGS = [SigTag.PGP, SigTag.GPG, SigTag.PGP5] as const;

function parseOne(bytes: Uint8Array): { sig?: OpenPgpSignature; error?: OpenPgpError } {
  try {
    return { sig: parseSignaturePacket(bytes) };
  } catch (e) {
    if (e instanceof OpenPgpError) return { error: e };
    throw e;
  }
}

/** The OpenPGP signatures in a package's signature header, parsed (failures kept, not thrown). */
export function packageSignatures(pkg: RpmPackage): FoundSignature[] {
  const s = pkg.signature;
  const out: FoundSignature[] = [];
  for (const tag of [...HEADER_SIG_TAGS, ...LEGACY_SIG_TAGS]) {
    if (!s.has(tag)) continue;
    const range = (LEGACY_SIG_TAGS as readonly number[]).includes(tag) ? "header+payload" : "header";
    const offset = s.fileOffsetOf(tag);
    let values: Uint8Array[];
    try {
      if (tag === SigTag.OPENPGP) {
        values = (s.strings(tag) ?? []).map((b64) => {
          if (!/^[A-Za-z0-9+/=\s]*$/.test(b64)) throw new OpenPgpError("OPENPGP tag value is not base64", 0);
          return new Uint8Array(Buffer.from(b64, "base64"));
        });
      } else {
        values = [s.binary(tag) as Uint8Array];
      }
    } catch (e) {
      // Wrong tag type (e.g. a string where BIN belongs) or bad base64.
      out.push({ tag, range, offset, error: new OpenPgpError((e as Error).message, 0) });
      continue;
    }
    for (const v of values) out.push({ tag, range, offset, ...parseOne(v) });
  }
  return out;
}

const TAG_KINDS: Record<number, string> = {
  [SigTag.RSAHEADER]: "RSA",
  [SigTag.DSAHEADER]: "DSA",
  [SigTag.PGP]: "RSA",
  [SigTag.GPG]: "DSA",
  [SigTag.PGP5]: "RSA",
};

function labelOf(f: FoundSignature): string {
  const prefix = f.range === "header" ? "Header " : "";
  const sig = f.sig;
  // rpm names an unparsable signature after the tag it sits in.
  if (!sig) return `${prefix}${TAG_KINDS[f.tag] ?? "OpenPGP"} signature`;
  const keyId = sig.keyId ? sig.keyId.slice(8) : "00000000";
  return `${prefix}V${sig.version} ${pubkeyAlgoName(sig.pubkeyAlgo)}/${hashAlgoName(sig.hashAlgo)} Signature, key ID ${keyId}`;
}

/** One signature's hashing state while the covered bytes stream by. */
interface Pending {
  found: FoundSignature;
  check: SignatureCheck;
  sig: OpenPgpSignature;
  hash: Hash;
  /** One streaming verifier per candidate key for the algorithms node verifies over the data. */
  verifiers: { key: OpenPgpPublicKey; v?: Verify }[];
}

function prepare(found: FoundSignature, keyring: RpmKeyring): { check: SignatureCheck; pending?: Pending } {
  const check: SignatureCheck = {
    tag: found.tag,
    range: found.range,
    label: labelOf(found),
    status: "BAD",
    offset: found.offset,
  };
  const sig = found.sig;
  if (!sig) {
    const error = found.error as OpenPgpError;
    check.status = error.unsupported ? "UNSUPPORTED" : "BAD";
    check.detail = error.message;
    return { check };
  }
  check.keyId = sig.keyId;
  check.created = sig.created;
  const hashAlgo = HashAlgo[sig.hashAlgo];
  if (!SUPPORTED_SIG_ALGOS.has(sig.pubkeyAlgo) || !hashAlgo) {
    check.status = "UNSUPPORTED";
    check.detail = `unsupported ${!hashAlgo ? `hash ${hashAlgoName(sig.hashAlgo)}` : `public-key algorithm ${pubkeyAlgoName(sig.pubkeyAlgo)}`}`;
    return { check };
  }
  if (sig.type !== 0x00) {
    check.detail = `signature type 0x${sig.type.toString(16).padStart(2, "0")} is not a binary-document signature`;
    return { check };
  }
  if (sig.unknownCritical.length > 0) {
    check.detail = `unknown critical subpacket ${sig.unknownCritical.join(", ")}`;
    return { check };
  }
  if (!sig.keyId) {
    check.detail = "the signature names no issuer key";
    return { check };
  }
  const keys = keyring.find(sig.keyId).filter((k) => keyMatches(k, sig.pubkeyAlgo));
  if (keys.length === 0) {
    check.status = "NOKEY";
    check.detail = `no trusted key with ID ${sig.keyId}`;
    return { check };
  }
  const streamed = verifiesStreamed(sig.pubkeyAlgo);
  try {
    const hash = createHash(hashAlgo.node);
    const verifiers = keys.map((key) => ({ key, v: streamed ? createVerify(hashAlgo.node) : undefined }));
    return { check, pending: { found, check, sig, hash, verifiers } };
  } catch {
    check.status = "UNSUPPORTED";
    check.detail = `hash ${hashAlgo.name} is not available in this Node`;
    return { check };
  }
}

function finish(p: Pending): void {
  const { sig, check } = p;
  p.hash.update(sig.trailer);
  for (const v of p.verifiers) v.v?.update(sig.trailer);
  const digest = p.hash.digest();
  if (digest[0] !== sig.left16[0] || digest[1] !== sig.left16[1]) {
    check.status = "BAD";
    check.detail = "digest prefix mismatch (the signed data changed)";
    return;
  }
  for (const { key, v } of p.verifiers) {
    if (verifyWith(key, sig, digest, v)) {
      check.status = "OK";
      check.detail = undefined;
      check.signer = {
        keyId: key.keyId,
        fingerprint: key.fingerprint,
        userIds: key.userIds,
        source: key.source,
      };
      return;
    }
  }
  check.status = "BAD";
  check.detail = "signature does not verify";
}

/**
 * Checks every OpenPGP signature of the package against the keyring, like `rpm -Kv`. Header
 * signatures hash the main header; legacy ones stream header+payload once for all of them.
 */
export async function verifyPackageSignatures(
  pkg: RpmPackage,
  keyring: RpmKeyring,
): Promise<SignatureCheck[]> {
  const checks: SignatureCheck[] = [];
  const header: Pending[] = [];
  const legacy: Pending[] = [];
  for (const f of packageSignatures(pkg)) {
    const { check, pending } = prepare(f, keyring);
    checks.push(check);
    if (pending) (f.range === "header" ? header : legacy).push(pending);
  }
  const feed = (ps: Pending[], chunk: Uint8Array) => {
    for (const p of ps) {
      p.hash.update(chunk);
      for (const v of p.verifiers) v.v?.update(chunk);
    }
  };
  feed(header, pkg.header.bytes);
  for (const p of header) finish(p);
  if (legacy.length > 0) {
    feed(legacy, pkg.header.bytes);
    for await (const chunk of pkg.source.stream(pkg.payload.offset, pkg.source.size)) feed(legacy, chunk);
    for (const p of legacy) finish(p);
  }
  return checks;
}

// ---------------------------------------------------------------------------------------------
// Policy

/** Where trusted keys come from: host key files (paths), key file contents, or ready keyrings. */
export type KeySource = string | Uint8Array | RpmKeyring;

export interface SignaturePolicy {
  /** Default "if-present" (see SignatureMode). */
  signature?: SignatureMode;
  /** Trusted keys besides the guest's. */
  keys?: KeySource[];
  /** Also trust the guest's keys (/etc/pki/rpm-gpg/*, repo gpgkey=file:// keys). Default true. */
  guestKeys?: boolean;
}

export interface SignatureVerdict {
  mode: SignatureMode;
  /** True when the package carries at least one OpenPGP signature. */
  signed: boolean;
  checks: SignatureCheck[];
  /** Sources of the trusted keys used (empty for "ignore"). */
  keySources: string[];
  /** Guest key files that could not be used. */
  keyProblems: { source: string; reason: string }[];
}

/** Builds the trusted keyring of a policy (explicit keys, then the guest's). */
export async function policyKeyring(policy: SignaturePolicy, target?: InjectTarget): Promise<RpmKeyring> {
  const ring = new RpmKeyring();
  for (const k of policy.keys ?? []) {
    if (k instanceof RpmKeyring) ring.merge(k);
    else if (typeof k === "string") ring.merge(await RpmKeyring.fromFiles([k]));
    else ring.add(k, "<key bytes>");
  }
  if (target && policy.guestKeys !== false) ring.merge(await loadGuestKeyring(target));
  return ring;
}

/**
 * Applies the policy to a package: returns the verdict, or throws `RpmSignatureError` (bad
 * signature, NOKEY, unsupported algorithm, unsigned under "required"). Writes nothing.
 *
 * A package passes when no signature is BAD and at least one verifies; signatures by other,
 * unknown keys are then tolerated (rpm 6 packages may carry several).
 */
export async function checkSignaturePolicy(
  pkg: RpmPackage,
  policy: SignaturePolicy = {},
  target?: InjectTarget,
): Promise<SignatureVerdict> {
  const mode = policy.signature ?? DEFAULT_SIGNATURE_MODE;
  if (mode === "ignore")
    return { mode, signed: packageSignatures(pkg).length > 0, checks: [], keySources: [], keyProblems: [] };
  if (mode !== "required" && mode !== "if-present") {
    throw new TypeError(
      `signature mode must be "required", "if-present" or "ignore", not ${JSON.stringify(mode)}`,
    );
  }
  const where = { file: pkg.name };
  // Built on every call (before the unsigned check, so a bad key file is reported whatever the
  // package): keys the guest gained or lost since the last package count. A transaction builds it
  // once and passes it in as `keys`, with guestKeys false.
  const ring = await policyKeyring(policy, target);
  if (packageSignatures(pkg).length === 0) {
    if (mode === "required") {
      throw new RpmSignatureError(
        `${pkg.info.nevra} is not signed (signature policy "required")`,
        "unsigned",
        [],
        where,
      );
    }
    return {
      mode,
      signed: false,
      checks: [],
      keySources: [...ring.sources],
      keyProblems: [...ring.problems],
    };
  }
  const checks = await verifyPackageSignatures(pkg, ring);
  const verdict: SignatureVerdict = {
    mode,
    signed: true,
    checks,
    keySources: [...ring.sources],
    keyProblems: [...ring.problems],
  };
  const first = (status: SignatureStatus) => checks.find((c) => c.status === status);
  const bad = first("BAD");
  const at = (c: SignatureCheck) => ({ file: pkg.name, offset: c.offset });
  if (bad) {
    throw new RpmSignatureError(`${pkg.name}: ${formatSignatureCheck(bad)}`, "bad", checks, at(bad));
  }
  if (checks.some((c) => c.status === "OK")) return verdict;
  const nokey = first("NOKEY");
  if (nokey) {
    const searched =
      ring.sources.length > 0 ? `searched ${ring.sources.length} key file(s)` : "no trusted keys";
    throw new RpmSignatureError(
      `${pkg.name}: ${nokey.label}: NOKEY key ID ${nokey.keyId?.slice(8)} (${searched}; ` +
        `give the key with --rpm-key FILE / the keys option, or put it in the guest's ${GUEST_KEY_DIR})`,
      "nokey",
      checks,
      at(nokey),
    );
  }
  const unsupported = first("UNSUPPORTED") as SignatureCheck;
  throw new RpmSignatureError(
    `${pkg.name}: ${formatSignatureCheck(unsupported)}`,
    "unsupported",
    checks,
    at(unsupported),
  );
}
