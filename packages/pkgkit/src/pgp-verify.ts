/**
 * The cryptographic core of an OpenPGP signature check, shared by rpm's header signatures and apt's
 * InRelease/Release.gpg: which keys can have made a signature, and whether one of them did, given
 * the signed bytes. Policy (which keys are trusted, what an unsigned input means) stays with the
 * callers.
 *
 * A v4 signature hashes the signed data, then the signature's own trailer (RFC 4880 §5.2.4); the
 * first two digest bytes are stored in the packet as a quick check before the public-key math.
 */
import { constants, createHash, createVerify, verify as cryptoVerify, type Verify } from "node:crypto";
import {
  HashAlgo,
  hashAlgoName,
  type OpenPgpPublicKey,
  type OpenPgpSignature,
  PubkeyAlgo,
  padTo,
  pubkeyAlgoName,
} from "./openpgp.js";

/** Key algorithms that can make a signature of algorithm `sigAlgo` (RSA sign-only keys sign RSA). */
export function keyMatches(key: OpenPgpPublicKey, sigAlgo: number): boolean {
  const rsa = (a: number) => a === PubkeyAlgo.RSA || a === PubkeyAlgo.RSA_SIGN;
  return key.algo === sigAlgo || (rsa(key.algo) && rsa(sigAlgo));
}

export const SUPPORTED_SIG_ALGOS: ReadonlySet<number> = new Set<number>([
  PubkeyAlgo.RSA,
  PubkeyAlgo.RSA_SIGN,
  PubkeyAlgo.DSA,
  PubkeyAlgo.ECDSA,
  PubkeyAlgo.EDDSA_LEGACY,
]);

/** True when node verifies this algorithm over the data (a streaming `Verify`); EdDSA signs the digest. */
export function verifiesStreamed(pubkeyAlgo: number): boolean {
  return pubkeyAlgo !== PubkeyAlgo.EDDSA_LEGACY;
}

/**
 * Checks the signature values against one key. `digest` is the full hash of data + trailer; `v`
 * is a streaming verifier fed the same bytes (needed for RSA/DSA/ECDSA).
 */
export function verifyWith(
  key: OpenPgpPublicKey,
  sig: OpenPgpSignature,
  digest: Buffer,
  v: Verify | undefined,
): boolean {
  try {
    switch (sig.pubkeyAlgo) {
      case PubkeyAlgo.RSA:
      case PubkeyAlgo.RSA_SIGN: {
        const bits = key.key.asymmetricKeyDetails?.modulusLength ?? 0;
        const s = padTo(sig.mpis[0], Math.ceil(bits / 8));
        return !!s && !!v && v.verify({ key: key.key, padding: constants.RSA_PKCS1_PADDING }, s);
      }
      case PubkeyAlgo.DSA:
      case PubkeyAlgo.ECDSA: {
        const size = key.scalarSize ?? 0;
        const r = padTo(sig.mpis[0], size);
        const s = padTo(sig.mpis[1], size);
        if (!r || !s || !v) return false;
        return v.verify({ key: key.key, dsaEncoding: "ieee-p1363" }, Buffer.concat([r, s]));
      }
      case PubkeyAlgo.EDDSA_LEGACY: {
        // Legacy EdDSA signs the digest; r and s are the two 32-byte halves of the signature.
        const r = padTo(sig.mpis[0], 32);
        const s = padTo(sig.mpis[1], 32);
        if (!r || !s) return false;
        return cryptoVerify(null, digest, key.key, Buffer.concat([r, s]));
      }
      default:
        return false;
    }
  } catch {
    // node:crypto rejects malformed values (wrong length, point off the curve): not a valid signature.
    return false;
  }
}

export type VerifyStatus = "OK" | "BAD" | "NOKEY" | "UNSUPPORTED";

export interface VerifyResult {
  status: VerifyStatus;
  /** The key that made the signature (status OK). */
  key?: OpenPgpPublicKey;
  /** Why it is not OK. */
  detail?: string;
}

/**
 * Verifies one signature over in-memory data against candidate keys (those not matching the
 * signature's issuer id and algorithm are ignored). `sigType` is the signature type the caller
 * expects (0x00 binary document, 0x01 canonical text).
 */
export function verifySignature(
  sig: OpenPgpSignature,
  keys: readonly OpenPgpPublicKey[],
  data: readonly Uint8Array[],
  sigType: number,
): VerifyResult {
  const hashAlgo = HashAlgo[sig.hashAlgo];
  if (!SUPPORTED_SIG_ALGOS.has(sig.pubkeyAlgo) || !hashAlgo) {
    const what = !hashAlgo
      ? `hash ${hashAlgoName(sig.hashAlgo)}`
      : `public-key algorithm ${pubkeyAlgoName(sig.pubkeyAlgo)}`;
    return { status: "UNSUPPORTED", detail: `unsupported ${what}` };
  }
  if (sig.type !== sigType) {
    return {
      status: "BAD",
      detail: `signature type 0x${sig.type.toString(16).padStart(2, "0")} is not 0x${sigType.toString(16).padStart(2, "0")}`,
    };
  }
  if (sig.unknownCritical.length > 0) {
    return { status: "BAD", detail: `unknown critical subpacket ${sig.unknownCritical.join(", ")}` };
  }
  if (!sig.keyId) return { status: "BAD", detail: "the signature names no issuer key" };
  const id = sig.keyId.toLowerCase();
  const candidates = keys.filter((k) => k.keyId === id && keyMatches(k, sig.pubkeyAlgo));
  if (candidates.length === 0) return { status: "NOKEY", detail: `no trusted key with ID ${sig.keyId}` };
  let hash: ReturnType<typeof createHash>;
  try {
    hash = createHash(hashAlgo.node);
  } catch {
    return { status: "UNSUPPORTED", detail: `hash ${hashAlgo.name} is not available in this Node` };
  }
  for (const d of data) hash.update(d);
  hash.update(sig.trailer);
  const digest = hash.digest();
  if (digest[0] !== sig.left16[0] || digest[1] !== sig.left16[1]) {
    return { status: "BAD", detail: "digest prefix mismatch (the signed data changed)" };
  }
  for (const key of candidates) {
    let v: Verify | undefined;
    if (verifiesStreamed(sig.pubkeyAlgo)) {
      v = createVerify(hashAlgo.node);
      for (const d of data) v.update(d);
      v.update(sig.trailer);
    }
    if (verifyWith(key, sig, digest, v)) return { status: "OK", key };
  }
  return { status: "BAD", detail: "signature does not verify" };
}
