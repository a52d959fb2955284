/**
 * The guest's yum/dnf repositories: `/etc/yum.repos.d/*.repo` (INI: one section per repository;
 * a value may continue on indented lines), with `$releasever`, `$basearch`, `$arch` and the
 * variables of `/etc/dnf/vars/*` substituted (`$name` or `${name}`), as dnf reads them.
 */
import { RepoFormatError } from "./errors.js";
import type { GuestFileReader } from "./rpmdb.js";

export interface YumRepo {
  id: string;
  name: string;
  baseurls: string[];
  mirrorlist: string | null;
  metalink: string | null;
  enabled: boolean;
  gpgcheck: boolean;
  gpgkeys: string[];
  priority: number;
  cost: number;
  moduleHotfixes: boolean;
  /** The .repo file it came from. */
  file: string;
}

const truthy = (v: string | undefined, dflt: boolean) =>
  v === undefined ? dflt : ["1", "yes", "true", "on"].includes(v.trim().toLowerCase());

/** Substitute dnf variables; unknown ones stay as written (dnf does the same). */
export function substituteVars(s: string, vars: Record<string, string>): string {
  return s.replace(
    /\$(\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))/g,
    (m, _x, braced, bare) => vars[braced ?? bare] ?? m,
  );
}

/** Parse one .repo file's text. */
export function parseRepoFile(text: string, file: string, vars: Record<string, string>): YumRepo[] {
  const sections: { id: string; kv: Record<string, string> }[] = [];
  let cur: { id: string; kv: Record<string, string> } | null = null;
  let lastKey: string | null = null;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    if (/^\s*([#;].*)?$/.test(raw)) continue;
    if (/^\s/.test(raw) && cur !== null && lastKey !== null) {
      cur.kv[lastKey] += `\n${raw.trim()}`;
      continue;
    }
    const sec = /^\s*\[([^\]]+)\]\s*$/.exec(raw);
    if (sec) {
      cur = { id: sec[1]!.trim(), kv: {} };
      sections.push(cur);
      lastKey = null;
      continue;
    }
    const kv = /^\s*([^=\s]+)\s*=\s*(.*)$/.exec(raw);
    if (!kv || cur === null)
      throw new RepoFormatError(`line ${i + 1}: not "key=value" inside a [section]`, { file });
    lastKey = kv[1]!.toLowerCase();
    cur.kv[lastKey] = kv[2]!.trim();
  }
  return sections
    .filter((s) => s.id !== "main")
    .map((s) => {
      const v = (k: string) => (s.kv[k] === undefined ? undefined : substituteVars(s.kv[k]!, vars));
      const list = (k: string) => (v(k) ?? "").split(/[\s,]+/).filter((x) => x !== "");
      const num = (k: string, d: number) => {
        const x = v(k);
        return x !== undefined && /^-?\d+$/.test(x) ? Number(x) : d;
      };
      return {
        id: s.id,
        name: v("name") ?? s.id,
        baseurls: list("baseurl"),
        mirrorlist: v("mirrorlist") ?? null,
        metalink: v("metalink") ?? null,
        enabled: truthy(s.kv.enabled, true),
        gpgcheck: truthy(s.kv.gpgcheck, false),
        gpgkeys: list("gpgkey"),
        priority: num("priority", 99),
        cost: num("cost", 1000),
        moduleHotfixes: truthy(s.kv.module_hotfixes, false),
        file,
      };
    });
}

/** `/etc/dnf/vars/*` and `/etc/yum/vars/*` (first line of each file), plus the given ones. */
export async function readDnfVars(
  g: GuestFileReader,
  base: Record<string, string>,
): Promise<Record<string, string>> {
  const vars: Record<string, string> = {};
  for (const dir of ["/etc/yum/vars", "/etc/dnf/vars"]) {
    for (const n of (await g.readdir(dir)) ?? []) {
      if (!/^[A-Za-z0-9_]+$/.test(n)) continue;
      const b = await g.readFile(`${dir}/${n}`);
      if (b !== null && b.length < 4096) vars[n] = new TextDecoder().decode(b).split("\n")[0]!.trim();
    }
  }
  return { ...vars, ...base };
}

/** Every repository defined in the guest's /etc/yum.repos.d (enabled or not). */
export async function readGuestRepos(g: GuestFileReader, vars: Record<string, string>): Promise<YumRepo[]> {
  const out: YumRepo[] = [];
  const names = ((await g.readdir("/etc/yum.repos.d")) ?? []).filter((n) => n.endsWith(".repo")).sort();
  for (const n of names) {
    const file = `/etc/yum.repos.d/${n}`;
    const b = await g.readFile(file);
    if (b === null) continue;
    if (b.length > 1 << 20) throw new RepoFormatError("repository file over 1 MiB", { file });
    out.push(...parseRepoFile(new TextDecoder().decode(b), file, vars));
  }
  return out;
}
