/**
 * apt_preferences(5) and APT::Default-Release against `apt-get -s install` on the same guest state:
 * four suites of one synthetic repository (stable and unstable/sid from origin "imgpatch-test",
 * testing from "other-origin", experimental NotAutomatic) hold versions 1.0, 2.0, 2.5 and 3.0 of
 * "multi"; each case's preferences / apt.conf must make us pick exactly the package versions apt
 * picks (or refuse where apt refuses).
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

const P = (name: string, version: string, fields: Record<string, string> = {}): DebSpec => ({
  name,
  version,
  fields,
  files: { [`usr/share/doc/${name}/${version}`]: name },
  compression: "gzip",
});

/** suite → [origin, extra Release fields, packages]. */
const SUITES: Record<string, [string, string, DebSpec[]]> = {
  stable: [
    "imgpatch-test",
    "",
    [P("multi", "1.0-1"), P("needs-new-multi", "1.0-1", { Depends: "multi (>= 2)" }), P("lib", "1.0-1")],
  ],
  testing: [
    "other-origin",
    "",
    [P("multi", "2.0-1"), P("lib", "2.0-1"), P("user", "1.0-1", { Depends: "lib" })],
  ],
  unstable: ["imgpatch-test", "", [P("multi", "2.5-1")]],
  experimental: ["imgpatch-test", "NotAutomatic: yes\n", [P("multi", "3.0-1")]],
};

let repoDir: string;

async function guest(opts: { prefs?: string; aptConf?: string }): Promise<string> {
  const root = await tempDir("deb-pin-");
  await mkdir(join(root, "var/lib/dpkg"), { recursive: true });
  await mkdir(join(root, "etc/apt/apt.conf.d"), { recursive: true });
  await mkdir(join(root, "etc/apt/preferences.d"), { recursive: true });
  await writeFile(join(root, "var/lib/dpkg/status"), "");
  await writeFile(
    join(root, "etc/apt/sources.list"),
    Object.keys(SUITES)
      .map((s) => `deb [trusted=yes] file://${repoDir} ${s} main\n`)
      .join(""),
  );
  if (opts.aptConf) await writeFile(join(root, "etc/apt/apt.conf.d/50test"), opts.aptConf);
  if (opts.prefs) await writeFile(join(root, "etc/apt/preferences.d/test.pref"), opts.prefs);
  return root;
}

async function ours(
  root: string,
  names: string[],
): Promise<{ ok: boolean; versions: string[]; error?: string }> {
  const target = new HostDirTarget(root);
  const state = await readDpkgState(target);
  const settings = await readAptSettings(target);
  const repos = await loadRepositories(target, await readGuestSources(target), {
    fetcher: createFetcher({ cache: join(root, "cache") }),
    architectures: ["amd64"],
    warn: () => {},
  });
  try {
    const plan = resolveInstall(
      names.map((n) => ({ name: n })),
      repos.flatMap((r) => r.packages),
      state?.stanzas ?? [],
      { settings, architectures: ["amd64"] },
    );
    return { ok: true, versions: plan.install.map((p) => `${p.pkg.name}=${p.pkg.version}`).sort() };
  } catch (e) {
    expect(e).toBeInstanceOf(DebResolveError);
    return { ok: false, versions: [], error: (e as Error).message };
  }
}

const pin = (pkg: string, what: string, prio: number) =>
  `Package: ${pkg}\nPin: ${what}\nPin-Priority: ${prio}\n`;

