/**
 * xfsFreeSpace against xfs_db: the free extents `freesp -d` lists for every AG, less the AGFL's
 * blocks (freesp counts them; they belong to the btrees), must be exactly what we report. On fresh
 * mkfs.xfs images of every feature set, and (root) on a kernel-written filesystem fragmented by
 * deleting every other file (a bnobt of several levels). A damaged bnobt costs only its AG; a log
 * left dirty by a shutdown makes the whole filesystem count as used.
 */
import { closeSync, mkdirSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeAsRoot, describeWithTools, runToolOk, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { xfsFreeSpace } from "../src/free-space.js";
import { XfsFs } from "../src/fs.js";
import { FEATURE_SETS, mkfsImage, xfsDb } from "./space-helpers.js";

interface Range {
  offset: number;
  length: number;
}

function merge(rs: Range[]): Range[] {
  const out: Range[] = [];
  for (const r of [...rs].sort((a, b) => a.offset - b.offset)) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length === r.offset) last.length += r.length;
    else out.push({ ...r });
  }
  return out;
}

/** Free byte ranges by xfs_db: `freesp -d` per AG without the AGFL's blocks. */
function dbFree(path: string): Range[] {
  const sb = xfsDb(path, ["sb 0", "print blocksize agblocks agcount"]);
  const num = (k: string) => Number(new RegExp(`${k} = (\\d+)`).exec(sb)?.[1]);
  const bs = num("blocksize");
  const agBlocks = num("agblocks");
  const out: Range[] = [];
  for (let ag = 0; ag < num("agcount"); ag++) {
    const agfl = new Set(
      [...xfsDb(path, [`agfl ${ag}`, "print bno"]).matchAll(/\d+:(\d+)/g)].map((m) => Number(m[1])),
    );
    for (const line of xfsDb(path, [`freesp -d -a ${ag}`]).split("\n")) {
      const m = /^\s*(\d+)\s+(\d+)\s+(\d+)\s*$/.exec(line);
      if (!m) continue;
      const [agno, agbno, len] = [Number(m[1]), Number(m[2]), Number(m[3])];
      if (len === 1 && agfl.has(agbno)) continue;
      out.push({ offset: (agno * agBlocks + agbno) * bs, length: len * bs });
    }
  }
  return merge(out);
}

async function ours(path: string) {
  const dev = await FileDevice.open(path, { readOnly: true });
  try {
    return await xfsFreeSpace(await XfsFs.open(dev));
  } finally {
    await dev.close();
  }
}

describeWithTools(["mkfs.xfs", "xfs_db"], "xfsFreeSpace (bnobt) against xfs_db freesp", () => {
  it.each(Object.keys(FEATURE_SETS))("fresh mkfs.xfs, %s, 4 AGs", async (name) => {
    const dir = await tempDir("xfs-free-");
    const p = mkfsImage(dir, `${name}.img`, [...FEATURE_SETS[name]!, "-d", "agcount=4"], 64, 20);
    const got = await ours(p);
    expect(got.notes).toEqual([]);
    const want = dbFree(p);
    expect(want.length).toBeGreaterThan(3);
    expect(merge(got.free)).toEqual(want);
    expect(got.freeBytes).toBe(want.reduce((n, r) => n + r.length, 0));
  });

  it("a damaged bnobt block costs its AG only; the others are still read", async () => {
    const dir = await tempDir("xfs-free-bad-");
    const p = mkfsImage(dir, "bad.img", ["-d", "agcount=4"], 64);
    const before = await ours(p);
    const sb = xfsDb(p, ["sb 0", "print blocksize agblocks"]);
    const bs = Number(/blocksize = (\d+)/.exec(sb)![1]);
    const agBlocks = Number(/agblocks = (\d+)/.exec(sb)![1]);
    const root = Number(/bnoroot = (\d+)/.exec(xfsDb(p, ["agf 2", "print bnoroot"]))![1]);
    const at = (2 * agBlocks + root) * bs;
    const fd = openSync(p, "r+");
    const b = Buffer.alloc(4);
    readSync(fd, b, 0, 4, at);
    b[0]! ^= 0xff; // bad magic
    writeSync(fd, b, 0, 4, at);
    closeSync(fd);
    const after = await ours(p);
    expect(after.notes.join("\n")).toMatch(/AG 2: .*copied whole/);
    const ag2 = (r: Range) => r.offset >= 2 * agBlocks * bs && r.offset < 3 * agBlocks * bs;
    expect(after.free.filter(ag2)).toEqual([]);
    expect(merge(after.free)).toEqual(merge(before.free.filter((r) => !ag2(r))));
  });
});

describeAsRoot(["mkfs.xfs", "xfs_db", "xfs_io", "losetup"], "xfsFreeSpace on kernel-written XFS", () => {
  it("fragmented by deleting every other file: equal to xfs_db; a dirty log: nothing free", async () => {
    const dir = await tempDir("xfs-free-k-");
    const mnt = join(dir, "mnt");
    mkdirSync(mnt);
    // 1 KiB blocks: a bnobt leaf holds 121 records, so ~700 free extents need a two-level tree
    const p = mkfsImage(dir, "k.img", ["-b", "size=1024", "-d", "agcount=2"], 96);
    await withLoopMount(p, mnt, { rw: true }, async (m) => {
      await runToolOk("bash", [
        "-c",
        `cd ${m} && for i in $(seq 1 1600); do head -c 3072 /dev/urandom > f$i; done && sync && rm -f f*[13579] && sync`,
      ]);
    });
    const levels = xfsDb(p, ["agf 0", "print bnolevel"]);
    expect(Number(/bnolevel = (\d+)/.exec(levels)![1])).toBeGreaterThan(1);
    const got = await ours(p);
    expect(got.notes).toEqual([]);
    const want = dbFree(p);
    expect(want.length).toBeGreaterThan(500);
    expect(merge(got.free)).toEqual(want);

    await withLoopMount(p, mnt, { rw: true }, async (m) => {
      await runToolOk("bash", [
        "-c",
        `for i in $(seq 1 40); do echo x > ${m}/g$i; done; sync; echo y > ${m}/late`,
      ]);
      await runToolOk("xfs_io", ["-x", "-c", "shutdown", m]);
    });
    const dirty = await ours(p);
    expect(dirty.free).toEqual([]);
    expect(dirty.notes.join(" ")).toMatch(/log is not known clean/);
  });
});
