/**
 * Replacing an existing file from a stream is all or nothing: a stream that runs out of space
 * (ENOSPC) or whose source throws midway leaves the old content, inode and free counts exactly as
 * they were (e2fsck-clean); a stream that completes frees the old blocks. Block maps (ext2/ext3),
 * extent trees, inline_data, hard links and external xattr blocks; checked with debugfs, dumpe2fs
 * and e2fsck, and our own reader.
 */
import { FileDevice } from "@imgpatch/disk";
import { Ext4Fs, Ext4NoSpaceError } from "@imgpatch/ext4";
import {
  debugfs,
  debugfsCat,
  debugfsStat,
  debugfsXattrs,
  describeWithTools,
  dumpe2fs,
  fullSuite,
  tempDir,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { expectClean, makeImage, openEditor } from "./editor-helpers.js";

const INLINE_FL = 0x10000000;
const MiB = 1 << 20;

/** Deterministic bytes (differ per seed). */
function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** `total` bytes of `data` in chunks: an odd-sized first one, then `size`-byte ones. */
async function* chunked(data: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  let off = Math.min(data.length, 3001);
  yield data.subarray(0, off);
  while (off < data.length) {
    yield data.subarray(off, Math.min(data.length, off + size));
    off += size;
  }
}

/** More than any of these filesystems holds: 1 MiB chunks (written directly as they come). */
async function* endless(seed: number): AsyncGenerator<Uint8Array> {
  yield pattern(5000, seed);
  for (let i = 0; i < 64; i++) yield pattern(MiB, seed + i);
}

const SOURCE_ERROR = new Error("source stream broke");

/** `before` bytes (1 MiB chunks: they reach the disk before the failure), then a throw. */
async function* breaking(before: number, seed: number): AsyncGenerator<Uint8Array> {
  yield pattern(777, seed);
  let left = before;
  while (left > 0) {
    const n = Math.min(MiB, left);
    yield pattern(n, seed + left);
    left -= n;
  }
  throw SOURCE_ERROR;
}

interface FileState {
  data: Buffer;
  ours: Buffer;
  stat: string;
  blockcount: number;
  flags: number;
  fileAcl: number;
  xattrs: Record<string, string>;
}

interface FsState {
  freeBlocks: number;
  freeInodes: number;
  blockSize: number;
  files: Map<string, FileState>;
}

async function snapshot(path: string, files: string[]): Promise<FsState> {
  const h = await dumpe2fs(path);
  const dev = await FileDevice.open(path, { readOnly: true });
  const out: FsState = {
    freeBlocks: Number(h["Free blocks"]),
    freeInodes: Number(h["Free inodes"]),
    blockSize: Number(h["Block size"]),
    files: new Map(),
  };
  try {
    const fs = await Ext4Fs.open(dev);
    for (const f of files) {
      const st = await debugfsStat(path, f);
      const xs = await debugfsXattrs(path, f);
      out.files.set(f, {
        data: await debugfsCat(path, f),
        ours: await fs.readFile(f),
        // Everything debugfs shows of the inode (times, size, flags, blocks, checksum...).
        stat: st.raw,
        blockcount: st.blockcount,
        flags: st.flags,
        fileAcl: st.fileAcl,
        xattrs: Object.fromEntries(Object.entries(xs).map(([k, v]) => [k, Buffer.from(v).toString("hex")])),
      });
    }
  } finally {
    await dev.close();
  }
  return out;
}

/**
 * Replace `file` with `next` streamed in `chunk`-byte pieces; then e2fsck clean, and debugfs and our
 * reader both read `next` back. The state after, and the file's.
 */
async function replaceFromStream(
  path: string,
  file: string,
  next: Uint8Array,
  chunk: number,
): Promise<{ after: FsState; s: FileState }> {
  const ed = await openEditor(path);
  await ed.writeFile(file, chunked(next, chunk));
  await ed.close();
  await expectClean(path);
  const after = await snapshot(path, [file]);
  const s = after.files.get(file) as FileState;
  expect(s.data.equals(Buffer.from(next)), `${file}: debugfs content`).toBe(true);
  expect(s.ours.equals(Buffer.from(next)), `${file}: our content`).toBe(true);
  return { after, s };
}

/** The filesystem as it was: same free counts, every file's bytes and inode unchanged. */
async function expectUnchanged(path: string, before: FsState): Promise<void> {
  await expectClean(path);
  const now = await snapshot(path, [...before.files.keys()]);
  expect(now.freeBlocks, "free blocks").toBe(before.freeBlocks);
  expect(now.freeInodes, "free inodes").toBe(before.freeInodes);
  for (const [f, was] of before.files) {
    const is = now.files.get(f) as FileState;
    expect(is.data.equals(was.data), `${f}: debugfs content`).toBe(true);
    expect(is.ours.equals(was.data), `${f}: our reader's content`).toBe(true);
    expect(is.stat, `${f}: debugfs stat`).toBe(was.stat);
    expect(is.xattrs, `${f}: xattrs`).toEqual(was.xattrs);
  }
}

async function expectNoSpace(p: Promise<unknown>): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Ext4NoSpaceError);
  expect((err as Ext4NoSpaceError).code).toBe("ENOSPC");
}

