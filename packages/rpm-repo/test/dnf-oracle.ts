/**
 * The oracle: `dnf --installroot=ROOT --assumeno install …` (dnf 4 + libsolv), with the
 * transaction table parsed into package lists. rpm on Debian keeps its database in ~/.rpmdb, so a
 * private HOME with `%_dbpath /var/lib/rpm` makes dnf and rpm use ROOT/var/lib/rpm.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runTool } from "@imgpatch/testkit";

export interface DnfRepo {
  id: string;
  dir: string;
  priority?: number;
  cost?: number;
}

export interface DnfResult {
  /** true when dnf resolved the request (then aborted on --assumeno). */
  resolved: boolean;
  /** name-[epoch:]version-release.arch of every package dnf would install. */
  install: string[];
  /** Packages dnf would upgrade, remove or replace (we refuse those). */
  other: string[];
  output: string;
}

export async function dnfHome(dir: string): Promise<string> {
  const home = join(dir, "dnf-home");
  await mkdir(home, { recursive: true });
  await writeFile(join(home, ".rpmmacros"), "%_dbpath /var/lib/rpm\n");
  await writeFile(join(home, "dnf.conf"), "[main]\n");
  return home;
}

export async function dnfInstall(
  home: string,
  root: string,
  repos: DnfRepo[],
  specs: string[],
  extra: string[] = [],
): Promise<DnfResult> {
  const args = [
    `--installroot=${root}`,
    `--config=${join(home, "dnf.conf")}`,
    "--setopt=reposdir=/dev/null",
    `--setopt=cachedir=${join(root, ".dnf-cache")}`,
    "--setopt=install_weak_deps=True",
    "--nogpgcheck",
    "--releasever=9",
    "--forcearch=x86_64",
    "--disableplugin=*",
    ...extra,
  ];
  for (const r of repos) {
    args.push(`--repofrompath=${r.id},file://${r.dir}`);
    if (r.priority !== undefined) args.push(`--setopt=${r.id}.priority=${r.priority}`);
    if (r.cost !== undefined) args.push(`--setopt=${r.id}.cost=${r.cost}`);
  }
  args.push("--assumeno", "install", ...specs);
  const res = await runTool("dnf", args, { env: { HOME: home } });
  const output = `${res.stdout.toString()}\n${res.stderr}`;
  const resolved = /Dependencies resolved\./.test(output) || /Nothing to do\./.test(output);
  const install: string[] = [];
  const other: string[] = [];
  let section: "install" | "other" | null = null;
  const lines = res.stdout.toString().split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^Installing( dependencies| weak dependencies)?:$/.test(line)) {
      section = "install";
      continue;
    }
    if (/^[A-Z][A-Za-z ]*:$/.test(line)) {
      section = "other";
      continue;
    }
    if (line.trim() === "" || line.startsWith("=") || !line.startsWith(" ")) {
      if (!line.startsWith(" ")) section = line.trim() === "" ? section : null;
      continue;
    }
    if (section === null) continue;
    let cols = line.trim().split(/\s+/);
    // A long name takes its own line; the other columns follow on the next.
    if (cols.length === 1 && i + 1 < lines.length) cols = [cols[0]!, ...lines[++i]!.trim().split(/\s+/)];
    if (cols[0] === "replacing") {
      other.push(`replacing ${cols[1]} ${cols[2]}`);
      continue;
    }
    if (cols.length < 4) continue;
    const [name, arch, version] = cols;
    (section === "install" ? install : other).push(`${name}-${version}.${arch}`);
  }
  return { resolved, install: install.sort(), other: other.sort(), output };
}
