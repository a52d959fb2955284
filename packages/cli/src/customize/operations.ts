/**
 * virt-customize-style operations on a guest filesystem: parsing (`--write FILE:CONTENT` etc., the
 * same syntax in --commands-from-file) and applying them through a GuestFs, in command-line order.
 */
import { open, readFile, stat } from "node:fs/promises";
import { ImgpatchError } from "@imgpatch/disk";
import type { StepProgress } from "../commands/progress.js";
import type { CryptMethod } from "../guest/crypt.js";
import { addFirstbootScript, firstbootCommandScript } from "../guest/firstboot.js";
import { ensureDir, lstatOrNull, readTextOrNull, statOrNull } from "../guest/fs-util.js";
import type { GuestFs } from "../guest/guest-fs.js";
import { GuestIdentity } from "../guest/identity.js";
import { guestBasename, guestDirname, normalizeGuestPath } from "../guest/paths.js";
import { selinuxRelabel } from "../guest/selinux-relabel-op.js";
import { disableUnit, enableUnit, maskUnit, type SystemdInstallOptions } from "../guest/systemd-install.js";
import { compileEditExpr, EditExprError, editText, type LineEdit } from "./edit-expr.js";
import { guestGlob } from "./glob.js";
import { packageFirstbootScript } from "./package-firstboot.js";
import {
  describeSelector,
  type PasswordSelector,
  PasswordSelectorError,
  parsePasswordSelector,
  passwordField,
  ShadowError,
  setShadowPassword,
} from "./passwords.js";
import { copyIn, copyTree, removeTree } from "./tree-ops.js";

export type CustomizeOp =
  | { op: "mkdir"; path: string }
  | { op: "write"; path: string; content: string }
  | { op: "append-line"; path: string; line: string }
  | { op: "upload"; host: string; path: string }
  | { op: "copy-in"; host: string; dir: string }
  | { op: "tar-in"; host: string; dir: string }
  | { op: "link"; target: string; links: string[] }
  | { op: "chmod"; mode: number; path: string }
  | { op: "chown"; owner: string; path: string }
  | { op: "delete"; pattern: string }
  | { op: "touch"; path: string }
  | { op: "move"; from: string; to: string }
  | { op: "copy"; from: string; to: string }
  | { op: "enable" | "disable" | "mask"; unit: string }
  | { op: "firstboot"; host: string }
  | { op: "firstboot-command"; command: string }
  | { op: "hostname"; name: string }
  | { op: "timezone"; zone: string }
  | { op: "ssh-inject"; user: string; key: { file: string } | { string: string } }
  | { op: "selinux-relabel" }
  | { op: "selinux-autorelabel" }
  | { op: "selinux-permissive" }
  | { op: "root-password"; selector: PasswordSelector }
  | { op: "password"; user: string; selector: PasswordSelector }
  | { op: "password-crypto"; method: CryptMethod }
  | { op: "edit"; path: string; expr: string | LineEdit }
  | { op: "truncate"; path: string }
  | { op: "truncate-recursive"; path: string }
  | { op: "scrub"; path: string }
  | { op: "run"; host: string }
  | { op: "run-command"; command: string }
  | { op: "update" }
  | { op: "uninstall"; packages: string[] };

export type CustomizeOpName = CustomizeOp["op"];

/** A malformed operation argument (exit code: usage error). */
export class CustomizeUsageError extends ImgpatchError {
  constructor(message: string, file?: string) {
    super("EUSAGE", message, { file });
  }
}

function guestPath(p: string, what: string): string {
  if (!p.startsWith("/")) throw new CustomizeUsageError(`${what}: guest path must be absolute: "${p}"`);
  return normalizeGuestPath(p);
}

function split2(arg: string, op: string, shape: string): [string, string] {
  const i = arg.indexOf(":");
  if (i < 0) throw new CustomizeUsageError(`--${op} expects ${shape}, got "${arg}"`);
  return [arg.slice(0, i), arg.slice(i + 1)];
}

const NO_ARG = new Set(["selinux-relabel", "selinux-autorelabel", "selinux-permissive", "update"]);

