/**
 * `file_contexts.homedirs` expanded from the policy store's `homedir_template`, as libsemanage's
 * genhomedircon (`semodule -B`, `genhomedircon`) writes it — so that users whose homes the
 * shipped file lacks (a home root other than /home, a user added since the policy was built)
 * are labelled as the guest would label them after its next policy rebuild.
 *
 * Template lines (kept in file order, one list per kind; a line can be in several):
 * - starting `HOME_DIR`: per home directory — `HOME_DIR` → the user's home (`ROOT/[^/]+` for the
 *   generic user of each home root), `ROLE` → the user's prefix;
 * - starting `HOME_ROOT`: per home root, `HOME_ROOT` → the root, context kept;
 * - containing `%{USERNAME}` or `%{USERID}`: per user (`[^/]+` and `[0-9]+` for the generic one);
 * - containing `USER` (and neither of those): per user, `USER` → the login name.
 * Lines other than HOME_ROOT ones get the user's SELinux user (and, with MLS, its level) in
 * their context; `<<none>>` stays.
 *
 * Output: a fixed header; per home root (sorted): the generic user's HOME_DIR lines (under the
 * comment "Home Context for user user_u") and the HOME_ROOT lines; the generic user's
 * USERNAME/USERID and USER lines; then per login of `seusers` (other than `__default__`; sorted by
 * name, written in reverse) that passwd knows and whose home is not "/": a comment, its HOME_DIR,
 * USERNAME/USERID and USER lines.
 *
 * Home roots: `HOME=` of /etc/default/useradd and `LU_HOMEDIRECTORY=` of /etc/libuser.conf (else
 * /home), /export/home when it is a directory, and the parent of the home of each passwd user
 * with UID_MIN ≤ uid ≤ UID_MAX (/etc/login.defs, default 500–60000; `LU_UIDNUMBER` of libuser.conf
 * may lower the minimum) whose shell is listed in /etc/shells (`/sbin/nologin` excepted; a
 * built-in list without the file), skipping "/", homes one level deep and parents that a policy
 * spec of any or directory type already matches (its trailing `.+`, `.*`, `(/.*)?`, `/`
 * stripped; "conflicts with a file context" in semodule's warning).
 *
 * Not modelled (documented in the README): the validity check of each written context against the
 * binary policy (we keep every line: the template's types come from the same policy), users' MLS
 * levels other than s0 and homedir roles (both live in the binary policy; refpolicy and RHEL's
 * targeted policy give every user s0 and no homedir role), `%group` logins and semanage.conf's
 * `usepasswd`/`ignoredirs`.
 */

/** The inputs genhomedircon reads, as text (undefined: the file does not exist). */
export interface HomedirInputs {
  /** The store's homedir_template. */
  template: string;
  /** The store's seusers (`login:seuser[:range]` lines). */
  seusers?: string;
  /** The store's users_extra (`user NAME prefix PREFIX;` lines). */
  usersExtra?: string;
  passwd?: string;
  loginDefs?: string;
  useradd?: string;
  libuserConf?: string;
  shells?: string;
  /** Whether /export/home exists as a directory. */
  exportHomeIsDir?: boolean;
  /**
   * The policy's own specs (file_contexts and .local): a home root they claim is not one. A
   * function gives, per directory, a list holding at least the specs that could claim it.
   */
  policySpecs?:
    | ReadonlyArray<{ regex: string; mode: number }>
    | ((dir: string) => ReadonlyArray<{ regex: string; mode: number }>);
}

interface UserEntry {
  name: string;
  uid: string;
  sename: string;
  prefix: string;
  home: string;
  level: string;
}

const FALLBACK_NAME = "[^/]+";
const FALLBACK_UIDGID = "[0-9]+";
const DEFAULT_LOGIN = "__default__";
const DEFAULT_LEVEL = "s0";
const S_IFDIR = 0o040000;
const DEFAULT_SHELLS = [
  "/bin/csh",
  "/bin/tcsh",
  "/bin/ksh",
  "/bin/bsh",
  "/bin/ash",
  "/usr/bin/ksh",
  "/usr/bin/pdksh",
  "/bin/zsh",
  "/bin/sh",
  "/bin/bash",
];
const HEADER =
  "#\n#\n# User-specific file contexts, generated via libsemanage\n" +
  "# use semanage command to manage system users to change the file_context\n#\n#\n";
const userComment = (name: string) => `\n\n#\n# Home Context for user ${name}\n#\n\n`;

/** Lines as getline + "cut at the last newline" gives them. */
function lines(text: string): string[] {
  const out = text.split("\n");
  if (out.length > 0 && out[out.length - 1] === "") out.pop();
  return out;
}

