import { copyFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, qemuImg, qemuImgInfo, qemuIo, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import {
  type CreateQcow2Options,
  createOverlay,
  createQcow2,
  growQcow2,
  openQcow2,
  type Qcow2Device,
} from "../src/index.js";
import {
  compressibleBytes,
  expectCleanAndEqual,
  expectSameBytes,
  expectSameMap,
  qemuRaw,
  randomBytes,
} from "./helpers.js";

/** Apply the same operations to a device and to an in-memory model. */
class Mirror {
  constructor(
    readonly dev: Qcow2Device,
    readonly model: Uint8Array,
  ) {}
  async write(off: number, data: Uint8Array) {
    await this.dev.write(off, data);
    this.model.set(data, off);
  }
  async zero(off: number, len: number) {
    await this.dev.writeZeroes(off, len);
    this.model.fill(0, off, off + len);
  }
  async discard(off: number, len: number) {
    await this.dev.discard(off, len);
    this.model.fill(0, off, off + len);
  }
}

const K = 1024;
const M = 1024 * 1024;

/** A workload touching partial clusters, cluster and L2 boundaries, zeros and discards. */
async function workload(m: Mirror, seed: number) {
  const size = m.model.length;
  await m.write(0, randomBytes(100 * K, seed));
  await m.write(3, randomBytes(10, seed + 1));
  await m.write(size - 700, randomBytes(700, seed + 2));
  await m.write(M - 5000, randomBytes(12000, seed + 3));
  await m.zero(10 * K, 200 * K);
  await m.write(150 * K + 17, randomBytes(300 * K, seed + 4));
  await m.discard(256 * K, 128 * K);
  await m.zero(2 * M + 123, 4000);
  await m.write(2 * M, randomBytes(513, seed + 5));
  await m.discard(size - 64 * K, 64 * K);
  await m.write(size / 2, randomBytes(M, seed + 6));
  await m.dev.flush();
  // verify through our own reader too
  expectSameBytes(await m.dev.read(0, size), m.model, "own read-back");
}

describeWithTools(["qemu-img", "qemu-io"], "images written by us, checked by qemu-img", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir("qcow2-write-");
  });

  const configs: [string, CreateQcow2Options][] = [
    ["v2 64k", { version: 2, clusterSize: 65536 }],
    ["v3 64k", { version: 3 }],
    ["v3 512B", { clusterSize: 512 }],
    ["v3 2M", { clusterSize: 2 * M }],
    ["v2 512B", { version: 2, clusterSize: 512 }],
    ["extended_l2 64k", { extendedL2: true }],
    ["extended_l2 16k", { extendedL2: true, clusterSize: 16384 }],
    ["refcount_bits=1", { refcountBits: 1, clusterSize: 4096 }],
    ["refcount_bits=2", { refcountBits: 2, clusterSize: 1024 }],
    ["refcount_bits=4", { refcountBits: 4 }],
    ["refcount_bits=8", { refcountBits: 8, clusterSize: 512 }],
    ["refcount_bits=32", { refcountBits: 32, clusterSize: 512 }],
    ["refcount_bits=64", { refcountBits: 64, clusterSize: 512 }],
  ];
  for (const [name, opts] of configs) {
    it(`creates and writes ${name}; qemu-img check clean, contents equal`, async () => {
      const image = join(dir, `${name.replace(/\W+/g, "_")}.qcow2`);
      const size = 5 * M;
      const dev = await createQcow2(image, { ...opts, size });
      const m = new Mirror(dev, new Uint8Array(size));
      await workload(m, 1);
      await dev.close();
      await expectCleanAndEqual(dir, image, m.model);
      await expectSameMap(image);
      const info = await qemuImgInfo(image);
      expect(info["cluster-size"]).toBe(opts.clusterSize ?? 65536);
      // and qemu-io can keep writing to it
      await qemuIo(image, ["write -P 0x5e 64k 4k"]);
      m.model.fill(0x5e, 64 * K, 68 * K);
      await expectCleanAndEqual(dir, image, m.model);
    });
  }

  for (const [name, opts] of [
    ["v3", "cluster_size=65536"],
    ["v2", "compat=0.10,cluster_size=4096"],
    ["extended_l2", "extended_l2=on,cluster_size=65536"],
    ["refcount_bits=1", "refcount_bits=1,cluster_size=8192"],
  ] as const) {
    it(`keeps writing an image qemu-io filled (${name}: zero-allocated clusters, subcluster bitmaps)`, async () => {
      const image = join(dir, `qemu-filled-${name.replace(/\W+/g, "_")}.qcow2`);
      await qemuImg(["create", "-f", "qcow2", "-o", opts, image, "3M"]);
      // write -z over allocated data leaves zero clusters that keep their host cluster
      await qemuIo(image, [
        "write -P 0x31 0 2M",
        "write -z 64k 192k",
        "write -z 300k 3k",
        "discard 1M 128k",
        "write -P 0x32 1100k 5k",
      ]);
      const start = await qemuRaw(dir, image);
      const dev = await openQcow2(image);
      const m = new Mirror(dev, start.slice());
      await m.write(64 * K + 100, randomBytes(1000, 1)); // partial write into a zero cluster
      await m.write(200 * K, randomBytes(100 * K, 2)); // across zero clusters into data
      await m.zero(0, 32 * K);
      await m.discard(1536 * K, 256 * K);
      await m.write(1090 * K, randomBytes(20 * K, 3)); // around qemu's small write in a discarded area
      await m.write(3 * M - 10, randomBytes(10, 4));
      await dev.close();
      await expectCleanAndEqual(dir, image, m.model);
    });
  }

  it("grows the refcount table (self-referencing blocks) with 512 B clusters and 64-bit refcounts", async () => {
    const image = join(dir, "grow.qcow2");
    const size = 12 * M;
    const dev = await createQcow2(image, { size, clusterSize: 512, refcountBits: 64 });
    const before = dev.refcounts!.tableLocation;
    const m = new Mirror(dev, new Uint8Array(size));
    // each refcount block covers 64 clusters (32 KiB); the 1-cluster table covers 2 MiB
    for (let off = 0; off < size; off += 1536 * K) await m.write(off, randomBytes(1024 * K + 77, off));
    const after = dev.refcounts!.tableLocation;
    expect(after.clusters).toBeGreaterThan(before.clusters);
    await dev.close();
    await expectCleanAndEqual(dir, image, m.model);
  });

  it("grows the virtual size: L1 table moves and grows (512 B clusters), data kept", async () => {
    const image = join(dir, "resize.qcow2");
    const dev = await createQcow2(image, { size: M, clusterSize: 512, refcountBits: 64 });
    const m = new Mirror(dev, new Uint8Array(M));
    await m.write(1000, randomBytes(300 * K, 8));
    await dev.close();
    const l1Before = (await qemuImgInfo(image))["virtual-size"];
    expect(l1Before).toBe(M);
    await growQcow2(image, 40 * M + 512); // L1: 32 entries (1 cluster) -> 1281 entries (21 clusters)
    const grown = await openQcow2(image);
    expect(grown.size).toBe(40 * M + 512);
    expect(grown.map.l1Size).toBe(1281);
    const model = new Uint8Array(grown.size);
    model.set(m.model);
    await grown.write(39 * M, randomBytes(M + 512, 9));
    model.set(randomBytes(M + 512, 9), 39 * M);
    await grown.close();
    await expectCleanAndEqual(dir, image, model);
    await expect(growQcow2(image, M)).rejects.toThrow(/only growing/);
  });

  it("creates large images with a multi-cluster L1 table", async () => {
    const image = join(dir, "bigl1.qcow2");
    const size = 512 * M; // 512 B clusters: L1 has 16384 entries = 256 clusters
    const dev = await createQcow2(image, { size, clusterSize: 512, refcountBits: 64 });
    await dev.write(size - 4096, randomBytes(4096, 5));
    await dev.write(0, randomBytes(4096, 6));
    await dev.close();
    const check = await qemuImg(["check", image]);
    expect(check).toContain("No errors were found");
    await qemuIo(image, ["read -v 0 16"]);
  });

  for (const backingFormat of ["qcow2", "raw"] as const) {
    it(`writes an overlay over a ${backingFormat} base: partial-cluster COW from the backing image`, async () => {
      const base = join(dir, `base-${backingFormat}.img`);
      const size = 4 * M;
      const baseBytes = randomBytes(size, 42);
      if (backingFormat === "raw") await writeFile(base, baseBytes);
      else {
        const raw = join(dir, "tmp-base.raw");
        await writeFile(raw, baseBytes);
        await qemuImg(["convert", "-O", "qcow2", raw, base]);
      }
      const top = join(dir, `top-${backingFormat}.qcow2`);
      const dev = await createOverlay(top, `base-${backingFormat}.img`);
      expect(dev.size).toBe(size);
      expect(dev.backingInfo).toMatchObject({ name: `base-${backingFormat}.img`, format: backingFormat });
      const m = new Mirror(dev, baseBytes.slice());
      await workload(m, 9);
      await dev.close();
      await expectCleanAndEqual(dir, top, m.model);
      await expectSameMap(top);
      const info = await qemuImgInfo(top);
      expect(info["backing-filename"]).toBe(`base-${backingFormat}.img`);
      expect(info["backing-filename-format"]).toBe(backingFormat);
    });
  }

  it("writes an extended-L2 overlay (subcluster COW) and a v2 overlay (real zeros over backing)", async () => {
    const base = join(dir, "xbase.raw");
    const size = 3 * M;
    const baseBytes = randomBytes(size, 77);
    await writeFile(base, baseBytes);
    for (const opts of [
      { extendedL2: true },
      { version: 2 as const },
      { extendedL2: true, clusterSize: 2 * M },
      // 512-byte clusters: header + backing-format extension + name leave no room for the
      // feature-name table, which is then left out (as qemu does).
      { clusterSize: 512 },
    ]) {
      const top = join(dir, `xtop-${JSON.stringify(opts).replace(/\W+/g, "")}.qcow2`);
      const dev = await createQcow2(top, { ...opts, backing: { path: "xbase.raw", format: "raw" } });
      const m = new Mirror(dev, baseBytes.slice());
      await workload(m, 11);
      await dev.close();
      await expectCleanAndEqual(dir, top, m.model);
    }
  });

  it("zero writes in v3 allocate no data; discard frees clusters", async () => {
    const image = join(dir, "zero.qcow2");
    const dev = await createQcow2(image, { size: 8 * M });
    await dev.write(0, randomBytes(4 * M, 3));
    await dev.flush();
    const used = (await qemuImgInfo(image))["actual-size"];
    await dev.writeZeroes(0, 2 * M);
    await dev.discard(2 * M, 2 * M);
    await dev.writeZeroes(4 * M, 4 * M); // unallocated: nothing to do
    await dev.close();
    await expectCleanAndEqual(dir, image, new Uint8Array(8 * M));
    const map = JSON.parse(await qemuImg(["map", "--output=json", image])) as {
      data: boolean;
      zero: boolean;
    }[];
    expect(map.every((e) => !e.data)).toBe(true);
    const check = await qemuImg(["check", "--output=json", image]);
    expect(JSON.parse(check)["allocated-clusters"] ?? 0).toBe(0);
    expect(used).toBeGreaterThan(0);
  });

  it("rewrites compressed clusters (zlib and zstd) through copy-on-write", async () => {
    for (const ctype of ["zlib", "zstd"]) {
      const raw = join(dir, `cw-${ctype}.raw`);
      const content = compressibleBytes(2 * M, 5);
      await writeFile(raw, content);
      const image = join(dir, `cw-${ctype}.qcow2`);
      await qemuImg(["convert", "-c", "-O", "qcow2", "-o", `compression_type=${ctype}`, raw, image]);
      const dev = await openQcow2(image);
      const m = new Mirror(dev, content.slice());
      await m.write(1000, randomBytes(5000, 1));
      await m.write(M - 10, randomBytes(100 * K, 2));
      await m.zero(64 * K * 5 + 100, 100);
      await m.discard(64 * K * 8, 64 * K * 2);
      await dev.close();
      await expectCleanAndEqual(dir, image, m.model);
    }
  });

  it("copies clusters shared with an internal snapshot (no COPIED flag) and leaves the snapshot intact", async () => {
    const image = join(dir, "snapw.qcow2");
    await qemuImg(["create", "-f", "qcow2", image, "2M"]);
    await qemuIo(image, ["write -P 0x01 0 2M"]);
    await qemuImg(["snapshot", "-c", "s1", image]);
    const snapBytes = await qemuRaw(dir, image);
    const dev = await openQcow2(image);
    const m = new Mirror(dev, snapBytes.slice());
    await m.write(100, randomBytes(1000, 4));
    await m.write(64 * K, randomBytes(64 * K, 5));
    await m.zero(512 * K, 64 * K);
    await m.discard(M, 64 * K);
    await dev.close();
    await expectCleanAndEqual(dir, image, m.model);
    // the snapshot still shows the old bytes, for qemu and for us
    const copy = join(dir, "snapw-copy.qcow2");
    await copyFile(image, copy);
    await qemuImg(["snapshot", "-a", "s1", copy]);
    expectSameBytes(await qemuRaw(dir, copy), snapBytes, "qemu snapshot apply");
    const view = await openQcow2(image, { snapshot: "s1" });
    expectSameBytes(await view.read(0, view.size), snapBytes, "our snapshot view");
    await view.close();
  });

  it("on first write clears the bitmaps autoclear bit and drops the stale bitmaps cleanly", async () => {
    const image = join(dir, "bitmaps.qcow2");
    await qemuImg(["create", "-f", "qcow2", image, "1M"]);
    await qemuImg(["bitmap", "--add", "-g", "512", image, "b0"]);
    await qemuIo(image, ["write -P 3 0 1M", "write -z 0 1M"]); // the bitmap records these: it gets data clusters
    const before = await qemuImgInfo(image);
    expect(JSON.stringify(before)).toContain("b0");
    const ro = await openQcow2(image, { readOnly: true });
    expect(ro.header.autoclearFeatures).toBe(1n);
    expect(ro.extensions.bitmaps?.nbBitmaps).toBe(1);
    await ro.close();
    const dev = await openQcow2(image);
    await dev.write(0, new Uint8Array(512).fill(1));
    expect(dev.header.autoclearFeatures).toBe(0n);
    await dev.close();
    const again = await openQcow2(image, { readOnly: true });
    expect(again.header.autoclearFeatures).toBe(0n);
    expect(again.extensions.bitmaps).toBeUndefined();
    await again.close();
    await expectCleanAndEqual(dir, image, new Uint8Array(M).fill(1, 0, 512));
    expect(JSON.stringify(await qemuImgInfo(image))).not.toContain("b0");
  });

  it("large sequential writes coalesce into few host writes", async () => {
    const image = join(dir, "seq.qcow2");
    const dev = await createQcow2(image, { size: 64 * M });
    const host = dev.hostFile;
    let writes = 0;
    const orig = host.write.bind(host);
    const origv = host.writev?.bind(host);
    host.write = async (o, d) => {
      writes++;
      return orig(o, d);
    };
    if (origv) {
      host.writev = async (o, p) => {
        writes++;
        return origv(o, p);
      };
    }
    const chunk = randomBytes(8 * M, 1);
    for (let off = 0; off < 64 * M; off += 8 * M) await dev.write(off, chunk);
    expect(writes).toBeLessThanOrEqual(16); // one data write per call (+ metadata on eviction)
    await dev.close();
    expect((await qemuImg(["check", image])).includes("No errors")).toBe(true);
  });
});
