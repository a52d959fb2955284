/**
 * XFS guests through the real `imgpatch` bin: GPT disks made by make-xfs-base-image.sh (BIOS boot,
 * vfat ESP, XFS /boot and XFS / by mkfs.xfs -p, fstab by UUID), v5 and v4. Every run ends with
 * oracles we did not write: qemu-img check, xfs_repair -n on every XFS volume, xfs_db -r read-back
 * and, as root on v5 (this kernel refuses v4), a read-only loop mount whose whole tree must equal
 * what imgpatch reads from the same image.
 */
import { createHash } from "node:crypto";
import { copyFile, lstat, mkdir, open, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  describeWithTools,
  isRoot,
  qemuImg,
  qemuImgCheck,
  qemuImgInfo,
  runTool,
  runToolOk,
  tempDir,
  xfsDb,
  xfsRepairCheck,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { walkGuest } from "../src/customize/walk.js";
import { GuestFsError } from "../src/guest/guest-fs.js";
import { openGuest } from "../src/image/open-guest.js";
import { runBin } from "./support/run-bin.js";
import { xfsBaseCopy } from "./support/xfs-base.js";

const ELEMENTS = fileURLToPath(new URL("../../../test-fixtures/elements", import.meta.url));
const RPM = fileURLToPath(
  new URL("../../../test-fixtures/rpm/out/imgpatch-demo-xz.noarch.rpm", import.meta.url),
);
/** Partitions of make-xfs-base-image.sh's disk, in 512-byte sectors: [start, size]. */
const BOOT = { start: 69632, size: 131072 };
const ROOT = { start: 200704, size: 389120 };
const EPOCH = { SOURCE_DATE_EPOCH: "1700000000" };
const VARIANTS = [
  { name: "v5", mkfs: "" },
  { name: "v4", mkfs: "-m crc=0" },
] as const;

const sha = async (p: string) =>
  createHash("sha256")
    .update(await readFile(p))
    .digest("hex");

/** A private copy of the script's disk (built once per script version and variant: support/xfs-base.ts). */
function xfsDisk(dir: string, mkfs: string): Promise<string> {
  return xfsBaseCopy({ XFS_MKFS_ARGS: mkfs }, join(dir, "base.qcow2"));
}

/** The image as raw, and each XFS volume copied out (xfs_repair and xfs_db take no offset). */
async function volumes(img: string, dir: string): Promise<{ raw: string; root: string; boot: string }> {
  const raw = join(dir, "out.raw");
  await rm(raw, { force: true });
  await qemuImg(["convert", "-O", "raw", img, raw]);
  const cut = async (name: string, p: { start: number; size: number }) => {
    const f = join(dir, `${name}.xfs`);
    await runToolOk("dd", [
      `if=${raw}`,
      `of=${f}`,
      "bs=512",
      `skip=${p.start}`,
      `count=${p.size}`,
      "conv=sparse",
      "status=none",
    ]);
    return f;
  };
  return { raw, root: await cut("root", ROOT), boot: await cut("boot", BOOT) };
}

async function expectRepairClean(...files: string[]): Promise<void> {
  for (const f of files) {
    const r = await xfsRepairCheck(f);
    expect(r.output, f).not.toMatch(/would|error|corrupt/i);
    expect(r.clean, `${f}: ${r.output}`).toBe(true);
  }
}

/** core fields of one path, as xfs_db prints them. */
async function dbStat(file: string, path: string): Promise<Record<string, string>> {
  const out = await xfsDb(file, [`path ${path}`, "print core.mode core.uid core.gid core.size core.nlinkv2"]);
  const fields: Record<string, string> = {};
  for (const m of out.matchAll(/^core\.(\w+) = (.*)$/gm)) fields[m[1]] = m[2];
  if (!fields.mode) throw new Error(`xfs_db: no ${path} in ${file}: ${out}`);
  return fields;
}

/** Names in a directory as `xfs_db ls` lists them (its name-length column cuts the name). */
async function dbNames(file: string, dir: string): Promise<string[]> {
  const out = await xfsDb(file, [`ls ${dir}`]);
  const names: string[] = [];
  for (const line of out.split("\n")) {
    const m = /^\s*\d+\s+\d+\s+\S+\s+0x[0-9a-f]+\s+(\d+)\s(.*)$/.exec(line);
    if (!m) continue;
    const name = m[2].slice(0, Number(m[1]));
    if (name !== "." && name !== "..") names.push(name);
  }
  return names.sort();
}

/** A path exists for xfs_db: by `path` (no spaces allowed there), else in its parent's listing. */
async function dbExists(file: string, path: string): Promise<boolean> {
  const i = path.lastIndexOf("/");
  const parent = path.slice(0, i) || "/";
  if (!/\s/.test(parent)) return (await dbNames(file, parent)).includes(path.slice(i + 1));
  return dbStat(file, path).then(
    () => true,
    () => false,
  );
}

interface TreeEntry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  link?: string;
  sha?: string;
}

