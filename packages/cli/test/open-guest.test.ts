import { createHash } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fixture, fixtureCopy, qemuImgCheck, qemuImgInfo, tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { isGuestError } from "../src/guest/guest-fs.js";
import { findVolume, parseFstab } from "../src/image/fstab.js";
import { openGuest } from "../src/image/open-guest.js";

const sha = async (p: string) =>
  createHash("sha256")
    .update(await readFile(p))
    .digest("hex");

describe("openGuest (read-only)", () => {
  it("finds the ext4 root of a GPT disk (raw and qcow2) and names the unsupported ESP", async () => {
    for (const name of ["disk-gpt.img", "disk-gpt.qcow2"]) {
      const g = await openGuest(await fixture(name));
      try {
        expect(g.mode).toBe("read-only");
        expect(g.format).toBe(name.endsWith("qcow2") ? "qcow2" : "raw");
        expect(g.mounts[0]).toMatchObject({
          mountpoint: "/",
          source: expect.stringContaining("partition 3"),
        });
        expect(g.disk.volumes.map((v) => v.filesystem?.type ?? null)).toContain("vfat");
        const names = await g.fs.readdir("/");
        expect(names.length).toBeGreaterThan(0);
      } finally {
        await g.close();
      }
    }
  });

  it("refuses writes with a message saying how to get an output", async () => {
    const g = await openGuest(await fixture("ext4-default.qcow2"));
    try {
      const err = await g.fs.writeFile("/x", "y").catch((e: unknown) => e);
      expect(isGuestError(err, "EPERM")).toBe(true);
      expect((err as Error).message).toMatch(/--overlay/);
    } finally {
      await g.close();
    }
  });

  it("names the image in open errors", async () => {
    const dir = await tempDir("og");
    const junk = join(dir, "junk.img");
    await writeFile(junk, Buffer.alloc(65536, 7));
    await expect(openGuest(junk)).rejects.toThrow(/no ext2\/ext3\/ext4\/XFS filesystem/);
    await expect(openGuest(join(dir, "missing.img"))).rejects.toThrow(/no such image/);
    await expect(openGuest(junk, { mounts: ["nonsense"] })).rejects.toThrow();
  });
});