/**
 * semanage_findval: the first line starting with `name` (no leading blanks skipped); its text
 * after the first `delim` (or after the first run of blanks when `delim` is undefined).
 */
export function findConfigValue(text: string | undefined, name: string, delim?: string): string | undefined {
  if (text === undefined) return undefined;
  for (const line of lines(text)) {
    if (!line.startsWith(name)) continue;
    if (delim !== undefined) {
      const i = line.indexOf(delim);
      return i < 0 ? "" : line.slice(i + delim.length);
    }
    const m = /[\f\r\t\v ]+/.exec(line);
    return m ? line.slice(m.index + m[0].length) : "";
  }
  return undefined;
}

/** C atoi: leading blanks, an optional sign, digits. */
function atoi(s: string): number {
  const m = /^[\t\n\v\f\r ]*([+-]?\d+)/.exec(s);
  return m ? Number.parseInt(m[1], 10) : 0;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  dir: string;
  shell: string;
}

function parsePasswd(text: string | undefined): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of lines(text ?? "")) {
    const f = line.split(":");
    if (f.length < 7 || !/^\d+$/.test(f[2]) || !/^\d+$/.test(f[3])) continue;
    out.push({ name: f[0], uid: Number(f[2]), gid: Number(f[3]), dir: f[5], shell: f[6] });
  }
  return out;
}

/** A home path without trailing slashes ("/" stays). */
function trimSlashes(dir: string): string {
  let end = dir.length;
  while (end > 1 && dir[end - 1] === "/") end--;
  return dir.slice(0, end);
}

/** Whether a policy spec claims `dir` (genhomedircon's fcontext_matches). */
function claimedByPolicy(dir: string, specs: HomedirInputs["policySpecs"]): boolean {
  for (const spec of (typeof specs === "function" ? specs(dir) : specs) ?? []) {
    if (spec.mode !== 0 && spec.mode !== S_IFDIR) continue;
    let expr = spec.regex;
    for (const tail of [".+", ".*", "(/.*)?", "/"])
      if (expr.endsWith(tail)) expr = expr.slice(0, -tail.length);
    let re: RegExp;
    try {
      // POSIX extended syntax; the policy's expressions use the common subset
      re = new RegExp(`^${expr}/*$`);
    } catch {
      continue;
    }
    if (re.test(dir)) return true;
  }
  return false;
}

/** The home roots genhomedircon writes, sorted. */
export function homeRoots(input: HomedirInputs): string[] {
  const roots: string[] = [];
  const push = (p: string) => {
    if (!roots.includes(p)) roots.push(p);
  };
  const home = findConfigValue(input.useradd, "HOME", "=");
  if (home) push(home);
  const lu = findConfigValue(input.libuserConf, "LU_HOMEDIRECTORY", "=");
  if (lu) push(lu);
  if (roots.length === 0) push("/home");
  if (input.exportHomeIsDir) push("/export/home");
  const shells =
    input.shells === undefined ? DEFAULT_SHELLS : lines(input.shells).filter((s) => s !== "/sbin/nologin");
  let minUid = 500;
  let maxUid = 60000;
  let minSet = false;
  const uidMin = findConfigValue(input.loginDefs, "UID_MIN");
  if (uidMin) {
    minUid = atoi(uidMin);
    minSet = true;
  }
  const uidMax = findConfigValue(input.loginDefs, "UID_MAX");
  if (uidMax) maxUid = atoi(uidMax);
  const luUid = findConfigValue(input.libuserConf, "LU_UIDNUMBER", "=");
  if (luUid) {
    const v = atoi(luUid);
    if (!minSet || v < minUid) minUid = v;
  }
  for (const pw of parsePasswd(input.passwd)) {
    if (pw.uid < minUid || pw.uid > maxUid || !shells.includes(pw.shell)) continue;
    const dir = trimSlashes(pw.dir);
    if (dir === "/" || dir.split("/").length - 1 <= 1) continue;
    const parent = dir.slice(0, dir.lastIndexOf("/"));
    if (roots.includes(parent)) continue;
    if (!claimedByPolicy(parent, input.policySpecs)) push(parent);
  }
  return roots.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The last whitespace-separated field of a line (its context), with its offset. */
function contextField(line: string): { at: number; text: string } | undefined {
  const m = /(\S+)\s*$/.exec(line);
  return m ? { at: m.index, text: m[1] } : undefined;
}

function replaceAll(line: string, pairs: ReadonlyArray<readonly [string, string]>): string {
  let out = line;
  for (const [from, to] of pairs) out = out.split(from).join(to);
  return out;
}

/** The line with its context given the user's SELinux user (and level); `<<none>>` kept. */
function withUser(line: string, user: UserEntry): string {
  const f = contextField(line);
  if (!f || f.text === "<<none>>") return line;
  const parts = f.text.split(":");
  if (parts.length < 3) return line;
  parts[0] = user.sename;
  // with MLS the range becomes the user's level
  const ctx = parts.length > 3 ? `${parts.slice(0, 3).join(":")}:${user.level}` : parts.join(":");
  // semanage_str_replace(old, new, line, 1): the first occurrence of the old context text
  const i = line.indexOf(f.text);
  return line.slice(0, i) + ctx + line.slice(i + f.text.length);
}

/** Parses seusers into (login, seuser) pairs in file order. */
function parseSeusers(text: string | undefined): Array<{ login: string; sename: string }> {
  const out: Array<{ login: string; sename: string }> = [];
  for (const raw of lines(text ?? "")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length >= 2 && f[0] !== "" && f[1] !== "") out.push({ login: f[0], sename: f[1] });
  }
  return out;
}

