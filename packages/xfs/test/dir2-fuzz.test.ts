// The directory and attribute writers on damaged images: random byte mutations in the blocks of
// a node directory (dabtree nodes, leafn, free index, data blocks) and of a node-form attribute
// fork, half of them with the v5 CRC recomputed so the damage reaches the logic; then names are
// added, looked up and removed and attributes set and removed. Every failure must be a typed
// ImgpatchError — never a RangeError/TypeError or a hang — and no write may land past the image.
import { readFileSync } from "node:fs";
import { ImgpatchError, MemoryDevice } from "@imgpatch/disk";
import { describeWithTools, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { stampCrc } from "../src/buf.js";
import { dir2WriterWith } from "../src/dir2-write.js";
import { XfsEditor } from "../src/editor.js";
import { FEATURE_SETS, mkfsImage, XFS_TOOLS } from "./space-helpers.js";

interface Target {
  offset: number;
  length: number;
  /** Offset of the block's CRC (v5 directory blocks: 4 for data/free, 12 for dabtree blocks). */
  crcAt: number;
}

const WRITER = dir2WriterWith({ nodeEntries: 4, leafEntries: 24 });

/** Counts writes that would land outside the image (the device refuses them with a typed error). */
class WatchedDevice extends MemoryDevice {
  outside = 0;
  override async write(offset: number, data: Uint8Array): Promise<void> {
    if (offset < 0 || offset + data.length > this.size) this.outside++;
    return super.write(offset, data);
  }
}

async function buildBase(): Promise<{ image: Uint8Array; targets: Target[] }> {
  const dir = await tempDir("xfs-dir2-fuzz-");
  const path = mkfsImage(dir, "base.img", [...FEATURE_SETS["v5-1k"], "-d", "agcount=2"], 32, 1);
  const image = new Uint8Array(readFileSync(path));
  const dev = new MemoryDevice(image, {}, "base.img");
  const ed = await XfsEditor.open(dev, { timestamp: 1, directories: WRITER });
  await ed.mkdir("/d");
  for (let i = 0; i < 600; i++) await ed.writeFile(`/d/name-${i}-${"x".repeat(i % 30)}`, "");
  for (let i = 0; i < 40; i++)
    await ed.setxattr("/f0", `user.a${i}-${"y".repeat(100)}`, new Uint8Array(200).fill(i));
  await ed.close();
  const probe = await XfsEditor.open(new MemoryDevice(image, { readOnly: false }, "probe.img"));
  const g = probe.fs.geometry;
  const targets: Target[] = [];
  const add = async (path: string, fork: "data" | "attr") => {
    const inode = await probe.fs.readInode((await probe.fs.stat(path)).ino);
    for (const e of await probe.fs.forkExtents(inode, fork)) {
      for (let b = 0; b < e.blockcount; b++) {
        const fileBlock = e.startoff + b;
        // Directory data blocks carry their CRC at 4, free blocks too; leaf and node blocks at 12.
        const dirLeafSection = fork === "data" && fileBlock >= 2 ** 35 / g.blockSize;
        const dirFree = fork === "data" && fileBlock >= 2 ** 36 / g.blockSize;
        const crcAt = fork === "attr" || (dirLeafSection && !dirFree) ? 12 : 4;
        targets.push({ offset: g.fsbToByte(e.startblock + b), length: g.blockSize, crcAt });
      }
    }
  };
  await add("/d", "data");
  await add("/f0", "attr");
  await probe.close();
  return { image, targets };
}

describeWithTools(XFS_TOOLS, "directory and attribute writers on damaged images", () => {
  it("adds, lookups, removes and attribute changes end in success or an ImgpatchError", async () => {
    const { image, targets } = await buildBase();
    expect(targets.length).toBeGreaterThan(40);
    await fc.assert(
      fc.asyncProperty(
        fc.nat(),
        fc.array(fc.record({ at: fc.nat(), value: fc.nat({ max: 255 }) }), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        async (which, muts, fixCrc) => {
          const img = image.slice();
          const t = targets[which % targets.length];
          for (const m of muts) img[t.offset + (m.at % t.length)] = m.value;
          if (fixCrc) stampCrc(img.subarray(t.offset, t.offset + t.length), t.crcAt);
          const dev = new WatchedDevice(img, { readOnly: false }, "fuzz.img");
          const script = async () => {
            const ed = await XfsEditor.open(dev, { timestamp: 2, directories: WRITER });
            const steps: (() => Promise<unknown>)[] = [
              () => ed.writeFile("/d/new-name-1", "n"),
              () => ed.stat("/d/name-17-xxxxxxxxxxxxxxxxx"),
              () => ed.unlink("/d/name-300-"),
              () => ed.rename("/d/name-42-xxxxxxxxxxxx", "/d/renamed"),
              () => ed.readdir("/d"),
              () => ed.setxattr("/f0", "user.new", new Uint8Array(50)),
              () => ed.removexattr("/f0", "user.a3-" + "y".repeat(100)),
            ];
            for (const s of steps) {
              try {
                await s();
              } catch (e) {
                if (!(e instanceof ImgpatchError)) throw e;
              }
            }
            try {
              await ed.close();
            } catch (e) {
              if (!(e instanceof ImgpatchError)) throw e;
            }
          };
          try {
            await script();
          } catch (e) {
            if (!(e instanceof ImgpatchError)) throw e;
          }
          expect(dev.outside).toBe(0);
        },
      ),
      { numRuns: Number(process.env.XFS_FUZZ_RUNS ?? 60), seed: 1408 },
    );
  }, 600_000);
});