/** Parses one operation given as on the command line (`name` without dashes). */
export function parseOperation(name: string, arg: string | undefined): CustomizeOp {
  if (NO_ARG.has(name)) {
    if (arg !== undefined && arg !== "") throw new CustomizeUsageError(`--${name} takes no argument`);
    return { op: name as "selinux-relabel" | "selinux-autorelabel" | "selinux-permissive" | "update" };
  }
  if (arg === undefined) throw new CustomizeUsageError(`--${name} needs an argument`);
  switch (name) {
    case "mkdir":
      return { op: "mkdir", path: guestPath(arg, name) };
    case "write": {
      const [p, content] = split2(arg, name, "FILE:CONTENT");
      return { op: "write", path: guestPath(p, name), content };
    }
    case "append-line": {
      const [p, line] = split2(arg, name, "FILE:LINE");
      return { op: "append-line", path: guestPath(p, name), line };
    }
    case "upload": {
      const [host, p] = split2(arg, name, "HOSTFILE:GUESTPATH");
      return { op: "upload", host, path: guestPath(p, name) };
    }
    case "copy-in": {
      const i = arg.lastIndexOf(":");
      if (i <= 0) throw new CustomizeUsageError(`--copy-in expects HOSTPATH:GUESTDIR, got "${arg}"`);
      return { op: "copy-in", host: arg.slice(0, i), dir: guestPath(arg.slice(i + 1), name) };
    }
    case "tar-in": {
      const i = arg.lastIndexOf(":");
      if (i <= 0) throw new CustomizeUsageError(`--tar-in expects TARBALL:GUESTDIR, got "${arg}"`);
      return { op: "tar-in", host: arg.slice(0, i), dir: guestPath(arg.slice(i + 1), name) };
    }
    case "link": {
      const parts = arg.split(":");
      if (parts.length < 2 || parts.some((p) => p === "")) {
        throw new CustomizeUsageError(`--link expects TARGET:LINK[:LINK...], got "${arg}"`);
      }
      return { op: "link", target: parts[0], links: parts.slice(1).map((l) => guestPath(l, name)) };
    }
    case "chmod": {
      const [m, p] = split2(arg, name, "MODE:FILE");
      if (!/^[0-7]{1,4}$/.test(m)) throw new CustomizeUsageError(`--chmod mode must be octal, got "${m}"`);
      return { op: "chmod", mode: Number.parseInt(m, 8), path: guestPath(p, name) };
    }
    case "chown": {
      const parts = arg.split(":");
      if (parts.length < 3) throw new CustomizeUsageError(`--chown expects USER:GROUP:PATH, got "${arg}"`);
      return {
        op: "chown",
        owner: `${parts[0]}:${parts[1]}`,
        path: guestPath(parts.slice(2).join(":"), name),
      };
    }
    case "delete":
      return { op: "delete", pattern: guestPath(arg, name) };
    case "touch":
      return { op: "touch", path: guestPath(arg, name) };
    case "move":
    case "copy": {
      const [a, b] = split2(arg, name, "SOURCE:DEST");
      return { op: name, from: guestPath(a, name), to: guestPath(b, name) };
    }
    case "enable":
    case "disable":
    case "mask":
      return { op: name, unit: arg };
    case "firstboot":
      return { op: "firstboot", host: arg };
    case "firstboot-command":
      return { op: "firstboot-command", command: arg };
    case "hostname":
      if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(arg))
        throw new CustomizeUsageError(`invalid hostname "${arg}"`);
      return { op: "hostname", name: arg };
    case "timezone":
      if (!/^[A-Za-z0-9_+-]+(\/[A-Za-z0-9_+-]+)*$/.test(arg))
        throw new CustomizeUsageError(`invalid timezone "${arg}"`);
      return { op: "timezone", zone: arg };
    case "ssh-inject": {
      const m = /^([^:]+)(?::(file|string):(.*))?$/s.exec(arg);
      if (!m)
        throw new CustomizeUsageError(`--ssh-inject expects USER[:file:KEYFILE|:string:KEY], got "${arg}"`);
      if (!m[2])
        throw new CustomizeUsageError(
          "--ssh-inject needs an explicit key (USER:file:KEY.pub or USER:string:KEY)",
        );
      return { op: "ssh-inject", user: m[1], key: m[2] === "file" ? { file: m[3] } : { string: m[3] } };
    }
    case "root-password":
      return { op: "root-password", selector: selectorArg(name, arg) };
    case "password": {
      const [user, sel] = split2(arg, name, "USER:SELECTOR");
      if (user === "") throw new CustomizeUsageError("--password: the user name is empty");
      return { op: "password", user, selector: selectorArg(name, sel) };
    }
    case "password-crypto":
      if (arg !== "md5" && arg !== "sha256" && arg !== "sha512")
        throw new CustomizeUsageError(`--password-crypto must be md5, sha256 or sha512, got "${arg}"`);
      return { op: "password-crypto", method: arg };
    case "edit": {
      const [p, expr] = split2(arg, name, "FILE:EXPR");
      try {
        compileEditExpr(expr); // refuse a bad expression before anything is written
      } catch (err) {
        if (err instanceof EditExprError) throw new CustomizeUsageError(`--edit: ${err.message}`);
        throw err;
      }
      return { op: "edit", path: guestPath(p, name), expr };
    }
    case "truncate":
    case "truncate-recursive":
    case "scrub":
      return { op: name, path: guestPath(arg, name) };
    case "run":
      return { op: "run", host: arg };
    case "run-command":
      return { op: "run-command", command: arg };
    case "uninstall": {
      const packages = arg
        .split(",")
        .map((p) => p.trim())
        .filter((p) => p !== "");
      if (packages.length === 0) throw new CustomizeUsageError("--uninstall expects PKG[,PKG...]");
      return { op: "uninstall", packages };
    }
    default:
      throw new CustomizeUsageError(`unknown operation --${name}`);
  }
}

