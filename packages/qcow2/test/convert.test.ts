import { copyFile, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import {
  describeWithTools,
  fixture,
  qemuImg,
  qemuImgCheck,
  qemuImgCompare,
  qemuImgInfo,
  qemuIo,
  tempDir,
} from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { checkQcow2 } from "../src/check.js";
import { type ConvertOptions, convertImage } from "../src/convert.js";

describeWithTools(["qemu-img", "qemu-io"], "convert, checked by qemu-img", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir("qcow2-convert-");
  });

  let n = 0;
  async function convertAndVerify(src: string, options: ConvertOptions = {}) {
    const out = join(dir, `out-${n++}.${options.format === "raw" ? "raw" : "qcow2"}`);
    const stats = await convertImage(src, out, options);
    if (options.format !== "raw") {
      const check = await qemuImgCheck(out);
      expect({ exit: check.exitCode, leaks: check.leaks, corruptions: check.corruptions }).toEqual({
        exit: 0,
        leaks: 0,
        corruptions: 0,
      });
      const ours = await checkQcow2(out);
      expect(ours.leaks + ours.corruptions).toBe(0);
    }
    const cmp = await qemuImgCompare(src, out);
    expect(cmp.output).toContain("Images are identical");
    expect((await qemuImgInfo(out))["virtual-size"]).toBe((await qemuImgInfo(src))["virtual-size"]);
    return { out, stats };
  }

  const sources = [
    "pattern-v2.qcow2",
    "pattern-v3.qcow2",
    "pattern-extl2.qcow2",
    "pattern-compressed.qcow2",
    "pattern-zero.qcow2",
    "pattern-512.qcow2",
    "pattern-refcount1.qcow2",
    "overlay.qcow2",
    "ext4-inline-v2-compressed.qcow2",
  ];
  it.each(sources)("%s → qcow2 v3 (flattened, zeros unallocated)", async (name) => {
    const src = await fixture(name);
    const { out, stats } = await convertAndVerify(src);
    expect((await qemuImgInfo(out))["backing-filename"]).toBeUndefined();
    expect(stats.zeroClusters).toBeGreaterThan(0);
    // zero clusters were neither read nor stored
    const check = await qemuImgCheck(out);
    expect(check.json["allocated-clusters"]).toBe(stats.dataClusters);
  });

  it.each(["pattern-v3.qcow2", "overlay.qcow2", "pattern-extl2.qcow2"])(
    "%s → compressed qcow2",
    async (name) => {
      const { out, stats } = await convertAndVerify(await fixture(name), { compress: "deflate" });
      expect(stats.compressedClusters).toBeGreaterThan(0);
      const check = await qemuImgCheck(out);
      expect(check.json["compressed-clusters"]).toBe(stats.compressedClusters);
    },
  );

  it("compressed output with extended L2, 512-byte and 2 MiB clusters", async () => {
    const src = await fixture("pattern-extl2.qcow2");
    for (const options of [
      { compress: "deflate", extendedL2: true, clusterSize: 32768 },
      { compress: "deflate", clusterSize: 512 },
      { compress: "deflate", clusterSize: 2 * 1024 * 1024, version: 2 },
    ] as ConvertOptions[]) {
      const { stats } = await convertAndVerify(src, options);
      expect(stats.compressedClusters, JSON.stringify(options)).toBeGreaterThan(0);
    }
  });

  it("raw → qcow2 (v2, 4 KiB clusters; v3 extended L2) and back to raw", async () => {
    const raw = await fixture("pattern.raw");
    await convertAndVerify(raw, { version: 2, clusterSize: 4096 });
    const { out } = await convertAndVerify(raw, { extendedL2: true, clusterSize: 32768 });
    const back = await convertAndVerify(out, { format: "raw" });
    const st = await stat(back.out);
    expect(st.blocks * 512).toBeLessThan(st.size); // sparse
  });

  it("runs of data clusters written in one call across L2 tables (512-byte clusters, odd chunks)", async () => {
    // 512-byte clusters: an L2 table maps 32 KiB, so every data run of a read chunk spans many tables
    const raw = join(dir, "runs.raw");
    const bytes = new Uint8Array(3 * 1024 * 1024 + 512);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >>> 9)) & 0xff || 1;
    bytes.fill(0, 1024 * 1024, 1024 * 1024 + 40_000); // a zero run inside: the data run breaks there
    await writeFile(raw, bytes);
    for (const options of [
      { clusterSize: 512 },
      { clusterSize: 512, chunkBytes: 3 * 512 * 1000 + 512 },
      { clusterSize: 16384, extendedL2: true, chunkBytes: 5 * 16384 },
    ] as ConvertOptions[]) {
      const { stats } = await convertAndVerify(raw, options);
      const cs = options.clusterSize ?? 65536;
      expect(stats.dataClusters, JSON.stringify(options)).toBeGreaterThan(
        Math.floor((bytes.length - 40_000) / cs) - 2,
      );
    }
  });

  it("a raw file whose size is not a whole number of sectors", async () => {
    const raw = join(dir, "odd.raw");
    await writeFile(raw, new Uint8Array(1024 * 1024 + 1000).fill(0x6b));
    const { out } = await convertAndVerify(raw);
    expect((await qemuImgInfo(out))["virtual-size"]).toBe(1024 * 1024 + 1024);
  });

  it("a sparse raw image stays sparse; all-zero data clusters are dropped", async () => {
    const raw = join(dir, "sparse.raw");
    await qemuImg(["create", "-q", "-f", "raw", raw, "64M"]);
    await qemuIo(raw, ["write -P 0x5a 1M 100k", "write -P 0 8M 1M", "write -P 0x5b 63M 4k"], {
      format: "raw",
    });
    const { stats } = await convertAndVerify(raw);
    expect(stats.dataClusters).toBe(3); // 1M..1M+100k spans 2 clusters, plus the last one
  });

  it("zero and unallocated ranges of a qcow2 source are never read", async () => {
    const src = join(dir, "mostly-empty.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", src, "256M"]);
    await qemuIo(src, ["write -P 0x31 1M 192k", "write -z 10M 8M", "write -P 0x32 200M 64k"]);
    const { stats } = await convertAndVerify(src);
    expect(stats.bytesRead).toBe(256 * 1024);
    expect(stats.dataClusters).toBe(4);
  });

  it("onProgress: done only grows, stays within the size, and ends at the virtual size", async () => {
    const src = join(dir, "progress.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", src, "32M"]);
    await qemuIo(src, ["write -P 0x41 0 3M", "write -P 0x42 12M 2M", "write -P 0x43 31M 1M"]);
    for (const options of [
      { chunkBytes: 1 << 20 },
      { chunkBytes: 1 << 20, compress: "deflate" as const },
      { chunkBytes: 1 << 20, format: "raw" as const },
    ]) {
      const calls: Array<[number, number]> = [];
      await convertAndVerify(src, { ...options, onProgress: (d, t) => calls.push([d, t]) });
      expect(calls.length).toBeGreaterThan(3); // 1 MiB steps over 6 MiB of data report along the way
      for (let i = 0; i < calls.length; i++) {
        expect(calls[i][1]).toBe(32 << 20);
        expect(calls[i][0]).toBeLessThanOrEqual(32 << 20);
        if (i > 0) expect(calls[i][0]).toBeGreaterThan(calls[i - 1][0]);
      }
      expect(calls[calls.length - 1][0]).toBe(32 << 20);
    }
  });

  it("-B: output is an overlay holding only the differences (v3 zero clusters hide backing data)", async () => {
    const base = join(dir, "b-base.qcow2");
    await copyFile(await fixture("pattern-v3.qcow2"), base);
    const top = join(dir, "b-top.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", "-b", basename(base), "-F", "qcow2", top]);
    await qemuIo(top, ["write -P 0x77 100k 10k", "write -z 1M 192k", "write -P 0x78 3M 64k"]);
    for (const version of [3, 2] as const) {
      const { out, stats } = await convertAndVerify(top, {
        backing: { path: basename(base), format: "qcow2" },
        version,
      });
      const info = await qemuImgInfo(out);
      expect(info["backing-filename"]).toBe(basename(base));
      expect(stats.sameAsBacking).toBeGreaterThan(0);
      expect(stats.dataClusters + stats.zeroClusters).toBeLessThanOrEqual(6);
    }
  });

  it("refuses to overwrite unless asked, and refuses zstd", async () => {
    const raw = await fixture("pattern.raw");
    const out = join(dir, "exists.qcow2");
    await convertImage(raw, out);
    await expect(convertImage(raw, out)).rejects.toThrow();
    await convertImage(raw, out, { overwrite: true });
    await expect(
      convertImage(raw, join(dir, "z.qcow2"), { compress: "zstd" as unknown as "deflate" }),
    ).rejects.toThrow(/deflate only/);
  });
});
