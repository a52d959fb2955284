// Install time for the benchmark's transaction: real packages with small payloads (two files each)
// for the NEVRAs the resolution chose, built with rpmbuild (one spec per version/arch group, one
// subpackage per package) and createrepo_c, cached between runs; then
//   ours: `imgpatch customize IMAGE --in-place --install … --repo …` on an ext4 image (the CLI's
//         --install path: resolve, fetch, rpm-inject, sqlite registration), e2fsck -fn after;
//   dnf:  `dnf --installroot=ROOT install -y …` on the same root as a directory (needs root).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface Nevra {
  name: string;
  version: string;
  release: string;
  arch: string;
}

/** "name-version-release.arch" (no epoch) as the resolution prints them. */
export function splitNevra(s: string): Nevra {
  const m = /^(.+)-([^-]+)-([^-]+)\.([^.]+)$/.exec(s);
  if (m === null) throw new Error(`not a NEVRA: ${s}`);
  return { name: m[1]!, version: m[2]!, release: m[3]!, arch: m[4]! };
}

function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 26, env: env ?? process.env });
  if (r.status !== 0) throw new Error(`${cmd} ${args.slice(0, 3).join(" ")}…: ${r.stderr || r.error}`);
  return r.stdout;
}

/**
 * The packages as a createrepo_c repository, built once per package set and kept in the cache, and
 * a base package for the guest's rpmdb (its architecture is read from what is installed).
 */
export function installRepo(pkgs: Nevra[]): { repo: string; baseRpm: string } {
  const key = createHash("sha256")
    .update(pkgs.map((p) => `${p.name}-${p.version}-${p.release}.${p.arch}`).join("\n"))
    .digest("hex")
    .slice(0, 16);
  const cache = join(
    process.env.BENCH_CACHE ?? join(homedir(), ".cache/imgpatch-bench"),
    `rpm-install-${key}`,
  );
  const repo = join(cache, "repo");
  const baseRpm = join(cache, "base/bench-base-1-1.x86_64.rpm");
  if (existsSync(join(repo, "repodata/repomd.xml")) && existsSync(baseRpm)) return { repo, baseRpm };
  rmSync(cache, { recursive: true, force: true });
  mkdirSync(repo, { recursive: true });
  const groups = new Map<string, Nevra[]>();
  for (const p of pkgs) {
    const k = `${p.version} ${p.release} ${p.arch}`;
    groups.set(k, [...(groups.get(k) ?? []), p]);
  }
  const base: Nevra = { name: "bench-base", version: "1", release: "1", arch: "x86_64" };
  let g = 0;
  for (const [k, list] of [...groups, ["1 1 x86_64 base", [base]] as [string, Nevra[]]]) {
    const [version, release, arch, where] = k.split(" ") as [string, string, string, string?];
    const top = join(cache, `build-${g++}`);
    mkdirSync(top, { recursive: true });
    const lines = [
      `Name: benchgroup${g}`,
      `Version: ${version}`,
      `Release: ${release}`,
      "Summary: bench",
      "License: MIT",
      ...(arch === "noarch" ? ["BuildArch: noarch"] : []),
      "%global debug_package %{nil}",
      "%global _build_id_links none",
      "%global __os_install_post %{nil}",
      "AutoReqProv: no",
      "%description",
      "bench",
    ];
    for (const p of list)
      lines.push(
        `%package -n ${p.name}`,
        "Summary: bench",
        "AutoReqProv: no",
        `%description -n ${p.name}`,
        "bench",
      );
    lines.push("%install");
    for (const p of list) {
      lines.push(
        `mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/share/doc/${p.name}`,
        `printf '#!/bin/sh\\necho ${p.name}\\n' > %{buildroot}/usr/bin/${p.name}`,
        `chmod 755 %{buildroot}/usr/bin/${p.name}`,
        `echo '${p.name} ${p.version}: a benchmark package' > %{buildroot}/usr/share/doc/${p.name}/README`,
      );
    }
    for (const p of list)
      lines.push(`%files -n ${p.name}`, `/usr/bin/${p.name}`, `/usr/share/doc/${p.name}/README`);
    const spec = join(top, "bench.spec");
    writeFileSync(spec, `${lines.join("\n")}\n`);
    run("rpmbuild", [
      "-bb",
      "--nodeps",
      "--quiet",
      "--define",
      `_topdir ${top}`,
      "--define",
      `_rpmdir ${where === "base" ? join(cache, "base") : join(repo, "Packages")}`,
      "--define",
      "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
      "--target",
      arch,
      spec,
    ]);
    rmSync(top, { recursive: true, force: true });
  }
  run("createrepo_c", ["--quiet", "--no-database", repo]);
  return { repo, baseRpm };
}

