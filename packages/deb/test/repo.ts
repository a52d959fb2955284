/** A synthetic flat-free apt repository (dists/SUITE/main/binary-ARCH/Packages + Release) on disk. */
import { createHash } from "node:crypto";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { runTool } from "@imgpatch/testkit";
import { expect } from "vitest";

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

/** Writes pool/, the Packages index and an (unsigned) Release for the given .debs. */
export async function makeRepo(
  dir: string,
  debs: string[],
  suite = "stable",
  arch = "amd64",
  releaseExtra = "",
  origin = "imgpatch-test",
): Promise<void> {
  await mkdir(join(dir, "pool/main"), { recursive: true });
  const stanzas: string[] = [];
  for (const deb of debs) {
    const dest = join(dir, "pool/main", basename(deb));
    await copyFile(deb, dest);
    const bytes = await readFile(dest);
    const info = await runTool("dpkg-deb", ["-f", deb]);
    expect(info.exitCode).toBe(0);
    const control = info.stdout.toString("utf8").trimEnd();
    stanzas.push(
      `${control}\nFilename: pool/main/${basename(deb)}\nSize: ${bytes.length}\nMD5sum: ${md5(bytes)}\nSHA256: ${sha256(bytes)}\n`,
    );
  }
  const rel = `main/binary-${arch}/Packages`;
  await mkdir(join(dir, "dists", suite, `main/binary-${arch}`), { recursive: true });
  const packages = Buffer.from(stanzas.join("\n"));
  await writeFile(join(dir, "dists", suite, rel), packages);
  const release = `Origin: ${origin}\nLabel: ${origin}-label\nSuite: ${suite}\nCodename: ${suite === "unstable" ? "sid" : suite}\nArchitectures: ${arch}\nComponents: main\n${releaseExtra}SHA256:\n ${sha256(packages)} ${packages.length} ${rel}\n`;
  await writeFile(join(dir, "dists", suite, "Release"), release);
}

/** apt-get -s install on a directory guest: the set of "Inst" package names, or the error text. */
export async function aptSimulate(
  root: string,
  args: string[],
  arch = "amd64",
): Promise<{
  ok: boolean;
  inst: string[];
  output: string;
  remv: string[];
  upgraded: string[];
  /** "name=version" of every Inst line, sorted. */
  versions: string[];
}> {
  const opts = [
    "-o",
    `Dir=${root}`,
    "-o",
    `Dir::State::status=${root}/var/lib/dpkg/status`,
    "-o",
    `APT::Architecture=${arch}`,
    "-o",
    "APT::Architectures=",
    "-o",
    "Debug::NoLocking=1",
    "-o",
    "Dir::Log=/dev/null",
  ];
  for (const d of [
    "var/lib/apt/lists/partial",
    "var/cache/apt/archives/partial",
    "etc/apt/apt.conf.d",
    "etc/apt/preferences.d",
  ])
    await mkdir(join(root, d), { recursive: true });
  // apt reads its configuration files before -o options: APT_CONFIG (read first) moves Dir, so the
  // guest's apt.conf.d and preferences.d are the ones read, never the host's.
  const conf = join(root, "apt-oracle.conf");
  await writeFile(conf, `Dir "${root}/";\n`);
  const env = { APT_CONFIG: conf };
  const up = await runTool("apt-get", [...opts, "update"], { timeoutMs: 60_000, env });
  expect(up.exitCode, up.stderr.toString() + up.stdout.toString()).toBe(0);
  const r = await runTool("apt-get", [...opts, "-s", "install", ...args], { timeoutMs: 60_000, env });
  const output = r.stdout.toString("utf8") + r.stderr.toString("utf8");
  const inst = [...output.matchAll(/^Inst (\S+)/gm)].map((m) => m[1].replace(/:.*$/, "")).sort();
  const remv = [...output.matchAll(/^Remv (\S+)/gm)].map((m) => m[1]);
  const upgraded = [...output.matchAll(/^Inst (\S+) \[/gm)].map((m) => m[1].replace(/:.*$/, ""));
  const versions = [...output.matchAll(/^Inst (\S+) (?:\[\S+\] )?\((\S+)/gm)]
    .map((m) => `${m[1].replace(/:.*$/, "")}=${m[2]}`)
    .sort();
  return { ok: r.exitCode === 0, inst, output, remv, upgraded, versions };
}