/** SELinux user → prefix, from users_extra. */
function parsePrefixes(text: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of (text ?? "").matchAll(/^\s*user\s+(\S+)\s+prefix\s+([^;\s]+)\s*;/gm)) out.set(m[1], m[2]);
  return out;
}

/** The text genhomedircon writes to file_contexts.homedirs for these inputs. */
export function expandHomedirTemplate(input: HomedirInputs): string {
  const tpl = lines(input.template);
  const homeDirTpl = tpl.filter((l) => l.startsWith("HOME_DIR"));
  const homeRootTpl = tpl.filter((l) => l.startsWith("HOME_ROOT"));
  const usernameTpl = tpl.filter((l) => l.includes("%{USERNAME}") || l.includes("%{USERID}"));
  const userTpl = tpl.filter(
    (l) => !(l.includes("%{USERNAME}") || l.includes("%{USERID}")) && l.includes("USER"),
  );
  if (!homeDirTpl.length && !homeRootTpl.length && !usernameTpl.length && !userTpl.length) return "";
  const prefixes = parsePrefixes(input.usersExtra);
  const seusers = parseSeusers(input.seusers);
  let out = HEADER;
  const def = seusers.find((s) => s.login === DEFAULT_LOGIN);
  // without a __default__ mapping libsemanage has no generic user: nothing more is written
  if (!def) return out;
  const fallback: UserEntry = {
    name: FALLBACK_NAME,
    uid: FALLBACK_UIDGID,
    sename: def.sename,
    prefix: prefixes.get(def.sename) ?? "user",
    home: "",
    level: DEFAULT_LEVEL,
  };
  const homeDirLines = (u: UserEntry) =>
    homeDirTpl.map((l) =>
      withUser(
        replaceAll(l, [
          ["HOME_DIR", u.home],
          ["ROLE", u.prefix],
        ]),
        u,
      ),
    );
  const usernameLines = (u: UserEntry) =>
    usernameTpl.map((l) =>
      withUser(
        replaceAll(l, [
          ["%{USERNAME}", u.name],
          ["%{USERID}", u.uid],
          ["ROLE", u.prefix],
        ]),
        u,
      ),
    );
  const userLines = (u: UserEntry) =>
    userTpl.map((l) =>
      withUser(
        replaceAll(l, [
          ["USER", u.name],
          ["ROLE", u.prefix],
        ]),
        u,
      ),
    );
  const write = (ls: string[]) => {
    for (const l of ls) out += `${l}\n`;
  };
  if (homeDirTpl.length || homeRootTpl.length) {
    for (const root of homeRoots(input)) {
      out += userComment("user_u");
      write(homeDirLines({ ...fallback, home: `${root}/${FALLBACK_NAME}` }));
      write(homeRootTpl.map((l) => replaceAll(l, [["HOME_ROOT", root]])));
    }
  }
  if (usernameTpl.length || userTpl.length) {
    write(usernameLines(fallback));
    write(userLines(fallback));
    const passwd = parsePasswd(input.passwd);
    const logins = seusers
      .filter((s) => s.login !== DEFAULT_LOGIN && !s.login.startsWith("%"))
      .sort((a, b) => (a.login < b.login ? -1 : a.login > b.login ? 1 : 0));
    const users: UserEntry[] = [];
    for (const s of logins) {
      const pw = passwd.find((p) => p.name === s.login);
      if (!pw) continue;
      const home = trimSlashes(pw.dir);
      if (home === "/") continue;
      users.unshift({
        name: s.login,
        uid: String(pw.uid),
        sename: s.sename,
        prefix: prefixes.get(s.sename) ?? "user",
        home,
        level: DEFAULT_LEVEL,
      });
    }
    for (const u of users) {
      out += userComment(u.name);
      write(homeDirLines(u));
      write(usernameLines(u));
      write(userLines(u));
    }
  }
  return out;
}
