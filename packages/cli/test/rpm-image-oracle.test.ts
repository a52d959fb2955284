/**
 * Image oracles for rpm-inject through the CLI's public path (openGuest in place + the GuestFs bridge):
 * the same starting tree becomes an ext4 image (`mke2fs -d`) and a host directory; the package is
 * injected into the image by us and installed into the directory by `rpm -i --root`. Then:
 *  1. `e2fsck -fn` is clean;
 *  2. `debugfs rdump /` of the image matches rpm's tree (types, modes, owners, sizes, contents, link
 *     targets, mtimes, .rpmnew/.rpmorig), hard links share an inode and security.capability matches;
 *  3. every non-ghost entry of `rpm -qp --dump` matches what debugfs sees in the image;
 *  4. hostile packages leave the image byte-identical.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ImgpatchError } from "@imgpatch/disk";
import { injectRpm, readRpm } from "@imgpatch/rpm-inject";
import {
  debugfsCat,
  debugfsRdump,
  debugfsStat,
  debugfsXattrs,
  e2fsck,
  rpmDump,
  runTool,
  tempDir,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { buildRpm, S_IFDIR, S_IFREG } from "../../rpm-inject/test/build-rpm.js";
import {
  comparable,
  describeAsRootWithTools,
  fixtureRpm,
  GROUP,
  PASSWD,
  put,
  snapshotTree,
  type TreeEntry,
} from "../../rpm-inject/test/helpers.js";
import { injectTargetFromGuestFs } from "../src/guest/rpm-bridge.js";
import { openGuest } from "../src/image/open-guest.js";

const DBPATH = "/var/lib/rpm";
const UIDS: Record<string, number> = { root: 0, imgsvc: 990 };
const GIDS: Record<string, number> = { root: 0, imgsvc: 991 };

async function startTree(root: string, prepare?: (root: string) => Promise<void>): Promise<void> {
  await put(root, "/etc/passwd", PASSWD);
  await put(root, "/etc/group", GROUP);
  await put(root, "/var/lib/.keep", "");
  await put(root, "/var/log/.keep", "");
  await prepare?.(root);
}

async function mkImage(tree: string, img: string): Promise<void> {
  const r = await runTool("mke2fs", ["-q", "-F", "-t", "ext4", "-d", tree, img, "24M"]);
  expect(r.exitCode, r.stderr.toString()).toBe(0);
}

async function rpmInstall(root: string, pkg: string): Promise<void> {
  for (const args of [
    ["--initdb"],
    ["-i", "--nodeps", "--noscripts", "--notriggers", "--nosignature", pkg],
  ]) {
    const r = await runTool("rpm", ["--root", root, "--dbpath", DBPATH, ...args], { timeoutMs: 60_000 });
    expect(r.exitCode, r.stderr.toString()).toBe(0);
  }
}

/** Injects through the CLI's public path; commits on success, closes (abandons) on failure. */
async function injectIntoImage(img: string, pkgSource: string | Uint8Array) {
  const guest = await openGuest(img, { inPlace: true });
  let committed = false;
  try {
    const pkg = await readRpm(pkgSource, { name: "pkg.rpm" });
    try {
      const { report } = await injectRpm(pkg, injectTargetFromGuestFs(guest.fs, img));
      await guest.commit();
      committed = true;
      return report;
    } finally {
      await pkg.close();
    }
  } finally {
    if (!committed) await guest.close();
  }
}

const sha256 = async (path: string) =>
  createHash("sha256")
    .update(await readFile(path))
    .digest("hex");

const existingConfigs = async (root: string) => {
  await put(root, "/etc/imgpatch-demo/plain.conf", "plain=locally edited\n");
  await put(root, "/etc/imgpatch-demo/keep.conf", "keep=locally edited\n");
  await put(root, "/usr/bin/imgpatch-hello", "old binary\n", 0o700);
};

