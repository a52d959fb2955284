/**
 * The GuestFs contract on the real thing: the ext4 editor behind openGuest (bare filesystem), and
 * the mount router (a GPT disk with a second filesystem mounted under /mnt/other), each followed by
 * e2fsck -fn on what was written.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { describeWithTools, e2fsck, qemuImg, tempDir } from "@imgpatch/testkit";
import { afterAll, expect, it } from "vitest";
import type { GuestFs } from "../src/guest/guest-fs.js";
import { type Guest, openGuest } from "../src/image/open-guest.js";
import { describeGuestFsConformance } from "./guest-fs-conformance.js";

const opened: Array<{ guest: Guest; out: string; offsets: number[] }> = [];

async function fresh(layout: "bare" | "gpt"): Promise<GuestFs> {
  const dir = await tempDir("ext4gfs");
  const img = join(dir, "disk.img");
  if (layout === "bare") {
    execFileSync("mke2fs", ["-q", "-F", "-t", "ext4", img, "16M"], { stdio: "ignore" });
  } else {
    execFileSync("truncate", ["-s", "40M", img]);
    execFileSync("sfdisk", ["-q", img], {
      input: "label: gpt\nstart=2048, size=30720\nstart=32768, size=40960\n",
      stdio: ["pipe", "ignore", "ignore"],
    });
    for (const [start, size] of [
      [2048, 30720],
      [32768, 40960],
    ]) {
      const part = join(dir, `p${start}.img`);
      execFileSync("mke2fs", ["-q", "-F", "-t", "ext4", part, `${(size * 512) / 1024}K`], {
        stdio: "ignore",
      });
      execFileSync("dd", [
        `if=${part}`,
        `of=${img}`,
        "bs=512",
        `seek=${start}`,
        "conv=notrunc",
        "status=none",
      ]);
    }
  }
  const out = join(dir, "out.qcow2");
  const guest = await openGuest(img, {
    overlay: out,
    mounts: layout === "gpt" ? ["1:/", "2:/mnt/other"] : undefined,
  });
  opened.push({ guest, out, offsets: layout === "gpt" ? [2048 * 512, 32768 * 512] : [0] });
  return guest.fs;
}

describeWithTools(["mke2fs", "e2fsck", "sfdisk", "qemu-img"], "Ext4GuestFs and MountedGuestFs", () => {
  describeGuestFsConformance("ext4 editor via openGuest (bare filesystem)", () => fresh("bare"));
  describeGuestFsConformance("mount router (GPT, second fs on /mnt/other)", () => fresh("gpt"));

  afterAll(async () => {
    // Everything the conformance cases wrote must be a consistent filesystem.
    for (const { guest, out, offsets } of opened) {
      await guest.commit();
      const raw = `${out}.raw`;
      await qemuImg(["convert", "-O", "raw", out, raw]);
      for (const offset of offsets) {
        const r = await e2fsck({ path: raw, offset });
        expect(r.problems, `${out} @${offset}`).toEqual([]);
      }
    }
  });

  it("routes /mnt/other to the second filesystem", async () => {
    const fs = await fresh("gpt");
    await fs.mkdir("/mnt/other/x", { recursive: true });
    await fs.writeFile("/mnt/other/x/f", "on p2");
    await fs.symlink("/mnt/other/x", "/to-other");
    expect(new TextDecoder().decode(await fs.readFile("/to-other/f"))).toBe("on p2");
    await expect(fs.rename("/to-other/f", "/f")).rejects.toThrow(/EXDEV/);
  });

  it("create hooks see guest paths across mounts and their attributes land on the new inodes", async () => {
    const fs = await fresh("gpt");
    const asked: string[] = [];
    const createXattrs = (p: string, t: string) => {
      asked.push(`${t} ${p}`);
      return { "user.made": new TextEncoder().encode(p) };
    };
    await fs.mkdir("/mnt/other/d/e", { recursive: true, createXattrs });
    await fs.writeFile("/mnt/other/d/e/f", "x", { createXattrs });
    await fs.symlink("/mnt/other/d", "/link", { createXattrs });
    await fs.writeFile("/link/g", "y", { createXattrs }); // through a symlink on / into the mount
    await fs.mknod("/mnt/other/p", "fifo", 0o600, 0, 0, { createXattrs });
    expect(asked).toEqual([
      "directory /mnt", // the mount point's directory, made on / (the mount answers for it before)
      "directory /mnt/other/d",
      "directory /mnt/other/d/e",
      "file /mnt/other/d/e/f",
      "symlink /link",
      "file /mnt/other/d/g",
      "fifo /mnt/other/p",
    ]);
    for (const p of [
      "/mnt",
      "/mnt/other/d",
      "/mnt/other/d/e",
      "/mnt/other/d/e/f",
      "/mnt/other/d/g",
      "/mnt/other/p",
    ])
      expect([p, new TextDecoder().decode(await fs.getxattr(p, "user.made"))]).toEqual([p, p]);
  });
});
