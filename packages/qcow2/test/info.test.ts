import { mkdir, open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ImgpatchError } from "@imgpatch/disk";
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

  it("random damage to header, snapshot table and bitmap directory: same facts as qemu-img info", async () => {
    const sub = join(dir, "fuzz");
    await mkdir(sub, { recursive: true });
    await qemuImg(["create", "-q", "-f", "raw", join(sub, "base.raw"), "2M"]);
    const src = join(sub, "src.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", src]);
    await qemuImg(["snapshot", "-c", "first", src]);
    await qemuIo(src, ["write -P 7 0 64k"]);
    await qemuImg(["snapshot", "-c", "second snap", src]);
    await qemuImg(["bitmap", "--add", "-g", "128k", src, "bm0"]);
    const orig = await readFile(src);
    const snapAt = Number(orig.readBigUInt64BE(64));
    let dirAt = 0;
    for (let i = 104; i + 32 <= 4096; i += 8) {
      if (orig.readUInt32BE(i) === 0x23852875) {
        dirAt = Number(orig.readBigUInt64BE(i + 24));
        break;
      }
    }
    expect(dirAt).toBeGreaterThan(0);
    let x = 4242;
    const rnd = () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return x >>> 0;
    };
    const p = join(sub, "mutant.qcow2");
    let compared = 0;
    for (let t = 0; t < 240; t++) {
      const m = Buffer.from(orig);
      const at = t % 3 === 0 ? rnd() % 512 : t % 3 === 1 ? snapAt + (rnd() % 200) : dirAt + (rnd() % 120);
      m[at] = rnd() & 0xff;
      await writeFile(p, m);
      let theirs: Awaited<ReturnType<typeof qemuImgInfo>>;
      try {
        theirs = await qemuImgInfo(p);
      } catch {
        continue; // qemu refuses it too
      }
      let ours: ReturnType<typeof toQemuJson>;
      try {
        ours = toQemuJson(await imageInfo(p));
      } catch (e) {
        expect(e).toBeInstanceOf(ImgpatchError); // we may be stricter, with a typed error
        continue;
      }
      expect({ t, at, info: ours }).toEqual({ t, at, info: theirs });
      compared++;
    }
    expect(compared).toBeGreaterThan(150);
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
