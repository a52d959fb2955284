/**
 * The quota feature: after edits the user, group and project quota files hold the usage e2fsck
 * computes (its -fn compares every id's blocks and inodes with the files and reports missing
 * ids). Ids are spread over all four bytes so the quota tree needs several index blocks per
 * level and several data blocks; ids whose last file is removed stay with zero usage.
 */
import { readFile } from "node:fs/promises";
import { FileDevice } from "@imgpatch/disk";
import { Ext4Editor, Ext4FormatError, Ext4Fs, parseQuotaFile } from "@imgpatch/ext4";
import { debugfsRaw, describeWithTools, e2fsck, runTool, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { makeImage, openEditor } from "./editor-helpers.js";

const SETS: [string, string[]][] = [
  [
    "ext4, user+group+project",
    ["-t", "ext4", "-O", "quota,project", "-E", "quotatype=usrquota:grpquota:prjquota"],
  ],
  ["ext4 1 KiB no csum, user+group", ["-t", "ext4", "-b", "1024", "-O", "quota,^metadata_csum"]],
  ["ext3, user+group", ["-t", "ext3", "-O", "quota"]],
];

/**
 * Limits for id 0 in the user quota file mke2fs wrote (one data block, the file's last quota
 * block, holding id 0 first): block soft/hard 3000/4000, inode soft/hard 10/20.
 */
async function setRootLimits(img: string): Promise<void> {
  const bs = Number(/Block size:\s+(\d+)/.exec((await debugfsRaw(img, ["stats"])).stdout.toString())?.[1]);
  const data = Buffer.from((await debugfsRaw(img, ["cat <3>"])).stdout);
  const q = parseQuotaFile(data, 0, { file: img, inode: 3 });
  expect([...q.entries.keys()]).toEqual([0]);
  const at = data.readUInt32LE(20) - 1; // the data block
  expect(data.readUInt32LE(at * 1024 + 16)).toBe(0);
  const entry = Buffer.from(data.subarray(at * 1024 + 16, at * 1024 + 16 + 72));
  entry.writeBigUInt64LE(20n, 8);
  entry.writeBigUInt64LE(10n, 16);
  entry.writeBigUInt64LE(4000n, 32);
  entry.writeBigUInt64LE(3000n, 40);
  const fsBlock = Number(
    (await debugfsRaw(img, [`bmap <3> ${Math.floor((at * 1024) / bs)}`])).stdout.toString().trim(),
  );
  const dev = await FileDevice.open(img);
  await dev.write(fsBlock * bs + ((at * 1024) % bs) + 16, entry);
  await dev.close();
}

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "ext4 editor: quota files", () => {
  for (const [name, args] of SETS) {
    it(`${name}: e2fsck -fn is clean after edits by many ids`, async () => {
      const dir = await tempDir("edq-");
      const img = await makeImage(dir, "q", args, "32M");
      await setRootLimits(img);
      const ed = await openEditor(img);
      await ed.mkdir("/d", { recursive: true });
      for (let i = 0; i < 60; i++) {
        const uid = (i * 0x01010101 + 7) >>> 0; // every byte differs between ids
        await ed.writeFile(`/d/f${i}`, Buffer.alloc(i * 700, i), { uid, gid: 1000 + (i % 17) });
      }
      await ed.mkdir("/d/sub", { uid: 4242, gid: 4242 });
      await ed.setxattr("/d/f3", "user.big", Buffer.alloc(600, 1));
      await ed.symlink("/d/f1", "/d/link");
      await ed.link("/d/f2", "/d/hard");
      await ed.sync();
      // Mid-session state is already consistent.
      const mid = await e2fsck(img);
      expect(mid.problems, mid.output).toEqual([]);
      await ed.rm("/d/f5");
      await ed.truncate("/d/f10", 100);
      await ed.chown("/d/f11", 77, 88);
      await ed.writeAt("/d/f12", 20_000, "grown");
      await ed.rename("/d/f13", "/d/sub/f13");
      await ed.close();
      const r = await e2fsck(img);
      expect(r.problems, r.output).toEqual([]);
      expect(r.clean).toBe(true);
      // The files hold every id (e2fsck reports missing ones), including the one removed.
      const dump = await debugfsRaw(img, ["dump <3> " + `${dir}/usr.quota`]);
      expect(dump.exitCode).toBe(0);
      const usr = parseQuotaFile(await readFile(`${dir}/usr.quota`), 0, { file: img, inode: 3 });
      expect(usr.entries.size).toBeGreaterThan(60);
      expect(usr.entries.has((5 * 0x01010101 + 7) >>> 0)).toBe(true);
      // debugfs reads the files too: id 0 kept its limits, the removed file's id has nothing.
      const lq = (await debugfsRaw(img, ["lq user"])).stdout.toString();
      expect(lq).toMatch(/^\s+0\s+\d+\s+3000\s+4000\s+\d+\s+10\s+20$/m);
      expect(lq).toMatch(
        new RegExp(`^\\s+${(5 * 0x01010101 + 7) >>> 0}\\s+0\\s+0\\s+0\\s+0\\s+0\\s+0$`, "m"),
      );
    });
  }

  it("inline_data: an inline symlink is not counted, as e2fsck counts (property seed -1419768261)", async () => {
    // The shrunk property failure: a 94-byte target is stored inline (60..128 bytes with
    // 256-byte inodes); e2fsck's pass 1 never charges such a symlink to any id.
    const dir = await tempDir("edq-");
    const img = await makeImage(dir, "inl", ["-t", "ext4", "-O", "inline_data,quota", "-N", "48"], "2M");
    const ed = await openEditor(img);
    await ed.mkdir("/a", { mode: 0o755 });
    await ed.symlink(`/no/${"where/".repeat(15)}`, "/a/a");
    await ed.symlink("x", "/a/fast"); // in i_block, no inline flag: counted
    await ed.symlink(`/far/${"away/".repeat(60)}`, "/a/slow"); // in a block: counted
    await ed.close();
    expect((await debugfsRaw(img, ["stat /a/a"])).stdout.toString()).toMatch(/Flags: 0x10000000/);
    const r = await e2fsck(img);
    expect(r.problems, r.output).toEqual([]);
    expect(r.clean, r.output).toBe(true);
    // Id 0 holds root, lost+found, /a and the two symlinks without the inline flag.
    const lq = (await debugfsRaw(img, ["lq user"])).stdout.toString();
    expect(lq).toMatch(/^\s+0\s+\d+\s+0\s+0\s+5\s+0\s+0$/m);
  });

  it("inline_data: attributes too big for an inline symlink's inode move its target to a block", async () => {
    // e2fsck never visits an inline symlink's attribute block: it would call it free and leave
    // it out of the quota. The editor makes such a symlink a slow one instead.
    const dir = await tempDir("edq-");
    const img = await makeImage(dir, "inlx", ["-t", "ext4", "-O", "inline_data,quota", "-N", "48"], "2M");
    const target = `/no/${"where/".repeat(15)}`;
    const ed = await openEditor(img);
    await ed.symlink(target, "/big");
    await ed.symlink(target, "/small");
    await ed.setxattr("/big", "security.selinux", Buffer.alloc(300, 0x41), { follow: false });
    await ed.setxattr("/small", "trusted.t", Buffer.alloc(4, 0x42), { follow: false }); // fits: stays inline
    await ed.close();
    const r = await e2fsck(img);
    expect(r.problems, r.output).toEqual([]);
    expect(r.clean, r.output).toBe(true);
    const big = (await debugfsRaw(img, ["stat /big"])).stdout.toString();
    expect(big).toMatch(/Flags: 0x80000\b/);
    expect(big).toMatch(/File ACL: [1-9]/);
    expect((await debugfsRaw(img, ["stat /small"])).stdout.toString()).toMatch(/Flags: 0x10000000/);
    for (const p of ["/big", "/small"])
      expect((await debugfsRaw(img, [`cat ${p}`])).stdout.toString(), p).toBe(target);
    const fs = await Ext4Fs.open(await FileDevice.open(img, { readOnly: true }));
    try {
      expect(await fs.readlink("/big")).toBe(target);
      expect(await fs.readlink("/small")).toBe(target);
    } finally {
      await fs.close();
    }
  });

  it("a damaged quota file is a typed error naming it (nothing refused at open)", async () => {
    const dir = await tempDir("edq-");
    const img = await makeImage(dir, "bad", ["-t", "ext4", "-b", "4096", "-O", "quota"], "16M");
    // dqi_blocks (le32 at byte 20 of the user quota file) far past the file.
    const first = Number((await debugfsRaw(img, ["bmap <3> 0"])).stdout.toString().trim());
    expect(first).toBeGreaterThan(0);
    const dev = await FileDevice.open(img);
    const bs = 4096;
    await dev.write(first * bs + 20, Uint8Array.of(0xff, 0xff, 0, 0));
    await dev.close();
    const ed = await Ext4Editor.open(await FileDevice.open(img), { timestamp: 1_700_000_000 });
    await ed.writeFile("/x", "y");
    await expect(ed.close()).rejects.toBeInstanceOf(Ext4FormatError);
    // e2fsck agrees the file is damaged.
    const r = await runTool("e2fsck", ["-fn", img]);
    expect(r.exitCode).not.toBe(0);
  });
});
