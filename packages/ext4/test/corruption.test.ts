/**
 * Corrupted copies: one bit flipped in each checksummed structure gives a checksum error naming
 * the structure and block/inode — never wrong data; lenient mode reports and continues; a
 * damaged primary superblock or descriptor table falls back to a backup.
 */
import { copyFile, mkdir, open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { Ext4ChecksumError, Ext4Fs } from "@imgpatch/ext4";
import { debugfs, describeWithTools, runToolOk, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { mkfs, openImage, pseudoBytes, sha256 } from "./helpers.js";

async function flip(path: string, offset: number, bit = 0): Promise<void> {
  const fh = await open(path, "r+");
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, offset);
  b[0] ^= 1 << bit;
  await fh.write(b, 0, 1, offset);
  await fh.close();
}

describeWithTools(["mke2fs", "debugfs", "e2fsck", "setfattr"], "corrupted metadata", () => {
  let dir: string;
  let base: string;
  const BS = 4096;
  let n = 0;
  const big = pseudoBytes(3 * 1024 * 1024, 3);
  async function copy(): Promise<string> {
    const p = join(dir, `c${n++}.img`);
    await copyFile(base, p);
    return p;
  }

  beforeAll(async () => {
    dir = await tempDir("ext4-corrupt-");
    const src = join(dir, "src");
    await mkdir(join(src, "big"), { recursive: true });
    await mkdir(join(src, "small"));
    for (let i = 0; i < 600; i++) await writeFile(join(src, "big", `name-${i}`), `${i}`);
    for (let i = 0; i < 5; i++) await writeFile(join(src, "small", `f${i}`), `${i}`);
    await writeFile(join(src, "file"), "plain file\n");
    await writeFile(join(src, "frag.bin"), big);
    await writeFile(join(src, "xa"), "xattr holder\n");
    await runToolOk("setfattr", [
      "-n",
      "user.big",
      "-v",
      `0x${pseudoBytes(1500, 9).toString("hex")}`,
      join(src, "xa"),
    ]);
    base = join(dir, "base.img");
    await mkfs(base, src, 160, ["-t", "ext4", "-b", "4096"]); // two groups: a backup superblock in group 1
    const punch: string[] = [];
    for (let b = 1; b < 768; b += 2) punch.push(`punch /frag.bin ${b} ${b}`);
    await debugfs(base, punch, { write: true });
    await runToolOk("e2fsck", ["-fyD", base]).catch(() => undefined);
    const r = await runToolOk("e2fsck", ["-fn", base]);
    expect(r.length).toBeGreaterThan(0);
  });

  it("the pristine image opens without warnings", async () => {
    const fs = await openImage(base, { verifyBitmaps: true });
    expect(fs.warnings).toEqual([]);
    expect(fs.features().roCompat).toContain("metadata_csum");
    await fs.close();
  });

  it("superblock: checksum error with superblock 0; default open falls back to a backup", async () => {
    const img = await copy();
    await flip(img, 1024 + 0x30, 3); // s_wtime
    const dev = await FileDevice.open(img, { readOnly: true });
    await expect(Ext4Fs.open(dev, { superblock: 0 })).rejects.toMatchObject({
      code: "ECHECKSUM",
      structure: "superblock",
    });
    const fs = await Ext4Fs.open(dev);
    expect(fs.warnings.map((w) => w.code)).toContain("EBACKUPSB");
    expect(fs.superblockOffset).toBe(32768 * BS);
    expect((await fs.readFile("/file")).toString()).toBe("plain file\n");
    const lenient = await Ext4Fs.open(dev, { superblock: 0, lenient: true });
    expect(lenient.warnings.some((w) => w.message.includes("superblock checksum"))).toBe(true);
    await dev.close();
  });

  it("superblock wiped out entirely: the backup is found", async () => {
    const img = await copy();
    const fh = await open(img, "r+");
    await fh.write(Buffer.alloc(1024), 0, 1024, 1024);
    await fh.close();
    const dev = await FileDevice.open(img, { readOnly: true });
    await expect(Ext4Fs.open(dev, { superblock: 0 })).rejects.toMatchObject({ code: "EFORMAT" });
    const fs = await Ext4Fs.open(dev);
    expect(fs.warnings.map((w) => w.code)).toContain("EBACKUPSB");
    expect((await fs.readdir("/big")).length).toBe(600);
    // Explicit backup superblock, like e2fsck -b 32768 -B 4096.
    const b = await Ext4Fs.open(dev, { superblock: 32768, blockSize: 4096 });
    expect(b.superblockOffset).toBe(32768 * 4096);
    expect(sha256(await b.readFile("/frag.bin"))).toBe(sha256(await fs.readFile("/frag.bin")));
    await dev.close();
  });

  it("group descriptor: checksum error naming the group; backup descriptors used by default", async () => {
    const img = await copy();
    await flip(img, BS + 0xc); // group 0 free blocks count
    const dev = await FileDevice.open(img, { readOnly: true });
    await expect(Ext4Fs.open(dev, { superblock: 0 })).rejects.toMatchObject({
      code: "ECHECKSUM",
      structure: "group descriptor 0",
      block: 1,
    });
    const fs = await Ext4Fs.open(dev);
    expect(fs.warnings.map((w) => w.code)).toContain("EBACKUPSB");
    expect(sha256(await fs.readFile("/file"))).toBe(sha256(Buffer.from("plain file\n")));
    await dev.close();
  });

  it("inode: checksum error naming the inode; lenient continues", async () => {
    const img = await copy();
    const im = await debugfs(img, ["imap /file"]);
    const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(im)!;
    const ino = Number(/Inode (\d+)/.exec(im)![1]);
    await flip(img, Number(m[1]) * BS + Number.parseInt(m[2], 16) + 0x10); // i_mtime
    const fs = await openImage(img);
    const err = await fs.lstat("/file").catch((e) => e);
    expect(err).toBeInstanceOf(Ext4ChecksumError);
    expect(err).toMatchObject({ structure: "inode", inode: ino });
    await fs.close();
    const len = await openImage(img, { lenient: true });
    expect((await len.readFile("/file")).toString()).toBe("plain file\n");
    expect(len.warnings.some((w) => w.message.includes(`inode ${ino}`))).toBe(true);
    await len.close();
  });

  it("extent block: checksum error naming the block", async () => {
    const img = await copy();
    const ex = await debugfs(img, ["ex /frag.bin"]);
    // Level-0 lines of a tree with depth >= 1 are index entries; "Physical" is the child node's block.
    const m = /^\s*0\/\s*([1-9])\s+\d+\/\s*\d+\s+\d+\s+-\s+\d+\s+(\d+)/m.exec(ex)!;
    const leaf = Number(m[2]);
    expect(leaf).toBeGreaterThan(0);
    await flip(img, leaf * BS + 12 + 4); // length of the first extent
    const fs = await openImage(img);
    await expect(fs.readFile("/frag.bin")).rejects.toMatchObject({
      code: "ECHECKSUM",
      structure: "extent block",
      block: leaf,
    });
    await fs.close();
  });

  it("directory leaf block: checksum error; lenient lists the entries", async () => {
    const img = await copy();
    const blk = Number((await debugfs(img, ["blocks /small"])).trim().split(/\s+/)[0]);
    await flip(img, blk * BS + 12 + 12 + 8 + 1); // inside the first real name after "." and ".."
    const fs = await openImage(img);
    await expect(fs.readdir("/small")).rejects.toMatchObject({
      code: "ECHECKSUM",
      structure: "directory block",
      block: blk,
    });
    await fs.close();
    const len = await openImage(img, { lenient: true });
    expect((await len.readdir("/small")).length).toBe(5);
    expect(len.warnings.length).toBeGreaterThan(0);
    await len.close();
  });

  it("htree root: checksum error on lookup; lenient falls back to a linear scan", async () => {
    const img = await copy();
    const blk = Number((await debugfs(img, ["blocks /big"])).trim().split(/\s+/)[0]);
    await flip(img, blk * BS + 0x2c, 2); // hash of dx entry 1
    const fs = await openImage(img);
    await expect(fs.lstat("/big/name-17")).rejects.toMatchObject({
      code: "ECHECKSUM",
      structure: "htree node",
      block: blk,
    });
    await fs.close();
    const len = await openImage(img, { lenient: true });
    expect((await len.readFile("/big/name-17")).toString()).toBe("17");
    await len.close();
  });

  it("xattr block: checksum error naming the block", async () => {
    const img = await copy();
    const acl = Number(/File ACL: (\d+)/.exec(await debugfs(img, ["stat /xa"]))![1]);
    expect(acl).toBeGreaterThan(0);
    await flip(img, acl * BS + BS - 10);
    const fs = await openImage(img);
    await expect(fs.getxattr("/xa", "user.big")).rejects.toMatchObject({
      code: "ECHECKSUM",
      structure: "xattr block",
      block: acl,
    });
    await fs.close();
  });

  it("bitmaps: verifyBitmaps reports block and inode bitmap checksum errors", async () => {
    for (const which of ["blockBitmap", "inodeBitmap"] as const) {
      const img = await copy();
      const probe = await openImage(img);
      const at = probe.groups[0][which];
      await probe.close();
      await flip(img, at * BS + 3);
      const fs = await openImage(img);
      await expect(fs.verifyBitmaps()).rejects.toMatchObject({
        code: "ECHECKSUM",
        structure: which === "blockBitmap" ? "block bitmap" : "inode bitmap",
      });
      await fs.close();
    }
  });

  it("journal recovery flag is reported", async () => {
    const img = await copy();
    await debugfs(img, ["feature needs_recovery"], { write: true });
    // By default an empty journal is "replayed" (nothing to apply); the flag stays visible.
    const replayed = await openImage(img);
    expect(replayed.journal).toMatchObject({ needsRecovery: true, replayed: { transactions: 0, blocks: 0 } });
    await replayed.close();
    const fs = await openImage(img, { replayJournal: false });
    expect(fs.journal.needsRecovery).toBe(true);
    expect(fs.journal.superblock?.blockSize).toBe(BS);
    expect(fs.warnings.map((w) => w.code)).toContain("EJOURNAL");
    expect(fs.readOnlyReasons.join()).toMatch(/journal/);
    await fs.close();
  });
});
