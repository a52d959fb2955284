/**
 * EL8+ modularity: a repository's `modules` metadata (modules.yaml: YAML documents `modulemd` v2
 * naming each module stream's packages in `data.artifacts.rpms`, and `modulemd-defaults` naming
 * default streams) and the guest's `/etc/dnf/modules.d/*.module` (INI: name, stream, state).
 *
 * As dnf filters: a stream is active when the guest enables it, or when it is the module's default
 * and the guest gives the module no state. Packages of inactive streams are hidden; so are
 * non-modular packages named like a package of an active stream (the stream owns that name).
 * Repositories with `module_hotfixes=1` are not filtered.
 */
import { RepoFormatError, RepoLimitError } from "./errors.js";
import type { PackageMeta } from "./package-meta.js";
import { decompressed } from "./primary.js";
import { type RepoSource, readAll, verified } from "./repo-source.js";
import type { RepomdEntry } from "./repomd.js";
import type { GuestFileReader } from "./rpmdb.js";

export interface ModuleStream {
  name: string;
  stream: string;
  /** name-epoch:version-release.arch of each package. */
  artifacts: string[];
}

export interface ModuleMetadata {
  streams: ModuleStream[];
  /** module → default stream */
  defaults: Map<string, string>;
}

export interface ModuleState {
  stream: string;
  state: "enabled" | "disabled" | "";
}

const MAX_MODULES_BYTES = 256 * 1024 * 1024;

type Y = Record<string, unknown>;
const obj = (v: unknown): Y | null =>
  v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Y) : null;

/** The YAML library, loaded only for repositories that carry module metadata. */
export async function loadYaml(): Promise<void> {
  yamlLib ??= await import("yaml");
}

let yamlLib: typeof import("yaml") | null = null;

/** Parse modules.yaml text (call loadYaml first). */
export function parseModulesYaml(text: string, where: string): ModuleMetadata {
  if (yamlLib === null) throw new Error("parseModulesYaml: loadYaml() was not awaited");
  const { parseAllDocuments } = yamlLib;
  const streams: ModuleStream[] = [];
  const defaults = new Map<string, string>();
  let docs: ReturnType<typeof import("yaml").parseAllDocuments>;
  try {
    docs = parseAllDocuments(text);
  } catch (e) {
    throw new RepoFormatError(`bad modules YAML: ${(e as Error).message}`, { file: where });
  }
  if (!Array.isArray(docs)) throw new RepoFormatError("bad modules YAML", { file: where });
  for (const d of docs) {
    if (d.errors.length > 0)
      throw new RepoFormatError(`bad modules YAML: ${d.errors[0]!.message}`, { file: where });
    let v: unknown;
    try {
      v = d.toJS({ maxAliasCount: 100 });
    } catch (e) {
      throw new RepoLimitError(`modules YAML: ${(e as Error).message}`, { file: where });
    }
    const doc = obj(v);
    const data = obj(doc?.data);
    if (doc === null || data === null) continue;
    if (doc.document === "modulemd" && typeof data.name === "string") {
      const rpms = obj(data.artifacts)?.rpms;
      streams.push({
        name: data.name,
        stream: String(data.stream ?? ""),
        artifacts: Array.isArray(rpms) ? rpms.filter((x): x is string => typeof x === "string") : [],
      });
    } else if (
      doc.document === "modulemd-defaults" &&
      typeof data.module === "string" &&
      data.stream !== undefined
    ) {
      defaults.set(data.module, String(data.stream));
    }
  }
  return { streams, defaults };
}

export async function readModules(src: RepoSource, e: RepomdEntry): Promise<ModuleMetadata> {
  const where = src.locate(e.href);
  const raw = verified(src.open(e.href), e.checksum, MAX_MODULES_BYTES, where);
  const bytes = await readAll(decompressed(raw, e.href, where), MAX_MODULES_BYTES, where);
  await loadYaml();
  return parseModulesYaml(new TextDecoder().decode(bytes), where);
}

/** The guest's module states from /etc/dnf/modules.d. */
export async function readModuleStates(g: GuestFileReader): Promise<Map<string, ModuleState>> {
  const out = new Map<string, ModuleState>();
  for (const n of ((await g.readdir("/etc/dnf/modules.d")) ?? [])
    .filter((x) => x.endsWith(".module"))
    .sort()) {
    const b = await g.readFile(`/etc/dnf/modules.d/${n}`);
    if (b === null || b.length > 1 << 20) continue;
    let section = "";
    const kv: Record<string, Record<string, string>> = {};
    for (const line of new TextDecoder().decode(b).split(/\r?\n/)) {
      const s = /^\s*\[([^\]]+)\]\s*$/.exec(line);
      if (s) {
        section = s[1]!.trim();
        kv[section] = {};
        continue;
      }
      const m = /^\s*([^=\s]+)\s*=\s*(.*)$/.exec(line);
      if (m && section !== "") kv[section]![m[1]!] = m[2]!.trim();
    }
    for (const [name, v] of Object.entries(kv)) {
      const state = v.state === "enabled" || v.state === "disabled" ? v.state : "";
      out.set(name, { stream: v.stream ?? "", state });
    }
  }
  return out;
}

function key(p: PackageMeta): string {
  return `${p.name}-${p.evr.epoch === "" ? "0" : p.evr.epoch}:${p.evr.version}-${p.evr.release}.${p.arch}`;
}

/** Drop what dnf's modular filtering hides; returns the kept packages and what was hidden. */
export function filterModular(
  packages: PackageMeta[],
  meta: ModuleMetadata,
  states: Map<string, ModuleState>,
): { kept: PackageMeta[]; hidden: number } {
  const active = new Set<string>();
  const allArtifacts = new Set<string>();
  const activeNames = new Set<string>();
  for (const s of meta.streams) {
    const st = states.get(s.name);
    const on =
      st !== undefined && st.state === "enabled"
        ? st.stream === s.stream
        : (st === undefined || st.state === "") && meta.defaults.get(s.name) === s.stream;
    for (const a of s.artifacts) {
      allArtifacts.add(a);
      if (on) {
        active.add(a);
        const m = /^(.*)-[^-]+-[^-]+$/.exec(a);
        if (m) activeNames.add(m[1]!);
      }
    }
  }
  const kept = packages.filter((p) => {
    const k = key(p);
    if (allArtifacts.has(k)) return active.has(k);
    return !activeNames.has(p.name);
  });
  return { kept, hidden: packages.length - kept.length };
}
