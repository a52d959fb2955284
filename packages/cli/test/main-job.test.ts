/**
 * The main job exactly as `npm start` runs it (packages/cli/src/main-job.ts executed as the entry
 * point, bundled from the sources by support/bin-bundle.ts, not the built dist/), writing the gold
 * image to a temp dir, then the oracles. On the default (XFS, RHEL-like) base: qemu-img check,
 * xfs_repair -n on both XFS volumes, xfs_db -r read-back, and as root a read-only loop mount for
 * contents. On the ext4 base (IMGPATCH_BASE): e2fsck -fn on both partitions and the produced tree
 * read back by debugfs.
 */
import { mkdir, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import {
  debugfs,
  debugfsCat,
  debugfsLs,
  debugfsStat,
  debugfsXattrs,
  describeWithTools,
  e2fsck,
  isRoot,
  qemuImg,
  qemuImgCheck,
  qemuImgInfo,
  runToolOk,
  tempDir,
  xfsDb,
  xfsRepairCheck,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { baseImage } from "../src/main-job.js";
import { runMainJob } from "./support/run-bin.js";
import { xfsBaseCopy } from "./support/xfs-base.js";

const ROOT = 67584 * 512;
const BOOT = 2048 * 512;

async function runMain(env: Record<string, string>): Promise<{ code: number; out: string }> {
  const r = await runMainJob(env);
  return { code: r.code, out: r.stdout + r.stderr };
}

describeWithTools(["qemu-img", "e2fsck", "debugfs"], "npm start (the main job) on the ext4 base", () => {
  it("builds software-deployment-image-gold.qcow2 that passes qemu-img check and e2fsck -fn, with the Heat agents in place", async () => {
    const dir = await tempDir("main-job");
    const gold = join(dir, "software-deployment-image-gold.qcow2");
    const r = await runMain({
      IMGPATCH_GOLD: gold,
      IMGPATCH_BASE: await baseImage(),
      SOURCE_DATE_EPOCH: "1700000000",
    });
    expect(r.out).toContain("OK: ");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/qemu-img check: clean/);

    const info = await qemuImgInfo(gold);
    expect(info.format).toBe("qcow2");
    expect(info["backing-filename"]).toBeUndefined(); // self-contained
    expect((await qemuImgCheck(gold)).clean).toBe(true);
    const raw = join(dir, "gold.raw");
    await qemuImg(["convert", "-O", "raw", gold, raw]);
    const root = { path: raw, offset: ROOT };
    const boot = { path: raw, offset: BOOT };
    const fsck = await e2fsck(root);
    expect(fsck.problems).toEqual([]);
    expect(fsck.clean).toBe(true);
    expect((await e2fsck(boot)).clean).toBe(true);

    // os-collect-config: unit, enabled exactly as systemctl enable does, credentials file 0600.
    const unit = (await debugfsCat(root, "/usr/lib/systemd/system/os-collect-config.service")).toString();
    expect(unit).toMatch(/^ExecStart=\S*os-collect-config/m);
    expect(
      await debugfs(root, ["stat /etc/systemd/system/multi-user.target.wants/os-collect-config.service"]),
    ).toContain('Fast link dest: "/usr/lib/systemd/system/os-collect-config.service"');
    expect(await debugfsStat(root, "/etc/os-collect-config.conf")).toMatchObject({
      perm: 0o600,
      uid: 0,
      gid: 0,
    });
    expect(
      (
        await debugfsCat(root, "/etc/systemd/system/os-collect-config.service.d/10-imgpatch-firstboot.conf")
      ).toString(),
    ).toMatch(/After=.*imgpatch-firstboot\.service/);
    // os-refresh-config phases, the heat-config script hook, the bin/ helpers (0755 root).
    const orc = (await debugfsLs(root, "/usr/libexec/os-refresh-config")).map((e) => e.name).sort();
    expect(orc).toEqual(
      expect.arrayContaining(["configure.d", "migration.d", "post-configure.d", "pre-configure.d"]),
    );
    expect((await debugfsStat(root, "/var/lib/heat-config/hooks/script")).perm).toBe(0o755);
    expect(await debugfsStat(root, "/usr/local/bin/heat-config-notify")).toMatchObject({
      perm: 0o755,
      uid: 0,
      gid: 0,
    });
    // selinux-permissive; the guest's policy (its own small file_contexts) labels what was
    // written, so no first-boot relabel marker is left.
    expect((await debugfsCat(root, "/etc/selinux/config")).toString()).toMatch(/^SELINUX=permissive$/m);
    await expect(debugfsStat(root, "/.autorelabel")).rejects.toThrow();
    const label = async (p: string) =>
      ((await debugfsXattrs(root, p))["security.selinux"] ?? Buffer.alloc(0)).toString("latin1");
    expect(await label("/etc/os-collect-config.conf")).toBe("system_u:object_r:etc_t:s0\0");
    expect(await label("/usr/local/bin/heat-config-notify")).toBe("system_u:object_r:default_t:s0\0");
    // The deferred install phases are queued for the first boot, nothing under /run.
    const pending = (await debugfsLs(root, "/var/lib/imgpatch/firstboot/pending")).map((e) => e.name);
    expect(pending.some((n) => n.includes("dib-elements"))).toBe(true);
    expect((await debugfsLs(root, "/run")).map((e) => e.name).filter((n) => n !== "." && n !== "..")).toEqual(
      [],
    );
    // /boot untouched by the job.
    expect((await debugfsCat(boot, "/grub2/grub.cfg")).toString()).toBe("set default=0\nset timeout=1\n");
  });
});

/** make-xfs-base-image.sh's XFS partitions, in 512-byte sectors. */
const XFS_BOOT = { start: 69632, size: 131072 };
const XFS_ROOT = { start: 200704, size: 389120 };

async function dbStat(file: string, path: string): Promise<Record<string, string>> {
  const out = await xfsDb(file, [`path ${path}`, "print core.mode core.uid core.gid core.size"]);
  const fields: Record<string, string> = {};
  for (const m of out.matchAll(/^core\.(\w+) = (.*)$/gm)) fields[m[1]] = m[2];
  if (!fields.mode) throw new Error(`xfs_db: no ${path}: ${out}`);
  return fields;
}

async function dbNames(file: string, dir: string): Promise<string[]> {
  const names: string[] = [];
  for (const line of (await xfsDb(file, [`ls ${dir}`])).split("\n")) {
    const m = /^\s*\d+\s+\d+\s+\S+\s+0x[0-9a-f]+\s+(\d+)\s(.*)$/.exec(line);
    if (m) names.push(m[2].slice(0, Number(m[1])));
  }
  return names.filter((n) => n !== "." && n !== "..").sort();
}

describeWithTools(
  ["qemu-img", "xfs_repair", "xfs_db"],
  "npm start (the main job) on the default XFS base (RHEL-like: GPT, BIOS boot, ESP, XFS /boot and /)",
  () => {
    it("builds the gold image: xfs_repair -n clean on both volumes, the Heat agents in place (xfs_db, kernel)", async () => {
      const dir = await tempDir("main-job-xfs");
      const gold = join(dir, "software-deployment-image-gold.qcow2");
      const r = await runMain({ IMGPATCH_GOLD: gold, SOURCE_DATE_EPOCH: "1700000000" });
      expect(r.out).toContain("OK: ");
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/base-xfs\.qcow2/);
      expect(r.out).toMatch(/partition 3 \(xfs "boot"\): xfs_repair -n -f: clean/);
      expect(r.out).toMatch(/partition 4 \(xfs "root"\): xfs_repair -n -f: clean/);
      expect((await qemuImgCheck(gold)).clean).toBe(true);
      expect((await qemuImgInfo(gold))["backing-filename"]).toBeUndefined();
      const raw = join(dir, "gold.raw");
      await qemuImg(["convert", "-O", "raw", gold, raw]);
      const cut = async (name: string, p: { start: number; size: number }) => {
        const f = join(dir, `${name}.xfs`);
        await runToolOk("dd", [
          `if=${raw}`,
          `of=${f}`,
          "bs=512",
          `skip=${p.start}`,
          `count=${p.size}`,
          "status=none",
        ]);
        return f;
      };
      const root = await cut("root", XFS_ROOT);
      const boot = await cut("boot", XFS_BOOT);
      for (const f of [root, boot]) {
        const rep = await xfsRepairCheck(f);
        expect(rep.clean, rep.output).toBe(true);
      }
      expect(await dbStat(root, "/etc/os-collect-config.conf")).toMatchObject({
        mode: "0100600",
        uid: "0",
        gid: "0",
      });
      expect(
        await dbStat(root, "/etc/systemd/system/multi-user.target.wants/os-collect-config.service"),
      ).toMatchObject({
        mode: "0120777",
      });
      expect(await dbStat(root, "/var/lib/heat-config/hooks/script")).toMatchObject({ mode: "0100755" });
      expect(await dbStat(root, "/usr/local/bin/heat-config-notify")).toMatchObject({
        mode: "0100755",
        uid: "0",
      });
      expect(await dbNames(root, "/usr/libexec/os-refresh-config")).toEqual(
        expect.arrayContaining(["configure.d", "migration.d", "post-configure.d", "pre-configure.d"]),
      );
      // The guest's own small policy labels what was written: no first-boot relabel marker.
      expect(await dbNames(root, "/")).not.toContain(".autorelabel");
      expect(
        (await dbNames(root, "/var/lib/imgpatch/firstboot/pending")).some((n) => n.includes("dib-elements")),
      ).toBe(true);
      expect(await dbNames(root, "/run")).toEqual([]);
      expect(await dbNames(root, "/var/lib/rpm")).toEqual(["rpmdb.sqlite"]);
      expect(await dbNames(boot, "/grub2")).toEqual(["grub.cfg"]);
      if (isRoot()) {
        // Contents through the kernel (read-only loop mount of /, always unmounted and detached).
        const mnt = join(dir, "mnt");
        await mkdir(mnt);
        await runToolOk("mount", ["-t", "xfs", "-o", "ro,loop", root, mnt]);
        try {
          expect(await readFile(join(mnt, "etc/selinux/config"), "utf8")).toMatch(/^SELINUX=permissive$/m);
          expect(
            await readlink(join(mnt, "etc/systemd/system/multi-user.target.wants/os-collect-config.service")),
          ).toBe("/usr/lib/systemd/system/os-collect-config.service");
          expect(
            await readFile(
              join(mnt, "etc/systemd/system/os-collect-config.service.d/10-imgpatch-firstboot.conf"),
              "utf8",
            ),
          ).toMatch(/After=.*imgpatch-firstboot\.service/);
          expect(await readFile(join(mnt, "usr/lib/os-release"), "utf8")).toMatch(/^ID="centos"$/m);
          // Labels from the guest's policy, as the kernel reads them.
          const label = async (p: string) =>
            (
              await runToolOk("getfattr", ["--only-values", "-h", "-n", "security.selinux", join(mnt, p)])
            ).toString();
          expect(await label("etc/os-collect-config.conf")).toBe("system_u:object_r:etc_t:s0\0");
          expect(await label("usr/local/bin/heat-config-notify")).toBe("system_u:object_r:default_t:s0\0");
          expect((await readdir(join(mnt, "usr/lib/systemd/system"))).sort()).toContain(
            "os-collect-config.service",
          );
        } finally {
          await runToolOk("umount", ["-d", mnt]);
        }
      }
    });
  },
);

