/**
 * customize --install on an RPM guest: an ext4 image made by mke2fs -d from a root whose rpmdb
 * rpm 4.18 wrote; packages from a createrepo_c repository. The dry run's transaction equals
 * `dnf --installroot --assumeno install` on the same root; the written image passes e2fsck and holds
 * the payloads, the queued scriptlets and the first-boot registration.
 */
import { createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { debugfsCat, describeWithTools, e2fsck, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { dnfHome, dnfInstall } from "../../rpm-repo/test/dnf-oracle.js";
import { buildRpms, makeRepo, type SpecPkg } from "../../rpm-repo/test/repo-builder.js";
import { cliInProcess } from "./support/cli-in-process.js";

const cli = (args: string[]) => cliInProcess(args);

const BASE: SpecPkg[] = [
  { name: "el-release", version: "9.4", provides: ["system-release(releasever) = 9", "system-release"] },
  {
    name: "glibc",
    version: "2.34",
    arch: "x86_64",
    provides: ["libc.so.6()(64bit)"],
    files: ["/usr/lib64/libc.so.6"],
  },
  { name: "python3", version: "3.9.18", arch: "x86_64", files: ["/usr/bin/python3"] },
  { name: "bash", version: "5.1.8", arch: "x86_64", files: ["/bin/sh"] },
];

const REPO: SpecPkg[] = [
  {
    name: "python3-os-collect-config",
    version: "13.1.0",
    requires: [
      "python3",
      "python3-os-refresh-config",
      "(python3-requests or python3-urllib3)",
      "/usr/bin/python3",
    ],
    recommends: ["heat-cfntools"],
    files: ["/usr/bin/os-collect-config", "/usr/lib/python3.9/site-packages/os_collect_config/__init__.py"],
    config: ["/etc/os-collect-config.conf"],
    scripts: { post: "echo configured > /var/lib/occ-post" },
  },
  {
    name: "python3-os-refresh-config",
    version: "13.2.0",
    requires: ["python3-dib-utils"],
    files: ["/usr/bin/os-refresh-config"],
  },
  { name: "python3-dib-utils", version: "0.0.11", files: ["/usr/bin/dib-run-parts"] },
  {
    name: "python3-requests",
    version: "2.25.1",
    files: ["/usr/lib/python3.9/site-packages/requests/__init__.py"],
  },
  { name: "python3-urllib3", version: "1.26.5" },
  { name: "heat-cfntools", version: "1.4.2", requires: ["glibc >= 2.30"], files: ["/usr/bin/cfn-init"] },
  { name: "python3", version: "3.11.0", arch: "x86_64", files: ["/usr/bin/python3"] },
];

describeWithTools(
  ["rpmbuild", "createrepo_c", "rpm", "dnf", "mke2fs", "e2fsck", "debugfs", "db5.3_load"],
  "customize --install (RPM guest)",
  () => {
    let dir = "";
    let root = "";
    let repo = "";
    let image = "";
    beforeAll(async () => {
      dir = await tempDir("cli-install-rpm-");
      repo = await makeRepo(dir, "repo", REPO);
      root = join(dir, "root");
      await mkdir(join(root, "etc"), { recursive: true });
      await mkdir(join(root, "var/lib"), { recursive: true });
      await writeFile(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
      await writeFile(join(root, "etc/group"), "root:x:0:\n");
      await writeFile(join(root, "etc/os-release"), 'ID="rhel"\nVERSION_ID="9.4"\n');
      const rb = ["--root", root, "--dbpath", "/var/lib/rpm"];
      expect((await runTool("rpm", [...rb, "--initdb"])).exitCode).toBe(0);
      const rpms = await buildRpms(dir, join(dir, "base"), BASE);
      const r = await runTool("rpm", [...rb, "-i", "--justdb", "--nodeps", ...rpms]);
      expect(r.exitCode, r.stderr).toBe(0);
      image = join(dir, "guest.img");
      const mk = await runTool("mke2fs", ["-q", "-t", "ext4", "-d", root, image, "64M"]);
      expect(mk.exitCode, mk.stderr).toBe(0);
    });

    it("--dry-run --json prints the transaction dnf would run", async () => {
      const r = await cli([
        "customize",
        image,
        "--dry-run",
        "--json",
        "--install",
        "python3-os-collect-config",
        "--repo",
        repo,
      ]);
      expect(r.code, r.err).toBe(0);
      const out = JSON.parse(r.out) as {
        install: { transaction: { install: { nevra: string; reason: string }[]; basearch: string } }[];
      };
      const ours = out.install[0]!.transaction.install.map((t) => t.nevra).sort();
      expect(out.install[0]!.transaction.basearch).toBe("x86_64");
      const dnf = await dnfInstall(
        await dnfHome(dir),
        root,
        [{ id: "r", dir: repo }],
        ["python3-os-collect-config"],
      );
      expect(dnf.resolved, dnf.output).toBe(true);
      expect(ours).toEqual(dnf.install);
      expect(ours).toContain("heat-cfntools-1.4.2-1.noarch");
      expect(ours).not.toContain("python3-3.11.0-1.x86_64");
    });

    it("installs into a new image: payloads, scriptlets for first boot, registration queued; e2fsck clean", async () => {
      const out = join(dir, "out.img");
      const r = await cli([
        "customize",
        image,
        "-o",
        out,
        "--install",
        "python3-os-collect-config",
        "--repo",
        repo,
        "--verbose",
      ]);
      expect(r.code, r.err).toBe(0);
      expect((await e2fsck(out)).exitCode).toBe(0);
      expect((await debugfsCat(out, "/usr/bin/os-refresh-config")).toString()).toBe(
        "python3-os-refresh-config /usr/bin/os-refresh-config\n",
      );
      expect((await debugfsCat(out, "/etc/os-collect-config.conf")).toString()).toContain(
        "python3-os-collect-config",
      );
      expect(r.out).toMatch(/firstboot/);
      expect(r.out).toMatch(/registered 5 packages in \/var\/lib\/rpm\/rpmdb.sqlite/);
      // rpm reads the guest's database: lists the new packages and verifies their files.
      const tree = join(dir, "tree");
      await mkdir(tree);
      const d = await runTool("debugfs", ["-R", `rdump / ${tree}`, out]);
      expect(d.exitCode, d.stderr).toBe(0);
      const rpm = (args: string[]) => runTool("rpm", ["--root", tree, "--dbpath", "/var/lib/rpm", ...args]);
      const qa = (await rpm(["-qa", "--qf", "%{NAME}\\n"])).stdout
        .toString()
        .split("\n")
        .filter(Boolean)
        .sort();
      const added = [
        "heat-cfntools",
        "python3-dib-utils",
        "python3-os-collect-config",
        "python3-os-refresh-config",
        "python3-requests",
      ];
      expect(qa).toEqual([...BASE.map((b) => b.name), ...added].sort());
      const v = await rpm(["-V", "--nodeps", ...added]);
      expect(v.exitCode, `${v.stdout}${v.stderr}`).toBe(0);
      // The input image is untouched.
      expect((await e2fsck(image)).exitCode).toBe(0);
    });

    it("uses the guest's own enabled repositories ($releasever/$basearch from its rpmdb) and honours gpgcheck", async () => {
      // The repository where the guest's .repo file points (file:// URLs are read on the host).
      const tree = join(dir, "el");
      await mkdir(join(tree, "9"), { recursive: true });
      await runTool("cp", ["-a", repo, join(tree, "9", "x86_64")]);
      const repoFile = (gpgcheck: number) =>
        [
          "[local]",
          "name=Local $releasever",
          `baseurl=file://${tree}/$releasever/$basearch/`,
          "enabled=1",
          `gpgcheck=${gpgcheck}`,
          "",
          "[disabled]",
          "baseurl=file:///nonexistent/",
          "enabled=0",
          "",
          "[mirrors-only]",
          "mirrorlist=https://mirrors.invalid/?release=$releasever",
          "",
        ].join("\n");
      const images: string[] = [];
      for (const gpg of [0, 1]) {
        const r2 = join(dir, `root-gpg${gpg}`);
        await runTool("cp", ["-a", root, r2]);
        await mkdir(join(r2, "etc/yum.repos.d"), { recursive: true });
        await writeFile(join(r2, "etc/yum.repos.d/local.repo"), repoFile(gpg));
        const img = join(dir, `guest-gpg${gpg}.img`);
        expect((await runTool("mke2fs", ["-q", "-t", "ext4", "-d", r2, img, "64M"])).exitCode).toBe(0);
        images.push(img);
      }
      const dry = await cli([
        "customize",
        images[0]!,
        "--dry-run",
        "--json",
        "--install",
        "python3-os-refresh-config",
      ]);
      expect(dry.code, dry.err).toBe(0);
      const plan = JSON.parse(dry.out).install[0].transaction;
      expect(plan.releasever).toBe("9");
      expect(plan.repos.map((r: { id: string }) => r.id)).toEqual(["local"]);
      expect(plan.skipped.join(" ")).toMatch(/mirrors-only/);
      expect(plan.install.map((t: { nevra: string }) => t.nevra).sort()).toEqual([
        "python3-dib-utils-0.0.11-1.noarch",
        "python3-os-refresh-config-13.2.0-1.noarch",
      ]);
      // gpgcheck=1: the unsigned packages are refused before anything is written.
      const out = join(dir, "gpg.img");
      const bad = await cli(["customize", images[1]!, "-o", out, "--install", "python3-os-refresh-config"]);
      expect(bad.code).not.toBe(0);
      expect(bad.err).toMatch(/sign/i);
      expect((await runTool("test", ["-e", out])).exitCode).not.toBe(0);
    });

    it("hostile metadata (a primary whose bytes do not match repomd.xml) fails typed; in place, the image is untouched", async () => {
      const bad = join(dir, "bad-repo");
      await runTool("cp", ["-a", repo, bad]);
      const repodata = join(bad, "repodata");
      const primary = (await readdir(repodata)).find((f) => f.includes("primary.xml"))!;
      const bytes = await readFile(join(repodata, primary));
      bytes[bytes.length - 9] ^= 0x55;
      await writeFile(join(repodata, primary), bytes);
      const copy = join(dir, "inplace.img");
      await copyFile(image, copy);
      const before = createHash("sha256")
        .update(await readFile(copy))
        .digest("hex");
      const r = await cli([
        "customize",
        copy,
        "--in-place",
        "--install",
        "python3-os-collect-config",
        "--repo",
        bad,
      ]);
      expect(r.code).not.toBe(0);
      // Which check trips first depends on where the flipped byte lands (inflate, XML or the checksum).
      expect(r.err).toMatch(
        /primary\.xml\.gz( @ offset \d+ \(0x[0-9a-f]+\))?: (.*checksum mismatch|gzip data is corrupt|bad XML)/,
      );
      expect(
        createHash("sha256")
          .update(await readFile(copy))
          .digest("hex"),
      ).toBe(before);
    });

    it("an EL8-style guest (Berkeley DB Packages) gets the same transaction and first-boot rpm --justdb registration", async () => {
      // The same installed headers, stored as a BDB hash by db5.3_load (rpm 4.18 here cannot write BDB).
      const { readRpmdbSqlite } = await import("@imgpatch/rpm-repo");
      const installed = await readRpmdbSqlite(join(root, "var/lib/rpm/rpmdb.sqlite"));
      const bdbRoot = join(dir, "root-bdb");
      await runTool("cp", ["-a", root, bdbRoot]);
      await rm(join(bdbRoot, "var/lib/rpm"), { recursive: true });
      await mkdir(join(bdbRoot, "var/lib/rpm"));
      const key = (n: number) => {
        const k = Buffer.alloc(4);
        k.writeUInt32LE(n);
        return k.toString("hex");
      };
      const lines = ["VERSION=3", "format=bytevalue", "type=hash", "db_pagesize=4096", "HEADER=END"];
      for (const p of installed) lines.push(` ${key(p.hnum)}`, ` ${Buffer.from(p.blob).toString("hex")}`);
      lines.push("DATA=END", "");
      await writeFile(join(dir, "bdb.dump"), lines.join("\n"));
      const l = await runTool("db5.3_load", [
        "-f",
        join(dir, "bdb.dump"),
        join(bdbRoot, "var/lib/rpm/Packages"),
      ]);
      expect(l.exitCode, l.stderr).toBe(0);
      const img = join(dir, "guest-bdb.img");
      expect((await runTool("mke2fs", ["-q", "-t", "ext4", "-d", bdbRoot, img, "64M"])).exitCode).toBe(0);
      const dry = await cli([
        "customize",
        img,
        "--dry-run",
        "--json",
        "--install",
        "python3-os-collect-config",
        "--repo",
        repo,
      ]);
      expect(dry.code, dry.err).toBe(0);
      const plan = JSON.parse(dry.out).install[0].transaction;
      expect(plan.rpmdb.backend).toBe("bdb");
      expect(plan.install.length).toBe(5);
      const out = join(dir, "out-bdb.img");
      const r = await cli([
        "customize",
        img,
        "-o",
        out,
        "--install",
        "python3-os-collect-config",
        "--repo",
        repo,
        "--verbose",
      ]);
      expect(r.code, r.err).toBe(0);
      expect(r.out).not.toMatch(/registered \d+ packages/);
      expect((await e2fsck(out)).exitCode).toBe(0);
      // The packages wait in the guest for rpm --justdb at first boot; the database is as it was.
      const stored = (
        await runTool("debugfs", ["-R", "ls -l /var/lib/imgpatch/rpms", out])
      ).stdout.toString();
      expect(stored).toMatch(/python3-os-collect-config/);
      expect(
        (await debugfsCat(out, "/var/lib/rpm/Packages")).equals(
          await readFile(join(bdbRoot, "var/lib/rpm/Packages")),
        ),
      ).toBe(true);
    });

    it("an unsatisfiable request fails with the chain and leaves no output", async () => {
      const out = join(dir, "bad.img");
      const r = await cli(["customize", image, "-o", out, "--install", "no-such-package", "--repo", repo]);
      expect(r.code).not.toBe(0);
      expect(r.err).toMatch(/no package matches no-such-package/);
      expect((await runTool("test", ["-e", out])).exitCode).not.toBe(0);
    });
  },
);
