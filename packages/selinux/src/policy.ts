/**
 * A guest's SELinux file-labelling policy, read through a small reader (a GuestFs, or the host).
 *
 * `/etc/selinux/config` decides: `SELINUX=enforcing|permissive` with `SELINUXTYPE=T` means labels
 * from `/etc/selinux/T/contexts/files/`; `disabled`, no config, or no file_contexts means none.
 * Parsed as libselinux reads it (comment and blank lines skipped, tags case-insensitive, the last
 * SELINUXTYPE wins, its value ends at a space or tab).
 *
 * Which of `file_contexts` / `file_contexts.bin` is read follows libselinux's open_file: the newer
 * by mtime, the compiled one on a tie; when that one cannot be read (e.g. a compiled format we do
 * not know), the other. The same for `.homedirs` and `.local`; `.subs_dist` and `.subs` are text.
 *
 * Loaded policies are kept per process by content (a hash of every file read): a process that
 * opens several guests with the same policy (a batch, a service, the benchmarks) parses and
 * indexes it once, and reuses the expressions already compiled. The files are still read each
 * time, so a changed policy is never served from the cache.
 */
import { createHash } from "node:crypto";
import { SelinuxPolicyError } from "./errors.js";
import { isFcontextBin, parseFcontextBin } from "./fcontext-bin.js";
import { type FileContextSpec, parseFileContexts } from "./file-contexts.js";
import { expandHomedirTemplate } from "./homedirs.js";
import { LazySpecText } from "./lazy-specs.js";
import { FileContexts } from "./match.js";
import { parseSubs } from "./subs.js";

/** What the loader needs of a filesystem: absolute POSIX paths, ENOENT-like rejections. */
export interface PolicyReader {
  readFile(path: string): Promise<Uint8Array>;
  /** mtime decides between a text file and its `.bin` (both present); absent: the text is used. */
  stat?(path: string): Promise<{ mtime: Date; size?: number; type?: string }>;
}

export type SelinuxMode = "enforcing" | "permissive" | "disabled";

export interface SelinuxConfig {
  mode?: SelinuxMode;
  type?: string;
}

export const SELINUX_CONFIG = "/etc/selinux/config";
/** A policy file larger than this is refused (the largest real one, Debian's .bin, is ~8 MiB). */
const MAX_POLICY_FILE = 256 * 1024 * 1024;

export function parseSelinuxConfig(data: Uint8Array | string): SelinuxConfig {
  const text = typeof data === "string" ? data : Buffer.from(data).toString("latin1");
  const out: SelinuxConfig = {};
  for (const raw of text.split("\n")) {
    const line = raw.replace(/^[ \t\n\v\f\r]+/, "");
    if (line === "" || line.startsWith("#")) continue;
    if (/^SELINUXTYPE=/i.test(line)) {
      out.type = line.slice("SELINUXTYPE=".length).split(/[ \t]/)[0];
      continue;
    }
    if (/^SELINUX=/i.test(line)) {
      const v = line.slice("SELINUX=".length).toLowerCase();
      for (const m of ["enforcing", "permissive", "disabled"] as const) if (v.startsWith(m)) out.mode = m;
    }
  }
  return out;
}

export interface GuestPolicy {
  config: SelinuxConfig & { mode: "enforcing" | "permissive"; type: string };
  /** /etc/selinux/TYPE/contexts/files/file_contexts */
  path: string;
  contexts: FileContexts;
  /** The files the specs came from, in load order. */
  files: string[];
  /**
   * True when file_contexts.homedirs was replaced by the expansion of the store's
   * homedir_template (it lacked users or home roots that genhomedircon would write now).
   */
  homedirsExpanded: boolean;
  /** The store's homedir_template, when the guest has one (and homedirs were not "shipped"). */
  homedirTemplate?: string;
}

/**
 * The guest files the homedirs expansion reads besides the store: a job that writes one of them
 * (a user added) should load the policy again before labelling what follows.
 */
export const HOMEDIR_INPUTS: ReadonlySet<string> = new Set([
  "/etc/passwd",
  "/etc/login.defs",
  "/etc/default/useradd",
  "/etc/libuser.conf",
  "/etc/shells",
]);

