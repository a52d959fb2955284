import { describe, expect, it } from "vitest";
import {
  ChecksumError,
  FormatError,
  inspectDisk,
  MAX_GPT_ENTRY_ARRAY_BYTES,
  MAX_LOGICAL_PARTITIONS,
  MemoryDevice,
  openPartition,
  PartitionNotFoundError,
  PartitionOverlapError,
  PartitionRangeError,
  readPartitionTable,
  selectVolume,
} from "../src/index.js";
import { buildGpt, ESP, fixGptCrcs, LINUX_FS, patchGptHeader, writeMbrSector } from "./helpers/tables.js";

const MiB = 1024 * 1024;
const u1 = "aaaaaaaa-0000-0000-0000-000000000001";
const u2 = "aaaaaaaa-0000-0000-0000-000000000002";

function goodGpt(sectorSize = 512, diskSectors = 8192): Uint8Array {
  return buildGpt({
    sectorSize,
    diskSectors,
    entries: [
      { type: ESP, uuid: u1, first: 2048, last: 4095, name: "esp" },
      { type: LINUX_FS, uuid: u2, first: 4096, last: diskSectors - 40, name: "root" },
    ],
  });
}

const dev = (bytes: Uint8Array, name = "test.img") => new MemoryDevice(bytes, { name });

/** An MBR disk with an extended partition whose EBR chain the test writes itself. */
function mbrWithExtended(sizeSectors = 8192): {
  img: Uint8Array;
  ebr: (lba: number, entries: number[][]) => void;
} {
  const img = new Uint8Array(sizeSectors * 512);
  writeMbrSector(img.subarray(0, 512), [
    { type: 0x83, start: 64, sectors: 1000 },
    { type: 0x05, start: 2048, sectors: sizeSectors - 2048 },
  ]);
  // entries: [type, relStart, sectors]
  const ebr = (lba: number, entries: number[][]) =>
    writeMbrSector(
      img.subarray(lba * 512, lba * 512 + 512),
      entries.map(([type, start, sectors]) => ({ type, start, sectors })),
      0,
    );
  return { img, ebr };
}

