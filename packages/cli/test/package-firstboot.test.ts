/**
 * customize --update, --uninstall, and an --install whose repositories cannot be reached: without a
 * VM they go to the guest's first boot. The queued scripts are read back with debugfs (e2fsck -fn
 * clean) and run with sh: once with IMGPATCH_PKG_CMD recording what it is asked, once with only a
 * stand-in apt-get or dnf on PATH, to see each package manager get its own command line. An
 * install that fails for another reason (a repository that answers with a bad index) stays an error.
 */
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { debugfs, debugfsRdump, describeWithTools, e2fsck, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { cliInProcess } from "./support/cli-in-process.js";

const cli = (args: string[]) => cliInProcess(args);

const PENDING = "/var/lib/imgpatch/firstboot/pending";

/** An ext4 image (mke2fs -d) of a small Debian-like tree whose only apt source is `source`. */
async function debianGuest(dir: string, source: string): Promise<string> {
  const tree = join(dir, "tree");
  for (const d of ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc/apt/sources.list.d", "usr/bin"])
    await mkdir(join(tree, d), { recursive: true });
  await writeFile(
    join(tree, "var/lib/dpkg/status"),
    "Package: dpkg\nStatus: install ok installed\nPriority: required\nEssential: yes\nArchitecture: amd64\nVersion: 1.21.22\nDescription: dpkg\n\n",
  );
  await writeFile(join(tree, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  await writeFile(join(tree, "etc/group"), "root:x:0:\n");
  await writeFile(join(tree, "etc/apt/sources.list"), `${source}\n`);
  const img = join(dir, "guest.img");
  await runTool("mke2fs", ["-q", "-F", "-t", "ext4", "-d", tree, img, "16M"]);
  return img;
}

/** The first-boot scripts of `img`, name → text. */
async function queued(img: string, into: string): Promise<Map<string, string>> {
  await mkdir(into, { recursive: true });
  const dir = await debugfsRdump(img, PENDING, into);
  const names = (await debugfs(img, [`ls ${PENDING}`]))
    .split(/\s+/)
    .filter((w) => /^\d{6}-/.test(w))
    .sort();
  const out = new Map<string, string>();
  for (const n of names) out.set(n, await readFile(join(dir, n), "utf8"));
  return out;
}

/** Runs a queued script with sh; `bin` holds stand-ins and is the whole PATH unless `pkgCmd`. */
async function runScript(dir: string, script: string, bin: string, pkgCmd?: string): Promise<string> {
  const file = join(dir, `script-${Math.random().toString(36).slice(2)}`);
  await writeFile(file, script);
  const log = join(bin, "calls");
  await writeFile(log, "");
  const env: Record<string, string> = { PATH: bin, CALLS: log };
  if (pkgCmd) env.IMGPATCH_PKG_CMD = pkgCmd;
  const r = await runTool("sh", [file], { env });
  expect(r.exitCode, r.stderr).toBe(0);
  return readFile(log, "utf8");
}

/** A stand-in command that appends its name and arguments to $CALLS. */
async function standIn(bin: string, name: string): Promise<string> {
  const p = join(bin, name);
  await writeFile(p, `#!/bin/sh\necho "${name} $*" >> "$CALLS"\n`);
  await chmod(p, 0o755);
  return p;
}

describeWithTools(["mke2fs", "debugfs", "e2fsck"], "package actions at first boot", () => {
  let root: string;
  beforeAll(async () => {
    root = await tempDir("pkg-firstboot-");
  });

  it("--update, --uninstall and an unreachable --install are queued in order and run the guest's manager", async () => {
    const dir = join(root, "a");
    await mkdir(dir);
    // 127.0.0.1:9 (discard) refuses connections: the repository cannot be reached.
    const img = await debianGuest(dir, "deb [trusted=yes] http://127.0.0.1:9/debian stable main");
    const out = join(dir, "out.img");
    const r = await cli([
      "customize",
      img,
      "-v",
      "-o",
      out,
      "--install",
      "heat-agent,os-collect-config",
      "--update",
      "--uninstall",
      "old-tool,it's",
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/repositories unreachable at build time .*queued for the first boot/);
    expect(r.out).toMatch(/update: queued for the first boot/);
    expect(r.out).toMatch(/uninstall: queued for the first boot/);
    await e2fsck(out);

    const scripts = [...(await queued(out, join(dir, "dump"))).entries()];
    expect(scripts.map(([n]) => n.replace(/^\d+-/, ""))).toEqual(["install", "update", "uninstall"]);
    const bin = join(dir, "bin");
    await mkdir(bin);
    const recorder = await standIn(bin, "pkg");
    const recorded = [];
    for (const [, s] of scripts) recorded.push((await runScript(dir, s, bin, recorder)).trim());
    expect(recorded).toEqual([
      "pkg install heat-agent os-collect-config",
      "pkg update",
      "pkg uninstall old-tool it's",
    ]);

    // Only apt-get on PATH: the Debian command lines.
    await standIn(bin, "apt-get");
    const apt = [];
    for (const [, s] of scripts) apt.push((await runScript(dir, s, bin)).trim());
    expect(apt).toEqual([
      "apt-get update\napt-get -y install heat-agent os-collect-config",
      "apt-get update\napt-get -y upgrade",
      "apt-get -y remove old-tool it's",
    ]);
    // dnf preferred when the guest has it (as virt-customize picks the manager).
    await standIn(bin, "dnf");
    const dnf = [];
    for (const [, s] of scripts) dnf.push((await runScript(dir, s, bin)).trim());
    expect(dnf).toEqual([
      "dnf -y install heat-agent os-collect-config",
      "dnf -y upgrade --refresh",
      "dnf -y remove old-tool it's",
    ]);
  });

  it("a repository that answers with something unusable is an error, not deferred; no output", async () => {
    const dir = join(root, "b");
    await mkdir(join(dir, "repo/dists/stable"), { recursive: true });
    // A Release without the index it would need: the repository was reached.
    await writeFile(
      join(dir, "repo/dists/stable/Release"),
      "Suite: stable\nComponents: main\nArchitectures: amd64\n",
    );
    const img = await debianGuest(dir, `deb [trusted=yes] file://${join(dir, "repo")} stable main`);
    const out = join(dir, "out.img");
    const r = await cli(["customize", img, "-o", out, "--install", "heat-agent"]);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/Packages|index|Release/);
    expect(r.err).not.toMatch(/queued for the first boot/);
    await expect(readFile(out)).rejects.toThrow();
  });
});
