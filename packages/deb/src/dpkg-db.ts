/**
 * Records an unpacked package in the guest's dpkg database exactly as `dpkg --unpack` does, so the
 * first boot's `dpkg --configure -a` finishes the job:
 *
 *   status            the control stanza with "Status: install ok unpacked", fields in dpkg's order,
 *                     "Conffiles:" with the hash "newconffile" (never configured), packages sorted
 *                     by name as dpkg writes them
 *   info/PKG.list     every package path, "/." first
 *   info/PKG.md5sums  the shipped one, or generated ("md5  path" without the leading "/")
 *   info/PKG.*        every other control member (conffiles, maintainer scripts 0755, triggers...)
 *   triggers/File     "path package" for each file-trigger interest; triggers/NAME for explicit ones
 *   status of others  a package interested in a path the new one ships, or in a trigger its
 *                     triggers file activates, becomes "triggers-pending" with Triggers-Pending set
 *
 * Multi-Arch: same packages use "PKG:ARCH" in info file names, as dpkg does.
 */
import type { PkgTarget } from "@imgpatch/pkgkit";
import { Stanza } from "./control.js";
import type { DebFile } from "./deb-file.js";
import { ensureGuestDir, readGuestText, writeGuestFile } from "./guest-io.js";
import { DPKG_ADMIN, type DpkgState, INFO_DIR, STATUS_FILE } from "./status.js";
import type { UnpackResult } from "./unpack.js";

export const TRIGGERS_DIR = `${DPKG_ADMIN}/triggers`;
const SCRIPTS = new Set(["preinst", "postinst", "prerm", "postrm", "config"]);

/** dpkg's status field order (lib/dpkg/parse.c's field table); other fields follow in package order. */
const FIELD_ORDER = [
  "Package",
  "Essential",
  "Protected",
  "Status",
  "Priority",
  "Section",
  "Installed-Size",
  "Origin",
  "Maintainer",
  "Bugs",
  "Architecture",
  "Multi-Arch",
  "Source",
  "Version",
  "Config-Version",
  "Replaces",
  "Provides",
  "Depends",
  "Pre-Depends",
  "Recommends",
  "Suggests",
  "Breaks",
  "Conflicts",
  "Enhances",
  "Conffiles",
  "Description",
  "Triggers-Pending",
  "Triggers-Awaited",
];
const RANK = new Map(FIELD_ORDER.map((f, i) => [f.toLowerCase(), i]));

/** Fields of a .deb's control file that dpkg does not keep in the status database. */
const NOT_IN_STATUS = new Set(["filename", "size", "md5sum", "sha256", "msdos-filename"]);

/** The name dpkg gives the package's info files. */
export function infoName(deb: { package: string; architecture: string; control: Stanza }): string {
  return deb.control.get("Multi-Arch") === "same" ? `${deb.package}:${deb.architecture}` : deb.package;
}

/** The status stanza of a freshly unpacked package. */
export function unpackedStanza(deb: DebFile): Stanza {
  const fields = new Map<string, [string, string]>();
  for (const [n, v] of deb.control.fields)
    if (!NOT_IN_STATUS.has(n.toLowerCase())) fields.set(n.toLowerCase(), [n, v]);
  fields.set("status", ["Status", "install ok unpacked"]);
  if (deb.conffiles.length > 0) {
    fields.set("conffiles", ["Conffiles", `\n${deb.conffiles.map((c) => ` ${c} newconffile`).join("\n")}`]);
  }
  return inDpkgOrder([...fields.values()]);
}

/** A stanza with dpkg's known fields first, in its order, then the others as they came. */
function inDpkgOrder(fields: [string, string][]): Stanza {
  const known = fields.filter(([n]) => RANK.has(n.toLowerCase()));
  known.sort((a, b) => (RANK.get(a[0].toLowerCase()) ?? 0) - (RANK.get(b[0].toLowerCase()) ?? 0));
  const out = new Stanza();
  out.line = 0;
  for (const [n, v] of known) out.set(n, v);
  for (const [n, v] of fields) if (!RANK.has(n.toLowerCase())) out.set(n, v);
  return out;
}

/** Serializes the status database (stanzas sorted by package name, then architecture). */
export function formatStatus(stanzas: Stanza[]): string {
  const key = (s: Stanza) => `${s.get("Package")}\0${s.get("Architecture") ?? ""}`;
  return [...stanzas]
    .sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0))
    .map((s) => `${inDpkgOrder(s.fields).format()}\n`)
    .join("");
}

interface TriggerDirectives {
  interests: { name: string; noawait: boolean }[];
  activates: { name: string; noawait: boolean }[];
}

export function parseTriggers(text: string): TriggerDirectives {
  const out: TriggerDirectives = { interests: [], activates: [] };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") continue;
    const [directive, name] = line.split(/\s+/);
    if (!name) continue;
    const noawait = directive.endsWith("-noawait");
    if (directive.startsWith("interest")) out.interests.push({ name, noawait });
    else if (directive.startsWith("activate")) out.activates.push({ name, noawait });
  }
  return out;
}

/** "path package[/noawait]" lines of triggers/File. */
function parseFileTriggers(text: string): { path: string; pkg: string; noawait: boolean }[] {
  const out: { path: string; pkg: string; noawait: boolean }[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\S+)\s+(\S+)$/.exec(line.trim());
    if (m) out.push({ path: m[1], pkg: m[2].replace(/\/noawait$/, ""), noawait: m[2].endsWith("/noawait") });
  }
  return out;
}

