/**
 * `systemctl enable|disable|mask|unmask` as pure symlink edits on a guest filesystem, matching what
 * `systemctl --root=GUEST` writes: links go into /etc/systemd/system (never /run), their targets are
 * the absolute guest path of the unit file as found on the unit search path, [Install] WantedBy= →
 * `<target>.wants/`, RequiredBy= → `.requires/`, UpheldBy= → `.upholds/`, Alias= → a link named after
 * the alias, Also= → the listed units are processed too, templates take DefaultInstance= unless an
 * instance is named, and mask links `/etc/systemd/system/<unit>` to /dev/null.
 */
import { ImgpatchError } from "@imgpatch/disk";
import { ensureDir, lstatOrNull, readTextOrNull, statOrNull } from "./fs-util.js";
import { type GuestFs, isGuestError } from "./guest-fs.js";
import { guestBasename, guestDirname } from "./paths.js";
import { parseUnitFile, type UnitFile, unitList, unitValue } from "./systemd-unit.js";

export const SYSTEM_CONFIG_DIR = "/etc/systemd/system";

/**
 * The system unit search path of a systemd build, minus /run (never written, empty in an image).
 * "merged": systemd built without split-usr (Fedora/RHEL/CentOS, Debian ≥ 13, current upstream).
 * "split-usr": Debian ≤ 12 / Ubuntu < 24.04 builds, which search /lib/systemd/system before /usr/lib.
 */
export const UNIT_SEARCH_PATHS = {
  merged: [
    "/etc/systemd/system.control",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
  ],
  "split-usr": [
    "/etc/systemd/system.control",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
  ],
} as const;

export type UnitLayout = keyof typeof UNIT_SEARCH_PATHS;

export interface SystemdInstallOptions {
  /** Unit search path (default: detected from the guest, see detectUnitLayout). */
  searchPath?: readonly string[];
  /** Replace conflicting symlinks instead of failing (systemctl --force). */
  force?: boolean;
}

export interface SymlinkChange {
  path: string;
  target: string;
}

export interface InstallResult {
  created: SymlinkChange[];
  /** Links already present with the right target. */
  unchanged: SymlinkChange[];
  removed: string[];
  warnings: string[];
}

/** systemctl would refuse (missing unit, conflicting link, masked unit, bad [Install] name...). */
export class SystemdInstallError extends ImgpatchError {
  constructor(message: string, file?: string) {
    super("ESYSTEMD", message, { file });
  }
}

const UNIT_TYPES = [
  "service",
  "socket",
  "target",
  "device",
  "mount",
  "automount",
  "swap",
  "timer",
  "path",
  "slice",
  "scope",
];
const NAME_RE = new RegExp(`^([A-Za-z0-9:_.\\\\-]+?)(@([A-Za-z0-9:_.\\\\-]*))?\\.(${UNIT_TYPES.join("|")})$`);

export interface UnitName {
  name: string;
  prefix: string;
  /** undefined: not a template; "": a template without instance; otherwise the instance. */
  instance: string | undefined;
  type: string;
}

export function parseUnitName(name: string): UnitName {
  const m = NAME_RE.exec(name);
  if (!m || name.length > 255) throw new SystemdInstallError(`invalid unit name "${name}"`);
  return { name, prefix: m[1], instance: m[2] === undefined ? undefined : m[3], type: m[4] };
}

function templateOf(u: UnitName): string {
  return `${u.prefix}@.${u.type}`;
}

/** A template name listed by an instance takes the instance (foo@.target listed by bar@x → foo@x.target). */
function instantiate(listed: UnitName, source: UnitName): UnitName {
  if (listed.instance === "" && source.instance) {
    return parseUnitName(`${listed.prefix}@${source.instance}.${listed.type}`);
  }
  return listed;
}

