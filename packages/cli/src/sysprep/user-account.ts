/**
 * user-account (off by default): removes the accounts whose uid is within login.defs'
 * UID_MIN..UID_MAX — all of them, or those of --remove-user-accounts, minus
 * --keep-user-accounts — as virt-sysprep does through Augeas: the user's /etc/passwd and
 * /etc/shadow lines, the /etc/group line of the same name, /var/spool/mail/USER and the home
 * directory. Other lines are kept byte for byte; /etc/gshadow is not touched (virt-sysprep leaves it).
 */
import { ImgpatchError } from "@imgpatch/disk";
import { readTextOrNull } from "../guest/fs-util.js";
import { normalizeGuestPath } from "../guest/paths.js";
import type { SysprepContext } from "./types.js";

/** A guest file sysprep needs is missing or malformed (names the guest file). */
export class SysprepGuestError extends ImgpatchError {
  constructor(message: string, file: string) {
    super("ESYSPREP", message, { file });
  }
}

function loginDefsNumber(text: string, key: string): number {
  const m = new RegExp(`^[ \\t]*${key}[ \\t]+([0-9]+)[ \\t]*$`, "m").exec(text);
  if (!m) throw new SysprepGuestError(`user-account: no ${key} in /etc/login.defs`, "/etc/login.defs");
  return Number(m[1]);
}

/** The first field of a colon-separated line. */
const nameOf = (line: string) => line.slice(0, line.indexOf(":") < 0 ? line.length : line.indexOf(":"));

/** Drops the lines naming one of `names`; writes the file only when something went. */
async function dropLines(ctx: SysprepContext, path: string, names: ReadonlySet<string>): Promise<void> {
  const text = await readTextOrNull(ctx.sfs.fs, path);
  if (text === null) return;
  const lines = text.split("\n");
  const kept = lines.filter((l, i) => (i === lines.length - 1 && l === "") || !names.has(nameOf(l)));
  if (kept.length === lines.length) return;
  await ctx.sfs.write(path, kept.join("\n"));
  ctx.sfs.changes[ctx.sfs.changes.length - 1] = `edit ${path}`;
}

export async function userAccount(ctx: SysprepContext): Promise<void> {
  const { sfs } = ctx;
  const defs = await readTextOrNull(sfs.fs, "/etc/login.defs");
  if (defs === null)
    throw new SysprepGuestError("user-account: the guest has no /etc/login.defs", "/etc/login.defs");
  const uidMin = loginDefsNumber(defs, "UID_MIN");
  const uidMax = loginDefsNumber(defs, "UID_MAX");
  const passwd = (await readTextOrNull(sfs.fs, "/etc/passwd")) ?? "";
  const removed = new Set<string>();
  const homes: string[] = [];
  for (const line of passwd.split("\n")) {
    const f = line.split(":");
    if (f.length < 7 || line.startsWith("#") || line.startsWith("+") || line.startsWith("-")) continue;
    const uid = /^[0-9]+$/.test(f[2]) ? Number(f[2]) : Number.NaN;
    if (!(uid >= uidMin && uid <= uidMax)) continue;
    const user = f[0];
    if (ctx.keepUsers.has(user)) continue;
    if (ctx.removeUsers.size > 0 && !ctx.removeUsers.has(user)) continue;
    removed.add(user);
    if (f[5].startsWith("/")) homes.push(normalizeGuestPath(f[5]));
  }
  if (removed.size === 0) return;
  await dropLines(ctx, "/etc/passwd", removed);
  await dropLines(ctx, "/etc/shadow", removed);
  await dropLines(ctx, "/etc/group", removed);
  for (const user of removed) await sfs.rmRf(`/var/spool/mail/${user}`);
  for (const home of homes) {
    // A home of "/" (or a system directory) is not removed: rm -rf / is never what was meant.
    if (home === "/" || home.split("/").length < 3) {
      ctx.notes.push(`user-account: home directory ${home} left in place`);
      continue;
    }
    await sfs.rmRf(home);
  }
}
