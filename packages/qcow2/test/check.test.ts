import { copyFile, open, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ImgpatchError } from "@imgpatch/disk";
import {
  describeWithTools,
  fixture,
  fixtureCopy,
  fixtureInfo,
  fixtureNames,
  qemuImg,
  qemuImgCheck,
  qemuIo,
  tempDir,
} from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { checkQcow2, type Qcow2CheckResult } from "../src/check.js";
import { parseHeader } from "../src/header.js";

/** The numbers qemu-img check reports, from both sides. */
function ours(r: Qcow2CheckResult) {
  return {
    "check-errors": r.checkErrors,
    leaks: r.leaks,
    corruptions: r.corruptions,
    "image-end-offset": r.imageEndOffset,
    "total-clusters": r.totalClusters,
    "allocated-clusters": r.allocatedClusters,
    "fragmented-clusters": r.fragmentedClusters,
    "compressed-clusters": r.compressedClusters,
  };
}

async function theirs(path: string) {
  const q = await qemuImgCheck(path);
  const n = (k: string) => (typeof q.json[k] === "number" ? (q.json[k] as number) : 0);
  return {
    "check-errors": n("check-errors"),
    leaks: q.leaks,
    corruptions: q.corruptions,
    "image-end-offset": n("image-end-offset"),
    "total-clusters": n("total-clusters"),
    "allocated-clusters": n("allocated-clusters"),
    "fragmented-clusters": n("fragmented-clusters"),
    "compressed-clusters": n("compressed-clusters"),
  };
}

async function expectAgree(path: string) {
  const expected = await theirs(path);
  const got = await checkQcow2(path);
  expect(ours(got), `${path}\n${got.messages.slice(0, 20).join("\n")}`).toEqual(expected);
  return got;
}

// ---- raw byte surgery on an image file

async function readAt(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    const b = Buffer.alloc(length);
    await fh.read(b, 0, length, offset);
    return b;
  } finally {
    await fh.close();
  }
}

async function writeAt(path: string, offset: number, data: Uint8Array): Promise<void> {
  const fh = await open(path, "r+");
  try {
    await fh.write(data, 0, data.length, offset);
  } finally {
    await fh.close();
  }
}

async function u64(path: string, offset: number): Promise<bigint> {
  return (await readAt(path, offset, 8)).readBigUInt64BE(0);
}

async function setU64(path: string, offset: number, v: bigint): Promise<void> {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  await writeAt(path, offset, b);
}

const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;
const COPIED = 1n << 63n;

/** Layout facts of a (16-bit refcount, standard L2) image. */
async function layout(path: string) {
  const h = parseHeader(new Uint8Array(await readAt(path, 0, 512)), path);
  const cs = 2 ** h.clusterBits;
  const l1 = async (i: number) => u64(path, h.l1TableOffset + i * 8);
  const l2Entry = async (l1i: number, i: number) => {
    const t = (await l1(l1i)) & OFFSET_MASK;
    return { at: Number(t) + i * 8, value: await u64(path, Number(t) + i * 8) };
  };
  const refcountAt = async (cluster: number) => {
    const perBlock = cs / 2;
    const blk = Number(await u64(path, h.refcountTableOffset + Math.floor(cluster / perBlock) * 8));
    return blk + (cluster % perBlock) * 2;
  };
  const setRefcount = async (cluster: number, v: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    await writeAt(path, await refcountAt(cluster), b);
  };
  const getRefcount = async (cluster: number) =>
    (await readAt(path, await refcountAt(cluster), 2)).readUInt16BE(0);
  return { h, cs, l1, l2Entry, setRefcount, getRefcount, fileSize: (await stat(path)).size };
}

