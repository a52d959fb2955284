/**
 * crypt(3) password hashes as glibc/libxcrypt verify them in /etc/shadow: SHA-512 (`$6$`), SHA-256
 * (`$5$`) and MD5 (`$1$`), from Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512" and the
 * FreeBSD MD5-crypt algorithm (public specifications; the digests are node:crypto's).
 */
import { createHash, randomBytes } from "node:crypto";

export type CryptMethod = "sha512" | "sha256" | "md5";

const ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ROUNDS_DEFAULT = 5000;

/** The permutation the base-64 output uses: triples of digest indices, then the tail. */
const SHA512_ORDER = [
  [0, 21, 42],
  [22, 43, 1],
  [44, 2, 23],
  [3, 24, 45],
  [25, 46, 4],
  [47, 5, 26],
  [6, 27, 48],
  [28, 49, 7],
  [50, 8, 29],
  [9, 30, 51],
  [31, 52, 10],
  [53, 11, 32],
  [12, 33, 54],
  [34, 55, 13],
  [56, 14, 35],
  [15, 36, 57],
  [37, 58, 16],
  [59, 17, 38],
  [18, 39, 60],
  [40, 61, 19],
  [62, 20, 41],
] as const;
const SHA256_ORDER = [
  [0, 10, 20],
  [21, 1, 11],
  [12, 22, 2],
  [3, 13, 23],
  [24, 4, 14],
  [15, 25, 5],
  [6, 16, 26],
  [27, 7, 17],
  [18, 28, 8],
  [9, 19, 29],
] as const;
const MD5_ORDER = [
  [0, 6, 12],
  [1, 7, 13],
  [2, 8, 14],
  [3, 9, 15],
  [4, 10, 5],
] as const;

function b64(b2: number, b1: number, b0: number, n: number): string {
  let w = (b2 << 16) | (b1 << 8) | b0;
  let out = "";
  for (let i = 0; i < n; i++) {
    out += ITOA64[w & 0x3f];
    w >>>= 6;
  }
  return out;
}

/** A salt of `length` characters from crypt's alphabet. */
export function randomSalt(length = 16): string {
  const bytes = randomBytes(length);
  let s = "";
  for (const b of bytes) s += ITOA64[b & 0x3f];
  return s;
}

/** `repeat(block, n)`: `block` repeated to exactly n bytes. */
function repeatTo(block: Buffer, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += block.length) block.copy(out, i, 0, Math.min(block.length, n - i));
  return out;
}

function shaCrypt(method: "sha512" | "sha256", password: string, salt: string, rounds?: number): string {
  const H = (...parts: Buffer[]) => {
    const h = createHash(method);
    for (const p of parts) h.update(p);
    return h.digest();
  };
  const P = Buffer.from(password, "utf8");
  const S = Buffer.from(salt, "utf8").subarray(0, 16);
  const r = rounds === undefined ? ROUNDS_DEFAULT : Math.min(999_999_999, Math.max(1000, rounds));
  const B = H(P, S, P);
  const a = createHash(method).update(P).update(S).update(repeatTo(B, P.length));
  for (let n = P.length; n > 0; n >>>= 1) a.update(n & 1 ? B : P);
  const A = a.digest();
  const dp = createHash(method);
  for (let i = 0; i < P.length; i++) dp.update(P);
  const Pp = repeatTo(dp.digest(), P.length);
  const ds = createHash(method);
  for (let i = 0; i < 16 + A[0]!; i++) ds.update(S);
  const Sp = repeatTo(ds.digest(), S.length);
  let C = A;
  for (let i = 0; i < r; i++) {
    const h = createHash(method);
    h.update(i & 1 ? Pp : C);
    if (i % 3) h.update(Sp);
    if (i % 7) h.update(Pp);
    h.update(i & 1 ? C : Pp);
    C = h.digest();
  }
  let out = "";
  if (method === "sha512") {
    for (const [x, y, z] of SHA512_ORDER) out += b64(C[x]!, C[y]!, C[z]!, 4);
    out += b64(0, 0, C[63]!, 2);
  } else {
    for (const [x, y, z] of SHA256_ORDER) out += b64(C[x]!, C[y]!, C[z]!, 4);
    out += b64(0, C[31]!, C[30]!, 3);
  }
  const id = method === "sha512" ? "6" : "5";
  return `$${id}$${rounds === undefined ? "" : `rounds=${r}$`}${S.toString("utf8")}$${out}`;
}

function md5Crypt(password: string, salt: string): string {
  const P = Buffer.from(password, "utf8");
  const S = Buffer.from(salt, "utf8").subarray(0, 8);
  const md5 = (...parts: Buffer[]) => {
    const h = createHash("md5");
    for (const p of parts) h.update(p);
    return h.digest();
  };
  let final = md5(P, S, P);
  const ctx = createHash("md5").update(P).update("$1$").update(S);
  for (let n = P.length; n > 0; n -= 16) ctx.update(final.subarray(0, Math.min(n, 16)));
  for (let n = P.length; n > 0; n >>>= 1) ctx.update(n & 1 ? Buffer.from([0]) : P.subarray(0, 1));
  final = ctx.digest();
  for (let i = 0; i < 1000; i++) {
    const h = createHash("md5");
    h.update(i & 1 ? P : final);
    if (i % 3) h.update(S);
    if (i % 7) h.update(P);
    h.update(i & 1 ? final : P);
    final = h.digest();
  }
  let out = "";
  for (const [x, y, z] of MD5_ORDER) out += b64(final[x]!, final[y]!, final[z]!, 4);
  out += b64(0, 0, final[11]!, 2);
  return `$1$${S.toString("utf8")}$${out}`;
}

/**
 * Hash `password` for /etc/shadow. `salt` defaults to a random one (16 characters; 8 for MD5);
 * `rounds` (SHA only) is written into the hash only when given, as crypt(3) does.
 */
export function cryptPassword(
  password: string,
  method: CryptMethod = "sha512",
  options: { salt?: string; rounds?: number } = {},
): string {
  const salt = options.salt ?? randomSalt(method === "md5" ? 8 : 16);
  if (/[$:\n]/.test(salt)) throw new RangeError("a crypt salt cannot hold '$', ':' or a newline");
  return method === "md5" ? md5Crypt(password, salt) : shaCrypt(method, password, salt, options.rounds);
}