const SCENARIOS: Array<{ name: string; rpm: string; prepare?: (root: string) => Promise<void> }> = [
  { name: "demo (gzip) into a fresh image", rpm: "imgpatch-demo-gzip" },
  { name: "demo (xz) over existing config files", rpm: "imgpatch-demo-xz", prepare: existingConfigs },
  { name: "demo (zstd) into a fresh image", rpm: "imgpatch-demo-zstd" },
  {
    name: "mini (xz) over an existing noreplace config",
    rpm: "imgpatch-mini-xz",
    prepare: (root) => put(root, "/etc/imgpatch-mini.conf", "mini=mine\n"),
  },
];

const DIGESTS: Record<number, string> = { 32: "md5", 40: "sha1", 64: "sha256", 128: "sha512" };

describeAsRootWithTools(
  ["rpm", "mke2fs", "e2fsck", "debugfs", "getfattr"],
  "rpm-inject image oracles (mke2fs -d, openGuest, rpm -i --root, debugfs)",
  () => {
    for (const scenario of SCENARIOS) {
      it(scenario.name, async () => {
        const base = await tempDir("rpm-img-");
        const tree = join(base, "tree");
        const theirs = join(base, "rpm");
        const img = join(base, "guest.img");
        await startTree(tree, scenario.prepare);
        await cp(tree, theirs, { recursive: true, preserveTimestamps: true });
        await mkImage(tree, img);
        const pkgPath = fixtureRpm(scenario.rpm);

        await rpmInstall(theirs, pkgPath);
        const report = await injectIntoImage(img, pkgPath);

        // 1. A consistent filesystem.
        const fsck = await e2fsck(img);
        expect(fsck.problems, fsck.output).toEqual([]);
        expect(fsck.clean, fsck.output).toBe(true);

        // 2. rdump of the image vs rpm's tree. rdump (as root) keeps owners, modes and times but not
        // hard links or xattrs: those are compared through debugfs stat / ea_list below.
        await mkdir(join(base, "dump"));
        const dump = await debugfsRdump(img, "/", join(base, "dump"));
        const a = await snapshotTree(theirs, [DBPATH]);
        const b = await snapshotTree(dump, ["/lost+found"]);
        const hasChildren = (p: string) => [...a.keys()].some((q) => q.startsWith(`${p}/`));
        // rpm leaves directories that gain entries with the install time. rdump does not restore
        // symlink times (it stamps them with the dump time): those are checked with debugfs stat in 3.
        const dirMtimeIsInstallTime = (p: string) => a.get(p)?.type === "dir" && hasChildren(p);
        const ignoreMtime = (p: string) => dirMtimeIsInstallTime(p) || a.get(p)?.type === "symlink";
        const strip = (t: Map<string, TreeEntry>) =>
          Object.fromEntries(
            Object.entries(comparable(t, ignoreMtime)).map(([p, { nlink: _n, caps: _c, ...e }]) => [p, e]),
          );
        expect(strip(b)).toEqual(strip(a));

        const inodeGroups = new Map<number, string[]>();
        const rpmGroups = new Map<number, string[]>();
        let caps = 0;
        for (const [p, e] of a) {
          const st = await debugfsStat(img, p);
          if (e.type !== "dir") expect(st.links, `${p} links`).toBe(e.nlink);
          if (e.type === "file" && e.nlink > 1) {
            inodeGroups.set(st.inode, [...(inodeGroups.get(st.inode) ?? []), p]);
            rpmGroups.set(e.ino, [...(rpmGroups.get(e.ino) ?? []), p]);
          }
          const xa = await debugfsXattrs(img, p);
          const ours = xa["security.capability"];
          expect(ours ? `0x${ours.toString("hex")}` : undefined, p).toBe(e.caps);
          if (e.caps) caps++;
        }
        const groups = (m: Map<number, string[]>) => [...m.values()].map((g) => g.sort().join(" ")).sort();
        expect(groups(inodeGroups)).toEqual(groups(rpmGroups));

        // 3. rpm -qp --dump vs what debugfs sees, for every non-ghost entry.
        const entries = await rpmDump(pkgPath);
        const checked = { files: 0, links: 0, dirs: 0 };
        for (const f of entries) {
          if (f.flags & 64) {
            expect(a.has(f.path), f.path).toBe(false); // ghosts are not laid down (by rpm nor us)
            continue;
          }
          // A modified noreplace config stays; the package's copy is the .rpmnew next to it.
          const at = a.has(`${f.path}.rpmnew`) ? `${f.path}.rpmnew` : f.path;
          const st = await debugfsStat(img, at);
          expect({ mode: st.mode, uid: st.uid, gid: st.gid, mtime: st.mtime?.sec }, at).toEqual({
            mode: f.mode,
            uid: UIDS[f.user],
            gid: GIDS[f.group],
            mtime: dirMtimeIsInstallTime(at) ? st.mtime?.sec : f.mtime,
          });
          if ((f.mode & 0o170000) === S_IFREG) {
            const body = await debugfsCat(img, at);
            expect(body.length, at).toBe(f.size);
            const algo = DIGESTS[f.digest.length];
            expect(algo, `${at}: digest ${f.digest}`).toBeDefined();
            expect(createHash(algo).update(body).digest("hex"), at).toBe(f.digest);
            checked.files++;
          } else if (f.linkTo) {
            expect(st.linkTarget, at).toBe(f.linkTo);
            expect(st.size, at).toBe(f.size);
            checked.links++;
          } else if ((f.mode & 0o170000) === S_IFDIR) checked.dirs++;
        }

        // Guard against vacuous comparisons: what the fixture exercises is really there.
        const pkg = await readRpm(pkgPath);
        try {
          expect(checked.files).toBeGreaterThan(0);
          if (scenario.rpm.startsWith("imgpatch-demo")) {
            expect(checked.links).toBeGreaterThan(0);
            expect(checked.dirs).toBeGreaterThan(0);
            expect(caps).toBeGreaterThan(0);
            expect(inodeGroups.size).toBeGreaterThan(0);
            expect(pkg.files.some((f) => f.user !== "root" && !f.ghost)).toBe(true);
          }
        } finally {
          await pkg.close();
        }
        const rpmnew = [...a.keys()].filter((p) => p.endsWith(".rpmnew")).sort();
        const rpmorig = [...a.keys()].filter((p) => p.endsWith(".rpmorig")).sort();
        expect(report.rpmnew.sort()).toEqual(rpmnew);
        expect(report.rpmorig.sort()).toEqual(rpmorig);
        if (scenario.prepare) expect(rpmnew.length + rpmorig.length).toBeGreaterThan(0);
      });
    }

    const enc = new TextEncoder();
    const demo = () => new Uint8Array(readFileSync(fixtureRpm("imgpatch-demo-gzip")));
    const HOSTILE: Array<{ name: string; rpm: () => Promise<Uint8Array> }> = [
      {
        name: "a corrupted payload byte",
        rpm: async () => {
          const b = demo();
          const pkg = await readRpm(b, { name: "probe.rpm" });
          const mid = pkg.payload.offset + Math.floor(pkg.payload.size / 2);
          await pkg.close();
          b[mid] ^= 0xff;
          return b;
        },
      },
      {
        name: "a ../ path",
        rpm: async () =>
          buildRpm({
            files: [{ path: "/opt/../etc/shadow", mode: S_IFREG | 0o644, content: enc.encode("x") }],
          }),
      },
      {
        name: "a payload name that escapes",
        rpm: async () =>
          buildRpm({
            files: [{ path: "/opt/x", mode: S_IFREG | 0o644, content: enc.encode("x") }],
            payloadNames: { "/opt/x": "../../opt/x" },
          }),
      },
    ];
    for (const h of HOSTILE) {
      it(`hostile: ${h.name} leaves the image byte-identical`, async () => {
        const base = await tempDir("rpm-img-bad-");
        const tree = join(base, "tree");
        const img = join(base, "guest.img");
        await startTree(tree, existingConfigs);
        await mkImage(tree, img);
        const before = await sha256(img);
        const bytes = await h.rpm();
        await writeFile(join(base, "bad.rpm"), bytes);
        await expect(injectIntoImage(img, bytes)).rejects.toBeInstanceOf(ImgpatchError);
        expect(await sha256(img)).toBe(before);
      });
    }
  },
);