/** An RPM guest's root: passwd/group, os-release and a sqlite rpmdb holding the base package. */
export function guestRoot(root: string, baseRpm: string): void {
  mkdirSync(join(root, "etc"), { recursive: true });
  mkdirSync(join(root, "var/lib"), { recursive: true });
  writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
  writeFileSync(join(root, "etc/group"), "root:x:0:\n");
  writeFileSync(join(root, "etc/os-release"), 'ID="rhel"\nVERSION_ID="9.4"\n');
  run("rpm", ["--root", root, "--dbpath", "/var/lib/rpm", "--initdb"]);
  run("rpm", ["--root", root, "--dbpath", "/var/lib/rpm", "-i", "--justdb", "--nodeps", baseRpm]);
}

/** dnf's options for a run against one local repository only, with its own cache and config. */
export function dnfArgs(root: string, home: string, cache: string, id: string, repo: string): string[] {
  return [
    `--installroot=${root}`,
    `--config=${join(home, "dnf.conf")}`,
    "--setopt=reposdir=/dev/null",
    `--setopt=cachedir=${cache}`,
    "--nogpgcheck",
    "--disableplugin=*",
    "--forcearch=x86_64",
    "--releasever=9",
    `--repofrompath=${id},file://${repo}`,
  ];
}

export interface TimedRun {
  ms: number;
  userS: number;
  sysS: number;
  maxRssMiB: number;
}

/** Run under /usr/bin/time: wall, user, sys and peak RSS of the whole command. */
export function timed(
  cmd: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
  okStatus = [0],
): TimedRun & { out: string } {
  const t0 = performance.now();
  const r = spawnSync("/usr/bin/time", ["-f", "@@time %U %S %M", cmd, ...args], {
    encoding: "utf8",
    maxBuffer: 1 << 26,
    env: env ?? process.env,
  });
  const ms = performance.now() - t0;
  const m = /@@time (\S+) (\S+) (\d+)/.exec(r.stderr);
  if (!okStatus.includes(r.status ?? -1) || m === null) throw new Error(`${cmd}: ${r.stderr.slice(-2000)}`);
  return { ms, userS: Number(m[1]), sysS: Number(m[2]), maxRssMiB: Number(m[3]) / 1024, out: r.stdout };
}

const CLI = fileURLToPath(new URL("../../cli/dist/bin/imgpatch.js", import.meta.url));

/** `imgpatch customize --in-place --install` on a fresh copy of `image`; e2fsck -fn must pass. */
export function oursInstall(image: string, work: string, repo: string, names: string[]): TimedRun {
  const img = join(work, "ours.img");
  cpSync(image, img);
  const r = timed(process.execPath, [
    CLI,
    "customize",
    img,
    "--in-place",
    "--install",
    names.join(","),
    "--repo",
    repo,
  ]);
  const fsck = spawnSync("e2fsck", ["-fn", img], { encoding: "utf8" });
  if (fsck.status !== 0) throw new Error(`e2fsck -fn after our install: ${fsck.stdout}`);
  rmSync(img, { force: true });
  return r;
}

/** `dnf --installroot install -y` on a fresh copy of `root`; null (with the reason) unless root. */
export function dnfInstall(
  root: string,
  work: string,
  repo: string,
  names: string[],
  home: string,
): TimedRun | string {
  if (process.getuid?.() !== 0) return "not root: dnf --installroot runs rpm's transaction, which needs root";
  const r = join(work, "dnf-root");
  rmSync(r, { recursive: true, force: true });
  cpSync(root, r, { recursive: true });
  const cache = join(work, "dnf-cache");
  try {
    return timed("dnf", [...dnfArgs(r, home, cache, "inst", repo), "-y", "install", ...names], {
      ...process.env,
      HOME: home,
      LC_ALL: "C",
    });
  } finally {
    rmSync(r, { recursive: true, force: true });
    rmSync(cache, { recursive: true, force: true });
  }
}
