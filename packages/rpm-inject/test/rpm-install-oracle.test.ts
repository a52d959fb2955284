/**
 * The strongest oracle: rpm itself. The same starting guest tree is installed into twice — once by
 * `rpm -i --root DIR --noscripts`, once by our injector through HostDirTarget — and the two trees must
 * match: types, modes, owners, sizes, contents, link targets, hard-link structure, mtimes, file
 * capabilities and the .rpmnew/.rpmorig files.
 */
import { chmod, lstat, lutimes, mkdir, readdir, symlink, utimes } from "node:fs/promises";
import { join } from "node:path";
import { runTool, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { HostDirTarget, injectRpm, readRpm } from "../src/index.js";
import {
  comparable,
  describeAsRootWithTools,
  fixtureRpm,
  GROUP,
  linkGroups,
  PASSWD,
  put,
  snapshotTree,
} from "./helpers.js";

const DBPATH = "/var/lib/rpm";

interface Scenario {
  name: string;
  rpm: string;
  /** Extra starting state, applied to both trees. */
  prepare?: (root: string) => Promise<void>;
}

async function baseTree(root: string, scenario: Scenario): Promise<void> {
  const started = Date.now() - 2000;
  await put(root, "/etc/passwd", PASSWD);
  await put(root, "/etc/group", GROUP);
  await mkdir(join(root, "var/lib"), { recursive: true });
  await mkdir(join(root, "var/log"), { recursive: true });
  await scenario.prepare?.(root);
  await pinTimes(root, started);
}

/** The two starting trees are made at different moments (a second boundary can fall between them
 * on a loaded machine): every entry this test just made gets the same fixed times in both, so no
 * comparison depends on the wall clock. Times a scenario set on purpose (older) are kept. */
const PINNED = 1_500_000_000;
async function pinTimes(dir: string, madeAfterMs: number): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) await pinTimes(p, madeAfterMs);
    else if ((await lstat(p)).mtimeMs >= madeAfterMs) await lutimes(p, PINNED, PINNED);
  }
  await lutimes(dir, PINNED, PINNED);
}

async function rpmInstall(root: string, pkg: string): Promise<void> {
  const init = await runTool("rpm", ["--root", root, "--dbpath", DBPATH, "--initdb"], { timeoutMs: 60_000 });
  expect(init.exitCode, init.stderr).toBe(0);
  const r = await runTool(
    "rpm",
    [
      "-i",
      "--root",
      root,
      "--dbpath",
      DBPATH,
      "--nodeps",
      "--noscripts",
      "--notriggers",
      "--nosignature",
      pkg,
    ],
    { timeoutMs: 60_000 },
  );
  expect(r.exitCode, r.stderr).toBe(0);
}

const existingConfigs = async (root: string) => {
  await put(root, "/etc/imgpatch-demo/plain.conf", "plain=locally edited\n");
  await put(root, "/etc/imgpatch-demo/keep.conf", "keep=locally edited\n");
  await put(root, "/etc/imgpatch-demo/same.conf", "same=1\n", 0o600);
  await utimes(join(root, "etc/imgpatch-demo/same.conf"), 1600000000, 1600000000);
  // A non-config file already there is replaced; an existing package directory gets the package's mode.
  await put(root, "/usr/bin/imgpatch-hello", "old binary\n", 0o700);
  await mkdir(join(root, "usr/share/imgpatch-demo/tree"), { recursive: true });
  await chmod(join(root, "usr/share/imgpatch-demo"), 0o700);
};

/** Guest symlinks in the way: a package directory that is a symlink to a directory, a file and a
 * symlink where the package has the other kind. */
const guestSymlinks = async (root: string) => {
  await mkdir(join(root, "usr/lib64/imgpatch-demo-real"), { recursive: true });
  await mkdir(join(root, "usr/lib"), { recursive: true });
  await symlink("../lib64/imgpatch-demo-real", join(root, "usr/lib/imgpatch-demo"), true);
  await put(root, "/usr/bin/imgpatch-hello-link", "a file where the package has a symlink\n");
  await mkdir(join(root, "usr/share/imgpatch-demo"), { recursive: true });
  await symlink("/etc/passwd", join(root, "usr/share/imgpatch-demo/hl1"));
};