/** Chooses the search path of the systemd the guest carries (see UNIT_SEARCH_PATHS). */
export async function detectUnitLayout(fs: GuestFs): Promise<UnitLayout> {
  const osRelease =
    (await readTextOrNull(fs, "/etc/os-release")) ?? (await readTextOrNull(fs, "/usr/lib/os-release"));
  if (osRelease) {
    const field = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?$`, "m").exec(osRelease)?.[1] ?? "";
    const id = field("ID");
    const version = Number.parseFloat(field("VERSION_ID"));
    if (id === "debian" && Number.isFinite(version) && version <= 12) return "split-usr";
    if (id === "ubuntu" && Number.isFinite(version) && version < 24.04) return "split-usr";
  }
  // A real /lib directory (not the merged-usr symlink) with units in it: an old split-usr layout.
  const lib = await lstatOrNull(fs, "/lib");
  if (lib?.type === "directory" && (await statOrNull(fs, "/lib/systemd/system"))?.type === "directory") {
    return "split-usr";
  }
  return "merged";
}

interface FoundUnit {
  /** Absolute guest path where the unit file was found (what links point to). */
  path: string;
  unit: UnitFile | null;
  masked: boolean;
}

async function searchPathFor(fs: GuestFs, options: SystemdInstallOptions): Promise<readonly string[]> {
  return options.searchPath ?? UNIT_SEARCH_PATHS[await detectUnitLayout(fs)];
}

/** Finds a unit file: the exact name first, then (for an instance) its template, per search dir order. */
async function findUnit(fs: GuestFs, name: UnitName, search: readonly string[]): Promise<FoundUnit | null> {
  const candidates = [name.name];
  if (name.instance) candidates.push(templateOf(name));
  for (const candidate of candidates) {
    for (const dir of search) {
      const path = `${dir}/${candidate}`;
      const l = await lstatOrNull(fs, path);
      if (!l) continue;
      if (l.type === "symlink") {
        const target = await fs.readlink(path);
        if (target === "/dev/null") return { path, unit: null, masked: true };
      }
      const st = await statOrNull(fs, path);
      if (!st) continue; // dangling link: systemd skips it
      if (st.type !== "file") continue;
      if (st.size === 0) return { path, unit: null, masked: true };
      const text = new TextDecoder().decode(await fs.readFile(path));
      return { path, unit: parseUnitFile(text, path), masked: false };
    }
  }
  return null;
}

/** Expands the specifiers systemctl allows in [Install] (a subset of systemd.unit(5) specifiers). */
function expandSpecifiers(value: string, u: UnitName, file: string): string {
  return value.replace(/%(.)/g, (_, c: string) => {
    switch (c) {
      case "%":
        return "%";
      case "n":
        return u.name;
      case "N":
        return u.name.slice(0, -(u.type.length + 1));
      case "p":
        return u.prefix;
      case "P":
        return u.prefix;
      case "i":
      case "I":
        return u.instance ?? "";
      case "j":
        return u.prefix.slice(u.prefix.lastIndexOf("-") + 1);
      default:
        throw new SystemdInstallError(`specifier %${c} in [Install] is not supported`, file);
    }
  });
}

interface PlannedLink {
  path: string;
  target: string;
}

interface InstallPlan {
  links: PlannedLink[];
  /** Names and unit paths whose links `disable` removes. */
  names: Set<string>;
  paths: Set<string>;
  warnings: string[];
}

async function planInstall(
  fs: GuestFs,
  unitName: string,
  search: readonly string[],
  plan: InstallPlan,
  seen: Set<string>,
  forDisable: boolean,
): Promise<void> {
  if (seen.has(unitName)) return;
  seen.add(unitName);
  const u = parseUnitName(unitName);
  const found = await findUnit(fs, u, search);
  if (!found)
    throw new SystemdInstallError(`unit ${unitName} not found on the unit search path (${search.join(":")})`);
  if (found.masked) {
    // systemctl disable leaves a masked unit's links alone (checked against systemctl 252).
    if (forDisable) {
      plan.warnings.push(`unit ${unitName} is masked: nothing disabled`);
      return;
    }
    throw new SystemdInstallError(`unit ${unitName} is masked`, found.path);
  }
  plan.names.add(unitName);
  plan.paths.add(found.path);
  const unit = found.unit!;
  // The instance enabled: an explicit one, else DefaultInstance= for a template.
  let effective = u;
  if (u.instance === "") {
    const def = unitValue(unit, "Install", "DefaultInstance");
    if (def) effective = parseUnitName(`${u.prefix}@${def}.${u.type}`);
  }
  const wanted: Array<[string, string]> = [
    ["WantedBy", ".wants"],
    ["RequiredBy", ".requires"],
    ["UpheldBy", ".upholds"],
  ];
  let any = false;
  for (const [key, suffix] of wanted) {
    for (const raw of unitList(unit, "Install", key)) {
      any = true;
      const dest = instantiate(parseUnitName(expandSpecifiers(raw, effective, found.path)), effective);
      if (effective.instance === "") {
        if (forDisable) continue;
        throw new SystemdInstallError(
          `${unitName} is a template without DefaultInstance=; name an instance (e.g. ${u.prefix}@NAME.${u.type})`,
          found.path,
        );
      }
      if (dest.instance === "" && effective.instance === undefined) {
        throw new SystemdInstallError(`${key}=${dest.name}: a template target needs an instance`, found.path);
      }
      plan.links.push({
        path: `${SYSTEM_CONFIG_DIR}/${dest.name}${suffix}/${effective.name}`,
        target: found.path,
      });
    }
  }
  for (const raw of unitList(unit, "Install", "Alias")) {
    any = true;
    const alias = instantiate(parseUnitName(expandSpecifiers(raw, effective, found.path)), effective);
    if (alias.type !== u.type) {
      throw new SystemdInstallError(
        `Alias=${alias.name} has a different unit type than ${unitName}`,
        found.path,
      );
    }
    plan.names.add(alias.name);
    plan.links.push({ path: `${SYSTEM_CONFIG_DIR}/${alias.name}`, target: found.path });
  }
  for (const also of unitList(unit, "Install", "Also")) {
    any = true;
    await planInstall(fs, expandSpecifiers(also, effective, found.path), search, plan, seen, forDisable);
  }
  if (!any && !forDisable) {
    plan.warnings.push(
      `${unitName} has no installation config ([Install] WantedBy=, RequiredBy=, Alias=, Also=)`,
    );
  }
}

/** Enables units the way `systemctl --root=GUEST enable UNIT…` does. Fails before writing on conflicts. */
export async function enableUnit(
  fs: GuestFs,
  names: string | string[],
  options: SystemdInstallOptions = {},
): Promise<InstallResult> {
  const search = await searchPathFor(fs, options);
  const plan: InstallPlan = { links: [], names: new Set(), paths: new Set(), warnings: [] };
  const seen = new Set<string>();
  for (const name of Array.isArray(names) ? names : [names])
    await planInstall(fs, name, search, plan, seen, false);
  const result: InstallResult = { created: [], unchanged: [], removed: [], warnings: plan.warnings };
  const toCreate: PlannedLink[] = [];
  const conflicts: string[] = [];
  const planned = new Set<string>();
  for (const link of plan.links) {
    if (planned.has(link.path)) continue;
    planned.add(link.path);
    const st = await lstatOrNull(fs, link.path);
    if (!st) {
      toCreate.push(link);
      continue;
    }
    if (st.type === "symlink" && (await fs.readlink(link.path)) === link.target) {
      result.unchanged.push(link);
      continue;
    }
    if (options.force && st.type === "symlink") {
      await fs.unlink(link.path);
      result.removed.push(link.path);
      toCreate.push(link);
      continue;
    }
    conflicts.push(
      st.type === "symlink"
        ? `${link.path} already exists and is a symlink to ${await fs.readlink(link.path)}`
        : `${link.path} already exists and is a ${st.type}`,
    );
  }
  if (conflicts.length > 0) throw new SystemdInstallError(`cannot enable: ${conflicts.join("; ")}`);
  for (const link of toCreate) {
    await ensureDir(fs, guestDirname(link.path));
    await fs.symlink(link.target, link.path);
    result.created.push(link);
  }
  return result;
}

async function walkSymlinks(fs: GuestFs, dir: string, out: string[]): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if (isGuestError(err, "ENOENT") || isGuestError(err, "ENOTDIR")) return;
    throw err;
  }
  for (const n of names) {
    const p = `${dir}/${n}`;
    const st = await fs.lstat(p);
    if (st.type === "symlink") out.push(p);
    else if (st.type === "directory") await walkSymlinks(fs, p, out);
  }
}

/**
 * Disables units like `systemctl --root=GUEST disable`: removes every symlink under
 * /etc/systemd/system named after the unit (or its aliases, or Also= units) or pointing at its unit
 * file, except mask links (to /dev/null), which only unmask removes.
 */
export async function disableUnit(
  fs: GuestFs,
  names: string | string[],
  options: SystemdInstallOptions = {},
): Promise<InstallResult> {
  const search = await searchPathFor(fs, options);
  const plan: InstallPlan = { links: [], names: new Set(), paths: new Set(), warnings: [] };
  const seen = new Set<string>();
  for (const name of Array.isArray(names) ? names : [names])
    await planInstall(fs, name, search, plan, seen, true);
  const links: string[] = [];
  await walkSymlinks(fs, SYSTEM_CONFIG_DIR, links);
  const result: InstallResult = { created: [], unchanged: [], removed: [], warnings: plan.warnings };
  for (const link of links) {
    const target = await fs.readlink(link);
    if (target === "/dev/null") continue;
    const hit =
      plan.paths.has(target) ||
      plan.names.has(guestBasename(target)) ||
      plan.names.has(guestBasename(link)) ||
      instanceOfListed(guestBasename(link), plan.names);
    if (!hit) continue;
    await fs.unlink(link);
    result.removed.push(link);
  }
  return result;
}

function instanceOfListed(linkName: string, names: Set<string>): boolean {
  try {
    const u = parseUnitName(linkName);
    return u.instance !== undefined && u.instance !== "" && names.has(templateOf(u));
  } catch {
    return false;
  }
}

/** `systemctl mask`: /etc/systemd/system/<unit> → /dev/null (a real file there is an error). */
export async function maskUnit(
  fs: GuestFs,
  name: string,
  options: SystemdInstallOptions = {},
): Promise<InstallResult> {
  parseUnitName(name);
  const path = `${SYSTEM_CONFIG_DIR}/${name}`;
  const result: InstallResult = { created: [], unchanged: [], removed: [], warnings: [] };
  const st = await lstatOrNull(fs, path);
  if (st) {
    if (st.type === "symlink" && (await fs.readlink(path)) === "/dev/null") {
      result.unchanged.push({ path, target: "/dev/null" });
      return result;
    }
    if (!(options.force && st.type === "symlink")) {
      throw new SystemdInstallError(`cannot mask ${name}: ${path} already exists`, path);
    }
    await fs.unlink(path);
    result.removed.push(path);
  }
  await ensureDir(fs, SYSTEM_CONFIG_DIR);
  await fs.symlink("/dev/null", path);
  result.created.push({ path, target: "/dev/null" });
  return result;
}

/** `systemctl unmask`: removes the /dev/null link, if any. */
export async function unmaskUnit(fs: GuestFs, name: string): Promise<InstallResult> {
  parseUnitName(name);
  const path = `${SYSTEM_CONFIG_DIR}/${name}`;
  const result: InstallResult = { created: [], unchanged: [], removed: [], warnings: [] };
  const st = await lstatOrNull(fs, path);
  if (st?.type === "symlink" && (await fs.readlink(path)) === "/dev/null") {
    await fs.unlink(path);
    result.removed.push(path);
  }
  return result;
}