describe("GPT: damaged and hostile headers", () => {
  it("a valid GPT parses with no warnings", async () => {
    const t = (await readPartitionTable(dev(goodGpt())))!;
    expect(t.type).toBe("gpt");
    expect(t.warnings).toEqual([]);
    expect(t.partitions.map((p) => [p.number, p.name, p.start])).toEqual([
      [1, "esp", 2048 * 512],
      [2, "root", 4096 * 512],
    ]);
  });

  it("bad entry-array CRC in the primary → backup used, warning names the CRC mismatch", async () => {
    const img = goodGpt();
    img[2 * 512 + 56] ^= 1; // a byte of entry 1's name
    const t = (await readPartitionTable(dev(img)))!;
    expect(t.gpt!.usedBackup).toBe(true);
    expect(t.gpt!.headerLba).toBe(8191);
    expect(t.warnings[0]).toMatch(/entry array CRC32 mismatch/);
    expect(t.partitions[0].name).toBe("esp");
  });

  it("both copies corrupt → ChecksumError naming the primary header CRC offset", async () => {
    const img = goodGpt();
    img[512 + 0x28] ^= 1;
    img[8191 * 512 + 0x28] ^= 1;
    const err = await readPartitionTable(dev(img)).catch((e) => e);
    expect(err).toBeInstanceOf(ChecksumError);
    expect(err.offset).toBe(512 + 0x10);
    expect(err.message).toMatch(/test\.img @ offset 528 .*no usable GPT: primary: .*backup: /);
  });

  it("a damaged backup is reported as a warning while the primary is used", async () => {
    const img = goodGpt();
    img[8191 * 512 + 0x30] ^= 1;
    const t = (await readPartitionTable(dev(img)))!;
    expect(t.gpt!.usedBackup).toBe(false);
    expect(t.warnings.join()).toMatch(/backup GPT is unusable: .*CRC32 mismatch/);
  });

  it("a disk grown after partitioning (backup not at the end) gives a warning, not an error", async () => {
    const small = goodGpt(512, 8192);
    const grown = new Uint8Array(16384 * 512);
    grown.set(small);
    const t = (await readPartitionTable(dev(grown)))!;
    expect(t.partitions).toHaveLength(2);
    expect(t.warnings.join()).toMatch(/backup GPT header is at LBA 8191, not at the last LBA 16383/);
  });

  it("a truncated disk: last usable LBA past the end → FormatError with the field offset", async () => {
    const img = goodGpt().slice(0, 6000 * 512);
    const err = await readPartitionTable(dev(img)).catch((e) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toMatch(/last usable LBA 8158 is past the end of the disk/);
  });

  it.each([
    ["entry count 2^32-1", 0x50, 0xffffffff, 4, /entry array of 4294967295 × 128 bytes exceeds/],
    ["entry size 2^31", 0x54, 0x80000000, 4, /entry array of 128 × 2147483648 bytes exceeds/],
    ["entry size 100", 0x54, 100, 4, /entry size 100 is not 128 × 2\^n/],
    ["entry size 384", 0x54, 384, 4, /entry size 384 is not 128 × 2\^n/],
    ["header size 4 GiB", 0x0c, 0xffffffff, 4, /header size 4294967295 is outside 92\.\.512/],
    ["entries LBA 2^60", 0x48, 1n << 60n, 8, /GPT LBA 1152921504606846976 is too large/],
    ["entries past the end", 0x48, 8190, 8, /entry array .* reaches past the end/],
    ["entries on the header", 0x48, 1, 8, /overlaps its own header/],
    ["my LBA wrong", 0x18, 7, 8, /says it is at LBA 7/],
  ])(
    "hostile header with a valid CRC (%s) → FormatError, no big allocation",
    async (_t, field, value, width, re) => {
      const img = goodGpt();
      patchGptHeader(img, 512, 1, field, value, width as 4 | 8);
      patchGptHeader(img, 512, 8191, field, value, width as 4 | 8);
      const err = await readPartitionTable(dev(img)).catch((e) => e);
      expect(err).toBeInstanceOf(FormatError);
      expect(err.message).toMatch(re);
      expect(err.offset).toBeGreaterThanOrEqual(512);
    },
  );

  it("the largest allowed entry array is accepted", async () => {
    const count = MAX_GPT_ENTRY_ARRAY_BYTES / 128;
    const img = buildGpt({
      diskSectors: 20000,
      entryCount: count,
      entries: [{ index: count - 1, type: LINUX_FS, uuid: u1, first: 9000, last: 10000 }],
    });
    const t = (await readPartitionTable(dev(img)))!;
    expect(t.partitions.map((p) => p.number)).toEqual([count]);
  });

  it("overlapping GPT partitions → PartitionOverlapError (strict) or a warning (lenient)", async () => {
    const img = buildGpt({
      diskSectors: 8192,
      entries: [
        { type: LINUX_FS, uuid: u1, first: 2048, last: 5000 },
        { type: LINUX_FS, uuid: u2, first: 4096, last: 6000 },
      ],
    });
    const err = await readPartitionTable(dev(img)).catch((e) => e);
    expect(err).toBeInstanceOf(PartitionOverlapError);
    expect(err.partition).toBe(2);
    expect(err.other).toBe(1);
    expect(err.offset).toBe(2 * 512 + 128);
    const t = (await readPartitionTable(dev(img), { lenient: true }))!;
    expect(t.partitions).toHaveLength(2);
    expect(t.warnings.join()).toMatch(/partition 2 overlaps partition 1/);
  });

  it("GPT partition past the disk or outside the usable area → PartitionRangeError; lenient lists it", async () => {
    const img = buildGpt({
      diskSectors: 8192,
      entries: [
        { type: LINUX_FS, uuid: u1, first: 2048, last: 9000 },
        { type: LINUX_FS, uuid: u2, first: 10, last: 20 },
        { type: LINUX_FS, uuid: u2, first: 30, last: 25 },
      ],
    });
    const err = await readPartitionTable(dev(img)).catch((e) => e);
    expect(err).toBeInstanceOf(PartitionRangeError);
    expect(err.message).toMatch(/partition 1: LBA 2048-9000 ends past the end of the disk/);
    const d = dev(img);
    const t = (await readPartitionTable(d, { lenient: true }))!;
    expect(t.partitions.map((p) => p.number)).toEqual([1, 2]);
    expect(t.warnings).toHaveLength(3);
    expect(t.warnings.join("\n")).toMatch(/outside the usable area/);
    expect(t.warnings.join("\n")).toMatch(/partition 3: last LBA 25 is before first LBA 30/);
    await expect(openPartition(d, 1, { table: t })).rejects.toThrow(/ends past the device/);
  });

  it("protective MBR but no GPT anywhere → FormatError", async () => {
    const img = new Uint8Array(MiB);
    writeMbrSector(img, [{ type: 0xee, start: 1, sectors: 2047 }]);
    await expect(readPartitionTable(dev(img))).rejects.toThrow(/protective MBR .* but no GPT header/);
  });

  it("GPT without a protective MBR is read with a warning", async () => {
    const img = goodGpt();
    img.fill(0, 0, 512);
    const t = (await readPartitionTable(dev(img)))!;
    expect(t.type).toBe("gpt");
    expect(t.protectiveMbr).toBeUndefined();
    expect(t.warnings.join()).toMatch(/without a protective MBR/);
  });

  it("4096-byte sectors: found without being told, and with sectorSize 4096", async () => {
    const img = goodGpt(4096, 8192);
    const t = (await readPartitionTable(dev(img)))!;
    expect(t.sectorSize).toBe(4096);
    expect(t.partitions[0].start).toBe(2048 * 4096);
    expect((await readPartitionTable(dev(img), { sectorSize: 4096 }))!.sectorSize).toBe(4096);
  });

  it("a header field change without CRC fix is caught by the CRC", async () => {
    const img = goodGpt();
    new DataView(img.buffer).setUint32(512 + 0x50, 1000, true);
    new DataView(img.buffer).setUint32(8191 * 512 + 0x50, 1000, true);
    await expect(readPartitionTable(dev(img))).rejects.toBeInstanceOf(ChecksumError);
    fixGptCrcs(img, 512, 1, { entries: false });
    // Now the header is self-consistent but the entry CRC covers 1000 entries: still a checksum error.
    await expect(readPartitionTable(dev(img))).rejects.toThrow(/entry array CRC32 mismatch/);
  });
});

describe("MBR: extended chains and bad entries", () => {
  it("follows a chain and numbers logicals from 5", async () => {
    const { img, ebr } = mbrWithExtended();
    ebr(2048, [
      [0x83, 63, 100],
      [0x05, 200, 300],
    ]);
    ebr(2248, [[0x82, 10, 50]]);
    const t = (await readPartitionTable(dev(img)))!;
    expect(t.partitions.map((p) => [p.number, p.kind, p.start / 512, p.size / 512, p.type])).toEqual([
      [1, "primary", 64, 1000, "0x83"],
      [2, "extended", 2048, 6144, "0x05"],
      [5, "logical", 2111, 100, "0x83"],
      [6, "logical", 2258, 50, "0x82"],
    ]);
    expect(t.partitions[2].uuid).toBe("1234abcd-05");
  });

  it("a looping chain → FormatError naming the EBR offset; lenient keeps what it found", async () => {
    const { img, ebr } = mbrWithExtended();
    ebr(2048, [
      [0x83, 63, 100],
      [0x05, 200, 300],
    ]);
    ebr(2248, [
      [0x83, 10, 50],
      [0x05, 0, 300], // back to the first EBR
    ]);
    const err = await readPartitionTable(dev(img)).catch((e) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toMatch(/loops back to the EBR at LBA 2048/);
    expect(err.offset).toBe(2048 * 512);
    const t = (await readPartitionTable(dev(img), { lenient: true }))!;
    expect(t.partitions.map((p) => p.number)).toEqual([1, 2, 5, 6]);
    expect(t.warnings).toHaveLength(1);
  });

  it(`an endless chain is cut at ${MAX_LOGICAL_PARTITIONS} links`, async () => {
    const { img, ebr } = mbrWithExtended(4096 * 2);
    for (let i = 0; i < 400; i++) {
      ebr(2048 + i * 4, [
        [0x83, 1, 2],
        [0x05, (i + 1) * 4, 4],
      ]);
    }
    await expect(readPartitionTable(dev(img))).rejects.toThrow(/chain longer than 256 links/);
    const t = (await readPartitionTable(dev(img), { lenient: true }))!;
    expect(t.partitions.filter((p) => p.kind === "logical")).toHaveLength(MAX_LOGICAL_PARTITIONS);
  });

  it("an EBR pointing outside the extended partition → FormatError", async () => {
    const { img, ebr } = mbrWithExtended();
    ebr(2048, [
      [0x83, 63, 100],
      [0x05, 100000, 10],
    ]);
    await expect(readPartitionTable(dev(img))).rejects.toThrow(
      /LBA 102048 lies outside the extended partition/,
    );
  });

  it("a logical partition reaching past its container → PartitionRangeError", async () => {
    const { img, ebr } = mbrWithExtended();
    ebr(2048, [[0x83, 63, 7000]]);
    const err = await readPartitionTable(dev(img)).catch((e) => e);
    expect(err).toBeInstanceOf(PartitionRangeError);
    expect(err.partition).toBe(5);
    expect(err.offset).toBe(2048 * 512 + 446);
  });

  it("a logical partition on top of its own EBR → PartitionRangeError", async () => {
    const { img, ebr } = mbrWithExtended();
    ebr(2048, [[0x83, 0, 100]]);
    await expect(readPartitionTable(dev(img))).rejects.toThrow(
      /partition 5: logical partition starts on its own extended boot record/,
    );
  });

  it("garbage EBR without signature → error; zeroed first EBR = no logicals", async () => {
    const { img } = mbrWithExtended();
    const t = (await readPartitionTable(dev(img)))!;
    expect(t.partitions.map((p) => p.number)).toEqual([1, 2]);
    img[2048 * 512 + 7] = 1;
    await expect(readPartitionTable(dev(img))).rejects.toThrow(/no 0x55AA signature/);
  });

  it("primary past the end of the disk, primary at LBA 0, overlapping primaries", async () => {
    const img = new Uint8Array(MiB);
    writeMbrSector(img, [{ type: 0x83, start: 100, sectors: 5000 }]);
    await expect(readPartitionTable(dev(img))).rejects.toThrow(
      /partition 1: bytes .* end past the end of the disk/,
    );
    writeMbrSector(img, [{ type: 0x83, start: 0, sectors: 50 }]);
    await expect(readPartitionTable(dev(img))).rejects.toThrow(/starts at LBA 0/);
    writeMbrSector(img, [
      { type: 0x83, start: 100, sectors: 500 },
      { type: 0x83, start: 300, sectors: 500 },
    ]);
    await expect(readPartitionTable(dev(img))).rejects.toBeInstanceOf(PartitionOverlapError);
    const t = (await readPartitionTable(dev(img), { lenient: true }))!;
    expect(t.warnings[0]).toMatch(/partition 2 overlaps partition 1/);
  });

  it("MBR entries with 32-bit extremes do not overflow", async () => {
    const img = new Uint8Array(MiB);
    writeMbrSector(img, [{ type: 0x83, start: 0xffffffff, sectors: 0xffffffff }]);
    const err = await readPartitionTable(dev(img)).catch((e) => e);
    expect(err).toBeInstanceOf(PartitionRangeError);
    expect(err.message).toMatch(/2199023255040-4398046510079/);
  });

  it("no table: zeros, FAT superfloppy boot sector, invalid status bytes, tiny device", async () => {
    expect(await readPartitionTable(dev(new Uint8Array(MiB)))).toBeNull();
    expect(await readPartitionTable(dev(new Uint8Array(100)))).toBeNull();
    const fat = new Uint8Array(MiB);
    fat.set([0xeb, 0x3c, 0x90], 0);
    new DataView(fat.buffer).setUint16(11, 512, true);
    fat[13] = 4;
    new DataView(fat.buffer).setUint16(14, 1, true);
    fat[16] = 2;
    fat[510] = 0x55;
    fat[511] = 0xaa;
    expect(await readPartitionTable(dev(fat))).toBeNull();
    const boot = new Uint8Array(MiB);
    writeMbrSector(boot, [{ type: 0x83, start: 100, sectors: 10, status: 0x12 }]);
    expect(await readPartitionTable(dev(boot))).toBeNull();
  });

  it("an MBR with a stale GPT header behind it is read as MBR, with a warning", async () => {
    const img = goodGpt();
    writeMbrSector(img.subarray(0, 512), [{ type: 0x83, start: 2048, sectors: 4000 }]);
    const t = (await readPartitionTable(dev(img)))!;
    expect(t.type).toBe("mbr");
    expect(t.warnings.join()).toMatch(/GPT header at LBA 1 is ignored/);
  });

  it("openPartition errors", async () => {
    const d = dev(new Uint8Array(MiB));
    await expect(openPartition(d, 1)).rejects.toBeInstanceOf(PartitionNotFoundError);
  });
});

describe("selectVolume", () => {
  const ext4At = (img: Uint8Array, byteOffset: number) => {
    new DataView(img.buffer).setUint16(byteOffset + 1024 + 0x38, 0xef53, true);
    new DataView(img.buffer).setUint32(byteOffset + 1024 + 0x60, 0x2c2, true);
  };
  const ROOT_X64 = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";

  it("picks the only ext volume, or the one by number, and refuses others clearly", async () => {
    const img = buildGpt({
      diskSectors: 8192,
      entries: [
        { type: ESP, uuid: u1, first: 2048, last: 4095 },
        { type: LINUX_FS, uuid: u2, first: 4096, last: 6143 },
        { type: LINUX_FS, uuid: u2, first: 6144, last: 8000 },
      ],
    });
    ext4At(img, 4096 * 512);
    img.set(new TextEncoder().encode("hsqs"), 6144 * 512);
    const d = dev(img);
    const inspection = await inspectDisk(d);
    const chosen = selectVolume(d, inspection);
    expect(chosen.volume.partition?.number).toBe(2);
    expect(chosen.device.size).toBe(2048 * 512);
    expect(chosen.device.name).toBe("test.img:p2");
    expect(() => selectVolume(d, inspection, { partition: 3 })).toThrow(
      /test\.img @ offset 3145728 .*: partition 3 is squashfs \(SquashFS filesystem\) — not supported/,
    );
    expect(() => selectVolume(d, inspection, { partition: 1 })).toThrow(/partition 1 holds no recognisable/);
    expect(() => selectVolume(d, inspection, { partition: 7 })).toThrow(PartitionNotFoundError);
  });

  it("several ext volumes: the Linux root type wins, else an error listing them", async () => {
    const spec = (rootType: string) =>
      buildGpt({
        diskSectors: 8192,
        entries: [
          { type: LINUX_FS, uuid: u1, first: 2048, last: 4095 },
          { type: rootType, uuid: u2, first: 4096, last: 8000 },
        ],
      });
    for (const [type, expected] of [
      [ROOT_X64, 2],
      [LINUX_FS, null],
    ] as const) {
      const img = spec(type);
      ext4At(img, 2048 * 512);
      ext4At(img, 4096 * 512);
      const d = dev(img);
      const inspection = await inspectDisk(d);
      if (expected) expect(selectVolume(d, inspection).volume.partition?.number).toBe(expected);
      else
        expect(() => selectVolume(d, inspection)).toThrow(
          /several ext2\/3\/4\/XFS partitions: 1 \(ext4\), 2 \(ext4\)/,
        );
    }
  });

  it("a bare filesystem is its own volume; nothing usable is an error naming what was found", async () => {
    const img = new Uint8Array(MiB);
    ext4At(img, 0);
    const d = dev(img);
    const chosen = selectVolume(d, await inspectDisk(d));
    expect(chosen.device).toBe(d);
    const z = dev(new Uint8Array(MiB));
    expect(() => selectVolume(z, { table: null, volumes: [{ filesystem: null }] })).toThrow(
      /no ext2\/ext3\/ext4\/XFS filesystem found \(the disk is unrecognised\)/,
    );
  });
});
