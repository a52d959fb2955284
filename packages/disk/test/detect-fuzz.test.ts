import { fixture } from "@imgpatch/testkit";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import {
  detectFilesystem,
  detectImageFormat,
  FileDevice,
  type FilesystemType,
  ImgpatchError,
  inspectDisk,
  MemoryDevice,
} from "../src/index.js";

// Detection reads superblocks written by strangers: whatever the bytes, it must return a result
// (or null) — never throw a RangeError from reading past a buffer, never hang.

const PROBE = 0x11000;
const seeds: Uint8Array[] = [];

async function head(name: string, offset = 0, length = PROBE): Promise<Uint8Array> {
  const dev = await FileDevice.open(await fixture(name), { readOnly: true });
  try {
    return await dev.read(offset, Math.min(length, dev.size - offset));
  } finally {
    await dev.close();
  }
}

// Offsets detection actually reads (FAT BPB, ext superblock magic/features, swap, partition
// entries), so a good share of edits hit fields that matter rather than file data.
const HOT = [0, 2, 3, 11, 12, 13, 14, 16, 17, 19, 21, 22, 32, 36, 38, 66, 446, 450, 454, 458, 462, 510, 511];
HOT.push(...[0x38, 0x39, 0x4c, 0x5c, 0x60, 0x61, 0x64].map((o) => 1024 + o), 4086);

const KNOWN: FilesystemType[] = [
  "ext2",
  "ext3",
  "ext4",
  "jbd",
  "xfs",
  "btrfs",
  "vfat",
  "exfat",
  "ntfs",
  "f2fs",
];

describe("fuzz: detection on mutated superblocks", () => {
  beforeAll(async () => {
    seeds.push(
      await head("ext4-default.img"),
      await head("ext2.img"),
      await head("disk-gpt.img", 2 * 1024 * 1024),
    );
    seeds.push(await head("disk-mbr.img", 0, 4 * 1024 * 1024)); // a whole MBR disk for inspectDisk
  });

  it("detectFilesystem / detectImageFormat / inspectDisk never throw anything but typed errors", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat(),
        fc.array(
          fc.record({
            at: fc.oneof(fc.nat({ max: PROBE - 1 }), fc.constantFrom(...HOT)),
            byte: fc.nat({ max: 255 }),
          }),
          {
            maxLength: 40,
          },
        ),
        fc.option(fc.nat({ max: PROBE }), { freq: 4 }),
        async (which, edits, cut) => {
          let img = seeds[which % seeds.length].slice();
          for (const e of edits) if (e.at < img.length) img[e.at] = e.byte;
          if (cut !== null) img = img.slice(0, cut);
          const dev = new MemoryDevice(img);
          const fs = await detectFilesystem(dev);
          if (fs)
            expect(KNOWN.concat(["swap", "LVM2_member", "crypto_LUKS", "iso9660", "squashfs"])).toContain(
              fs.type,
            );
          await detectImageFormat(dev);
          try {
            await inspectDisk(dev, { lenient: true });
          } catch (err) {
            if (!(err instanceof ImgpatchError)) throw err;
          }
        },
      ),
      { numRuns: 600 },
    );
  });

  it("random bytes at every magic offset", async () => {
    const magics: Array<[number, string]> = [
      [0, "XFSB"],
      [0x10040, "_BHRfS_M"],
      [4086, "SWAPSPACE2"],
      [0, "LABELONE"],
      [0, "LUKS\xba\xbe"],
      [0x8001, "CD001"],
      [0, "hsqs"],
      [1080, "\x53\xef"],
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...magics),
        fc.uint8Array({ minLength: 0, maxLength: PROBE }),
        async ([off, magic], bytes) => {
          const img = new Uint8Array(Math.max(bytes.length, 0));
          img.set(bytes);
          for (let i = 0; i < magic.length && off + i < img.length; i++) img[off + i] = magic.charCodeAt(i);
          await detectFilesystem(new MemoryDevice(img));
          await detectImageFormat(new MemoryDevice(img));
        },
      ),
      { numRuns: 300 },
    );
  });
});
