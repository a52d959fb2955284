/**
 * Symbolic link targets (xfs_symlink.c): a target that fits the data fork is stored there (local
 * format); a longer one (up to 1024 bytes) goes to blocks of its own, mapped as an extent list.
 * On v5 each remote block starts with a header and carries its own CRC:
 *
 * | off | size | field                                             |
 * |-----|------|---------------------------------------------------|
 * | 0   | 4    | sl_magic 'XSLM'                                   |
 * | 4   | 4    | sl_offset: where this block's bytes sit in the target |
 * | 8   | 4    | sl_bytes: target bytes in this block              |
 * | 12  | 4    | sl_crc (little-endian, over the whole block)       |
 * | 16  | 16   | sl_uuid                                           |
 * | 32  | 8    | sl_owner (inode number)                           |
 * | 40  | 8    | sl_blkno (daddr of the block)                     |
 * | 48  | 8    | sl_lsn                                            |
 *
 * v4 blocks hold the bytes alone.
 */
import { agbOffset, agbToFsb, inoToAg } from "./ag.js";
import type { Allocator, SpaceContext } from "./alloc.js";
import { setBe32, setBe64 } from "./bytes.js";
import { XfsFsError } from "./errors.js";
import { forkArea, packExtent } from "./fork.js";
import { FMT_EXTENTS, FMT_LOCAL, type XfsInode } from "./inode.js";

export const SYMLINK_MAXLEN = 1024;
const SYMLINK_MAGIC = 0x58534c4d;
const HDR = 56;

/**
 * Store `target` as the link's content (the inode is fresh: empty data fork). `inBlocks` forces the
 * remote form (xfs_bmap_add_attrfork_local moving a local target out of the way of an attribute fork).
 */
export async function writeSymlinkTarget(
  ctx: SpaceContext,
  alloc: Allocator,
  inode: XfsInode,
  target: Uint8Array,
  inBlocks = false,
): Promise<void> {
  const geo = ctx.geo;
  if (target.length === 0 || target.length > SYMLINK_MAXLEN) {
    throw new XfsFsError("ENAMETOOLONG", "symlink target must be 1 to 1024 bytes", `<inode ${inode.ino}>`);
  }
  const area = forkArea(inode, "data");
  if (!area) throw new Error("no data fork");
  const fork = inode.raw.subarray(area.start, area.start + area.size);
  inode.size = target.length;
  if (target.length <= area.size && !inBlocks) {
    inode.format = FMT_LOCAL;
    fork.fill(0);
    fork.set(target);
    return;
  }
  const per = geo.blockSize - (geo.crc ? HDR : 0);
  const blocks = Math.ceil(target.length / per);
  const { agno, agino } = inoToAg(geo, inode.ino);
  const r = await alloc.alloc(agno, {
    minlen: blocks,
    maxlen: blocks,
    near: Math.floor(agino / geo.inopblock),
    owner: { owner: BigInt(inode.ino), offset: 0n },
  });
  if (!r) throw new XfsFsError("ENOSPC", "no space left for a symlink target", `<inode ${inode.ino}>`);
  for (let i = 0; i < blocks; i++) {
    const buf = ctx.bufs.fresh(agbOffset(geo, r.agno, r.ext.agbno + i), geo.blockSize, "symlink block");
    const b = buf.data;
    const bytes = target.subarray(i * per, Math.min((i + 1) * per, target.length));
    if (geo.crc) {
      setBe32(b, 0, SYMLINK_MAGIC);
      setBe32(b, 4, i * per);
      setBe32(b, 8, bytes.length);
      b.set(geo.metaUuid.subarray(0, 16), 16);
      setBe64(b, 32, inode.ino);
      setBe64(b, 40, buf.offset / 512);
      b.set(bytes, HDR);
      ctx.bufs.dirty(buf, { crcOffset: 12, lsnOffset: 48 });
    } else {
      b.set(bytes, 0);
      ctx.bufs.dirty(buf, {});
    }
  }
  inode.format = FMT_EXTENTS;
  fork.fill(0);
  packExtent(fork, 0, {
    startoff: 0,
    startblock: agbToFsb(geo, r.agno, r.ext.agbno),
    blockcount: blocks,
    unwritten: false,
  });
  inode.nextents = 1;
  inode.nblocks += blocks;
}
