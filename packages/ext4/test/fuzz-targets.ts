/** Byte ranges of an image's metadata structures, for the fuzz tests to mutate. */
import { MemoryDevice } from "@imgpatch/disk";
import { EXTENT_MAGIC, Ext4Fs, INODE_FLAGS, parseExtentHeader, parseExtentIndex, u32 } from "@imgpatch/ext4";

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