describeWithTools(["qemu-img", "qemu-io"], "check agrees with qemu-img check", () => {
  let dir: string;
  let base: string;
  beforeAll(async () => {
    dir = await tempDir("qcow2-check-");
    base = join(dir, "base.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", base, "1200M"]); // three L1 entries
    await qemuIo(base, ["write -P 0xaa 0 256k", "write -P 0xbb 1M 64k", "write -P 0xcc 7M 4k"]);
  });

  const qcowFixtures = fixtureNames().filter((n) => fixtureInfo(n).format === "qcow2");
  it.each(qcowFixtures)("fixture %s", async (name) => {
    const r = await expectAgree(await fixture(name));
    // deliberately broken fixtures record what qemu-img check says about them
    const info = fixtureInfo(name) as { qemuCheck?: { leaks: number; corruptions: number } };
    const expected = info.qemuCheck ?? { leaks: 0, corruptions: 0 };
    expect({ leaks: r.leaks, corruptions: r.corruptions, errors: r.checkErrors }).toEqual({
      leaks: expected.leaks,
      corruptions: expected.corruptions,
      errors: 0,
    });
  });

  it("repairs the leak of the broken-leak fixture so qemu-img check is clean", async () => {
    const p = await fixtureCopy("broken-leak.qcow2", dir);
    const r = await checkQcow2(p, { repair: "leaks" });
    expect(r.leaksFixed).toBe(1);
    expect({ leaks: r.leaks, corruptions: r.corruptions }).toEqual({ leaks: 0, corruptions: 0 });
    expect((await qemuImgCheck(p)).clean).toBe(true);
  });

  async function corrupted(name: string, damage: (p: string) => Promise<void>) {
    const p = join(dir, `${name}.qcow2`);
    await copyFile(base, p);
    await damage(p);
    return p;
  }

  it("a leaked cluster (refcount on a cluster nothing uses)", async () => {
    const p = await corrupted("leak", async (p) => {
      const L = await layout(p);
      const spare = Math.ceil(L.fileSize / L.cs); // first cluster past the end
      await writeAt(p, spare * L.cs, new Uint8Array(L.cs));
      await L.setRefcount(spare, 1);
    });
    const r = await expectAgree(p);
    expect(r.leaks).toBe(1);
    expect(r.corruptions).toBe(0);
    // repair: leaks gone, qemu agrees
    const fixed = await checkQcow2(p, { repair: "leaks" });
    expect(fixed.leaksFixed).toBe(1);
    expect(fixed.leaks).toBe(0);
    expect((await qemuImgCheck(p)).clean).toBe(true);
  });

  it("a refcount bumped on a data cluster (leak + COPIED now wrong)", async () => {
    const p = await corrupted("bump", async (p) => {
      const L = await layout(p);
      const e = await L.l2Entry(0, 1);
      await L.setRefcount(Number((e.value & OFFSET_MASK) / BigInt(L.cs)), 2);
    });
    const r = await expectAgree(p);
    expect(r.leaks).toBe(1);
    expect(r.corruptions).toBe(1);
  });

  it("a dropped refcount (data cluster at refcount 0)", async () => {
    const p = await corrupted("drop", async (p) => {
      const L = await layout(p);
      const e = await L.l2Entry(0, 2);
      await L.setRefcount(Number((e.value & OFFSET_MASK) / BigInt(L.cs)), 0);
    });
    const r = await expectAgree(p);
    expect(r.corruptions).toBeGreaterThanOrEqual(1);
  });

  it("COPIED flipped on an L2 entry and on an L1 entry", async () => {
    const p = await corrupted("copied", async (p) => {
      const L = await layout(p);
      const e = await L.l2Entry(0, 3);
      await setU64(p, e.at, e.value & ~COPIED);
      await setU64(p, L.h.l1TableOffset, (await L.l1(0)) & ~COPIED);
    });
    const r = await expectAgree(p);
    expect(r.corruptions).toBe(2);
  });

  it("an L2 entry pointing past the end of the file", async () => {
    const p = await corrupted("past-eof", async (p) => {
      const L = await layout(p);
      const e = await L.l2Entry(0, 0);
      await setU64(p, e.at, BigInt(L.fileSize + 10 * L.cs) | COPIED);
    });
    const r = await expectAgree(p);
    expect(r.corruptions).toBeGreaterThanOrEqual(1);
    expect(r.leaks).toBe(1); // the cluster it used to point to
  });

  it("a misaligned data cluster offset", async () => {
    const p = await corrupted("misaligned", async (p) => {
      const L = await layout(p);
      const e = await L.l2Entry(0, 1);
      await setU64(p, e.at, e.value + 512n);
    });
    const r = await expectAgree(p);
    expect(r.corruptions).toBeGreaterThanOrEqual(1);
  });

  it("an L2 table overlapping the refcount table", async () => {
    const p = await corrupted("overlap", async (p) => {
      const L = await layout(p);
      await setU64(p, L.h.l1TableOffset + 8, BigInt(L.h.refcountTableOffset) | COPIED);
    });
    const r = await expectAgree(p);
    expect(r.corruptions).toBeGreaterThanOrEqual(1);
  });

  it("a refcount block referenced twice (refcount table entry duplicated)", async () => {
    const p = await corrupted("refblock-shared", async (p) => {
      const L = await layout(p);
      // L1 entry pointing at the refcount block: refblock now has two references
      const blk = await u64(p, L.h.refcountTableOffset);
      await setU64(p, L.h.l1TableOffset + 16, blk | COPIED);
    });
    const r = await expectAgree(p);
    expect(r.corruptions).toBeGreaterThanOrEqual(1);
  });

  it("more faults: reserved bits, misaligned L1 entry, block outside the image, overflow, COPIED on compressed", async () => {
    const cases: [string, (p: string) => Promise<void>, string?][] = [
      [
        "l2-reserved",
        async (p) => {
          const L = await layout(p);
          const e = await L.l2Entry(0, 1);
          await setU64(p, e.at, e.value | 0x2n); // bit 1: reserved in a standard descriptor
        },
      ],
      [
        "l1-reserved",
        async (p) => {
          const L = await layout(p);
          await setU64(p, L.h.l1TableOffset, (await L.l1(0)) | (1n << 58n));
        },
      ],
      [
        "l1-misaligned",
        async (p) => {
          const L = await layout(p);
          await setU64(p, L.h.l1TableOffset, (await L.l1(0)) + 512n);
        },
      ],
      [
        "refblock-outside",
        async (p) => {
          const L = await layout(p);
          await setU64(p, L.h.refcountTableOffset + 8 * 5, BigInt(L.fileSize + 100 * L.cs));
        },
      ],
      [
        "two-l2-entries-one-cluster",
        async (p) => {
          const L = await layout(p);
          const a = await L.l2Entry(0, 1);
          const b = await L.l2Entry(0, 2);
          await setU64(p, b.at, a.value); // refcount 1, referenced twice; the old one leaks
        },
      ],
    ];
    for (const [name, damage] of cases) {
      const r = await expectAgree(await corrupted(name, damage));
      expect(r.corruptions, name).toBeGreaterThan(0);
    }
    // 1-bit refcounts: a second reference overflows
    const p1 = join(dir, "rc1.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", "-o", "refcount_bits=1", p1, "4M"]);
    await qemuIo(p1, ["write -P 1 0 128k"]);
    {
      const h = parseHeader(new Uint8Array(await readAt(p1, 0, 512)), p1);
      const l2 = Number((await u64(p1, h.l1TableOffset)) & OFFSET_MASK);
      await setU64(p1, l2 + 8, await u64(p1, l2));
    }
    const r1 = await expectAgree(p1);
    expect(r1.corruptions).toBeGreaterThan(0);
    // compressed cluster with COPIED set; extended L2 entry with a subcluster both allocated and zero
    const c = join(dir, "cc.qcow2");
    const craw = join(dir, "cc.raw");
    await qemuImg(["create", "-q", "-f", "raw", craw, "1M"]);
    await qemuIo(craw, ["write -P 0x41 0 128k"], { format: "raw" });
    await qemuImg(["convert", "-c", "-O", "qcow2", craw, c]);
    {
      const h = parseHeader(new Uint8Array(await readAt(c, 0, 512)), c);
      const l2 = Number((await u64(c, h.l1TableOffset)) & OFFSET_MASK);
      await setU64(c, l2, (await u64(c, l2)) | COPIED);
    }
    expect((await expectAgree(c)).corruptions).toBeGreaterThan(0);
    const x = join(dir, "xl2.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", "-o", "extended_l2=on", x, "4M"]);
    await qemuIo(x, ["write -P 1 0 64k"]);
    {
      const h = parseHeader(new Uint8Array(await readAt(x, 0, 512)), x);
      const l2 = Number((await u64(x, h.l1TableOffset)) & OFFSET_MASK);
      await setU64(x, l2 + 8, (await u64(x, l2 + 8)) | (1n << 32n)); // zero bit over an allocated one
    }
    expect((await expectAgree(x)).corruptions).toBeGreaterThan(0);
  });

  it("snapshots: shared clusters, and a snapshot-only cluster with its refcount dropped", async () => {
    const p = join(dir, "snap.qcow2");
    await copyFile(base, p);
    await qemuImg(["snapshot", "-c", "s1", p]);
    await qemuIo(p, ["write -P 0x11 0 64k", "write -P 0x12 2M 64k"]);
    await qemuImg(["snapshot", "-c", "s2", p]);
    await qemuIo(p, ["write -P 0x13 64k 64k"]);
    const clean = await expectAgree(p);
    expect(clean.corruptions + clean.leaks).toBe(0);
    // the cluster of guest 0 as s1 saw it is now referenced by s1 only: drop its refcount
    const L = await layout(p);
    const sn = await readAt(p, L.h.snapshotsOffset, 8);
    const snL1 = Number(sn.readBigUInt64BE(0));
    const snL2 = Number((await u64(p, snL1)) & OFFSET_MASK);
    const data = Number((await u64(p, snL2)) & OFFSET_MASK);
    await L.setRefcount(data / L.cs, 0);
    const r = await expectAgree(p);
    expect(r.corruptions).toBe(1);
  });

  it("compressed clusters: a descriptor whose span grew into the next cluster", async () => {
    const src = join(dir, "c-src.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", src, "4M"]);
    await qemuIo(src, ["write -P 0x41 0 1M", "write -P 0x42 2M 256k"]);
    const p = join(dir, "compressed.qcow2");
    await qemuImg(["convert", "-c", "-O", "qcow2", src, p]);
    const clean = await expectAgree(p);
    expect(clean.compressedClusters).toBeGreaterThan(0);
    const L = await layout(p);
    const e = await L.l2Entry(0, 0);
    // sector count field: bits [62 - (cluster_bits - 8), 61]; bump it by the maximum
    const shift = BigInt(62 - (L.h.clusterBits - 8));
    const mask = (1n << BigInt(L.h.clusterBits - 8)) - 1n;
    const grown = (e.value & ~(mask << shift)) | (mask << shift);
    await setU64(p, e.at, grown);
    const r = await expectAgree(p);
    expect(r.corruptions + r.leaks).toBeGreaterThan(0);
  });

  it("bitmaps are counted (persistent dirty bitmap, clean)", async () => {
    const p = join(dir, "bitmap.qcow2");
    await copyFile(base, p);
    await qemuImg(["bitmap", "--add", p, "b0"]);
    await qemuIo(p, ["write -P 0x55 3M 128k"]);
    const r = await expectAgree(p);
    expect(r.corruptions + r.leaks).toBe(0);
  });

  it("random byte damage to metadata: same counts as qemu-img check on every mutant it can open", async () => {
    const bases: string[] = [];
    const a = join(dir, "fz-a.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", a, "2M"]);
    await qemuIo(a, ["write -P 1 0 300k", "write -P 2 1M 64k"]);
    await qemuImg(["snapshot", "-c", "s1", a]);
    await qemuIo(a, ["write -P 3 8k 16k"]);
    bases.push(a);
    const b = join(dir, "fz-b.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=16k", b, "2M"]);
    await qemuIo(b, ["write -P 1 0 100k", "write -z 40k 8k", "write -P 2 1M 3k"]);
    bases.push(b);
    const c = join(dir, "fz-c.qcow2");
    await qemuImg(["convert", "-c", "-O", "qcow2", "-o", "cluster_size=4k", a, c]);
    bases.push(c);
    let x = 2024;
    const rnd = () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return x >>> 0;
    };
    let compared = 0;
    for (const base of bases) {
      const orig = await readAt(base, 0, (await stat(base)).size);
      for (let t = 0; t < 100; t++) {
        const m = Buffer.from(orig);
        let header = false;
        for (let k = 0; k <= rnd() % 3; k++) {
          const at = t % 4 === 0 ? rnd() % 512 : rnd() % m.length;
          if (at < 512) header = true;
          if (rnd() % 2) m[at]! ^= 1 << (rnd() % 8);
          else m[at] = rnd() & 0xff;
        }
        const p = join(dir, "fz-mutant.qcow2");
        await writeFile(p, m);
        let q: Awaited<ReturnType<typeof theirs>>;
        try {
          q = await theirs(p);
        } catch {
          // qemu cannot open it: we may refuse too, but only with a typed error
          await checkQcow2(p).catch((e) => expect(e).toBeInstanceOf(ImgpatchError));
          continue;
        }
        let r: Qcow2CheckResult;
        try {
          r = await checkQcow2(p);
        } catch (e) {
          // a damaged header may hold values we refuse (offsets past 2^53...): typed error only
          expect(e).toBeInstanceOf(ImgpatchError);
          expect(header, String(e)).toBe(true);
          continue;
        }
        const got = ours(r);
        expect({
          base,
          t,
          leaks: got.leaks,
          corruptions: got.corruptions,
          errors: got["check-errors"],
        }).toEqual({
          base,
          t,
          leaks: q.leaks,
          corruptions: q.corruptions,
          errors: q["check-errors"],
        });
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(200);
  });

  it("extended L2 and v2 images with overlays", async () => {
    for (const opts of [
      "compat=0.10",
      "extended_l2=on,cluster_size=32k",
      "refcount_bits=1",
      "cluster_size=512",
    ]) {
      const p = join(dir, `o-${opts.replace(/[=,]/g, "_")}.qcow2`);
      await qemuImg(["create", "-q", "-f", "qcow2", "-o", opts, p, "4M"]);
      await qemuIo(p, ["write -P 0x61 0 100k", "write -z 200k 64k", "write -P 0x62 3M 5k", "discard 0 32k"]);
      const r = await expectAgree(p);
      expect(r.corruptions + r.leaks).toBe(0);
    }
  });
});
