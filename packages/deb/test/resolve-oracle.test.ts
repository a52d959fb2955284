/**
 * Resolver oracle: a synthetic repository (packages made by dpkg-deb, indexes written here) and a
 * guest state (dpkg status, apt.conf.d, preferences.d) are given to `apt-get -s install` (with
 * -o Dir= pointing at the guest directory) and to resolveInstall over loadRepositories; the
 * package sets must be the same, and where apt refuses we refuse with a DebResolveError.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { HostDirTarget } from "../../rpm-inject/src/host-target.js";
import {
  createFetcher,
  DebResolveError,
  loadRepositories,
  readAptSettings,
  readDpkgState,
  readGuestSources,
  resolveInstall,
} from "../src/index.js";
import { buildDeb, type DebSpec } from "./build-deb.js";
import { aptSimulate, makeRepo } from "./repo.js";

const P = (name: string, fields: Record<string, string> = {}, version = "1.0-1", arch = "all"): DebSpec => ({
  name,
  version,
  arch,
  fields,
  files: { [`usr/share/doc/${name}/x`]: name },
  compression: "gzip",
});

const REPO: DebSpec[] = [
  P("app", {
    Depends: "libfoo (>= 2.0), mta | exim4, python3:any, helper",
    Recommends: "extra-rec, missing-rec",
    Suggests: "sugg",
  }),
  P("libfoo", {}, "1.5-1"),
  P("libfoo", { Depends: "libc6 (>= 2.30)" }, "2.1-1"),
  P("postfix", { Provides: "mta", Priority: "optional", Conflicts: "exim4" }),
  P("exim4", { Provides: "mta", Priority: "standard" }),
  P(
    "python3",
    { "Multi-Arch": "allowed", "Pre-Depends": "python3-minimal (= 3.11.2-1)" },
    "3.11.2-1",
    "amd64",
  ),
  P("python3-minimal", {}, "3.11.2-1", "amd64"),
  P("helper", { Depends: "app", Breaks: "oldthing (<< 2)" }),
  P("extra-rec", { Depends: "libfoo" }),
  P("sugg"),
  P("needs-upgrade", { Depends: "libc6 (>= 2.40)" }),
  P("libc6", {}, "2.41-1", "amd64"),
  P("vpkg-user", { Depends: "virtual-thing (>= 2)" }),
  P("vprov", { Provides: "virtual-thing (= 3)" }),
  P("anyuser", { Depends: "notallowed:any" }),
  P("notallowed", {}, "1.0-1", "amd64"),
  P("pinned", {}, "1.0-1"),
  P("pinned", {}, "2.0-1"),
  P("steer", { Depends: "conflicting | fallback" }),
  P("conflicting", { Conflicts: "base-thing" }),
  P("fallback"),
];

const STATUS = (extra = "") => `Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Version: 2.36-9
Description: C library

Package: base-thing
Status: install ok installed
Priority: required
Architecture: all
Version: 1.0
Description: base

${extra}`;

let repoDir: string;

async function guest(opts: { status?: string; aptConf?: string; prefs?: string } = {}): Promise<string> {
  const root = await tempDir("deb-resolve-");
  await mkdir(join(root, "var/lib/dpkg"), { recursive: true });
  await mkdir(join(root, "etc/apt/apt.conf.d"), { recursive: true });
  await mkdir(join(root, "etc/apt/preferences.d"), { recursive: true });
  await writeFile(join(root, "var/lib/dpkg/status"), opts.status ?? STATUS());
  await writeFile(join(root, "etc/apt/sources.list"), `deb [trusted=yes] file://${repoDir} stable main\n`);
  if (opts.aptConf) await writeFile(join(root, "etc/apt/apt.conf.d/50test"), opts.aptConf);
  if (opts.prefs) await writeFile(join(root, "etc/apt/preferences.d/test.pref"), opts.prefs);
  return root;
}

async function ours(
  root: string,
  names: string[],
  installRecommends?: boolean,
): Promise<{ ok: boolean; inst: string[]; error?: string }> {
  const target = new HostDirTarget(root);
  const state = await readDpkgState(target);
  const settings = await readAptSettings(target);
  const repos = await loadRepositories(target, await readGuestSources(target), {
    fetcher: createFetcher({ cache: join(root, "cache") }),
    architectures: ["amd64"],
  });
  try {
    const plan = resolveInstall(
      names.map((n) => (n.includes("=") ? { name: n.split("=")[0], version: n.split("=")[1] } : { name: n })),
      repos.flatMap((r) => r.packages),
      state?.stanzas ?? [],
      { settings, architectures: ["amd64"], installRecommends },
    );
    return { ok: true, inst: plan.install.map((p) => p.pkg.name).sort() };
  } catch (e) {
    expect(e).toBeInstanceOf(DebResolveError);
    return { ok: false, inst: [], error: (e as Error).message };
  }
}

/**
 * Where apt would remove or upgrade an installed package, imgpatch deliberately does neither: it
 * steers to the next alternative or refuses naming the package. Those cases check apt does what we
 * expect of it and that we diverge exactly there.
 */
