/**
 * Encoders and checksum setters (round trips against real images), timestamps past 2038 and
 * before 1970, feature refusal, path semantics (symlink loops, `..` at the root), partition
 * offsets, huge sizes, ACL and capability decoding, inline data.
 */
import { mkdir, open, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FileDevice, MemoryDevice, RangeDevice } from "@imgpatch/disk";
import {
  ACL_TAG,
  crc16,
  crc32c,
  DIRENT_TAIL_SIZE,
  decodeCapability,
  decodePosixAcl,
  decodeTime,
  dxChecksum,
  EXTENT_MAGIC,
  Ext4Fs,
  Ext4UnsupportedError,
  encodeCapability,
  encodeExtent,
  encodeExtentHeader,
  encodeGroupDesc,
  encodeInode,
  encodePosixAclDisk,
  encodeSuperblock,
  encodeTime,
  extentBlockChecksum,
  gdtBlockLocation,
  INODE_FLAGS,
  inodeChecksumSeed,
  parseDxEntries,
  parseExtent,
  parseExtentHeader,
  parseGroupDesc,
  parseSuperblock,
  parseXattrEntries,
  setDirentTail,
  setDxChecksum,
  setExtentBlockChecksum,
  setGroupDescChecksum,
  setInodeChecksum,
  setSuperblockChecksum,
  setXattrBlockChecksum,
  storedDxChecksum,
  u32,
  verifyInodeChecksum,
  xattrBlockHash,
  xattrEntryHash,
} from "@imgpatch/ext4";
import { debugfs, debugfsStat, describeWithTools, runToolOk, tempDir } from "@imgpatch/testkit";
import { beforeAll, describe, expect, it } from "vitest";
import { mkfs, openImage, pseudoBytes } from "./helpers.js";

describe("pure codecs", () => {
  it("crc32c and crc16 match the standard check values", () => {
    const v = new TextEncoder().encode("123456789");
    expect((crc32c(0xffffffff, v) ^ 0xffffffff) >>> 0).toBe(0xe3069283);
    expect(crc16(0, v)).toBe(0xbb3d); // CRC-16/ARC
    expect(crc16(0xffff, v)).toBe(0x4b37); // CRC-16/MODBUS
    // Slice-by-8 agrees with byte-at-a-time on every alignment.
    const data = pseudoBytes(1000, 1);
    for (let s = 0; s < 9; s++) {
      let c = 0xffffffff;
      for (let i = s; i < 1000; i++) c = crc32c(c, data, i, i + 1);
      expect(crc32c(0xffffffff, data, s)).toBe(c);
    }
  });

  it("timestamps: nanoseconds and epoch bits round-trip from 1901 to 2446", () => {
    for (const sec of [
      -(2 ** 31),
      -1,
      0,
      1,
      2 ** 31 - 1,
      2 ** 31,
      2 ** 32,
      4102444800,
      2 ** 34 - 2 ** 31 - 1,
    ]) {
      for (const nsec of [0, 1, 999_999_999]) {
        const e = encodeTime({ sec, nsec });
        expect(decodeTime(e.raw, e.extra)).toEqual({ sec, nsec });
      }
    }
    expect(decodeTime(0xffffffff, undefined)).toEqual({ sec: -1, nsec: 0 });
  });

  it("POSIX ACLs (disk and xattr forms) and capabilities decode and encode", () => {
    const entries = [
      { tag: ACL_TAG.userObj, perm: 6 },
      { tag: ACL_TAG.user, perm: 4, id: 1234 },
      { tag: ACL_TAG.groupObj, perm: 4 },
      { tag: ACL_TAG.mask, perm: 4 },
      { tag: ACL_TAG.other, perm: 0 },
    ];
    const disk = encodePosixAclDisk(entries);
    expect(disk.length).toBe(4 + 8 + 4 * 4);
    expect(decodePosixAcl(disk)).toEqual(entries);
    const x = Buffer.from(
      "0200000001000600ffffffff02000400d204000004000400ffffffff10000400ffffffff20000000ffffffff",
      "hex",
    );
    expect(decodePosixAcl(x)).toEqual(entries);
    expect(() => decodePosixAcl(new Uint8Array([9, 0, 0, 0]))).toThrow(RangeError);
    const cap = decodeCapability(Buffer.from("0100000200300000000000000000000000000000", "hex"));
    expect(cap).toEqual({ version: 2, effective: true, permitted: 0x3000n, inheritable: 0n });
    expect(Buffer.from(encodeCapability(cap)).toString("hex")).toBe(
      "0100000200300000000000000000000000000000",
    );
    expect(() => decodeCapability(new Uint8Array(7))).toThrow(RangeError);
  });
});