function selectorArg(name: string, text: string): PasswordSelector {
  try {
    return parsePasswordSelector(text);
  } catch (err) {
    if (err instanceof PasswordSelectorError) throw new CustomizeUsageError(`--${name}: ${err.message}`);
    throw err;
  }
}

/**
 * virt-customize's --commands-from-file syntax: one operation per line, `name argument` (the
 * option name without dashes, one space, the argument verbatim); `#` comment lines and blank lines
 * are skipped; a line ending in a backslash continues on the next (the backslash becomes a newline).
 */
export function parseCommandsFile(text: string, file = "<commands>"): CustomizeOp[] {
  const ops: CustomizeOp[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    let line = lines[i];
    while (line.endsWith("\\") && i + 1 < lines.length) line = `${line.slice(0, -1)}\n${lines[++i]}`;
    if (line.trim() === "" || line.trimStart().startsWith("#")) continue;
    const sp = line.indexOf(" ");
    const name = (sp < 0 ? line : line.slice(0, sp)).trim().replace(/^--/, "");
    const arg = sp < 0 ? undefined : line.slice(sp + 1);
    try {
      ops.push(parseOperation(name, arg));
    } catch (err) {
      if (err instanceof CustomizeUsageError)
        throw new CustomizeUsageError(`line ${lineNo}: ${err.message}`, file);
      throw err;
    }
  }
  return ops;
}

export interface CustomizeContext {
  /** Guest users/groups (loaded from the guest on first need). */
  identity?: GuestIdentity;
  systemd?: SystemdInstallOptions;
  /** Timestamp for files written (SOURCE_DATE_EPOCH). */
  now?: Date;
  /** A progress display for long steps (uploads, copy-in), e.g. a bar on a terminal. */
  progress?: (label: string) => StepProgress;
  /** --password-crypto (default sha512). */
  passwordCrypto?: CryptMethod;
}

/** Uploads at least this big are streamed in UPLOAD_CHUNK pieces (and show progress). */
const UPLOAD_STREAM_MIN = 8 << 20;
const UPLOAD_CHUNK = 4 << 20;

/** A host file as chunks read on demand; `onChunk` gets the running total after each one. */
async function* hostFileChunks(path: string, size: number, onChunk: (done: number) => void) {
  const fh = await open(path, "r");
  try {
    const buf = new Uint8Array(Math.min(UPLOAD_CHUNK, Math.max(1, size)));
    let done = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, done);
      if (bytesRead === 0) break;
      // the writer consumes each chunk before pulling the next, so the buffer can be reused
      yield buf.subarray(0, bytesRead);
      done += bytesRead;
      onChunk(done);
    }
  } finally {
    await fh.close();
  }
}

async function identity(fs: GuestFs, ctx: CustomizeContext): Promise<GuestIdentity> {
  ctx.identity ??= await GuestIdentity.load(fs);
  return ctx.identity;
}

