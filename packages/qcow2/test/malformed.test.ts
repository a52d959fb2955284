import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ImgpatchError } from "@imgpatch/disk";
import { describeWithTools, qemuImg, qemuImgInfo, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import {
  buildEmptyImage,
  createQcow2,
  headerField,
  MemoryHostFile,
  openQcow2,
  Qcow2BackingLoopError,
  Qcow2FormatError,
  Qcow2UnsupportedError,
} from "../src/index.js";
import { compressibleBytes, randomBytes } from "./helpers.js";

const CS = 4096;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return (
    Buffer.compare(
      Buffer.from(a.buffer, a.byteOffset, a.length),
      Buffer.from(b.buffer, b.byteOffset, b.length),
    ) === 0
  );
}

/** A small valid image with data in it, made by our own writer (no tools needed). */
async function sampleImage(): Promise<Uint8Array> {
  const host = new MemoryHostFile(new Uint8Array(0), "sample.qcow2");
  const dev = await createQcow2(host, { size: 1 << 20, clusterSize: CS });
  await dev.write(0, randomBytes(20000, 1));
  await dev.write(600000, randomBytes(5000, 2));
  await dev.writeZeroes(100000, CS * 2);
  await dev.close();
  return host.bytes.slice();
}

function setField(img: Uint8Array, name: Parameters<typeof headerField>[0], value: number | bigint) {
  const f = headerField(name);
  const v = new DataView(img.buffer, img.byteOffset);
  if (f.width === 8) v.setBigUint64(f.at, BigInt(value));
  else if (f.width === 4) v.setUint32(f.at, Number(value));
  else v.setUint8(f.at, Number(value));
}

function getU64(img: Uint8Array, at: number): number {
  return Number(new DataView(img.buffer, img.byteOffset).getBigUint64(at));
}

/** Open (and read everything); returns the error, asserting nothing was written. */
async function openError(img: Uint8Array, opts: { readOnly?: boolean } = {}): Promise<unknown> {
  const before = img.slice();
  const host = new MemoryHostFile(img, "bad.qcow2");
  try {
    const dev = await openQcow2(host, { readOnly: opts.readOnly ?? true, onWarning: () => {} });
    try {
      await dev.read(0, dev.size);
      await dev.mapExtents(0, dev.size);
    } finally {
      await dev.close();
    }
    return null;
  } catch (err) {
    expect(sameBytes(host.bytes, before), "nothing written to a failed image").toBe(true);
    return err;
  }
}

async function expectFieldError(img: Uint8Array, field: string | RegExp, opts: { readOnly?: boolean } = {}) {
  const err = await openError(img, opts);
  expect(err, `expected an error naming ${field}`).toBeInstanceOf(ImgpatchError);
  const e = err as ImgpatchError & { field?: string };
  if (typeof field === "string") expect(e.field ?? e.message).toContain(field);
  else expect(e.field ?? e.message).toMatch(field);
  expect(e.file).toBe("bad.qcow2");
  return e;
}