const SCENARIOS: Scenario[] = [
  { name: "demo (xz) over guest symlinks", rpm: "imgpatch-demo-xz", prepare: guestSymlinks },
  { name: "demo (xz) over existing config files", rpm: "imgpatch-demo-xz", prepare: existingConfigs },
  { name: "demo (gzip) into a fresh tree", rpm: "imgpatch-demo-gzip" },
  { name: "demo (zstd) into a fresh tree", rpm: "imgpatch-demo-zstd" },
  { name: "mini (bzip2)", rpm: "imgpatch-mini-bzip2" },
  { name: "mini (uncompressed)", rpm: "imgpatch-mini-none" },
  { name: "mini (md5 file digests)", rpm: "imgpatch-mini-md5" },
  { name: "mini (sha512 file digests)", rpm: "imgpatch-mini-sha512" },
  {
    name: "mini over an existing noreplace config",
    rpm: "imgpatch-mini-xz",
    prepare: (root) => put(root, "/etc/imgpatch-mini.conf", "mini=mine\n"),
  },
];

describeAsRootWithTools(
  ["rpm", "getfattr", "setfattr"],
  "rpm -i --root oracle vs injectRpm into a host directory",
  () => {
    for (const scenario of SCENARIOS) {
      it(scenario.name, async () => {
        const base = await tempDir("rpm-oracle-");
        const theirs = join(base, "rpm");
        const ours = join(base, "ours");
        await baseTree(theirs, scenario);
        await new Promise((r) => setTimeout(r, 1100));
        await baseTree(ours, scenario);
        await new Promise((r) => setTimeout(r, 1100));
        const pkgPath = fixtureRpm(scenario.rpm);

        await rpmInstall(theirs, pkgPath);
        const pkg = await readRpm(pkgPath);
        let report: Awaited<ReturnType<typeof injectRpm>>["report"];
        try {
          ({ report } = await injectRpm(pkg, new HostDirTarget(ours)));
        } finally {
          await pkg.close();
        }

        const exclude = [DBPATH];
        const a = await snapshotTree(theirs, exclude);
        const b = await snapshotTree(ours, exclude);
        // Directories that gain entries during the install end with the time of the install (under rpm
        // too), which differs between the two runs; empty package directories keep the header's mtime.
        const hasChildren = (p: string) => [...a.keys()].some((q) => q.startsWith(`${p}/`));
        // rpm's side also creates its database under /var/lib: that directory's mtime is the moment of
        // `rpm --initdb`, which our side has no counterpart for.
        const holdsDb = (p: string) => DBPATH.startsWith(`${p}/`);
        const ignoreMtime = (p: string) => a.get(p)?.type === "dir" && (hasChildren(p) || holdsDb(p));
        expect(comparable(b, ignoreMtime)).toEqual(comparable(a, ignoreMtime));
        expect(linkGroups(b)).toEqual(linkGroups(a));

        // Guard against a vacuous comparison: what the package exercises is really in rpm's tree.
        for (const f of pkg.files) {
          if (f.caps) expect(a.get(f.path)?.caps, f.path).toMatch(/^0x01000002/); // LE magic_etc: revision 2 + effective;
          if (f.user !== "root" && !f.ghost) expect(a.get(f.path)?.uid, f.path).toBe(990);
          if (f.ghost) expect(a.has(f.path), f.path).toBe(false);
          if (f.hardlinks) expect(a.get(f.path)?.nlink, f.path).toBe(f.hardlinks.length);
        }
        if (scenario.prepare === existingConfigs) {
          expect(a.has("/etc/imgpatch-demo/plain.conf.rpmorig")).toBe(true);
          expect(a.has("/etc/imgpatch-demo/keep.conf.rpmnew")).toBe(true);
          expect(report.configKept).toEqual(["/etc/imgpatch-demo/same.conf"]);
        }

        if (scenario.prepare === guestSymlinks) {
          expect(a.get("/usr/lib/imgpatch-demo")?.type).toBe("symlink");
          expect(a.get("/usr/lib64/imgpatch-demo-real/empty")?.type).toBe("dir");
          expect(a.get("/usr/bin/imgpatch-hello-link")?.type).toBe("symlink");
          expect(a.get("/usr/share/imgpatch-demo/hl1")?.type).toBe("file");
        }

        // The report names what rpm did with the config files.
        const rpmnew = [...a.keys()].filter((p) => p.endsWith(".rpmnew"));
        const rpmorig = [...a.keys()].filter((p) => p.endsWith(".rpmorig"));
        expect(report.rpmnew.sort()).toEqual(rpmnew.sort());
        expect(report.rpmorig.sort()).toEqual(rpmorig.sort());
      });
    }
  },
);
