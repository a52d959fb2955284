/**
 * Copying only what the filesystems use: a GPT disk whose ext4 holds live files and a deleted 24 MiB
 * file (its bytes still on disk, as after `rm`) is converted through the free-space map. Oracles:
 * e2fsck -fn on the output, qemu-img check, every live file identical (diffGuests of input and
 * output, plus debugfs cat), the deleted file's bytes gone, and the output smaller than a plain
 * convert by about the garbage.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FileDevice, ZeroedRangesDevice } from "@imgpatch/disk";
import { convertImage } from "@imgpatch/qcow2";
import {
  debugfs,
  debugfsCat,
  describeWithTools,
  e2fsck,
  qemuImg,
  qemuImgCheck,
  runToolOk,
  tempDir,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { diffGuests } from "../src/customize/diff.js";
import { freeSpaceMap } from "../src/image/free-space-map.js";
import { openGuest } from "../src/image/open-guest.js";

const MiB = 1024 * 1024;
const PART = 1 * MiB;

describeWithTools(["sfdisk", "mke2fs", "debugfs", "e2fsck", "qemu-img"], "free-space map (sparsify)", () => {
  it("drops deleted-file garbage, keeps every live byte", async () => {
    const dir = await tempDir("sparsify-");
    const tree = join(dir, "tree");
    await mkdir(join(tree, "live"), { recursive: true });
    const live: Record<string, Buffer> = {};
    for (let i = 0; i < 40; i++) {
      live[`/live/f${i}`] = randomBytes(1000 + i * 3000);
      await writeFile(join(tree, `live/f${i}`), live[`/live/f${i}`]!);
    }
    // No all-zero block (mke2fs -d would leave those as holes).
    const garbage = Buffer.alloc(24 * MiB, "GARBAGE-MARKER-1234;");
    await writeFile(join(tree, "garbage"), garbage);
    const disk = join(dir, "disk.raw");
    await writeFile(disk, "");
    await runToolOk("truncate", ["-s", "96M", disk]);
    await runToolOk("sfdisk", ["-q", disk], { input: "label: gpt\nstart=2048, size=180224, type=L\n" });
    await runToolOk("mke2fs", ["-q", "-F", "-t", "ext4", "-E", `offset=${PART}`, "-d", tree, disk, "88M"]);
    const fsTarget = { path: disk, offset: PART };
    await debugfs(fsTarget, ["rm /garbage"], { write: true });
    expect((await readFile(disk)).includes("GARBAGE-MARKER-1234")).toBe(true); // still on disk

    const src = await FileDevice.open(disk, { readOnly: true });
    const map = await freeSpaceMap(src);
    expect(map.volumes).toHaveLength(1);
    expect(map.freeBytes).toBeGreaterThan(24 * MiB);
    const plain = join(dir, "plain.qcow2");
    const sparse = join(dir, "sparse.qcow2");
    await convertImage(src, plain);
    await convertImage(new ZeroedRangesDevice(src, map.free), sparse);
    await src.close();

    expect((await qemuImgCheck(sparse)).clean).toBe(true);
    const plainSize = (await stat(plain)).size;
    const sparseSize = (await stat(sparse)).size;
    expect(plainSize - sparseSize).toBeGreaterThan(23 * MiB);
    const back = join(dir, "back.raw");
    await qemuImg(["convert", "-O", "raw", sparse, back]);
    expect((await readFile(back)).includes("GARBAGE-MARKER-1234")).toBe(false);
    const check = await e2fsck({ path: back, offset: PART });
    expect(check.clean, check.output).toBe(true);
    for (const [p, data] of Object.entries(live)) {
      expect((await debugfsCat({ path: back, offset: PART }, p)).equals(data), p).toBe(true);
    }
    const a = await openGuest(disk);
    const b = await openGuest(sparse);
    try {
      expect(await diffGuests(a.fs, b.fs)).toEqual([]);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