describe("malformed images: typed errors naming the field and offset", () => {
  let good: Uint8Array;
  beforeAll(async () => {
    good = await sampleImage();
  });
  const mutate = (fn: (img: Uint8Array) => void) => {
    const img = good.slice();
    fn(img);
    return img;
  };

  it("opens the unmutated sample", async () => {
    expect(await openError(good.slice())).toBeNull();
  });

  it("header fields", async () => {
    let e = await expectFieldError(
      mutate((i) => setField(i, "magic", 0x12345678)),
      "magic",
    );
    expect(e.offset).toBe(0);
    e = await expectFieldError(
      mutate((i) => setField(i, "version", 4)),
      "version",
    );
    expect(e).toBeInstanceOf(Qcow2UnsupportedError);
    await expectFieldError(
      mutate((i) => setField(i, "cluster_bits", 8)),
      "cluster_bits",
    );
    await expectFieldError(
      mutate((i) => setField(i, "cluster_bits", 22)),
      "cluster_bits",
    );
    await expectFieldError(
      mutate((i) => setField(i, "cluster_bits", 0xffffffff)),
      "cluster_bits",
    );
    await expectFieldError(
      mutate((i) => setField(i, "refcount_order", 7)),
      "refcount_order",
    );
    await expectFieldError(
      mutate((i) => setField(i, "header_length", 100)),
      "header_length",
    );
    await expectFieldError(
      mutate((i) => setField(i, "header_length", 108)),
      "header_length",
    );
    await expectFieldError(
      mutate((i) => setField(i, "header_length", CS + 8)),
      "header_length",
    );
    await expectFieldError(
      mutate((i) => setField(i, "size", 2n ** 62n)),
      "size",
    );
    await expectFieldError(
      mutate((i) => setField(i, "size", 2 ** 50)),
      "l1_size",
    );
    e = await expectFieldError(
      mutate((i) => setField(i, "l1_size", 2 ** 31)),
      "L1",
    );
    await expectFieldError(
      mutate((i) => setField(i, "l1_table_offset", 2 ** 40)),
      "L1",
    );
    await expectFieldError(
      mutate((i) => setField(i, "l1_table_offset", CS * 3 + 8)),
      "L1",
    );
    await expectFieldError(
      mutate((i) => setField(i, "backing_file_offset", 200)),
      /backing_file/,
    );
    await expectFieldError(
      mutate((i) => {
        setField(i, "backing_file_offset", 200);
        setField(i, "backing_file_size", 5000);
      }),
      "backing_file_size",
    );
    await expectFieldError(
      mutate((i) => setField(i, "nb_snapshots", 1_000_000)),
      /nb_snapshots|snapshots_offset/,
    );
    await expectFieldError(
      mutate((i) => {
        setField(i, "nb_snapshots", 1);
        setField(i, "snapshots_offset", 2 ** 40);
      }),
      "snapshots_offset",
    );
  });

  it("refcount structures (checked when opening for writing)", async () => {
    const e = await expectFieldError(
      mutate((i) => setField(i, "refcount_table_offset", 2 ** 40)),
      "refcount_table_offset",
      { readOnly: false },
    );
    expect(e.offset).toBe(2 ** 40);
    await expectFieldError(
      mutate((i) => setField(i, "refcount_table_clusters", 2 ** 30)),
      "refcount_table_clusters",
      {
        readOnly: false,
      },
    );
    await expectFieldError(
      mutate((i) => setField(i, "refcount_table_clusters", 0)),
      "refcount_table_clusters",
      {
        readOnly: false,
      },
    );
    const rt = getU64(good, headerField("refcount_table_offset").at);
    await expectFieldError(
      mutate((i) => new DataView(i.buffer).setBigUint64(rt, 12345n)),
      "refcount_table[0]",
      { readOnly: false },
    );
    await expectFieldError(
      mutate((i) => new DataView(i.buffer).setBigUint64(rt, 2n ** 45n)),
      "refcount_table[0]",
      { readOnly: false },
    );
  });

  it("feature bits: unknown, encryption, external data file, dirty, corrupt", async () => {
    let e = await expectFieldError(
      mutate((i) => setField(i, "incompatible_features", 1n << 5n)),
      "incompatible_features",
    );
    expect(e.message).toContain("bit 5");
    // an unknown bit named in the image's feature-name table is reported by name
    e = await expectFieldError(
      mutate((i) => {
        setField(i, "incompatible_features", 1n << 9n);
        const entry = 112 + 8; // first entry of our feature-name table extension
        i[entry + 1] = 9;
        i.fill(0, entry + 2, entry + 48);
        i.set(new TextEncoder().encode("frobnication"), entry + 2);
      }),
      "incompatible_features",
    );
    expect(e.message).toContain("frobnication");
    e = await expectFieldError(
      mutate((i) => setField(i, "crypt_method", 1)),
      "encryption",
    );
    expect(e.message).toContain("AES");
    e = await expectFieldError(
      mutate((i) => setField(i, "crypt_method", 2)),
      "encryption",
    );
    expect(e.message).toContain("LUKS");
    await expectFieldError(
      mutate((i) => setField(i, "incompatible_features", 1n << 2n)),
      "external data file",
    );
    // dirty / corrupt: read-only works (with a warning), writable is refused
    for (const bit of [0n, 1n]) {
      const img = mutate((i) => setField(i, "incompatible_features", 1n << bit));
      const warnings: string[] = [];
      const ro = await openQcow2(new MemoryHostFile(img.slice(), "bad.qcow2"), {
        readOnly: true,
        onWarning: (m) => warnings.push(m),
      });
      await ro.read(0, 4096);
      await ro.close();
      expect(warnings.length).toBe(1);
      await expectFieldError(img, bit === 0n ? "dirty" : "corrupt", { readOnly: false });
    }
  });

  it("L1/L2 entries and compressed descriptors", async () => {
    const l1 = getU64(good, headerField("l1_table_offset").at);
    const l2 = getU64(good, l1) & 0x00ff_ffff_ffff_fe00;
    const dv = (i: Uint8Array) => new DataView(i.buffer);
    let e = await expectFieldError(
      mutate((i) => dv(i).setBigUint64(l1, (1n << 63n) | (1n << 40n))),
      "L1[0]",
    );
    expect(e.offset).toBe(l1);
    await expectFieldError(
      mutate((i) => dv(i).setBigUint64(l1, (1n << 63n) | BigInt(l2 + 512))),
      "L1[0]",
    );
    // L2 entry misaligned / past EOF
    e = await expectFieldError(
      mutate((i) => dv(i).setBigUint64(l2, (1n << 63n) | 0x10200n)),
      "L2[0] of L1[0]",
    );
    expect(e.offset).toBe(l2);
    await expectFieldError(
      mutate((i) => dv(i).setBigUint64(l2, (1n << 63n) | (1n << 44n))),
      /data cluster/,
    );
    // compressed descriptor pointing past EOF, and one pointing at garbage
    const x = 70n - 12n; // cluster_bits 12
    await expectFieldError(
      mutate((i) => dv(i).setBigUint64(l2, (1n << 62n) | (3n << x) | (1n << 40n))),
      "compressed",
    );
    await expectFieldError(
      mutate((i) => dv(i).setBigUint64(l2, (1n << 62n) | (1n << x) | 4096n)),
      "compressed",
    );
  });

  it("header extensions", async () => {
    // our v3 images carry a feature-name table right after the 112-byte header
    await expectFieldError(
      mutate((i) => new DataView(i.buffer).setUint32(112 + 4, 1 << 20)),
      "header extension",
    );
  });
});

