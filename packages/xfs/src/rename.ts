/**
 * What a directory moved to another parent needs besides the name change (xfs_rename): its ".."
 * must name the new parent. Short-form directories keep the parent in their header; block, leaf
 * and node directories in the ".." entry, which is always the second entry of the first data
 * block:
 *
 * | form            | where the parent inode number is                                         |
 * |-----------------|--------------------------------------------------------------------------|
 * | short form      | header byte 2: 4 bytes, or 8 when i8count > 0                            |
 * | data block (v4) | entry after "." at byte 16 + 16 = 32 (8 bytes), name ".." follows          |
 * | data block (v5) | entry after "." at byte 64 + 16 = 80; the block's CRC (byte 4) and LSN    |
 * |                 | (byte 16) are restamped                                                   |
 *
 * ("." takes 16 bytes: 8 inode + 1 namelen + 1 name + optional ftype + 2 tag, rounded to 8.)
 */
import { agbOffset, fsbToAg } from "./ag.js";
import type { Allocator, SpaceContext } from "./alloc.js";
import { be32, setBe32, setBe64 } from "./bytes.js";
import { XfsFormatError, XfsUnsupportedError } from "./errors.js";
import { dataMapping } from "./file-write.js";
import { FMT_LOCAL, type XfsInode } from "./inode.js";

/** Point directory `dir`'s ".." at `parent`. `dirBlockSize` is the directory block size in bytes. */
export async function setDotDot(
  ctx: SpaceContext,
  alloc: Allocator,
  dir: XfsInode,
  parent: number,
  dirBlockSize: number,
): Promise<void> {
  const geo = ctx.geo;
  const where = { structure: "directory", inode: dir.ino, file: geo.file };
  if (dir.format === FMT_LOCAL) {
    const fork = dir.raw.subarray(dir.version >= 3 ? 176 : 100);
    const wide = fork[1] > 0;
    if (wide) {
      setBe32(fork, 2, Math.floor(parent / 2 ** 32));
      setBe32(fork, 6, parent >>> 0);
    } else if (parent > 0xffffffff) {
      throw new XfsUnsupportedError(
        "rename-directory",
        "the new parent needs 8-byte inode numbers in a short-form directory",
        where,
      );
    } else setBe32(fork, 2, parent);
    return;
  }
  const { extents } = await dataMapping(ctx, alloc, dir);
  const first = extents.find((e) => e.startoff === 0);
  if (!first) throw new XfsFormatError("directory has no first data block", where);
  const { agno, agbno } = fsbToAg(geo, first.startblock);
  const buf = await ctx.bufs.read(agbOffset(geo, agno, agbno), dirBlockSize, "directory block");
  const b = buf.data;
  const hdr = geo.crc ? 64 : 16;
  const at = hdr + 16;
  const magic = be32(b, 0);
  const ok = geo.crc
    ? magic === 0x58444233 || magic === 0x58444433
    : magic === 0x58443242 || magic === 0x58443244;
  if (!ok || b[at + 8] !== 2 || b[at + 9] !== 0x2e || b[at + 10] !== 0x2e) {
    throw new XfsFormatError("the first directory block does not hold '..' where it belongs", where);
  }
  setBe64(b, at, parent);
  ctx.bufs.dirty(buf, geo.crc ? { crcOffset: 4, lsnOffset: 16 } : {});
}
