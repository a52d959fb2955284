/**
 * `imgpatch elements` on an RPM guest: package-installs.yaml entries are installed at build time
 * through rpm-repo + rpm-inject from the guest's own enabled repository (a createrepo_c repository
 * made here, reached through a file:// baseurl), and left to the first boot's dnf, with a warning,
 * when that repository cannot be read. Oracles: e2fsck -fn, `rpm --root … -qa` and `-V` on the
 * dumped tree.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, e2fsck, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { buildRpms, makeRepo, type SpecPkg } from "../../rpm-repo/test/repo-builder.js";
import { cliInProcess } from "./support/cli-in-process.js";

const cli = (args: string[]) => cliInProcess(args);

const BASE: SpecPkg[] = [
  { name: "el-release", version: "9.4", provides: ["system-release(releasever) = 9", "system-release"] },
  { name: "bash", version: "5.1.8", arch: "x86_64", files: ["/bin/sh"] },
  { name: "agent", version: "0.9", files: ["/usr/bin/agent"] },
];

const REPO: SpecPkg[] = [
  {
    name: "heat-agent",
    version: "2.0",
    requires: ["heat-agent-lib >= 1.1", "/bin/sh"],
    files: ["/usr/bin/heat-agent"],
    config: ["/etc/heat-agent.conf"],
    scripts: { post: "echo configured > /var/lib/heat-agent-post" },
  },
  { name: "heat-agent-lib", version: "1.2", files: ["/usr/lib/heat-agent/lib.py"] },
  { name: "heat-agent-lib", version: "1.0", files: ["/usr/lib/heat-agent/lib.py"] },
  { name: "agent", version: "1.0", files: ["/usr/bin/agent"] },
];

const ADDED = ["heat-agent", "heat-agent-lib"];

describeWithTools(
  ["rpmbuild", "createrepo_c", "rpm", "mke2fs", "e2fsck", "debugfs"],
  "elements package-installs on an RPM guest",
  () => {
    let dir = "";
    let repo = "";
    let elements = "";
    /** A guest image whose only enabled repository is `baseurl`. */
    const guest = async (name: string, baseurl: string): Promise<string> => {
      const root = join(dir, `root-${name}`);
      await mkdir(join(root, "etc/yum.repos.d"), { recursive: true });
      await mkdir(join(root, "var/lib"), { recursive: true });
      await writeFile(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
      await writeFile(join(root, "etc/group"), "root:x:0:\n");
      await writeFile(join(root, "etc/os-release"), 'ID="rhel"\nVERSION_ID="9.4"\n');
      await writeFile(
        join(root, "etc/yum.repos.d/local.repo"),
        `[local]\nname=Local $releasever\nbaseurl=${baseurl}\nenabled=1\ngpgcheck=0\n`,
      );
      const rb = ["--root", root, "--dbpath", "/var/lib/rpm"];
      expect((await runTool("rpm", [...rb, "--initdb"])).exitCode).toBe(0);
      const rpms = await buildRpms(dir, join(dir, "base"), BASE);
      const r = await runTool("rpm", [...rb, "-i", "--justdb", "--nodeps", ...rpms]);
      expect(r.exitCode, r.stderr).toBe(0);
      const img = join(dir, `${name}.img`);
      const mk = await runTool("mke2fs", ["-q", "-t", "ext4", "-d", root, img, "64M"]);
      expect(mk.exitCode, mk.stderr).toBe(0);
      return img;
    };
    const dump = async (img: string, name: string): Promise<string> => {
      const tree = join(dir, `tree-${name}`);
      await mkdir(tree);
      const d = await runTool("debugfs", ["-R", `rdump / ${tree}`, img]);
      expect(d.exitCode, d.stderr).toBe(0);
      return tree;
    };
    const rpmQa = async (tree: string) =>
      (
        await runTool("rpm", [
          "--root",
          tree,
          "--dbpath",
          "/var/lib/rpm",
          "-qa",
          "--qf",
          "%{NAME}-%{VERSION}\\n",
        ])
      ).stdout
        .toString()
        .split("\n")
        .filter(Boolean)
        .sort();

    beforeAll(async () => {
      dir = await tempDir("cli-elements-rpm-");
      repo = await makeRepo(dir, "repo", REPO);
      elements = join(dir, "elements");
      const el = join(elements, "agent-element");
      await mkdir(join(el, "install.d"), { recursive: true });
      await mkdir(join(elements, "package-installs"), { recursive: true });
      await writeFile(join(el, "element-deps"), "package-installs\n");
      // heat-agent is installed at build time; the uninstall entry can only run at first boot.
      await writeFile(join(el, "package-installs.yaml"), "heat-agent:\nold-tool:\n  uninstall: true\n");
      await writeFile(join(el, "install.d/50-setup"), "#!/bin/bash\necho set > /etc/agent.setup\n", {
        mode: 0o755,
      });
    });

    it("installs the entries at build time: payloads, registration in the sqlite rpmdb, scriptlets queued; rpm -qa/-V, e2fsck clean", async () => {
      const img = await guest("ok", `file://${repo}/`);
      const out = join(dir, "ok-out.img");
      const r = await cli(["elements", img, "-o", out, "--elements-path", elements, "agent-element", "-v"]);
      expect(r.code, r.err + r.out).toBe(0);
      expect((await e2fsck(out)).exitCode).toBe(0);
      const tree = await dump(out, "ok");
      expect(await rpmQa(tree)).toEqual([
        "agent-0.9",
        "bash-5.1.8",
        "el-release-9.4",
        "heat-agent-2.0",
        "heat-agent-lib-1.2",
      ]);
      const v = await runTool("rpm", [
        "--root",
        tree,
        "--dbpath",
        "/var/lib/rpm",
        "-V",
        "--nodeps",
        ...ADDED,
      ]);
      expect(v.exitCode, `${v.stdout}${v.stderr}`).toBe(0);
      expect(await readFile(join(tree, "usr/bin/heat-agent"), "utf8")).toBe(
        "heat-agent /usr/bin/heat-agent\n",
      );
      const payload = await readFile(join(tree, "usr/lib/imgpatch/elements/run-phases.sh"), "utf8");
      expect(payload).not.toMatch(/imgpatch_pkg install[^\n]*'heat-agent'/);
      expect(payload).toMatch(/imgpatch_pkg \w+ [^\n]*'old-tool'/); // uninstall stays with the first boot
      // heat-agent's %post waits for the first boot.
      const pending = await runTool("sh", ["-c", `ls ${join(tree, "var/lib/imgpatch/firstboot/pending")}`]);
      expect(pending.stdout.toString()).toMatch(/heat-agent-post[\s\S]*dib-elements/);
      // The input image is untouched.
      expect((await e2fsck(img)).exitCode).toBe(0);
    });

    it("an upgrade of an installed package is refused, naming it: the entries stay with the first boot", async () => {
      const img = await guest("upgrade", `file://${repo}/`);
      const el = join(elements, "upgrade-element");
      await mkdir(el, { recursive: true });
      await writeFile(join(el, "element-deps"), "package-installs\n");
      await writeFile(join(el, "package-installs.yaml"), "heat-agent:\nagent-1.0:\n");
      const out = join(dir, "upgrade-out.img");
      const r = await cli(["elements", img, "-o", out, "--elements-path", elements, "upgrade-element", "-v"]);
      expect(r.code, r.err + r.out).toBe(0);
      expect(r.out + r.err).toMatch(
        /left to the first boot: .*agent-1\.0-1\.noarch would upgrade the installed agent-0\.9/,
      );
      expect((await e2fsck(out)).exitCode).toBe(0);
      const tree = await dump(out, "upgrade");
      expect(await rpmQa(tree)).toEqual(["agent-0.9", "bash-5.1.8", "el-release-9.4"]);
      const payload = await readFile(join(tree, "usr/lib/imgpatch/elements/run-phases.sh"), "utf8");
      expect(payload).toMatch(/imgpatch_pkg install[^\n]*'heat-agent'/);
    });

    it("an unreachable repository: a warning, the entries left to the first boot's dnf, the rpmdb as it was", async () => {
      const img = await guest("down", "file:///nonexistent/repo/");
      const out = join(dir, "down-out.img");
      const r = await cli(["elements", img, "-o", out, "--elements-path", elements, "agent-element", "-v"]);
      expect(r.code, r.err + r.out).toBe(0);
      expect(r.out + r.err).toMatch(
        /WARNING +package-installs: heat-agent left to the first boot: .*cannot read/,
      );
      expect((await e2fsck(out)).exitCode).toBe(0);
      const tree = await dump(out, "down");
      expect(await rpmQa(tree)).toEqual(["agent-0.9", "bash-5.1.8", "el-release-9.4"]);
      const payload = await readFile(join(tree, "usr/lib/imgpatch/elements/run-phases.sh"), "utf8");
      expect(payload).toMatch(/imgpatch_pkg install[^\n]*'heat-agent'/);
    });
  },
);