describeWithTools(["qemu-img"], "backing chains", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir("qcow2-bad-");
  });

  it("detects cyclic backing chains (self and two-image loops) without hanging", async () => {
    const a = join(dir, "a.qcow2");
    const b = join(dir, "b.qcow2");
    await qemuImg(["create", "-f", "qcow2", a, "1M"]);
    await qemuImg(["create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b]);
    // point a at b (-u: unsafe, no checks) → a → b → a
    await qemuImg(["rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a]);
    const before = await readFile(a);
    const err = await openQcow2(a).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Qcow2BackingLoopError);
    expect((err as Qcow2BackingLoopError).chain.length).toBe(3);
    expect(sameBytes(await readFile(a), before)).toBe(true);
    const self = join(dir, "self.qcow2");
    await qemuImg(["create", "-f", "qcow2", self, "1M"]);
    await qemuImg(["rebase", "-u", "-f", "qcow2", "-b", "self.qcow2", "-F", "qcow2", self]);
    expect(await openQcow2(self, { readOnly: true }).catch((e: unknown) => e)).toBeInstanceOf(
      Qcow2BackingLoopError,
    );
  });

  it("a missing backing file is a clear I/O error; backing: 'none' opens the layer alone", async () => {
    const top = join(dir, "orphan.qcow2");
    await qemuImg(["create", "-f", "qcow2", "-b", "gone.raw", "-F", "raw", "-u", top, "1M"]);
    const err = (await openQcow2(top).catch((e: unknown) => e)) as ImgpatchError;
    expect(err).toBeInstanceOf(ImgpatchError);
    expect(err.message).toContain("gone.raw");
    const dev = await openQcow2(top, { readOnly: true, backing: "none" });
    expect(dev.backingInfo?.name).toBe("gone.raw");
    await dev.close();
  });
});

describeWithTools(["qemu-img"], "backing names with NUL bytes", () => {
  it("end at the first NUL as in qemu; a name starting with NUL means no backing file", async () => {
    const dir = await tempDir("qcow2-nul-");
    const base = join(dir, "nb.raw");
    const baseBytes = new Uint8Array(64 * 1024).map((_, i) => (i * 7 + 1) & 0xff);
    await writeFile(base, baseBytes);
    const top = join(dir, "top.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", "-b", "nb.raw", "-F", "raw", top]);
    const pristine = new Uint8Array(await readFile(top));
    const view = new DataView(pristine.buffer);
    const nameAt = Number(view.getBigUint64(8));
    for (const [file, name, expectBacking] of [
      ["cut.qcow2", "nb.raw\0zz", "nb.raw"],
      ["empty.qcow2", "\0zz", undefined],
    ] as const) {
      const img = pristine.slice();
      img.set(new TextEncoder().encode(name), nameAt);
      new DataView(img.buffer).setUint32(16, name.length);
      const path = join(dir, file);
      await writeFile(path, img);
      const info = await qemuImgInfo(path);
      expect(info["backing-filename"]).toBe(expectBacking);
      const dev = await openQcow2(path, { readOnly: true });
      expect(dev.backingInfo?.name).toBe(expectBacking);
      const data = await dev.read(0, baseBytes.length);
      expect(sameBytes(data, expectBacking ? baseBytes : new Uint8Array(baseBytes.length))).toBe(true);
      await dev.close();
    }
  });
});