/** Tiny filesystems (4 MiB; journals take 1 MiB of ext3/ext4 ones). */
const TINY: Record<string, string[]> = {
  ext2: ["-t", "ext2", "-b", "1024"],
  ext3: ["-t", "ext3", "-b", "1024"],
  "ext4-csum": ["-t", "ext4", "-O", "metadata_csum"],
  "ext4-inline": ["-t", "ext4", "-O", "inline_data,metadata_csum"],
  "ext4-1k-nocsum": ["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"],
  "ext4-4k": ["-t", "ext4", "-b", "4096"],
};

describeWithTools(
  ["mke2fs", "e2fsck", "debugfs", "dumpe2fs"],
  "ext4 editor: atomic stream replacement",
  () => {
    for (const [fsName, args] of Object.entries(TINY)) {
      it(`${fsName}: a stream that hits ENOSPC or whose source throws leaves the old file, a completed one replaces it`, async () => {
        const dir = await tempDir("edr-");
        const path = await makeImage(dir, fsName, args, "4M");
        const inline = fsName === "ext4-inline";
        const files = [
          "/etc/conf",
          "/etc/hard",
          "/etc/hard2",
          "/etc/xattr",
          ...(inline ? ["/etc/small"] : []),
        ];
        let ed = await openEditor(path);
        await ed.mkdir("/etc");
        // Past the direct blocks of a block map (indirect and double-indirect blocks on 1 KiB blocks).
        await ed.writeFile("/etc/conf", chunked(pattern(300_000, 1), 10_000));
        await ed.writeFile("/etc/hard", pattern(50_000, 2));
        await ed.link("/etc/hard", "/etc/hard2");
        await ed.writeFile("/etc/xattr", pattern(20_000, 3));
        // Larger than the inode body: stored in an external xattr block.
        await ed.setxattr("/etc/xattr", "user.big", pattern(700, 4));
        await ed.setxattr("/etc/xattr", "user.small", "kept");
        if (inline) await ed.writeFile("/etc/small", "inline content\n".repeat(5));
        await ed.close();
        const before = await snapshot(path, files);
        expect(before.files.get("/etc/xattr")?.fileAcl).not.toBe(0);
        if (inline) expect((before.files.get("/etc/small") as FileState).flags & INLINE_FL).toBe(INLINE_FL);

        // ENOSPC on every kind of file, within one session: each attempt leaves everything as it was.
        ed = await openEditor(path);
        for (const [i, f] of [
          "/etc/conf",
          "/etc/hard2",
          "/etc/xattr",
          ...(inline ? ["/etc/small"] : []),
        ].entries()) {
          await expectNoSpace(ed.writeFile(f, endless(10 + i)));
          expect(Buffer.from(await ed.readFile(f)).equals(before.files.get(f)?.data as Buffer), f).toBe(true);
        }
        await ed.close();
        await expectUnchanged(path, before);

        // The source throws after 1 MiB reached the disk.
        ed = await openEditor(path);
        for (const [i, f] of [
          "/etc/conf",
          "/etc/hard",
          "/etc/xattr",
          ...(inline ? ["/etc/small"] : []),
        ].entries()) {
          await expect(ed.writeFile(f, breaking(MiB, 20 + i))).rejects.toBe(SOURCE_ERROR);
        }
        // The source throws before anything reached the disk (everything still gathered).
        await expect(ed.writeFile("/etc/conf", breaking(0, 30))).rejects.toBe(SOURCE_ERROR);
        await ed.close();
        await expectUnchanged(path, before);

        // Completed replacements: both names of the hard link see the new content; the xattr block
        // stays (i_blocks counts it); the old blocks are freed.
        const conf = pattern(400_000, 40);
        const hard = pattern(70_000, 41);
        const xattr = pattern(9_000, 42);
        ed = await openEditor(path);
        await ed.writeFile("/etc/conf", chunked(conf, 65536));
        await ed.writeFile("/etc/hard2", chunked(hard, 4096));
        await ed.writeFile("/etc/xattr", chunked(xattr, 1000));
        await ed.close();
        await expectClean(path);
        const after = await snapshot(path, ["/etc/conf", "/etc/hard", "/etc/hard2", "/etc/xattr"]);
        const want: Record<string, Uint8Array> = {
          "/etc/conf": conf,
          "/etc/hard": hard,
          "/etc/hard2": hard,
          "/etc/xattr": xattr,
        };
        for (const [f, data] of Object.entries(want)) {
          const s = after.files.get(f) as FileState;
          expect(s.data.equals(Buffer.from(data)), `${f}: debugfs content`).toBe(true);
          expect(s.ours.equals(Buffer.from(data)), `${f}: our content`).toBe(true);
        }
        expect((await debugfsStat(path, "/etc/hard")).links).toBe(2);
        const xa = after.files.get("/etc/xattr") as FileState;
        expect(xa.fileAcl).toBe(before.files.get("/etc/xattr")?.fileAcl);
        expect(xa.xattrs).toEqual(before.files.get("/etc/xattr")?.xattrs);
        const per = after.blockSize / 512;
        // 9,000 bytes: contiguous data blocks (no map block) plus the xattr block.
        expect(xa.blockcount / per).toBe(Math.ceil(9000 / after.blockSize) + 1);
        // Free blocks: exactly what the replaced files' i_blocks say (the old ones all freed).
        const used = (s: FsState, names: string[]) =>
          names.reduce((n, f) => n + (s.files.get(f) as FileState).blockcount / per, 0);
        const replaced = ["/etc/conf", "/etc/hard", "/etc/xattr"];
        expect(after.freeBlocks).toBe(before.freeBlocks + used(before, replaced) - used(after, replaced));
        expect(after.freeInodes).toBe(before.freeInodes);
      }, 60_000);
    }

    it("ext4-inline: an inline file stays inline when the stream fits the inode, else moves to blocks", async () => {
      const dir = await tempDir("edr-");
      const path = await makeImage(dir, "inline", TINY["ext4-inline"], "4M");
      let ed = await openEditor(path);
      await ed.writeFile("/a", "old inline\n".repeat(4));
      await ed.writeFile("/b", "old inline too\n".repeat(4));
      await ed.writeFile("/c", "to be emptied");
      await ed.setxattr("/b", "user.note", "stays");
      await ed.close();
      const before = await snapshot(path, ["/a", "/b", "/c"]);
      ed = await openEditor(path);
      const small = pattern(120, 5);
      const big = pattern(30_000, 6);
      await ed.writeFile("/a", chunked(small, 7));
      await ed.writeFile("/b", chunked(big, 4096));
      await ed.writeFile("/c", chunked(new Uint8Array(0), 1));
      await ed.close();
      await expectClean(path);
      const after = await snapshot(path, ["/a", "/b", "/c"]);
      const a = after.files.get("/a") as FileState;
      const b = after.files.get("/b") as FileState;
      const c = after.files.get("/c") as FileState;
      expect(a.data.equals(Buffer.from(small))).toBe(true);
      expect(a.ours.equals(Buffer.from(small))).toBe(true);
      expect(a.flags & INLINE_FL).toBe(INLINE_FL);
      expect(b.data.equals(Buffer.from(big))).toBe(true);
      expect(b.ours.equals(Buffer.from(big))).toBe(true);
      expect(b.flags & INLINE_FL).toBe(0);
      expect(b.xattrs["user.note"]).toBe(Buffer.from("stays").toString("hex"));
      expect(b.xattrs["system.data"]).toBeUndefined();
      // Truncated to empty, an inline file stays inline (as the kernel keeps it).
      expect(c.data.length).toBe(0);
      expect(c.flags & INLINE_FL).toBe(INLINE_FL);
      const per = after.blockSize / 512;
      expect(after.freeBlocks).toBe(before.freeBlocks - b.blockcount / per);
    });

    it("ext4 1 KiB: a fragmented file with an extent tree (depth >= 1) is replaced atomically", async () => {
      const dir = await tempDir("edr-");
      const path = await makeImage(dir, "frag", ["-t", "ext4", "-b", "1024", "-N", "4096"], "8M");
      let ed = await openEditor(path);
      // Fragment free space: small files, every other one removed; once for the old content, once
      // more for the new one.
      const fragment = async (from: number, n: number) => {
        for (let i = from; i < from + n; i++) await ed.writeFile(`/frag${i}`, pattern(1024, i));
        for (let i = from; i < from + n; i += 2) await ed.unlink(`/frag${i}`);
      };
      await fragment(0, 1200);
      await ed.writeFile("/big", chunked(pattern(1_500_000, 7), 100_000));
      await fragment(1200, 1400);
      await ed.close();
      expect(await debugfs(path, ["dump_extents /big"])).toMatch(/^\s*1\/\s*[1-9]\s/m);
      const before = await snapshot(path, ["/big"]);

      ed = await openEditor(path);
      await expect(ed.writeFile("/big", breaking(MiB, 8))).rejects.toBe(SOURCE_ERROR);
      await expectNoSpace(ed.writeFile("/big", endless(9)));
      await ed.close();
      await expectUnchanged(path, before);

      const next = pattern(1_300_000, 10);
      const { after, s } = await replaceFromStream(path, "/big", next, MiB);
      expect(await debugfs(path, ["dump_extents /big"])).toMatch(/^\s*1\/\s*[1-9]\s/m);
      const per = after.blockSize / 512;
      const oldBlocks = (before.files.get("/big") as FileState).blockcount / per;
      expect(after.freeBlocks).toBe(before.freeBlocks + oldBlocks - s.blockcount / per);
    }, 60_000);

    it("ext4 1 KiB: a byte buffer whose extent tree would not fit fragmented free space is refused up front", async () => {
      const dir = await tempDir("edr-");
      const path = await makeImage(dir, "bufrag", ["-t", "ext4", "-b", "1024"], "4M");
      let ed = await openEditor(path);
      await ed.writeFile("/old", pattern(100 * 1024, 15));
      for (let i = 0; i < 240; i++) await ed.writeFile(`/s${i}`, pattern(1024, 100 + i));
      await ed.close();
      // Fill what is left, then free every other small file: the free space is 120 single blocks.
      const free0 = (await snapshot(path, [])).freeBlocks;
      ed = await openEditor(path);
      await ed.writeFile("/filler", chunked(new Uint8Array(free0 * 1024).fill(0xee), MiB));
      for (let i = 0; i < 240; i += 2) await ed.unlink(`/s${i}`);
      await ed.close();
      const before = await snapshot(path, ["/old"]);
      expect(before.freeBlocks).toBe(120);
      // Once /old's 100 blocks are freed there is room for this much data, but not for the two
      // extent-tree leaves its 120+ extents would need: refused before the old content goes.
      const blocks = before.freeBlocks + 100 - 1;
      ed = await openEditor(path);
      await expectNoSpace(ed.writeFile("/old", pattern(blocks * 1024, 16)));
      // A buffer larger than the free space, for good measure.
      await expectNoSpace(ed.writeFile("/old", pattern(MiB, 17)));
      // A stream of exactly the free blocks: the data fits, its two tree leaves do not.
      await expectNoSpace(ed.writeFile("/old", chunked(pattern(before.freeBlocks * 1024, 18), 4096)));
      await ed.close();
      await expectUnchanged(path, before);

      // A stream that fits with its leaves: 110 single-block extents under a new index root.
      const next = pattern(110 * 1024 - 5, 19);
      const { after, s } = await replaceFromStream(path, "/old", next, 4096);
      expect(await debugfs(path, ["dump_extents /old"])).toMatch(/^\s*1\/\s*1\s/m);
      expect(s.blockcount / 2).toBe(110 + 2);
      expect(after.freeBlocks).toBe(before.freeBlocks + 100 - 112);
    });

    it("ext2 1 KiB: a block-map file with indirect blocks is replaced atomically", async () => {
      const dir = await tempDir("edr-");
      const path = await makeImage(dir, "bmap", ["-t", "ext2", "-b", "1024"], "8M");
      let ed = await openEditor(path);
      // 600 KB: direct, indirect and double-indirect blocks.
      await ed.writeFile("/big", chunked(pattern(600_000, 11), 50_000));
      await ed.close();
      const before = await snapshot(path, ["/big"]);
      const per = before.blockSize / 512;
      const old = before.files.get("/big") as FileState;
      expect(old.blockcount / per).toBeGreaterThan(Math.ceil(600_000 / 1024) + 1);

      ed = await openEditor(path);
      await expect(ed.writeFile("/big", breaking(2 * MiB, 12))).rejects.toBe(SOURCE_ERROR);
      await expectNoSpace(ed.writeFile("/big", endless(13)));
      await ed.close();
      await expectUnchanged(path, before);

      const next = pattern(900_000, 14);
      const { after, s } = await replaceFromStream(path, "/big", next, 8192);
      // Data plus 1 indirect, 1 double-indirect and its children (256 pointers each).
      const data = Math.ceil(900_000 / 1024);
      expect(s.blockcount / per).toBe(data + 1 + 1 + Math.ceil((data - 12 - 256) / 256));
      expect(after.freeBlocks).toBe(before.freeBlocks + old.blockcount / per - s.blockcount / per);
    }, 60_000);
  },
);