describeWithTools(
  ["qemu-img", "mkfs.xfs", "sfdisk", "rpm", "xfs_repair", "xfs_db"],
  "the README's CentOS 7 example: IMGPATCH_BASE=<MBR disk, one XFS partition> npm start",
  () => {
    for (const [name, mkfs] of [
      [
        "v5 as CentOS 7 made it (finobt, sparse inodes, reflink, rmapbt off)",
        "-m crc=1,finobt=0,reflink=0,rmapbt=0 -i sparse=0",
      ],
      ["v4", "-m crc=0"],
    ] as const) {
      it(name, async () => {
        const dir = await tempDir("main-job-c7");
        const base = join(dir, "CentOS-7-x86_64-GenericCloud.qcow2");
        await xfsBaseCopy({ LAYOUT: "centos7", XFS_MKFS_ARGS: mkfs }, base);
        const gold = join(dir, "gold.qcow2");
        const r = await runMain({
          IMGPATCH_BASE: base,
          IMGPATCH_GOLD: gold,
          SOURCE_DATE_EPOCH: "1700000000",
        });
        expect(r.out).toContain("OK: ");
        expect(r.code).toBe(0);
        expect(r.out).toMatch(/partition 1 \(xfs "root"\): xfs_repair -n -f: clean/);
        expect((await qemuImgCheck(gold)).clean).toBe(true);
        const raw = join(dir, "gold.raw");
        await qemuImg(["convert", "-O", "raw", gold, raw]);
        const root = join(dir, "root.xfs");
        await runToolOk("dd", [`if=${raw}`, `of=${root}`, "bs=512", "skip=2048", "status=none"]);
        const rep = await xfsRepairCheck(root);
        expect(rep.clean, rep.output).toBe(true);
        expect(await dbStat(root, "/etc/os-collect-config.conf")).toMatchObject({
          mode: "0100600",
          uid: "0",
        });
        expect(await dbNames(root, "/usr/libexec/os-refresh-config")).toEqual(
          expect.arrayContaining(["configure.d", "post-configure.d", "pre-configure.d"]),
        );
        expect(await dbNames(root, "/")).not.toContain(".autorelabel");
        expect(await dbNames(root, "/boot/grub2")).toEqual(["grub.cfg"]);
      });
    }
  },
);
