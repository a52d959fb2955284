/**
 * Copying only what the filesystems use: a GPT disk whose ext4 holds live files and a deleted 24 MiB
 * file (its bytes still on disk, as after `rm`) is converted through the free-space map. Oracles:
 * e2fsck -fn on the output, qemu-img check, every live file identical (diffGuests of input and
 * output, plus debugfs cat), the deleted file's bytes gone, and the output smaller than a plain
 * convert by about the garbage. The same for XFS (root: the kernel writes and deletes the files,
 * and a read-only loop mount of the output must show the input's tree): xfs_repair -n as oracle.
 */
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FileDevice, ZeroedRangesDevice } from "@imgpatch/disk";
import { convertImage } from "@imgpatch/qcow2";
import {
  debugfs,
  debugfsCat,
  describeAsRoot,
  describeWithTools,
  e2fsck,
  qemuImg,
  qemuImgCheck,
  runTool,
  runToolOk,
  tempDir,
  withLoopMount,
  xfsRepairCheck,
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

/** Every path with its type, size, mode and content hash, as the kernel shows them. */
async function kernelTree(mnt: string): Promise<string> {
  const list = await runToolOk("bash", [
    "-c",
    `cd ${mnt} && find . -printf '%p %y %s %m %U %G\\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum`,
  ]);
  return list.toString("utf8");
}

describeAsRoot(
  ["sfdisk", "mkfs.xfs", "xfs_repair", "qemu-img", "losetup", "dd"],
  "free-space map (sparsify) of XFS",
  () => {
    it("drops an XFS partition's deleted garbage: xfs_repair -n clean, same kernel tree, diff empty", async () => {
      const dir = await tempDir("sparsify-xfs-");
      const fsImg = join(dir, "fs.img");
      const mnt = join(dir, "mnt");
      await mkdir(mnt);
      await writeFile(fsImg, "");
      await runToolOk("truncate", ["-s", "300M", fsImg]);
      await runToolOk("mkfs.xfs", ["-q", "-f", "-d", "agcount=4", fsImg]);
      await withLoopMount(fsImg, mnt, { rw: true }, async (m) => {
        await runToolOk("bash", [
          "-c",
          [
            `cd ${m} && mkdir -p live/sub && for i in $(seq 1 60); do head -c $((i * 7919)) /dev/urandom > live/f$i; done`,
            "ln -s f1 live/link && echo small > live/sub/s",
            // the garbage: 64 MiB that is nowhere else, then deleted (its blocks keep the bytes)
            "yes GARBAGE-MARKER-9012 | head -c 67108864 > garbage && sync && rm garbage && sync",
          ].join(" && "),
        ]);
      });
      expect((await readFile(fsImg)).includes("GARBAGE-MARKER-9012")).toBe(true); // still on disk
      const disk = join(dir, "disk.raw");
      await writeFile(disk, "");
      await runToolOk("truncate", ["-s", "302M", disk]);
      await runToolOk("sfdisk", ["-q", disk], { input: "label: gpt\nstart=2048, size=614400, type=L\n" });
      await runToolOk("dd", [
        `if=${fsImg}`,
        `of=${disk}`,
        "bs=1M",
        "seek=1",
        "conv=notrunc,sparse",
        "status=none",
      ]);

      const sparse = join(dir, "s.qcow2");
      let out = "";
      let err = "";
      const code = await runCli(["sparsify", "-O", "qcow2", disk, sparse, "--json"], {
        out: (t) => (out += t),
        err: (t) => (err += t),
        env: {},
      });
      expect(code, err).toBe(0);
      const report = JSON.parse(out) as {
        freeBytes: number;
        volumes: { filesystem: string; notes: string[] }[];
      };
      expect(report.volumes.map((v) => [v.filesystem, v.notes])).toEqual([["xfs", []]]);
      expect(report.freeBytes).toBeGreaterThan(64 * MiB);
      expect((await qemuImgCheck(sparse)).clean).toBe(true);
      const plain = join(dir, "plain.qcow2");
      await qemuImg(["convert", "-O", "qcow2", disk, plain]);
      expect((await stat(plain)).size - (await stat(sparse)).size).toBeGreaterThan(63 * MiB);

      const back = join(dir, "back.raw");
      await qemuImg(["convert", "-O", "raw", sparse, back]);
      expect((await readFile(back)).includes("GARBAGE-MARKER-9012")).toBe(false);
      const part = join(dir, "part.img");
      await runToolOk("dd", [`if=${back}`, `of=${part}`, "bs=1M", "skip=1", "count=300", "status=none"]);
      const repair = await xfsRepairCheck(part);
      expect(repair.clean, repair.output).toBe(true);
      const a = await openGuest(disk);
      const b = await openGuest(sparse);
      try {
        expect(await diffGuests(a.fs, b.fs)).toEqual([]);
      } finally {
        await a.close();
        await b.close();
      }
      // xfs_repair -n may not write, but the kernel's view is compared on copies all the same
      const before = join(dir, "before.img");
      await copyFile(fsImg, before);
      const want = await withLoopMount(before, mnt, {}, kernelTree);
      const got = await withLoopMount(part, mnt, {}, kernelTree);
      expect(want.split("\n").length).toBeGreaterThan(120);
      expect(got).toBe(want);
    });
  },
);
