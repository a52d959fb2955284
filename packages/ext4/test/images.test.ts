/**
 * Oracle tests: images made by mke2fs -d from a generated tree, one per feature set, read back
 * completely and compared with the host tree; a sample cross-checked against debugfs.
 */
import { join } from "node:path";
import { debugfsCat, debugfsStat, describeWithTools, dumpe2fs, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { compareWithHost, type HostEntry, makeTree, mkfs, openImage, scanHost, sha256 } from "./helpers.js";

const FEATURE_SETS: {
  name: string;
  args: string[];
  size: number;
  expect: {
    incompat?: string[];
    roCompat?: string[];
    compat?: string[];
    notIncompat?: string[];
    notRo?: string[];
  };
}[] = [
  { name: "ext2 1k", args: ["-t", "ext2", "-b", "1024"], size: 24, expect: { notIncompat: ["extent"] } },
  {
    name: "ext2 4k",
    args: ["-t", "ext2", "-b", "4096", "-I", "128"],
    size: 24,
    expect: { notIncompat: ["extent"] },
  },
  {
    name: "ext3",
    args: ["-t", "ext3", "-b", "4096"],
    size: 32,
    expect: { compat: ["has_journal"], notIncompat: ["extent"] },
  },
  {
    name: "ext4 default (metadata_csum, 64bit)",
    args: ["-t", "ext4"],
    size: 32,
    expect: { incompat: ["64bit"], roCompat: ["metadata_csum"] },
  },
  {
    name: "ext4 1k blocks",
    args: ["-t", "ext4", "-b", "1024"],
    size: 32,
    expect: { roCompat: ["metadata_csum"] },
  },
  {
    name: "ext4 no csum",
    args: ["-t", "ext4", "-O", "^metadata_csum"],
    size: 32,
    expect: { notRo: ["metadata_csum", "gdt_csum"] },
  },
  {
    name: "ext4 gdt_csum (crc16)",
    args: ["-t", "ext4", "-O", "^metadata_csum,uninit_bg"],
    size: 32,
    expect: { roCompat: ["gdt_csum"] },
  },
  {
    name: "ext4 32-bit descriptors",
    args: ["-t", "ext4", "-O", "^64bit"],
    size: 32,
    expect: { notIncompat: ["64bit"] },
  },
  {
    name: "ext4 inline_data",
    args: ["-t", "ext4", "-O", "inline_data"],
    size: 32,
    expect: { incompat: ["inline_data"] },
  },
  {
    name: "ext4 meta_bg",
    args: ["-t", "ext4", "-b", "1024", "-O", "meta_bg,^resize_inode"],
    size: 40,
    expect: { incompat: ["meta_bg"] },
  },
  {
    name: "ext4 sparse_super2",
    args: ["-t", "ext4", "-b", "1024", "-O", "sparse_super2"],
    size: 40,
    expect: { compat: ["sparse_super2"] },
  },
  {
    name: "ext4 bigalloc",
    args: ["-t", "ext4", "-O", "bigalloc", "-C", "16384"],
    size: 48,
    expect: { roCompat: ["bigalloc"] },
  },
  { name: "ext4 1 KiB inodes", args: ["-t", "ext4", "-I", "1024"], size: 40, expect: {} },
  { name: "ext4 128-byte inodes", args: ["-t", "ext4", "-I", "128"], size: 32, expect: {} },
  {
    name: "ext4 large_dir + tea hash",
    args: ["-t", "ext4", "-O", "large_dir", "-E", "hash_alg=tea"],
    size: 32,
    expect: { incompat: ["large_dir"] },
  },
  { name: "ext4 legacy hash", args: ["-t", "ext4", "-E", "hash_alg=legacy"], size: 32, expect: {} },
];

describeWithTools(
  ["mke2fs", "debugfs", "setfattr", "getfattr", "mknod", "mkfifo"],
  "mke2fs -d images read back completely",
  () => {
    let dir: string;
    let src: string;
    let host: HostEntry[];
    beforeAll(async () => {
      dir = await tempDir("ext4-images-");
      src = join(dir, "src");
      await (await import("node:fs/promises")).mkdir(src);
      await makeTree(src, { bigDirEntries: 400 });
      host = await scanHost(src);
    });

    for (const fsCase of FEATURE_SETS) {
      it(`${fsCase.name}: whole tree equals the source; sample equals debugfs`, async () => {
        const img = join(dir, `${fsCase.name.replace(/[^a-z0-9]+/gi, "_")}.img`);
        await mkfs(img, src, fsCase.size, fsCase.args);
        const fs = await openImage(img);
        try {
          const f = fs.features();
          for (const x of fsCase.expect.incompat ?? []) expect(f.incompat).toContain(x);
          for (const x of fsCase.expect.roCompat ?? []) expect(f.roCompat).toContain(x);
          for (const x of fsCase.expect.compat ?? []) expect(f.compat).toContain(x);
          for (const x of fsCase.expect.notIncompat ?? []) expect(f.incompat).not.toContain(x);
          for (const x of fsCase.expect.notRo ?? []) expect(f.roCompat).not.toContain(x);
          expect(fs.warnings).toEqual([]);
          // mke2fs 1.47 -d with inline_data drops a sparse file's trailing hole (debugfs agrees
          // with us on the result; the debugfs sample below checks it).
          const noContent = new Set(fsCase.args.includes("inline_data") ? ["/sparse.bin"] : []);
          const checked = await compareWithHost(fs, host, { noContent });
          expect(checked).toBeGreaterThan(400);
          await fs.verifyBitmaps();
          // Geometry and identity agree with dumpe2fs.
          const d2 = await dumpe2fs(img);
          const sf = fs.statfs();
          expect({
            blocks: sf.blocks,
            free: sf.freeBlocks,
            inodes: sf.inodes,
            freeInodes: sf.freeInodes,
            uuid: sf.uuid,
            bs: sf.blockSize,
          }).toEqual({
            blocks: Number(d2["Block count"]),
            free: Number(d2["Free blocks"]),
            inodes: Number(d2["Inode count"]),
            freeInodes: Number(d2["Free inodes"]),
            uuid: d2["Filesystem UUID"],
            bs: Number(d2["Block size"]),
          });
          // Oracle: debugfs agrees on inode fields and contents for a sample.
          const sample = [
            "/",
            "/small/s4097",
            "/small/text.txt",
            "/large.bin",
            "/sparse.bin",
            "/links/long",
            "/links/len59",
            "/links/len60",
            "/owners/high",
            // (not /owners/huge: debugfs prints uids >= 2^31 as negative numbers)
            "/modes/sticky",
            "/xattrs",
            "/big",
            "/deep/a/b/c/d/e/f/leaf.txt",
            "/chardev",
          ];
          for (const p of sample) {
            const d = await debugfsStat(img, p);
            const s = await fs.lstat(p);
            expect({
              p,
              ino: s.ino,
              mode: s.mode,
              uid: s.uid,
              gid: s.gid,
              size: s.size,
              links: s.nlink,
              flags: s.flags,
              gen: s.generation,
            }).toEqual({
              p,
              ino: d.inode,
              mode: d.mode,
              uid: d.uid,
              gid: d.gid,
              size: d.size,
              links: d.links,
              flags: d.flags,
              gen: d.generation,
            });
            expect({
              p,
              atime: s.atimeSpec,
              mtime: s.mtimeSpec,
              ctime: s.ctimeSpec,
              crtime: s.crtimeSpec,
            }).toEqual({
              p,
              atime: d.atime,
              mtime: d.mtime,
              ctime: d.ctime,
              crtime: d.crtime,
            });
            if (s.isFile()) expect(sha256(await fs.readFile(p))).toBe(sha256(await debugfsCat(img, p)));
            if (s.isSymbolicLink()) expect(await fs.readlink(p)).toBe(d.linkTarget);
          }
        } finally {
          await fs.close();
        }
      });
    }
  },
);
