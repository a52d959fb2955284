/**
 * Operations from the command line in their order, and from recipe files.
 *
 * Recipe (JSON or YAML): a list of one-key objects, each key an
 * operation name and its value the argument exactly as on the command line (null/true for
 * operations without one), or an object `{ "operations": [...] }` holding that list:
 *   [ {"mkdir": "/opt/x"}, {"write": "/etc/motd:hello"}, {"selinux-relabel": null} ]
 */
import { readFile } from "node:fs/promises";
import type { Argv } from "yargs";
import { type DebStep, parseDebStep } from "../customize/install-deb.js";
import {
  type CustomizeOp,
  CustomizeUsageError,
  parseCommandsFile,
  parseOperation,
} from "../customize/operations.js";
import type { YamlValue } from "../elements/yaml.js";

/** Operation names (long options) `customize` accepts, in the --help order. */
export const OPERATION_NAMES = [
  "mkdir",
  "upload",
  "write",
  "append-line",
  "copy-in",
  "tar-in",
  "link",
  "chmod",
  "chown",
  "delete",
  "touch",
  "move",
  "copy",
  "rpm",
  "install",
  "deb",
  "enable",
  "disable",
  "mask",
  "firstboot",
  "firstboot-command",
  "hostname",
  "timezone",
  "ssh-inject",
  "root-password",
  "password",
  "password-crypto",
  "edit",
  "truncate",
  "truncate-recursive",
  "scrub",
  "run",
  "run-command",
  "update",
  "uninstall",
  "selinux-relabel",
  "selinux-autorelabel",
  "selinux-permissive",
  "commands-from-file",
  "recipe",
] as const;

export const NO_ARG_OPS = new Set(["selinux-relabel", "selinux-autorelabel", "selinux-permissive", "update"]);

/** Each operation's argument and effect, for --help (the README's table says more). */
export const OPERATION_HELP: Record<(typeof OPERATION_NAMES)[number], string> = {
  mkdir: "DIR: make a directory (parents too)",
  upload: "HOSTFILE:GUESTPATH: copy a host file in",
  write: "FILE:CONTENT: write a file",
  "append-line": "FILE:LINE: append a line (adds a missing final newline first)",
  "copy-in": "HOSTPATH:GUESTDIR: copy a host file or tree in (modes kept)",
  "tar-in": "TARBALL:GUESTDIR: unpack a tarball (plain, gzip, xz, zstd) with owners, modes, xattrs",
  link: "TARGET:LINK[:LINK...]: make symlinks",
  chmod: "MODE:PATH: change the mode (octal)",
  chown: "USER:GROUP:PATH: change the owner (names from the guest's passwd/group, or numbers)",
  delete: "PATH: delete recursively (globs)",
  touch: "PATH: create an empty file, or set its times to now",
  move: "SRC:DST: rename in the guest",
  copy: "SRC:DST: copy in the guest",
  rpm: "FILE.rpm: unpack the payload; scriptlets run at first boot",
  install:
    "PKG[,PKG...]: install packages and their dependencies from the guest's own repositories (apt sources on Debian guests, yum repos on RPM guests) or --repo",
  deb: "FILE.deb: install a local package, dependencies resolved like apt install ./FILE.deb",
  enable: "UNIT: enable a systemd unit (the symlinks systemctl would make)",
  disable: "UNIT: disable a systemd unit",
  mask: "UNIT: mask a systemd unit",
  firstboot: "SCRIPT: run this host script once at first boot",
  "firstboot-command": "CMD: run this command once at first boot",
  hostname: "NAME: set /etc/hostname",
  timezone: "Area/City: point /etc/localtime at the guest's zoneinfo",
  "ssh-inject": "USER:file:KEY.pub or USER:string:KEY: add to the user's authorized_keys",
  "root-password":
    "SELECTOR: set root's password in /etc/shadow (password:PASS, file:FILE, random, disabled, locked[:SELECTOR])",
  password: "USER:SELECTOR: set USER's password (selectors as --root-password)",
  "password-crypto": "md5|sha256|sha512: hash for the password operations (default sha512)",
  edit: "FILE:EXPR: apply a Perl s/RE/REPLACEMENT/FLAGS to each line of FILE",
  truncate: "FILE: make a file empty",
  "truncate-recursive": "DIR: make every regular file under DIR empty",
  scrub: "FILE: overwrite the file's data where it lies, then remove it",
  run: "SCRIPT: run this host script in the guest — at first boot (there is no VM at build time)",
  "run-command": "CMD: run this command in the guest — at first boot (there is no VM at build time)",
  update:
    "update every package with the guest's package manager — at first boot (there is no VM at build time)",
  uninstall:
    "PKG[,PKG...]: remove packages with the guest's package manager — at first boot (no VM at build time)",
  "selinux-relabel": "relabel the whole guest now from its own policy (offline setfiles -F)",
  "selinux-autorelabel": "relabel at first boot instead (/.autorelabel; the guest reboots once)",
  "selinux-permissive": "set SELINUX=permissive in /etc/selinux/config",
  "commands-from-file": "FILE: operations one per line, virt-customize syntax",
  recipe: "FILE: operations as a JSON/YAML list",
};

