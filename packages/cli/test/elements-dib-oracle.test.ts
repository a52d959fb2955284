/**
 * Optional oracle against diskimage-builder itself: set IMGPATCH_DIB_SRC to a diskimage-builder
 * checkout (its diskimage_builder/ package and lib/dib-run-parts are used, with python3 + PyYAML).
 * Not one of the CI oracle tools, so it skips (visibly) when the variable is unset.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { applyElementsPlan } from "../src/elements/apply.js";
import { expandElements } from "../src/elements/closure.js";
import { findAllElements } from "../src/elements/elements-path.js";
import { mergeElements } from "../src/elements/merge.js";
import { ELEMENTS_HOOKS } from "../src/elements/payload.js";
import { buildElementsPlan } from "../src/elements/plan.js";
import { compareSortN } from "../src/elements/run-parts.js";
import { HostDirGuestFs } from "../src/guest/host-dir-fs.js";

const run = promisify(execFile);
const DIB = process.env.IMGPATCH_DIB_SRC ?? "";
const usable = DIB !== "" && existsSync(join(DIB, "diskimage_builder/element_dependencies.py"));
const STANDIN = fileURLToPath(new URL("../../../test-fixtures/elements", import.meta.url));
const REQUEST = [
  "os-collect-config",
  "os-refresh-config",
  "os-apply-config",
  "heat-config",
  "heat-config-script",
  "selinux-permissive",
];

if (!usable)
  process.stderr.write(
    "[cli] skipping diskimage-builder oracle: set IMGPATCH_DIB_SRC to a diskimage-builder checkout\n",
  );

describe.skipIf(!usable)("oracle: diskimage-builder element-info and dib-run-parts", () => {
  it("expands the same dependency closure as DIB's element_dependencies", async () => {
    // DIB insists on an operating-system element; a tiny one provides it.
    const os = await tempDir();
    await mkdir(join(os, "fake-os"));
    await writeFile(join(os, "fake-os", "element-provides"), "operating-system\n");
    const py = `import sys, json; sys.path.insert(0, ${JSON.stringify(DIB)})
from diskimage_builder import element_dependencies as ed
els = ed._expand_element_dependencies(["fake-os"] + sys.argv[1:], ed._find_all_elements(${JSON.stringify(`${os}:${STANDIN}`)}))
print(json.dumps(sorted(e.name for e in els if e.name != "fake-os")))`;
    const theirs = JSON.parse((await run("python3", ["-c", py, ...REQUEST])).stdout);
    const ours = expandElements(REQUEST, await findAllElements([STANDIN]), [STANDIN]).elements.map(
      (e) => e.name,
    );
    expect([...ours].sort()).toEqual(theirs);
  });

  it("orders every deferred phase exactly as dib-run-parts --list", async () => {
    const root = await tempDir();
    const fs = new HostDirGuestFs(root);
    const plan = await buildElementsPlan(fs, { elementsPath: STANDIN, elements: REQUEST });
    await applyElementsPlan(fs, plan);
    for (const d of plan.report.deferred) {
      const dir = join(root, ELEMENTS_HOOKS, d.phase);
      if (!existsSync(dir)) continue;
      const listed = (
        await run("bash", [join(DIB, "diskimage_builder/lib/dib-run-parts"), "--list", dir])
      ).stdout
        .trim()
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => l.slice(l.lastIndexOf("/") + 1));
      const ours = [
        ...d.scripts.map((s) => s.name),
        ...plan.report.replaced.filter((r) => r.phase === d.phase).map((r) => r.script),
      ].sort(compareSortN);
      expect(ours, d.phase).toEqual(listed);
    }
  });

  it("merges the same hooks tree (paths, types, modes) as DIB's generate_hooks", async () => {
    const os = await tempDir();
    await mkdir(join(os, "fake-os"));
    await writeFile(join(os, "fake-os", "element-provides"), "operating-system\n");
    const hooks = join(await tempDir(), "hooks");
    const script = `set -e
eval "$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1])
from diskimage_builder import element_dependencies as ed
ed._output_env_vars(ed._expand_element_dependencies(["fake-os"] + sys.argv[3:], ed._find_all_elements(sys.argv[2])))' "$@")"
export TMP_HOOKS_PATH=${JSON.stringify(hooks)}
source ${JSON.stringify(join(DIB, "diskimage_builder/lib/common-functions"))}
generate_hooks >/dev/null
cd "$TMP_HOOKS_PATH" && find . -mindepth 1 -printf '%P %y %m\\n' | LC_ALL=C sort`;
    const r = await run("bash", ["-c", script, "dib", DIB, `${os}:${STANDIN}`, ...REQUEST]);
    const theirs = r.stdout
      .trim()
      .split("\n")
      .filter((l) => !l.startsWith("element-provides "));
    const closure = expandElements(REQUEST, await findAllElements([STANDIN]), [STANDIN]);
    const merged = await mergeElements(closure.elements);
    const ours = [
      ...[...merged.entries.values()].map(
        (e) => `${e.rel} ${e.kind === "dir" ? "d" : e.kind === "file" ? "f" : "l"} ${e.mode.toString(8)}`,
      ),
      ...merged.topFiles.map((t) => `${t.name} f 644`),
    ];
    expect([...new Set(ours)].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))).toEqual(theirs);
  });
});
