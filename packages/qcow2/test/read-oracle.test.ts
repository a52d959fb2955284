import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, qemuImg, qemuIo, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { openQcow2, Qcow2UnsupportedError } from "../src/index.js";
import { compressibleBytes, expectSameBytes, qemuMap, qemuRaw, randomBytes } from "./helpers.js";

/** Writes exercising unaligned, cross-cluster, zero and discard paths. */
const QEMU_WRITES = [
  "write -P 0x11 0 1M",
  "write -P 0x22 1536k 100k",
  "write -P 0x33 3000 7000",
  "write -z 256k 128k",
  "write -z 4097 3000",
  "discard 512k 64k",
  "write -P 0x44 2047k 2k",
  "write -P 0x55 3M 1M",
  "write -z 3200k 64k",
];

describeWithTools(["qemu-img", "qemu-io"], "reading images made by qemu-img/qemu-io", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir("qcow2-read-");
  });

  async function checkRead(image: string, extraWrites: string[] = []) {
    await qemuIo(image, [...QEMU_WRITES, ...extraWrites]);
    const expected = await qemuRaw(dir, image);
    const dev = await openQcow2(image, { readOnly: true });
    try {
      expect(await dev.mapExtents(0, dev.size)).toEqual(await qemuMap(image));
      expect(dev.size).toBe(expected.length);
      expectSameBytes(await dev.read(0, dev.size), expected, image);
      // unaligned reads, crossing clusters
      for (const [off, len] of [
        [1, 511],
        [4000, 70000],
        [1048575, 3],
        [dev.size - 1000, 1000],
      ] as const) {
        expectSameBytes(await dev.read(off, len), expected.subarray(off, off + len), `${image} @${off}`);
      }
    } finally {
      await dev.close();
    }
  }

  const configs: [string, string][] = [
    ["v2 64k", "compat=0.10,cluster_size=65536"],
    ["v3 64k", "compat=1.1,cluster_size=65536"],
    ["v3 512B", "cluster_size=512"],
    ["v3 2M", "cluster_size=2M"],
    ["v2 4k", "compat=0.10,cluster_size=4096"],
    ["extended_l2 64k", "extended_l2=on,cluster_size=65536"],
    ["extended_l2 32k", "extended_l2=on,cluster_size=32768"],
    ["refcount_bits=1", "refcount_bits=1"],
    ["refcount_bits=2", "refcount_bits=2,cluster_size=4096"],
    ["refcount_bits=4", "refcount_bits=4"],
    ["refcount_bits=8", "refcount_bits=8"],
    ["refcount_bits=32", "refcount_bits=32"],
    ["refcount_bits=64", "refcount_bits=64,cluster_size=512"],
  ];
  for (const [name, opts] of configs) {
    it(`reads ${name} byte-for-byte like qemu-img convert`, async () => {
      const image = join(dir, `${name.replace(/\W+/g, "_")}.qcow2`);
      await qemuImg(["create", "-f", "qcow2", "-o", opts, image, "5M"]);
      await checkRead(image);
    });
  }

  it("reads extended-L2 subcluster writes and zero subclusters", async () => {
    const image = join(dir, "subcl.qcow2");
    await qemuImg(["create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=64k", image, "5M"]);
    // 64k clusters → 2k subclusters
    await checkRead(image, [
      "write -P 0x66 2k 2k",
      "write -z 6k 4k",
      "write -P 0x77 70k 1",
      "discard 128k 64k",
    ]);
  });

  for (const ctype of ["zlib", "zstd"]) {
    it(`reads ${ctype}-compressed clusters`, async () => {
      const raw = join(dir, `src-${ctype}.raw`);
      const content = new Uint8Array(3 * 1024 * 1024 + 4096);
      content.set(compressibleBytes(1024 * 1024, 7), 0);
      content.set(randomBytes(200 * 1024, 9), 1024 * 1024); // incompressible → stored plain
      content.set(compressibleBytes(1024 * 1024, 3), 2 * 1024 * 1024 + 100);
      await writeFile(raw, content);
      for (const cs of ["512", "65536", "2M"]) {
        const image = join(dir, `c-${ctype}-${cs}.qcow2`);
        await qemuImg([
          "convert",
          "-c",
          "-O",
          "qcow2",
          "-o",
          `compression_type=${ctype},cluster_size=${cs}`,
          raw,
          image,
        ]);
        const dev = await openQcow2(image, { readOnly: true });
        expectSameBytes(await dev.read(0, dev.size), content, image);
        expectSameBytes(await dev.read(100, 70000), content.subarray(100, 70100), `${image} partial`);
        await dev.close();
      }
    });
  }

  it("follows a chain of overlays with relative backing names, down to a raw base", async () => {
    const sub = join(dir, "chain");
    await qemuImg(["create", "-f", "raw", join(dir, "base.raw"), "4M"]);
    await qemuIo(join(dir, "base.raw"), ["write -P 0xa1 0 4M"], { format: "raw" });
    const { mkdir } = await import("node:fs/promises");
    await mkdir(sub, { recursive: true });
    // mid is in a subdirectory and refers to ../base.raw; top refers to chain/mid.qcow2
    await qemuImg(["create", "-f", "qcow2", "-b", "../base.raw", "-F", "raw", join(sub, "mid.qcow2")]);
    await qemuIo(join(sub, "mid.qcow2"), ["write -P 0xb2 64k 100k", "write -z 1M 64k"]);
    await qemuImg([
      "create",
      "-f",
      "qcow2",
      "-b",
      "chain/mid.qcow2",
      "-F",
      "qcow2",
      join(dir, "top.qcow2"),
      "6M",
    ]);
    await qemuIo(join(dir, "top.qcow2"), ["write -P 0xc3 100k 10k", "write -P 0xc4 5M 4k", "discard 2M 64k"]);
    const expected = await qemuRaw(dir, join(dir, "top.qcow2"));
    const dev = await openQcow2(join(dir, "top.qcow2"), { readOnly: true });
    expect(dev.backingInfo).toMatchObject({ name: "chain/mid.qcow2", format: "qcow2" });
    expectSameBytes(await dev.read(0, dev.size), expected, "chain");
    // past the base's end (4M..6M) reads zeros except what top wrote
    const extents = await dev.mapExtents(0, dev.size);
    expect(extents.reduce((a, e) => a + e.length, 0)).toBe(dev.size);
    await dev.close();
  });

  it("probes the backing format when the extension is absent", async () => {
    const base = join(dir, "probe-base.qcow2");
    await qemuImg(["create", "-f", "qcow2", base, "1M"]);
    await qemuIo(base, ["write -P 0x5a 0 1M"]);
    const top = join(dir, "probe-top.qcow2");
    // qemu 7.2 requires -F at create time: rename the extension's type so it reads as unknown
    await qemuImg(["create", "-f", "qcow2", "-b", "probe-base.qcow2", "-F", "qcow2", top]);
    const bytes = await readFile(top);
    const at = bytes.indexOf(Buffer.from([0xe2, 0x79, 0x2a, 0xca]));
    expect(at).toBeGreaterThan(0);
    bytes.writeUInt32BE(0x7e570001, at);
    await writeFile(top, bytes);
    const dev = await openQcow2(top, { readOnly: true });
    expect(dev.backingInfo?.format).toBeUndefined();
    expect((await dev.read(1000, 10)).every((b) => b === 0x5a)).toBe(true);
    await dev.close();
  });

  it("lists internal snapshots and reads a snapshot's view", async () => {
    const image = join(dir, "snap.qcow2");
    await qemuImg(["create", "-f", "qcow2", image, "2M"]);
    await qemuIo(image, ["write -P 0x01 0 2M"]);
    await qemuImg(["snapshot", "-c", "first", image]);
    const before = await qemuRaw(dir, image);
    await qemuIo(image, ["write -P 0x02 64k 64k", "write -z 1M 4k"]);
    const after = await qemuRaw(dir, image);
    const dev = await openQcow2(image, { readOnly: true });
    expect(dev.snapshots.map((s) => s.name)).toEqual(["first"]);
    expect(dev.snapshots[0]!.diskSize).toBe(2 * 1024 * 1024);
    expectSameBytes(await dev.read(0, dev.size), after, "active");
    await dev.close();
    const snap = await openQcow2(image, { snapshot: "first" });
    expect(snap.readOnly).toBe(true);
    expectSameBytes(await snap.read(0, snap.size), before, "snapshot view");
    await snap.close();
  });

  for (const raw of ["on", "off"]) {
    it(`reads an image whose data lives in an external data file (data_file_raw=${raw}); refuses to write it`, async () => {
      const image = join(dir, `ext-${raw}.qcow2`);
      const data = join(dir, `ext-${raw}.data`); // absolute: qemu resolves relative names against its cwd
      await qemuImg(["create", "-f", "qcow2", "-o", `data_file=${data},data_file_raw=${raw}`, image, "5M"]);
      await checkRead(image);
      const err = await openQcow2(image).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Qcow2UnsupportedError);
      expect(String(err)).toContain("read-only");
    });
  }

  it("maps extents like qemu-img map (data / zero / unallocated)", async () => {
    const image = join(dir, "map.qcow2");
    await qemuImg(["create", "-f", "qcow2", image, "1M"]);
    await qemuIo(image, ["write -P 1 0 128k", "write -z 256k 64k"]);
    const dev = await openQcow2(image, { readOnly: true });
    expect(await dev.mapExtents(0, dev.size)).toEqual([
      { offset: 0, length: 131072, kind: "data" },
      { offset: 131072, length: 131072, kind: "unallocated" },
      { offset: 262144, length: 65536, kind: "zero" },
      { offset: 327680, length: 1048576 - 327680, kind: "unallocated" },
    ]);
    await dev.close();
  });
});
