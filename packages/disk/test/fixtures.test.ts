import { fixture, fixtureNames, fixturesIndex } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { detectFilesystem, detectImageFormat, FileDevice, inspectDisk } from "../src/index.js";

// Every committed fixture (made by the real tools, see test-fixtures/generate.sh) read through the
// disk layer: container format, partition table against the generator's record, filesystems.

const index = fixturesIndex();
const CONTENT_TO_FS: Record<string, string | null> = {
  ext2: "ext2",
  ext3: "ext3",
  ext4: "ext4",
  vfat: "vfat",
  swap: "swap",
  "bios-boot": null,
};

describe("committed fixtures", () => {
  it.each(fixtureNames())("%s", async (name) => {
    const info = index.fixtures[name];
    const dev = await FileDevice.open(await fixture(name), { readOnly: true });
    try {
      const format = await detectImageFormat(dev);
      expect(format.format).toBe(info.format);
      expect(format.supported).toBe(true);
      if (info.qcow2) expect(format.version).toBe(info.qcow2.compat === "0.10" ? 2 : 3);
      if (info.format !== "raw") return; // the guest view needs @imgpatch/qcow2
      if (info.partitions && info.partitions.length > 0) {
        const disk = await inspectDisk(dev);
        expect(disk.table?.type).toBe(info.content);
        expect(disk.table?.warnings).toEqual([]);
        const parts = disk.table!.partitions;
        expect(parts.map((p) => p.number)).toEqual(info.partitions.map((p) => p.number));
        for (const fp of info.partitions) {
          const p = parts.find((x) => x.number === fp.number)!;
          expect([p.start, p.size], `partition ${fp.number}`).toEqual([fp.offset, fp.size]);
          if (disk.table!.type === "gpt") {
            expect(p.type).toBe(fp.type.toLowerCase());
            expect(p.name).toBe(fp.name);
            expect(p.uuid).toBe(fp.uuid?.toLowerCase());
          } else {
            expect(Number.parseInt(p.type, 16)).toBe(Number.parseInt(fp.type, 16));
          }
          if (fp.content === "extended") {
            expect(p.kind).toBe("extended");
            continue;
          }
          const vol = disk.volumes.find((v) => v.partition?.number === fp.number)!;
          expect(vol.filesystem?.type ?? null, `partition ${fp.number}`).toBe(CONTENT_TO_FS[fp.content]);
          if (fp.fsUuid) expect(vol.filesystem?.uuid).toBe(fp.fsUuid);
        }
      } else if (info.content in CONTENT_TO_FS) {
        const fs = await detectFilesystem(dev);
        expect(fs?.type).toBe(info.content);
        if (info.fsUuid) expect(fs?.uuid).toBe(info.fsUuid);
      }
    } finally {
      await dev.close();
    }
  });
});
