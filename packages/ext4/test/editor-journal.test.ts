/**
 * Journalled filesystems: a clean journal is left valid while we edit; a journal that needs
 * recovery is refused, or replayed first on request — and our replay writes what e2fsck's does.
 */
import { copyFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { Ext4Editor, Ext4UnsupportedError, replayJournal } from "@imgpatch/ext4";
import {
  debugfs,
  debugfsCat,
  describeWithTools,
  dumpe2fs,
  e2fsck,
  runTool,
  tempDir,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { FEATURE_SETS, makeImage } from "./editor-helpers.js";

async function needsRecovery(dir: string, name: string, args: string[], blockSize: number) {
  const path = await makeImage(dir, name, args, "32M");
  const payload = join(dir, `${name}.payload`);
  const data = Buffer.alloc(2 * blockSize);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + 11) & 0xff;
  await writeFile(payload, data);
  // debugfs' journal commands write one committed transaction logging blocks 30000 and 30001 (free data blocks).
  await debugfs(path, ["jo -c", `jw -b 30000,30001 ${payload}`, "jc"], { write: true, allowErrors: true });
  expect((await dumpe2fs(path))["Filesystem features"]).toMatch(/needs_recovery/);
  return { path, data };
}

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "ext4 editor: journal", () => {
  for (const [set, bs] of [
    ["ext4-csum", 1024],
    ["ext3", 1024],
  ] as const) {
    it(`${set}: needs_recovery is refused, or replayed like e2fsck does`, async () => {
      const dir = await tempDir("edj-");
      const { path, data } = await needsRecovery(dir, set, FEATURE_SETS[set], bs);
      const dev = await FileDevice.open(path);
      await expect(Ext4Editor.open(dev)).rejects.toBeInstanceOf(Ext4UnsupportedError);
      await dev.close();
      // e2fsck's replay on a copy, ours on another: the same blocks, a clean result.
      const theirs = join(dir, "theirs.img");
      const ours = join(dir, "ours.img");
      await copyFile(path, theirs);
      await copyFile(path, ours);
      await runTool("e2fsck", ["-fy", theirs]);
      const odev = await FileDevice.open(ours);
      const res = await replayJournal(odev);
      await odev.close();
      expect(res).toMatchObject({ transactions: 1, blocks: 2, badChecksums: 0 });
      const a = await readFile(theirs);
      const b = await readFile(ours);
      expect(Buffer.compare(b.subarray(30000 * bs, 30002 * bs), data)).toBe(0);
      // Everything past the superblock's block agrees except the journal superblock's sequence.
      const diffs: number[] = [];
      for (let i = 2048; i < a.length; i++) if (a[i] !== b[i]) diffs.push(i);
      expect(diffs.length).toBeLessThan(8);
      const clean = await e2fsck(ours);
      expect(clean.problems, clean.output).toEqual([]);
      expect(clean.clean).toBe(true);
      // And the editor replays on request, then edits.
      const ed = await Ext4Editor.open(await FileDevice.open(path), {
        replayJournal: true,
        timestamp: 1_700_000_000,
      });
      await ed.writeFile("/after-replay", "ok");
      await ed.close();
      const r = await e2fsck(path);
      expect(r.problems, r.output).toEqual([]);
      expect((await debugfsCat(path, "/after-replay")).toString()).toBe("ok");
    });
  }

  it("a clean journal stays valid and empty after edits", async () => {
    const dir = await tempDir("edj-");
    const path = await makeImage(dir, "clean", FEATURE_SETS["ext4-csum"]);
    const ed = await Ext4Editor.open(await FileDevice.open(path), { timestamp: 1_700_000_000 });
    for (let i = 0; i < 50; i++) await ed.writeFile(`/f${i}`, `${i}`);
    await ed.close();
    const h = await dumpe2fs(path);
    expect(h["Filesystem features"]).not.toMatch(/needs_recovery/);
    expect(h["Journal start"]).toBe("0");
    const r = await e2fsck(path);
    expect(r.problems, r.output).toEqual([]);
    expect(await debugfs(path, ["logdump"])).toMatch(/Journal starts at block \d+, transaction \d+/);
  });
});
