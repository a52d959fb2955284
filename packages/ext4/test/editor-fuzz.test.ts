/**
 * The editor on images from strangers: random byte mutations of real metadata (superblock,
 * descriptors, inode table, directory and htree blocks, extent nodes, indirect blocks, xattr
 * blocks) followed by a script of edits touching all of it. Every failure must be a typed
 * ImgpatchError, every run must end in bounded time, and no write may fall outside the image
 * (the device is exactly the filesystem's size and throws an untyped error for such a write).
 */
import { appendFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ImgpatchError, MemoryDevice } from "@imgpatch/disk";
import { Ext4Editor } from "@imgpatch/ext4";
import { debugfs, describeWithTools, e2fsck, runTool, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { beforeAll, expect, it } from "vitest";
import { type FuzzImage, fuzzImages, type Mutation, mutated, mutationsArb } from "./fuzz-targets.js";
import { mkfs, pseudoBytes } from "./helpers.js";

/** A write outside the image is a bug, not a typed refusal: it must fail the test. Bytes moved are
 * counted: the bound on a case's work (no wall clock). */
class StrictDevice extends MemoryDevice {
  static moved = 0;
  override async readInto(offset: number, target: Uint8Array): Promise<void> {
    StrictDevice.moved += target.length;
    return super.readInto(offset, target);
  }
  override async write(offset: number, data: Uint8Array): Promise<void> {
    if (offset < 0 || offset + data.length > this.size)
      throw new Error(`write outside the image: ${offset}+${data.length} > ${this.size}`);
    StrictDevice.moved += data.length;
    return super.write(offset, data);
  }
  override async writeZeroes(offset: number, length: number): Promise<void> {
    if (offset < 0 || offset + length > this.size)
      throw new Error(`zeroing outside the image: ${offset}+${length} > ${this.size}`);
    return super.writeZeroes(offset, length);
  }
}

async function* chunks(data: Uint8Array, size: number) {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

/** The edits: each kind of metadata the mutations hit is read and rewritten by one of them. */
function script(ed: Ext4Editor): (() => Promise<unknown>)[] {
  return [
    () => ed.mkdir("/d/e/n1/n2", { recursive: true }),
    () => ed.writeFile("/big/entry-new", "x"), // htree insert
    () => ed.writeFile("/big/entry-4", pseudoBytes(9000, 3)), // replace a small file
    () => ed.writeFile("/frag.bin", chunks(pseudoBytes(70_000, 4), 5000)), // stream over a fragmented file
    () => ed.writeAt("/frag.bin", 5000, pseudoBytes(3000, 5)),
    () => ed.unlink("/big/entry-3"),
    () => ed.rename("/tiny", "/d/tiny2"),
    () => ed.setxattr("/xa", "user.w", pseudoBytes(300, 6)),
    () => ed.removexattr("/xa", "user.v"),
    () => ed.symlink("t".repeat(100), "/slow2"),
    () => ed.readlink("/slow"),
    () => ed.truncate("/frag.bin", 1000),
    () => ed.chmod("/d/e/small", 0o600),
    () => ed.chown("/fast", 5, 6),
    () => ed.link("/xa", "/xa2"),
    () => ed.rm("/d", { recursive: true }),
    () => ed.readdir("/big"),
    () => ed.close(),
  ];
}

/** A second script: removal and renames inside the htree, shrinking trees, xattrs on directories. */
function scriptB(ed: Ext4Editor): (() => Promise<unknown>)[] {
  return [
    () => ed.writeFile("/big/entry-5", "y"), // replace inside the htree
    () => ed.rename("/big/entry-6", "/big/entry-6b"), // htree remove + insert
    () => ed.rename("/big/entry-7", "/d/e/moved"),
    () => ed.truncate("/frag.bin", 200_000), // shrink a fragmented file's tree
    () => ed.writeAt("/xa", 100_000, pseudoBytes(5000, 7)), // extend a file with an xattr block
    () => ed.setxattr("/d", "user.dir", pseudoBytes(300, 8)),
    () => ed.utimes("/fast", 1_600_000_000, 1_600_000_000),
    () => ed.mknod("/d/fifo", "fifo", 0o644),
    () => ed.link("/d/e/small", "/big/hard"),
    () => ed.unlink("/slow"),
    () => ed.readFile("/frag.bin"),
    () => ed.rm("/big", { recursive: true }), // the whole htree directory
    () => ed.writeFile("/big2", chunks(pseudoBytes(40_000, 9), 3000)),
    () => ed.close(),
  ];
}

/** Run the script until its first error, which must be typed. */
async function edit(image: Uint8Array, steps = script): Promise<"completed" | "typed"> {
  const dev = new StrictDevice(image, { name: "fuzz.img" });
  let ed: Ext4Editor;
  try {
    ed = await Ext4Editor.open(dev, { timestamp: 1_700_000_000 });
  } catch (e) {
    if (!(e instanceof ImgpatchError)) throw e;
    return "typed";
  }
  for (const [i, step] of steps(ed).entries()) {
    if (process.env.EXT4_EDIT_FUZZ_CASE) console.log(`step ${i}: ${step.toString().slice(6, 60)}`);
    try {
      await step();
    } catch (e) {
      if (!(e instanceof ImgpatchError)) throw e;
      if (process.env.EXT4_EDIT_FUZZ_CASE) console.log(`step ${i}: ${e.message}`);
      return "typed";
    }
  }
  return "completed";
}

describeWithTools(["mke2fs", "debugfs", "e2fsck", "setfattr"], "ext4 editor on mutated metadata", () => {
  const images: FuzzImage[] = [];
  let dir = "";
  beforeAll(async () => {
    dir = await tempDir("ext4-edfuzz-");
    images.push(
      ...(await fuzzImages(dir, [
        ["ext4-csum-1k", ["-t", "ext4", "-b", "1024"]],
        ["ext4-csum-4k", ["-t", "ext4", "-b", "4096"]],
        ["ext3-1k", ["-t", "ext3", "-b", "1024"]],
        ["ext4-inline", ["-t", "ext4", "-b", "1024", "-O", "inline_data,^metadata_csum"]],
      ] as const)),
    );
  });

  it("the edit scripts work on every pristine image (e2fsck clean after them)", async () => {
    for (const img of images) {
      for (const [n, steps] of [
        ["a", script],
        ["b", scriptB],
      ] as const) {
        const bytes = img.bytes.slice();
        expect(await edit(bytes, steps), `${img.name} script ${n}`).toBe("completed");
        const out = join(dir, `${img.name}-edited-${n}.img`);
        await writeFile(out, bytes);
        const r = await e2fsck(out);
        expect(r.problems, `${img.name} script ${n}: ${r.output}`).toEqual([]);
      }
    }
  });

  it("rm -r does not follow a damaged entry into a directory that lives elsewhere; htree dirs are removed and moved", async () => {
    for (const set of [
      ["-t", "ext4"],
      ["-t", "ext3", "-b", "1024"],
    ]) {
      const img = join(dir, `elsewhere-${set.length}.img`);
      const src = join(dir, `elsewhere-src-${set.length}`);
      await mkdir(join(src, "a/sub"), { recursive: true });
      await mkdir(join(src, "b"), { recursive: true });
      await writeFile(join(src, "b/keep"), "keep");
      for (let i = 0; i < 400; i++) await writeFile(join(src, "a/sub", `entry-with-a-long-name-${i}`), "");
      await mkdir(join(src, "h"), { recursive: true });
      for (let i = 0; i < 400; i++) await writeFile(join(src, "h", `entry-with-a-long-name-${i}`), "");
      await mkfs(img, src, 8, [...set]);
      await runTool("e2fsck", ["-fyD", img]); // index /a/sub and /h
      const bIno = Number(/^\s*(\d+)/.exec(await debugfs(img, ["ls -l /b"]))?.[1]);
      expect(bIno).toBeGreaterThan(11);
      // A second entry for /b inside /a: the damage e2fsck reports as a directory with two parents.
      await debugfs(img, [`ln <${bIno}> /a/b-again`], { write: true });
      const bytes = new Uint8Array(await readFile(img));
      const dev = new StrictDevice(bytes, { name: "elsewhere.img" });
      const ed = await Ext4Editor.open(dev, { timestamp: 1_700_000_000 });
      // An htree directory moves (the ancestor walk reads its ".." through the index root).
      await ed.mkdir("/m");
      await ed.rename("/h", "/m/h");
      expect((await ed.readdir("/m/h")).length).toBe(400);
      const err = await ed.rm("/a", { recursive: true }).catch((e: unknown) => e);
      expect(err, String(err)).toBeInstanceOf(ImgpatchError);
      expect(String(err)).toMatch(/is not the directory it was found in/);
      expect(await ed.readFile("/b/keep")).toEqual(Buffer.from("keep"));
      // An htree directory is removed whole.
      await ed.rm("/m", { recursive: true });
      expect(await ed.exists("/m")).toBe(false);
    }
  });

  it.runIf(process.env.EXT4_EDIT_FUZZ_CASE)("one logged case (EXT4_EDIT_FUZZ_CASE)", async () => {
    const [which, tsel, muts] = JSON.parse(process.env.EXT4_EDIT_FUZZ_CASE ?? "[]") as [
      number,
      number,
      [number, number, boolean][],
    ];
    const { img, target, bytes } = mutated(images, which, tsel, muts);
    console.log(img.name, target);
    await writeFile("/tmp/fuzz-case.img", bytes);
    console.log(await edit(bytes));
  });

  /** Mutated images under one edit script: typed errors or completed edits, in bounded time. */
  const fuzzScript = async (steps: typeof script, seed: number, examples: [number, number, Mutation[]][]) => {
    let slowest = 0;
    const tally = { runs: 0, typed: 0, completed: 0 };
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.nat(), mutationsArb, async (which, tsel, muts) => {
        // In-memory reads never leave the microtask queue: give the worker's IPC a turn (vitest's 60 s RPC).
        await new Promise<void>((r) => setImmediate(r));
        const { img, target, bytes } = mutated(images, which, tsel, muts);
        // A hang cannot be reported by the property: the case is logged before it runs.
        if (process.env.EXT4_EDIT_FUZZ_LOG)
          appendFileSync(process.env.EXT4_EDIT_FUZZ_LOG, `${JSON.stringify([which, tsel, muts])}\n`);
        StrictDevice.moved = 0;
        tally.runs++;
        try {
          tally[await edit(bytes, steps)]++;
        } catch (e) {
          throw new Error(`${img.name} ${target.what}@${target.offset}: untyped ${(e as Error)?.stack ?? e}`);
        }
        slowest = Math.max(slowest, StrictDevice.moved);
        // A loop in the metadata must not make an edit walk on: bytes moved, not wall time, bound it.
        expect(StrictDevice.moved).toBeLessThan(2 * 1024 * 1024 * 1024);
      }),
      {
        examples,
        numRuns: Number(process.env.EXT4_EDIT_FUZZ_RUNS ?? 300),
        seed: Number(process.env.EXT4_EDIT_FUZZ_SEED ?? seed),
      },
    );
    if (process.env.EXT4_EDIT_FUZZ_RUNS) console.log({ mostBytesMoved: slowest, ...tally });
    // The mutations must reach the editor's checks (this test can fail).
    expect(tally.typed).toBeGreaterThan(30);
    expect(tally.completed).toBeGreaterThan(30);
  };

  it("mutated metadata: typed errors or completed edits, with bounded I/O, never a write outside the image", async () => {
    // Cases the fuzzer found, kept (the image layout is deterministic): an htree root with hash
    // version 6 (a RangeError once); a directory entry ".\0\0" pointing to its own directory
    // (rm -r recursed forever); a root inode whose i_size says petabytes (an allocation sized by
    // it ran out of memory).
    await fuzzScript(script, 20261127, [
      [
        978469742,
        9149909,
        [
          [1215949852, 6, false],
          [0, 0, false],
        ],
      ],
      [
        399254554,
        1777598363,
        [
          [6, 249, true],
          [1451636664, 255, true],
          [1522706539, 252, false],
        ],
      ],
      [0, 2, [[518111596, 218, false]]],
    ]);
  }, 180_000);

  it("mutated metadata, second script: typed errors or completed edits, with bounded I/O, never a write outside the image", async () => {
    await fuzzScript(scriptB, 20261128, []);
  }, 180_000);
});
