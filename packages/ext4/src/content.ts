/**
 * File content operations: writeFile (create or replace, all or nothing), truncate, setxattr
 * (which may move a symlink's target out of the inode), and the replace/drop helpers they share.
 */

import { Ext4NoSpaceError } from "./alloc.js";
import { decodeName } from "./bytes.js";
import { createInode } from "./create.js";
import { loadDir } from "./dir-state.js";
import { type EditContext, key, timeNow, toTimestamp } from "./edit-context.js";
import type { WriteFileOptions } from "./editor.js";
import { Ext4EditError, Ext4UnsupportedError } from "./errors.js";
import { INODE_FLAGS } from "./features.js";
import { blockMapNodesNeeded, extentNodesNeeded, type MapExtent, writeExtentRoot } from "./file-map.js";
import { readDataBlock, streamBlocks, writeContent } from "./file-write.js";
import { inlineCapacity, inlineParts, storeInline } from "./inline.js";
import { inlineFileContent } from "./inline-data.js";
import { type Inode, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from "./inode.js";
import {
  emptyMapRoot,
  fileMap,
  freeFileBlocks,
  freeMap,
  setBlocks,
  setMap,
  usesExtents,
} from "./inode-map.js";
import { inodeRef, putInode } from "./inode-table.js";
import { knownParentNow, lastComponent, parentDir, readLink, resolve, splitPath } from "./namei.js";
import { loadXattrs, needsXattrBlock, storeXattrs, withXattr } from "./xattr-store.js";

export async function writeFile(
  ctx: EditContext,
  path: string,
  data: string | Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: WriteFileOptions = {},
): Promise<void> {
  const content = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const { parentPath, name } = lastComponent(path);
  const dir = knownParentNow(ctx, parentPath, path) ?? (await parentDir(ctx, parentPath, path));
  const st = ctx.dirs.get(dir.ino) ?? (await loadDir(ctx, dir));
  const existing = st.entries.get(key(name));
  if (existing) return overwriteFile(ctx, existing.ino, path, content, options);
  const mode = S_IFREG | ((options.mode ?? 0o644) & 0o7777);
  await createInode(
    ctx,
    dir,
    name,
    mode,
    options,
    path,
    (inode) => {
      if (ctx.extents) {
        // A blank inode's i_block is a view of its own zeroed bytes: the root is written there.
        inode.flags |= INODE_FLAGS.EXTENTS;
        writeExtentRoot(inode.iBlock, []);
      } else emptyMapRoot(ctx, inode);
      inode.linksCount = 1;
      if (options.mtime !== undefined) inode.mtime = toTimestamp(options.mtime);
      if (options.atime !== undefined) inode.atime = toTimestamp(options.atime);
      const now = content instanceof Uint8Array ? writeSmallNow(ctx, inode, content, path) : false;
      return now === false ? writeContent(ctx, inode, content, path) : now;
    },
    true,
  );
}

/** writeFile over an existing name (its own function: writeFile's frame stays small). */
export async function overwriteFile(
  ctx: EditContext,
  ino: number,
  path: string,
  content: Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: WriteFileOptions,
): Promise<void> {
  if (options.flag === "wx") throw new Ext4EditError("EEXIST", "file already exists", path);
  let inode = await inodeRef(ctx, ino);
  if ((inode.mode & S_IFMT) === S_IFLNK) {
    // Follow a final symlink like node does.
    try {
      inode = (await resolve(ctx, path, true)).inode;
    } catch (e) {
      if (e instanceof Ext4EditError && e.code === "ENOENT") {
        const target = decodeName(await readLink(ctx, inode));
        const base = target.startsWith("/") ? target : `${splitPath(path).slice(0, -1).join("/")}/${target}`;
        return writeFile(ctx, `/${base}`, content, options);
      }
      throw e;
    }
  }
  if ((inode.mode & S_IFMT) === S_IFDIR) throw new Ext4EditError("EISDIR", "is a directory", path);
  if ((inode.mode & S_IFMT) !== S_IFREG) throw new Ext4EditError("EINVAL", "not a regular file", path);
  checkFileWritable(inode, path);
  await replaceContent(ctx, inode, content, path);
  if (options.mode !== undefined) inode.mode = (inode.mode & S_IFMT) | (options.mode & 0o7777);
  if (options.uid !== undefined) inode.uid = options.uid >>> 0;
  if (options.gid !== undefined) inode.gid = options.gid >>> 0;
  const now = timeNow(ctx);
  inode.mtime = options.mtime !== undefined ? toTimestamp(options.mtime) : now;
  inode.ctime = now;
  if (options.atime !== undefined) inode.atime = toTimestamp(options.atime);
  putInode(ctx, inode);
}

/**
 * writeContent's small-file case for a new inode (an empty extent root in i_block, written
 * over in place) without an await when its blocks
 * are one run in the goal group (bitmap at hand): the data joins the pending run when it can.
 * False when that does not apply (nothing done).
 */
export function writeSmallNow(
  ctx: EditContext,
  inode: Inode,
  data: Uint8Array,
  path: string,
): Promise<void> | undefined | false {
  const n = Math.ceil(data.length / ctx.bs);
  if (n === 0 || data.length > 65536 || !usesExtents(inode)) return false;
  // Content the new inode can hold inline (inline_data) is writeContent's.
  if (data.length <= inlineCapacity(ctx, inode, [])) return false;
  // Data, and one spare for directory growth (as writeContent reserves).
  ctx.alloc.reserveBlocks(n + 1, path);
  const runs = ctx.alloc.allocBlocksNow(n, ctx.alloc.goalFor(inode.ino), path, true);
  if (!runs) return false;
  const start = runs[0].start;
  // One extent fits the root (written over the empty one): no tree node to allocate.
  writeExtentRoot(inode.iBlock, [{ lblk: 0, pblk: start, len: n, uninit: false }]);
  setBlocks(ctx, inode, n + (inode.fileAcl ? 1 : 0));
  inode.size = data.length;
  return ctx.store.writeDataNow(start, data) ? undefined : ctx.store.writeData(start, data);
}

export function checkFileWritable(inode: Inode, path: string): void {
  if (inode.flags & INODE_FLAGS.VERITY)
    throw new Ext4UnsupportedError("verity", `cannot modify verity file '${path}'`);
  if (inode.flags & INODE_FLAGS.ENCRYPT)
    throw new Ext4UnsupportedError("encrypt", `cannot modify encrypted file '${path}'`);
  if (inode.flags & (INODE_FLAGS.IMMUTABLE | INODE_FLAGS.APPEND))
    throw new Ext4EditError("EPERM", "file is immutable or append-only", path);
}

/**
 * Replace an inode's content. A byte buffer's size is known: the space it needs is checked
 * first, then the old content is freed and the new one written (in the room the old one left).
 * A stream is written aside first (replaceFromStream), so a failure leaves the old content.
 */
export async function replaceContent(
  ctx: EditContext,
  inode: Inode,
  content: Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  path: string,
): Promise<void> {
  if (!(content instanceof Uint8Array)) return replaceFromStream(ctx, inode, content, path);
  // Like the kernel, a file already in blocks stays there; an inline one stays inline if it fits.
  const wasInline = (inode.flags & INODE_FLAGS.INLINE_DATA) !== 0;
  // The old content is dropped before the new one is written: check first that the new one
  // fits, data and map blocks. A block map's indirect blocks depend on the size alone; an
  // extent tree's nodes on how fragmented the free space is: counted as if every block were an
  // extent of its own (the most it can take), so the write after the drop cannot fail.
  const inline =
    wasInline && content.length <= inlineCapacity(ctx, inode, (await inlineParts(ctx, inode)).others);
  const old = await fileMap(ctx, inode);
  const oldBlocks = old.extents.reduce((n, e) => n + e.len, 0) + old.metaBlocks.length;
  const n = inline ? 0 : Math.ceil(content.length / ctx.bs);
  const map = Math.max(
    1,
    ctx.extents
      ? extentNodesNeeded(n, ctx.bs)
      : blockMapNodesNeeded([{ lblk: 0, pblk: 0, len: n, uninit: false }], ctx.bs),
  );
  if (n) ctx.alloc.reserveBlocks(Math.max(0, n + map - oldBlocks), path);
  await dropContent(ctx, inode);
  putInode(ctx, inode);
  await writeContent(ctx, inode, content, path, wasInline ? "keep" : "never");
}

/**
 * Replace an inode's content from a stream, all or nothing (its size is unknown until the end,
 * so it cannot be checked first): the new content is written into a fresh map of a scratch copy
 * of the inode (same ino and generation: extent-tree checksums hold), and only once the whole
 * stream is in place is the old content freed and the new map moved onto the inode. On any
 * failure (ENOSPC, the source throwing) everything allocated for the new content is freed and
 * the inode — map, size, i_blocks, xattrs — is left as it was. Old and new content occupy
 * blocks together meanwhile (as a write to a temporary file then rename would).
 *
 * An inline file (inline_data) stays inline when the whole new content fits the inode (the
 * kernel keeps a truncated inline file inline), else it moves to blocks; a block file stays in
 * blocks. Hard links share the inode: every name sees the new content, or on failure the old.
 */
export async function replaceFromStream(
  ctx: EditContext,
  inode: Inode,
  content: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  path: string,
): Promise<void> {
  const wasInline = (inode.flags & INODE_FLAGS.INLINE_DATA) !== 0;
  // Everything read from the old content comes first: a corrupt map fails before any allocation.
  const old = wasInline ? undefined : await fileMap(ctx, inode);
  const others = wasInline ? (await inlineParts(ctx, inode)).others : [];
  const cap = wasInline ? inlineCapacity(ctx, inode, others) : -1;
  const r = await streamBlocks(ctx, content, ctx.alloc.goalFor(inode.ino), path, 0, cap);
  if (r.small) {
    // Inline to inline; storeInline changes nothing when it fails.
    await storeInline(ctx, inode, r.small, others, path);
    putInode(ctx, inode);
    return;
  }
  const scratch: Inode = {
    ...inode,
    flags: inode.flags & ~INODE_FLAGS.INLINE_DATA,
    size: 0,
    raw: inode.raw.slice(),
  };
  emptyMapRoot(ctx, scratch);
  let mapped = false;
  try {
    // Tree nodes (extents) or indirect blocks (block map) for the new map.
    await setMap(ctx, scratch, r.extents, [], path);
    mapped = true;
    if (wasInline) {
      // Drop system.data (the other attributes stay). storeXattrs changes nothing when it fails.
      inode.flags &= ~INODE_FLAGS.INLINE_DATA;
      try {
        await storeXattrs(ctx, inode, others, path);
      } catch (e) {
        inode.flags |= INODE_FLAGS.INLINE_DATA;
        throw e;
      }
    }
  } catch (e) {
    if (mapped) await freeFileBlocks(ctx, scratch);
    else for (const x of r.extents) await ctx.alloc.freeBlocksRange(x.pblk, x.len);
    throw e;
  }
  // Committed: free the old blocks, move the new map onto the inode.
  if (old) {
    await freeMap(ctx, old);
  }
  const moved = INODE_FLAGS.EXTENTS | INODE_FLAGS.INLINE_DATA | INODE_FLAGS.HUGE_FILE;
  inode.flags = (inode.flags & ~moved) | (scratch.flags & moved);
  inode.iBlock = scratch.iBlock;
  inode.size = r.size;
  const perBlock = ctx.bs / 512;
  const owned = scratch.blocksRaw / perBlock - (scratch.fileAcl ? 1 : 0);
  setBlocks(ctx, inode, owned + (inode.fileAcl ? 1 : 0));
  putInode(ctx, inode);
}

/** Free data and inline data; the inode ends up empty (size 0) with an empty map. */
export async function dropContent(ctx: EditContext, inode: Inode): Promise<void> {
  if (inode.flags & INODE_FLAGS.INLINE_DATA) {
    const items = (await loadXattrs(ctx, inode)).filter(
      (x) => !(x.index === 7 && decodeName(x.suffix) === "data"),
    );
    inode.flags &= ~INODE_FLAGS.INLINE_DATA;
    await storeXattrs(ctx, inode, items, "<inline>");
  } else await freeFileBlocks(ctx, inode);
  const acl = inode.fileAcl;
  emptyMapRoot(ctx, inode);
  inode.size = 0;
  setBlocks(ctx, inode, acl ? 1 : 0);
}

/** Set the size: shrinking frees blocks past the end, growing leaves a hole. */
export async function truncate(ctx: EditContext, path: string, len = 0): Promise<void> {
  if (!Number.isSafeInteger(len) || len < 0) throw new Ext4EditError("EINVAL", "invalid length", path);
  const { inode } = await resolve(ctx, path, true);
  if ((inode.mode & S_IFMT) !== S_IFREG)
    throw new Ext4EditError(
      (inode.mode & S_IFMT) === S_IFDIR ? "EISDIR" : "EINVAL",
      "not a regular file",
      path,
    );
  checkFileWritable(inode, path);
  if (!usesExtents(inode) && len > 0) {
    const per = ctx.bs / 4;
    if (Math.ceil(len / ctx.bs) > 12 + per + per * per + per * per * per)
      throw new Ext4EditError("EINVAL", "file too large for a block map", path);
  }
  if (inode.flags & INODE_FLAGS.INLINE_DATA) {
    const { value, others } = await inlineParts(ctx, inode);
    const data = inlineFileContent(inode.iBlock, value, inode.size);
    if (len <= inlineCapacity(ctx, inode, others)) {
      const next = new Uint8Array(len);
      next.set(data.subarray(0, Math.min(len, data.length)));
      await storeInline(ctx, inode, next, others, path);
    } else {
      // More than the inode holds: what is kept goes to a block, the rest is a hole.
      const keep = data.slice(0, Math.min(len, data.length));
      ctx.alloc.reserveBlocks(2, path);
      await dropContent(ctx, inode);
      await writeContent(ctx, inode, keep, path, "never");
    }
  } else if (len < inode.size) {
    const keep = Math.ceil(len / ctx.bs);
    const map = await fileMap(ctx, inode);
    const kept: MapExtent[] = [];
    for (const e of map.extents) {
      if (e.lblk >= keep) await ctx.alloc.freeBlocksRange(e.pblk, e.len);
      else if (e.lblk + e.len > keep) {
        const n = keep - e.lblk;
        await ctx.alloc.freeBlocksRange(e.pblk + n, e.len - n);
        kept.push({ ...e, len: n });
      } else kept.push(e);
    }
    await setMap(ctx, inode, kept, map.metaBlocks, path);
    // Zero the rest of the last partial block so growing later reads zeros.
    const tail = len % ctx.bs;
    if (tail) {
      const lb = Math.floor(len / ctx.bs);
      const e = kept.find((x) => x.lblk <= lb && lb < x.lblk + x.len && !x.uninit);
      if (e) {
        const p = e.pblk + (lb - e.lblk);
        const b = await readDataBlock(ctx, p);
        const copy = new Uint8Array(b);
        copy.fill(0, tail);
        await ctx.store.writeData(p, copy);
      }
    }
  }
  inode.size = len;
  const now = timeNow(ctx);
  inode.mtime = now;
  inode.ctime = now;
  putInode(ctx, inode);
}

/**
 * Set an attribute. An inline-data symlink whose attributes would spill into a block first has
 * its target moved to a data block (a slow symlink): e2fsck's pass 1 finishes an inline symlink
 * before looking at its attribute block, so it would report that block free (and its quota
 * uncharged). All or nothing: the blocks are checked for before anything changes.
 */
export async function setxattr(
  ctx: EditContext,
  path: string,
  name: string,
  value: Uint8Array | string,
  options: { follow?: boolean } = {},
): Promise<void> {
  const { inode } = await resolve(ctx, path, options.follow ?? true);
  let items = await withXattr(ctx, inode, name, value, path);
  if (
    (inode.mode & S_IFMT) === S_IFLNK &&
    inode.flags & INODE_FLAGS.INLINE_DATA &&
    needsXattrBlock(ctx, inode, items)
  ) {
    const { value: rest } = await inlineParts(ctx, inode);
    const target = inlineFileContent(inode.iBlock, rest, inode.size);
    items = items.filter((x) => !(x.index === 7 && decodeName(x.suffix) === "data"));
    if (needsXattrBlock(ctx, inode, items) === undefined)
      throw new Ext4NoSpaceError("blocks", "extended attributes do not fit in the inode and one block", path);
    // The target's block, the attribute block, and writeContent's spare.
    ctx.alloc.reserveBlocks(3, path);
    await dropContent(ctx, inode);
    await writeContent(ctx, inode, target, path, "never");
  }
  await storeXattrs(ctx, inode, items, path);
  inode.ctime = timeNow(ctx);
  putInode(ctx, inode);
}
