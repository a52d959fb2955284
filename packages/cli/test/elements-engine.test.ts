import { chmod, mkdir, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { expandElements } from "../src/elements/closure.js";
import { findAllElements, parseElementsPath } from "../src/elements/elements-path.js";
import {
  AlreadyProvidedError,
  DuplicateHookError,
  ElementFormatError,
  InvalidElementsPathError,
  MissingElementError,
} from "../src/elements/errors.js";
import { mergeElements } from "../src/elements/merge.js";
import { collectPackageInstalls, distroFromOsRelease } from "../src/elements/package-installs.js";
import { cvsExcluded } from "../src/elements/rsync-filter.js";
import { compareSortN, selectEnvironmentFiles, selectScripts } from "../src/elements/run-parts.js";
import { parseYaml } from "../src/elements/yaml.js";

/** Builds element trees from a { "path/in/tree": content | [content, mode] } map. */
async function tree(files: Record<string, string | [string, number]>): Promise<string> {
  const root = await tempDir();
  for (const [rel, spec] of Object.entries(files)) {
    const [content, mode] = typeof spec === "string" ? [spec, 0o644] : spec;
    const p = join(root, rel);
    await mkdir(dirname(p), { recursive: true });
    if (content.startsWith("->")) await symlink(content.slice(2), p);
    else {
      await writeFile(p, content);
      await chmod(p, mode);
    }
  }
  return root;
}

describe("ELEMENTS_PATH lookup", () => {
  it("takes the first path entry holding an element; later ones are reported as hidden", async () => {
    const a = await tree({ "x/element-deps": "y\n", "only-a/README": "" });
    const b = await tree({ "x/element-deps": "z\n", "y/README": "", "file-not-element": "" });
    const all = await findAllElements(parseElementsPath(`${a}::${b}`));
    expect(all.get("x")?.depends).toEqual(["y"]);
    expect(all.get("x")?.from).toBe(a);
    expect(all.get("x")?.overrides).toEqual([join(b, "x")]);
    expect([...all.keys()].sort()).toEqual(["only-a", "x", "y"]);
    await expect(findAllElements([join(a, "nope")])).rejects.toBeInstanceOf(InvalidElementsPathError);
  });
});

describe("dependency closure", () => {
  it("expands transitively in queue order, tolerates cycles, drops provided elements", async () => {
    const p = await tree({
      "a/element-deps": "c\nb\n\n",
      "b/element-deps": "a\nd\n",
      "c/element-deps": "virt\n",
      "d/element-provides": "virt\n",
      "d/element-deps": "",
    });
    const all = await findAllElements([p]);
    const c = expandElements(["a"], all, [p]);
    expect(c.elements.map((e) => e.name)).toEqual(["a", "b", "c", "d"]);
    expect(c.provided.get("virt")).toEqual(["d"]);
    expect(c.requiredBy.get("d")).toBe("b");
  });
  it("names the missing element and who wanted it", async () => {
    const p = await tree({ "a/element-deps": "ghost\n" });
    const all = await findAllElements([p]);
    const err = (() => {
      try {
        expandElements(["a"], all, [p]);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(MissingElementError);
    expect(String((err as Error).message)).toMatch(/"ghost" \(required by a\)/);
  });
  it("refuses an element requested explicitly but provided by another", async () => {
    const p = await tree({ "a/element-provides": "b\n", "b/README": "" });
    expect(() => expandElements(["a", "b"], findAllElementsSync(p), [p])).toThrow(AlreadyProvidedError);
  });
});

// Small sync shim for the test above (the map is tiny).
function findAllElementsSync(p: string) {
  return new Map([
    ["a", { name: "a", path: join(p, "a"), from: p, depends: [], provides: ["b"], overrides: [] }],
    ["b", { name: "b", path: join(p, "b"), from: p, depends: [], provides: [], overrides: [] }],
  ]);
}

describe("hook merge (DIB generate_hooks rules)", () => {
  it("merges nested dirs with last-copied-wins collisions, skips dot-files at phase level and tests/", async () => {
    const p = await tree({
      "e1/os-refresh-config/configure.d/20-x": ["one\n", 0o775],
      "e1/os-refresh-config/.keep": "",
      "e1/os-refresh-config/configure.d/.hidden-but-copied": "",
      "e1/tests/foo": "",
      "e1/install.d/10-a": ["a\n", 0o700],
      "e1/install.d/link": "->10-a",
      "e2/os-refresh-config/configure.d/20-x": ["two\n", 0o755],
      "e2/os-refresh-config/configure.d/30-y": ["y\n", 0o644],
      "e3/os-refresh-config/configure.d/30-y": ["y\n", 0o644],
      "e3/README": "",
    });
    const all = await findAllElements([p]);
    const m = await mergeElements(["e1", "e2", "e3"].map((n) => all.get(n)!));
    expect(m.entries.get("os-refresh-config/configure.d/20-x")).toMatchObject({ element: "e2", mode: 0o755 });
    expect(m.entries.get("install.d/10-a")).toMatchObject({ mode: 0o755 });
    expect(m.entries.get("install.d/link")).toMatchObject({ kind: "symlink", target: "10-a" });
    expect(m.entries.has("os-refresh-config/.keep")).toBe(false);
    expect(m.entries.has("os-refresh-config/configure.d/.hidden-but-copied")).toBe(true);
    expect([...m.entries.keys()].some((k) => k.startsWith("tests"))).toBe(false);
    expect(m.collisions).toEqual([
      { rel: "os-refresh-config/configure.d/20-x", lost: "e1", won: "e2", identical: false },
      { rel: "os-refresh-config/configure.d/30-y", lost: "e2", won: "e3", identical: true },
    ]);
    expect(m.topFiles).toEqual([{ element: "e3", name: "README", source: join(p, "e3", "README") }]);
  });
  it("a duplicated hook directly in a phase directory aborts, as DIB does (or wins last when allowed)", async () => {
    const p = await tree({ "e1/install.d/50-x": ["1", 0o755], "e2/install.d/50-x": ["2", 0o755] });
    const all = await findAllElements([p]);
    const els = ["e1", "e2"].map((n) => all.get(n)!);
    await expect(mergeElements(els)).rejects.toBeInstanceOf(DuplicateHookError);
    const m = await mergeElements(els, { allowDuplicateHooks: true });
    expect(m.entries.get("install.d/50-x")?.element).toBe("e2");
    expect(m.collisions).toHaveLength(1);
  });
});

describe("dib-run-parts order", () => {
  it("sorts like LC_ALL=C sort -n and filters like dib-run-parts", () => {
    const names = ["99-z", "10-b", "10-a", "2-x", "abc", "100-q", "05-five", "Z9"];
    expect([...names].sort(compareSortN)).toEqual([
      "Z9",
      "abc",
      "2-x",
      "05-five",
      "10-a",
      "10-b",
      "99-z",
      "100-q",
    ]);
    const sel = selectScripts([
      { name: "10-ok", executable: true, regular: true },
      { name: "20-noexec", executable: false, regular: true },
      { name: "hook.py", executable: true, regular: true },
      { name: "subdir", executable: false, regular: false },
      { name: "05-first", executable: true, regular: true },
    ]);
    expect(sel.run).toEqual(["05-first", "10-ok"]);
    expect(sel.ignored.map((i) => i.name)).toEqual(["20-noexec", "hook.py"]);
    expect(
      selectEnvironmentFiles([
        { name: "10-b.bash", executable: false, regular: true },
        { name: "01-a", executable: false, regular: true },
        { name: "bad name", executable: false, regular: true },
      ]),
    ).toEqual(["01-a", "10-b.bash"]);
  });
});

describe("package-installs", () => {
  it("parses the YAML subset DIB elements use", () => {
    expect(
      parseYaml(
        "# c\nlibxml2:\ngrub2:\n  phase: pre-install.d # trailing\nnm:\n  uninstall: True\nx:\n  - arch: x86_64\n  - arch: 'ppc64le'\n    phase: post-install.d\n",
        "f",
      ),
    ).toEqual({
      libxml2: null,
      grub2: { phase: "pre-install.d" },
      nm: { uninstall: true },
      x: [{ arch: "x86_64" }, { arch: "ppc64le", phase: "post-install.d" }],
    });
    expect(parseYaml('{"a": null}', "f")).toEqual({ a: null });
    // What real element files use beyond the old hand-written subset: anchors and aliases, flow
    // collections, block scalars, YAML 1.1 booleans (PyYAML's reading, as diskimage-builder has it).
    expect(
      parseYaml(
        "base: &b {phase: install.d, arch: 'x86_64,i386'}\npkg:\n  <<: *b\n  uninstall: yes\nlist: [a, b]\ntext: |\n  one\n  two\n",
        "f",
      ),
    ).toEqual({
      base: { phase: "install.d", arch: "x86_64,i386" },
      pkg: { phase: "install.d", arch: "x86_64,i386", uninstall: true },
      list: ["a", "b"],
      text: "one\ntwo\n",
    });
    // Malformed input and exponential alias expansion are typed errors naming the file.
    expect(() => parseYaml("a: [1, 2\n", "bad.yaml")).toThrow(/bad\.yaml/);
    expect(() => parseYaml("a: 1\na: 2\n", "dup.yaml")).toThrow(/dup\.yaml/);
    const laughs = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 12; i++)
      laughs.push(
        `${"abcdefghijkl"[i]}: &${"abcdefghijkl"[i]} [${Array(10)
          .fill(`*${"abcdefghijkl"[i - 1]}`)
          .join(", ")}]`,
      );
    expect(() => parseYaml(laughs.join("\n"), "lol.yaml")).toThrow(ElementFormatError);
  });
  it("filters by install type, maps names with pkg-map for the guest family", async () => {
    const p = await tree({
      "e/package-installs.yaml":
        "build-essential:\njq:\n  phase: post-install.d\nold:\n  uninstall: true\npkg:\n  installtype: package\nsrc:\n  installtype: source\n",
      "e/pkg-map": JSON.stringify({
        family: { redhat: { "build-essential": "make gcc" } },
        distro: { fedora: { jq: "jq-fedora" } },
      }),
    });
    const all = await findAllElements([p]);
    const centos = distroFromOsRelease('ID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n');
    expect(centos).toEqual({ distro: "centos", family: "redhat", release: "7" });
    const r = await collectPackageInstalls([all.get("e")!], () => "source", centos);
    expect(r.requests.map((q) => [q.name, q.packages, q.phase, q.uninstall])).toEqual([
      ["build-essential", ["make", "gcc"], "install.d", false],
      ["jq", ["jq"], "post-install.d", false],
      ["old", ["old"], "install.d", true],
      ["src", ["src"], "install.d", false],
    ]);
  });
  it("evaluates dib_python_version and when: conditions; maps Debian-style names on Red Hat", async () => {
    const p = await tree({
      "e/package-installs.yaml":
        "py2:\n  dib_python_version: 2\npy3:\n  dib_python_version: 3\nonly-centos:\n  when: DISTRO_NAME = centos\nnot-centos:\n  when:\n    - DIB_X = y\n    - DISTRO_NAME != centos\nbuild-essential:\n",
    });
    const all = await findAllElements([p]);
    const centos = distroFromOsRelease('ID="centos"\nVERSION_ID="7"\n');
    const env = { DIB_PYTHON_VERSION: "2", DISTRO_NAME: "centos" };
    const r = await collectPackageInstalls([all.get("e")!], () => "source", centos, env);
    expect(r.requests.map((q) => `${q.name}=${q.packages.join("+")}`)).toEqual([
      "py2=py2",
      "only-centos=only-centos",
      "build-essential=make+automake+gcc+gcc-c+++kernel-devel",
    ]);
    expect(r.warnings.join("\n")).toMatch(/DIB_X, which is not set/);
  });
  it("rsync -C excludes", () => {
    expect(cvsExcluded("etc/x.conf~")).toBe(true);
    expect(cvsExcluded(".git/config")).toBe(true);
    expect(cvsExcluded("etc/os-collect-config.conf")).toBe(false);
  });
});

describeWithTools(["sort"], "oracle: LC_ALL=C sort -n", () => {
  it("compareSortN orders hook names exactly like coreutils sort -n (random names)", async () => {
    const name = fc.stringMatching(/^[0-9A-Za-z_-]{1,12}$/);
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(name, { minLength: 2, maxLength: 30 }), async (names) => {
        const r = await runTool("sort", ["-n"], {
          input: `${names.join("\n")}\n`,
          env: { ...process.env, LC_ALL: "C" },
        });
        const theirs = r.stdout.toString().trim().split("\n");
        expect([...names].sort(compareSortN)).toEqual(theirs);
      }),
      { numRuns: 150 },
    );
  });
});
