import { chmod, mkdir, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { applyElementsPlan, bakeElements } from "../src/elements/apply.js";
import { MissingElementError } from "../src/elements/errors.js";
import { ELEMENTS_RUNNER } from "../src/elements/payload.js";
import { buildElementsPlan, WHEELHOUSE } from "../src/elements/plan.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";

const STANDIN = fileURLToPath(new URL("../../../test-fixtures/elements", import.meta.url));
const text = (b: Uint8Array) => new TextDecoder().decode(b);

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

describe("elements plan details", () => {
  it("static/ trees go to the guest root as they are; /run and /var/run are never written", async () => {
    const p = await tree({
      "s/static/etc/motd": "hello\n",
      "s/static/usr/local/sbin/tool": ["#!/bin/sh\n", 0o775],
      "s/static/etc/alt": "->/etc/motd",
      "s/static/var/run/pidfile": "1\n",
      "s/static/run/x": "x\n",
      "s/weird/thing": "",
    });
    const fs = new MemoryGuestFs();
    const plan = await buildElementsPlan(fs, { elementsPath: p, elements: ["s"] });
    await applyElementsPlan(fs, plan);
    expect(await fs.lstat("/etc/motd")).toMatchObject({ mode: 0o644, uid: 0 });
    expect(await fs.lstat("/usr/local/sbin/tool")).toMatchObject({ mode: 0o755 });
    expect(await fs.readlink("/etc/alt")).toBe("/etc/motd");
    await expect(fs.lstat("/var/run")).rejects.toThrow(/ENOENT/);
    await expect(fs.lstat("/run")).rejects.toThrow(/ENOENT/);
    expect(plan.report.skipped.map((s) => s.path).sort()).toEqual([
      "/run",
      "/run/x",
      "/var/run",
      "/var/run/pidfile",
    ]);
    expect(plan.report.ignoredDirs).toEqual([{ dir: "weird", elements: ["s"] }]);
    // No deferred work: no first-boot unit.
    expect(plan.ops.some((o) => o.op === "firstboot")).toBe(false);
  });

  it("DIB_INSTALLTYPE selects the package install scripts and package-installs entries", async () => {
    const fs = new MemoryGuestFs();
    await fs.mkdir("/etc");
    await fs.writeFile("/etc/os-release", "ID=debian\nVERSION_ID=12\n");
    const plan = await buildElementsPlan(fs, {
      elementsPath: STANDIN,
      elements: ["os-collect-config"],
      installTypes: { "os-collect-config": "package" },
    });
    const install = plan.report.deferred.find((d) => d.phase === "install.d")!;
    expect(install.scripts.map((s) => s.name)).toContain("10-enable-os-collect-config");
    expect(install.scripts.map((s) => s.name)).not.toContain("10-os-collect-config");
    const pk = plan.report.packages.map((r) => `${r.element}:${r.packages.join("+")}`);
    expect(pk).toContain("os-collect-config:os-collect-config");
    expect(pk).toContain("os-collect-config:python3-dev"); // pkg-map, debian family
    const runner = plan.ops.find((o) => o.op === "write" && o.path === ELEMENTS_RUNNER);
    expect(runner && "text" in (runner as { source: object }).source).toBe(true);
    const script = (runner as { source: { text: string } }).source.text;
    expect(script).toContain("export DIB_INSTALLTYPE_os_collect_config='package'");
    expect(script).toContain("export DISTRO_NAME='debian'");
    expect(plan.report.selinux).toBe("not-selinux");
    const unit = plan.ops.find((o) => o.op === "write" && o.path.endsWith("/os-collect-config.service"));
    expect((unit as { source: { text: string } }).source.text).toContain(
      "ExecStart=/usr/bin/os-collect-config",
    );
  });

  it("package-installs.yaml is ignored (with a warning) without the package-installs element", async () => {
    const p = await tree({ "e/package-installs.yaml": "jq:\n", "e/install.d/10-x": ["#!/bin/sh\n", 0o755] });
    const plan = await buildElementsPlan(new MemoryGuestFs(), { elementsPath: p, elements: ["e"] });
    expect(plan.report.packages).toEqual([]);
    expect(plan.report.warnings.join("\n")).toMatch(/package-installs element is not included/);
  });

  it("warns about deferred scripts that delete files of installed RPMs", async () => {
    const p = await tree({
      "e/install.d/50-x": ["#!/bin/bash\nrpm -ql python-yaml | xargs rm -rf\n", 0o755],
    });
    const plan = await buildElementsPlan(new MemoryGuestFs(), { elementsPath: p, elements: ["e"] });
    expect(plan.report.warnings.join("\n")).toMatch(
      /install.d\/50-x \(e\) deletes the files of installed RPM packages/,
    );
  });

  it("bakeElements: dry run touches nothing; a fixed mtime makes written files reproducible", async () => {
    const fs = new MemoryGuestFs();
    const dry = await bakeElements(
      fs,
      { elementsPath: STANDIN, elements: ["heat-config-script"] },
      { dryRun: true },
    );
    expect(dry.applied).toBeUndefined();
    expect(dry.text).toContain("/var/lib/heat-config/hooks/script");
    expect(await fs.readdir("/")).toEqual([]);
    const t = new Date(1_700_000_000_000);
    const done = await bakeElements(
      fs,
      { elementsPath: STANDIN, elements: ["heat-config-script"] },
      { mtime: t },
    );
    expect(done.applied?.firstbootScripts).toHaveLength(1);
    for (const p of [
      "/var/lib/heat-config/hooks/script",
      "/usr/lib/imgpatch/firstboot/runner.sh",
      done.applied!.firstbootScripts[0],
    ]) {
      expect((await fs.lstat(p)).mtime.getTime(), p).toBe(t.getTime());
    }
  });

  it("missing elements are named; the guest is untouched", async () => {
    const fs = new MemoryGuestFs();
    await expect(
      buildElementsPlan(fs, { elementsPath: STANDIN, elements: ["heat-config", "nope"] }),
    ).rejects.toBeInstanceOf(MissingElementError);
    expect(await fs.readdir("/")).toEqual([]);
  });

  it("a pre-existing /etc/os-collect-config.conf is kept", async () => {
    const fs = new MemoryGuestFs();
    await fs.mkdir("/etc");
    await fs.writeFile("/etc/os-collect-config.conf", "[DEFAULT]\ncommand=custom\n", { mode: 0o640 });
    await applyElementsPlan(
      fs,
      await buildElementsPlan(fs, { elementsPath: STANDIN, elements: ["os-collect-config"] }),
    );
    expect(text(await fs.readFile("/etc/os-collect-config.conf"))).toBe("[DEFAULT]\ncommand=custom\n");
    expect((await fs.lstat("/etc/os-collect-config.conf")).mode).toBe(0o640);
    // No /lib/systemd in this guest: the unit goes to /usr/lib/systemd/system, found there by enable.
    expect(await fs.readlink("/etc/systemd/system/multi-user.target.wants/os-collect-config.service")).toBe(
      "/usr/lib/systemd/system/os-collect-config.service",
    );
  });

  it("--wheels: the wheelhouse is injected and first-boot pip looks there (only there when offline)", async () => {
    const wheels = await tree({ "a-1.0-py3-none-any.whl": "W", "b-2.0.tar.gz": "S", "notes.txt": "x" });
    const fs = new MemoryGuestFs();
    const plan = await buildElementsPlan(fs, {
      elementsPath: STANDIN,
      elements: ["os-collect-config"],
      wheelsDir: wheels,
      offline: true,
    });
    await applyElementsPlan(fs, plan);
    expect(await fs.readdir(WHEELHOUSE)).toEqual(["a-1.0-py3-none-any.whl", "b-2.0.tar.gz"]);
    expect(await fs.lstat(`${WHEELHOUSE}/b-2.0.tar.gz`)).toMatchObject({ mode: 0o644, uid: 0 });
    const runner = text(await fs.readFile(ELEMENTS_RUNNER));
    expect(runner).toContain(`export PIP_FIND_LINKS='${WHEELHOUSE}'`);
    expect(runner).toContain("export PIP_NO_INDEX='1'");
  });
});
