/**
 * Inode cores through the metadata buffer cache, and the life cycle of an inode: create (allocate
 * one with ialloc.ts and write a fresh core, as xfs_init_new_inode does) and release (mark the
 * core free and give the inode back, as xfs_ifree does). The core codec is inode.ts; the forks'
 * contents are the callers' (file-write.ts for data, the directory and attribute writers).
 */
import { agbOffset, inoToAg, NULLAGINO } from "./ag.js";
import type { SpaceContext } from "./alloc.js";
import type { MetaBuf } from "./buf.js";
import { be32, setBe32 } from "./bytes.js";
import { XfsFormatError } from "./errors.js";
import type { InodeAllocator } from "./ialloc.js";
import {
  DIFLAG2_BIGTIME,
  DIFLAG2_COWEXTSIZE,
  DIFLAG2_DAX,
  DIFLAG2_NREXT64,
  DIFLAG2_REFLINK,
  decodeInode,
  encodeInode,
  FMT_EXTENTS,
  FMT_LOCAL,
  type XfsInode,
  type XfsTimestamp,
} from "./inode.js";

/** The block buffer holding an inode and the inode's byte offset inside it. */
async function inodeBuf(ctx: SpaceContext, ino: number): Promise<{ buf: MetaBuf; off: number }> {
  const geo = ctx.geo;
  const { agno, agino } = inoToAg(geo, ino);
  if (agno >= geo.agCount)
    throw new XfsFormatError(`inode ${ino} lies past the last AG`, { inode: ino, file: geo.file });
  const agbno = Math.floor(agino / geo.inopblock);
  const buf = await ctx.bufs.read(agbOffset(geo, agno, agbno), geo.blockSize, "inode block");
  buf.inodes = true;
  return { buf, off: (agino % geo.inopblock) * geo.inodeSize };
}

/** Read an inode through the buffer cache (sees changes not yet committed). */
export async function loadInode(ctx: SpaceContext, ino: number): Promise<XfsInode> {
  const { buf, off } = await inodeBuf(ctx, ino);
  return decodeInode(buf.data, off, ctx.geo.inodeSize, ino, ctx.geo.crc, { file: ctx.geo.file });
}

/** Encode an inode (core and forks from `inode.raw`) into its block buffer, CRC included. */
export async function storeInode(ctx: SpaceContext, inode: XfsInode): Promise<void> {
  const { buf, off } = await inodeBuf(ctx, inode.ino);
  encodeInode(inode, buf.data, off, ctx.geo.inodeSize, ctx.geo.metaUuid);
  // Inode CRCs are per inode and computed by encodeInode; the block has no CRC of its own.
  ctx.bufs.dirty(buf, {}, off, ctx.geo.inodeSize);
}

export interface NewInode {
  /** Full st_mode (type and permission bits). */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  /** atime, mtime, ctime and (v3) crtime. */
  time: XfsTimestamp;
  projid?: number;
  /** Preferred AG (the parent directory's, for files). */
  agno?: number;
}

/** Allocate an inode and give it a fresh core: empty extents-format forks, no attribute fork. */
export async function createInode(
  ctx: SpaceContext,
  inodes: InodeAllocator,
  spec: NewInode,
): Promise<XfsInode> {
  const geo = ctx.geo;
  const ino = await inodes.allocInode(spec.agno ?? 0);
  const { buf, off } = await inodeBuf(ctx, ino);
  const gen = be32(buf.data, off + 92);
  let flags2 = 0n;
  if (geo.crc && geo.bigtime) flags2 |= DIFLAG2_BIGTIME;
  if (geo.crc && geo.nrext64) flags2 |= DIFLAG2_NREXT64;
  const t = { ...spec.time };
  const inode: XfsInode = {
    ino,
    raw: new Uint8Array(geo.inodeSize),
    mode: spec.mode,
    version: geo.crc ? 3 : 2,
    format: FMT_EXTENTS,
    uid: spec.uid,
    gid: spec.gid,
    nlink: spec.nlink,
    projid: spec.projid ?? 0,
    flushiter: 0,
    atime: t,
    mtime: { ...t },
    ctime: { ...t },
    size: 0,
    nblocks: 0,
    extsize: 0,
    nextents: 0,
    anextents: 0,
    forkoff: 0,
    aformat: FMT_EXTENTS,
    dmevmask: 0,
    dmstate: 0,
    flags: 0,
    gen,
    nextUnlinked: NULLAGINO,
    crc: 0,
    changecount: geo.crc ? 1n : 0n,
    lsn: 0n,
    flags2,
    cowextsize: 0,
    crtime: geo.crc ? { ...t } : undefined,
    storedIno: ino,
    uuid: geo.crc ? geo.metaUuid : undefined,
  };
  encodeInode(inode, buf.data, off, geo.inodeSize, geo.metaUuid);
  ctx.bufs.dirty(buf, {}, off, geo.inodeSize);
  return inode;
}

/**
 * Mark an inode's core free (mode 0, no forks, generation bumped) and give the inode back to its
 * chunk. The caller has already released the forks' blocks.
 */
export async function releaseInode(
  ctx: SpaceContext,
  inodes: InodeAllocator,
  inode: XfsInode,
): Promise<void> {
  inode.raw.fill(0, inode.version >= 3 ? 176 : 100);
  Object.assign(inode, {
    mode: 0,
    nlink: 0,
    size: 0,
    nblocks: 0,
    nextents: 0,
    anextents: 0,
    forkoff: 0,
    format: FMT_EXTENTS,
    aformat: FMT_EXTENTS,
    flags: 0,
    // xfs_dinode_verify rejects reflink/cowextsize flags on anything but a regular file (or a
    // directory), a free inode included: the kernel's xfs_ifree resets them too.
    flags2: inode.flags2 & ~(DIFLAG2_REFLINK | DIFLAG2_COWEXTSIZE | DIFLAG2_DAX),
    cowextsize: 0,
    dmevmask: 0,
    dmstate: 0,
    gen: (inode.gen + 1) >>> 0,
    nextUnlinked: NULLAGINO,
  });
  await storeInode(ctx, inode);
  await inodes.freeInode(inode.ino);
}

/**
 * Make a fresh directory inode an empty short-form directory (xfs_dir2_sf_create): header with no
 * entries and the parent's number, 4 bytes wide unless it needs 8 (then i8count counts it).
 *
 * | off | size  | field                        |
 * |-----|-------|------------------------------|
 * | 0   | 1     | count (entries)              |
 * | 1   | 1     | i8count (8-byte inode numbers) |
 * | 2   | 4 / 8 | parent inode number          |
 */
export function initShortformDir(inode: XfsInode, parent: number): void {
  const lit = inode.version >= 3 ? 176 : 100;
  const wide = parent > 0xffffffff;
  const fork = inode.raw.subarray(lit);
  fork.fill(0);
  fork[1] = wide ? 1 : 0;
  if (wide) {
    setBe32(fork, 2, Math.floor(parent / 2 ** 32));
    setBe32(fork, 6, parent >>> 0);
  } else setBe32(fork, 2, parent);
  inode.format = FMT_LOCAL;
  inode.size = wide ? 10 : 6;
}
