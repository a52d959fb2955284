/**
 * Test repositories made by the real tools: one spec per package built with rpmbuild, then
 * createrepo_c over the directory.
 */
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runTool } from "@imgpatch/testkit";

export interface SpecPkg {
  name: string;
  version?: string;
  release?: string;
  epoch?: number;
  arch?: string;
  provides?: string[];
  requires?: string[];
  conflicts?: string[];
  obsoletes?: string[];
  recommends?: string[];
  suggests?: string[];
  supplements?: string[];
  enhances?: string[];
  /** Files the package holds (content "<name> <path>\n"). */
  files?: string[];
  /** Files marked %config(noreplace). */
  config?: string[];
  /** Scriptlet bodies by section name (post, pre, postun, preun, posttrans). */
  scripts?: Record<string, string>;
}

function spec(p: SpecPkg): string {
  const lines = [
    `Name: ${p.name}`,
    `Version: ${p.version ?? "1.0"}`,
    `Release: ${p.release ?? "1"}`,
    ...(p.epoch !== undefined ? [`Epoch: ${p.epoch}`] : []),
    "Summary: test package",
    "License: MIT",
    // A foreign arch cannot be a BuildArch on this host; rpmbuild's --target sets it instead.
    ...((p.arch ?? "noarch") === "noarch" ? ["BuildArch: noarch"] : []),
    "%global debug_package %{nil}",
    "%global _build_id_links none",
    "%global __os_install_post %{nil}",
    "AutoReqProv: no",
  ];
  const tags: [keyof SpecPkg, string][] = [
    ["provides", "Provides"],
    ["requires", "Requires"],
    ["conflicts", "Conflicts"],
    ["obsoletes", "Obsoletes"],
    ["recommends", "Recommends"],
    ["suggests", "Suggests"],
    ["supplements", "Supplements"],
    ["enhances", "Enhances"],
  ];
  for (const [k, tag] of tags)
    for (const v of (p[k] as string[] | undefined) ?? []) lines.push(`${tag}: ${v}`);
  lines.push("%description", "test package", "%install");
  const files = [...(p.files ?? []), ...(p.config ?? [])];
  for (const f of files) {
    const dir = f.slice(0, f.lastIndexOf("/"));
    lines.push(`mkdir -p %{buildroot}${dir}`, `echo '${p.name} ${f}' > %{buildroot}${f}`);
  }
  for (const [sec, body] of Object.entries(p.scripts ?? {})) lines.push(`%${sec}`, body);
  lines.push("%files");
  for (const f of p.files ?? []) lines.push(f);
  for (const f of p.config ?? []) lines.push(`%config(noreplace) ${f}`);
  return `${lines.join("\n")}\n`;
}

/** Build each package with rpmbuild into `outDir` (two at a time); returns the .rpm paths. */
export async function buildRpms(workDir: string, outDir: string, pkgs: SpecPkg[]): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const queue = [...pkgs.entries()];
  const worker = async () => {
    for (;;) {
      const next = queue.shift();
      if (next === undefined) return;
      const [i, p] = next;
      const top = join(workDir, `build-${i}-${p.name}`);
      await mkdir(top, { recursive: true });
      const specFile = join(top, `${p.name}.spec`);
      await writeFile(specFile, spec(p));
      const r = await runTool("rpmbuild", [
        "-bb",
        "--nodeps",
        "--quiet",
        "--define",
        `_topdir ${top}`,
        "--define",
        `_rpmdir ${outDir}`,
        "--define",
        "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
        "--target",
        p.arch ?? "noarch",
        specFile,
      ]);
      if (r.exitCode !== 0) throw new Error(`rpmbuild ${p.name}: ${r.stderr}`);
    }
  };
  await Promise.all([worker(), worker()]);
  return (await readdir(outDir)).filter((f) => f.endsWith(".rpm")).map((f) => join(outDir, f));
}

/** Build the packages and run createrepo_c over them; returns the repository directory. */
export async function makeRepo(
  workDir: string,
  name: string,
  pkgs: SpecPkg[],
  createrepoArgs: string[] = [],
): Promise<string> {
  const repo = join(workDir, name);
  await buildRpms(workDir, repo, pkgs);
  const r = await runTool("createrepo_c", ["--quiet", "--no-database", ...createrepoArgs, repo]);
  if (r.exitCode !== 0) throw new Error(`createrepo_c: ${r.stderr}`);
  return repo;
}