/** The kernel's view of a mounted tree (relative paths, sorted). */
async function hostTree(top: string): Promise<Map<string, TreeEntry>> {
  const out = new Map<string, TreeEntry>();
  const walk = async (rel: string) => {
    const p = join(top, rel);
    const st = await lstat(p);
    const type = st.isDirectory()
      ? "directory"
      : st.isSymbolicLink()
        ? "symlink"
        : st.isFile()
          ? "file"
          : "other";
    const e: TreeEntry = {
      type,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      size: type === "directory" ? 0 : st.size,
    };
    if (type === "symlink") e.link = await readlink(p);
    if (type === "file")
      e.sha = createHash("sha256")
        .update(await readFile(p))
        .digest("hex");
    out.set(rel === "" ? "/" : `/${rel}`, e);
    if (type === "directory") for (const n of (await readdir(p)).sort()) await walk(rel ? `${rel}/${n}` : n);
  };
  await walk("");
  return out;
}

/** imgpatch's view of the guest below `top`, as hostTree shapes it; `skip` prefixes are left out. */
async function guestTree(img: string, top: string, skip: string[]): Promise<Map<string, TreeEntry>> {
  const g = await openGuest(img);
  try {
    const out = new Map<string, TreeEntry>();
    for await (const { path, stats } of walkGuest(g.fs, top)) {
      if (skip.some((s) => path === s || path.startsWith(`${s}/`))) continue;
      const rel = top === "/" ? path : path.slice(top.length) || "/";
      const e: TreeEntry = {
        type: ["directory", "symlink", "file"].includes(stats.type) ? stats.type : "other",
        mode: stats.mode,
        uid: stats.uid,
        gid: stats.gid,
        size: stats.type === "directory" ? 0 : stats.size,
      };
      if (stats.type === "symlink") e.link = await g.fs.readlink(path);
      if (stats.type === "file")
        e.sha = createHash("sha256")
          .update(await g.fs.readFile(path))
          .digest("hex");
      out.set(rel, e);
    }
    return out;
  } finally {
    await g.close();
  }
}

/** As root: each XFS volume mounted read-only through a loop device equals imgpatch's view. */
async function kernelMatches(raw: string, img: string, dir: string): Promise<number> {
  let compared = 0;
  for (const [vol, top, skip] of [
    [ROOT, "/", ["/boot"]],
    [BOOT, "/boot", ["/boot/efi"]],
  ] as const) {
    const mnt = join(dir, `mnt${vol.start}`);
    await mkdir(mnt, { recursive: true });
    await runToolOk("mount", [
      "-t",
      "xfs",
      "-o",
      `ro,loop,offset=${vol.start * 512},sizelimit=${vol.size * 512}`,
      raw,
      mnt,
    ]);
    let kernel: Map<string, TreeEntry>;
    try {
      kernel = await hostTree(mnt);
    } finally {
      await runToolOk("umount", ["-d", mnt]);
    }
    const ours = await guestTree(img, top, [...skip]);
    // The mount point directories below each volume are the volume's own, not the mounted one.
    for (const s of skip) {
      const rel = top === "/" ? s : s.slice(top.length);
      kernel.delete(rel);
    }
    for (const k of [...kernel.keys()])
      if (skip.some((s) => k.startsWith(`${top === "/" ? s : s.slice(top.length)}/`))) kernel.delete(k);
    if (top === "/") {
      kernel.delete("/");
      ours.delete("/");
    }
    expect(Object.fromEntries(ours)).toEqual(Object.fromEntries(kernel));
    compared += kernel.size;
  }
  return compared;
}

