// One XfsEditor session: the reader's caches (inodes, inode chunks, extents, directories) live
// across calls, so a call that fails after they were filled — ENOSPC half way through a streamed
// file, a source that throws, EEXIST — must leave no cached state the disk does not have: reads
// right after it, later calls, xfs_repair -n + xfs_db check and (as root) the kernel must all see
// the filesystem as the successful calls left it.
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, isRoot, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { dir2Writer } from "../src/dir2-write.js";
import { type DirectoryWriter, XfsEditor } from "../src/editor.js";
import { XfsFsError } from "../src/errors.js";
import { storeInode } from "../src/inode-create.js";
import { pattern } from "./images.js";
import { dbFields, FEATURE_SETS, fsCheck, mkfsImage, XFS_TOOLS, xfsDb } from "./space-helpers.js";

/** A stream of `chunks` pieces of `size` bytes, throwing instead of yielding piece `failAt`. */
async function* pieces(chunks: number, size: number, failAt = -1): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < chunks; i++) {
    if (i === failAt) throw new Error("source failed");
    yield new Uint8Array(size).fill(i + 1);
  }
}

describeWithTools(XFS_TOOLS, "XfsEditor session caches (xfs_repair -n, xfs_db check, kernel)", () => {
  for (const name of ["v5-1k", "v4", "v5-rmap-reflink"]) {
    it(`${name}: failed calls after cached state leave reads, later calls and the image right`, async () => {
      const dir = await tempDir("xfs-session-");
      const path = mkfsImage(dir, `${name}.img`, [...FEATURE_SETS[name], "-d", "agcount=2"], 48, 2);
      const dev = await FileDevice.open(path, { readOnly: false });
      // A directory writer that can fail after it added the name and stored the directory inode
      // (so the failed call has changed cached inode chunks and a short-form directory's names).
      let failAfterStore = false;
      const flaky: DirectoryWriter = {
        async addEntry(e, d, nm, ino, mode) {
          await dir2Writer.addEntry(e, d, nm, ino, mode);
          if (!failAfterStore) return;
          await storeInode(e.ctx, d);
          throw new XfsFsError("EINVAL", "injected failure after the directory was stored", "/s");
        },
        removeEntry: (e, d, nm) => dir2Writer.removeEntry(e, d, nm),
      };
      const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000, directories: flaky });
      const model = new Map<string, Uint8Array>();
      const put = async (p: string, data: Uint8Array) => {
        await ed.writeFile(p, data);
        model.set(p, data);
      };
      try {
        // A leaf/node directory and files, read back so every reader cache holds them.
        await ed.mkdir("/d");
        for (let i = 0; i < 400; i++) await put(`/d/file-with-a-longer-name-${i}`, pattern(700 + i, i));
        await put("/d/big", pattern(3 << 20, 99));
        await ed.sync();
        expect((await ed.readdir("/d")).length).toBe(401);
        for (const [p, data] of model)
          expect(Buffer.from(await ed.readFile(p)).equals(Buffer.from(data))).toBe(true);
        const free = Number(dbFields(xfsDb(path, ["sb 0", "print fdblocks"])).get("fdblocks"));
        const bs = Number(dbFields(xfsDb(path, ["sb 0", "print blocksize"])).get("blocksize"));

        // ENOSPC half way through a streamed replacement and a streamed new file (stages of
        // 8 MiB are allocated and written before the space runs out).
        const tooMany = Math.ceil(((free + 64) * bs) / (1 << 20));
        await expect(ed.writeFile("/d/big", pieces(tooMany, 1 << 20))).rejects.toMatchObject({
          code: "ENOSPC",
        });
        await expect(ed.writeFile("/d/new-enospc", pieces(tooMany, 1 << 20))).rejects.toMatchObject({
          code: "ENOSPC",
        });
        // A source that throws after two stages; a name that exists.
        await expect(ed.writeFile("/d/big", pieces(20, 1 << 20, 17))).rejects.toThrow("source failed");
        await expect(ed.writeFile("/d/new-throw", pieces(20, 1 << 20, 17))).rejects.toThrow("source failed");
        await expect(ed.writeFile("/d/file-with-a-longer-name-3", "x", { flag: "wx" })).rejects.toMatchObject(
          {
            code: "EEXIST",
          },
        );
        await expect(ed.mkdir("/d/file-with-a-longer-name-4")).rejects.toMatchObject({ code: "EEXIST" });

        // A short-form directory (names inside its inode) read into the caches, then calls that
        // fail after storing it.
        await ed.mkdir("/s");
        await put("/s/one", pattern(10, 1));
        const sBefore = await ed.readdir("/s");
        const sStat = await ed.stat("/s");
        failAfterStore = true;
        await expect(ed.writeFile("/s/ghost", "boo")).rejects.toMatchObject({ code: "EINVAL" });
        await expect(ed.mkdir("/s/ghost-dir")).rejects.toMatchObject({ code: "EINVAL" });
        await expect(ed.symlink("one", "/s/ghost-link")).rejects.toMatchObject({ code: "EINVAL" });
        failAfterStore = false;
        expect(await ed.readdir("/s")).toEqual(sBefore);
        expect(await ed.exists("/s/ghost")).toBe(false);
        const sAfter = await ed.stat("/s");
        expect([sAfter.size, sAfter.nlink, sAfter.mtimeMs, sAfter.ctimeMs]).toEqual([
          sStat.size,
          sStat.nlink,
          sStat.mtimeMs,
          sStat.ctimeMs,
        ]);

        // Reads right after: what the successful calls left, nothing of the failed ones.
        expect(await ed.exists("/d/new-enospc")).toBe(false);
        expect(await ed.exists("/d/new-throw")).toBe(false);
        expect((await ed.readdir("/d")).length).toBe(401);
        expect(
          Buffer.from(await ed.readFile("/d/big")).equals(Buffer.from(model.get("/d/big") as Uint8Array)),
        ).toBe(true);
        expect((await ed.stat("/d/file-with-a-longer-name-3")).size).toBe(703);

        // Later calls work from there: more names in the same directory, a replaced file, removals.
        for (let i = 400; i < 700; i++) await put(`/d/file-with-a-longer-name-${i}`, pattern(300, i));
        await put("/d/big", pattern(2 << 20, 7));
        for (let i = 0; i < 50; i++) {
          await ed.unlink(`/d/file-with-a-longer-name-${i}`);
          model.delete(`/d/file-with-a-longer-name-${i}`);
        }
        // A streamed file that fits, in stages.
        const streamed = new Uint8Array(9 << 20);
        for (let i = 0; i < 9; i++) streamed.fill(i + 1, i << 20, (i + 1) << 20);
        await ed.writeFile("/streamed", pieces(9, 1 << 20));
        await put("/s/two", pattern(20, 2));
        expect((await ed.readdir("/s")).sort()).toEqual(["one", "two"]);
        model.set("/streamed", streamed);
        for (const [p, data] of model)
          expect(Buffer.from(await ed.readFile(p)).equals(Buffer.from(data)), p).toBe(true);
        await ed.sync();
      } finally {
        await ed.close();
        await dev.close();
      }
      const c = fsCheck(path);
      expect(c.output).toBe("");
      expect(c.clean).toBe(true);
      if (isRoot() && name !== "v4") {
        const mnt = join(dir, "mnt");
        mkdirSync(mnt);
        await withLoopMount(path, mnt, {}, async (m) => {
          expect(readdirSync(join(m, "d")).length).toBe(651);
          for (const [p, data] of model)
            expect(Buffer.from(readFileSync(join(m, p))).equals(Buffer.from(data)), p).toBe(true);
        });
      }
    });
  }
});
