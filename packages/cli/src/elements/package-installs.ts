/**
 * package-installs.yaml (or .json) handling, as DIB's package-installs element squashes it: each
 * element maps package names to null or to options { phase (default install.d), uninstall,
 * installtype (only when it equals the element's install type), arch (comma list) }; a list of option
 * maps gives several entries. Names are mapped through the element's `pkg-map` (JSON: release >
 * distro > family > default) for the guest's distribution.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ElementInfo } from "./elements-path.js";
import { ElementFormatError } from "./errors.js";
import { parseYaml, type YamlValue } from "./yaml.js";

export const PACKAGE_PHASES = ["pre-install.d", "install.d", "post-install.d"] as const;
export type PackagePhase = (typeof PACKAGE_PHASES)[number];

export interface PackageRequest {
  element: string;
  /** The name as written in package-installs.yaml. */
  name: string;
  /** Names after pkg-map (may be several, or none). */
  packages: string[];
  phase: PackagePhase;
  uninstall: boolean;
  /** Architectures this applies to (empty: all); checked at first boot with `uname -m`. */
  arch: string[];
}

export interface GuestDistro {
  /** os-release ID, e.g. "centos". */
  distro: string;
  /** Family as DIB's pkg-map names it: redhat, debian, suse, gentoo. */
  family: string;
  release: string;
}

export function familyOf(id: string, idLike: string): string {
  const ids = [id, ...idLike.split(/\s+/)];
  if (ids.some((i) => ["rhel", "fedora", "centos", "rocky", "almalinux"].includes(i))) return "redhat";
  if (ids.some((i) => ["debian", "ubuntu"].includes(i))) return "debian";
  if (ids.some((i) => i.includes("suse"))) return "suse";
  if (ids.includes("gentoo")) return "gentoo";
  return id;
}

/** Reads a guest's os-release text into DIB's distro notions. */
export function distroFromOsRelease(text: string | null): GuestDistro {
  const field = (k: string) => (text ? (new RegExp(`^${k}="?([^"\\n]*)"?$`, "m").exec(text)?.[1] ?? "") : "");
  const id = field("ID");
  return { distro: id, family: familyOf(id, field("ID_LIKE")), release: field("VERSION_ID") };
}

async function readOptional(path: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

type PkgMap = Record<string, YamlValue>;

/**
 * The Debian-style names elements use, as DIB's Red Hat distro elements map them (their
 * map-packages), for when no element pkg-map says otherwise: imgpatch runs without distro elements.
 */
const REDHAT_FALLBACK: Record<string, string> = {
  "build-essential": "make automake gcc gcc-c++ kernel-devel",
  "libxml2-dev": "libxml2-devel",
  "libz-dev": "zlib-devel",
  "libxslt-dev": "libxslt-devel",
  "python-dev": "python-devel",
  "python3-dev": "python3-devel",
};

function mapName(name: string, map: PkgMap | null, d: GuestDistro, file: string): string[] {
  const fallback = d.family === "redhat" ? REDHAT_FALLBACK[name] : undefined;
  if (!map) return (fallback ?? name).split(/\s+/).filter((s) => s !== "");
  const pick = (section: YamlValue | undefined): string | undefined => {
    if (section && typeof section === "object" && !Array.isArray(section) && name in section) {
      const v = section[name];
      if (typeof v !== "string")
        throw new ElementFormatError(`pkg-map value for ${name} is not a string`, file);
      return v;
    }
    return undefined;
  };
  const sub = (k: string) => {
    const s = map[k];
    return s && typeof s === "object" && !Array.isArray(s) ? s : undefined;
  };
  const release = sub("release")?.[d.distro];
  const releaseMap =
    release && typeof release === "object" && !Array.isArray(release) ? release[d.release] : undefined;
  const mapped =
    pick(releaseMap) ??
    pick(sub("distro")?.[d.distro]) ??
    pick(sub("family")?.[d.family]) ??
    pick(map.default);
  return (mapped ?? fallback ?? name).split(/\s+/).filter((s) => s !== "");
}

export interface PackageInstallsResult {
  requests: PackageRequest[];
  warnings: string[];
}

/**
 * package-installs `when:` conditions: "VAR = value" / "VAR != value" (a list: all must hold),
 * evaluated against the build environment. Unknown variables count as empty (with a warning).
 */
export function evaluateWhen(
  when: YamlValue,
  env: Record<string, string>,
  warn: (m: string) => void,
): boolean {
  const list = Array.isArray(when) ? when : [when];
  for (const stmt of list) {
    const m =
      typeof stmt === "string" ? /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(!=|=)\s*(.*?)\s*$/.exec(stmt) : null;
    if (!m) {
      warn(`unsupported when: condition ${JSON.stringify(stmt)}; treated as true`);
      continue;
    }
    if (!(m[1] in env)) warn(`when: condition uses ${m[1]}, which is not set; taken as empty`);
    const v = env[m[1]] ?? "";
    if ((m[2] === "=") !== (v === m[3])) return false;
  }
  return true;
}

export async function collectPackageInstalls(
  elements: readonly ElementInfo[],
  installTypeOf: (element: string) => string,
  distro: GuestDistro,
  env: Record<string, string> = {},
): Promise<PackageInstallsResult> {
  const requests: PackageRequest[] = [];
  const warnings: string[] = [];
  for (const el of elements) {
    let file = join(el.path, "package-installs.yaml");
    let text = await readOptional(file);
    if (text === null) {
      file = join(el.path, "package-installs.json");
      text = await readOptional(file);
    }
    if (text === null) continue;
    const data = parseYaml(text, file);
    if (data === null) continue;
    if (typeof data !== "object" || Array.isArray(data))
      throw new ElementFormatError("expected a mapping", file);
    const mapFile = join(el.path, "pkg-map");
    const mapText = await readOptional(mapFile);
    let map: PkgMap | null = null;
    if (mapText !== null) {
      try {
        map = JSON.parse(mapText) as PkgMap;
      } catch {
        throw new ElementFormatError("pkg-map is not valid JSON", mapFile);
      }
    }
    for (const [name, spec] of Object.entries(data)) {
      const specs = Array.isArray(spec) ? spec : [spec];
      for (const s of specs) {
        const opts = s && typeof s === "object" && !Array.isArray(s) ? s : {};
        if (s !== null && (typeof s !== "object" || Array.isArray(s))) {
          throw new ElementFormatError(`options of ${name} must be a mapping`, file);
        }
        const phase = (opts.phase ?? "install.d") as string;
        if (!(PACKAGE_PHASES as readonly string[]).includes(phase)) {
          throw new ElementFormatError(`${name}: unknown phase ${phase}`, file);
        }
        if (opts.installtype !== undefined && opts.installtype !== installTypeOf(el.name)) continue;
        if (
          opts.dib_python_version !== undefined &&
          String(opts.dib_python_version) !== (env.DIB_PYTHON_VERSION ?? "3")
        ) {
          continue;
        }
        if (
          opts.when !== undefined &&
          !evaluateWhen(opts.when, env, (m) => warnings.push(`${el.name}: ${name}: ${m}`))
        ) {
          continue;
        }
        requests.push({
          element: el.name,
          name,
          packages: mapName(name, map, distro, mapFile),
          phase: phase as PackagePhase,
          uninstall: opts.uninstall === true,
          arch: typeof opts.arch === "string" ? opts.arch.split(",").map((a) => a.trim()) : [],
        });
      }
    }
  }
  return { requests, warnings };
}
