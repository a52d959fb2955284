/**
 * xfsFreeSpace against xfs_db: the free extents `freesp -d` lists for every AG, less the AGFL's
 * blocks (freesp counts them; they belong to the btrees), must be exactly what we report. On fresh
 * mkfs.xfs images of every feature set, and (root) on a kernel-written filesystem fragmented by
 * deleting every other file (a bnobt of several levels). A damaged bnobt costs only its AG; a log
 * left dirty by a shutdown makes the whole filesystem count as used. Fuzzed AGFs and bnobt blocks
 * (half with the CRC recomputed) give typed errors or a map that never frees an AG header, btree
 * root or log block.
 */
import { closeSync, mkdirSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import { FileDevice, ImgpatchError, MemoryDevice } from "@imgpatch/disk";
import { describeAsRoot, describeWithTools, runToolOk, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { agbOffset, decodeAgf, readAgfBuf, spaceGeometry } from "../src/ag.js";
import { BufCache, stampCrc } from "../src/buf.js";
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

describeWithTools(["mkfs.xfs"], "xfsFreeSpace on damaged images", () => {
  it("random damage to AGFs and bnobt blocks: typed errors or a map that spares headers, roots and log", async () => {
    const dir = await tempDir("xfs-free-fuzz-");
    for (const name of ["v4", "v5"]) {
      const base = new Uint8Array(
        readFileSync(mkfsImage(dir, `${name}.img`, [...FEATURE_SETS[name]!, "-d", "agcount=3"], 48, 10)),
      );
      const fs0 = await XfsFs.open(new MemoryDevice(base.slice(), { readOnly: true }));
      const geo = spaceGeometry(fs0.geometry, "fuzz");
      const bufs = new BufCache(fs0.device, { crc: geo.crc });
      const targets: { offset: number; length: number; crcAt?: number }[] = [];
      const roots: number[] = [];
      for (let agno = 0; agno < geo.agCount; agno++) {
        const agf = decodeAgf(geo, await readAgfBuf(geo, bufs, agno), agno);
        targets.push({ offset: agbOffset(geo, agno, 0) + geo.sectorSize, length: 64, crcAt: 216 });
        targets.push({ offset: agbOffset(geo, agno, agf.bnoRoot), length: geo.blockSize, crcAt: 52 });
        roots.push(agbOffset(geo, agno, agf.bnoRoot), agbOffset(geo, agno, agf.cntRoot));
      }
      const logAt = agbOffset(geo, geo.logAgno!, geo.logStart!);
      const logEnd = logAt + geo.logBlocks! * geo.blockSize;
      let seed = 12345;
      const rnd = (n: number) => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return seed % n;
      };
      let mapped = 0;
      const img = base; // damaged in place, restored after each round (a copy per round is slow)
      for (let iter = 0; iter < 80; iter++) {
        const t = targets[rnd(targets.length)]!;
        const span = t.crcAt === 216 ? geo.sectorSize : t.length;
        const saved = img.slice(t.offset, t.offset + span);
        try {
          for (let k = 1 + rnd(4); k > 0; k--) img[t.offset + rnd(t.length)] = rnd(256);
          if (geo.crc && t.crcAt !== undefined && rnd(2) === 0)
            stampCrc(img.subarray(t.offset, t.offset + span), t.crcAt);
          let r: Awaited<ReturnType<typeof xfsFreeSpace>>;
          try {
            r = await xfsFreeSpace(await XfsFs.open(new MemoryDevice(img, { readOnly: true })));
          } catch (err) {
            expect(err, String(err)).toBeInstanceOf(ImgpatchError);
            continue; // the finally block restores the image
          }
          mapped++;
          let prev = 0;
          for (const f of r.free) {
            expect(f.offset).toBeGreaterThanOrEqual(prev);
            prev = f.offset + f.length;
            expect(prev).toBeLessThanOrEqual(img.length);
            for (let agno = 0; agno < geo.agCount; agno++) {
              const h = agbOffset(geo, agno, 0);
              expect(f.offset >= h + 4 * geo.sectorSize || prev <= h, `${name} #${iter}: header`).toBe(true);
            }
            for (const root of roots)
              expect(f.offset > root || prev <= root, `${name} #${iter}: root`).toBe(true);
            expect(f.offset >= logEnd || prev <= logAt, `${name} #${iter}: log`).toBe(true);
          }
          expect(r.freeBytes).toBe(r.free.reduce((n, f) => n + f.length, 0));
        } finally {
          img.set(saved, t.offset);
        }
      }
      expect(mapped).toBeGreaterThan(10);
      // a consistent lie (CRC and agf_freeblks still right): AG 1's first free extent moved to
      // block 0, over the AG headers
      const leaf = targets[3]!.offset; // AG 1's bnobt root, a leaf on a fresh filesystem
      const hdr = geo.crc ? 56 : 16;
      const lie = base.slice();
      lie.fill(0, leaf + hdr, leaf + hdr + 4);
      if (geo.crc) stampCrc(lie.subarray(leaf, leaf + geo.blockSize), 52);
      const r = await xfsFreeSpace(await XfsFs.open(new MemoryDevice(lie, { readOnly: true })));
      expect(r.notes.join(" "), name).toMatch(/AG 1: .*covers AG headers/);
    }
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
    const levels = [0, 1].map((ag) =>
      Number(/bnolevel = (\d+)/.exec(xfsDb(p, [`agf ${ag}`, "print bnolevel"]))![1]),
    );
    expect(Math.max(...levels)).toBeGreaterThan(1);
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
