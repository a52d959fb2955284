// The attribute writers on damaged node-form attribute forks: random byte mutations in the
// blocks of a 300-attribute fork (dabtree nodes, leaves, remote values; 1 KiB blocks, v5), half
// with the CRC recomputed so the damage reaches the logic; then attributes are set (local and
// remote, new and replaced), read and removed — each change goes through the one-leaf path
// (attr-node-write.ts: descent, splits, joins, emptied leaves). Every failure must be a typed
// ImgpatchError — never a RangeError/TypeError or a hang — and no write may land past the image.
import { readFileSync } from "node:fs";
import { ImgpatchError, MemoryDevice } from "@imgpatch/disk";
import { describeWithTools, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { stampCrc } from "../src/buf.js";
import { XfsEditor } from "../src/editor.js";
import { FEATURE_SETS, mkfsImage, XFS_TOOLS } from "./space-helpers.js";

interface Target {
  offset: number;
  length: number;
  /** Offset of the block's v5 CRC. */
  crcAt: number;
}

/** Counts writes that would land outside the image (the device refuses them with a typed error). */
class WatchedDevice extends MemoryDevice {
  outside = 0;
  override async write(offset: number, data: Uint8Array): Promise<void> {
    if (offset < 0 || offset + data.length > this.size) this.outside++;
    return super.write(offset, data);
  }
}

async function buildBase(): Promise<{ image: Uint8Array; targets: Target[] }> {
  const dir = await tempDir("xfs-attr-fuzz-");
  const path = mkfsImage(dir, "base.img", [...FEATURE_SETS["v5-1k"], "-d", "agcount=2"], 32, 1);
  const image = new Uint8Array(readFileSync(path));
  const dev = new MemoryDevice(image, {}, "base.img");
  const ed = await XfsEditor.open(dev, { timestamp: 1 });

  for (let i = 0; i < 300; i++)
    await ed.setxattr(
      "/f0",
      `user.a${i}-${"y".repeat(100)}`,
      new Uint8Array(i % 5 === 0 ? 900 : 200).fill(i),
    );
  await ed.close();
  const probe = await XfsEditor.open(new MemoryDevice(image, { readOnly: false }, "probe.img"));
  const g = probe.fs.geometry;
  const targets: Target[] = [];
  // Attribute leaves, nodes and remote value blocks all carry their v5 CRC at byte 12.
  const inode = await probe.fs.readInode((await probe.fs.stat("/f0")).ino);
  for (const e of await probe.fs.forkExtents(inode, "attr"))
    for (let b = 0; b < e.blockcount; b++)
      targets.push({ offset: g.fsbToByte(e.startblock + b), length: g.blockSize, crcAt: 12 });
  await probe.close();
  return { image, targets };
}

describeWithTools(XFS_TOOLS, "node-form attribute writes on damaged images", () => {
  it("sets, gets and removes end in success or an ImgpatchError", async () => {
    const { image, targets } = await buildBase();
    expect(targets.length).toBeGreaterThan(10);
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
            const ed = await XfsEditor.open(dev, { timestamp: 2 });
            const steps: (() => Promise<unknown>)[] = [
              () => ed.setxattr("/f0", "user.new", new Uint8Array(50)),
              () => ed.removexattr("/f0", "user.a3-" + "y".repeat(100)),
              () => ed.removexattr("/f0", "user.a10-" + "y".repeat(100)),
              () => ed.setxattr("/f0", "user.a11-" + "y".repeat(100), new Uint8Array(3000)),
              () => ed.getxattr("/f0", "user.a12-" + "y".repeat(100)),
              ...Array.from(
                { length: 30 },
                (_, k) => () => ed.setxattr("/f0", `user.more${k}`, new Uint8Array(600)),
              ),
              ...Array.from(
                { length: 60 },
                (_, k) => () => ed.removexattr("/f0", `user.a${k * 2}-${"y".repeat(100)}`),
              ),
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
      { numRuns: Number(process.env.XFS_FUZZ_RUNS ?? 60), seed: 7 },
    );
  }, 600_000);
});
