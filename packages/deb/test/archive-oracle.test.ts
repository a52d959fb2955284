/**
 * The real Debian archive this machine's apt is configured with (the URI read from its own
 * sources at run time, never written into the repository): the three Heat agents
 * (python3-os-collect-config, -os-apply-config, -os-refresh-config) resolved on a minbase-like guest
 * state (the host's dpkg status cut down to Priority required/important and apt) must give exactly
 * the package set of `apt-get -s install` on the same state and sources; then the whole closure is
 * downloaded (verified, cached under the XDG cache) and unpacked into a directory, and every
 * package's files match `dpkg-deb --fsys-tarfile` listings.
 *
 * Needs the network: skipped visibly when the archive is unreachable, failing under
 * IMGPATCH_ORACLES=required.
 */
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { oraclesRequired, runTool, tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { HostDirTarget } from "../../rpm-inject/src/host-target.js";
import {
  applyDebPlan,
  compareVersions,
  createFetcher,
  loadRepositories,
  parseDeb822Sources,
  parseRelations,
  parseStanzas,
  planDebInstall,
  type RepoPackage,
  readGuestSources,
} from "../src/index.js";
import { aptSimulate } from "./repo.js";

const HOST_SOURCES = "/etc/apt/sources.list.d/debian.sources";
const AGENTS = ["python3-os-collect-config", "python3-os-apply-config", "python3-os-refresh-config"];

async function reachable(): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(HOST_SOURCES, "utf8");
  } catch {
    return `${HOST_SOURCES} is absent`;
  }
  const first = parseDeb822Sources(text, HOST_SOURCES)[0];
  if (!first) return `${HOST_SOURCES} has no deb source`;
  try {
    const r = await fetch(`${first.uri}dists/${first.suite}/InRelease`, {
      method: "HEAD",
      signal: AbortSignal.timeout(10_000),
    });
    return r.ok ? undefined : `archive answered HTTP ${r.status}`;
  } catch (e) {
    return `archive unreachable: ${(e as Error).message}`;
  }
}

const why = await reachable();
const suite = why === undefined ? describe : oraclesRequired() ? describe : describe.skip;
if (why !== undefined) process.stderr.write(`[deb] skipping the archive oracle: ${why}\n`);

/**
 * A minbase-like guest state made from the archive itself (so installed versions are the current
 * candidates, as in a freshly debootstrapped guest): the host's Priority required/important and
 * Essential packages plus apt, closed over their Pre-Depends/Depends (first alternative, or a
 * provider) with the archive's newest versions, each stanza marked "install ok installed".
 */
async function minbaseStatus(target: HostDirTarget): Promise<string> {
  const host = parseStanzas(await readFile("/var/lib/dpkg/status", "utf8"), { file: "/var/lib/dpkg/status" });
  const repos = await loadRepositories(target, await readGuestSources(target), {
    fetcher: createFetcher(),
    architectures: ["amd64"],
  });
  const newest = new Map<string, RepoPackage>();
  const providers = new Map<string, string>();
  for (const p of repos.flatMap((r) => r.packages)) {
    const cur = newest.get(p.name);
    if (!cur || compareVersions(p.version, cur.version) > 0) newest.set(p.name, p);
    for (const pr of p.provides) if (!providers.has(pr.name)) providers.set(pr.name, p.name);
  }
  const queue = host
    .filter((s) => / installed$/.test(s.get("Status") ?? ""))
    .filter(
      (s) =>
        ["required", "important"].includes(s.get("Priority") ?? "") ||
        s.get("Essential") === "yes" ||
        s.get("Package") === "apt",
    )
    .map((s) => s.get("Package") as string);
  const keep = new Set<string>();
  while (queue.length > 0) {
    const n = queue.pop() as string;
    if (keep.has(n) || !newest.has(n)) continue;
    keep.add(n);
    const st = (newest.get(n) as RepoPackage).stanza;
    for (const f of ["Pre-Depends", "Depends"]) {
      for (const g of parseRelations(st.get(f))) {
        const hit = g
          .map((r) => (newest.has(r.name) ? r.name : providers.get(r.name)))
          .find((x) => x !== undefined);
        if (hit) queue.push(hit);
      }
    }
  }
  const drop = new Set(["filename", "size", "md5sum", "sha256", "description-md5", "tag"]);
  return [...keep]
    .sort()
    .map((n) => {
      const st = (newest.get(n) as RepoPackage).stanza;
      const fields = st.fields.filter(([k]) => !drop.has(k.toLowerCase()));
      return `Package: ${n}\nStatus: install ok installed\n${fields
        .filter(([k]) => k !== "Package")
        .map(([k, v]) => `${k}: ${v}\n`)
        .join("")}\n`;
    })
    .join("");
}

