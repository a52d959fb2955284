/**
 * `imgpatch sysprep` without virt-sysprep (that comparison is sysprep-oracle.test.ts): operation
 * selection as virt-sysprep parses it, refusals, the effect on realistic ext4 and XFS guests
 * (test/support/sysprep-guest.ts) read back through debugfs / xfs_db-free checks, --dry-run writing
 * nothing, user-account's lists, fs-uuids on every checksum layout (ext4 metadata_csum, gdt_csum,
 * XFS v5 and v4). Every output ends with e2fsck -fn or xfs_repair -n, and blkid for UUIDs.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { debugfsCat, debugfsLs, describeWithTools, e2fsck, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, describe, expect, it } from "vitest";
import { type CliIo, runCli } from "../src/commands/main.js";
import { checkRefused, SysprepUsageError, selectOperations, userAccountLists } from "../src/sysprep/index.js";
import { buildSysprepTree, makeExt4, makeXfs } from "./support/sysprep-guest.js";

function io(): CliIo & { stdout: string; stderr: string } {
  const o = {
    stdout: "",
    stderr: "",
    out(t: string) {
      o.stdout += t;
    },
    err(t: string) {
      o.stderr += t;
    },
    isTTY: false,
    env: { ...process.env, SOURCE_DATE_EPOCH: "1700000000" },
  };
  return o;
}

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const o = io();
  const code = await runCli(args, o);
  return { code, stdout: o.stdout, stderr: o.stderr };
}

const blkid = (img: string) =>
  execFileSync("blkid", ["-p", "-s", "UUID", "-o", "value", img]).toString().trim();

async function xfsRepairClean(img: string): Promise<void> {
  const r = await runTool("xfs_repair", ["-n", "-f", img], { timeoutMs: 600_000 });
  expect(r.exitCode, `${r.stdout.toString()}${r.stderr}`).toBe(0);
}

async function e2fsckClean(img: string): Promise<void> {
  const r = await e2fsck(img);
  expect(r.exitCode, r.problems.join("\n")).toBe(0);
}

describe("sysprep operation selection (virt-sysprep's --enable/--operations)", () => {
  it("defaults to the 37 starred operations", () => {
    const s = selectOperations(undefined, []);
    expect(s.operations.size).toBe(37);
    expect(s.operations.has("fs-uuids")).toBe(false);
    expect(s.operations.has("customize")).toBe(true);
  });
  it("--enable is exactly the list; --operations adds and removes, with defaults and all", () => {
    expect([...selectOperations("machine-id,tmp-files", []).operations].sort()).toEqual([
      "machine-id",
      "tmp-files",
    ]);
    const s = selectOperations(undefined, ["defaults,-customize,fs-uuids", "-tmp-files"]);
    expect(s.operations.has("customize")).toBe(false);
    expect(s.operations.has("tmp-files")).toBe(false);
    expect(s.operations.has("fs-uuids")).toBe(true);
    expect(s.operations.size).toBe(36);
    expect(selectOperations(undefined, ["all,-all,utmp"]).operations).toEqual(new Set(["utmp"]));
    expect(selectOperations("utmp", ["ssh-hostkeys"]).operations).toEqual(new Set(["utmp", "ssh-hostkeys"]));
  });
  it("refuses unknown names, empty names, and script/lvm-uuids when named", () => {
    expect(() => selectOperations("nope", [])).toThrow(/'nope' is not a known operation/);
    expect(() => selectOperations(undefined, ["utmp,"])).toThrow(/empty operation name/);
    expect(() => selectOperations("", [])).toThrow(SysprepUsageError);
    expect(() => checkRefused(selectOperations("script", []))).toThrow(
      /script is not supported: runs host scripts/,
    );
    expect(() => checkRefused(selectOperations(undefined, ["lvm-uuids"]))).toThrow(/LVM/);
    expect(() => checkRefused(selectOperations(undefined, ["all"]))).not.toThrow();
  });
  it("--keep/--remove-user-accounts need user-account and non-empty names", () => {
    expect(() => userAccountLists(selectOperations(undefined, []), [], ["bob"])).toThrow(/not enabled/);
    expect(() => userAccountLists(selectOperations("user-account", []), ["a,,b"], [])).toThrow(
      /empty user name/,
    );
    expect(userAccountLists(selectOperations("user-account", []), ["a,b", "c"], [])).toEqual({
      removeUsers: ["a", "b", "c"],
      keepUsers: [],
    });
  });
  it("exits 2 naming the refused operation before opening anything", async () => {
    const r = await cli(["sysprep", "/nonexistent.img", "--in-place", "--operations", "lvm-uuids"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/lvm-uuids is not supported/);
  });
});

describeWithTools(["mke2fs", "e2fsck", "debugfs", "blkid"], "sysprep on a RHEL 7-like ext4 guest", () => {
  let dir: string;
  let base: string;
  const UUID = "0b9e1a5c-3d2f-4e6a-8b7c-9d0e1f2a3b4c";
  beforeAll(async () => {
    dir = await tempDir("sysprep-ext4-");
    buildSysprepTree(join(dir, "tree"), "rhel7");
    base = join(dir, "base.img");
    makeExt4(join(dir, "tree"), base, UUID);
  });

  it("default set: the documented paths go, the rest stays; e2fsck -fn clean", async () => {
    const out = join(dir, "out.img");
    const before = readFileSync(base);
    const r = await cli(["sysprep", base, "-o", out, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(base).equals(before)).toBe(true);
    const report = JSON.parse(r.stdout) as { operations: Array<{ op: string }>; notes: string[] };
    expect(report.operations.map((o) => o.op)).toContain("customize");
    expect(report.operations.at(-1)?.op).toBe("customize");
    expect(report.notes.join("\n")).toMatch(/lvm-uuids: skipped/);
    await e2fsckClean(out);
    const names = async (p: string) =>
      (await debugfsLs(out, p)).map((e) => e.name).filter((n) => n !== "." && n !== "..");
    expect(await names("/etc/ssh")).toEqual(["sshd_config"]);
    expect((await names("/var/log")).sort()).toEqual(
      [
        "README",
        "account",
        "anaconda",
        "apt",
        "audit",
        "chrony",
        "dump",
        "httpd",
        "installer",
        "journal",
        "keepme.txt",
        "puppet",
        "rhsm",
        "sa",
        "samba",
        "sssd",
        "tuned",
      ].sort(),
    );
    expect(await names("/tmp")).toEqual([]);
    expect(await names("/var/lib/rpm")).toEqual([".rpm.lock", "Packages"]);
    expect(await names("/var/lib/cloud/instance")).toEqual(["obj.pkl"]);
    expect(await names("/var/cache/yum/x86_64/7/base")).toEqual(["packages"]);
    expect(await names("/home/alice")).toEqual([".bashrc", "notes.bak"]);
    expect(
      (await names("/etc")).filter((n) => n.endsWith("-") || n.endsWith("~") || n.endsWith(".bak")),
    ).toEqual([]);
    const ifcfg = (await debugfsCat(out, "/etc/sysconfig/network-scripts/ifcfg-eth0")).toString();
    expect(ifcfg).toBe("DEVICE=eth0\nBOOTPROTO=dhcp\nONBOOT=yes\n");
    expect((await debugfsCat(out, "/var/account/pacct")).length).toBe(0);
    expect((await debugfsCat(out, "/var/lib/dbus/machine-id")).length).toBe(0);
    // customize (last) refills the emptied /etc/machine-id and the random seed, as virt-sysprep 1.48
    expect((await debugfsCat(out, "/etc/machine-id")).toString()).toMatch(/^[0-9a-f]{32}\n$/);
    expect((await debugfsCat(out, "/var/lib/systemd/random-seed")).equals(Buffer.alloc(512, 7))).toBe(false);
    // cron-spool resets the at sequence in place
    expect((await debugfsCat(out, "/var/spool/at/.SEQ")).toString()).toBe("00000\n");
    expect(blkid(out)).toBe(UUID);
  });

  it("--dry-run lists what would go and writes nothing", async () => {
    const before = readFileSync(base);
    const r = await cli(["sysprep", base, "--dry-run", "--operations", "ssh-hostkeys,tmp-files"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/would delete \/etc\/ssh\/ssh_host_rsa_key\n/);
    expect(r.stdout).toMatch(/would delete \/tmp\/\.X0-lock/);
    expect(r.stdout).not.toMatch(/\/var\/log/);
    expect(readFileSync(base).equals(before)).toBe(true);
  });

  it("user-account --remove-user-accounts and customize operations; --in-place", async () => {
    const img = join(dir, "inplace.img");
    execFileSync("cp", ["--sparse=always", base, img]);
    const r = await cli([
      "sysprep",
      img,
      "--in-place",
      "--enable",
      "user-account,customize",
      "--remove-user-accounts",
      "alice",
      "--hostname",
      "clone",
      "--write",
      "/etc/motd:hello",
      "--rpm",
      fileURLToPath(new URL("../../../test-fixtures/rpm/out/imgpatch-demo-xz.noarch.rpm", import.meta.url)),
      "--rpm-owner-fallback",
    ]);
    expect(r.code, r.stderr).toBe(0);
    await e2fsckClean(img);
    const passwd = (await debugfsCat(img, "/etc/passwd")).toString();
    expect(passwd).toBe(
      "root:x:0:0:root:/root:/bin/bash\ndaemon:x:2:2:daemon:/sbin:/sbin/nologin\nbob:x:1001:1001::/home/bob:/bin/bash\n",
    );
    expect((await debugfsCat(img, "/etc/group")).toString()).not.toMatch(/^alice:/m);
    expect((await debugfsCat(img, "/etc/group")).toString()).toMatch(/^wheel:x:10:alice$/m);
    expect((await debugfsCat(img, "/etc/shadow")).toString()).not.toMatch(/^alice:/m);
    expect((await debugfsLs(img, "/home")).map((e) => e.name)).not.toContain("alice");
    expect((await debugfsLs(img, "/var/spool/mail")).map((e) => e.name)).toContain("bob");
    expect((await debugfsCat(img, "/etc/hostname")).toString()).toBe("clone\n");
    expect((await debugfsCat(img, "/etc/motd")).toString()).toBe("hello");
    expect((await debugfsLs(img, "/var/lib/imgpatch/firstboot/pending")).map((e) => e.name)).toContain(
      "000004-04-imgpatch-demo-post",
    );
    expect(statSync(`${img}.imgpatch-undo`, { throwIfNoEntry: false })).toBeUndefined();
  });

  it("ca-certificates: certificates and keys go, the bundles stay, the CA store update is queued for the first boot", async () => {
    const out = join(dir, "ca.img");
    const r = await cli(["sysprep", base, "-o", out, "--enable", "ca-certificates", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    await e2fsckClean(out);
    const report = JSON.parse(r.stdout) as {
      operations: Array<{ op: string; changes: string[] }>;
      notes: string[];
    };
    expect(report.operations).toEqual([
      {
        op: "ca-certificates",
        changes: ["delete /etc/pki/tls/certs/localhost.crt", "delete /etc/pki/tls/private/localhost.key"],
      },
    ]);
    expect((await debugfsLs(out, "/etc/pki/tls/certs")).map((e) => e.name).sort()).toEqual(
      [".", "..", "ca-bundle.crt", "ca-bundle.trust.crt"].sort(),
    );
    const note = report.notes.find((n) => n.startsWith("CA store update queued"));
    expect(note).toBeDefined();
    const queued = (note as string).replace(/^.*: /, "");
    expect((await debugfsCat(out, queued)).toString()).toBe("#!/bin/sh\nupdate-ca-trust extract\n");
  });

  it("fs-uuids: metadata_csum (csum_seed set) and gdt_csum (descriptors rewritten) stay e2fsck-clean", async () => {
    for (const [name, extra] of [
      ["csum", [] as string[]],
      ["gdt", ["-O", "^metadata_csum,uninit_bg"]],
      ["plain", ["-O", "^metadata_csum,^uninit_bg"]],
    ] as const) {
      const img = join(dir, `${name}.img`);
      makeExt4(join(dir, "tree"), img, UUID, extra);
      const out = join(dir, `${name}-u.img`);
      const r = await cli(["sysprep", img, "-o", out, "--operations", "fs-uuids", "-v"]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/fs-uuids: ext4 UUID 0b9e1a5c-3d2f-4e6a-8b7c-9d0e1f2a3b4c -> /);
      await e2fsckClean(out);
      expect(blkid(out)).not.toBe(UUID);
      expect(blkid(out)).toMatch(/^[0-9a-f-]{36}$/);
      // the backup superblocks carry it too (e2fsck -b would also report the backups' stale counts)
      const dump = execFileSync("dumpe2fs", ["-o", "superblock=8193", "-o", "blocksize=1024", "-h", out], {
        stdio: ["ignore", "pipe", "ignore"],
      }).toString();
      expect(dump).toContain(`Filesystem UUID:          ${blkid(out)}`);
    }
  });
});

describeWithTools(
  ["mkfs.xfs", "xfs_repair", "xfs_db", "blkid"],
  "sysprep on a Debian 12-like XFS guest",
  () => {
    let dir: string;
    const UUID = "1c9e1a5c-3d2f-4e6a-8b7c-9d0e1f2a3b4c";
    beforeAll(async () => {
      dir = await tempDir("sysprep-xfs-");
      buildSysprepTree(join(dir, "tree"), "debian12");
    });

    it("default set + fs-uuids on v5 (meta_uuid keeps the old UUID, log headers follow) and v4", async () => {
      for (const [name, extra] of [
        ["v5", [] as string[]],
        ["v4", ["-m", "crc=0"]],
      ] as const) {
        const img = join(dir, `${name}.img`);
        makeXfs(join(dir, "tree"), img, UUID, extra);
        const out = join(dir, `${name}-out.qcow2`);
        const r = await cli(["sysprep", img, "-o", out, "--operations", "defaults,fs-uuids", "--json"]);
        expect(r.code, r.stderr).toBe(0);
        const raw = join(dir, `${name}-out.raw`);
        execFileSync("qemu-img", ["convert", "-O", "raw", out, raw]);
        await xfsRepairClean(raw);
        const now = blkid(raw);
        expect(now).not.toBe(UUID);
        const db = execFileSync("xfs_db", [
          "-r",
          "-c",
          "sb 0",
          "-c",
          "p uuid",
          "-c",
          "sb 2",
          "-c",
          "p uuid",
          raw,
        ]).toString();
        expect(db).toBe(`uuid = ${now}\nuuid = ${now}\n`);
        if (name === "v5")
          expect(execFileSync("xfs_db", ["-r", "-c", "sb 0", "-c", "p meta_uuid", raw]).toString()).toBe(
            `meta_uuid = ${UUID}\n`,
          );
        if (name === "v5" && process.getuid?.() === 0) {
          // the kernel checks the log's record headers against the UUID on mount (no norecovery here)
          const mnt = join(dir, "mnt");
          execFileSync("mkdir", ["-p", mnt]);
          const dev = execFileSync("losetup", ["--find", "--show", "-r", raw]).toString().trim();
          try {
            execFileSync("mount", ["-t", "xfs", "-o", "ro", dev, mnt]);
            try {
              expect(readFileSync(join(mnt, "etc/os-release"), "utf8")).toMatch(/ID=debian/);
            } finally {
              execFileSync("umount", [mnt]);
            }
          } finally {
            execFileSync("losetup", ["-d", dev]);
          }
        }
        const report = JSON.parse(r.stdout) as { operations: Array<{ op: string; changes: string[] }> };
        const changes = Object.fromEntries(report.operations.map((o) => [o.op, o.changes]));
        // Debian: apt cache, /var/log/account, no RHEL-only operations
        expect(changes["package-manager-cache"]).toEqual([
          "delete /var/cache/apt/archives/bash_5.2_amd64.deb",
          "delete /var/cache/apt/archives/lock",
        ]);
        expect(changes["pacct-log"]).toEqual([
          "delete /var/log/account/pacct",
          "delete /var/log/account/pacct.1.gz",
          "touch /var/log/account/pacct",
        ]);
        expect(changes["net-hwaddr"]).toEqual([]);
        expect(changes["yum-uuid"]).toEqual([]);
        expect(changes["rhn-systemid"]).toEqual([]);
        expect(changes["fs-uuids"]?.[0]).toMatch(/xfs UUID 1c9e1a5c-3d2f-4e6a-8b7c-9d0e1f2a3b4c -> /);
      }
    });
  },
);