async function parentMustExist(fs: GuestFs, path: string): Promise<void> {
  const st = await statOrNull(fs, guestDirname(path));
  if (st?.type !== "directory") {
    throw new CustomizeUsageError(`parent directory ${guestDirname(path)} does not exist in the guest`, path);
  }
}

/** Applies one operation; returns short lines describing what changed. */
export async function applyOperation(
  fs: GuestFs,
  op: CustomizeOp,
  ctx: CustomizeContext = {},
): Promise<string[]> {
  const mtime = ctx.now;
  switch (op.op) {
    case "mkdir":
      await ensureDir(fs, op.path);
      return [`mkdir ${op.path}`];
    case "write": {
      await parentMustExist(fs, op.path);
      await fs.writeFile(op.path, op.content, { mtime });
      return [`write ${op.path}`];
    }
    case "append-line": {
      const old = await readTextOrNull(fs, op.path);
      if (old === null) await parentMustExist(fs, op.path);
      const eol = old?.includes("\r\n") ? "\r\n" : "\n";
      const sep = old && old.length > 0 && !old.endsWith("\n") ? eol : "";
      await fs.writeFile(op.path, `${old ?? ""}${sep}${op.line}${eol}`, { mtime });
      return [`append-line ${op.path}`];
    }
    case "upload": {
      await parentMustExist(fs, op.path);
      let dest = op.path;
      if ((await statOrNull(fs, dest))?.type === "directory")
        dest = `${dest === "/" ? "" : dest}/${guestBasename(`/${op.host.split("/").pop()}`)}`;
      const st = await stat(op.host);
      const meta = { mode: st.mode & 0o7777, uid: 0, gid: 0, mtime: mtime ?? st.mtime };
      if (st.size < UPLOAD_STREAM_MIN || !st.isFile()) {
        await fs.writeFile(dest, await readFile(op.host), meta);
        return [`upload ${op.host} -> ${dest}`];
      }
      const bar = ctx.progress?.(`upload ${guestBasename(dest)}`);
      try {
        bar?.update(0, st.size);
        await fs.writeFile(
          dest,
          hostFileChunks(op.host, st.size, (done) => bar?.update(done, st.size)),
          meta,
        );
      } finally {
        bar?.finish();
      }
      return [`upload ${op.host} -> ${dest}`];
    }
    case "copy-in": {
      if ((await statOrNull(fs, op.dir))?.type !== "directory") {
        throw new CustomizeUsageError(
          `--copy-in destination ${op.dir} is not a directory in the guest`,
          op.dir,
        );
      }
      const bar = ctx.progress?.(`copy-in ${op.host}`);
      let n: number;
      try {
        n = await copyIn(fs, op.host, op.dir, bar ? { progress: bar } : {});
      } finally {
        bar?.finish();
      }
      return [`copy-in ${op.host} -> ${op.dir} (${n} entries)`];
    }
    case "tar-in": {
      if ((await statOrNull(fs, op.dir))?.type !== "directory") {
        throw new CustomizeUsageError(
          `--tar-in destination ${op.dir} is not a directory in the guest`,
          op.dir,
        );
      }
      // Loaded on use: tar-stream and the decompressors cost start-up time every other run would pay.
      const { tarIn } = await import("./tar-in.js");
      const bar = ctx.progress?.(`tar-in ${guestBasename(`/${op.host.split("/").pop()}`)}`);
      let r: Awaited<ReturnType<typeof tarIn>>;
      try {
        r = await tarIn(fs, op.host, op.dir, await identity(fs, ctx), bar);
      } finally {
        bar?.finish();
      }
      return [
        `tar-in ${op.host} -> ${op.dir} (${r.entries} entries)`,
        ...r.skipped.map((x) => `skipped ${x.name}: ${x.why}`),
      ];
    }
    case "link": {
      const out: string[] = [];
      for (const l of op.links) {
        await parentMustExist(fs, l);
        const st = await lstatOrNull(fs, l);
        if (st?.type === "directory") throw new CustomizeUsageError(`--link: ${l} is a directory`, l);
        if (st) await fs.unlink(l);
        await fs.symlink(op.target, l);
        out.push(`link ${l} -> ${op.target}`);
      }
      return out;
    }
    case "chmod":
      await fs.chmod(op.path, op.mode);
      return [`chmod ${op.mode.toString(8).padStart(4, "0")} ${op.path}`];
    case "chown": {
      const { uid, gid } = (await identity(fs, ctx)).resolveOwner(op.owner);
      await fs.chown(op.path, uid, gid);
      return [`chown ${uid}:${gid} ${op.path}`];
    }
    case "delete": {
      const matches = await guestGlob(fs, op.pattern);
      const out: string[] = [];
      for (const m of matches) {
        if (!(await lstatOrNull(fs, m))) continue; // removed with an earlier match's tree
        const n = await removeTree(fs, m);
        out.push(`delete ${m}${n > 1 ? ` (${n} entries)` : ""}`);
      }
      return out.length > 0 ? out : [`delete ${op.pattern}: nothing matched`];
    }
    case "touch": {
      const st = await statOrNull(fs, op.path);
      const t = mtime ?? new Date();
      if (st) await fs.utimes(op.path, t, t);
      else {
        await parentMustExist(fs, op.path);
        await fs.writeFile(op.path, "", { mtime: t });
      }
      return [`touch ${op.path}`];
    }
    case "move": {
      let to = op.to;
      if ((await statOrNull(fs, to))?.type === "directory")
        to = `${to === "/" ? "" : to}/${guestBasename(op.from)}`;
      await fs.rename(op.from, to);
      return [`move ${op.from} -> ${to}`];
    }
    case "copy": {
      let to = op.to;
      if ((await statOrNull(fs, to))?.type === "directory")
        to = `${to === "/" ? "" : to}/${guestBasename(op.from)}`;
      const n = await copyTree(fs, op.from, to);
      return [`copy ${op.from} -> ${to}${n > 1 ? ` (${n} entries)` : ""}`];
    }
    case "enable": {
      const r = await enableUnit(fs, op.unit, ctx.systemd);
      return [
        ...r.created.map((l) => `symlink ${l.path} -> ${l.target}`),
        ...r.warnings.map((w) => `warning: ${w}`),
      ];
    }
    case "disable": {
      const r = await disableUnit(fs, op.unit, ctx.systemd);
      return [...r.removed.map((p) => `removed ${p}`), ...r.warnings.map((w) => `warning: ${w}`)];
    }
    case "mask": {
      const r = await maskUnit(fs, op.unit, ctx.systemd);
      return r.created.map((l) => `symlink ${l.path} -> ${l.target}`);
    }
    case "firstboot": {
      const p = await addFirstbootScript(fs, op.host.split("/").pop() ?? "script", await readFile(op.host));
      return [`firstboot ${p}`];
    }
    case "firstboot-command": {
      const p = await addFirstbootScript(
        fs,
        op.command.split(/\s+/)[0] ?? "command",
        firstbootCommandScript(op.command),
      );
      return [`firstboot ${p}`];
    }
    case "hostname":
      return setHostname(fs, op.name, mtime);
    case "timezone":
      return setTimezone(fs, op.zone);
    case "ssh-inject":
      return sshInject(fs, op, ctx);
    case "selinux-relabel":
      return selinuxRelabel(fs);
    case "selinux-autorelabel":
      await fs.writeFile("/.autorelabel", "", { mode: 0o644, uid: 0, gid: 0, mtime });
      return ["write /.autorelabel"];
    case "root-password":
    case "password":
      return setPassword(fs, op.op === "password" ? op.user : "root", op.selector, ctx);
    case "password-crypto":
      ctx.passwordCrypto = op.method;
      return [`password-crypto ${op.method}`];
    case "edit":
      return editFile(fs, op.path, op.expr, mtime);
    case "truncate": {
      const st = await statOrNull(fs, op.path);
      if (st?.type !== "file")
        throw new CustomizeUsageError(`--truncate: ${op.path} is not a regular file`, op.path);
      await fs.writeFile(op.path, new Uint8Array(0), { mtime });
      return [`truncate ${op.path}`];
    }
    case "truncate-recursive":
      return truncateRecursive(fs, op.path, mtime);
    case "scrub":
      return scrub(fs, op.path);
    case "run":
    case "run-command": {
      // Without a VM, what virt-customize runs at build time runs at the guest's first boot.
      const script = op.op === "run" ? await readFile(op.host) : firstbootCommandScript(op.command);
      const name =
        op.op === "run" ? (op.host.split("/").pop() ?? "script") : (op.command.split(/\s+/)[0] ?? "command");
      const p = await addFirstbootScript(fs, name, script);
      return [`${op.op}: queued for the first boot (no VM at build time): ${p}`];
    }
    case "update":
    case "uninstall": {
      const p = await addFirstbootScript(
        fs,
        op.op,
        packageFirstbootScript(op.op, op.op === "uninstall" ? op.packages : []),
      );
      return [`${op.op}: queued for the first boot (no VM at build time): ${p}`];
    }
    case "selinux-permissive": {
      const old = (await readTextOrNull(fs, "/etc/selinux/config")) ?? "SELINUXTYPE=targeted\n";
      const next = /^SELINUX=.*$/m.test(old)
        ? old.replace(/^SELINUX=.*$/m, "SELINUX=permissive")
        : `SELINUX=permissive\n${old}`;
      await ensureDir(fs, "/etc/selinux");
      await fs.writeFile("/etc/selinux/config", next, { mtime });
      return ["write /etc/selinux/config (SELINUX=permissive)"];
    }
  }
}

