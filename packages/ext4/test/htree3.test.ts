/**
 * Three-level directory index (large_dir): a 1 KiB-block filesystem with a directory of 52,000
 * long (250-byte) names, indexed by e2fsck -fyD. Three records fit a leaf and a dx_root holds
 * 123 entries, so two index levels cannot address the ~17,300 leaves: e2fsck builds dx_root +
 * two levels of dx_node (indirect_levels = 2, checked with debugfs `htree`). Our listing must
 * equal debugfs `ls`, and a lookup must go root → node → node → leaf (four directory blocks).
 *
 * The names are put in place with our editor (hard links to a few targets; mke2fs -d and
 * debugfs `ln` take minutes for a directory this size, being linear per insertion); the index
 * under test is e2fsck's, rebuilt from scratch by -D, and e2fsck -fn must find the result clean.
 */
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { Ext4Editor, Ext4Fs } from "@imgpatch/ext4";
import { debugfs, debugfsLs, describeWithTools, e2fsck, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { mkfs, openImage, rng } from "./helpers.js";

const ENTRIES = 52000;
const TARGETS = 97;
const NAME_LEN = 250;

/** Entry i: a distinct 250-byte name (some with multi-byte UTF-8) linked to target i % TARGETS. */
function entryName(i: number): string {
  const r = rng(i + 1);
  const head = i % 13 === 0 ? `é${i}-` : `n${i}-`;
  let s = head;
  while (Buffer.byteLength(s) < NAME_LEN) s += String.fromCharCode(0x61 + Math.floor(r() * 26));
  return s;
}

/** Device reads recorded by byte offset (the reader's own counters do not say which blocks). */
async function openCounting(path: string): Promise<{ fs: Ext4Fs; offsets: number[] }> {
  const dev = await FileDevice.open(path, { readOnly: true });
  const offsets: number[] = [];
  const readInto = dev.readInto.bind(dev);
  const read = dev.read.bind(dev);
  dev.readInto = (offset: number, target: Uint8Array) => {
    offsets.push(offset);
    return readInto(offset, target);
  };
  dev.read = (offset: number, length: number) => {
    offsets.push(offset);
    return read(offset, length);
  };
  return { fs: await Ext4Fs.open(dev), offsets };
}

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "three-level htree (large_dir)", () => {
  let img: string;
  let levels: number;
  beforeAll(async () => {
    const dir = await tempDir("ext4-htree3-");
    img = join(dir, "h3.img");
    await mkfs(img, undefined, 64, ["-t", "ext4", "-b", "1024", "-O", "large_dir", "-N", "512"]);
    const ed = await Ext4Editor.open(await FileDevice.open(img));
    await ed.mkdir("/big");
    for (let t = 0; t < TARGETS; t++) await ed.writeFile(`/t${t}`, Buffer.from(`target ${t}\n`));
    for (let i = 0; i < ENTRIES; i++) await ed.link(`/t${i % TARGETS}`, `/big/${entryName(i)}`);
    await ed.close();
    const fsck = await runTool("e2fsck", ["-fyD", img]);
    expect(fsck.exitCode, fsck.stdout.toString()).toBeLessThanOrEqual(1);
    const check = await e2fsck(img);
    expect(check.problems).toEqual([]);
    expect(check.clean).toBe(true);
    const htree = await debugfs(img, ["htree /big"], { allowErrors: true });
    levels = Number(htree.match(/Indirect levels: (\d+)/)?.[1]);
  }, 120_000);

  it("e2fsck built a three-level index (dx_root indirect_levels = 2)", () => {
    expect(levels).toBe(2);
  });

  it("readdir lists exactly what debugfs ls lists", async () => {
    const want = (await debugfsLs(img, "/big"))
      .filter((e) => e.name !== "." && e.name !== "..")
      .map((e) => `${e.name}\0${e.inode}`)
      .sort();
    expect(want.length).toBe(ENTRIES);
    const fs = await openImage(img);
    try {
      const got = (await fs.readdir("/big", { withFileTypes: true }))
        .map((d) => `${d.name}\0${d.ino}`)
        .sort();
      expect(got.length).toBe(ENTRIES);
      expect(got).toEqual(want);
    } finally {
      await fs.close();
    }
  });

  it("lookups descend root → node → node → leaf and find the right entry", async () => {
    const probe = await openImage(img);
    const targetIno: number[] = [];
    let dirBlocks: Set<number>;
    let bs: number;
    try {
      for (let t = 0; t < TARGETS; t++) targetIno.push((await probe.lstat(`/t${t}`)).ino);
      const dirInode = await probe.readInode((await probe.lstat("/big")).ino);
      expect(dirInode.flags & 0x1000).toBe(0x1000); // EXT4_INDEX_FL
      bs = probe.blockSize;
      dirBlocks = new Set();
      for await (const r of probe.blockRuns(dirInode))
        for (let k = 0; k < r.length; k++) dirBlocks.add(r.physical + k);
      expect(dirBlocks.size).toBeGreaterThan(17000);
    } finally {
      await probe.close();
    }
    const sample = [0, 1, 2, ENTRIES - 1];
    const r = rng(7);
    for (let k = 0; k < 400; k++) sample.push(Math.floor(r() * ENTRIES));
    for (const i of sample) {
      // A fresh reader per lookup: nothing cached, so every directory block it needs is read.
      const { fs, offsets } = await openCounting(img);
      try {
        const big = await fs.readInode((await fs.lstat("/big")).ino);
        offsets.length = 0;
        const name = entryName(i);
        const e = await fs.lookup(big, Buffer.from(name));
        expect(e && Buffer.from(e.name).toString()).toBe(name);
        expect(e?.inode).toBe(targetIno[i % TARGETS]);
        const read = offsets.filter((o) => dirBlocks.has(Math.floor(o / bs)));
        // dx_root, two dx_nodes, one leaf (a hash collision across a leaf boundary adds one).
        expect(read.length, `entry ${i}`).toBeGreaterThanOrEqual(4);
        expect(read.length, `entry ${i}`).toBeLessThanOrEqual(5);
        expect(offsets.length, `entry ${i}`).toBeLessThanOrEqual(8);
      } finally {
        await fs.close();
      }
    }
    // Missing names: also answered from one leaf.
    const { fs, offsets } = await openCounting(img);
    try {
      const big = await fs.readInode((await fs.lstat("/big")).ino);
      for (const missing of ["not-there", `${entryName(5)}x`.slice(0, 255), "n1-"]) {
        offsets.length = 0;
        expect(await fs.lookup(big, Buffer.from(missing))).toBeUndefined();
        expect(offsets.filter((o) => dirBlocks.has(Math.floor(o / bs))).length).toBeLessThanOrEqual(5);
      }
      await expect(fs.lstat("/big/not-there")).rejects.toMatchObject({ code: "ENOENT" });
      expect((await fs.lstat(`/big/${entryName(ENTRIES - 1)}`)).ino).toBe(targetIno[(ENTRIES - 1) % TARGETS]);
    } finally {
      await fs.close();
    }
  });
});