describe("openGuest output modes", () => {
  it("overlay: creates a qcow2 backed by the input, input unchanged, no temp files left", async () => {
    const dir = await tempDir("og");
    const base = await fixtureCopy("ext4-default.qcow2", dir);
    const before = await sha(base);
    const out = join(dir, "out.qcow2");
    const g = await openGuest(base, { overlay: out });
    expect(g.mode).toBe("overlay");
    await g.commit();
    expect(await sha(base)).toBe(before);
    const info = (await qemuImgInfo(out)) as Record<string, unknown>;
    expect(info["backing-filename"]).toBe("ext4-default.qcow2");
    expect((await qemuImgCheck(out)).clean).toBe(true);
    expect((await readdir(dir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("output: writes a full raw or compressed qcow2 image with the same content", async () => {
    const dir = await tempDir("og");
    const base = await fixtureCopy("ext4-default.qcow2", dir);
    const before = await sha(base);
    for (const [name, opts] of [
      ["full.img", {}],
      ["full.qcow2", { compress: true }],
    ] as const) {
      const out = join(dir, name);
      const g = await openGuest(base, { output: out, ...opts });
      await g.commit();
      const info = (await qemuImgInfo(out)) as Record<string, unknown>;
      expect(info.format).toBe(name.endsWith(".img") ? "raw" : "qcow2");
      expect(info["backing-filename"]).toBeUndefined();
      const g2 = await openGuest(out);
      const g3 = await openGuest(base);
      expect(await g2.fs.readdir("/")).toEqual(await g3.fs.readdir("/"));
      await g2.close();
      await g3.close();
    }
    expect(await sha(base)).toBe(before);
    expect((await readdir(dir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("close() without commit leaves no output and no temp file", async () => {
    const dir = await tempDir("og");
    const base = await fixtureCopy("ext4-default.qcow2", dir);
    const before = await sha(base);
    for (const opt of [{ overlay: join(dir, "o.qcow2") }, { output: join(dir, "f.qcow2") }]) {
      const g = await openGuest(base, opt);
      await g.close();
    }
    expect((await readdir(dir)).sort()).toEqual(["ext4-default.qcow2"]);
    expect(await sha(base)).toBe(before);
  });

  it("refuses contradictory modes and output == input", async () => {
    const dir = await tempDir("og");
    const base = await fixtureCopy("ext4-default.qcow2", dir);
    await expect(openGuest(base, { overlay: join(dir, "a"), inPlace: true })).rejects.toThrow(/choose one/);
    await expect(openGuest(base, { overlay: base })).rejects.toThrow(/is the input/);
    expect((await readdir(dir)).sort()).toEqual(["ext4-default.qcow2"]);
  });
});

describe("fstab", () => {
  it("parses entries and skips swap/virtual/bind", () => {
    const e = parseFstab(
      "# c\nUUID=ab / ext4 defaults 0 1\nLABEL=boot\t/boot ext4 defaults 0 2\n/dev/vda2 /boot/efi vfat umask=077 0 2\n/swap none swap sw 0 0\ntmpfs /tmp tmpfs defaults 0 0\n/a /b none bind 0 0\n/dev/sda4 /srv\\040x xfs defaults 0 0\n",
    );
    expect(parseFstab("/dev/sda1 /boot/../etc//x/ ext4 defaults 0 0\n")[0].mountpoint).toBe("/etc/x");
    expect(e.map((x) => [x.spec, x.mountpoint])).toEqual([
      ["UUID=ab", "/"],
      ["LABEL=boot", "/boot"],
      ["/dev/vda2", "/boot/efi"],
      ["/dev/sda4", "/srv x"],
    ]);
  });
  it("resolves specs against volumes", () => {
    const vols = [
      { partition: { number: 1, uuid: "P-1", name: "efi" }, filesystem: { uuid: "AAAA-BBBB", label: "EFI" } },
      { partition: { number: 3, uuid: "p-3", name: "root" }, filesystem: { uuid: "u-3", label: "root" } },
    ] as never[];
    expect(findVolume("UUID=aaaa-bbbb", vols)).toBe(vols[0]);
    expect(findVolume("LABEL=root", vols)).toBe(vols[1]);
    expect(findVolume("PARTUUID=P-3", vols)).toBe(vols[1]);
    expect(findVolume("PARTLABEL=efi", vols)).toBe(vols[0]);
    expect(findVolume("/dev/disk/by-uuid/u-3", vols)).toBe(vols[1]);
    expect(findVolume("/dev/sda3", vols)).toBe(vols[1]);
    expect(findVolume("/dev/nvme0n1p1", vols)).toBe(vols[0]);
    expect(findVolume("3", vols)).toBe(vols[1]);
    expect(findVolume("/dev/sda2", vols)).toBeUndefined();
    expect(findVolume("LABEL=nope", vols)).toBeUndefined();
  });
});

describe("mounts we cannot edit", () => {
  it("-m with a vfat ESP: touching it is an error naming the mount and why; the root still works", async () => {
    const dir = await tempDir("og");
    const g = await openGuest(await fixture("disk-gpt.img"), {
      mounts: ["/dev/sda3:/", "2:/boot/efi"],
      overlay: join(dir, "o.qcow2"),
    });
    try {
      expect(g.mounts.map((m) => [m.mountpoint, m.editable])).toEqual([
        ["/", true],
        ["/boot/efi", false],
      ]);
      const err = await g.fs.writeFile("/boot/efi/x", "y").catch((e: unknown) => e);
      expect(isGuestError(err, "EPERM")).toBe(true);
      expect((err as Error).message).toMatch(
        /\/boot\/efi\/x is on \/boot\/efi, partition 2 \(vfat "ESP"\) — vfat is not supported/,
      );
      await expect(g.fs.readdir("/boot/efi")).rejects.toThrow(/vfat/);
      await g.fs.mkdir("/boot", { recursive: true }).catch(() => {});
      expect((await g.fs.stat("/")).type).toBe("directory");
    } finally {
      await g.close();
    }
  });
});
