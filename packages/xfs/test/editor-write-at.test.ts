// XfsEditor.writeAt (pwrite into an existing file) on images made by mkfs.xfs: overwrites land in
// the file's own blocks (xfs_db bmap unchanged, the old bytes gone from the image), holes and the
// range past the end get new blocks (extents and bmbt forks rebuilt). Oracles: xfs_repair -n +
// xfs_db check, and as root the kernel reading every byte back through a read-only loop mount.
// Unwritten extents: editor-write-at-unwritten.test.ts; reflink-shared: editor-write-at-cow.test.ts.
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, isRoot, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/editor.js";
import { pattern } from "./images.js";
import { dbFields, FEATURE_SETS, fsCheck, mkfsImage, XFS_TOOLS, xfsDb } from "./space-helpers.js";

/** The file's mapping as xfs_db's bmap prints it: "data offset O startblock B (A/R) count N flag F". */
function dbBmap(path: string, file: string): { off: number; fsb: number; count: number }[] {
  const out = xfsDb(path, [`path ${file}`, "bmap"]);
  return [...out.matchAll(/offset (\d+) startblock (\d+) \(\d+\/\d+\) count (\d+)/g)].map((m) => ({
    off: Number(m[1]),
    fsb: Number(m[2]),
    count: Number(m[3]),
  }));
}

/** Byte offset in the image of fs block `fsb` (agno << agblklog | agbno). */
function fsbByte(path: string, fsb: number): number {
  const sb = dbFields(xfsDb(path, ["sb 0", "print agblocks agblklog blocksize"]));
  const agblklog = Number(sb.get("agblklog"));
  const agno = Math.floor(fsb / 2 ** agblklog);
  const agbno = fsb % 2 ** agblklog;
  return (agno * Number(sb.get("agblocks")) + agbno) * Number(sb.get("blocksize"));
}

/** pwrite on a model buffer. */
function modelWrite(model: Uint8Array, offset: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.max(model.length, offset + data.length));
  out.set(model);
  out.set(data, offset);
  return out;
}

describeWithTools(XFS_TOOLS, "XfsEditor.writeAt (xfs_repair -n, xfs_db, kernel)", () => {
  for (const name of ["v5", "v4", "v5-1k", "v5-rmap-reflink"]) {
    it(`${name}: in place, into holes, past the end, through a bmbt; a scrubbed file's blocks keep the pattern`, async () => {
      const dir = await tempDir("xfs-writeat-");
      const path = mkfsImage(dir, `${name}.img`, FEATURE_SETS[name], 64, 2);
      const bs = Number(dbFields(xfsDb(path, ["sb 0", "print blocksize"])).get("blocksize"));
      const dev = await FileDevice.open(path, { readOnly: false });
      const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
      const models = new Map<string, Uint8Array>();
      const write = async (file: string, offset: number, data: Uint8Array) => {
        await ed.writeAt(file, offset, data);
        models.set(file, modelWrite(models.get(file) ?? new Uint8Array(0), offset, data));
      };
      let plainMap: ReturnType<typeof dbBmap>;
      try {
        // An extents file overwritten in place (partial first and last blocks), then grown.
        models.set("/plain", pattern(5 * bs + 300, 1));
        await ed.writeFile("/plain", models.get("/plain") as Uint8Array);
        // A sparse file: every other block a hole, 120 extents (a bmbt fork).
        const holey = new Uint8Array(240 * bs);
        for (let b = 0; b < 240; b += 2) holey.set(pattern(bs, b + 1), b * bs);
        models.set("/holey", holey);
        await ed.writeFile("/holey", holey, { sparse: true });
        await ed.sync();
        plainMap = dbBmap(path, "/plain");
        expect(plainMap.length).toBeGreaterThan(0);
        await write("/plain", 100, pattern(2 * bs + 50, 2));
        await write("/plain", 5 * bs + 250, pattern(3 * bs, 3)); // across the end: a new block
        await write("/plain", 12 * bs + 7, pattern(10, 4)); // past the end: a hole between
        // Into the holes of the bmbt file, some merging with their neighbours, then a wide range.
        await write("/holey", 1 * bs + 5, pattern(20, 5));
        await write("/holey", 3 * bs, pattern(bs, 6));
        await write("/holey", 100 * bs - 10, pattern(7 * bs, 7));
        await write("/holey", 239 * bs, pattern(3 * bs + 1, 8));
        // An empty write changes nothing; a directory is refused.
        await ed.writeAt("/plain", 0, new Uint8Array(0));
        await expect(ed.writeAt("/", 0, new Uint8Array(1))).rejects.toMatchObject({ code: "EISDIR" });
        await expect(ed.writeAt("/missing", 0, new Uint8Array(1))).rejects.toMatchObject({ code: "ENOENT" });
        for (const [f, m] of models)
          expect(Buffer.from(await ed.readFile(f)).equals(Buffer.from(m))).toBe(true);
        await ed.sync();
      } finally {
        await ed.close();
        await dev.close();
      }
      let c = fsCheck(path);
      expect(c.output).toBe("");
      expect(c.clean).toBe(true);
      // The overwritten blocks stayed where they were (the first five blocks' mapping is unchanged).
      const after = dbBmap(path, "/plain");
      expect(after[0].fsb).toBe(plainMap[0].fsb);
      expect(after[0].count).toBeGreaterThanOrEqual(Math.min(5, plainMap[0].count));
      expect(Number(dbFields(xfsDb(path, ["path /plain", "print core.size"])).get("core.size"))).toBe(
        (models.get("/plain") as Uint8Array).length,
      );
      if (isRoot() && name !== "v4") {
        const mnt = join(dir, "mnt");
        mkdirSync(mnt);
        await withLoopMount(path, mnt, {}, async (m) => {
          for (const [f, model] of models)
            expect(Buffer.from(readFileSync(join(m, f))).equals(Buffer.from(model)), f).toBe(true);
        });
      }

      // The scrub pattern: overwrite the whole file where it lies, unlink it; its freed blocks
      // still hold the last pass.
      const dev2 = await FileDevice.open(path, { readOnly: false });
      const ed2 = await XfsEditor.open(dev2, { timestamp: 1_700_000_100 });
      const size = (models.get("/plain") as Uint8Array).length;
      const blocks = dbBmap(path, "/plain");
      // Blocks 0-8 and 12 (9-11 are the hole the write past the end left).
      expect(blocks.reduce((n, e) => n + e.count, 0)).toBe(10);
      try {
        for (const fill of [0x00, 0xff]) {
          const piece = new Uint8Array(3 * bs).fill(fill);
          for (let at = 0; at < size; at += piece.length)
            await ed2.writeAt("/plain", at, piece.subarray(0, Math.min(piece.length, size - at)));
        }
        await ed2.unlink("/plain");
        await ed2.sync();
      } finally {
        await ed2.close();
        await dev2.close();
      }
      c = fsCheck(path);
      expect(c.output).toBe("");
      expect(c.clean).toBe(true);
      const img = readFileSync(path);
      for (const e of blocks) {
        for (let k = 0; k < e.count; k++) {
          const fileByte = (e.off + k) * bs;
          if (fileByte >= size) continue;
          const at = fsbByte(path, e.fsb + k);
          const n = Math.min(bs, size - fileByte);
          expect(
            img.subarray(at, at + n).every((x) => x === 0xff),
            `block ${e.fsb + k}`,
          ).toBe(true);
        }
      }
    });
  }
});
