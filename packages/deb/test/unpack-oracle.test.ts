/**
 * Unpack oracle: the same starting tree is given to `dpkg --root=DIR --unpack` and to unpackDebs
 * (through rpm-inject's HostDirTarget, a host directory standing in for the guest). The trees must
 * match (types, modes, owners, sizes, contents, link targets, mtimes) and so must dpkg's database:
 * the status file byte for byte, every info file, triggers/File (dpkg runs with --no-triggers: the
 * first boot processes them). Packages are made by dpkg-deb
 * --build with every member compression.
 */
import { cp, mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { HostDirTarget } from "../../rpm-inject/src/host-target.js";
import { comparable, snapshotTree } from "../../rpm-inject/test/helpers.js";
import { readDeb, unpackDebs } from "../src/index.js";
import { buildDeb, type DebSpec } from "./build-deb.js";

const INSTALLED = `Package: trigger-watcher
Status: install ok installed
Priority: optional
Section: misc
Installed-Size: 1
Maintainer: imgpatch tests <tests@example.invalid>
Architecture: all
Version: 1.0
Description: watches /usr/share/demo-doc
 test stanza

`;

async function startTree(root: string): Promise<void> {
  for (const d of [
    "var/lib/dpkg/info",
    "var/lib/dpkg/updates",
    "var/lib/dpkg/triggers",
    "etc",
    "usr/lib",
    "usr/bin",
  ]) {
    await mkdir(join(root, d), { recursive: true });
  }
  await writeFile(join(root, "var/lib/dpkg/status"), INSTALLED);
  await writeFile(join(root, "var/lib/dpkg/available"), "");
  await writeFile(join(root, "var/lib/dpkg/triggers/File"), "/usr/share/demo-doc trigger-watcher\n");
  await writeFile(join(root, "var/lib/dpkg/info/trigger-watcher.list"), "/.\n");
  await writeFile(join(root, "var/lib/dpkg/info/trigger-watcher.triggers"), "interest /usr/share/demo-doc\n");
  await writeFile(
    join(root, "var/lib/dpkg/diversions"),
    "/usr/bin/demo-diverted\n/usr/bin/demo-diverted.distrib\n:\n",
  );
  // The host's databases, so owner names resolve the same for dpkg (host NSS) and for us (the guest's).
  await cp("/etc/passwd", join(root, "etc/passwd"));
  await cp("/etc/group", join(root, "etc/group"));
  await symlink("usr/lib", join(root, "lib")); // merged /usr
  await writeFile(join(root, "etc/demo.conf"), "locally modified\n");
}

const DEMO: DebSpec = {
  name: "demo",
  version: "1:2.0~rc1-3",
  fields: {
    Depends: "libc6 (>= 2.36)",
    Section: "admin",
    Priority: "optional",
    Homepage: "https://example.invalid/",
  },
  files: {
    "usr/bin/demo": { content: "#!/bin/sh\necho demo\n", mode: 0o755 },
    "usr/bin/demo-suid": { content: "suid\n", mode: 0o4755, gid: 1 },
    "usr/bin/demo-link": { hardlink: "usr/bin/demo" },
    "usr/bin/demo-sym": { symlink: "demo" },
    "usr/bin/demo-diverted": "diverted\n",
    "usr/share/demo-doc/README": "read me\n",
    "usr/share/demo-doc/abs": { symlink: "/etc/demo.conf" },
    "lib/demo/plugin.so": { content: "plugin\n", mode: 0o644, uid: 1, gid: 1 },
    "var/lib/demo": { dir: true, mode: 0o2750, uid: 1, gid: 1 },
    "etc/demo.conf": "shipped\n",
    "etc/demo-new.conf": "fresh\n",
  },
  control: {
    conffiles: "/etc/demo.conf\n/etc/demo-new.conf\n",
    postinst: "#!/bin/sh\nexit 0\n",
    triggers: "interest-noawait /usr/share/demo-interest\n",
  },
};

describeWithTools(["dpkg", "dpkg-deb", "getfattr"], "unpack vs dpkg --root --unpack", () => {
  for (const compression of ["gzip", "xz", "zstd", "none"] as const) {
    it(`${compression} members, conffiles, diversion, merged-usr parent, suid, hard link, file trigger`, async () => {
      const base = await tempDir("deb-unpack-");
      const deb = await buildDeb({ ...DEMO, compression }, base);
      const ours = join(base, "ours");
      const theirs = join(base, "theirs");
      await startTree(ours);
      await cp(ours, theirs, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });

      const r = await runTool(
        "dpkg",
        ["--root", theirs, "--force-not-root", "--no-triggers", "--unpack", deb],
        { timeoutMs: 60_000 },
      );
      expect(r.exitCode, r.stderr.toString() + r.stdout.toString()).toBe(0);

      const file = await readDeb(deb);
      try {
        const report = await unpackDebs(new HostDirTarget(ours), [file]);
        expect(report.packages[0]).toMatchObject({ package: "demo", version: "1:2.0~rc1-3", files: 7 });
      } finally {
        await file.close();
      }

      const dbDir = "/var/lib/dpkg";
      // Directory mtimes follow the real clock as entries are added, on both sides.
      const ta = await snapshotTree(theirs, [dbDir]);
      const isDir = (p: string) => ta.get(p)?.type === "dir";
      const a = comparable(ta, isDir);
      const b = comparable(await snapshotTree(ours, [dbDir]), isDir);
      expect(b).toEqual(a);
      const read = (root: string, p: string) => readFile(join(root, p), "utf8").catch(() => "<absent>");
      for (const p of ["status", "triggers/File", "diversions"]) {
        expect(await read(ours, `${dbDir}/${p}`), p).toBe(await read(theirs, `${dbDir}/${p}`));
      }
      const infos = (await readdir(join(theirs, dbDir, "info"))).sort();
      expect((await readdir(join(ours, dbDir, "info"))).sort()).toEqual(infos);
      for (const f of infos)
        expect(await read(ours, `${dbDir}/info/${f}`), f).toBe(await read(theirs, `${dbDir}/info/${f}`));
    });
  }
});