function isMissing(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

async function readOpt(reader: PolicyReader, path: string): Promise<Uint8Array | undefined> {
  try {
    if (reader.stat) {
      const st = await reader.stat(path);
      if (st.size !== undefined && st.size > MAX_POLICY_FILE)
        throw new SelinuxPolicyError(path, `${st.size} bytes: larger than any real policy file`);
    }
    const data = await reader.readFile(path);
    if (data.length > MAX_POLICY_FILE)
      throw new SelinuxPolicyError(path, `${data.length} bytes: larger than any real policy file`);
    return data;
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

async function mtimeOf(reader: PolicyReader, path: string): Promise<number | undefined> {
  if (!reader.stat) return undefined;
  try {
    return (await reader.stat(path)).mtime.getTime();
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

/** A compiled file in full; a text one lazily (lazy-specs.ts; its errors are still found now). */
function parseSpecs(data: Uint8Array, file: string): readonly FileContextSpec[] | LazySpecText {
  return isFcontextBin(data) ? parseFcontextBin(data, file) : new LazySpecText(data, file);
}

function allSpecs(source: readonly FileContextSpec[] | LazySpecText): FileContextSpec[] {
  return source instanceof LazySpecText ? source.all() : [...source];
}

/** Policies loaded in this process, by content (most recently used last). */
const CACHE_ENTRIES = 4;
const loaded = new Map<string, FileContexts>();

function contentKey(parts: ReadonlyArray<readonly [string, Uint8Array | undefined]>): string {
  const h = createHash("sha256");
  for (const [name, data] of parts) {
    h.update(`${name}\0${data === undefined ? -1 : data.length}\0`);
    if (data) h.update(data);
  }
  return h.digest("hex");
}

/** One spec file (text and/or `.bin`), chosen as libselinux chooses; undefined when neither exists. */
export async function loadSpecFile(
  reader: PolicyReader,
  path: string,
): Promise<{ specs: FileContextSpec[]; file: string } | undefined> {
  const r = await readSpecFile(reader, path);
  return r && { specs: allSpecs(r.specs()), file: r.file };
}

/** loadSpecFile's choice and bytes; the specs parsed on demand. */
async function readSpecFile(
  reader: PolicyReader,
  path: string,
): Promise<
  { specs: () => readonly FileContextSpec[] | LazySpecText; file: string; data: Uint8Array } | undefined
> {
  const tText = await mtimeOf(reader, path);
  const tBin = await mtimeOf(reader, `${path}.bin`);
  let order: string[];
  if (!reader.stat) order = [path, `${path}.bin`];
  else if (tText === undefined && tBin === undefined) return undefined;
  else if (tBin === undefined) order = [path];
  else if (tText === undefined) order = [`${path}.bin`];
  else order = tBin >= tText ? [`${path}.bin`, path] : [path, `${path}.bin`];
  let firstError: unknown;
  for (const file of order) {
    let data: Uint8Array | undefined;
    try {
      data = await readOpt(reader, file);
      if (data === undefined) continue;
      // parsed here when another file could stand in for it (so a bad one falls back), else later
      const bytes = data;
      const specs = order.length > 1 ? parseSpecs(bytes, file) : undefined;
      let parsed = specs;
      return { specs: () => (parsed ??= parseSpecs(bytes, file)), file, data: bytes };
    } catch (err) {
      if (!(err instanceof SelinuxPolicyError)) throw err;
      firstError ??= err;
    }
  }
  if (firstError) throw firstError;
  return undefined;
}

/**
 * Loads the active policy of a guest; undefined when SELinux is disabled, not configured, or the
 * configured type has no file_contexts. `compile: true` (default) translates every expression
 * now, so a spec we cannot follow fails before anything is written.
 */
export async function loadGuestPolicy(
  reader: PolicyReader,
  options: {
    compile?: boolean;
    configPath?: string;
    /** "shipped": file_contexts.homedirs as it is, never expanded from the template. */
    homedirs?: "shipped" | "expand";
  } = {},
): Promise<GuestPolicy | undefined> {
  const configPath = options.configPath ?? SELINUX_CONFIG;
  const raw = await readOpt(reader, configPath);
  if (raw === undefined) return undefined;
  const config = parseSelinuxConfig(raw);
  if (config.mode !== "enforcing" && config.mode !== "permissive") return undefined;
  if (!config.type) return undefined;
  if (!/^[A-Za-z0-9_.-]+$/.test(config.type) || config.type === "." || config.type === "..")
    throw new SelinuxPolicyError(configPath, `SELINUXTYPE=${config.type} is not a policy name`);
  const dir = `/etc/selinux/${config.type}/contexts/files`;
  const path = `${dir}/file_contexts`;
  const main = await readSpecFile(reader, path);
  if (!main) return undefined;
  let homedirs = await readSpecFile(reader, `${path}.homedirs`);
  const local = await readSpecFile(reader, `${path}.local`);
  const subsDist = await readOpt(reader, `${path}.subs_dist`);
  const subs = await readOpt(reader, `${path}.subs`);
  let homedirsFromTemplate: string | undefined;
  let homedirTemplate: string | undefined;
  if (options.homedirs !== "shipped") {
    const sources = [main.specs(), ...(local ? [local.specs()] : [])];
    // the specs that could claim a directory: those of its first character (lazy-specs.ts)
    const claimants = (dir: string) =>
      sources.flatMap((src) =>
        src instanceof LazySpecText ? [...src.candidates(dir.slice(1, 2)), ...src.candidates("")] : src,
      );
    const expanded = await expandGuestHomedirs(reader, config.type, claimants);
    homedirTemplate = expanded?.template;
    // the shipped file is used when it is what genhomedircon would write now
    const shipped = homedirs?.specs();
    if (expanded && !sameSpecs(expanded.specs, shipped && allSpecs(shipped))) {
      homedirsFromTemplate = expanded.template;
      homedirs = {
        file: expanded.file,
        data: Buffer.from(expanded.text, "latin1"),
        specs: () => expanded.specs,
      };
    }
  }
  const key = contentKey([
    [main.file, main.data],
    [homedirs?.file ?? "-", homedirs?.data],
    [local?.file ?? "-", local?.data],
    ["subs_dist", subsDist],
    ["subs", subs],
  ]);
  let contexts = loaded.get(key);
  if (contexts) loaded.delete(key);
  else
    contexts = new FileContexts({
      specs: main.specs(),
      homedirs: homedirs?.specs(),
      local: local?.specs(),
      distSubs: subsDist ? parseSubs(subsDist) : [],
      subs: subs ? parseSubs(subs) : [],
    });
  // compiled before it is cached: a policy that fails to compile is not kept
  if (options.compile !== false) contexts.compileAll();
  loaded.set(key, contexts);
  if (loaded.size > CACHE_ENTRIES) loaded.delete(loaded.keys().next().value as string);
  const files = [main.file, homedirs?.file, local?.file].filter((f): f is string => f !== undefined);
  if (subsDist) files.push(`${path}.subs_dist`);
  if (subs) files.push(`${path}.subs`);
  if (homedirsFromTemplate) files.push(homedirsFromTemplate);
  return {
    config: { ...config, mode: config.mode, type: config.type },
    path,
    contexts,
    files,
    homedirsExpanded: homedirsFromTemplate !== undefined,
    homedirTemplate,
  };
}

/** Same regex, file type and context, in order (comments and file names aside). */
function sameSpecs(a: readonly FileContextSpec[], b: readonly FileContextSpec[] | undefined): boolean {
  if (!b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++)
    if (a[i].regex !== b[i].regex || a[i].mode !== b[i].mode || a[i].context !== b[i].context) return false;
  return true;
}

/** Where the policy store keeps homedir_template, seusers and users_extra (EL8+/Debian, then EL7). */
const STORE_DIRS = (type: string) => [
  `/var/lib/selinux/${type}/active`,
  `/etc/selinux/${type}/modules/active`,
];

/**
 * The guest's homedirs as genhomedircon would write them from its store's template and its
 * current passwd (homedirs.ts); undefined without a template.
 */
async function expandGuestHomedirs(
  reader: PolicyReader,
  type: string,
  policySpecs: (dir: string) => readonly FileContextSpec[],
): Promise<{ file: string; template: string; text: string; specs: FileContextSpec[] } | undefined> {
  const latin1 = (d: Uint8Array | undefined) =>
    d === undefined ? undefined : Buffer.from(d).toString("latin1");
  for (const dir of STORE_DIRS(type)) {
    const template = await readOpt(reader, `${dir}/homedir_template`);
    if (template === undefined) continue;
    const text = async (p: string) => latin1(await readOpt(reader, p));
    let exportHomeIsDir = false;
    if (reader.stat)
      try {
        exportHomeIsDir = (await reader.stat("/export/home")).type === "directory";
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
    const out = expandHomedirTemplate({
      template: latin1(template) ?? "",
      seusers: await text(`${dir}/seusers`),
      usersExtra: await text(`${dir}/users_extra`),
      passwd: await text("/etc/passwd"),
      loginDefs: await text("/etc/login.defs"),
      useradd: await text("/etc/default/useradd"),
      libuserConf: await text("/etc/libuser.conf"),
      shells: await text("/etc/shells"),
      exportHomeIsDir,
      policySpecs,
    });
    const file = `${dir}/homedir_template (expanded)`;
    return { file, template: `${dir}/homedir_template`, text: out, specs: parseFileContexts(out, file) };
  }
  return undefined;
}

/** The xattr value the kernel stores for a context: the string and a NUL. */
export function contextXattr(context: string): Uint8Array {
  return Buffer.from(`${context}\0`, "latin1");
}

/** A stored `security.selinux` value as text (without the NUL, if any). */
export function contextFromXattr(value: Uint8Array): string {
  let end = value.length;
  while (end > 0 && value[end - 1] === 0) end--;
  return Buffer.from(value.subarray(0, end)).toString("latin1");
}

export const SELINUX_XATTR = "security.selinux";
