/**
 * What cannot happen at build time, and what can be done statically instead.
 *
 * First boot: one script, run by the guest's first-boot queue before units that need the packages:
 * the deferred `preinst install` of each package that has one (a preinst cannot run before its
 * unpack here, so it runs after it, before configuration), then `dpkg --configure -a` — dpkg's own
 * order, postinst scripts and pending triggers, conffiles settled (a locally modified one is kept,
 * the package's version left beside it) — then `dpkg --audit`, failing the script when it reports.
 *
 * Statically at build time: system users and groups the maintainer scripts create with
 * `adduser --system [--group] NAME`, `addgroup --system NAME`, `useradd -r NAME`, `groupadd -r NAME`
 * get their passwd/group/shadow/gshadow entries now (ids from 100..999 as adduser.conf's system
 * range, the first free one), so files the package ships owned by them get the right owner and the
 * scripts find them already there (adduser --system is a no-op for an existing system user).
 */
import type { PkgTarget } from "@imgpatch/pkgkit";
import type { DebFile } from "./deb-file.js";
import { readGuestText, writeGuestFile } from "./guest-io.js";

export interface SystemAccount {
  kind: "user" | "group";
  name: string;
  /** For users: home directory and whether a same-named group goes with it. */
  home?: string;
  withGroup?: boolean;
  /** The package whose script asks for it. */
  package: string;
}

const NAME = "[a-z_][a-z0-9_-]*\\$?";

