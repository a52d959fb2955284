/** The fuzz tests' images and the byte ranges of their metadata structures, to mutate. */
import { mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { MemoryDevice } from "@imgpatch/disk";
import { EXTENT_MAGIC, Ext4Fs, INODE_FLAGS, parseExtentHeader, parseExtentIndex, u32 } from "@imgpatch/ext4";
import { debugfs, runTool, runToolOk } from "@imgpatch/testkit";
import fc from "fast-check";
import { mkfs, pseudoBytes } from "./helpers.js";

export interface Target {
  what: string;
  offset: number;
  length: number;
}

/** Byte ranges of every metadata structure the reader touches. */
export async function metadataTargets(image: Uint8Array): Promise<Target[]> {
  const fs = await Ext4Fs.open(new MemoryDevice(image.slice(), { readOnly: true }));
  const bs = fs.blockSize;
  const t: Target[] = [{ what: "superblock", offset: 1024, length: 1024 }];
  t.push({ what: "gdt", offset: (bs === 1024 ? 2 : 1) * bs, length: bs });
  const itBlocks = Math.min(8, Math.ceil((fs.sb.inodesPerGroup * fs.sb.inodeSize) / bs));
  for (let i = 0; i < itBlocks; i++)
    t.push({ what: "inode table", offset: (fs.groups[0].inodeTable + i) * bs, length: bs });
  for await (const e of fs.walk("/")) {
    const inode = await fs.readInode(e.ino);
    if (inode.fileAcl) t.push({ what: "xattr block", offset: inode.fileAcl * bs, length: bs });
    if (inode.flags & INODE_FLAGS.EXTENTS) {
      const visit = async (node: Uint8Array) => {
        const h = parseExtentHeader(node);
        if (h.magic !== EXTENT_MAGIC || h.depth === 0) return;
        for (let i = 0; i < h.entries; i++) {
          const c = parseExtentIndex(node, i).leaf;
          t.push({ what: "extent node", offset: c * bs, length: bs });
          await visit(await fs.readBlock(c));
        }
      };
      await visit(inode.iBlock);
    } else if (!(inode.flags & INODE_FLAGS.INLINE_DATA) && !e.stats.isSymbolicLink()) {
      for (const k of [12, 13]) {
        const p = u32(inode.iBlock, k * 4);
        if (p) t.push({ what: "indirect block", offset: p * bs, length: bs });
      }
    }
    if (e.stats.isDirectory() || (e.stats.isSymbolicLink() && !fs.isFastSymlink(inode))) {
      if (!(inode.flags & INODE_FLAGS.INLINE_DATA)) {
        for await (const r of fs.blockRuns(inode)) {
          for (let k = 0; k < Math.min(r.length, 4); k++)
            t.push({
              what: e.stats.isDirectory() ? "dir block" : "symlink block",
              offset: (r.physical + k) * bs,
              length: bs,
            });
        }
      }
    }
  }
  return t;
}

export interface FuzzImage {
  name: string;
  bytes: Uint8Array;
  targets: Target[];
}

/**
 * One small tree made with each mke2fs argument set (`[name, args]`): a 150-entry htree directory,
 * a fragmented file (ext4 sets without inline_data: its extent tree gets index nodes), fast and
 * slow symlinks, an xattr in an external block; indexed by e2fsck -fyD.
 */
export async function fuzzImages(
  dir: string,
  sets: readonly (readonly [string, readonly string[]])[],
): Promise<FuzzImage[]> {
  const src = join(dir, "src");
  await mkdir(join(src, "big"), { recursive: true });
  await mkdir(join(src, "d/e"), { recursive: true });
  for (let i = 0; i < 150; i++) await writeFile(join(src, "big", `entry-${i}`), i % 3 ? "" : `${i}`);
  await writeFile(join(src, "frag.bin"), pseudoBytes(300 * 1024, 1));
  await writeFile(join(src, "d/e/small"), "small");
  await writeFile(join(src, "tiny"), "x");
  await symlink("d/e/small", join(src, "fast"));
  await symlink(`/d/${"s".repeat(200)}`, join(src, "slow"));
  await writeFile(join(src, "xa"), "x");
  await runToolOk("setfattr", [
    "-n",
    "user.v",
    "-v",
    `0x${pseudoBytes(600, 2).toString("hex")}`,
    join(src, "xa"),
  ]);
  const images: FuzzImage[] = [];
  for (const [name, args] of sets) {
    const img = join(dir, `${name}.img`);
    await mkfs(img, src, 4, [...args]);
    if (name.startsWith("ext4") && !name.includes("inline")) {
      const cmds: string[] = [];
      for (let b = 1; b < 300; b += 2) cmds.push(`punch /frag.bin ${b} ${b}`);
      await debugfs(img, cmds, { write: true });
    }
    await runTool("e2fsck", ["-fyD", img]);
    const bytes = new Uint8Array(await readFile(img));
    images.push({ name, bytes, targets: await metadataTargets(bytes) });
  }
  return images;
}

/** Up to 12 byte mutations: [position, value, flip one bit (else set the byte)]. */
export type Mutation = [number, number, boolean];
export const mutationsArb: fc.Arbitrary<Mutation[]> = fc.array(
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()),
  { minLength: 1, maxLength: 12 },
);

/** A copy of one image (`which`) with `muts` applied inside one of its structures (`tsel`). */
export function mutated(
  images: readonly FuzzImage[],
  which: number,
  tsel: number,
  muts: readonly Mutation[],
): { img: FuzzImage; target: Target; bytes: Uint8Array } {
  const img = images[which % images.length];
  const target = img.targets[tsel % img.targets.length];
  const bytes = img.bytes.slice();
  for (const [pos, val, xor] of muts) {
    const o = target.offset + (pos % target.length);
    bytes[o] = xor ? bytes[o] ^ (1 << (val & 7)) : val;
  }
  return { img, target, bytes };
}