/** Change lines starting with this are shown even without --verbose: the only time the password is shown. */
export const RANDOM_PASSWORD_NOTE = "random password of ";

async function setPassword(
  fs: GuestFs,
  user: string,
  selector: PasswordSelector,
  ctx: CustomizeContext,
): Promise<string[]> {
  const method = ctx.passwordCrypto ?? "sha512";
  const r = await passwordField(selector, method);
  try {
    await setShadowPassword(fs, user, r.field, ctx.now ?? new Date());
  } catch (err) {
    if (err instanceof ShadowError)
      throw new CustomizeUsageError(`password of ${user}: ${err.message}`, "/etc/shadow");
    throw err;
  }
  const lines = [
    `password of ${user}: ${describeSelector(selector)} (${selector.kind === "disabled" || (selector.kind === "locked" && selector.inner.kind === "disabled") ? "no hash" : method})`,
  ];
  // virt-customize prints a generated password once; it is never written anywhere else.
  if (r.randomPassword !== undefined) lines.push(`${RANDOM_PASSWORD_NOTE}${user}: ${r.randomPassword}`);
  return lines;
}

async function editFile(fs: GuestFs, path: string, expr: string | LineEdit, mtime?: Date): Promise<string[]> {
  const st = await statOrNull(fs, path);
  if (st?.type !== "file")
    throw new CustomizeUsageError(`--edit: ${path} is not a regular file in the guest`, path);
  const edit = typeof expr === "string" ? compileEditExpr(expr) : expr;
  const before = Buffer.from(await fs.readFile(path)).toString("utf8");
  const after = editText(before, edit);
  if (after === before) return [`edit ${path}: unchanged`];
  await fs.writeFile(path, after, { mtime });
  return [`edit ${path}`];
}

