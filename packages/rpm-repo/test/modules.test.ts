/**
 * Modular filtering against dnf: a repository with module streams (modules.yaml added by
 * modifyrepo_c) and a non-modular package of the same name; the guest's /etc/dnf/modules.d decides.
 */
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { RepoFormatError } from "../src/errors.js";
import { planInstall } from "../src/install.js";
import { loadYaml, parseModulesYaml } from "../src/modules.js";
import { nevra } from "../src/package-meta.js";
import { dnfHome, dnfInstall } from "./dnf-oracle.js";
import { makeRepo } from "./repo-builder.js";

const stream = (s: string, v: string) => `---
document: modulemd
version: 2
data:
  name: nodejs
  stream: "${s}"
  version: 1
  context: c0ffee00
  arch: noarch
  summary: node
  description: node
  license:
    module: [MIT]
  artifacts:
    rpms:
      - nodejs-0:${v}-1.noarch
...
`;
const YAML = `${stream("10", "10.0")}${stream("12", "12.0")}---
document: modulemd-defaults
version: 1
data:
  module: nodejs
  stream: "10"
...
`;

describeWithTools(
  ["rpmbuild", "createrepo_c", "modifyrepo_c", "dnf", "rpm"],
  "modular filtering against dnf",
  () => {
    let dir = "";
    let repo = "";
    let home = "";
    beforeAll(async () => {
      dir = await tempDir("rpm-modules-");
      home = await dnfHome(dir);
      repo = await makeRepo(dir, "repo", [
        { name: "app", requires: ["nodejs"] },
        { name: "nodejs", version: "8.0" },
        { name: "nodejs", version: "10.0" },
        { name: "nodejs", version: "12.0" },
      ]);
      await writeFile(join(dir, "modules.yaml"), YAML);
      const r = await runTool("modifyrepo_c", [
        "--mdtype=modules",
        join(dir, "modules.yaml"),
        join(repo, "repodata"),
      ]);
      expect(r.exitCode, r.stderr).toBe(0);
    });

    for (const [title, state, want] of [
      ["the default stream when the guest says nothing", null, "nodejs-10.0-1.noarch"],
      [
        "the enabled stream",
        "[nodejs]\nname=nodejs\nstream=12\nprofiles=\nstate=enabled\n",
        "nodejs-12.0-1.noarch",
      ],
      [
        "no stream when the module is disabled",
        "[nodejs]\nname=nodejs\nstream=\nprofiles=\nstate=disabled\n",
        "nodejs-8.0-1.noarch",
      ],
    ] as const) {
      it(title, async () => {
        const root = join(dir, `root-${title.length}`);
        await mkdir(join(root, "etc/dnf/modules.d"), { recursive: true });
        if (state !== null) await writeFile(join(root, "etc/dnf/modules.d/nodejs.module"), state);
        expect(
          (await runTool("rpm", ["--root", root, "--dbpath", "/var/lib/rpm", "--initdb"])).exitCode,
        ).toBe(0);
        const dnf = await dnfInstall(home, root, [{ id: "r", dir: repo }], ["app"]);
        expect(dnf.resolved, dnf.output).toBe(true);
        const guest = {
          readFile: (p: string) => readFile(join(root, p)).catch(() => null),
          readdir: (p: string) => readdir(join(root, p)).catch(() => null),
        };
        const plan = await planInstall({ guest, specs: ["app"], repos: [repo], basearch: "x86_64" });
        const ours = plan.items.map((t) => nevra(t.pkg)).sort();
        expect(ours).toEqual(dnf.install);
        expect(ours).toContain(want);
      });
    }

    it("refuses malformed module metadata with a typed error", async () => {
      await loadYaml();
      expect(() => parseModulesYaml("---\ndocument: [unclosed\n", "modules.yaml")).toThrow(RepoFormatError);
      expect(parseModulesYaml("--- 42\n", "m").streams).toEqual([]);
    });
  },
);
