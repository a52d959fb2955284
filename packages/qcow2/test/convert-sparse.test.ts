/**
 * Converting a sparse raw file: its holes are found through filefrag (FIEMAP; Node has no
 * SEEK_DATA) and never read, the data between them is copied; qemu-img compare is the oracle of
 * the content, qemu-img check of the qcow2. Also the filefrag parser on recorded output, and
 * mapExtents of a sparse file whose "zero" ranges really read as zeros.
 */
import { open } from "node:fs/promises";
import { join } from "node:path";
import { FileDevice, parseFilefrag } from "@imgpatch/disk";
import { convertImage } from "@imgpatch/qcow2";
import { describeWithTools, qemuImgCheck, qemuImgCompare, tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";

const RECORDED = `Filesystem type is: ef53
File size of sp.raw is 1073741824 (2097152 blocks of 512 bytes)
 ext:     logical_offset:        physical_offset: length:   expected: flags:
   0:    12800..   13183:          0..         0:      0:             unknown_loc,delalloc
   1:  1600000.. 1600007:    9400320..   9400327:      8:             last,eof
sp.raw: 2 extents found
`;

describe("parseFilefrag", () => {
  it("reads the logical ranges of filefrag -v -b512 output", () => {
    expect(parseFilefrag(RECORDED)).toEqual([
      { offset: 12800 * 512, length: 384 * 512 },
      { offset: 1600000 * 512, length: 8 * 512 },
    ]);
    expect(parseFilefrag("f: 0 extents found\n")).toEqual([]);
  });
  it("refuses output it does not recognise", () => {
    expect(parseFilefrag(RECORDED.replace("2 extents", "3 extents"))).toBeUndefined();
    expect(parseFilefrag(RECORDED.replace("   1:  1600000", "   7:  1600000"))).toBeUndefined();
    expect(parseFilefrag("FIBMAP: Operation not permitted\n")).toBeUndefined();
    expect(parseFilefrag("")).toBeUndefined();
  });
});

const MiB = 1 << 20;

describeWithTools(["filefrag", "qemu-img"], "sparse raw files", () => {
  async function sparseFile(size: number, pieces: Array<[number, number]>): Promise<string> {
    const path = join(await tempDir("sparse-"), "sparse.raw");
    const fh = await open(path, "w");
    await fh.truncate(size);
    let seed = 1;
    for (const [off, len] of pieces) {
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        b[i] = seed >>> 24 || 1;
      }
      await fh.write(b, 0, len, off);
    }
    await fh.close();
    return path;
  }

  it("maps holes as zero ranges that read as zeros, and data ranges covering what was written", async () => {
    const pieces: Array<[number, number]> = [
      [0, 4096],
      [3 * MiB + 8192, 200_000],
      [40 * MiB, MiB],
      [63 * MiB, MiB],
    ];
    const path = await sparseFile(64 * MiB, pieces);
    const dev = await FileDevice.open(path, { readOnly: true });
    try {
      const map = await dev.mapExtents(0, dev.size);
      expect(map.reduce((n, e) => n + e.length, 0)).toBe(dev.size);
      const data = map.filter((e) => e.kind === "data");
      const dataBytes = data.reduce((n, e) => n + e.length, 0);
      expect(dataBytes).toBeLessThan(4 * MiB);
      for (const [off, len] of pieces)
        expect(
          data.some((e) => e.offset <= off && e.offset + e.length >= off + len),
          `${off}`,
        ).toBe(true);
      for (const e of map.filter((x) => x.kind === "zero")) {
        const b = await dev.read(e.offset, e.length);
        expect(
          b.every((x) => x === 0),
          `zero range ${e.offset}+${e.length}`,
        ).toBe(true);
      }
      // A window in the middle of a data range and of a hole.
      expect(await dev.mapExtents(40 * MiB + 4096, 8192)).toEqual([
        { offset: 40 * MiB + 4096, length: 8192, kind: "data" },
      ]);
      expect(await dev.mapExtents(20 * MiB, 4096)).toEqual([
        { offset: 20 * MiB, length: 4096, kind: "zero" },
      ]);
    } finally {
      await dev.close();
    }
    // A writable device maps everything as data (the file may change under it).
    const rw = await FileDevice.open(path);
    try {
      expect(await rw.mapExtents(0, rw.size)).toEqual([{ offset: 0, length: rw.size, kind: "data" }]);
    } finally {
      await rw.close();
    }
  });

  it("converts to qcow2 and raw reading only the data", async () => {
    const size = 256 * MiB;
    const path = await sparseFile(size, [
      [MiB, 3 * MiB],
      [100 * MiB + 512, 70_000],
      [size - 4096, 4096],
    ]);
    for (const format of ["qcow2", "raw"] as const) {
      const out = `${path}.${format}`;
      const stats = await convertImage(path, out, { format });
      expect(stats.bytesRead, format).toBeLessThan(8 * MiB);
      const cmp = await qemuImgCompare(path, out, { formatA: "raw", formatB: format });
      expect(cmp.identical, cmp.output).toBe(true);
      if (format === "qcow2") {
        const check = await qemuImgCheck(out);
        expect(check.clean, JSON.stringify(check.json)).toBe(true);
      }
    }
  });
});
