/**
 * The file-data read paths: the read-ahead window cache (small files copied out of shared
 * windows, reads straddling two windows), large reads that reuse windows a read-ahead already
 * fetched and load their tail window, directory blocks taken from cached windows. Every byte is compared with the host files mke2fs -d copied,
 * in walk order (sequential read-ahead), in reverse and shuffled order (no read-ahead), and for
 * random byte ranges, on 4 KiB and 1 KiB block sizes.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FileDevice, IoError } from "@imgpatch/disk";
import { Ext4Fs } from "@imgpatch/ext4";
import { describeWithTools, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { mkfs, openImage, pseudoBytes, rng, sha256 } from "./helpers.js";

describeWithTools(["mke2fs"], "file data read paths", () => {
  let src: string;
  const files: string[] = [];
  const want = new Map<string, Buffer>();
  beforeAll(async () => {
    const dir = await tempDir("ext4-readpaths-");
    src = join(dir, "src");
    const r = rng(99);
    let seed = 1;
    for (let d = 0; d < 12; d++) {
      await mkdir(join(src, `d${d}`), { recursive: true });
      for (let f = 0; f < 60; f++) {
        // Mostly small, some of 64–600 KiB (past the small-read limit, spanning windows), a few of 1–3 MiB.
        const kind = r();
        const size =
          kind < 0.85
            ? Math.floor(r() * r() * 20000)
            : kind < 0.97
              ? 65536 + Math.floor(r() * 550000)
              : (1 << 20) + Math.floor(r() * (2 << 20));
        const p = `/d${d}/f${f}`;
        const data = pseudoBytes(size, seed++);
        await writeFile(join(src, p), data);
        files.push(p);
        want.set(p, data);
      }
    }
  }, 60_000);

  it("a failing device read rejects the file read (direct part and read-ahead tail both failing)", async () => {
    const dir = await tempDir("ext4-readpaths-fail-");
    const img = join(dir, "fail.img");
    await mkfs(img, src, 128, ["-t", "ext4"]);
    const dev = await FileDevice.open(img, { readOnly: true });
    const fs = await Ext4Fs.open(dev);
    try {
      const big = files.find((p) => want.get(p)!.length > 1 << 20)!;
      const st = await fs.lstat(big);
      const inode = await fs.readInode(st.ino);
      const readInto = dev.readInto.bind(dev);
      let failing = true;
      dev.readInto = (offset: number, target: Uint8Array) =>
        failing ? Promise.reject(new IoError("injected", { file: img, offset })) : readInto(offset, target);
      await expect(fs.readFileInode(inode, big)).rejects.toThrow("injected");
      failing = false;
      await new Promise((r) => setTimeout(r, 20)); // any stray rejection would surface here
      expect((await fs.readFileInode(inode, big)).equals(want.get(big)!)).toBe(true);
    } finally {
      await fs.close();
    }
  });

  for (const bs of [4096, 1024]) {
    it(`${bs}-byte blocks: walk order, reverse, shuffled and random ranges read the host bytes`, async () => {
      const dir = await tempDir("ext4-readpaths-img-");
      const img = join(dir, `rp${bs}.img`);
      await mkfs(img, src, 128, ["-t", "ext4", "-b", String(bs)]);
      // Walk order: sequential read-ahead, windows shared by small files, large reads reusing them.
      let fs = await openImage(img);
      try {
        let n = 0;
        for await (const e of fs.walk("/")) {
          if (!e.stats.isFile() || e.path.startsWith("/lost+found")) continue;
          const got = await fs.readFileInode(e.inode, e.path);
          expect({ p: e.path, h: sha256(got) }).toEqual({ p: e.path, h: sha256(want.get(e.path)!) });
          n++;
        }
        expect(n).toBe(files.length);
        expect(fs.counters.bytes).toBeLessThan(1.5 * [...want.values()].reduce((a, b) => a + b.length, 0));
      } finally {
        await fs.close();
      }
      // Reverse and shuffled: windows are loaded out of order and never read ahead.
      const r = rng(bs);
      const shuffled = [...files];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = Math.floor(r() * (i + 1));
        [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
      }
      for (const order of [[...files].reverse(), shuffled]) {
        fs = await openImage(img);
        try {
          for (const p of order) {
            const got = await fs.readFile(p);
            expect({ p, h: sha256(got) }).toEqual({ p, h: sha256(want.get(p)!) });
          }
        } finally {
          await fs.close();
        }
      }
      // Random ranges (concurrently, so window loads overlap), and streams.
      fs = await openImage(img);
      try {
        const jobs: Promise<void>[] = [];
        for (let k = 0; k < 300; k++) {
          const p = files[Math.floor(r() * files.length)];
          const data = want.get(p)!;
          const a = Math.floor(r() * (data.length + 1));
          const b = Math.min(data.length, a + Math.floor(r() * r() * 1.5 * data.length) + 1);
          jobs.push(
            (async () => {
              const inode = await fs.readInode((await fs.lstat(p)).ino);
              const got = Buffer.from(await fs.readInodeRange(inode, a, b));
              expect({ p, a, b, eq: got.equals(data.subarray(a, b)) }).toEqual({ p, a, b, eq: true });
            })(),
          );
        }
        await Promise.all(jobs);
        const big = files.find((p) => want.get(p)!.length > 1 << 20)!;
        const chunks: Buffer[] = [];
        for await (const c of fs.createReadStream(big, { highWaterMark: 77777 })) chunks.push(c as Buffer);
        expect(Buffer.concat(chunks).equals(want.get(big)!)).toBe(true);
      } finally {
        await fs.close();
      }
      // The host copy is what we compared with.
      expect((await readFile(join(src, files[0]))).equals(want.get(files[0])!)).toBe(true);
    }, 60_000);
  }
});
