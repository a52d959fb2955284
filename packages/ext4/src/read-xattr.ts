/** Extended attributes: in the inode body, in the external block, and ea_inode values. */
import { u32 } from "./bytes.js";
import { Ext4ChecksumError, Ext4FormatError, Ext4FsError } from "./errors.js";
import { INCOMPAT, INODE_FLAGS } from "./features.js";
import { type Inode, inodeXattrOffset } from "./inode.js";
import { locate, type ReadContext, readBlock, reportProblem } from "./read-context.js";
import { readInodeRange } from "./read-data.js";
import { readInode } from "./read-inode.js";
import { resolve } from "./read-lookup.js";
import { hasIncompat } from "./superblock.js";
import {
  decodePosixAcl,
  encodePosixAclXattr,
  isPosixAclName,
  parseXattrBlockHeader,
  parseXattrEntries,
  XATTR_BLOCK_HEADER_SIZE,
  XATTR_MAGIC,
  type XattrEntry,
  xattrBlockChecksum,
} from "./xattr.js";

/** Largest xattr value (Linux XATTR_SIZE_MAX). */
const XATTR_SIZE_MAX = 65536;

/** Entries and values from the inode body. */
export async function ibodyXattrs(
  ctx: ReadContext,
  inode: Inode,
): Promise<{ entry: XattrEntry; value: Uint8Array }[]> {
  const start = inodeXattrOffset(inode);
  const raw = inode.raw;
  if (raw.length <= 128 || start + 4 > raw.length || u32(raw, start) !== XATTR_MAGIC) return [];
  const first = start + 4;
  const { entries, problem } = parseXattrEntries(raw, first, raw.length, first);
  if (problem)
    reportProblem(
      ctx,
      new Ext4FormatError(`in-inode xattrs: ${problem}`, locate(ctx, "inode xattrs", { inode: inode.ino })),
    );
  const out: { entry: XattrEntry; value: Uint8Array }[] = [];
  for (const e of entries) out.push({ entry: e, value: await xattrValue(ctx, inode, e, raw, first) });
  return out;
}

/** An entry's value: in the region, or (ea_inode) the content of another inode. */
export async function xattrValue(
  ctx: ReadContext,
  inode: Inode,
  e: XattrEntry,
  region: Uint8Array,
  base: number,
): Promise<Uint8Array> {
  if (e.valueInum === 0) return region.slice(base + e.valueOffset, base + e.valueOffset + e.valueSize);
  // ea_inode: the value is the content of another inode.
  if (!hasIncompat(ctx.sb, INCOMPAT.ea_inode)) {
    reportProblem(
      ctx,
      new Ext4FormatError(
        `xattr ${e.name} refers to value inode ${e.valueInum} without ea_inode`,
        locate(ctx, "xattr", { inode: inode.ino }),
      ),
    );
    return new Uint8Array(0);
  }
  if (e.valueSize > XATTR_SIZE_MAX) {
    throw new Ext4FormatError(
      `xattr ${e.name} value of ${e.valueSize} bytes is too large`,
      locate(ctx, "xattr", { inode: inode.ino }),
    );
  }
  const vi = await readInode(ctx, e.valueInum);
  if (!(vi.flags & INODE_FLAGS.EA_INODE) || vi.size !== e.valueSize) {
    throw new Ext4FormatError(
      `xattr value inode ${e.valueInum} is invalid`,
      locate(ctx, "xattr", { inode: inode.ino }),
    );
  }
  return readInodeRange(ctx, vi, 0, vi.size);
}

/** All xattrs of an inode, in-inode first, then the external block. Values as stored on disk. */
export async function inodeXattrs(ctx: ReadContext, inode: Inode): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const { entry, value } of await ibodyXattrs(ctx, inode)) {
    if (entry.name === "system.data") continue; // inline data payload, not a user-visible attribute
    out.set(entry.name, value);
  }
  if (inode.fileAcl !== 0) {
    const blockNr = inode.fileAcl;
    const block = await readBlock(ctx, blockNr, "xattr block", inode.ino);
    const h = parseXattrBlockHeader(block);
    const loc = locate(ctx, "xattr block", { inode: inode.ino, block: blockNr });
    if (h.magic !== XATTR_MAGIC)
      throw new Ext4FormatError(`bad xattr block magic 0x${h.magic.toString(16)}`, loc);
    if (h.blocks !== 1) throw new Ext4FormatError(`xattr block spans ${h.blocks} blocks`, loc);
    if (ctx.csum) {
      const computed = xattrBlockChecksum(ctx.seed, blockNr, block);
      if (computed !== h.checksum)
        reportProblem(ctx, new Ext4ChecksumError("xattr block checksum mismatch", h.checksum, computed, loc));
    }
    const { entries, problem } = parseXattrEntries(block, XATTR_BLOCK_HEADER_SIZE, block.length, 0);
    if (problem) reportProblem(ctx, new Ext4FormatError(problem, loc));
    for (const e of entries) if (!out.has(e.name)) out.set(e.name, await xattrValue(ctx, inode, e, block, 0));
  }
  return out;
}

/**
 * One attribute value, as getxattr(2) returns it: POSIX ACLs are converted from the ext4 disk
 * form to the xattr API form (pass `raw: true` for the stored bytes).
 */
export async function getxattr(
  ctx: ReadContext,
  path: string,
  name: string,
  options: { raw?: boolean; noFollow?: boolean } = {},
): Promise<Buffer> {
  const r = await resolve(ctx, path, !options.noFollow);
  const all = await inodeXattrs(ctx, r.inode);
  const v = all.get(name);
  if (v === undefined) throw new Ext4FsError("ENODATA", `no attribute ${name}`, path);
  let out = v;
  if (!options.raw && isPosixAclName(name)) {
    try {
      out = encodePosixAclXattr(decodePosixAcl(v));
    } catch (e) {
      throw new Ext4FormatError(
        `invalid ACL in ${name}: ${(e as Error).message}`,
        locate(ctx, "xattr", { inode: r.ino }),
      );
    }
  }
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}
