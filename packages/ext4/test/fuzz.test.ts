/**
 * Fuzzing: random byte mutations of real metadata blocks (superblock, descriptors, inode table,
 * directory and htree blocks, extent nodes, indirect blocks, xattr blocks, symlink blocks) must
 * give typed errors or valid results, in bounded time, in strict and lenient mode.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CountingDevice, ImgpatchError, MemoryDevice } from "@imgpatch/disk";
import { Ext4Fs } from "@imgpatch/ext4";
import { debugfs, describeWithTools, fullSuite, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { beforeAll, expect, it } from "vitest";
import { type FuzzImage, fuzzImages, mutated, mutationsArb } from "./fuzz-targets.js";
import { mkfs, pseudoBytes } from "./helpers.js";

const tally = { typedErrors: 0, calls: 0 };

/** Read everything reachable; every failure must be a typed ImgpatchError. */
/** Bytes the last exercise() read from the device: the bound on its work (no wall clock). */
let lastBytesRead = 0;
/** A case may read at most this much of its 8-32 MiB image: a loop or an unbounded walk blows it. */
const READ_BUDGET = 1024 * 1024 * 1024;

async function exercise(image: Uint8Array, lenient: boolean): Promise<void> {
  const dev = new CountingDevice(new MemoryDevice(image, { readOnly: true, name: "fuzz.img" }));
  try {
    await exerciseOn(dev, lenient);
  } finally {
    lastBytesRead = dev.counts.bytesRead;
  }
}

async function exerciseOn(dev: CountingDevice, lenient: boolean): Promise<void> {
  const fs = await Ext4Fs.open(dev, { lenient });
  let n = 0;
  const guard = async (p: Promise<unknown>) => {
    tally.calls++;
    try {
      await p;
    } catch (e) {
      if (!(e instanceof ImgpatchError)) throw e;
      tally.typedErrors++;
    }
  };
  await guard(
    (async () => {
      for await (const e of fs.walk("/")) {
        if (++n > 5000) break;
        const p = e.path;
        await guard(fs.lstat(p));
        await guard(fs.stat(p));
        await guard(fs.realpath(p));
        await guard(
          fs.llistxattr(p).then(async (names) => {
            for (const x of names) await guard(fs.lgetxattr(p, x));
          }),
        );
        if (e.stats.isFile()) await guard(fs.readFile(p, { maxSize: 8 << 20 }));
        if (e.stats.isSymbolicLink()) await guard(fs.readlink(p));
        if (e.stats.isDirectory()) await guard(fs.readdir(p, { withFileTypes: true }));
      }
    })(),
  );
  await guard(fs.lstat("/big/entry-77"));
  await guard(fs.verifyBitmaps());
}

describeWithTools(["mke2fs", "debugfs"], "fuzzed journal", () => {
  it("mutated journal blocks give typed errors or a replay view, never a hang", async () => {
    const dir = await tempDir("ext4-fuzzj-");
    const src = join(dir, "src");
    await mkdir(src);
    await writeFile(join(src, "f"), pseudoBytes(8192, 1));
    const img = join(dir, "j.img");
    await mkfs(img, src, 4, ["-t", "ext4", "-b", "1024"]);
    const blk = join(dir, "blk");
    await writeFile(blk, pseudoBytes(3072, 2));
    await debugfs(img, ["jo -c", `jw -b 300,301,302 ${blk}`, "jw -b 303 -r 300 " + blk, "jc"], {
      write: true,
    });
    const bytes = new Uint8Array(await readFile(img));
    const fs = await Ext4Fs.open(new MemoryDevice(bytes.slice(), { readOnly: true }));
    const ji = await fs.readInode(fs.sb.journalInum);
    const targets: number[] = [];
    for (let i = 0; i < 10; i++) targets.push((await fs.mapBlock(ji, i)).physical * fs.blockSize);
    await fc.assert(
      fc.asyncProperty(
        fc.nat(),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        async (t, muts) => {
          // In-memory reads never leave the microtask queue: give the worker's IPC a turn (vitest's 60 s RPC).
          await new Promise<void>((r) => setImmediate(r));
          const b = bytes.slice();
          const base = targets[t % targets.length];
          for (const [pos, val] of muts) b[base + (pos % fs.blockSize)] = val;
          try {
            const j = await Ext4Fs.open(new MemoryDevice(b, { readOnly: true }), { replayJournal: true });
            for await (const e of j.walk("/"))
              if (e.stats.isFile()) await j.readFile(e.path, { maxSize: 1 << 20 });
          } catch (e) {
            if (!(e instanceof ImgpatchError)) throw e;
          }
        },
      ),
      { numRuns: 150, seed: 4242 },
    );
  });
});

describeWithTools(["mke2fs", "debugfs", "e2fsck", "setfattr"], "fuzzed metadata", () => {
  const images: FuzzImage[] = [];
  beforeAll(async () => {
    const dir = await tempDir("ext4-fuzz-");
    images.push(
      ...(await fuzzImages(dir, [
        ["ext4-csum-1k", ["-t", "ext4", "-b", "1024"]],
        ["ext4-nocsum-1k", ["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"]],
        ["ext3-1k", ["-t", "ext3", "-b", "1024"]],
        ["ext4-inline", ["-t", "ext4", "-b", "1024", "-O", "inline_data,^metadata_csum"]],
      ] as const)),
    );
  });

  it("mutated metadata blocks give typed errors or valid results, with bounded reads", async () => {
    for (const img of images) {
      const kinds = new Set(img.targets.map((t) => t.what));
      expect(kinds.size).toBeGreaterThanOrEqual(5);
      // Baseline: the pristine image is fully readable.
      await exercise(img.bytes.slice(), false);
    }
    let most = 0;
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.nat(), mutationsArb, fc.boolean(), async (which, tsel, muts, lenient) => {
        // In-memory reads never leave the microtask queue: give the worker's IPC a turn (vitest's 60 s RPC).
        await new Promise<void>((r) => setImmediate(r));
        const { img, target, bytes } = mutated(images, which, tsel, muts);
        try {
          await exercise(bytes, lenient);
        } catch (e) {
          tally.typedErrors++;
          if (!(e instanceof ImgpatchError)) {
            throw new Error(
              `${img.name} ${target.what}@${target.offset}: untyped ${(e as Error)?.stack ?? e}`,
            );
          }
        }
        most = Math.max(most, lastBytesRead);
        expect(lastBytesRead).toBeLessThan(READ_BUDGET);
      }),
      {
        // 150 cases in npm test (~370 typed errors), 400 under test:full.
        numRuns: Number(process.env.EXT4_FUZZ_RUNS ?? (fullSuite() ? 400 : 150)),
        seed: Number(process.env.EXT4_FUZZ_SEED ?? 20261127),
      },
    );
    if (process.env.EXT4_FUZZ_RUNS) console.log({ mostBytesRead: most, ...tally });
    // The mutations must actually hit the parsers (this test can fail).
    expect(tally.typedErrors).toBeGreaterThan(50);
  });
});
