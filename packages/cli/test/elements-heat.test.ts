import { execFile } from "node:child_process";
import { chmod, readFile, readlink, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { applyElementsPlan, renderElementsPlan } from "../src/elements/apply.js";
import { OCC_UNIT, occUnitText } from "../src/elements/known-elements.js";
import { ELEMENTS_RUNNER, ELEMENTS_STAMP } from "../src/elements/payload.js";
import { buildElementsPlan } from "../src/elements/plan.js";
import { FIRSTBOOT } from "../src/guest/firstboot.js";
import type { GuestFs } from "../src/guest/guest-fs.js";
import { HostDirGuestFs } from "../src/guest/host-dir-fs.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";
import { parseUnitFile, unitValue } from "../src/guest/systemd-unit.js";

const run = promisify(execFile);
const STANDIN = fileURLToPath(new URL("../../../test-fixtures/elements", import.meta.url));
const HEAT = [
  "os-collect-config",
  "os-refresh-config",
  "os-apply-config",
  "heat-config",
  "heat-config-script",
];
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** A CentOS-7-like guest layout: merged /usr, /var/run → ../run, SELinux enforcing. */
async function centosGuest(fs: GuestFs): Promise<void> {
  for (const d of [
    "/usr/lib/systemd/system",
    "/usr/bin",
    "/usr/local",
    "/etc/selinux",
    "/var/lib",
    "/run",
    "/root",
  ]) {
    await fs.mkdir(d, { recursive: true });
  }
  await fs.symlink("usr/lib", "/lib");
  await fs.symlink("usr/bin", "/bin");
  await fs.symlink("../run", "/var/run");
  await fs.writeFile(
    "/etc/os-release",
    'NAME="CentOS Linux"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n',
  );
  await fs.writeFile("/etc/selinux/config", "SELINUX=enforcing\nSELINUXTYPE=targeted\n");
  await fs.writeFile("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
  await fs.writeFile("/etc/group", "root:x:0:\n");
  await fs.writeFile("/usr/lib/systemd/system/multi-user.target", "[Unit]\nDescription=Multi-User\n");
}

async function expectEntry(
  fs: GuestFs,
  path: string,
  want: { type?: string; mode?: number; content?: string; target?: string },
) {
  const st = await fs.lstat(path);
  expect(st.uid, path).toBe(0);
  expect(st.gid, path).toBe(0);
  if (want.type) expect(st.type, path).toBe(want.type);
  if (want.mode !== undefined) expect(st.mode.toString(8), path).toBe(want.mode.toString(8));
  if (want.content !== undefined) expect(text(await fs.readFile(path)), path).toBe(want.content);
  if (want.target !== undefined) expect(await fs.readlink(path), path).toBe(want.target);
}

describe("heat agents from the stand-in elements", () => {
  it("plans in DIB order with the documented closure, collisions and deferred scripts", async () => {
    const fs = new MemoryGuestFs();
    await centosGuest(fs);
    const plan = await buildElementsPlan(fs, { elementsPath: STANDIN, elements: HEAT });
    const r = plan.report;
    expect(r.elements.map((e) => e.name)).toEqual([
      "os-collect-config",
      "os-refresh-config",
      "os-apply-config",
      "heat-config",
      "heat-config-script",
      "os-svc-install",
      "package-installs",
      "pip-manifest",
      "source-repositories",
      "pip-and-virtualenv",
      "svc-map",
    ]);
    expect(r.collisions).toEqual([
      {
        rel: "os-refresh-config/configure.d/20-os-apply-config",
        lost: "os-apply-config",
        won: "heat-config",
        identical: true,
      },
    ]);
    const install = r.deferred.find((d) => d.phase === "install.d")!;
    expect(install.environment).toEqual([
      "10-os-apply-config-venv-dir.bash",
      "10-os-collect-config-venv-dir.bash",
    ]);
    expect(install.scripts).toEqual([
      { name: "01-install-pip", element: "pip-and-virtualenv" },
      { name: "04-os-svc-install", element: "os-svc-install" },
      { name: "10-os-apply-config", element: "os-apply-config" },
      { name: "10-os-collect-config", element: "os-collect-config" },
      { name: "10-os-refresh-config", element: "os-refresh-config" },
      { name: "50-heat-config-source", element: "heat-config" },
    ]);
    expect(r.replaced.map((x) => `${x.phase}/${x.script}`).sort()).toEqual([
      "install.d/01-package-installs",
      "install.d/11-create-template-root",
      "install.d/50-heat-config-hook-script",
      "install.d/99-install-config-templates",
      "install.d/99-os-refresh-config-install-scripts",
      "post-install.d/01-package-installs",
      "pre-install.d/01-package-installs",
    ]);
    expect(r.ignoredScripts).toEqual([
      { phase: "install.d", script: "hook-script.py", why: "name does not match [0-9A-Za-z_-]+" },
    ]);
    expect(r.notApplicable.map((n) => n.phase)).toEqual(["extra-data.d"]);
    expect(r.packages.map((p) => `${p.phase}:${p.packages.join("+")}`)).toEqual([
      "install.d:make+gcc",
      "install.d:python3-devel",
      "install.d:jq",
      "pre-install.d:rsync",
    ]);
    expect(r.skipped).toEqual([]);
    expect(r.selinux).toBe("relabel-marker");
    // Nothing is ever planned under /run or /var/run.
    for (const op of plan.ops) if ("path" in op) expect(op.path).not.toMatch(/^\/(var\/)?run\//);
    const dry = renderElementsPlan(plan);
    expect(dry).toContain(
      "os-refresh-config/configure.d/20-os-apply-config: heat-config overwrites os-apply-config (identical)",
    );
    expect(dry).toMatch(/extra-data.d: .*98-source-repositories \(source-repositories\)/);
    expect(dry).toMatch(/write\s+0600 root:root \/etc\/os-collect-config.conf \(if absent\)/);
  });

  it("produces the expected guest tree (paths, modes, owners, symlinks, unit text)", async () => {
    const root = await tempDir();
    const fs = new HostDirGuestFs(root);
    await centosGuest(fs);
    const plan = await buildElementsPlan(fs, {
      elementsPath: STANDIN,
      elements: [...HEAT, "selinux-permissive"],
    });
    const applied = await applyElementsPlan(fs, plan);

    // bin/ → /usr/local/bin 0755
    for (const b of [
      "heat-config-notify",
      "os-svc-enable",
      "map-services",
      "package-installs-v2",
      "write-pip-manifest",
      "svc-map",
    ]) {
      await expectEntry(fs, `/usr/local/bin/${b}`, { type: "file", mode: 0o755 });
    }
    // os-refresh-config tree
    for (const p of ["pre-configure.d", "configure.d", "migration.d", "post-configure.d"]) {
      await expectEntry(fs, `/usr/libexec/os-refresh-config/${p}`, { type: "directory", mode: 0o755 });
    }
    await expectEntry(fs, "/usr/libexec/os-refresh-config/configure.d/20-os-apply-config", { mode: 0o755 });
    await expectEntry(fs, "/usr/libexec/os-refresh-config/configure.d/55-heat-config", { mode: 0o755 });
    await expectEntry(fs, "/usr/libexec/os-refresh-config/post-configure.d/99-refresh-completed", {
      mode: 0o755,
    });
    await expect(fs.lstat("/usr/libexec/os-refresh-config/.git-keep-empty")).rejects.toThrow(/ENOENT/);
    // os-apply-config templates (0644, including the /var/run template path, which is only a template)
    await expectEntry(fs, "/usr/libexec/os-apply-config/templates", { type: "directory", mode: 0o755 });
    await expectEntry(fs, "/usr/libexec/os-apply-config/templates/etc/os-collect-config.conf", {
      mode: 0o644,
    });
    await expectEntry(fs, "/usr/libexec/os-apply-config/templates/etc/os-collect-config.conf.oac", {
      mode: 0o644,
      content: "mode: 0600\n",
    });
    await expectEntry(fs, "/usr/libexec/os-apply-config/templates/var/run/heat-config/heat-config", {
      mode: 0o644,
      content: "{{deployments}}\n",
    });
    // hooks
    await expectEntry(fs, "/var/lib/heat-config/hooks", { type: "directory", mode: 0o755 });
    await expectEntry(fs, "/var/lib/heat-config/hooks/script", { type: "file", mode: 0o755 });
    // os-collect-config: config, unit, enable link exactly as systemctl makes it on this layout, drop-in
    await expectEntry(fs, "/etc/os-collect-config.conf", {
      mode: 0o600,
      content: "[DEFAULT]\ncommand=os-refresh-config\n",
    });
    await expectEntry(fs, "/usr/lib/systemd/system/os-collect-config.service", {
      mode: 0o644,
      content: occUnitText(),
    });
    await expectEntry(fs, "/etc/systemd/system/multi-user.target.wants/os-collect-config.service", {
      type: "symlink",
      target: "/usr/lib/systemd/system/os-collect-config.service",
    });
    const dropIn = parseUnitFile(
      text(await fs.readFile(`/etc/systemd/system/${OCC_UNIT}.d/10-imgpatch-firstboot.conf`)),
    );
    expect(unitValue(dropIn, "Unit", "Requires")).toBe(FIRSTBOOT.unitName);
    expect(unitValue(dropIn, "Unit", "After")).toBe(FIRSTBOOT.unitName);
    const unit = parseUnitFile(text(await fs.readFile(OCC_UNIT.replace(/^/, "/usr/lib/systemd/system/"))));
    expect(unitValue(unit, "Service", "ExecStart")).toBe("/usr/local/bin/os-collect-config");
    // first boot: unit enabled, ordered before os-collect-config, payload queued
    await expectEntry(fs, "/etc/systemd/system/multi-user.target.wants/imgpatch-firstboot.service", {
      type: "symlink",
      target: FIRSTBOOT.unitPath,
    });
    expect(text(await fs.readFile(FIRSTBOOT.unitPath))).toMatch(/^Before=.*os-collect-config\.service/m);
    expect(applied.firstbootScripts).toEqual([`${FIRSTBOOT.pending}/000001-dib-elements`]);
    await expectEntry(fs, ELEMENTS_RUNNER, { mode: 0o755 });
    // The whole merged tree travels (scripts use $(dirname $0)/../bin and friends), build-host phases do not.
    await expectEntry(fs, "/usr/lib/imgpatch/elements/hooks/bin/os-svc-enable", {
      type: "file",
      mode: 0o755,
    });
    await expectEntry(fs, "/usr/lib/imgpatch/elements/hooks/os-refresh-config/configure.d/55-heat-config", {
      mode: 0o755,
    });
    await expect(fs.lstat("/usr/lib/imgpatch/elements/hooks/extra-data.d")).rejects.toThrow(/ENOENT/);
    await expectEntry(fs, "/usr/lib/imgpatch/elements/hooks/install.d/10-os-collect-config", {
      type: "symlink",
      target: "os-collect-config-source-install/10-os-collect-config",
    });
    // selinux
    await expectEntry(fs, "/etc/selinux/config", {
      mode: 0o644,
      content: "SELINUX=permissive\nSELINUXTYPE=targeted\n",
    });
    await expectEntry(fs, "/.autorelabel", { type: "file", mode: 0o644 });
    // never under /run
    expect(await fs.readdir("/run")).toEqual([]);

    // A second run is idempotent: same tree, the pending payload replaced rather than queued twice.
    const again = await applyElementsPlan(
      fs,
      await buildElementsPlan(fs, { elementsPath: STANDIN, elements: HEAT }),
    );
    expect(again.firstbootScripts).toEqual([`${FIRSTBOOT.pending}/000001-dib-elements`]);
    expect(await fs.readdir(FIRSTBOOT.pending)).toEqual(["000001-dib-elements"]);
  });

  it("the deferred payload runs once at first boot, in DIB order, on a host directory tree", async () => {
    const root = await tempDir();
    const fs = new HostDirGuestFs(root);
    await centosGuest(fs);
    await applyElementsPlan(fs, await buildElementsPlan(fs, { elementsPath: STANDIN, elements: HEAT }));
    // The package manager is replaced by a recorder for the host run.
    const pkg = join(root, "pkg-recorder.sh");
    await writeFile(pkg, `#!/bin/sh\necho "$*" >> "${root}/packages.log"\n`);
    await chmod(pkg, 0o755);
    const env = { ...process.env, IMGPATCH_FIRSTBOOT_ROOT: root, IMGPATCH_PKG_CMD: pkg };
    const r = await run("sh", [join(root, FIRSTBOOT.runner)], { env });
    expect(r.stdout).toContain("imgpatch-elements: all install phases done");
    const markers = (await readFile(join(root, "var/lib/imgpatch-standin/markers"), "utf8"))
      .trim()
      .split("\n");
    expect(markers).toEqual([
      "install.d/01-install-pip (source)",
      "install.d/04-os-svc-install",
      "install.d/10-os-apply-config (source) venv=/opt/stack/venvs/os-apply-config",
      "install.d/10-os-collect-config (source) venv=/opt/stack/venvs/os-collect-config",
      "install.d/10-os-refresh-config (source)",
      "install.d/50-heat-config-source (source)",
    ]);
    expect((await readFile(join(root, "packages.log"), "utf8")).trim().split("\n")).toEqual([
      "install rsync",
      "install make gcc python3-devel jq",
    ]);
    // The stand-in source install leaves the agent where the unit's ExecStart looks for it.
    expect(await readlink(join(root, "usr/local/bin/os-collect-config"))).toBe(
      "/opt/stack/venvs/os-collect-config/bin/os-collect-config",
    );
    expect(
      (await stat(join(root, "opt/stack/venvs/os-collect-config/bin/os-collect-config"))).mode & 0o777,
    ).toBe(0o755);
    await expect(fs.lstat(ELEMENTS_STAMP)).resolves.toMatchObject({ type: "file" });
    await expect(fs.lstat(FIRSTBOOT.stamp)).resolves.toMatchObject({ type: "file" });
    expect(await fs.readdir(FIRSTBOOT.done)).toEqual(["000001-dib-elements"]);
    // Second boot: nothing runs again.
    await run("sh", [join(root, FIRSTBOOT.runner)], { env });
    expect(
      (await readFile(join(root, "var/lib/imgpatch-standin/markers"), "utf8")).trim().split("\n"),
    ).toHaveLength(6);
  });

  it("a failing deferred script stops the payload (as a DIB build would) and is recorded as failed", async () => {
    const elements = await tempDir();
    const { mkdir } = await import("node:fs/promises");
    for (const [rel, body] of [
      ["e/install.d/10-ok", `#!/bin/sh\necho ok >> "$IMGPATCH_FIRSTBOOT_ROOT/m"\n`],
      ["e/install.d/20-bad", "#!/bin/sh\nexit 7\n"],
      ["e/install.d/30-never", `#!/bin/sh\necho never >> "$IMGPATCH_FIRSTBOOT_ROOT/m"\n`],
    ] as const) {
      await mkdir(join(elements, rel, ".."), { recursive: true });
      await writeFile(join(elements, rel), body);
      await chmod(join(elements, rel), 0o755);
    }
    const root = await tempDir();
    const fs = new HostDirGuestFs(root);
    await applyElementsPlan(fs, await buildElementsPlan(fs, { elementsPath: elements, elements: ["e"] }));
    const res = await run("sh", [join(root, FIRSTBOOT.runner)], {
      env: { ...process.env, IMGPATCH_FIRSTBOOT_ROOT: root },
    }).catch((e) => e as { code: number; stdout: string });
    expect((res as { code?: number }).code).toBe(1);
    expect(await readFile(join(root, "m"), "utf8")).toBe("ok\n");
    expect(await fs.readdir(FIRSTBOOT.failed)).toEqual(["000001-dib-elements"]);
    await expect(fs.lstat(ELEMENTS_STAMP)).rejects.toThrow(/ENOENT/);
  });

  it("element scripts find DIB's helper commands (install-packages, dib-init-system) at first boot", async () => {
    const elements = await tempDir();
    const { mkdir } = await import("node:fs/promises");
    await mkdir(join(elements, "e/install.d"), { recursive: true });
    await writeFile(
      join(elements, "e/install.d/50-e"),
      `#!/bin/bash\nset -eu\ninstall-packages -m e puppet\ninstall-packages -e oldpkg\necho "init=$(dib-init-system)" >> "$IMGPATCH_FIRSTBOOT_ROOT/init"\n`,
    );
    await chmod(join(elements, "e/install.d/50-e"), 0o755);
    const root = await tempDir();
    const fs = new HostDirGuestFs(root);
    const plan = await buildElementsPlan(fs, { elementsPath: elements, elements: ["e"] });
    await applyElementsPlan(fs, plan);
    await expectEntry(fs, "/usr/local/bin/install-packages", { type: "file", mode: 0o755 });
    const pkg = join(root, "pkg-recorder.sh");
    await writeFile(pkg, `#!/bin/sh\necho "$*" >> "${root}/packages.log"\n`);
    await chmod(pkg, 0o755);
    await run("sh", [join(root, FIRSTBOOT.runner)], {
      env: { ...process.env, IMGPATCH_FIRSTBOOT_ROOT: root, IMGPATCH_PKG_CMD: pkg },
    });
    expect(await readFile(join(root, "packages.log"), "utf8")).toBe("install puppet\nerase oldpkg\n");
    expect(await readFile(join(root, "init"), "utf8")).toBe("init=systemd\n");
  });
});