describeWithTools(["qemu-img"], "fuzzed metadata", () => {
  it("random corruption of header and metadata clusters: typed errors or correct reads, never a crash", async () => {
    const dir = await tempDir("qcow2-fuzz-");
    const raw = join(dir, "src.raw");
    await writeFile(raw, compressibleBytes(256 * 1024, 3));
    const images: Uint8Array[] = [await sampleImage()];
    for (const o of ["cluster_size=4096", "cluster_size=16384,extended_l2=on"]) {
      const out = join(dir, `c${images.length}.qcow2`);
      await qemuImg(["convert", "-c", "-O", "qcow2", "-o", o, raw, out]);
      images.push(new Uint8Array(await readFile(out)));
    }
    await fc.assert(
      fc.asyncProperty(
        fc.nat(images.length - 1),
        fc.array(fc.tuple(fc.nat(6 * CS), fc.nat(255)), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        async (which, flips, writable) => {
          const img = images[which]!.slice();
          for (const [at, v] of flips) if (at < img.length) img[at] = v;
          const host = new MemoryHostFile(img, "fuzz.qcow2");
          const before = img.slice();
          let dev: Awaited<ReturnType<typeof openQcow2>> | null = null;
          try {
            dev = await openQcow2(host, { readOnly: !writable, backing: "none", onWarning: () => {} });
          } catch (err) {
            expect(err).toBeInstanceOf(ImgpatchError);
            expect(sameBytes(host.bytes, before)).toBe(true);
            return;
          }
          try {
            await dev.read(0, Math.min(dev.size, 1 << 20));
            if (writable) {
              await dev.write(4000, randomBytes(9000, 1));
              await dev.writeZeroes(70000, 5000);
              await dev.flush();
            }
          } catch (err) {
            if (!(err instanceof ImgpatchError)) throw err;
          } finally {
            await dev.close().catch((err: unknown) => {
              if (!(err instanceof ImgpatchError)) throw err;
            });
          }
        },
      ),
      { numRuns: 1000, seed: 4242 },
    );
  });
});

describe("refusals", () => {
  it("refuses to create impossible images", async () => {
    expect(() => buildEmptyImage({ size: 1 << 20, clusterSize: 1000 })).toThrow(/power of two/);
    expect(() => buildEmptyImage({ size: 1 << 20, version: 2, refcountBits: 8 })).toThrow(/16-bit/);
    expect(() => buildEmptyImage({ size: 1 << 20, extendedL2: true, clusterSize: 4096 })).toThrow(/16 KiB/);
    expect(() => buildEmptyImage({ size: 2 ** 50, clusterSize: 512 })).toThrow(/32 MiB/);
  });

  it("read-only devices refuse writes", async () => {
    const host = new MemoryHostFile(await sampleImage(), "ro.qcow2");
    const dev = await openQcow2(host, { readOnly: true });
    await expect(dev.write(0, new Uint8Array(1))).rejects.toThrow(/read-only/);
    await dev.close();
  });

  it("a Qcow2FormatError is a FormatError with a field", () => {
    const e = new Qcow2FormatError("l1_size", "x", { file: "f", offset: 36 });
    expect(e.code).toBe("EFORMAT");
    expect(e.message).toBe("f @ offset 36 (0x24): l1_size: x");
  });
});
