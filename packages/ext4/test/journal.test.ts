/**
 * Unreplayed journals made by debugfs (jo/jw/jc): detection, and the in-memory replay view
 * compared with what e2fsck's own replay writes — with revokes, several transactions, escaped
 * blocks, and checksummed (v3) journals.
 */
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { encodeJournalSuperblock, journalSuperblockChecksum } from "@imgpatch/ext4";
import { debugfs, describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { mkfs, openImage, pseudoBytes, sha256 } from "./helpers.js";

describeWithTools(["mke2fs", "debugfs", "e2fsck"], "journal", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir("ext4-journal-");
  });

  for (const checksums of [false, true]) {
    it(`replays committed transactions in memory like e2fsck does${checksums ? " (csum v3)" : ""}`, async () => {
      const src = join(dir, `src${checksums}`);
      await mkdir(src, { recursive: true });
      const orig = pseudoBytes(5 * 4096, 1);
      await writeFile(join(src, "data.bin"), orig);
      await writeFile(join(src, "other.bin"), pseudoBytes(4096, 2));
      const img = join(dir, `j${checksums}.img`);
      await mkfs(img, src, 16, ["-t", "ext4", "-b", "4096"]);
      const fs0 = await openImage(img);
      const ino = (await fs0.lstat("/data.bin")).ino;
      const inode = await fs0.readInode(ino);
      const blocks: number[] = [];
      for (let i = 0; i < 5; i++) blocks.push((await fs0.mapBlock(inode, i)).physical);
      const other = (await fs0.mapBlock(await fs0.readInode((await fs0.lstat("/other.bin")).ino), 0))
        .physical;
      await fs0.close();
      // Transaction 1 logs new contents for blocks 0-2 (block 1 starts with the jbd2 magic, so it
      // is escaped) and `other`; transaction 2 logs block 3 and revokes block 2 and `other`.
      const newA = pseudoBytes(4096, 10);
      const newB = pseudoBytes(4096, 11);
      newB.writeUInt32BE(0xc03b3998, 0);
      const newC = pseudoBytes(4096, 12);
      const newO = pseudoBytes(4096, 13);
      const newD = pseudoBytes(4096, 14);
      const t1 = join(dir, `t1${checksums}`);
      const t2 = join(dir, `t2${checksums}`);
      await writeFile(t1, Buffer.concat([newA, newB, newC, newO]));
      await writeFile(t2, newD);
      await debugfs(
        img,
        [
          checksums ? "jo -c" : "jo",
          `jw -b ${blocks[0]},${blocks[1]},${blocks[2]},${other} ${t1}`,
          `jw -b ${blocks[3]} -r ${blocks[2]},${other} ${t2}`,
          "jc",
        ],
        { write: true },
      );
      const plain = await openImage(img, { replayJournal: false });
      expect(plain.journal.needsRecovery).toBe(true);
      expect(plain.warnings.map((w) => w.code)).toContain("EJOURNAL");
      expect(sha256(await plain.readFile("/data.bin"))).toBe(sha256(orig)); // on-disk state
      const jsb = plain.journal.superblock!;
      expect((jsb.featureIncompat & 0x10) !== 0).toBe(checksums);
      // The encoder reproduces the stored superblock (and its checksum when there is one).
      expect(Buffer.from(encodeJournalSuperblock(jsb)).equals(Buffer.from(jsb.raw))).toBe(true);
      if (checksums) expect(journalSuperblockChecksum(jsb.raw)).toBe(jsb.checksum);
      const scan = await plain.scanJournal();
      expect(scan.transactions).toBe(2);
      await plain.close();

      const fs = await openImage(img); // replayed in memory by default
      expect(fs.journal.replayed).toEqual({ transactions: 2, blocks: 3, badChecksums: 0 });
      expect(fs.warnings).toEqual([]);
      const expected = Buffer.from(orig);
      newA.copy(expected, 0);
      newB.copy(expected, 4096);
      newD.copy(expected, 3 * 4096);
      const replayed = await fs.readFile("/data.bin");
      expect(sha256(replayed)).toBe(sha256(expected));
      // The oracle: e2fsck replays the journal on a copy; the file must match ours.
      const copy = join(dir, `fsck${checksums}.img`);
      await copyFile(img, copy);
      await runTool("e2fsck", ["-fy", copy]);
      const after = await openImage(copy);
      expect(after.journal.needsRecovery).toBe(false);
      expect(sha256(await after.readFile("/data.bin"))).toBe(sha256(replayed));
      expect(sha256(await after.readFile("/other.bin"))).toBe(sha256(await fs.readFile("/other.bin")));
      await after.close();
      await fs.close();
    });
  }
});