describeWithTools(["mke2fs", "debugfs", "e2fsck", "setfattr"], "against real images", () => {
  let dir: string;
  let img: string;
  beforeAll(async () => {
    dir = await tempDir("ext4-misc-");
    const src = join(dir, "src");
    await mkdir(join(src, "d/e/f"), { recursive: true });
    for (let i = 0; i < 300; i++) await writeFile(join(src, "d", `n${i}`), `${i}`);
    await writeFile(join(src, "frag.bin"), pseudoBytes(400 * 1024, 3));
    await writeFile(join(src, "file"), "content\n");
    await writeFile(join(src, "acl"), "acl\n");
    await runToolOk("setfattr", [
      "-n",
      "system.posix_acl_access",
      "-v",
      "0x0200000001000600ffffffff02000400d204000004000400ffffffff10000400ffffffff20000000ffffffff",
      join(src, "acl"),
    ]);
    await runToolOk("setfattr", [
      "-n",
      "user.big",
      "-v",
      `0x${pseudoBytes(900, 4).toString("hex")}`,
      join(src, "acl"),
    ]);
    // A chain of 40 symlinks resolves; 41 is one too many.
    await mkdir(join(src, "chain"));
    await writeFile(join(src, "chain/target"), "end of chain\n");
    await symlink("target", join(src, "chain/l0"));
    for (let i = 1; i <= 40; i++) await symlink(`l${i - 1}`, join(src, `chain/l${i}`));
    await symlink("loop-b", join(src, "loop-a"));
    await symlink("loop-a", join(src, "loop-b"));
    await symlink("../../../../../../..", join(src, "d/e/up"));
    await symlink("/d/e/f/../../n5", join(src, "abs-dotdot"));
    img = join(dir, "misc.img");
    await mkfs(img, src, 64, ["-t", "ext4", "-b", "1024"]);
    const cmds: string[] = [];
    for (let b = 1; b < 400; b += 2) cmds.push(`punch /frag.bin ${b} ${b}`);
    await debugfs(img, cmds, { write: true });
    await runToolOk("e2fsck", ["-fyD", img]).catch(() => undefined);
    // After e2fsck (which would pull timestamps beyond 2242 back into range).
    await debugfs(
      img,
      [
        "sif /file mtime @4102444800",
        "sif /file mtime_extra 0x0000ffff",
        "sif /file atime @-2000000000",
        "sif /file crtime 20400101120000",
        "sif /file ctime_extra 0x00000ff1",
      ],
      { write: true },
    );
  });

  it("timestamps with epoch bits and nanoseconds equal debugfs", async () => {
    const fs = await openImage(img);
    const s = await fs.lstat("/file");
    const d = await debugfsStat(img, "/file");
    expect(s.atimeSpec).toEqual({ sec: -2000000000, nsec: 0 });
    expect(s.crtimeSpec).toEqual({ sec: Date.UTC(2040, 0, 1, 12) / 1000, nsec: 0 });
    expect(s.mtimeSpec).toEqual({ sec: (0xf4865700 | 0) + 3 * 2 ** 32, nsec: 0xffff >>> 2 });
    expect(s.ctimeSpec.nsec).toBe(0xff1 >>> 2);
    expect({ a: s.atimeSpec, m: s.mtimeSpec, c: s.ctimeSpec, cr: s.crtimeSpec }).toEqual({
      a: d.atime,
      m: d.mtime,
      c: d.ctime,
      cr: d.crtime,
    });
    expect(s.mtimeNs).toBe(BigInt(s.mtimeSpec.sec) * 1_000_000_000n + BigInt(s.mtimeSpec.nsec));
    await fs.close();
  });

  it("encoders reproduce the on-disk bytes and checksum setters reproduce stored checksums", async () => {
    const bytes = new Uint8Array(await readFile(img));
    const fs = await Ext4Fs.open(new MemoryDevice(bytes.slice(), { readOnly: true }));
    const bs = fs.blockSize;
    // Superblock.
    const sbRaw = bytes.slice(1024, 2048);
    const sb = parseSuperblock(sbRaw);
    expect(encodeSuperblock(sb)).toEqual(sbRaw);
    const sbZero = sbRaw.slice();
    sbZero.fill(0, 0x3fc);
    setSuperblockChecksum(sbZero);
    expect(sbZero).toEqual(sbRaw);
    // Group descriptors (crc32c-based checksums).
    for (let g = 0; g < sb.groupCount; g++) {
      const per = bs / sb.descSize;
      const blk = gdtBlockLocation(sb, Math.floor(g / per));
      const off = blk * bs + (g % per) * sb.descSize;
      const raw = bytes.slice(off, off + sb.descSize);
      const gd = parseGroupDesc(raw, 0, sb.descSize);
      const enc = encodeGroupDesc({ ...gd, checksum: 0 }, sb.descSize);
      setGroupDescChecksum(sb, g, enc, fs.seed);
      expect(enc).toEqual(raw);
    }
    // Every used inode.
    let inodes = 0;
    for await (const e of fs.walk("/")) {
      const inode = await fs.readInode(e.ino);
      const enc = encodeInode(inode);
      expect(enc).toEqual(inode.raw);
      const z = enc.slice();
      z[0x7c] = 0;
      z[0x82] = 0;
      setInodeChecksum(fs.seed, e.ino, z);
      expect(z).toEqual(inode.raw);
      expect(verifyInodeChecksum(fs.seed, e.ino, z)).toBe(true);
      inodes++;
      const seed = inodeChecksumSeed(fs.seed, inode.ino, inode.generation);
      // Extent nodes: re-encode entries and checksum.
      if (inode.flags & INODE_FLAGS.EXTENTS && parseExtentHeader(inode.iBlock).depth > 0) {
        const h = parseExtentHeader(inode.iBlock);
        for (let i = 0; i < h.entries; i++) {
          const leaf = u32(inode.iBlock, 12 + i * 12 + 4);
          const node = await fs.readBlock(leaf);
          const nh = parseExtentHeader(node);
          expect(nh.magic).toBe(EXTENT_MAGIC);
          const copy = node.slice();
          encodeExtentHeader(copy, nh);
          if (nh.depth === 0)
            for (let k = 0; k < nh.entries; k++) encodeExtent(copy, k, parseExtent(node, k));
          copy.fill(0, copy.length - 4);
          setExtentBlockChecksum(seed, copy);
          expect(copy).toEqual(node);
          expect(extentBlockChecksum(seed, node, nh)).toBe(u32(node, 12 + nh.max * 12));
        }
      }
      // Directory blocks: leaf tails and dx nodes.
      if (e.stats.isDirectory() && !(inode.flags & INODE_FLAGS.INLINE_DATA)) {
        for await (const r of fs.blockRuns(inode)) {
          for (let k = 0; k < r.length; k++) {
            const block = await fs.readBlock(r.physical + k);
            const copy = block.slice();
            if (u32(block, bs - 12) === 0 && block[bs - 5] === 0xde) {
              copy.fill(0, bs - DIRENT_TAIL_SIZE);
              setDirentTail(seed, copy);
            } else {
              const off = r.logical + k === 0 ? 0x20 : 8;
              const node = parseDxEntries(block, off);
              expect(storedDxChecksum(block, node)).toBe(dxChecksum(seed, block, node));
              copy.fill(0, off + node.limit * 8, off + node.limit * 8 + 8);
              setDxChecksum(seed, copy, node);
            }
            expect(copy).toEqual(block);
          }
        }
      }
      if (inode.fileAcl) {
        const block = await fs.readBlock(inode.fileAcl);
        // Entry hashes and the block hash are what mke2fs stored.
        const { entries } = parseXattrEntries(block, 32, block.length, 0);
        for (const x of entries) {
          const value = block.subarray(x.valueOffset, x.valueOffset + x.valueSize);
          expect(xattrEntryHash(x.nameSuffix, value)).toBe(x.hash);
        }
        // e2fsprogs leaves h_hash 0 (only the kernel's block sharing uses it); the kernel stores the combined hash.
        expect([0, xattrBlockHash(entries.map((x) => x.hash))]).toContain(u32(block, 12));
        const copy = block.slice();
        copy.fill(0, 16, 20);
        setXattrBlockChecksum(fs.seed, inode.fileAcl, copy);
        expect(copy).toEqual(block);
      }
    }
    expect(inodes).toBeGreaterThan(300);
    await fs.close();
  });

  it("group descriptor crc16 (gdt_csum) setter reproduces mke2fs", async () => {
    const p = join(dir, "crc16.img");
    await mkfs(p, undefined, 16, ["-t", "ext4", "-b", "1024", "-O", "^metadata_csum,uninit_bg"]);
    const bytes = new Uint8Array(await readFile(p));
    const sb = parseSuperblock(bytes.slice(1024, 2048));
    expect(sb.groupCount).toBeGreaterThan(1);
    for (let g = 0; g < sb.groupCount; g++) {
      const off = 2 * 1024 + g * sb.descSize;
      const raw = bytes.slice(off, off + sb.descSize);
      const enc = encodeGroupDesc({ ...parseGroupDesc(raw, 0, sb.descSize), checksum: 0 }, sb.descSize);
      setGroupDescChecksum(sb, g, enc);
      expect(enc).toEqual(raw);
    }
  });

  it("paths: symlink chains up to 40, loops, `..` never above /, errors shaped like node:fs", async () => {
    const fs = await openImage(img);
    expect((await fs.readFile("/chain/l39")).toString()).toBe("end of chain\n");
    expect(await fs.realpath("/chain/l39")).toBe("/chain/target");
    await expect(fs.readFile("/chain/l40")).rejects.toMatchObject({ code: "ELOOP" });
    await expect(fs.stat("/loop-a")).rejects.toMatchObject({ code: "ELOOP" });
    expect((await fs.lstat("/loop-a")).isSymbolicLink()).toBe(true);
    expect(await fs.realpath("/d/e/up")).toBe("/");
    expect(await fs.realpath("/../../d/./e/../e/f/..")).toBe("/d/e");
    expect(await fs.realpath("/abs-dotdot")).toBe("/d/n5");
    expect((await fs.readFile("/abs-dotdot")).toString()).toBe("5");
    expect(await fs.readdir("/d/e/up/d/e")).toEqual(expect.arrayContaining(["f", "up"]));
    await expect(fs.readFile("/nope")).rejects.toMatchObject({ code: "ENOENT" });
    await expect(fs.readFile("/file/x")).rejects.toMatchObject({ code: "ENOTDIR" });
    await expect(fs.readFile("/d")).rejects.toMatchObject({ code: "EISDIR" });
    await expect(fs.readlink("/file")).rejects.toMatchObject({ code: "EINVAL" });
    await expect(fs.getxattr("/file", "user.nope")).rejects.toMatchObject({ code: "ENODATA" });
    await expect(fs.lstat(`/${"x".repeat(256)}`)).rejects.toMatchObject({ code: "ENAMETOOLONG" });
    expect(await fs.exists("/d/n7")).toBe(true);
    expect(await fs.exists("/d/n7/x")).toBe(false);
    // ACL: getxattr gives the xattr API form, raw gives the ext4 disk form.
    const acl = await fs.getxattr("/acl", "system.posix_acl_access");
    expect(acl.toString("hex")).toBe(
      "0200000001000600ffffffff02000400d204000004000400ffffffff10000400ffffffff20000000ffffffff",
    );
    const raw = await fs.getxattr("/acl", "system.posix_acl_access", { raw: true });
    expect(u32(raw, 0)).toBe(1);
    expect(decodePosixAcl(raw)).toEqual(decodePosixAcl(acl));
    // Walk: every entry once, depth-first.
    const paths: string[] = [];
    for await (const e of fs.walk("/d")) paths.push(e.path);
    expect(paths[0]).toBe("/d");
    expect(paths.length).toBe(1 + 300 + 3);
    await fs.close();
  });

  it("a filesystem inside a partition (RangeDevice at an offset) reads the same", async () => {
    const disk = join(dir, "disk.img");
    const raw = await readFile(img);
    const offset = 2048 * 512;
    const fh = await open(disk, "w");
    await fh.write(raw, 0, raw.length, offset);
    await fh.truncate(offset + raw.length + 1024 * 1024);
    await fh.close();
    const dev = await FileDevice.open(disk, { readOnly: true });
    const fs = await Ext4Fs.open(new RangeDevice(dev, offset, raw.length));
    const direct = await openImage(img);
    for await (const e of direct.walk("/")) {
      const s = await fs.lstat(e.path);
      expect(s.ino).toBe(e.ino);
      if (e.stats.isFile())
        expect((await fs.readFile(e.path)).equals(await direct.readFile(e.path))).toBe(true);
    }
    await direct.close();
    await dev.close();
  });

  it("unknown INCOMPAT refuses to open; unknown RO_COMPAT opens read-only; encrypt/compress refuse clearly", async () => {
    const bytes = new Uint8Array(await readFile(img));
    const patch = (mask: number, field: number) => {
      const b = bytes.slice();
      const sb = b.subarray(1024, 2048);
      sb[field] |= mask & 0xff;
      sb[field + 1] |= (mask >>> 8) & 0xff;
      sb[field + 2] |= (mask >>> 16) & 0xff;
      sb[field + 3] |= (mask >>> 24) & 0xff;
      setSuperblockChecksum(sb);
      return new MemoryDevice(b, { readOnly: true, name: "patched" });
    };
    await expect(Ext4Fs.open(patch(0x100000, 0x60))).rejects.toBeInstanceOf(Ext4UnsupportedError);
    await expect(Ext4Fs.open(patch(0x1, 0x60))).rejects.toMatchObject({ feature: "compression" });
    const ro = await Ext4Fs.open(patch(0x40000000, 0x64));
    expect(ro.readOnlyReasons.join()).toMatch(/unknown ro_compat/);
    expect((await ro.readFile("/file")).toString()).toBe("content\n");
    // Encrypted inode.
    const enc = join(dir, "enc.img");
    await (await import("node:fs/promises")).copyFile(img, enc);
    await debugfs(enc, ["sif /file flags 0x80800"], { write: true });
    const fs = await openImage(enc);
    await expect(fs.readFile("/file")).rejects.toMatchObject({ feature: "encrypt" });
    await fs.close();
  });

  it("huge sizes are refused for readFile (typed), streamed lazily", async () => {
    const big = join(dir, "huge.img");
    await (await import("node:fs/promises")).copyFile(img, big);
    await debugfs(big, ["sif /file size 0x10000000000"], { write: true });
    const fs = await openImage(big);
    expect((await fs.stat("/file")).size).toBe(2 ** 40);
    await expect(fs.readFile("/file")).rejects.toMatchObject({ code: "EFBIG" });
    const s = fs.createReadStream("/file", { start: 0, end: 3 * 1024 * 1024 - 1 });
    let n = 0;
    for await (const c of s) n += (c as Buffer).length;
    expect(n).toBe(3 * 1024 * 1024);
    await fs.close();
  });
});

