/**
 * Unpack oracle: the same starting tree is given to `dpkg --root=DIR --unpack` and to unpackDebs
 * (through rpm-inject's HostDirTarget, a host directory standing in for the guest). The trees must
 * match (types, modes, owners, sizes, contents, link targets, mtimes) and so must dpkg's database:
 * the status file byte for byte, every info file, triggers/File (dpkg runs with --no-triggers: the
 * first boot processes them). Packages are made by dpkg-deb
 * --build with every member compression.
 */
import { cp, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { runTool, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { HostDirTarget } from "../../rpm-inject/src/host-target.js";
import { comparable, describeAsRootWithTools, snapshotTree } from "../../rpm-inject/test/helpers.js";
import { readDeb, unpackDebs } from "../src/index.js";
import { buildDeb } from "./build-deb.js";
import { DEMO, pinSymlinkTimes, startTree } from "./guest-tree.js";

describeAsRootWithTools(["dpkg", "dpkg-deb", "getfattr"], "unpack vs dpkg --root --unpack", () => {
  for (const compression of ["gzip", "xz", "zstd", "none"] as const) {
    it(`${compression} members, conffiles, diversion, merged-usr parent, suid, hard link, file trigger`, async () => {
      const base = await tempDir("deb-unpack-");
      const deb = await buildDeb({ ...DEMO, compression }, base);
      const ours = join(base, "ours");
      const theirs = join(base, "theirs");
      await startTree(ours);
      await cp(ours, theirs, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
      await pinSymlinkTimes(theirs);

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