/** --rpm FILE, with the signature policy of --rpm-signature / --rpm-key when given. */
export interface RpmStep {
  op: "rpm";
  host: string;
  signature?: "required" | "if-present" | "ignore";
  /** Host key files trusted besides the guest's keyring. */
  keys?: string[];
}

/** A customize step: the shared operations plus --rpm (rpm-inject) and --install/--deb. */
export type Step = CustomizeOp | RpmStep | DebStep;

export function parseStep(name: string, arg: string | undefined): Step {
  if (name === "install" || name === "deb") return parseDebStep(name, arg);
  if (name === "rpm") {
    if (!arg) throw new CustomizeUsageError("--rpm needs an RPM file");
    return { op: "rpm", host: arg };
  }
  return parseOperation(name, arg);
}

function recipeSteps(value: YamlValue | unknown, file: string): Step[] {
  let list = value;
  if (list && typeof list === "object" && !Array.isArray(list) && "operations" in (list as object)) {
    list = (list as { operations: unknown }).operations;
  }
  if (!Array.isArray(list)) throw new CustomizeUsageError(`${file}: a recipe is a list of operations`, file);
  return list.map((item, i) => {
    if (!item || typeof item !== "object" || Array.isArray(item) || Object.keys(item).length !== 1) {
      throw new CustomizeUsageError(`${file}: item ${i + 1}: expected one {operation: argument}`, file);
    }
    const [name, v] = Object.entries(item as Record<string, unknown>)[0];
    if (name === "commands-from-file" || name === "recipe") {
      throw new CustomizeUsageError(`${file}: item ${i + 1}: ${name} cannot nest`, file);
    }
    if (v !== null && v !== true && typeof v !== "string" && typeof v !== "number") {
      throw new CustomizeUsageError(`${file}: item ${i + 1}: the argument of ${name} must be a string`, file);
    }
    try {
      return parseStep(name, v === null || v === true ? undefined : String(v));
    } catch (err) {
      throw new CustomizeUsageError(`${file}: item ${i + 1}: ${(err as Error).message}`, file);
    }
  });
}

export async function readRecipe(file: string): Promise<Step[]> {
  const text = await readFile(file, "utf8").catch((e: Error) => {
    throw new CustomizeUsageError(`cannot read recipe: ${e.message}`, file);
  });
  const trimmed = text.trimStart();
  let value: unknown;
  try {
    // The YAML library loads only for a YAML recipe (~0.2 s of module loading otherwise spent by
    // every customize run).
    value =
      trimmed.startsWith("[") || trimmed.startsWith("{")
        ? JSON.parse(text)
        : (await import("../elements/yaml.js")).parseYaml(text, file);
  } catch (err) {
    throw new CustomizeUsageError(`${file}: not valid JSON/YAML: ${(err as Error).message}`, file);
  }
  return recipeSteps(value, file);
}

export async function readCommandsFile(file: string): Promise<Step[]> {
  const text = await readFile(file, "utf8").catch((e: Error) => {
    throw new CustomizeUsageError(`cannot read commands file: ${e.message}`, file);
  });
  return parseCommandsFile(text, file);
}

const OPS = new Set<string>(OPERATION_NAMES);

/**
 * Scans the raw arguments of `customize` for operations, keeping their order (yargs groups options
 * by name). `--name value` and `--name=value` both work.
 */
export async function orderedSteps(args: readonly string[]): Promise<Step[]> {
  const steps: Step[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") break;
    if (!a.startsWith("--")) continue;
    const eq = a.indexOf("=");
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (!OPS.has(name)) continue;
    let value: string | undefined;
    if (NO_ARG_OPS.has(name)) value = eq < 0 ? undefined : a.slice(eq + 1);
    else if (eq >= 0) value = a.slice(eq + 1);
    else {
      value = args[i + 1];
      i++;
      if (value === undefined) throw new CustomizeUsageError(`--${name} needs an argument`);
    }
    if (name === "commands-from-file") steps.push(...(await readCommandsFile(value as string)));
    else if (name === "recipe") steps.push(...(await readRecipe(value as string)));
    else steps.push(parseStep(name, value));
  }
  return steps;
}

/** Declare `names` as long options under one --help group (boolean for the operations without an argument). */
export function withOperationOptions<T>(
  z: Argv<T>,
  names: readonly (typeof OPERATION_NAMES)[number][],
  group: string,
): Argv<T> {
  let y = z;
  for (const name of names) {
    const describe = OPERATION_HELP[name];
    y = NO_ARG_OPS.has(name)
      ? y.option(name, { type: "boolean", group, describe })
      : y.option(name, { type: "string", group, describe });
  }
  return y;
}
