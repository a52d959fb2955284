/**
 * writeAt (pwrite into an existing file) against the real tools: content read back by debugfs
 * equals a byte model, e2fsck -fn is clean, holes stay unallocated, unwritten extents made by
 * debugfs `fallocate` are split around the written range, inline files stay inline while they fit.
 */
import { readFile } from "node:fs/promises";
import { Ext4EditError, Ext4NoSpaceError, parseSuperblock } from "@imgpatch/ext4";
import {
  debugfs,
  debugfsBlocks,
  debugfsCat,
  debugfsStat,
  describeWithTools,
  tempDir,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { expectClean, FEATURE_SETS, makeImage, openEditor } from "./editor-helpers.js";

/** A byte model of a file: pwrite semantics. */
function pwrite(model: Uint8Array, offset: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.max(model.length, offset + data.length));
  out.set(model);
  out.set(data, offset);
  return out;
}

const fill = (n: number, seed: number) => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff || 1;
  return b;
};

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "ext4 editor: writeAt", () => {
  for (const fsName of ["ext4-csum", "ext4-4k", "ext3", "ext2"] as const) {
    it(`${fsName}: overwrite, extend, write past the end and into holes`, async () => {
      const dir = await tempDir("edw-");
      const path = await makeImage(dir, "w", FEATURE_SETS[fsName], "16M");
      const ed = await openEditor(path);
      const bs = (await ed.stat("/")).blksize;
      let model: Uint8Array = fill(3 * bs + 100, 1);
      await ed.writeFile("/f", model);
      const steps: [number, number][] = [
        [10, 20], // inside the first block
        [bs - 5, 10], // across a block boundary
        [2 * bs, bs], // one whole block
        [3 * bs + 50, 200], // past the end, within and after the last partial block
        [10 * bs + 7, 3], // far past the end: a hole in between
        [6 * bs + 1, 2 * bs], // into the hole
        [0, 0], // nothing
      ];
      for (const [off, n] of steps) {
        const data = fill(n, off);
        await ed.writeAt("/f", off, data);
        model = pwrite(model, off, data);
        expect(Buffer.compare(await ed.readFile("/f"), Buffer.from(model)), `after ${off}+${n}`).toBe(0);
      }
      // A sparse file written at a large offset gets one block.
      await ed.writeFile("/sparse", "");
      await ed.writeAt("/sparse", 5_000_000, "tail");
      await expect(ed.writeAt("/missing", 0, "x")).rejects.toBeInstanceOf(Ext4EditError);
      await expect(ed.writeAt("/", 0, "x")).rejects.toMatchObject({ code: "EISDIR" });
      await expect(ed.writeAt("/f", -1, "x")).rejects.toMatchObject({ code: "EINVAL" });
      await ed.close();
      await expectClean(path);
      const got = await debugfsCat(path, "/f");
      expect(got.length).toBe(model.length);
      expect(Buffer.compare(got, Buffer.from(model))).toBe(0);
      // Blocks 4 and 5 and 8 and 9 were never written: holes (the model has zeros there).
      const fileBlocks = (await debugfsBlocks(path, "/f")).length;
      const dataBlocks = [0, 1, 2, 3, 6, 7, 8, 10].length;
      expect(fileBlocks).toBeGreaterThanOrEqual(dataBlocks);
      expect(fileBlocks).toBeLessThanOrEqual(dataBlocks + 4); // + block-map indirect blocks
      const sp = await debugfsStat(path, "/sparse");
      expect(sp.size).toBe(5_000_004);
      expect((await debugfsCat(path, "/sparse")).subarray(5_000_000).toString()).toBe("tail");
      const spBlocks = (await debugfsBlocks(path, "/sparse")).length;
      expect(spBlocks).toBeLessThanOrEqual(fsName === "ext4-csum" || fsName === "ext4-4k" ? 1 : 3);
    });
  }

  it("unwritten extents (debugfs fallocate) are split around the written range", async () => {
    const dir = await tempDir("edw-");
    const path = await makeImage(dir, "u", FEATURE_SETS["ext4-4k"], "16M");
    // A 40-block file of unwritten extents, size 40 blocks, made by debugfs itself.
    await debugfs(path, ["write /dev/null u", "fallocate /u 0 39", "sif /u size 163840"], { write: true });
    await expectClean(path);
    const before = (await debugfs(path, ["ex /u"])).toString();
    expect(before).toMatch(/Uninit/);
    const ed = await openEditor(path);
    let model: Uint8Array = new Uint8Array(40 * 4096);
    for (const [off, n] of [
      [5 * 4096 + 100, 9000], // inside: split into unwritten / written / unwritten
      [0, 10], // at the start
      [39 * 4096 + 4000, 500], // the last block and one more, extending the size
    ] as const) {
      const data = fill(n, n);
      await ed.writeAt("/u", off, data);
      model = pwrite(model, off, data);
    }
    await ed.close();
    await expectClean(path);
    expect(Buffer.compare(await debugfsCat(path, "/u"), Buffer.from(model))).toBe(0);
    const ex = (await debugfs(path, ["ex /u"])).toString();
    // Extent lines: "level/depth  index/count  lblk_start - lblk_end  pblk_start - pblk_end  len  [Uninit]".
    const rows = [
      ...ex.matchAll(
        /^\s*\d+\/\s*\d+\s+\d+\/\s*\d+\s+(\d+)\s*-\s*(\d+)\s+\d+\s*-\s*\d+\s+\d+[ \t]*(Uninit)?/gm,
      ),
    ].map((m) => ({ from: Number(m[1]), to: Number(m[2]), uninit: m[3] === "Uninit" }));
    expect(rows).toEqual([
      { from: 0, to: 0, uninit: false },
      { from: 1, to: 4, uninit: true },
      { from: 5, to: 7, uninit: false },
      { from: 8, to: 38, uninit: true },
      { from: 39, to: 40, uninit: false },
    ]);
    // Only the block past the preallocated range is new (the written ranges reuse the others);
    // five extents no longer fit the inode, so the tree has one leaf block (listed too).
    expect((await debugfsBlocks(path, "/u")).length).toBe(41 + 1);
  });

  it("ext3: replacing a sparse file's content near ENOSPC counts the indirect blocks first", async () => {
    const dir = await tempDir("edw-");
    const path = await makeImage(dir, "r", FEATURE_SETS.ext3, "4M");
    const ed = await openEditor(path);
    // 2 data blocks, 2 map blocks (double indirect + indirect).
    await ed.writeFile("/f", "x");
    await ed.writeAt("/f", 300 * 1024, "y");
    const model = await ed.readFile("/f");
    const free = async () => {
      await ed.sync();
      return parseSuperblock((await readFile(path)).subarray(1024, 2048)).freeBlocksCount;
    };
    // Leave 298 free blocks: 300 new data blocks fit once the old 4 are freed, their 3 map
    // blocks do not.
    await ed.mkdir("/fill");
    for (let i = 0, f = await free(); f > 298; i++, f = await free())
      await ed.writeFile(`/fill/${i}`, new Uint8Array(Math.min(12, f - 298) * 1024).fill(1));
    expect(await free()).toBeGreaterThanOrEqual(297);
    await expect(ed.writeFile("/f", new Uint8Array(300 * 1024).fill(2))).rejects.toBeInstanceOf(
      Ext4NoSpaceError,
    );
    expect(Buffer.compare(await ed.readFile("/f"), model)).toBe(0);
    await ed.close();
    await expectClean(path);
    expect(Buffer.compare(await debugfsCat(path, "/f"), model)).toBe(0);
  });

  it("inline_data: stays inline while it fits, moves to a block when it grows past", async () => {
    const dir = await tempDir("edw-");
    const path = await makeImage(dir, "i", FEATURE_SETS["ext4-inline"], "16M");
    const ed = await openEditor(path);
    let model: Uint8Array = fill(40, 3);
    await ed.writeFile("/s", model);
    await ed.writeAt("/s", 30, fill(50, 9)); // 80 bytes: i_block + system.data
    model = pwrite(model, 30, fill(50, 9));
    await ed.writeFile("/g", model);
    await ed.writeAt("/g", 5000, "end"); // past the inode: block + hole
    const g = pwrite(model, 5000, new TextEncoder().encode("end"));
    await ed.close();
    await expectClean(path);
    const s = await debugfsStat(path, "/s");
    expect(s.flags & 0x10000000).toBeTruthy();
    expect(s.raw).toMatch(/Size of inline data: 80/);
    expect((await debugfsCat(path, "/s")).subarray(0, 80).equals(Buffer.from(model))).toBe(true);
    const gs = await debugfsStat(path, "/g");
    expect(gs.flags & 0x10000000).toBe(0);
    expect(gs.size).toBe(5003);
    expect(Buffer.compare(await debugfsCat(path, "/g"), Buffer.from(g))).toBe(0);
  });
});
