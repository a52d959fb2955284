/**
 * The main job exactly as `npm start` runs it (packages/cli/src/main-job.ts executed as the entry
 * point, through tsx instead of the built dist/), writing the gold image to a temp dir, then the
 * oracles: qemu-img check, e2fsck -fn on both partitions, and the produced tree read back by debugfs.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  debugfs,
  debugfsCat,
  debugfsLs,
  debugfsStat,
  debugfsXattrs,
  describeWithTools,
  e2fsck,
  qemuImg,
  qemuImgCheck,
  qemuImgInfo,
  tempDir,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { TSX } from "./support/run-bin.js";

const MAIN = fileURLToPath(new URL("../src/main-job.ts", import.meta.url));
const REGISTER = fileURLToPath(new URL("./support/register-sources.mjs", import.meta.url));
const ROOT = 67584 * 512;
const BOOT = 2048 * 512;

function runMain(env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ["--import", TSX, "--import", REGISTER, MAIN], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (out += d));
    c.on("error", reject);
    c.on("close", (code) => resolve({ code: code ?? -1, out }));
  });
}

describeWithTools(["qemu-img", "e2fsck", "debugfs"], "npm start (the main job)", () => {
  it("builds software-deployment-image-gold.qcow2 that passes qemu-img check and e2fsck -fn, with the Heat agents in place", async () => {
    const dir = await tempDir("main-job");
    const gold = join(dir, "software-deployment-image-gold.qcow2");
    const r = await runMain({ IMGPATCH_GOLD: gold, SOURCE_DATE_EPOCH: "1700000000" });
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
