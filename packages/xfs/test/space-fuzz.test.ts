// The space engine and the editor on damaged images: random byte mutations in AG headers, the
// free-space/inode/rmap btrees, a bmbt and inode cores (half of them with the CRC recomputed so
// the damage gets past the checksum and reaches the logic), then an edit script. Every failure
// must be a typed ImgpatchError — never a RangeError/TypeError, a hang, or a write outside the
// image.
import { readFileSync } from "node:fs";
import { ImgpatchError, MemoryDevice } from "@imgpatch/disk";
import { describeWithTools, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { agbOffset } from "../src/ag.js";
import { stampCrc } from "../src/buf.js";
import { XfsEditor } from "../src/editor.js";
import { bmbtTree } from "../src/file-write.js";
import { loadInode } from "../src/inode-create.js";
import { FEATURE_SETS, mkfsImage, XFS_TOOLS } from "./space-helpers.js";

interface Target {
  offset: number;
  length: number;
  /** Where the CRC of the structure lives (relative to offset), and over how many bytes. */
  crc?: { at: number; span: number; start: number };
}

/** A base image with multi-level trees and a bmbt file, and the metadata regions to damage. */
async function buildBase(): Promise<{ image: Uint8Array; targets: Target[] }> {
  const dir = await tempDir("xfs-space-fuzz-");
  const path = mkfsImage(dir, "base.img", [...FEATURE_SETS["v5-1k"], "-d", "agcount=2"], 32, 3);
  const image = new Uint8Array(readFileSync(path));
  const dev = new MemoryDevice(image, {}, "base.img");
  const ed = await XfsEditor.open(dev, { timestamp: 1 });
  const bs = ed.ctx.geo.blockSize;
  const holey = new Uint8Array(200 * bs);
  for (let b = 0; b < 200; b += 2) holey.fill(b + 1, b * bs, (b + 1) * bs);
  await ed.writeFile("/f0", holey, { sparse: true });
  await ed.writeFile("/f1", new Uint8Array(300 * bs).fill(3));
  const geo = ed.ctx.geo;
  const targets: Target[] = [];
  const sect = geo.sectorSize;
  for (let agno = 0; agno < geo.agCount; agno++) {
    const base = agbOffset(geo, agno, 0);
    targets.push({ offset: base + sect, length: sect, crc: { at: 216, span: sect, start: 0 } });
    targets.push({ offset: base + 2 * sect, length: sect, crc: { at: 312, span: sect, start: 0 } });
    targets.push({ offset: base + 3 * sect, length: sect, crc: { at: 32, span: sect, start: 0 } });
    const ag = await ed.alloc.ag(agno);
    const agi = await ed.inodes.ag(agno);
    const trees = [ag.bno, ag.cnt, ag.rmap, agi.inobt, agi.finobt];
    for (const t of trees) {
      if (!t) continue;
      for (const p of await t.blocks())
        targets.push({ offset: agbOffset(geo, agno, p), length: bs, crc: { at: 52, span: bs, start: 0 } });
    }
  }
  const f0 = await loadInode(ed.ctx, (await ed.stat("/f0")).ino);
  for (const p of await bmbtTree(ed.ctx, ed.alloc, f0).blocks()) {
    targets.push({
      offset: (Math.floor(p / 2 ** geo.agBlockLog) * geo.agBlocks + (p % 2 ** geo.agBlockLog)) * bs,
      length: bs,
      crc: { at: 64, span: bs, start: 0 },
    });
  }
  for (const name of ["/f0", "/f1", "/f2", "/"]) {
    const ino = (await ed.stat(name)).ino;
    const off = ed.fs.geometry.inoToByte(ino);
    targets.push({ offset: off, length: geo.inodeSize, crc: { at: 100, span: geo.inodeSize, start: 0 } });
  }
  await ed.close();
  return { image: dev.bytes.slice(), targets };
}

const mutationArb = fc.array(
  fc.record({
    target: fc.nat(),
    at: fc.nat(),
    value: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 0xff, 1, 0x80)),
    width: fc.constantFrom(1, 2, 4),
  }),
  { minLength: 1, maxLength: 6 },
);

describeWithTools(XFS_TOOLS, "space engine on damaged images (typed errors only)", () => {
  it("edit scripts on mutated metadata end in success or an ImgpatchError, never an untyped error", async () => {
    const base = await buildBase();
    let failures = 0;
    let successes = 0;
    await fc.assert(
      fc.asyncProperty(mutationArb, fc.boolean(), async (muts, fixCrc) => {
        const img = base.image.slice();
        for (const m of muts) {
          const t = base.targets[m.target % base.targets.length];
          const at = t.offset + (m.at % t.length);
          for (let k = 0; k < m.width && at + k < t.offset + t.length; k++)
            img[at + k] = (m.value + k * 37) & 0xff;
          if (fixCrc && t.crc) stampCrc(img.subarray(t.offset, t.offset + t.crc.span), t.crc.at);
        }
        const dev = new MemoryDevice(img, {}, "fuzz.img");
        // Any write reaching past the image is a failure, even though the device would refuse it.
        const outside: number[] = [];
        const write = dev.write.bind(dev);
        dev.write = (offset: number, data: Uint8Array) => {
          if (offset < 0 || offset + data.length > dev.size) outside.push(offset);
          return write(offset, data);
        };
        // Each step runs even when an earlier one failed (the editor undoes a failed call first).
        const typed = async (step: () => Promise<unknown>): Promise<void> => {
          try {
            await step();
            successes++;
          } catch (e) {
            if (!(e instanceof ImgpatchError)) throw e;
            failures++;
          }
        };
        let ed: XfsEditor | undefined;
        await typed(async () => {
          ed = await XfsEditor.open(dev, { timestamp: 2 });
        });
        if (ed) {
          const e = ed;
          const bs = e.ctx.geo.blockSize;
          const holey = new Uint8Array(80 * bs);
          for (let b = 0; b < 80; b += 2) holey[b * bs] = 1;
          await typed(() => e.writeFile("/f2", new Uint8Array(50 * bs).fill(9)));
          await typed(() => e.writeFile("/f0", "short"));
          await typed(() => e.truncate("/f1", 5 * bs));
          await typed(() => e.writeFile("/f1", holey, { sparse: true }));
          await typed(() => e.chmod("/f2", 0o600));
          await typed(() => e.mkdir("/n/m", { recursive: true }));
          await typed(() => e.writeFile("/n/m/a", "a"));
          await typed(() => e.symlink("/n/m/a", "/n/link"));
          await typed(() => e.setxattr("/f2", "security.selinux", "system_u:object_r:etc_t:s0\0"));
          await typed(() => e.rename("/n/m/a", "/n/b"));
          await typed(() => e.rename("/n/m", "/moved"));
          await typed(() => e.unlink("/f0"));
          await typed(() => e.rm("/n", { recursive: true }));
          await typed(() => e.close());
        }
        expect(outside).toEqual([]);
      }),
      { numRuns: Number(process.env.XFS_FUZZ_RUNS ?? 100) },
    );
    // The script must have run both ways: not every mutation is fatal, not every one harmless.
    expect(successes).toBeGreaterThan(0);
    expect(failures).toBeGreaterThan(0);
  });
});
