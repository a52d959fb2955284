/**
 * Guest users and groups, read from the guest's own /etc/passwd and /etc/group (never the host's),
 * and resolution of `USER[:GROUP]` specs given as names or numbers.
 */
import { ImgpatchError } from "@imgpatch/disk";
import { readTextOrNull } from "./fs-util.js";
import type { GuestFs } from "./guest-fs.js";

export interface GuestUser {
  name: string;
  uid: number;
  gid: number;
  gecos: string;
  home: string;
  shell: string;
}

export interface GuestGroup {
  name: string;
  gid: number;
  members: string[];
}

/** A user or group name or number could not be resolved in the guest. */
export class GuestIdentityError extends ImgpatchError {
  constructor(message: string, file?: string) {
    super("EIDENTITY", message, { file });
  }
}

const ID_MAX = 0xffffffff;

function parseId(text: string): number | null {
  if (!/^[0-9]+$/.test(text)) return null;
  const n = Number(text);
  return Number.isSafeInteger(n) && n < ID_MAX ? n : null;
}

/** Parses passwd(5) text; malformed lines are skipped (and reported through `warnings`). */
export function parsePasswd(text: string, warnings: string[] = []): GuestUser[] {
  const users: GuestUser[] = [];
  text.split("\n").forEach((line, i) => {
    if (line === "" || line.startsWith("#")) return;
    // NIS compat entries (+, -) carry no local identity.
    if (line.startsWith("+") || line.startsWith("-")) return;
    const f = line.split(":");
    const uid = parseId(f[2] ?? "");
    const gid = parseId(f[3] ?? "");
    if (f.length < 7 || f[0] === "" || uid === null || gid === null) {
      warnings.push(`passwd line ${i + 1} is malformed`);
      return;
    }
    users.push({ name: f[0], uid, gid, gecos: f[4], home: f[5], shell: f.slice(6).join(":") });
  });
  return users;
}

/** Parses group(5) text. */
export function parseGroup(text: string, warnings: string[] = []): GuestGroup[] {
  const groups: GuestGroup[] = [];
  text.split("\n").forEach((line, i) => {
    if (line === "" || line.startsWith("#") || line.startsWith("+") || line.startsWith("-")) return;
    const f = line.split(":");
    const gid = parseId(f[2] ?? "");
    if (f.length < 4 || f[0] === "" || gid === null) {
      warnings.push(`group line ${i + 1} is malformed`);
      return;
    }
    groups.push({ name: f[0], gid, members: f[3] === "" ? [] : f[3].split(",") });
  });
  return groups;
}

export class GuestIdentity {
  readonly users: GuestUser[];
  readonly groups: GuestGroup[];
  readonly warnings: string[];

  constructor(users: GuestUser[], groups: GuestGroup[], warnings: string[] = []) {
    this.users = users;
    this.groups = groups;
    this.warnings = warnings;
  }

  /** Reads /etc/passwd and /etc/group from the guest (absent files give an empty database). */
  static async load(fs: GuestFs): Promise<GuestIdentity> {
    const warnings: string[] = [];
    const passwd = (await readTextOrNull(fs, "/etc/passwd")) ?? "";
    const group = (await readTextOrNull(fs, "/etc/group")) ?? "";
    return new GuestIdentity(parsePasswd(passwd, warnings), parseGroup(group, warnings), warnings);
  }

  /** First entry wins, as getpwnam does. */
  user(nameOrId: string | number): GuestUser | undefined {
    if (typeof nameOrId === "number") return this.users.find((u) => u.uid === nameOrId);
    return this.users.find((u) => u.name === nameOrId);
  }

  group(nameOrId: string | number): GuestGroup | undefined {
    if (typeof nameOrId === "number") return this.groups.find((g) => g.gid === nameOrId);
    return this.groups.find((g) => g.name === nameOrId);
  }

  /** Numeric uid for a name or number; numbers need not exist in passwd (chown accepts them too). */
  uidOf(spec: string): number {
    const n = parseId(spec);
    if (n !== null) return n;
    const u = this.user(spec);
    if (!u) throw new GuestIdentityError(`no user "${spec}" in the guest's passwd`, "/etc/passwd");
    return u.uid;
  }

  gidOf(spec: string): number {
    const n = parseId(spec);
    if (n !== null) return n;
    const g = this.group(spec);
    if (!g) throw new GuestIdentityError(`no group "${spec}" in the guest's group file`, "/etc/group");
    return g.gid;
  }

  /**
   * Resolves "USER", "USER:GROUP", "USER:" (the user's login group, as chown does), ":GROUP" or
   * "USER.GROUP" is NOT accepted (ambiguous with dotted names). Returns -1 for a side left unchanged.
   */
  resolveOwner(spec: string): { uid: number; gid: number } {
    const colon = spec.indexOf(":");
    const userPart = colon < 0 ? spec : spec.slice(0, colon);
    const groupPart = colon < 0 ? undefined : spec.slice(colon + 1);
    if (userPart === "" && (groupPart === undefined || groupPart === "")) {
      throw new GuestIdentityError(`empty owner spec "${spec}"`);
    }
    const uid = userPart === "" ? -1 : this.uidOf(userPart);
    let gid = -1;
    if (groupPart !== undefined && groupPart !== "") gid = this.gidOf(groupPart);
    else if (groupPart === "" && userPart !== "") {
      const u = parseId(userPart) === null ? this.user(userPart) : this.user(uid);
      if (!u) throw new GuestIdentityError(`user "${userPart}" has no passwd entry to take a group from`);
      gid = u.gid;
    }
    return { uid, gid };
  }

  /** Home directory from passwd (used by --ssh-inject). */
  homeOf(spec: string): string {
    const n = parseId(spec);
    const u = n === null ? this.user(spec) : this.user(n);
    if (!u) throw new GuestIdentityError(`no user "${spec}" in the guest's passwd`, "/etc/passwd");
    return u.home;
  }
}