const CASES: {
  name: string;
  args: string[];
  prefs?: string;
  aptConf?: string;
  expect: string[] | "refused";
}[] = [
  { name: "no pins: the highest of the 500s (NotAutomatic is 1)", args: ["multi"], expect: ["multi=2.5-1"] },
  {
    name: "Default-Release stable (990)",
    args: ["multi"],
    aptConf: 'APT::Default-Release "stable";\n',
    expect: ["multi=1.0-1"],
  },
  {
    name: "Default-Release by codename (sid)",
    args: ["multi", "user"],
    aptConf: 'APT::Default-Release "sid";\n',
    expect: ["lib=2.0-1", "multi=2.5-1", "user=1.0-1"],
  },
  {
    name: "release a= pin lifts NotAutomatic",
    args: ["multi"],
    prefs: pin("multi", "release a=experimental", 600),
    expect: ["multi=3.0-1"],
  },
  {
    name: "release n= (codename) pin",
    args: ["multi"],
    prefs: pin("*", "release n=stable", 700),
    expect: ["multi=1.0-1"],
  },
  {
    name: "negative priority by origin: never from other-origin; a dependency then fails as in apt",
    args: ["needs-new-multi"],
    prefs: `${pin("*", "release o=other-origin", -1)}\n${pin("*", "release a=unstable", -1)}`,
    expect: "refused",
  },
  {
    name: "negative priority by label",
    args: ["multi", "user"],
    prefs: pin("*", "release l=other-origin-label", -10),
    expect: "refused",
  },
  {
    name: "origin pin (the empty host of file:// URIs)",
    args: ["multi"],
    prefs: pin("multi", 'origin ""', -1),
    expect: "refused",
  },
  {
    name: "version glob pin",
    args: ["multi"],
    prefs: pin("multi", "version 1.*", 700),
    expect: ["multi=1.0-1"],
  },
  {
    name: "a specific pin beats a general one",
    args: ["multi"],
    prefs: `${pin("*", "release a=unstable", -1)}\n${pin("multi", "release a=unstable", 800)}`,
    expect: ["multi=2.5-1"],
  },
  {
    name: "the first matching specific pin wins",
    args: ["multi"],
    prefs: `${pin("multi", "version 2.0*", 650)}\n${pin("multi", "release o=other-origin", 50)}`,
    expect: ["multi=2.0-1"],
  },
  {
    name: "glob package names in pins",
    args: ["multi", "user"],
    prefs: pin("mul*", "release a=stable", 900),
    expect: ["lib=2.0-1", "multi=1.0-1", "user=1.0-1"],
  },
  {
    name: "regex package names in pins",
    args: ["multi"],
    prefs: pin("/^m.lti$/", "release a=testing", 990),
    expect: ["multi=2.0-1"],
  },
  {
    name: "Default-Release and a general pin for the same release: the Default-Release's 990 comes first",
    args: ["multi"],
    aptConf: 'APT::Default-Release "testing";\n',
    prefs: pin("*", "release a=testing", 100),
    expect: ["multi=2.0-1"],
  },
  {
    name: "priorities equal: the higher version",
    args: ["multi"],
    prefs: `${pin("*", "release a=stable", 600)}\n${pin("*", "release a=testing", 600)}`,
    expect: ["multi=2.0-1"],
  },
];

describeWithTools(["apt-get", "dpkg-deb"], "pinning and Default-Release vs apt-get -s install", () => {
  beforeAll(async () => {
    const base = await tempDir("deb-pin-repo-");
    repoDir = join(base, "repo");
    for (const [suite, [origin, extra, specs]] of Object.entries(SUITES)) {
      const debs = [];
      for (const spec of specs) debs.push(await buildDeb(spec, base));
      await makeRepo(repoDir, debs, suite, "amd64", extra, origin);
    }
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const root = await guest({ prefs: c.prefs, aptConf: c.aptConf });
      const apt = await aptSimulate(root, c.args);
      const mine = await ours(root, c.args);
      expect(mine.ok, `${mine.error ?? ""}\n--- apt:\n${apt.output}`).toBe(apt.ok);
      expect(mine.versions, apt.output).toEqual(apt.versions);
      if (c.expect === "refused") expect(apt.ok, apt.output).toBe(false);
      else expect(apt.versions, apt.output).toEqual(c.expect);
    });
  }
});
