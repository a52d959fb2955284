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
  runTool,
  runToolOk,
  tempDir,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { runCli } from "../src/commands/main.js";
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

  it("imgpatch sparsify, convert --sparsify and sparsify --in-place (qcow2) through the CLI", async () => {
    const dir = await tempDir("sparsify-cli-");
    const tree = join(dir, "tree");
    await mkdir(join(tree, "keep"), { recursive: true });
    await writeFile(join(tree, "keep/a"), randomBytes(300_000));
    await writeFile(join(tree, "garbage"), Buffer.alloc(16 * MiB, "GARBAGE-MARKER-5678;"));
    const disk = join(dir, "disk.raw");
    await writeFile(disk, "");
    await runToolOk("truncate", ["-s", "64M", disk]);
    await runToolOk("sfdisk", ["-q", disk], { input: "label: gpt\nstart=2048, type=L\n" });
    await runToolOk("mke2fs", ["-q", "-F", "-t", "ext4", "-E", `offset=${PART}`, "-d", tree, disk, "62M"]);
    await debugfs({ path: disk, offset: PART }, ["rm /garbage"], { write: true });
    const qcow = join(dir, "disk.qcow2");
    await qemuImg(["convert", "-O", "qcow2", disk, qcow]);
    const run = async (args: string[]) => {
      let out = "";
      let err = "";
      const code = await runCli(args, { out: (t) => (out += t), err: (t) => (err += t), env: {} });
      return { code, out, err };
    };
    for (const [name, args, result] of [
      ["sparsify", ["sparsify", disk, join(dir, "s.qcow2")], join(dir, "s.qcow2")],
      [
        "convert --sparsify",
        ["convert", "--sparsify", "-O", "raw", qcow, join(dir, "c.raw")],
        join(dir, "c.raw"),
      ],
      ["sparsify --in-place", ["sparsify", "--in-place", qcow], qcow],
    ] as const) {
      const r = await run([...args, "--json"]);
      expect(r.code, `${name}: ${r.err}`).toBe(0);
      expect(JSON.parse(r.out).freeBytes, name).toBeGreaterThan(16 * MiB);
      const raw = join(dir, `${name.replace(/\W+/g, "-")}.raw`);
      await qemuImg(["convert", "-O", "raw", result, raw]);
      expect((await readFile(raw)).includes("GARBAGE-MARKER-5678"), name).toBe(false);
      const fsck = await e2fsck({ path: raw, offset: PART });
      expect(fsck.clean, `${name}: ${fsck.output}`).toBe(true);
      const a = await openGuest(disk);
      const b = await openGuest(raw, { format: "raw" });
      try {
        expect(await diffGuests(a.fs, b.fs), name).toEqual([]);
      } finally {
        await a.close();
        await b.close();
      }
    }
    expect((await qemuImgCheck(qcow)).clean).toBe(true);
    // the qcow2 kept its size on disk but the discarded clusters are free (unallocated) now
    const map = JSON.parse(
      (await runTool("qemu-img", ["map", "--output=json", qcow])).stdout.toString(),
    ) as Array<{ length: number; data: boolean }>;
    const data = map.filter((e) => e.data).reduce((n, e) => n + e.length, 0);
    expect(data).toBeLessThan(8 * MiB);
    const bad = await run(["sparsify", "--in-place", disk]);
    expect(bad.code).toBe(2); // a raw file cannot have holes punched: refused, untouched
  });
});
