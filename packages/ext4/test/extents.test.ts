/**
 * File mapping: deep extent trees (fragmented by punching every other block with debugfs),
 * uninitialised extents (fallocate) reading as zeros, holes, and ext2/3 block maps up to the
 * triple-indirect level; whole reads, ranged streams and debugfs cat agree.
 */
import { mkdir, open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { debugfs, debugfsCat, describeWithTools, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { mkfs, openImage, pseudoBytes, sha256 } from "./helpers.js";

async function streamAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describeWithTools(["mke2fs", "debugfs"], "extent trees and block maps", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir("ext4-extents-");
  });

  it("a file punched into 800 extents (depth-2 tree, 1 KiB blocks), with uninit extents, reads right", async () => {
    const src = join(dir, "src1");
    await mkdir(src);
    const blocks = 1600;
    const original = pseudoBytes(blocks * 1024 - 300, 11);
    await writeFile(join(src, "frag.bin"), original);
    const mixed = pseudoBytes(64 * 1024, 12);
    await writeFile(join(src, "mixed.bin"), mixed);
    const img = join(dir, "frag.img");
    await mkfs(img, src, 32, ["-t", "ext4", "-b", "1024"]);
    const cmds: string[] = [];
    for (let b = 1; b < blocks; b += 2) cmds.push(`punch /frag.bin ${b} ${b}`);
    cmds.push("punch /mixed.bin 10 19", "fallocate /mixed.bin 10 19", "punch /mixed.bin 40 49");
    await debugfs(img, cmds, { write: true });
    const ex = await debugfs(img, ["ex /frag.bin"]);
    const maxLevel = Math.max(...[...ex.matchAll(/^\s*(\d+)\/\s*(\d+)/gm)].map((m) => Number(m[2])));
    expect(maxLevel).toBe(2);

    const expected = Buffer.from(original);
    for (let b = 1; b < blocks; b += 2) expected.fill(0, b * 1024, Math.min((b + 1) * 1024, expected.length));
    const expMixed = Buffer.from(mixed);
    expMixed.fill(0, 10 * 1024, 20 * 1024);
    expMixed.fill(0, 40 * 1024, 50 * 1024);

    const fs = await openImage(img);
    try {
      const data = await fs.readFile("/frag.bin");
      expect(sha256(data)).toBe(sha256(expected));
      expect(sha256(data)).toBe(sha256(await debugfsCat(img, "/frag.bin")));
      // Runs: 800 data extents, none coalesced across the punched holes.
      const inode = await fs.readInode((await fs.lstat("/frag.bin")).ino);
      let runs = 0;
      for await (const r of fs.blockRuns(inode)) {
        expect(r.length).toBe(1);
        runs++;
      }
      expect(runs).toBe(blocks / 2);
      // Random-access mapping agrees with the walk.
      for (const lb of [0, 1, 2, 799, 800, 1598, 1599, 5000]) {
        const m = await fs.mapBlock(inode, lb);
        expect(m.physical === 0).toBe(lb % 2 === 1 || lb >= blocks);
      }
      // Ranged stream, odd chunk size, node-style inclusive end.
      const part = await streamAll(
        fs.createReadStream("/frag.bin", { start: 12345, end: 1_000_000, highWaterMark: 7777 }),
      );
      expect(sha256(part)).toBe(sha256(expected.subarray(12345, 1_000_001)));
      const m = await fs.readFile("/mixed.bin");
      expect(sha256(m)).toBe(sha256(expMixed));
      expect(sha256(m)).toBe(sha256(await debugfsCat(img, "/mixed.bin")));
      const mi = await fs.readInode((await fs.lstat("/mixed.bin")).ino);
      const kinds: string[] = [];
      for await (const r of fs.blockRuns(mi)) kinds.push(`${r.logical}+${r.length}${r.uninit ? "u" : ""}`);
      expect(kinds).toEqual(["0+10", "10+10u", "20+20", "50+14"]);
    } finally {
      await fs.close();
    }
  });

  it("ext2/ext3 block maps: direct, indirect, double and triple indirect, with holes", async () => {
    const src = join(dir, "src2");
    await mkdir(src);
    // 1 KiB blocks: 12 direct, 256 indirect, 65536 double; data at 70 MiB needs the triple level.
    const fh = await open(join(src, "sparse-tind.bin"), "w");
    const pieces: [number, Buffer][] = [
      [0, pseudoBytes(5000, 1)],
      [300 * 1024, pseudoBytes(3000, 2)],
      [40 * 1024 * 1024, pseudoBytes(9000, 3)],
      [70 * 1024 * 1024 + 777, pseudoBytes(20000, 4)],
    ];
    for (const [off, b] of pieces) await fh.write(b, 0, b.length, off);
    await fh.close();
    const dense = pseudoBytes(2 * 1024 * 1024 + 5, 5);
    await writeFile(join(src, "dense.bin"), dense);
    for (const type of ["ext2", "ext3"]) {
      const img = join(dir, `${type}-maps.img`);
      await mkfs(img, src, 16, ["-t", type, "-b", "1024"]);
      const fs = await openImage(img);
      try {
        const size = 70 * 1024 * 1024 + 777 + 20000;
        const st = await fs.stat("/sparse-tind.bin");
        expect(st.size).toBe(size);
        expect(st.flags & 0x80000).toBe(0); // no extents
        expect(st.blocks).toBeLessThan(200); // holes are not allocated
        const data = await fs.readFile("/sparse-tind.bin");
        const expected = Buffer.alloc(size);
        for (const [off, b] of pieces) b.copy(expected, off);
        expect(sha256(data)).toBe(sha256(expected));
        expect(sha256(data)).toBe(sha256(await debugfsCat(img, "/sparse-tind.bin")));
        const tail = await streamAll(
          fs.createReadStream("/sparse-tind.bin", { start: 70 * 1024 * 1024, highWaterMark: 4096 }),
        );
        expect(sha256(tail)).toBe(sha256(expected.subarray(70 * 1024 * 1024)));
        expect(sha256(await fs.readFile("/dense.bin"))).toBe(sha256(dense));
      } finally {
        await fs.close();
      }
    }
  });
});
