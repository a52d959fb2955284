import { mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import {
  describeWithTools,
  fixture,
  fixtureInfo,
  fixtureNames,
  qemuImg,
  qemuImgInfo,
  qemuIo,
  tempDir,
} from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { createOverlay, createQcow2 } from "../src/index.js";
import { imageInfo, qcow2Info, toQemuJson } from "../src/info.js";

async function expectSameInfo(path: string, backingChain = false) {
  const theirs = await qemuImgInfo(path, { backingChain });
  const ours = (await qcow2Info(path, { backingChain })).map(toQemuJson);
  if (backingChain) expect(ours).toEqual(theirs.chain);
  else expect(ours[0]).toEqual(theirs);
}

describeWithTools(["qemu-img", "qemu-io"], "info agrees with qemu-img info", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir("qcow2-info-");
  });

  const fixtures = fixtureNames().filter((n) => fixtureInfo(n).format === "qcow2");
  it.each(fixtures)("fixture %s (with its backing chain)", async (name) => {
    const p = await fixture(name);
    await expectSameInfo(p);
    await expectSameInfo(p, true);
  });

  it("option variants made by qemu-img", async () => {
    const variants = [
      "compat=0.10",
      "compat=1.1,lazy_refcounts=on",
      "compression_type=zstd",
      "extended_l2=on,cluster_size=128k",
      "refcount_bits=64,cluster_size=4k",
      "refcount_bits=2",
    ];
    for (const [i, o] of variants.entries()) {
      const p = join(dir, `v${i}.qcow2`);
      await qemuImg(["create", "-q", "-f", "qcow2", "-o", o, p, "3M"]);
      await qemuIo(p, ["write -P 1 0 70k"]);
      await expectSameInfo(p);
    }
  });

  it("snapshots, bitmaps, and a three-level chain with relative names", async () => {
    const sub = join(dir, "chain");
    await mkdir(join(sub, "deeper"), { recursive: true });
    const base = join(sub, "base.raw");
    await qemuImg(["create", "-q", "-f", "raw", base, "2M"]);
    const mid = join(sub, "deeper", "mid.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", "-b", "../base.raw", "-F", "raw", mid]);
    await qemuImg(["snapshot", "-c", "first", mid]);
    await qemuIo(mid, ["write -P 7 0 64k"]);
    await qemuImg(["snapshot", "-c", "second snap", mid]);
    await qemuImg(["bitmap", "--add", "-g", "128k", mid, "bm0"]);
    await qemuImg(["bitmap", "--add", "--disable", mid, "bm1"]);
    const top = join(sub, "top.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", "-b", "deeper/mid.qcow2", "-F", "qcow2", top]);
    await expectSameInfo(mid);
    await expectSameInfo(top, true);
  });

  it("dirty and corrupt flags", async () => {
    const p = join(dir, "flags.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", p, "1M"]);
    for (const bits of [1, 3]) {
      const fh = await open(p, "r+");
      await fh.write(new Uint8Array([bits]), 0, 1, 79); // incompatible_features, low byte
      await fh.close();
      await expectSameInfo(p);
      const [info] = await qcow2Info(p);
      expect(info?.dirtyFlag).toBe(true);
      expect(info?.qcow2?.corrupt).toBe(bits === 3);
    }
  });

  it("images we create (with and without a backing file)", async () => {
    const a = join(dir, "ours-a.qcow2");
    await (await createQcow2(a, { size: 5 * 1024 * 1024, version: 2, clusterSize: 4096 })).close();
    await expectSameInfo(a);
    const b = join(dir, "ours-b.qcow2");
    await (await createOverlay(b, "ours-a.qcow2", { backingFormat: "qcow2", extendedL2: true })).close();
    await expectSameInfo(b, true);
    const info = await imageInfo(b);
    expect(info.qcow2?.extendedL2).toBe(true);
    expect(info.fullBackingFilename).toBe(a);
  });
});