type Divergence = { aptRemoves: string; ours: string[] } | { aptUpgrades: string; refusalNames: string };

const CASES: { name: string; args: string[]; guest?: Parameters<typeof guest>[0]; diverge?: Divergence }[] = [
  { name: "versions, alternatives, virtual providers, :any, Pre-Depends, Recommends", args: ["app"] },
  { name: "--no-install-recommends", args: ["--no-install-recommends", "app"] },
  {
    name: "Install-Recommends false in apt.conf.d",
    args: ["app"],
    guest: { aptConf: 'APT { Install-Recommends "false"; };\n' },
  },
  { name: "Install-Suggests true", args: ["app"], guest: { aptConf: 'APT::Install-Suggests "true";\n' } },
  {
    name: "already-installed packages satisfy",
    args: ["app"],
    guest: {
      status: STATUS(
        "Package: exim4\nStatus: install ok installed\nArchitecture: all\nVersion: 1.0-1\nProvides: mta\nDescription: x\n\n",
      ),
    },
  },
  { name: "versioned Provides", args: ["vpkg-user"] },
  {
    name: "Conflicts with an installed package steer to the next alternative (apt removes it)",
    args: ["steer"],
    diverge: { aptRemoves: "base-thing", ours: ["fallback", "steer"] },
  },
  {
    name: "pinning picks the lower version",
    args: ["pinned"],
    guest: { prefs: "Package: pinned\nPin: version 1.0*\nPin-Priority: 900\n" },
  },
  { name: "candidate is the highest version", args: ["pinned"] },
  { name: "name=version", args: ["pinned=1.0-1"] },
  {
    name: "needing an installed package upgraded is refused, naming it (apt upgrades it)",
    args: ["needs-upgrade"],
    diverge: { aptUpgrades: "libc6", refusalNames: "installed libc6 2.36-9" },
  },
  { name: ":any without Multi-Arch: allowed is unsatisfiable", args: ["anyuser"] },
  { name: "unknown package", args: ["no-such-package"] },
];

describeWithTools(["apt-get", "dpkg-deb"], "resolveInstall vs apt-get -s install", () => {
  beforeAll(async () => {
    const base = await tempDir("deb-repo-");
    const debs = [];
    for (const spec of REPO) debs.push(await buildDeb(spec, base));
    repoDir = join(base, "repo");
    await makeRepo(repoDir, debs);
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const root = await guest(c.guest);
      const apt = await aptSimulate(root, c.args);
      const noRec = c.args.includes("--no-install-recommends");
      const mine = await ours(
        root,
        c.args.filter((a) => !a.startsWith("--")),
        noRec ? false : undefined,
      );
      if (c.diverge && "aptRemoves" in c.diverge) {
        expect(apt.remv, apt.output).toContain(c.diverge.aptRemoves);
        expect(mine.inst).toEqual(c.diverge.ours);
        return;
      }
      if (c.diverge && "aptUpgrades" in c.diverge) {
        expect(apt.upgraded, apt.output).toContain(c.diverge.aptUpgrades);
        expect(mine.ok).toBe(false);
        expect(mine.error).toContain(c.diverge.refusalNames);
        return;
      }
      expect(mine.ok, `${mine.error ?? ""}\n--- apt:\n${apt.output}`).toBe(apt.ok);
      expect(mine.inst).toEqual(apt.inst);
    });
  }
});
