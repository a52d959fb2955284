/**
 * `--root-password SELECTOR` / `--password USER:SELECTOR` with virt-customize's selectors, written
 * into the guest's /etc/shadow as crypt(3) hashes:
 *
 * | selector             | shadow password field                                   |
 * |----------------------|---------------------------------------------------------|
 * | `password:PASS`      | hash of PASS                                            |
 * | `file:FILENAME`      | hash of the first line of the host file FILENAME        |
 * | `random`             | hash of a random password, reported once to the caller  |
 * | `disabled`           | `*` (no password login)                                 |
 * | `locked:SELECTOR`    | `!` + the field SELECTOR gives (account locked)         |
 * | `locked`             | `!*` (same as `locked:disabled`)                        |
 *
 * The shadow file keeps its mode and owner; the user's last-change day becomes the edit's day.
 * Passwords never appear in logs or in the lines this returns.
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { type CryptMethod, cryptPassword } from "../guest/crypt.js";
import { lstatOrNull, readTextOrNull } from "../guest/fs-util.js";
import type { GuestFs } from "../guest/guest-fs.js";

export type PasswordSelector =
  | { kind: "password"; password: string }
  | { kind: "file"; file: string }
  | { kind: "random" }
  | { kind: "disabled" }
  | { kind: "locked"; inner: PasswordSelector };

export class PasswordSelectorError extends Error {}

export function parsePasswordSelector(text: string): PasswordSelector {
  if (text === "random") return { kind: "random" };
  if (text === "disabled") return { kind: "disabled" };
  if (text === "locked") return { kind: "locked", inner: { kind: "disabled" } };
  if (text.startsWith("locked:")) {
    const inner = parsePasswordSelector(text.slice(7));
    if (inner.kind === "locked") throw new PasswordSelectorError(`"${text}": locked cannot be nested`);
    return { kind: "locked", inner };
  }
  if (text.startsWith("password:")) return { kind: "password", password: text.slice(9) };
  if (text.startsWith("file:")) {
    if (text.length === 5) throw new PasswordSelectorError("file: needs a file name");
    return { kind: "file", file: text.slice(5) };
  }
  throw new PasswordSelectorError(
    `unknown password selector (password:PASS, file:FILENAME, random, disabled, locked[:SELECTOR])`,
  );
}

/** A human description that never holds the password. */
export function describeSelector(s: PasswordSelector): string {
  switch (s.kind) {
    case "password":
      return "password:…";
    case "file":
      return `file:${s.file}`;
    case "locked":
      return `locked:${describeSelector(s.inner)}`;
    default:
      return s.kind;
  }
}

const RANDOM_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

function randomPassword(length = 16): string {
  const bytes = randomBytes(length * 2);
  let out = "";
  // Rejection sampling keeps every character equally likely.
  for (const b of bytes) {
    if (out.length === length) break;
    if (b < 256 - (256 % RANDOM_CHARS.length)) out += RANDOM_CHARS[b % RANDOM_CHARS.length];
  }
  return out.length === length ? out : randomPassword(length);
}

export interface PasswordResult {
  /** The shadow password field written. */
  field: string;
  /** The generated password of a `random` selector (for the caller to show once). */
  randomPassword?: string;
}

/** The shadow password field a selector gives. */
export async function passwordField(
  s: PasswordSelector,
  method: CryptMethod,
  salt?: string,
): Promise<PasswordResult> {
  switch (s.kind) {
    case "disabled":
      return { field: "*" };
    case "locked": {
      const r = await passwordField(s.inner, method, salt);
      return { ...r, field: `!${r.field}` };
    }
    case "random": {
      const pw = randomPassword();
      return { field: cryptPassword(pw, method, { salt }), randomPassword: pw };
    }
    case "file": {
      const text = await readFile(s.file, "utf8");
      const first = text.split("\n")[0]!.replace(/\r$/, "");
      return { field: cryptPassword(first, method, { salt }) };
    }
    case "password":
      return { field: cryptPassword(s.password, method, { salt }) };
  }
}

export class ShadowError extends Error {}

/**
 * Sets `user`'s password field in /etc/shadow (and the last-change day), keeping every other line
 * and field exactly; the file keeps its mode and owner.
 */
export async function setShadowPassword(fs: GuestFs, user: string, field: string, now: Date): Promise<void> {
  const path = "/etc/shadow";
  const text = await readTextOrNull(fs, path);
  if (text === null) throw new ShadowError(`${path} does not exist in the guest`);
  const st = await lstatOrNull(fs, path);
  const lines = text.split("\n");
  const day = Math.floor(now.getTime() / 86_400_000);
  let found = false;
  for (let i = 0; i < lines.length; i++) {
    const parts = lines[i]!.split(":");
    if (parts[0] !== user || parts.length < 2) continue;
    parts[1] = field;
    if (parts.length >= 3) parts[2] = String(day);
    lines[i] = parts.join(":");
    found = true;
  }
  if (!found) throw new ShadowError(`no user "${user}" in ${path}`);
  await fs.writeFile(path, lines.join("\n"), {
    mode: st?.mode ?? 0o000,
    uid: st?.uid ?? 0,
    gid: st?.gid ?? 0,
    mtime: now,
  });
}