async function truncateRecursive(fs: GuestFs, root: string, mtime?: Date): Promise<string[]> {
  const st = await lstatOrNull(fs, root);
  if (!st) throw new CustomizeUsageError(`--truncate-recursive: ${root} does not exist in the guest`, root);
  let n = 0;
  const walk = async (p: string, type: string): Promise<void> => {
    if (type === "file") {
      await fs.writeFile(p, new Uint8Array(0), { mtime });
      n++;
      return;
    }
    if (type !== "directory") return; // symlinks and special files are left alone, never followed
    for (const name of (await fs.readdir(p)).sort()) {
      const child = `${p === "/" ? "" : p}/${name}`;
      const cst = await fs.lstat(child);
      await walk(child, cst.type);
    }
  };
  await walk(root, st.type);
  return [`truncate-recursive ${root} (${n} files)`];
}

/** Overwrites a file's data where it lies (zeros, then ones), then removes it. */
async function scrub(fs: GuestFs, path: string): Promise<string[]> {
  const st = await lstatOrNull(fs, path);
  if (st?.type !== "file") throw new CustomizeUsageError(`--scrub: ${path} is not a regular file`, path);
  if (!fs.writeAt)
    throw new CustomizeUsageError(`--scrub: this guest filesystem cannot overwrite in place`, path);
  const piece = 1 << 20;
  for (const fill of [0x00, 0xff]) {
    const buf = new Uint8Array(Math.min(piece, Math.max(1, st.size))).fill(fill);
    for (let at = 0; at < st.size; at += piece) {
      await fs.writeAt(path, at, buf.subarray(0, Math.min(piece, st.size - at)));
    }
  }
  await fs.unlink(path);
  return [`scrub ${path} (${st.size} bytes overwritten, then removed)`];
}

