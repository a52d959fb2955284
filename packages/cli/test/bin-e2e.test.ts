/**
 * End-to-end: the real `imgpatch` bin (spawned; sources through tsx) on fixture images, each run
 * followed by the oracles — qemu-img check, e2fsck -fn at the partition offset, debugfs read-back —
 * plus a comparison with the same edits made by debugfs, failure atomicity and reproducibility.
 */
import { createHash } from "node:crypto";
import { copyFile, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  debugfs,
  debugfsCat,
  debugfsStat,
  describeWithTools,
  e2fsck,
  fixtureCopy,
  qemuImg,
  qemuImgCheck,
  qemuImgInfo,
  runTool,
  tempDir,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { baseImage } from "../src/main-job.js";
import { runBin } from "./support/run-bin.js";

const sha = async (p: string) =>
  createHash("sha256")
    .update(await readFile(p))
    .digest("hex");
/** Byte offsets of the base image's partitions (make-base-image.sh). */
const BOOT = 2048 * 512;
const ROOT = 67584 * 512;
const EPOCH = { SOURCE_DATE_EPOCH: "1700000000" };

async function toRaw(img: string, dir: string, name: string): Promise<string> {
  const out = join(dir, name);
  await qemuImg(["convert", "-O", "raw", img, out]);
  return out;
}

async function noTemps(dir: string): Promise<void> {
  expect((await readdir(dir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
}

describeWithTools(["qemu-img", "e2fsck", "debugfs"], "imgpatch bin end to end", () => {
  it("customize --overlay on a GPT qcow2 with a separate /boot (fstab), then the oracles", async () => {
    const dir = await tempDir("e2e");
    const base = join(dir, "base.qcow2");
    await copyFile(await baseImage(), base);
    const before = await sha(base);
    const key = join(dir, "id.pub");
    await writeFile(key, "ssh-ed25519 AAAAC3Nza test@host\n");
    const r = await runBin(
      [
        "customize",
        "-a",
        base,
        "--overlay",
        join(dir, "out.qcow2"),
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
      ],
      EPOCH,
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(await sha(base)).toBe(before);
    const out = join(dir, "out.qcow2");
    expect((await qemuImgInfo(out))["backing-filename"]).toBe("base.qcow2");
    expect((await qemuImgCheck(out)).clean).toBe(true);
    const raw = await toRaw(out, dir, "out.raw");
    const root = { path: raw, offset: ROOT };
    const boot = { path: raw, offset: BOOT };
    expect((await e2fsck(root)).clean).toBe(true);
    expect((await e2fsck(boot)).clean).toBe(true);
    expect((await debugfsCat(root, "/opt/agent/conf")).toString()).toBe("key=value");
    expect(await debugfsStat(root, "/opt/agent/conf")).toMatchObject({ perm: 0o640, uid: 0, gid: 0 });
    expect(await debugfs(root, ["stat /opt/agent/conf.link"])).toContain('Fast link dest: "conf"');
    expect((await debugfsCat(root, "/etc/hostname")).toString()).toBe("gold.example\n");
    expect((await debugfsCat(root, "/home/centos/.ssh/authorized_keys")).toString()).toContain(
      "ssh-ed25519 AAAAC3Nza",
    );
    expect(await debugfsStat(root, "/home/centos/.ssh/authorized_keys")).toMatchObject({
      perm: 0o600,
      uid: 1000,
      gid: 1000,
    });
    expect((await debugfsCat(root, "/etc/selinux/config")).toString()).toMatch(/^SELINUX=permissive$/m);
    // The /boot write landed on the boot filesystem, at its root-relative path.
    expect((await debugfsCat(boot, "/grub2/user.cfg")).toString()).toBe("set timeout=5");
    await expect(debugfsStat(root, "/boot/grub2")).rejects.toThrow();
    await noTemps(dir);
  });

  it("-o OUT.img (raw) from a bare-fs qcow2, and --in-place on a raw copy", async () => {
    const dir = await tempDir("e2e");
    const base = await fixtureCopy("ext4-default.qcow2", dir);
    const before = await sha(base);
    const out = join(dir, "out.img");
    const r = await runBin(
      [
        "customize",
        base,
        "-o",
        out,
        "--write",
        "/small.txt:replaced",
        "--delete",
        "/dir/*",
        "--mkdir",
        "/new",
        "--chown",
        "1:2:/new",
      ],
      EPOCH,
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(await sha(base)).toBe(before);
    expect((await qemuImgInfo(out)).format).toBe("raw");
    expect((await e2fsck(out)).clean).toBe(true);
    expect((await debugfsCat(out, "/small.txt")).toString()).toBe("replaced");
    expect(await debugfsStat(out, "/new")).toMatchObject({ type: "dir", uid: 1, gid: 2 });
    expect(
      (await debugfs(out, ["ls /dir"]))
        .split(/\s+/)
        .filter((n) => n && !/^\d|\(|\)/.test(n) && n !== "." && n !== ".."),
    ).toEqual([]);
    const inplace = join(dir, "inplace.img");
    await copyFile(out, inplace);
    const r2 = await runBin(["customize", "--in-place", inplace, "--write", "/in-place:yes"], EPOCH);
    expect(r2.code).toBe(0);
    expect((await e2fsck(inplace)).clean).toBe(true);
    expect((await debugfsCat(inplace, "/in-place")).toString()).toBe("yes");
    await noTemps(dir);
    // cat prints the bytes as they are: every byte value, invalid UTF-8 included.
    const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131) & 0xff));
    const host = join(dir, "binary.bin");
    await writeFile(host, bytes);
    expect((await runBin(["customize", "--in-place", inplace, "--upload", `${host}:/bin.dat`])).code).toBe(0);
    const cat = await runBin(["cat", inplace, "/bin.dat"]);
    expect(cat.code).toBe(0);
    expect(cat.stdoutBytes.equals(bytes)).toBe(true);
    expect(cat.stdoutBytes.equals(await debugfsCat(inplace, "/bin.dat"))).toBe(true);
  });

  it("a GPT disk with 4 KiB logical sectors (raw input, overlay output)", async () => {
    const dir = await tempDir("e2e");
    const base = await fixtureCopy("disk-gpt-4k.img", dir);
    const before = await sha(base);
    const out = join(dir, "k.qcow2");
    const r = await runBin(
      ["customize", base, "--overlay", out, "--mkdir", "/opt/k", "--write", "/opt/k/f:4k"],
      EPOCH,
    );
    expect(r.code).toBe(0);
    expect(await sha(base)).toBe(before);
    expect((await qemuImgInfo(out))["backing-filename-format"]).toBe("raw");
    expect((await qemuImgCheck(out)).clean).toBe(true);
    const raw = await toRaw(out, dir, "k.raw");
    const fsys = { path: raw, offset: 2304 * 4096 }; // partition 2 (test-fixtures/out/disk-gpt-4k.sfdisk)
    expect((await e2fsck(fsys)).clean).toBe(true);
    expect((await debugfsCat(fsys, "/opt/k/f")).toString()).toBe("4k");
  });

  it("a failing operation leaves no output, no temp file, and the input byte-identical", async () => {
    const dir = await tempDir("e2e");
    const base = await fixtureCopy("ext4-default.qcow2", dir);
    const before = await sha(base);
    for (const mode of [
      ["--overlay", join(dir, "o.qcow2")],
      ["-o", join(dir, "f.qcow2")],
    ]) {
      const r = await runBin(["customize", base, ...mode, "--write", "/ok:1", "--write", "/no/such/dir/f:x"]);
      expect(r.code).toBe(4);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toContain(base);
      expect(r.stderr).toContain("/no/such/dir/f");
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(await readdir(dir)).toEqual(["ext4-default.qcow2"]);
    expect(await sha(base)).toBe(before);
  });

  it("hostile inputs are errors, not stack traces", async () => {
    const dir = await tempDir("e2e");
    const junk = join(dir, "junk.qcow2");
    const head = Buffer.alloc(4096);
    head.write("QFI\xfb", 0, "latin1");
    head.writeUInt32BE(3, 4); // version 3
    head.writeUInt32BE(31, 20); // 2 GiB clusters: out of range
    await writeFile(junk, head);
    for (const args of [
      ["info", junk],
      ["ls", junk],
      ["customize", junk, "--overlay", join(dir, "x.qcow2"), "--mkdir", "/a"],
    ]) {
      const r = await runBin(args);
      expect(r.code).toBeGreaterThan(0);
      expect(r.code).not.toBe(1);
      expect(r.stderr).toMatch(/^imgpatch: /);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const r = await runBin(["customize", junk, "--overlay"]);
    expect(r.code).toBe(2);
    expect(await readdir(dir)).toEqual(["junk.qcow2"]);
  });

  it("SOURCE_DATE_EPOCH: two runs give byte-identical full images and overlays", async () => {
    const dir = await tempDir("e2e");
    const base = await fixtureCopy("ext4-default.qcow2", dir);
    const ops = ["--mkdir", "/r", "--write", "/r/a:x", "--link", "/r/a:/r/b", "--firstboot-command", "true"];
    const hashes: string[] = [];
    for (const n of [1, 2]) {
      const r = await runBin(["customize", base, "-o", join(dir, `full${n}.qcow2`), ...ops], EPOCH);
      expect(r.code).toBe(0);
      hashes.push(await sha(join(dir, `full${n}.qcow2`)));
    }
    expect(hashes[0]).toBe(hashes[1]);
    expect((await qemuImgCheck(join(dir, "full1.qcow2"))).clean).toBe(true);
    const ov: string[] = [];
    for (const n of [1, 2]) {
      const r = await runBin(["customize", base, "--overlay", join(dir, `ov${n}.qcow2`), ...ops], EPOCH);
      expect(r.code).toBe(0);
      ov.push(await sha(join(dir, `ov${n}.qcow2`)));
    }
    expect(ov[0]).toBe(ov[1]);
  });

  it("comparison: the same edits made with debugfs give the same guest-visible tree (imgpatch diff)", async () => {
    const dir = await tempDir("e2e");
    const base = await fixtureCopy("ext4-default.img", dir);
    const theirs = join(dir, "theirs.img");
    await copyFile(base, theirs);
    const host = join(dir, "alpha");
    await writeFile(host, "alpha\n");
    await debugfs(
      theirs,
      [
        "mkdir /opt",
        "mkdir /opt/cmp",
        `write ${host} /opt/cmp/a`,
        "symlink /opt/cmp/l a",
        "sif /opt/cmp/a mode 0100600",
        "sif /opt/cmp/a uid 0",
        "sif /opt/cmp/a gid 0",
        "sif /opt/cmp uid 0",
        "sif /opt/cmp gid 0",
        "sif /opt uid 0",
        "sif /opt gid 0",
        "sif /opt mode 040755",
        "sif /opt/cmp mode 040755",
        "rm /small.txt",
      ],
      { write: true },
    );
    const ours = join(dir, "ours.img");
    const r = await runBin(
      [
        "customize",
        base,
        "-o",
        ours,
        "--mkdir",
        "/opt/cmp",
        "--upload",
        `${host}:/opt/cmp/a`,
        "--link",
        "a:/opt/cmp/l",
        "--chmod",
        "0600:/opt/cmp/a",
        "--delete",
        "/small.txt",
      ],
      EPOCH,
    );
    expect(r.code).toBe(0);
    expect((await e2fsck(ours)).clean).toBe(true);
    expect((await e2fsck(theirs)).clean).toBe(true);
    const d = await runBin(["diff", "--json", theirs, ours]);
    expect(d.code).toBe(0);
    expect(JSON.parse(d.stdout)).toEqual([]);
    const d2 = await runBin(["diff", "--json", base, ours]);
    expect(JSON.parse(d2.stdout).length).toBeGreaterThan(0);
  });
});

describeWithTools(
  ["qemu-img", "e2fsck", "debugfs", "rpm"],
  "imgpatch bin end to end: --rpm and elements",
  () => {
    it("customize --rpm installs the payload (checked against rpm -qpl) and queues the scriptlets", async () => {
      const dir = await tempDir("e2e");
      const base = join(dir, "base.qcow2");
      await copyFile(await baseImage(), base);
      const pkg = fileURLToPath(
        new URL("../../../test-fixtures/rpm/out/imgpatch-demo-xz.noarch.rpm", import.meta.url),
      );
      const dry = await runBin(["customize", base, "--dry-run", "--rpm-owner-fallback", "--rpm", pkg]);
      expect(dry.code).toBe(0);
      expect(dry.stdout).toMatch(/imgpatch-demo-2:1\.2-3/);
      const out = join(dir, "out.qcow2");
      const r = await runBin(
        ["customize", base, "--overlay", out, "--rpm-owner-fallback", "--rpm", pkg],
        EPOCH,
      );
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect((await qemuImgCheck(out)).clean).toBe(true);
      const raw = await toRaw(out, dir, "out.raw");
      const root = { path: raw, offset: ROOT };
      expect((await e2fsck(root)).clean).toBe(true);
      const listed = (await runTool("rpm", ["-qpl", "--noghost", pkg])).stdout
        .toString()
        .split("\n")
        .filter(Boolean);
      for (const p of listed) await expect(debugfsStat(root, p), p).resolves.toBeDefined();
      const steps = await debugfs(root, ["ls -l /usr/lib/imgpatch/firstboot/steps"]);
      expect(steps).toMatch(/post/);
    });

    it("the issue's command: imgpatch elements base.qcow2 --overlay gold.qcow2 … (ELEMENTS_PATH from the environment)", async () => {
      const dir = await tempDir("e2e");
      const base = join(dir, "base.qcow2");
      await copyFile(await baseImage(), base);
      const elements = fileURLToPath(new URL("../../../test-fixtures/elements", import.meta.url));
      const r = await runBin(
        [
          "elements",
          "base.qcow2",
          "--overlay",
          "software-deployment-image-gold.qcow2",
          "os-collect-config",
          "os-refresh-config",
          "os-apply-config",
          "heat-config",
          "heat-config-script",
        ],
        { ...EPOCH, ELEMENTS_PATH: elements },
        dir,
      );
      expect(r.code).toBe(0);
      const gold = join(dir, "software-deployment-image-gold.qcow2");
      expect((await qemuImgInfo(gold))["backing-filename"]).toBe("base.qcow2");
      expect((await qemuImgCheck(gold)).clean).toBe(true);
      const raw = await toRaw(gold, dir, "gold.raw");
      const root = { path: raw, offset: ROOT };
      expect((await e2fsck(root)).clean).toBe(true);
      expect(
        await debugfs(root, ["stat /etc/systemd/system/multi-user.target.wants/os-collect-config.service"]),
      ).toContain("/usr/lib/systemd/system/os-collect-config.service");
      // selinux-permissive was not asked for here: the guest stays enforcing.
      expect((await debugfsCat(root, "/etc/selinux/config")).toString()).toMatch(/^SELINUX=enforcing$/m);
      await noTemps(dir);
    });
  },
);

describeWithTools(
  ["qemu-img", "e2fsck", "debugfs", "rpmbuild"],
  "imgpatch elements --rpm (the RPM route)",
  () => {
    it("unpacks a stand-in os-collect-config package, enables the unit, makes the config 0600", async () => {
      const dir = await tempDir("e2e");
      const top = join(dir, "rpmbuild");
      const spec = join(dir, "occ.spec");
      await writeFile(
        spec,
        [
          "Name: os-collect-config",
          "Version: 13.0.0",
          "Release: 1",
          "Summary: stand-in for the RDO package (imgpatch tests)",
          "License: ASL 2.0",
          "BuildArch: noarch",
          "%description",
          "stand-in",
          "%install",
          "mkdir -p %{buildroot}/usr/lib/systemd/system %{buildroot}/etc %{buildroot}/usr/libexec/os-apply-config/templates/etc %{buildroot}/usr/bin",
          "printf '[Unit]\\nDescription=Collect metadata\\n[Service]\\nExecStart=/usr/bin/os-collect-config\\n[Install]\\nWantedBy=multi-user.target\\n' > %{buildroot}/usr/lib/systemd/system/os-collect-config.service",
          "printf '[DEFAULT]\\ncommand=os-refresh-config\\n' > %{buildroot}/etc/os-collect-config.conf",
          "printf '[DEFAULT]\\n' > %{buildroot}/usr/libexec/os-apply-config/templates/etc/os-collect-config.conf",
          "printf '#!/bin/sh\\n' > %{buildroot}/usr/bin/os-collect-config",
          "%files",
          "%attr(0755,root,root) /usr/bin/os-collect-config",
          "/usr/lib/systemd/system/os-collect-config.service",
          "%config(noreplace) /etc/os-collect-config.conf",
          "/usr/libexec/os-apply-config/templates/etc/os-collect-config.conf",
          "",
        ].join("\n"),
      );
      await runTool("rpmbuild", ["--quiet", "--define", `_topdir ${top}`, "-bb", spec]);
      const pkg = join(top, "RPMS/noarch/os-collect-config-13.0.0-1.noarch.rpm");
      const base = join(dir, "base.qcow2");
      await copyFile(await baseImage(), base);
      const out = join(dir, "gold.qcow2");
      const r = await runBin(["elements", base, "--overlay", out, "--rpm", pkg], EPOCH);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/rpm: installed os-collect-config-13\.0\.0-1/);
      expect((await qemuImgCheck(out)).clean).toBe(true);
      const raw = await toRaw(out, dir, "gold.raw");
      const root = { path: raw, offset: ROOT };
      expect((await e2fsck(root)).clean).toBe(true);
      expect(
        await debugfs(root, ["stat /etc/systemd/system/multi-user.target.wants/os-collect-config.service"]),
      ).toContain('Fast link dest: "/usr/lib/systemd/system/os-collect-config.service"');
      expect(await debugfsStat(root, "/etc/os-collect-config.conf")).toMatchObject({ perm: 0o600, uid: 0 });
      expect(await debugfsStat(root, "/usr/bin/os-collect-config")).toMatchObject({ perm: 0o755 });
      expect(
        (
          await debugfsCat(root, "/usr/libexec/os-apply-config/templates/etc/os-collect-config.conf.oac")
        ).toString(),
      ).toBe("mode: 0600\n");
    });
  },
);
