/**
 * Directory listings with stats (`lstatEntries`, `lstatEntriesOfInode`): what tree walks use. Every
 * entry's stats are compared with the host files mke2fs -d copied (type, mode, owner, size, links,
 * mtime) and with the path-based lstat; the subdirectories' blocks are read ahead in a few large
 * reads (counted); a subdirectory whose extent points outside the filesystem does not break its
 * parent's listing (the read-ahead skips it) and fails with a typed error when listed itself.
 */
import { lstat, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Ext4FormatError, type Ext4Fs } from "@imgpatch/ext4";
import { describeWithTools, runToolOk, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { mkfs, openImage, pseudoBytes, rng } from "./helpers.js";

const SUBDIRS = 300;

async function makeSource(src: string): Promise<void> {
  const r = rng(7);
  await mkdir(join(src, "d"), { recursive: true });
  for (let i = 0; i < SUBDIRS; i++) {
    const d = join(src, "d", `s${i}`);
    await mkdir(d);
    await writeFile(join(d, "f"), pseudoBytes(Math.floor(r() * 9000), i));
    if (i % 7 === 0) await symlink(`../s${i + 1}/f`, join(d, "l"));
  }
  await mkdir(join(src, "big"));
  for (let i = 0; i < 600; i++) await writeFile(join(src, "big", `entry-with-a-long-name-${i}`), `${i}`);
  await mkdir(join(src, "ünï"));
  await writeFile(join(src, "ünï", "€"), "x");
}

async function walkByEntries(fs: Ext4Fs, byInode: boolean): Promise<Map<string, { ino: number }>> {
  const out = new Map<string, { ino: number }>();
  const stack: Array<{ path: string; ino: number }> = [{ path: "/", ino: 2 }];
  while (stack.length > 0) {
    const cur = stack.pop()!;
    const list = byInode ? await fs.lstatEntriesOfInode(cur.ino) : await fs.lstatEntries(cur.path);
    for (const e of list) {
      const p = `${cur.path === "/" ? "" : cur.path}/${e.name}`;
      expect(e.stats.ino).toBe(e.ino);
      out.set(p, { ino: e.ino });
      const want = await fs.lstat(p);
      expect({ ...e.stats }, p).toEqual({ ...want });
      if (e.stats.isDirectory()) stack.push({ path: p, ino: e.ino });
    }
  }
  return out;
}

for (const blockSize of [4096, 1024]) {
  describeWithTools(["mke2fs", "debugfs"], `lstatEntries (${blockSize}-byte blocks)`, () => {
    let src: string;
    let image: string;
    beforeAll(async () => {
      const dir = await tempDir("ext4-lstat-entries-");
      src = join(dir, "src");
      await makeSource(src);
      image = join(dir, "fs.img");
      await mkfs(image, src, 32, ["-t", "ext4", "-b", String(blockSize), "-N", "2048"]);
    });

    it("gives every entry the stats the host files have, by path and by inode", async () => {
      const fs = await openImage(image);
      try {
        const byPath = await walkByEntries(fs, false);
        const byInode = await walkByEntries(fs, true);
        expect([...byInode.keys()].sort()).toEqual([...byPath.keys()].sort());
        // lost+found is mke2fs's; every other entry is a host file.
        const paths = [...byPath.keys()].filter((p) => !p.startsWith("/lost+found"));
        expect(paths.length).toBe(1 + SUBDIRS + SUBDIRS + Math.ceil(SUBDIRS / 7) + 1 + 600 + 2);
        for (const p of paths) {
          const host = await lstat(join(src, p));
          const s = await fs.lstat(p);
          const got = { mode: s.mode, uid: s.uid, gid: s.gid, nlink: s.nlink, size: s.size };
          const want = { mode: host.mode, uid: 0, gid: 0, nlink: host.nlink, size: host.size };
          if (host.isDirectory()) {
            // Directory sizes are the filesystem's own; link counts match the host's.
            got.size = want.size = 0;
          }
          expect(got, p).toEqual(want);
          expect(Math.floor(s.mtimeMs / 1000), p).toBe(Math.floor(host.mtimeMs / 1000));
        }
      } finally {
        await fs.close();
      }
    });

    it("reads the subdirectories' blocks ahead in a few large reads", async () => {
      const fs = await openImage(image);
      try {
        const subdirs = await fs.lstatEntries("/d");
        expect(subdirs.length).toBe(SUBDIRS);
        const before = fs.counters.reads;
        for (const d of subdirs) await fs.lstatEntriesOfInode(d.ino);
        const reads = fs.counters.reads - before;
        // One read per subdirectory without the read-ahead; their inodes are already cached.
        expect(reads).toBeLessThan(SUBDIRS / 10);
      } finally {
        await fs.close();
      }
    });

    it("skips a damaged subdirectory in the read-ahead and reports it when it is listed", async () => {
      const damaged = `${image}.damaged`;
      await runToolOk("cp", [image, damaged]);
      // i_block word 5 is the first extent's ee_start_lo: far past the end of a 32 MiB filesystem.
      await runToolOk("debugfs", ["-w", "-R", "sif /d/s5 block[5] 0x7fffffff", damaged]);
      const fs = await openImage(damaged);
      try {
        const list = await fs.lstatEntries("/d");
        expect(list.length).toBe(SUBDIRS);
        const s5 = list.find((e) => e.name === "s5")!;
        await expect(fs.lstatEntriesOfInode(s5.ino)).rejects.toBeInstanceOf(Ext4FormatError);
        const s6 = list.find((e) => e.name === "s6")!;
        expect((await fs.lstatEntriesOfInode(s6.ino)).map((e) => e.name)).toEqual(["f"]);
      } finally {
        await fs.close();
      }
    });
  });
}
