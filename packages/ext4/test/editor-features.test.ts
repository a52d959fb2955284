/**
 * The scripted edit scenario on every feature set (ext2, ext3, ext4 ± metadata_csum, 64bit,
 * inline_data, 1 KiB / 4 KiB blocks, 128-byte inodes), at a partition offset of a GPT disk and
 * inside a qcow2 overlay: e2fsck -fn clean, debugfs and our reader read back what we wrote.
 * Plus reproducibility (byte-identical images) and refusals.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FileDevice, RangeDevice } from "@imgpatch/disk";
import { Ext4Editor, Ext4UnsupportedError } from "@imgpatch/ext4";
import { createOverlay } from "@imgpatch/qcow2";
import {
  debugfsStat,
  describeWithTools,
  fixture,
  fixtureCopy,
  fixtureInfo,
  qemuImg,
  tempDir,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { FEATURE_SETS, makeImage, openEditor, scenario, verify } from "./editor-helpers.js";

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "ext4 editor: every feature set", () => {
  for (const [name, args] of Object.entries(FEATURE_SETS)) {
    it(`${name}: scripted edits are e2fsck-clean and read back`, async () => {
      const dir = await tempDir("ed-");
      const path = await makeImage(dir, name, args);
      const ed = await openEditor(path);
      const exp = await scenario(ed, 300_000);
      await ed.close();
      await verify(path, exp, ["/opt"]);
      // Reopen and keep editing: a second session sees the first one's state.
      const ed2 = await openEditor(path);
      await ed2.writeFile("/opt/agent/second", "2");
      exp.set("/opt/agent/second", {
        type: "file",
        mode: 0o644,
        uid: 0,
        gid: 0,
        content: new TextEncoder().encode("2"),
      });
      await ed2.close();
      await verify(path, exp, ["/opt"]);
    });
  }

  it("times carry nanoseconds and post-2038 seconds; generation is deterministic", async () => {
    const dir = await tempDir("ed-");
    const path = await makeImage(dir, "t", FEATURE_SETS["ext4-csum"]);
    const ed = await openEditor(path, { timestamp: 4_200_000_000.5 });
    await ed.writeFile("/f", "x");
    await ed.utimes("/f", new Date(1_234_567_890_123), 3_000_000_000.25);
    await ed.close();
    const st = await debugfsStat(path, "/f");
    expect(st.mtime).toEqual({ sec: 3_000_000_000, nsec: 250_000_000 });
    expect(st.atime).toEqual({ sec: 1_234_567_890, nsec: 123_000_000 });
    expect(st.ctime).toEqual({ sec: 4_200_000_000, nsec: 500_000_000 });
    expect(st.crtime).toEqual({ sec: 4_200_000_000, nsec: 500_000_000 });
  });

  it("two runs of the same edits give byte-identical images (SOURCE_DATE_EPOCH)", async () => {
    const dir = await tempDir("ed-");
    const a = await makeImage(dir, "a", FEATURE_SETS["ext4-csum"]);
    const b = join(dir, "b.img");
    await writeFile(b, await readFile(a));
    const old = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = "1700000000";
    try {
      for (const p of [a, b]) {
        const ed = await Ext4Editor.open(await FileDevice.open(p));
        await scenario(ed, 100_000);
        await ed.close();
      }
    } finally {
      if (old === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = old;
    }
    expect(Buffer.compare(await readFile(a), await readFile(b))).toBe(0);
    const st = await debugfsStat(a, "/opt/agent/hello.txt");
    expect(st.ctime?.sec).toBe(1_700_000_000);
  });

  it("edits the ext4 partition of a GPT disk through a RangeDevice", async () => {
    const dir = await tempDir("ed-");
    const img = await fixtureCopy("disk-gpt.img", dir);
    const part = fixtureInfo("disk-gpt.img").partitions?.[2];
    if (!part) throw new Error("fixture has no third partition");
    const dev = await FileDevice.open(img);
    const before = await readFile(img);
    const ed = await Ext4Editor.open(new RangeDevice(dev, part.offset, part.size), {
      timestamp: 1_700_000_000,
    });
    const exp = await scenario(ed, 200_000);
    await ed.close();
    await verify({ path: img, offset: part.offset }, exp, ["/opt"]);
    // Nothing outside the partition changed.
    const after = await readFile(img);
    expect(Buffer.compare(after.subarray(0, part.offset), before.subarray(0, part.offset))).toBe(0);
    const end = part.offset + part.size;
    expect(Buffer.compare(after.subarray(end), before.subarray(end))).toBe(0);
  });

  it("edits an ext4 image inside a qcow2 overlay", async () => {
    const dir = await tempDir("ed-");
    const base = await fixture("ext4-default.img");
    const overlay = join(dir, "overlay.qcow2");
    const dev = await createOverlay(overlay, base, { backingFormat: "raw" });
    const ed = await Ext4Editor.open(dev, { timestamp: 1_700_000_000 });
    const exp = await scenario(ed, 200_000);
    await ed.close();
    const raw = join(dir, "flat.img");
    await qemuImg(["convert", "-O", "raw", overlay, raw]);
    await verify(raw, exp, ["/opt"]);
  });

  it("refuses a filesystem whose journal needs recovery, and unsupported features", async () => {
    const dir = await tempDir("ed-");
    const path = await makeImage(dir, "j", FEATURE_SETS["ext4-nocsum"]);
    // Set needs_recovery (0x4) in s_feature_incompat directly.
    const buf = await readFile(path);
    const inc = buf.readUInt32LE(1024 + 0x60);
    buf.writeUInt32LE(inc | 0x4, 1024 + 0x60);
    await writeFile(path, buf);
    const dev = await FileDevice.open(path);
    await expect(Ext4Editor.open(dev)).rejects.toThrow(/journal needs recovery/);
    await dev.close();
    const big = await makeImage(dir, "bigalloc", ["-t", "ext4", "-O", "bigalloc", "-C", "16384"]);
    const dev2 = await FileDevice.open(big);
    await expect(Ext4Editor.open(dev2)).rejects.toBeInstanceOf(Ext4UnsupportedError);
    await dev2.close();
  });
});
