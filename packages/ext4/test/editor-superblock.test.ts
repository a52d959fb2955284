/**
 * Editor bookkeeping outside the files themselves: meta_bg descriptor copies (primary and the
 * backups in each meta group's second and last group, as e2fsprogs writes them), the
 * superblock's write time and lifetime-writes counter, and a completely full htree index that
 * must refuse an insert without leaving a block behind.
 */
import { readFile } from "node:fs/promises";
import { Ext4NoSpaceError } from "@imgpatch/ext4";
import { describeWithTools, dumpe2fs, runToolOk, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { expectClean, makeImage, openEditor } from "./editor-helpers.js";

/**
 * Per group, what the descriptors say (debugfs `stats` in catastrophic mode: no bitmaps read),
 * through the primary or a backup superblock. Opening from a backup clears the uninit flags and
 * itable_unused in memory (libext2fs does so), so only locations and counts are compared.
 */
async function descriptorCounts(path: string, args: string[] = []): Promise<string[]> {
  const out = (await runToolOk("debugfs", ["-c", ...args, "-R", "stats", path])).toString("utf8");
  const lines = out.split("\n");
  const groups: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^ Group +\d+:/.test(lines[i])) continue;
    const counts = /(\d+ free blocks?, \d+ free inodes?, \d+ used director(?:y|ies))/.exec(lines[i + 1]);
    groups.push(`${lines[i].trim()} ${counts?.[1]}`);
  }
  return groups;
}
describeWithTools(
  ["mke2fs", "e2fsck", "dumpe2fs", "debugfs"],
  "ext4 editor: superblock and descriptors",
  () => {
    it("meta_bg: every descriptor copy (first, second, last group of each meta group) matches after edits", async () => {
      const dir = await tempDir("edsb-");
      // 1 KiB blocks, 1024 blocks per group: 32 groups, 16 descriptors per block → two meta groups.
      const path = await makeImage(
        dir,
        "metabg",
        ["-t", "ext4", "-b", "1024", "-g", "1024", "-N", "2048", "-O", "meta_bg,^resize_inode"],
        "32M",
      );
      const ed = await openEditor(path);
      // Spread changes over both meta groups: top-level dirs go to different groups, big files
      // fill groups one after another.
      for (let i = 0; i < 12; i++) {
        await ed.mkdir(`/d${i}`);
        await ed.writeFile(`/d${i}/f`, new Uint8Array(900 * 1024).fill(i + 1));
      }
      await ed.unlink("/d3/f");
      await ed.close();
      await expectClean(path);

      // Where dumpe2fs says the descriptor blocks are, per meta group.
      const listing = (await runToolOk("dumpe2fs", [path])).toString("utf8");
      const locs: number[] = [];
      for (const m of listing.matchAll(/Group descriptors? at (\d+)(?:-(\d+))?/g)) locs.push(Number(m[1]));
      expect(locs.length).toBeGreaterThanOrEqual(6);
      const img = await readFile(path);
      const blockAt = (b: number) => img.subarray(b * 1024, b * 1024 + 1024);
      const byMeta = new Map<string, number[]>();
      for (const b of locs) {
        const g = Math.floor((b - 1) / 1024);
        const m = Math.floor(g / 16);
        byMeta.set(String(m), [...(byMeta.get(String(m)) ?? []), b]);
      }
      expect([...byMeta.keys()].sort()).toEqual(["0", "1"]);
      for (const [m, blocks] of byMeta) {
        expect(blocks.length, `meta group ${m}`).toBe(3);
        for (const b of blocks.slice(1))
          expect(blockAt(b).equals(blockAt(blocks[0])), `copy at ${b}`).toBe(true);
      }
      // Descriptors read through backup superblocks (libext2fs then takes meta_bg descriptors from
      // each meta group's second group) show the same groups.
      const primary = await descriptorCounts(path);
      expect(primary.length).toBe(32);
      for (const sb of [1025, 3073, 25601])
        expect(await descriptorCounts(path, ["-s", String(sb), "-b", "1024"]), `superblock ${sb}`).toEqual(
          primary,
        );
      // The free counts really changed in the second meta group (the test exercises its copies).
      const pristine = await makeImage(
        dir,
        "pristine",
        ["-t", "ext4", "-b", "1024", "-g", "1024", "-N", "2048", "-O", "meta_bg,^resize_inode"],
        "32M",
      );
      const p = await readFile(pristine);
      const m1 = byMeta.get("1") as number[];
      expect(p.subarray(m1[0] * 1024, m1[0] * 1024 + 1024).equals(blockAt(m1[0]))).toBe(false);
    });

    it("s_wtime follows the editor's clock and s_kbytes_written grows by what was written", async () => {
      const dir = await tempDir("edsb-");
      const path = await makeImage(dir, "wtime", ["-t", "ext4"], "32M");
      const before = await dumpe2fs(path);
      const kbBefore = Number(/^(\d+) kB$/.exec(before["Lifetime writes"])?.[1] ?? Number.NaN);
      expect(kbBefore).toBeGreaterThan(0);
      const t = 1_600_000_000;
      const ed = await openEditor(path, { timestamp: t });
      await ed.writeFile("/big", new Uint8Array(3 << 20).fill(7));
      await ed.close();
      const after = await dumpe2fs(path);
      expect(new Date(`${after["Last write time"]} UTC`).getTime() / 1000).toBe(t);
      const kbAfter = Number(/^(\d+) kB$/.exec(after["Lifetime writes"])?.[1] ?? Number.NaN);
      expect(kbAfter - kbBefore).toBeGreaterThanOrEqual(3 * 1024);
      expect(kbAfter - kbBefore).toBeLessThan(3 * 1024 + 200);
      await expectClean(path);

      // SOURCE_DATE_EPOCH is honoured when no explicit time is given; a chmod alone is a write too.
      const old = process.env.SOURCE_DATE_EPOCH;
      process.env.SOURCE_DATE_EPOCH = "1500000000";
      try {
        const { FileDevice } = await import("@imgpatch/disk");
        const { Ext4Editor } = await import("@imgpatch/ext4");
        const ed2 = await Ext4Editor.open(await FileDevice.open(path));
        await ed2.chmod("/big", 0o600);
        await ed2.close();
      } finally {
        if (old === undefined) delete process.env.SOURCE_DATE_EPOCH;
        else process.env.SOURCE_DATE_EPOCH = old;
      }
      const again = await dumpe2fs(path);
      expect(new Date(`${again["Last write time"]} UTC`).getTime() / 1000).toBe(1_500_000_000);
      const kbAgain = Number(/^(\d+) kB$/.exec(again["Lifetime writes"])?.[1] ?? Number.NaN);
      expect(kbAgain).toBeGreaterThan(kbAfter);
      expect(kbAgain).toBeLessThan(kbAfter + 64);
      // Nothing changed: the superblock is not rewritten.
      const ed3 = await openEditor(path, { timestamp: 1_400_000_000 });
      await ed3.stat("/big");
      await ed3.close();
      expect((await dumpe2fs(path))["Last write time"]).toBe(again["Last write time"]);

      // A clock ahead of the real time: files get it, s_wtime is capped at the real clock
      // (e2fsck would report a superblock written in the future).
      const future = 3_000_000_000;
      const ed4 = await openEditor(path, { timestamp: future });
      await ed4.writeFile("/later", "x");
      await ed4.close();
      const wtime = new Date(`${(await dumpe2fs(path))["Last write time"]} UTC`).getTime() / 1000;
      expect(wtime).toBeLessThanOrEqual(Date.now() / 1000);
      expect(wtime).toBeGreaterThan(Date.now() / 1000 - 600);
      await expectClean(path);
    });

    it("a completely full htree index refuses an insert and leaves no block behind", async () => {
      const dir = await tempDir("edsb-");
      // 1 KiB blocks without large_dir: two index levels of 123 × 127 leaves at most; 255-byte
      // names put three entries in a leaf. Hard links need no inodes.
      const path = await makeImage(
        dir,
        "fullidx",
        ["-t", "ext4", "-b", "1024", "-O", "^large_dir,^has_journal", "-N", "256"],
        "40M",
      );
      const ed = await openEditor(path);
      await ed.mkdir("/d");
      await ed.writeFile("/f", "x");
      const pad = "n".repeat(240);
      let n = 0;
      let err: unknown;
      for (; n < 60_000; n++) {
        try {
          await ed.link("/f", `/d/${pad}${String(n).padStart(15, "0")}`);
        } catch (e) {
          err = e;
          break;
        }
      }
      expect(err, `after ${n} links`).toBeInstanceOf(Ext4NoSpaceError);
      expect(String((err as Error).message)).toMatch(/index .* is full/);
      const st = await ed.stat("/d");
      await ed.sync();
      const free = (await dumpe2fs(path))["Free blocks"];
      // Further attempts change nothing either.
      for (let k = 0; k < 3; k++)
        await expect(ed.link("/f", `/d/${pad}${String(n).padStart(15, "0")}`)).rejects.toBeInstanceOf(
          Ext4NoSpaceError,
        );
      await ed.close();
      expect((await dumpe2fs(path))["Free blocks"]).toBe(free);
      const { Ext4Fs } = await import("@imgpatch/ext4");
      const { FileDevice } = await import("@imgpatch/disk");
      const fs = await Ext4Fs.open(await FileDevice.open(path, { readOnly: true }));
      expect((await fs.stat("/d")).size).toBe(st.size);
      expect((await fs.stat("/f")).nlink).toBe(n + 1);
      await fs.close();
      await expectClean(path);
    }, 120_000);
  },
);