describeWithTools(["mke2fs"], "inline_data", () => {
  it("inline files, directories and symlinks are read from the inode", async () => {
    const dir = await tempDir("ext4-inline-");
    const src = join(dir, "src");
    await mkdir(join(src, "small-dir"), { recursive: true });
    await writeFile(join(src, "small-dir/a"), "A");
    await writeFile(join(src, "tiny"), "tiny file");
    await writeFile(join(src, "x100"), "x".repeat(100)); // 60 bytes in i_block + 40 in system.data
    await symlink("t".repeat(80), join(src, "link80"));
    const img = join(dir, "inline.img");
    await mkfs(img, src, 8, ["-t", "ext4", "-O", "inline_data"]);
    const fs = await openImage(img);
    for (const p of ["/small-dir", "/tiny", "/x100"])
      expect((await fs.lstat(p)).flags & INODE_FLAGS.INLINE_DATA).toBeTruthy();
    expect(await fs.readdir("/small-dir")).toEqual(["a"]);
    expect((await fs.readFile("/small-dir/a")).toString()).toBe("A");
    expect((await fs.readFile("/tiny")).toString()).toBe("tiny file");
    expect((await fs.readFile("/x100")).toString()).toBe("x".repeat(100));
    expect(await fs.readlink("/link80")).toBe("t".repeat(80));
    expect(await fs.listxattr("/x100")).toEqual([]); // system.data is not a user-visible attribute
    await fs.close();
  });
});