/** The activating package waits for `pkg` to process the trigger (dpkg's Triggers-Awaited). */
function addAwaited(stanza: Stanza, pkg: string): void {
  const awaited = (stanza.get("Triggers-Awaited") ?? "").split(/\s+/).filter((x) => x !== "");
  if (!awaited.includes(pkg)) awaited.push(pkg);
  stanza.set("Triggers-Awaited", awaited.join(" "));
}

/** Marks `pkg` (if installed) as having `trigger` pending; true when it is now pending there. */
function addPending(state: DpkgState, pkg: string, trigger: string): boolean {
  const name = pkg.replace(/:.*$/, "");
  let changed = false;
  for (const s of state.byName.get(name) ?? []) {
    const st = (s.get("Status") ?? "").split(/\s+/);
    if (st[2] !== "installed" && st[2] !== "triggers-pending" && st[2] !== "triggers-awaited") continue;
    const pending = (s.get("Triggers-Pending") ?? "").split(/\s+/).filter((x) => x !== "");
    if (!pending.includes(trigger)) {
      pending.push(trigger);
      s.set("Triggers-Pending", pending.join(" "));
    }
    changed = true;
    if (st[2] === "installed") s.set("Status", `${st[0]} ${st[1]} triggers-pending`);
  }
  return changed;
}

/**
 * Writes the package's database entries and updates `state` (the caller writes the status file once
 * per transaction with `writeStatus`).
 */
export async function recordUnpacked(
  target: PkgTarget,
  state: DpkgState,
  deb: DebFile,
  unpacked: UnpackResult,
): Promise<void> {
  await ensureGuestDir(target, INFO_DIR);
  // The database layout version dpkg ≥ 1.16 writes on first use.
  if (!(await target.lstat(`${INFO_DIR}/format`))) await writeGuestFile(target, `${INFO_DIR}/format`, "1\n");
  const base = `${INFO_DIR}/${infoName(deb)}`;
  await writeGuestFile(target, `${base}.list`, unpacked.list.map((p) => `${p}\n`).join(""));
  const md5sums = deb.controlFiles.get("md5sums");
  if (md5sums) await writeGuestFile(target, `${base}.md5sums`, md5sums);
  else if (unpacked.md5.size > 0) {
    await writeGuestFile(
      target,
      `${base}.md5sums`,
      [...unpacked.md5].map(([p, h]) => `${h}  ${p}\n`).join(""),
    );
  }
  for (const [name, bytes] of deb.controlFiles) {
    if (name === "md5sums") continue;
    await writeGuestFile(target, `${base}.${name}`, bytes, SCRIPTS.has(name) ? 0o755 : 0o644);
  }

  // The package replaces any earlier stanza of the same name and architecture.
  const stanza = unpackedStanza(deb);
  const same = (s: Stanza) =>
    s.get("Package") === deb.package && (s.get("Architecture") ?? "") === deb.architecture;
  state.stanzas = state.stanzas.filter((s) => !same(s));
  state.stanzas.push(stanza);
  state.byName.set(deb.package, [...(state.byName.get(deb.package) ?? []).filter((s) => !same(s)), stanza]);

  // Triggers: interests the package declares, and triggers it activates.
  await ensureGuestDir(target, TRIGGERS_DIR);
  const trig = deb.controlFiles.get("triggers");
  const directives = trig
    ? parseTriggers(Buffer.from(trig).toString("utf8"))
    : { interests: [], activates: [] };
  const fileTriggersPath = `${TRIGGERS_DIR}/File`;
  let fileTriggers = (await readGuestText(target, fileTriggersPath)) ?? "";
  for (const i of directives.interests) {
    const who = `${infoName(deb)}${i.noawait ? "/noawait" : ""}`;
    if (i.name.startsWith("/")) {
      fileTriggers += `${i.name} ${who}\n`;
    } else {
      const p = `${TRIGGERS_DIR}/${i.name}`;
      const cur = (await readGuestText(target, p)) ?? "";
      if (!cur.split("\n").includes(who)) await writeGuestFile(target, p, `${cur}${who}\n`);
    }
  }
  if (directives.interests.some((i) => i.name.startsWith("/")))
    await writeGuestFile(target, fileTriggersPath, fileTriggers);
  const activate = (pkg: string, trigger: string, noawait: boolean) => {
    if (addPending(state, pkg, trigger) && !noawait) addAwaited(stanza, pkg);
  };
  for (const a of directives.activates) {
    const interested = (await readGuestText(target, `${TRIGGERS_DIR}/${a.name}`)) ?? "";
    for (const raw of interested.split("\n")) {
      const line = raw.trim();
      if (line !== "")
        activate(line.replace(/\/noawait$/, ""), a.name, a.noawait || line.endsWith("/noawait"));
    }
  }
  for (const { path, pkg, noawait } of parseFileTriggers(fileTriggers)) {
    if (pkg.replace(/:.*$/, "") === deb.package) continue;
    if (unpacked.list.some((p) => p === path || p.startsWith(`${path}/`))) activate(pkg, path, noawait);
  }
}

/** Writes the status file (and status-old, the previous version, as dpkg keeps it). */
export async function writeStatus(target: PkgTarget, state: DpkgState): Promise<void> {
  const old = await readGuestText(target, STATUS_FILE);
  if (old !== undefined) await writeGuestFile(target, `${STATUS_FILE}-old`, old);
  await writeGuestFile(target, STATUS_FILE, formatStatus(state.stanzas));
}