/**
 * A 1-byte source costs a generator step and an editor call per byte (minutes for the megabyte
 * steps): `npm test` streams its first ONE_BYTE_SPAN bytes byte by byte (past the inline-data limit
 * and several 1 KiB/4 KiB block edges) and the rest in unaligned 4 KiB pieces; test:full streams
 * all of it byte by byte.
 */
const ONE_BYTE_SPAN = fullSuite() ? Number.POSITIVE_INFINITY : 10_000;

describeWithTools(
  ["mke2fs", "e2fsck", "debugfs", "dumpe2fs"],
  "ext4 editor: stream replacement sequences",
  () => {
    // Random sequences of stream replacements on a 2 MiB filesystem: sizes from empty to more than
    // the free space, sources that throw at a random point. After each step the editor reads the
    // model's content; at the end debugfs and e2fsck (bitmaps and free counts: nothing leaked).
    for (const [fsName, args] of Object.entries({
      ext3: TINY.ext3,
      "ext4-inline": TINY["ext4-inline"],
      "ext4-4k": TINY["ext4-4k"],
    })) {
      it(`${fsName}: 60 random replacements (ENOSPC, throwing sources, successes)`, async () => {
        const dir = await tempDir("edr-");
        const path = await makeImage(dir, `seq-${fsName}`, args, "2M");
        let rnd = 0x9e3779b9 ^ fsName.length;
        const next = (n: number) => {
          rnd ^= rnd << 13;
          rnd ^= rnd >>> 17;
          rnd ^= rnd << 5;
          return (rnd >>> 0) % n;
        };
        const names = ["/a", "/b", "/c", "/d"];
        const model = new Map<string, Uint8Array>();
        const ed = await openEditor(path);
        for (const [i, f] of names.entries()) {
          model.set(f, pattern(i * 20_000 + 50, i));
          await ed.writeFile(f, model.get(f) as Uint8Array);
        }
        await ed.link("/d", "/d2");
        const outcomes = { ok: 0, nospace: 0, thrown: 0 };
        for (let step = 0; step < 60; step++) {
          const f = names[next(names.length)];
          const sizes = [0, 1 + next(200), next(60_000), next(600_000), 1_000_000 + next(2_000_000)];
          const data = pattern(sizes[next(sizes.length)], 1000 + step);
          const throwAt = next(3) === 0 ? next(data.length + 1) : -1;
          const chunk = [1, 1000, 4096, 65536, MiB][next(5)];
          async function* source(): AsyncGenerator<Uint8Array> {
            let off = 0;
            do {
              if (throwAt >= 0 && off >= throwAt) throw SOURCE_ERROR;
              const size = chunk === 1 && off >= ONE_BYTE_SPAN ? 4096 : chunk;
              yield data.subarray(off, Math.min(data.length, off + size));
              off += size;
            } while (off < data.length);
            if (throwAt >= 0) throw SOURCE_ERROR;
          }
          try {
            await ed.writeFile(f === "/d" && next(2) ? "/d2" : f, source());
            model.set(f, data);
            outcomes.ok++;
          } catch (e) {
            if (e === SOURCE_ERROR) outcomes.thrown++;
            else if (e instanceof Ext4NoSpaceError) outcomes.nospace++;
            else throw e;
          }
          for (const g of [...names, "/d2"]) {
            const want = model.get(g === "/d2" ? "/d" : g) as Uint8Array;
            expect(Buffer.from(await ed.readFile(g)).equals(Buffer.from(want)), `step ${step}: ${g}`).toBe(
              true,
            );
          }
        }
        await ed.close();
        expect(outcomes.ok).toBeGreaterThan(5);
        expect(outcomes.nospace).toBeGreaterThan(3);
        expect(outcomes.thrown).toBeGreaterThan(3);
        await expectClean(path);
        for (const g of [...names, "/d2"]) {
          const want = model.get(g === "/d2" ? "/d" : g) as Uint8Array;
          expect((await debugfsCat(path, g)).equals(Buffer.from(want)), g).toBe(true);
        }
      }, 300_000); // a hang guard: CPU-bound (1-byte chunks), slow when the suite shares the cores
    }
  },
);