const CUSTOMIZE = (key: string) => [
  "--mkdir",
  "/opt/agent",
  "--write",
  "/opt/agent/conf:key=value",
  "--chmod",
  "0640:/opt/agent/conf",
  "--link",
  "conf:/opt/agent/conf.link",
  "--append-line",
  "/etc/hostname:ignored-by-next",
  "--hostname",
  "gold.example",
  "--ssh-inject",
  `centos:file:${key}`,
  "--write",
  "/boot/grub2/user.cfg:set timeout=5",
  "--enable",
  "getty@.service",
  "--selinux-permissive",
  "--firstboot-command",
  "touch /var/tmp/booted",
  "--root-password",
  "password:secret",
  "--delete",
  "/var/cache",
  "--touch",
  "/etc/motd",
  "--chown",
  "1000:1000:/opt/agent",
  "--move",
  "/etc/centos-release:/etc/centos-release.orig",
  "--copy",
  "/etc/fstab:/etc/fstab.orig",
  "--edit",
  "/etc/fstab.orig:s/defaults/noatime/g",
];

for (const variant of VARIANTS) {
  describeWithTools(
    ["qemu-img", "mkfs.xfs", "mkfs.vfat", "sfdisk", "rpm", "xfs_repair", "xfs_db"],
    `imgpatch on an XFS guest (${variant.name}: GPT, ESP, XFS /boot and /)`,
    () => {
      it("info, ls, cat, stat, check on the base", async () => {
        const dir = await tempDir("xfs-guest");
        const base = await xfsDisk(dir, variant.mkfs);
        const info = await runBin(["info", base]);
        expect(info.code).toBe(0);
        expect(info.stdout).toMatch(/mount: \/ <- partition 4 \(xfs "root"\)/);
        expect(info.stdout).toMatch(/mount: \/boot <- partition 3 \(xfs "boot"\)/);
        expect(info.stdout).toMatch(/os: CentOS Stream 9/);
        const ls = await runBin(["ls", base, "/boot"]);
        expect(ls.stdout.split("\n").filter(Boolean)).toEqual([
          "efi",
          "grub2",
          "loader",
          "vmlinuz-5.14.0-stub.el9.x86_64",
        ]);
        expect((await runBin(["cat", base, "/etc/selinux/config"])).stdout).toMatch(/^SELINUX=enforcing$/m);
        expect((await runBin(["stat", base, "/tmp"])).stdout).toMatch(/mode: 01777/);
        const check = await runBin(["check", base]);
        expect(check.code).toBe(0);
        expect(check.stdout).toMatch(/partition 3 \(xfs "boot"\): xfs_repair -n -f: clean/);
        expect(check.stdout).toMatch(/partition 4 \(xfs "root"\): xfs_repair -n -f: clean/);
        // our reader agrees with xfs_db on a file's core
        const { root } = await volumes(base, dir);
        const st = await runBin(["stat", base, "/etc/shadow"]);
        const db = await dbStat(root, "/etc/shadow");
        expect(st.stdout).toContain(`size: ${db.size}`);
        expect(db.mode).toBe("0100000");
      });

      it("get copies a tree out; openGuest maps errors to GuestFsError codes and names read-only reasons", async () => {
        const dir = await tempDir("xfs-guest");
        const base = await xfsDisk(dir, variant.mkfs);
        const got = join(dir, "etc");
        expect((await runBin(["get", base, "/etc", got])).code).toBe(0);
        expect(await readFile(join(got, "selinux/config"), "utf8")).toMatch(/^SELINUXTYPE=targeted$/m);
        expect(await readlink(join(got, "os-release"))).toBe("../usr/lib/os-release");
        const g = await openGuest(base);
        try {
          expect(g.mounts.map((m) => [m.mountpoint, m.editable])).toEqual([
            ["/", false],
            ["/boot", false],
            ["/boot/efi", false],
          ]);
          const code = (p: Promise<unknown>) =>
            p.then(
              () => "ok",
              (e: unknown) => (e instanceof GuestFsError ? e.code : String(e)),
            );
          expect(await code(g.fs.readFile("/etc/nope"))).toBe("ENOENT");
          expect(await code(g.fs.readdir("/etc/hostname"))).toBe("ENOTDIR");
          expect(await code(g.fs.readFile("/boot/efi/EFI/centos/grub.cfg"))).toBe("EPERM");
          await expect(g.fs.writeFile("/x", "y")).rejects.toThrow(/opened read-only: give --overlay OUT/);
          expect(await g.fs.getxattr("/etc/hostname", "user.none")).toBeUndefined();
        } finally {
          await g.close();
        }
        const w = await openGuest(base, { overlay: join(dir, "o.qcow2") });
        try {
          expect(w.mounts.map((m) => m.editable)).toEqual([true, true, false]);
          const code = (p: Promise<unknown>) =>
            p.then(
              () => "ok",
              (e: unknown) => (e instanceof GuestFsError ? e.code : String(e)),
            );
          expect(await code(w.fs.mkdir("/etc"))).toBe("EEXIST");
          expect(await code(w.fs.rmdir("/etc"))).toBe("ENOTEMPTY");
          expect(await code(w.fs.writeFile("/etc/hostname", "x", { flag: "wx" }))).toBe("EEXIST");
          expect(await code(w.fs.rename("/etc/hostname", "/boot/hostname"))).toBe("EXDEV");
        } finally {
          await w.close();
        }
      });

      it.runIf(isRoot() && variant.name === "v5")(
        "a root volume with a dirty log (kernel shutdown): read through its replay, recovered into the overlay before an edit, the input untouched",
        async () => {
          const dir = await tempDir("xfs-guest");
          const base = await xfsDisk(dir, variant.mkfs);
          const raw = join(dir, "dirty.raw");
          await qemuImg(["convert", "-O", "raw", base, raw]);
          const mnt = join(dir, "mnt");
          await mkdir(mnt);
          await runToolOk("mount", [
            "-t",
            "xfs",
            "-o",
            `loop,offset=${ROOT.start * 512},sizelimit=${ROOT.size * 512}`,
            raw,
            mnt,
          ]);
          try {
            // a logged transaction (sync -f), then a shutdown without log flush: no unmount record
            await writeFile(join(mnt, "etc/written-before-shutdown"), "x");
            await runToolOk("sync", ["-f", join(mnt, "etc/written-before-shutdown")]);
            await runToolOk("xfs_io", ["-x", "-c", "shutdown", mnt]);
          } finally {
            await runToolOk("umount", ["-d", mnt]);
          }
          const before = createHash("sha256")
            .update(await readFile(raw))
            .digest("hex");
          const ro = await openGuest(raw, { readOnly: true });
          try {
            expect(ro.warnings.join("\n")).toMatch(/replayed in memory/);
            // Committed to the log before the shutdown, so the kernel would show it: so do we.
            expect(new TextDecoder().decode(await ro.fs.readFile("/etc/written-before-shutdown"))).toBe("x");
          } finally {
            await ro.close();
          }
          const ov = join(dir, "o.qcow2");
          const g = await openGuest(raw, { overlay: ov });
          try {
            expect(g.mounts.map((m) => [m.mountpoint, m.editable])).toEqual([
              ["/", true],
              ["/boot", true],
              ["/boot/efi", false],
            ]);
            expect(g.warnings.join("\n")).toMatch(/recovered before editing/);
            expect(new TextDecoder().decode(await g.fs.readFile("/etc/hostname"))).toBe(
              "localhost.localdomain\n",
            );
            expect(new TextDecoder().decode(await g.fs.readFile("/etc/written-before-shutdown"))).toBe("x");
            await g.fs.writeFile("/etc/x", "y");
            await g.fs.writeFile("/boot/ok", "still editable");
            await g.commit();
          } finally {
            await g.close();
          }
          expect(
            createHash("sha256")
              .update(await readFile(raw))
              .digest("hex"),
          ).toBe(before);
          const check = await runBin(["check", ov]);
          expect(check.stdout).toMatch(/partition 4 \(xfs "root"\): xfs_repair -n -f: clean/);
          expect(check.code).toBe(0);
          expect((await runBin(["cat", ov, "/etc/x"])).stdout).toBe("y");
        },
      );

      it("check without xfs_repair: imgpatch's reader walks every volume, and a corrupt one is reported", async () => {
        const dir = await tempDir("xfs-guest");
        const base = await xfsDisk(dir, variant.mkfs);
        const raw = join(dir, "disk.raw");
        await qemuImg(["convert", "-O", "raw", base, raw]);
        const noTools = { PATH: join(dir, "empty-path") };
        const ok = await runBin(["check", raw], noTools);
        expect(ok.stdout).toMatch(
          /partition 4 \(xfs "root"\): XFS tree read cleanly \(\d+ entries; xfs_repair not installed\)/,
        );
        expect(ok.code).toBe(0);
        // Break the root volume's root directory inode core (magic "IN" → "XX").
        // xfs_db gives the root inode's sector (the first inode of its block: 128 on these volumes).
        const { root } = await volumes(base, dir);
        const ino = Number(/rootino = (\d+)/.exec(await xfsDb(root, ["sb 0", "print rootino"]))?.[1]);
        const daddr = Number(
          /current daddr is (\d+)/.exec(await xfsDb(root, [`inode ${ino}`, "daddr"]))?.[1],
        );
        const offset = ROOT.start * 512 + daddr * 512;
        const fh = await open(raw, "r+");
        try {
          const cur = Buffer.alloc(2);
          await fh.read(cur, 0, 2, offset);
          expect(cur.toString("latin1")).toBe("IN");
          await fh.write(Buffer.from("XX"), 0, 2, offset);
        } finally {
          await fh.close();
        }
        const bad = await runBin(["check", raw], noTools);
        expect(bad.code).not.toBe(0);
        expect(bad.stdout).toMatch(/partition 4 \(xfs "root"\): .*inode/i);
        const withTool = await runBin(["check", raw]);
        expect(withTool.code).not.toBe(0);
        expect(withTool.stdout).toMatch(/partition 4 \(xfs "root"\): xfs_repair -n -f: exit/);
      });

      it("--scrub overwrites an XFS file's blocks where they lie, then removes it", async () => {
        const dir = await tempDir("xfs-guest");
        const base = await xfsDisk(dir, variant.mkfs);
        const text = "SCRUB-ME-PLEASE;".repeat(5000);
        const prep = join(dir, "prep.qcow2");
        const w = await runBin(
          ["customize", base, "--overlay", prep, "--write", `/opt/scrub-me:${text}`],
          EPOCH,
        );
        expect(w.code, w.stderr).toBe(0);
        // Where the file's data lies before the scrub (xfs_db bmap: fs blocks of AG-relative form).
        await mkdir(join(dir, "pre"));
        const pre = await volumes(prep, join(dir, "pre"));
        const bmap = await xfsDb(pre.root, ["path /opt/scrub-me", "bmap"]);
        const sb = await xfsDb(pre.root, ["sb 0", "print agblocks agblklog blocksize"]);
        const field = (k: string) => Number(new RegExp(`^${k} = (\\d+)$`, "m").exec(sb)?.[1]);
        const bs = field("blocksize");
        const blocks: number[] = [];
        for (const m of bmap.matchAll(/startblock (\d+) \(\d+\/\d+\) count (\d+)/g))
          for (let k = 0; k < Number(m[2]); k++) {
            const fsb = Number(m[1]) + k;
            const agno = Math.floor(fsb / 2 ** field("agblklog"));
            blocks.push((agno * field("agblocks") + (fsb % 2 ** field("agblklog"))) * bs);
          }
        expect(blocks.length).toBe(Math.ceil(text.length / bs));
        const out = join(dir, "out.qcow2");
        const r = await runBin(["customize", prep, "--overlay", out, "--scrub", "/opt/scrub-me"], EPOCH);
        expect(r.code, r.stderr).toBe(0);
        expect((await qemuImgCheck(out)).clean).toBe(true);
        const { raw, root, boot } = await volumes(out, dir);
        await expectRepairClean(root, boot);
        expect(await dbExists(root, "/opt/scrub-me")).toBe(false);
        // The freed blocks hold the last pass (0xff), nowhere the text.
        const img = await readFile(root);
        blocks.forEach((at, i) => {
          const n = Math.min(bs, text.length - i * bs);
          const bad = img.subarray(at, at + n).findIndex((x) => x !== 0xff);
          expect(bad, `block #${i} at byte ${at}`).toBe(-1);
        });
        expect(img.includes("SCRUB-ME-PLEASE")).toBe(false);
        if (isRoot() && variant.name === "v5") expect(await kernelMatches(raw, out, dir)).toBeGreaterThan(50);
      });

      it("customize --overlay with every bin-e2e operation, then xfs_repair -n, xfs_db and the kernel", async () => {
        const dir = await tempDir("xfs-guest");
        const base = await xfsDisk(dir, variant.mkfs);
        const before = await sha(base);
        const key = join(dir, "id.pub");
        await writeFile(key, "ssh-ed25519 AAAAC3Nza test@host\n");
        const out = join(dir, "out.qcow2");
        const r = await runBin(["customize", "-a", base, "--overlay", out, ...CUSTOMIZE(key)], EPOCH);
        expect(r.stderr).toBe("");
        expect(r.code).toBe(0);
        expect(await sha(base)).toBe(before);
        expect((await qemuImgInfo(out))["backing-filename"]).toBe("base.qcow2");
        expect((await qemuImgCheck(out)).clean).toBe(true);
        const { raw, root, boot } = await volumes(out, dir);
        await expectRepairClean(root, boot);
        expect(await dbStat(root, "/opt/agent/conf")).toMatchObject({ mode: "0100640", uid: "0", size: "9" });
        expect(await dbStat(root, "/opt/agent")).toMatchObject({ mode: "040755", uid: "1000", gid: "1000" });
        expect(await dbStat(root, "/home/centos/.ssh/authorized_keys")).toMatchObject({
          mode: "0100600",
          uid: "1000",
          gid: "1000",
        });
        expect(await dbStat(root, "/etc/hostname")).toMatchObject({ size: "13" });
        expect(await dbStat(root, "/etc/systemd/system/getty.target.wants/getty@tty1.service")).toMatchObject(
          {
            mode: "0120777",
          },
        );
        expect(await dbNames(root, "/opt/agent")).toEqual(["conf", "conf.link"]);
        expect(await dbNames(root, "/var")).not.toContain("cache");
        expect(await dbNames(root, "/etc")).toEqual(
          expect.arrayContaining(["centos-release.orig", "fstab.orig", "motd"]),
        );
        expect(await dbNames(root, "/etc")).not.toContain("centos-release");
        // The /boot write landed on the boot volume, at its root-relative path.
        expect(await dbStat(boot, "/grub2/user.cfg")).toMatchObject({ size: "13" });
        await expect(dbStat(root, "/boot/grub2")).rejects.toThrow();
        // Contents through the bin (our reader) — the kernel cross-checks them below.
        expect((await runBin(["cat", out, "/etc/hostname"])).stdout).toBe("gold.example\n");
        expect((await runBin(["cat", out, "/etc/fstab.orig"])).stdout).toMatch(/xfs {2}noatime/);
        expect((await runBin(["cat", out, "/etc/selinux/config"])).stdout).toMatch(/^SELINUX=permissive$/m);
        const diff = await runBin(["diff", "--json", base, out]);
        expect(diff.code).toBe(0);
        const changed = (JSON.parse(diff.stdout) as Array<{ path: string }>).map((d) => d.path);
        expect(changed).toEqual(
          expect.arrayContaining(["/opt/agent/conf", "/boot/grub2/user.cfg", "/etc/shadow"]),
        );
        if (isRoot() && variant.name === "v5") {
          const n = await kernelMatches(raw, out, dir);
          expect(n).toBeGreaterThan(100);
        }
      });

      it("SOURCE_DATE_EPOCH: two -o runs are byte-identical; --in-place: a failure leaves the input byte-identical, success is clean", async () => {
        const dir = await tempDir("xfs-guest");
        const base = await xfsDisk(dir, variant.mkfs);
        const ops = [
          "--mkdir",
          "/r",
          "--write",
          "/r/a:x",
          "--link",
          "/r/a:/r/b",
          "--firstboot-command",
          "true",
        ];
        const hashes: string[] = [];
        for (const n of [1, 2]) {
          const r = await runBin(["customize", base, "-o", join(dir, `full${n}.qcow2`), ...ops], EPOCH);
          expect(r.code).toBe(0);
          hashes.push(await sha(join(dir, `full${n}.qcow2`)));
        }
        expect(hashes[0]).toBe(hashes[1]);
        const full = await volumes(join(dir, "full1.qcow2"), dir);
        await expectRepairClean(full.root, full.boot);

        const inplace = join(dir, "inplace.qcow2");
        await copyFile(base, inplace);
        const before = await sha(inplace);
        const bad = await runBin(
          [
            "customize",
            "--in-place",
            inplace,
            "--write",
            "/ok:1",
            "--write",
            "/boot/ok:2",
            "--write",
            "/no/such/dir/f:x",
          ],
          EPOCH,
        );
        expect(bad.code).toBe(4);
        expect(bad.stderr).toContain("/no/such/dir/f");
        expect(await sha(inplace)).toBe(before);
        expect((await readdir(dir)).filter((n) => n.includes("undo") || n.endsWith(".tmp"))).toEqual([]);
        const good = await runBin(
          ["customize", "--in-place", inplace, "--write", "/ok:1", "--write", "/boot/ok:2"],
          EPOCH,
        );
        expect(good.code).toBe(0);
        const v = await volumes(inplace, dir);
        await expectRepairClean(v.root, v.boot);
        expect(await dbStat(v.root, "/ok")).toMatchObject({ size: "1" });
        expect(await dbStat(v.boot, "/ok")).toMatchObject({ size: "1" });
      });

      it("elements (stand-ins) and --rpm on the XFS guest", async () => {
        const dir = await tempDir("xfs-guest");
        const base = await xfsDisk(dir, variant.mkfs);
        const r = await runBin(
          [
            "elements",
            "base.qcow2",
            "--overlay",
            "gold.qcow2",
            "os-collect-config",
            "os-refresh-config",
            "os-apply-config",
            "heat-config",
            "heat-config-script",
          ],
          { ...EPOCH, ELEMENTS_PATH: ELEMENTS },
          dir,
        );
        expect(r.stderr).toBe("");
        expect(r.code).toBe(0);
        const gold = join(dir, "gold.qcow2");
        expect((await qemuImgCheck(gold)).clean).toBe(true);
        let v = await volumes(gold, dir);
        await expectRepairClean(v.root, v.boot);
        expect(
          await dbStat(v.root, "/etc/systemd/system/multi-user.target.wants/os-collect-config.service"),
        ).toMatchObject({
          mode: "0120777",
        });
        expect((await runBin(["cat", gold, "/etc/selinux/config"])).stdout).toMatch(/^SELINUX=enforcing$/m);

        const out = join(dir, "rpm.qcow2");
        const rr = await runBin(
          ["customize", base, "--overlay", out, "--rpm-owner-fallback", "--rpm", RPM],
          EPOCH,
        );
        expect(rr.stderr).toBe("");
        expect(rr.code).toBe(0);
        v = await volumes(out, dir);
        await expectRepairClean(v.root, v.boot);
        const listed = (await runTool("rpm", ["-qpl", "--noghost", RPM])).stdout
          .toString()
          .split("\n")
          .filter(Boolean);
        expect(listed.length).toBeGreaterThan(0);
        for (const p of listed) expect(await dbExists(v.root, p), p).toBe(true);
        if (isRoot() && variant.name === "v5")
          expect(await kernelMatches(v.raw, out, dir)).toBeGreaterThan(100);
      });
    },
  );
}