describeWithTools(["mke2fs", "debugfs"], "casefold", () => {
  it("exact names are found in a casefolded directory; other spellings are refused clearly", async () => {
    const dir = await tempDir("ext4-casefold-");
    const src = join(dir, "src");
    await mkdir(join(src, "cf"), { recursive: true });
    await writeFile(join(src, "cf/Readme.TXT"), "hello");
    const img = join(dir, "cf.img");
    await mkfs(img, src, 8, ["-t", "ext4", "-O", "casefold"]);
    await debugfs(img, ["sif /cf flags 0x40080000"], { write: true });
    const fs = await openImage(img);
    expect(fs.features().incompat).toContain("casefold");
    expect((await fs.readFile("/cf/Readme.TXT")).toString()).toBe("hello");
    await expect(fs.readFile("/cf/readme.txt")).rejects.toMatchObject({ feature: "casefold" });
    await expect(fs.readFile("/cf/other")).rejects.toMatchObject({ code: "ENOENT" });
    await fs.close();
  });
});

describeWithTools(["mke2fs"], "cache invalidation", () => {
  it("invalidate() makes rewritten inodes and blocks visible", async () => {
    const dir = await tempDir("ext4-inval-");
    const src = join(dir, "src");
    await mkdir(src);
    await writeFile(join(src, "f"), "before");
    const img = join(dir, "i.img");
    await mkfs(img, src, 8, ["-t", "ext4", "-O", "^metadata_csum"]);
    const bytes = new Uint8Array(await readFile(img));
    const dev = new MemoryDevice(bytes);
    const fs = await Ext4Fs.open(dev);
    const st = await fs.lstat("/f");
    expect((await fs.readFile("/f")).toString()).toBe("before");
    // A first, isolated small read is served alone; a read near it goes through the window cache.
    expect((await fs.readFile("/f")).toString()).toBe("before");
    const inode = await fs.readInode(st.ino);
    const m = await fs.mapBlock(inode, 0);
    bytes.set(new TextEncoder().encode("AFTER!"), m.physical * fs.blockSize);
    expect((await fs.readFile("/f")).toString()).toBe("before"); // cached window
    fs.invalidate({ block: m.physical });
    expect((await fs.readFile("/f")).toString()).toBe("AFTER!");
    // Rewrite the inode's uid through the encoder, then invalidate it.
    const enc = encodeInode({ ...inode, uid: 4242 });
    const { inodeTable } = fs.groups[Math.floor((st.ino - 1) / fs.sb.inodesPerGroup)];
    const off = inodeTable * fs.blockSize + ((st.ino - 1) % fs.sb.inodesPerGroup) * fs.sb.inodeSize;
    bytes.set(enc, off);
    expect((await fs.lstat("/f")).uid).toBe(0);
    fs.invalidate({ inode: st.ino });
    expect((await fs.lstat("/f")).uid).toBe(4242);
  });
});

describeWithTools(["mke2fs", "debugfs"], "ea_inode", () => {
  it("an xattr value stored in its own inode (ea_inode) is read back", async () => {
    const dir = await tempDir("ext4-eainode-");
    const img = join(dir, "ea.img");
    await mkfs(img, undefined, 8, ["-t", "ext4", "-O", "ea_inode"]);
    const value = pseudoBytes(1024, 77);
    const vf = join(dir, "value");
    await writeFile(vf, value);
    const hf = join(dir, "host");
    await writeFile(hf, "x");
    await debugfs(img, [`write ${hf} f`, `ea_set -f ${vf} f user.big`, "ea_set f user.small hello"], {
      write: true,
    });
    const fs = await openImage(img);
    expect((await fs.listxattr("/f")).sort()).toEqual(["user.big", "user.small"]);
    expect((await fs.getxattr("/f", "user.big")).equals(value)).toBe(true);
    const inode = await fs.readInode((await fs.lstat("/f")).ino);
    const start = 128 + inode.extraIsize + 4;
    const { entries } = parseXattrEntries(inode.raw, start, inode.raw.length, start);
    expect(entries.find((e) => e.name === "user.big")?.valueInum).toBeGreaterThan(0);
    await fs.close();
  });
});
