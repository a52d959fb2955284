/**
 * `imgpatch customize --install / --deb / --repo` on an ext4 Debian-like guest, through the real
 * bin: the dry-run plan (text and --json) equals what the install then does; after the install the
 * image is e2fsck-clean, dpkg's database lists every package "install ok unpacked", the first-boot
 * queue holds the configure script; running that script against the dumped tree with dpkg itself
 * (dpkg --root, the guest-relative paths through IMGPATCH_FIRSTBOOT_ROOT) leaves every package
 * "install ok installed" and `dpkg --audit` empty.
 */
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { debugfsRdump, e2fsck, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { buildDeb, type DebSpec } from "../../deb/test/build-deb.js";
import { makeRepo } from "../../deb/test/repo.js";
import { describeAsRootWithTools } from "../../rpm-inject/test/helpers.js";
import { runBin } from "./support/run-bin.js";

const STATUS = `Package: dpkg
Status: install ok installed
Priority: required
Essential: yes
Maintainer: Dpkg Developers <debian-dpkg@lists.debian.org>
Architecture: amd64
Version: 1.21.22
Description: Debian package management system

`;

const pkg = (name: string, fields: Record<string, string>, extra: Partial<DebSpec> = {}): DebSpec => ({
  name,
  arch: "all",
  fields,
  files: { [`usr/share/${name}/data`]: `${name}\n`, ...extra.files },
  control: extra.control,
  compression: "xz",
});

let repo: string;
let localDeb: string;

async function guestImage(base: string, prepare?: (tree: string) => Promise<void>): Promise<string> {
  const tree = join(base, "tree");
  for (const d of [
    "var/lib/dpkg/info",
    "var/lib/dpkg/updates",
    "etc/apt/sources.list.d",
    "usr/share",
    "usr/sbin",
  ]) {
    await runTool("mkdir", ["-p", join(tree, d)]);
  }
  await writeFile(join(tree, "var/lib/dpkg/status"), STATUS);
  await writeFile(join(tree, "var/lib/dpkg/info/dpkg.list"), "/.\n/usr\n");
  await writeFile(join(tree, "var/lib/dpkg/info/dpkg.md5sums"), "");
  await writeFile(
    join(tree, "etc/passwd"),
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
  );
  await writeFile(join(tree, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
  await writeFile(join(tree, "etc/apt/sources.list"), `deb [trusted=yes] file://${repo} stable main\n`);
  await prepare?.(tree);
  const img = join(base, "guest.img");
  const r = await runTool("mke2fs", ["-q", "-F", "-t", "ext4", "-d", tree, img, "32M"]);
  expect(r.exitCode, r.stderr.toString()).toBe(0);
  return img;
}

describeAsRootWithTools(
  ["dpkg", "dpkg-deb", "mke2fs", "e2fsck", "debugfs"],
  "customize --install/--deb on a Debian guest",
  () => {
    beforeAll(async () => {
      const base = await tempDir("deb-cli-repo-");
      const debs = [
        await buildDeb(
          pkg(
            "agent",
            { Depends: "agent-lib (>= 1.0), mta | fake-mta", Recommends: "agent-doc" },
            {
              control: {
                postinst:
                  "#!/bin/sh\nset -e\nadduser --system --group --home /var/lib/agent agent >/dev/null 2>&1 || true\n",
              },
              files: { "etc/agent.conf": "x=1\n" },
            },
          ),
          base,
        ),
        await buildDeb(pkg("agent-lib", {}), base),
        await buildDeb(pkg("fake-mta", { Provides: "mta" }), base),
        await buildDeb(pkg("agent-doc", {}), base),
      ];
      repo = join(base, "repo");
      await makeRepo(repo, debs);
      localDeb = await buildDeb(pkg("local-tool", { Depends: "agent-lib" }), base);
    });

    it("--dry-run --json plan, then --install into an overlay: clean, recorded, configured by dpkg at first boot", async () => {
      const base = await tempDir("deb-cli-");
      const img = await guestImage(base);
      const dry = await runBin(["customize", img, "--install", "agent", "--dry-run", "--json"], {
        IMGPATCH_CACHE_DIR: join(base, "cache"),
      });
      expect(dry.code, dry.stderr).toBe(0);
      const plan = JSON.parse(dry.stdout).deb[0].plan;
      expect(plan.packages.map((p: { package: string }) => p.package).sort()).toEqual([
        "agent",
        "agent-doc",
        "agent-lib",
        "fake-mta",
      ]);
      expect(plan.packages.find((p: { package: string }) => p.package === "fake-mta").reason).toBe(
        "Depends of agent",
      );
      expect(plan.repositories[0].trust).toMatch(/NOT VERIFIED/);

      const noRec = await runBin(
        ["customize", img, "--install", "agent", "--no-install-recommends", "--dry-run", "--json"],
        { IMGPATCH_CACHE_DIR: join(base, "cache") },
      );
      expect(
        JSON.parse(noRec.stdout)
          .deb[0].plan.packages.map((p: { package: string }) => p.package)
          .sort(),
      ).toEqual(["agent", "agent-lib", "fake-mta"]);

      const out = join(base, "out.qcow2");
      const r = await runBin(
        ["customize", img, "--install", "agent", "--deb", localDeb, "--overlay", out, "-v"],
        { IMGPATCH_CACHE_DIR: join(base, "cache") },
      );
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(r.stdout).toContain("added system user agent");
      const raw = join(base, "out.raw");
      expect((await runTool("qemu-img", ["convert", "-O", "raw", out, raw])).exitCode).toBe(0);
      const fsck = await e2fsck(raw);
      expect(fsck.clean, fsck.output).toBe(true);

      const dump = join(base, "dump");
      await runTool("mkdir", [dump]);
      const root = await debugfsRdump(raw, "/", dump);
      const status = await readFile(join(root, "var/lib/dpkg/status"), "utf8");
      for (const p of ["agent", "agent-lib", "fake-mta", "agent-doc", "local-tool"]) {
        expect(status, p).toMatch(new RegExp(`Package: ${p}\\nStatus: install ok unpacked`));
      }
      expect(await readFile(join(root, "etc/passwd"), "utf8")).toMatch(
        /^agent:x:100:100::\/var\/lib\/agent:/m,
      );
      const pending = await readdir(join(root, "var/lib/imgpatch/firstboot/pending"));
      const scripts = pending.filter((n) => n.endsWith("dpkg-configure"));
      expect(scripts.length).toBe(2);

      // The first boot, with the real dpkg on the dumped tree (maintainer scripts chrootless: the tree
      // has no shell of its own).
      for (const s of scripts) {
        const run = await runTool("sh", [join(root, "var/lib/imgpatch/firstboot/pending", s)], {
          env: {
            IMGPATCH_FIRSTBOOT_ROOT: root,
            DPKG_FORCE: "script-chrootless,not-root",
            PATH: process.env.PATH ?? "",
          },
          timeoutMs: 60_000,
        });
        expect(run.exitCode, run.stderr.toString() + run.stdout.toString()).toBe(0);
      }
      const audit = await runTool("dpkg", ["--root", root, "--audit"]);
      expect(audit.stdout.toString()).toBe("");
      for (const p of ["agent", "agent-lib", "fake-mta", "agent-doc", "local-tool"]) {
        const st = await runTool("dpkg", ["--root", root, "-s", p]);
        expect(st.stdout.toString(), p).toContain("Status: install ok installed");
      }
      expect(await readFile(join(root, "etc/agent.conf"), "utf8")).toBe("x=1\n");
    });

    it("elements: package-installs entries installed at build time on a Debian guest, the rest deferred", async () => {
      const base = await tempDir("deb-cli-elements-");
      const img = await guestImage(base, async (t) => {
        await writeFile(join(t, "etc/os-release"), 'ID=debian\nVERSION_ID="12"\n');
      });
      const el = join(base, "elements/agent-element");
      await runTool("mkdir", ["-p", join(el, "install.d")]);
      await writeFile(join(el, "package-installs.yaml"), "agent:\nagent-doc:\n  uninstall: true\n");
      await writeFile(join(el, "element-deps"), "package-installs\n");
      await runTool("mkdir", ["-p", join(base, "elements/package-installs")]);
      await writeFile(
        join(el, "install.d/50-agent-setup"),
        "#!/bin/bash\necho configured > /etc/agent.setup\n",
        { mode: 0o755 },
      );
      const out = join(base, "out.qcow2");
      const r = await runBin(
        ["elements", img, "--overlay", out, "--elements-path", join(base, "elements"), "agent-element", "-v"],
        {
          IMGPATCH_CACHE_DIR: join(base, "cache"),
        },
      );
      expect(r.code, r.stderr + r.stdout).toBe(0);
      const raw = join(base, "out.raw");
      expect((await runTool("qemu-img", ["convert", "-O", "raw", out, raw])).exitCode).toBe(0);
      expect((await e2fsck(raw)).clean).toBe(true);
      await runTool("mkdir", [join(base, "dump")]);
      const root = await debugfsRdump(raw, "/", join(base, "dump"));
      const status = await readFile(join(root, "var/lib/dpkg/status"), "utf8");
      expect(status, r.stdout + r.stderr).toMatch(/Package: agent\nStatus: install ok unpacked/);
      const pending = (await readdir(join(root, "var/lib/imgpatch/firstboot/pending"))).sort();
      expect(pending.findIndex((n) => n.endsWith("dpkg-configure"))).toBeLessThan(
        pending.findIndex((n) => n.endsWith("dib-elements")),
      );
      const payload = await readFile(join(root, "usr/lib/imgpatch/elements/run-phases.sh"), "utf8").catch(
        () => "",
      );
      expect(payload).not.toMatch(/imgpatch_pkg install[^\n]*'agent'/);
      expect(payload).toMatch(/agent-doc/); // the uninstall entry stays with the first boot
    });

    it("an expired Release: refused naming it, nothing written; --allow-expired installs, loudly", async () => {
      const base = await tempDir("deb-cli-expired-");
      const expired = join(base, "expired-repo");
      const lib = await buildDeb(pkg("agent-lib", {}), base);
      const until = new Date(Date.now() - 3 * 86400_000).toUTCString();
      await makeRepo(expired, [lib], "stable", "amd64", `Valid-Until: ${until}\n`);
      const img = await guestImage(base, async (t) => {
        await writeFile(join(t, "etc/apt/sources.list"), `deb [trusted=yes] file://${expired} stable main\n`);
      });
      const before = await readFile(img);
      const out = join(base, "out.qcow2");
      const env = { IMGPATCH_CACHE_DIR: join(base, "cache") };
      const refused = await runBin(["customize", img, "--install", "agent-lib", "--overlay", out], env);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(
        /dists\/stable\/Release: Release file for file:\/\/\S+ stable is expired \(invalid since 3d /,
      );
      expect(Buffer.compare(await readFile(img), before)).toBe(0);
      expect(await readFile(out).catch(() => undefined)).toBeUndefined();
      const allowed = await runBin(
        ["customize", img, "--install", "agent-lib", "--overlay", out, "--allow-expired"],
        env,
      );
      expect(allowed.code, allowed.stderr).toBe(0);
      expect(allowed.stderr).toMatch(/WARNING: .*is expired.*used anyway as asked \(--allow-expired\)/);
      const raw = join(base, "out.raw");
      expect((await runTool("qemu-img", ["convert", "-O", "raw", out, raw])).exitCode).toBe(0);
      const fsck = await e2fsck(raw);
      expect(fsck.clean, fsck.output).toBe(true);
    });

    it("an unknown package: a clear error naming it, nothing written", async () => {
      const base = await tempDir("deb-cli-unknown-");
      const img = await guestImage(base);
      const r = await runBin(["customize", img, "--install", "no-such-package", "--dry-run"], {
        IMGPATCH_CACHE_DIR: join(base, "cache"),
      });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/no-such-package has no installation candidate/);
    });
  },
);