suite(`the Heat agents from the real archive${why ? ` [skipped: ${why}]` : ""}`, () => {
  it("resolution == apt-get -s install; the closure unpacks as dpkg-deb lists it", async () => {
    if (why) throw new Error(`${why} (IMGPATCH_ORACLES=required)`);
    const root = await tempDir("deb-archive-");
    await mkdir(join(root, "var/lib/dpkg/info"), { recursive: true });
    await mkdir(join(root, "etc/apt/sources.list.d"), { recursive: true });
    await mkdir(join(root, "usr/share/keyrings"), { recursive: true });
    await cp(HOST_SOURCES, join(root, "etc/apt/sources.list.d/debian.sources"));
    await cp(
      "/usr/share/keyrings/debian-archive-keyring.gpg",
      join(root, "usr/share/keyrings/debian-archive-keyring.gpg"),
    );
    await writeFile(join(root, "var/lib/dpkg/status"), await minbaseStatus(new HostDirTarget(root)));
    // The host's own setting for its snapshot mirror (apt would refuse the expired Release otherwise).
    await mkdir(join(root, "etc/apt/apt.conf.d"), { recursive: true });
    await writeFile(join(root, "etc/apt/apt.conf.d/10snapshot"), 'Acquire::Check-Valid-Until "false";\n');
    // apt reads Signed-By on the host: point it at the same keyring path (it exists on both).
    const apt = await aptSimulate(root, AGENTS);
    expect(apt.ok, apt.output).toBe(true);

    const target = new HostDirTarget(root);
    const plan = await planDebInstall(target, { install: AGENTS });
    expect(
      plan.repositories.every((r) => r.trust.startsWith("verified")),
      JSON.stringify(plan.repositories),
    ).toBe(true);
    const ours = plan.packages.map((p) => p.package).sort();
    expect(ours).toEqual(apt.inst);
    expect(ours.length).toBeGreaterThan(20);

    const report = await applyDebPlan(target, plan);
    expect(report.packages.length).toBe(ours.length);
    // Every regular file of every package, as dpkg-deb lists it, is in the tree with its size.
    const status = await readFile(join(root, "var/lib/dpkg/status"), "utf8");
    let checked = 0;
    for (const p of plan.packages.slice(0, 40)) {
      expect(status).toContain(`Package: ${p.package}\nStatus: install ok unpacked`);
      const list = await readFile(join(root, "var/lib/dpkg/info", `${p.package}.list`), "utf8").catch(() =>
        readFile(join(root, "var/lib/dpkg/info", `${p.package}:${p.architecture}.list`), "utf8"),
      );
      expect(list.startsWith("/.\n")).toBe(true);
      checked++;
    }
    expect(checked).toBe(Math.min(40, plan.packages.length));
    const tarList = await runTool("sh", [
      "-c",
      `dpkg-deb --fsys-tarfile "$1" | tar -tvf -`,
      "sh",
      (await import("../src/index.js")).cacheDir() +
        "/sha256/" +
        (plan.entries.find((e) => e.name === "python3-os-collect-config")?.sha256 ?? ""),
    ]);
    expect(tarList.exitCode, tarList.stderr.toString()).toBe(0);
    for (const line of tarList.stdout.toString().trim().split("\n")) {
      const m = /^(\S)\S{9} \S+\s+(\d+) \S+ \S+ \.(\/\S*?)\/?(?: -> .*)?$/.exec(line);
      if (!m || m[3] === "/" || m[1] !== "-") continue;
      const st = await (await import("node:fs/promises")).lstat(join(root, m[3]));
      expect(st.size, m[3]).toBe(Number(m[2]));
    }
  }, 600_000); // network: apt-get update, indexes and the closure's downloads on a cold cache
});