/** Finds system accounts a maintainer script creates (the common, statically safe forms). */
export function scriptAccounts(script: string, pkg: string): SystemAccount[] {
  const out: SystemAccount[] = [];
  for (const raw of script.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    const words = line.split(/\s+/);
    const cmd = words.findIndex((w) => /^(adduser|addgroup|useradd|groupadd)$/.test(w.replace(/^.*\//, "")));
    if (cmd < 0) continue;
    const tool = words[cmd].replace(/^.*\//, "");
    const args = words.slice(cmd + 1).map((w) => w.replace(/^["']|["';]$/g, ""));
    const system = args.includes("--system") || args.includes("-r") || args.includes("--system-group");
    if (!system) continue;
    const positional: string[] = [];
    let home: string | undefined;
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a === "--home" || a === "-d" || a === "--home-dir") home = args[++i];
      else if (
        [
          "--shell",
          "-s",
          "--gecos",
          "-c",
          "--comment",
          "--uid",
          "-u",
          "--gid",
          "-g",
          "--ingroup",
          "--firstuid",
          "--lastuid",
          "-G",
          "--groups",
          "-K",
        ].includes(a)
      )
        i++;
      else if (!a.startsWith("-")) positional.push(a);
      if (a === "&&" || a === "||" || a === "|" || a === ";") break;
    }
    const name = positional[0];
    if (!name || !new RegExp(`^${NAME}$`).test(name) || name.includes("$")) continue;
    if (tool === "addgroup" || tool === "groupadd") out.push({ kind: "group", name, package: pkg });
    else if (tool === "adduser" && positional.length === 2)
      continue; // "adduser USER GROUP": membership
    else
      out.push({
        kind: "user",
        name,
        home,
        withGroup: args.includes("--group") || (tool === "useradd" && args.includes("-U")),
        package: pkg,
      });
  }
  return out;
}

function ids(text: string): Set<number> {
  const s = new Set<number>();
  for (const l of text.split("\n")) {
    const f = l.split(":");
    if (f.length >= 3 && /^\d+$/.test(f[2])) s.add(Number(f[2]));
  }
  return s;
}

function names(text: string): Set<string> {
  return new Set(
    text
      .split("\n")
      .map((l) => l.split(":")[0])
      .filter((n) => n !== ""),
  );
}

const withNewline = (t: string) => (t === "" || t.endsWith("\n") ? t : `${t}\n`);

/** Adds the accounts to the guest's databases; returns lines describing what was added. */
export async function createSystemAccounts(target: PkgTarget, accounts: SystemAccount[]): Promise<string[]> {
  if (accounts.length === 0) return [];
  let passwd = withNewline((await readGuestText(target, "/etc/passwd")) ?? "");
  let group = withNewline((await readGuestText(target, "/etc/group")) ?? "");
  let shadow = await readGuestText(target, "/etc/shadow");
  let gshadow = await readGuestText(target, "/etc/gshadow");
  const out: string[] = [];
  // adduser --system takes the first free id of FIRST_SYSTEM_UID..LAST_SYSTEM_UID (100..999).
  const firstFree = (used: Set<number>) => {
    for (let i = 100; i <= 999; i++) if (!used.has(i)) return i;
    return undefined;
  };
  const addGroup = (name: string, gid?: number) => {
    if (names(group).has(name))
      return ids(
        group
          .split("\n")
          .filter((l) => l.startsWith(`${name}:`))
          .join("\n"),
      )
        .values()
        .next().value as number;
    const g = gid !== undefined && !ids(group).has(gid) ? gid : firstFree(ids(group));
    if (g === undefined) return undefined;
    group += `${name}:x:${g}:\n`;
    if (gshadow !== undefined) gshadow = `${withNewline(gshadow)}${name}:!::\n`;
    out.push(`group ${name} (gid ${g})`);
    return g;
  };
  for (const a of accounts) {
    if (a.kind === "group") {
      addGroup(a.name);
      continue;
    }
    if (names(passwd).has(a.name)) continue;
    const uid = firstFree(new Set([...ids(passwd)]));
    if (uid === undefined) continue;
    const gid = a.withGroup
      ? addGroup(a.name, uid)
      : (ids(
          group
            .split("\n")
            .filter((l) => l.startsWith("nogroup:"))
            .join("\n"),
        )
          .values()
          .next().value ?? 65534);
    if (gid === undefined) continue;
    passwd += `${a.name}:x:${uid}:${gid}::${a.home ?? "/nonexistent"}:/usr/sbin/nologin\n`;
    if (shadow !== undefined)
      shadow = `${withNewline(shadow)}${a.name}:*:${Math.floor(Date.now() / 86_400_000)}:0:99999:7:::\n`;
    out.push(`user ${a.name} (uid ${uid}, gid ${gid}) for ${a.package}`);
  }
  await writeGuestFile(target, "/etc/passwd", passwd);
  await writeGuestFile(target, "/etc/group", group);
  if (shadow !== undefined) await writeGuestFile(target, "/etc/shadow", shadow, 0o640);
  if (gshadow !== undefined) await writeGuestFile(target, "/etc/gshadow", gshadow, 0o640);
  return out;
}

/** Accounts the packages' preinst/postinst scripts create. */
export function packagesAccounts(debs: DebFile[]): SystemAccount[] {
  const out: SystemAccount[] = [];
  for (const d of debs) {
    for (const s of ["preinst", "postinst"]) {
      const body = d.controlFiles.get(s);
      if (body) out.push(...scriptAccounts(Buffer.from(body).toString("utf8"), d.package));
    }
  }
  return out;
}

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The first-boot script that finishes the installation with dpkg itself. */
export function configureScript(
  packages: { package: string; infoName: string; hasPreinst: boolean; version: string }[],
): string {
  const pre = packages
    .filter((p) => p.hasPreinst)
    .map(
      (p) =>
        // The environment dpkg gives maintainer scripts: dpkg-maintscript-helper needs it.
        `DPKG_MAINTSCRIPT_PACKAGE=${q(p.package)} DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1 DPKG_MAINTSCRIPT_NAME=preinst DPKG_MAINTSCRIPT_ARCH=${p.infoName.includes(":") ? q(p.infoName.slice(p.infoName.indexOf(":") + 1)) : '"$arch"'} DPKG_ADMINDIR="$root"/var/lib/dpkg DPKG_ROOT="$root" "$root"/var/lib/dpkg/info/${q(`${p.infoName}.preinst`)} install || { echo "imgpatch: preinst of ${p.package} failed" >&2; exit 1; }`,
    );
  return `#!/bin/sh
# imgpatch: configure ${packages.length} packages unpacked at build time (${packages.map((p) => p.package).join(" ")})
set -u
root="\${IMGPATCH_FIRSTBOOT_ROOT:-}"
export DEBIAN_FRONTEND=noninteractive
arch=$(dpkg --print-architecture)
# Deferred preinst scripts (they could not run before their unpack at build time).
${pre.join("\n")}
dpkg \${root:+--root="$root"} --force-confdef --force-confold --configure -a || exit 1
audit=$(dpkg \${root:+--root="$root"} --audit)
if [ -n "$audit" ]; then
  echo "imgpatch: dpkg --audit after configuring:" >&2
  echo "$audit" >&2
  exit 1
fi
`;
}