async function setHostname(fs: GuestFs, name: string, mtime?: Date): Promise<string[]> {
  const out: string[] = [];
  await ensureDir(fs, "/etc");
  await fs.writeFile("/etc/hostname", `${name}\n`, { mtime });
  out.push("write /etc/hostname");
  // Old-style Red Hat network config carries the name too.
  const net = await readTextOrNull(fs, "/etc/sysconfig/network");
  if (net !== null && /^HOSTNAME=/m.test(net)) {
    await fs.writeFile("/etc/sysconfig/network", net.replace(/^HOSTNAME=.*$/m, `HOSTNAME=${name}`), {
      mtime,
    });
    out.push("write /etc/sysconfig/network");
  }
  return out;
}

async function setTimezone(fs: GuestFs, zone: string): Promise<string[]> {
  const zoneFile = `/usr/share/zoneinfo/${zone}`;
  if ((await statOrNull(fs, zoneFile))?.type !== "file") {
    throw new CustomizeUsageError(`timezone ${zone}: ${zoneFile} does not exist in the guest`, zoneFile);
  }
  const out: string[] = [];
  if (await lstatOrNull(fs, "/etc/localtime")) await fs.unlink("/etc/localtime");
  await ensureDir(fs, "/etc");
  await fs.symlink(`../usr/share/zoneinfo/${zone}`, "/etc/localtime");
  out.push(`symlink /etc/localtime -> ../usr/share/zoneinfo/${zone}`);
  if ((await lstatOrNull(fs, "/etc/timezone"))?.type === "file") {
    await fs.writeFile("/etc/timezone", `${zone}\n`);
    out.push("write /etc/timezone");
  }
  return out;
}

async function sshInject(
  fs: GuestFs,
  op: Extract<CustomizeOp, { op: "ssh-inject" }>,
  ctx: CustomizeContext,
): Promise<string[]> {
  const id = await identity(fs, ctx);
  const user = id.user(op.user) ?? (/^\d+$/.test(op.user) ? id.user(Number(op.user)) : undefined);
  if (!user)
    throw new CustomizeUsageError(`--ssh-inject: no user "${op.user}" in the guest's passwd`, "/etc/passwd");
  const key = ("file" in op.key ? await readFile(op.key.file, "utf8") : op.key.string).trim();
  if (key === "" || key.includes("\n"))
    throw new CustomizeUsageError("--ssh-inject: the key must be a single line");
  const home = user.home;
  if ((await statOrNull(fs, home))?.type !== "directory") {
    throw new CustomizeUsageError(
      `--ssh-inject: home directory ${home} of ${user.name} does not exist`,
      home,
    );
  }
  const sshDir = `${home === "/" ? "" : home}/.ssh`;
  const out: string[] = [];
  if (!(await lstatOrNull(fs, sshDir))) {
    await fs.mkdir(sshDir, { mode: 0o700, uid: user.uid, gid: user.gid });
    out.push(`mkdir ${sshDir}`);
  }
  const ak = `${sshDir}/authorized_keys`;
  const old = (await readTextOrNull(fs, ak)) ?? "";
  if (old.split("\n").some((l) => l.trim() === key)) return [...out, `${ak}: key already present`];
  const sep = old.length > 0 && !old.endsWith("\n") ? "\n" : "";
  await fs.writeFile(ak, `${old}${sep}${key}\n`, {
    mode: 0o600,
    uid: user.uid,
    gid: user.gid,
    mtime: ctx.now,
  });
  return [...out, `append ${ak}`];
}

/** One line describing an operation (for --dry-run). */
export function describeOperation(op: CustomizeOp): string {
  const { op: name, ...rest } = publicOperation(op);
  return `${name} ${JSON.stringify(rest)}`;
}

/** An operation as it may be printed (--dry-run, --json): passwords never appear, an edit function is named. */
export function publicOperation(op: CustomizeOp): Record<string, unknown> & { op: CustomizeOpName } {
  if (op.op === "root-password" || op.op === "password")
    return { ...op, selector: describeSelector(op.selector) };
  if (op.op === "edit" && typeof op.expr !== "string") return { ...op, expr: "(function)" };
  return op;
}
