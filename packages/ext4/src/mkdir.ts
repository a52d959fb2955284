/** mkdir, including `recursive` (mkdir -p) and directories born inline. */
import { createInode } from "./create.js";
import { finishLeaf } from "./dir-state.js";
import { leafEnd, maxFree, writeDirHead } from "./dir-write.js";
import { encodeDirent, FT } from "./dirent.js";
import type { EditContext } from "./edit-context.js";
import type { MkdirOptions, OwnerOptions } from "./editor.js";
import { Ext4EditError } from "./errors.js";
import { INODE_FLAGS } from "./features.js";
import { ROOT_INO } from "./fs.js";
import { inlineCapacity, inlineParts, storeInlineDirValue } from "./inline.js";
import { INLINE_DIR_PARENT_SIZE, INLINE_IBLOCK_SIZE, setInlineDirParent } from "./inline-data.js";
import { type Inode, S_IFDIR, S_IFMT } from "./inode.js";
import { emptyMapRoot, setMap } from "./inode-map.js";
import { inodeRef } from "./inode-table.js";
import { checkedName, lookupPath, rememberParent, resolve, resolveParent, splitPath } from "./namei.js";

export async function mkdir(
  ctx: EditContext,
  path: string,
  options: MkdirOptions = {},
): Promise<string | undefined> {
  const mode = (options.mode ?? 0o755) & 0o7777;
  if (options.recursive) {
    const parts = splitPath(path);
    // The longest existing prefix, looked up from the end: `mkdir -p` of one new level (the
    // common case) costs two lookups, not one per level.
    let have = parts.length;
    let cur: Inode | undefined;
    for (; have > 0; have--) {
      const p = `/${parts.slice(0, have).join("/")}`;
      const r = await lookupPath(ctx, p, true);
      if (!r) continue;
      if ((r.inode.mode & S_IFMT) !== S_IFDIR) throw new Ext4EditError("ENOTDIR", "not a directory", p);
      cur = r.inode;
      break;
    }
    cur ??= await inodeRef(ctx, ROOT_INO);
    const first = have < parts.length ? `/${parts.slice(0, have + 1).join("/")}` : undefined;
    for (let i = have; i < parts.length; i++) {
      const p = `/${parts.slice(0, i + 1).join("/")}`;
      // After a directory we just made, ".." is its parent, which exists.
      if (parts[i] === "..") cur = (await resolve(ctx, p, true)).inode;
      else cur = await mkdirIn(ctx, cur, checkedName(parts[i], p), p, mode, options);
      rememberParent(ctx, parts.slice(0, i + 1).join("/"), cur.ino);
    }
    return first;
  }
  const { dir, name } = await resolveParent(ctx, path);
  await mkdirIn(ctx, dir, name, path, mode, options);
  return undefined;
}

/** Make directory `name` in `dir` (`path` names it in errors); its inode. */
export function mkdirIn(
  ctx: EditContext,
  dir: Inode,
  name: Uint8Array,
  path: string,
  mode: number,
  owner: OwnerOptions,
): Promise<Inode> {
  return createInode(ctx, dir, name, S_IFDIR | mode, owner, path, async (inode) => {
    // attributes given at creation (createXattrs) stay next to system.data
    const others = ctx.inlineData ? (await inlineParts(ctx, inode)).others : [];
    if (inlineCapacity(ctx, inode, others) >= INLINE_IBLOCK_SIZE) {
      // inline_data: the parent's number, then one empty record over the rest of i_block.
      inode.linksCount = 2;
      inode.iBlock = new Uint8Array(INLINE_IBLOCK_SIZE);
      setInlineDirParent(inode.iBlock, dir.ino);
      const rest = INLINE_IBLOCK_SIZE - INLINE_DIR_PARENT_SIZE;
      encodeDirent(
        inode.iBlock,
        INLINE_DIR_PARENT_SIZE,
        { inode: 0, recLen: rest, name: new Uint8Array(0), fileType: 0 },
        ctx.bs,
        ctx.ft,
      );
      inode.flags |= INODE_FLAGS.INLINE_DATA;
      await storeInlineDirValue(ctx, inode, new Uint8Array(0), others, path);
      ctx.dirs.set(inode.ino, {
        ino: inode.ino,
        entries: new Map(),
        pblk: [],
        free: [],
        hint: [],
        indexed: false,
        inline: true,
      });
      return;
    }
    emptyMapRoot(ctx, inode);
    const [run] = await ctx.alloc.allocBlocks(1, ctx.alloc.goalFor(inode.ino), path);
    const buf = ctx.store.fresh(run.start);
    const end = leafEnd(ctx.bs, ctx.csum);
    writeDirHead(buf, end, ctx.bs, ctx.ft, inode.ino, dir.ino, ctx.ft ? FT.dir : 0);
    inode.linksCount = 2;
    inode.size = ctx.bs;
    try {
      await setMap(ctx, inode, [{ lblk: 0, pblk: run.start, len: 1, uninit: false }], [], path);
    } catch (e) {
      await ctx.alloc.freeBlocksRange(run.start, 1);
      throw e;
    }
    finishLeaf(ctx, inode, run.start, buf);
    ctx.dirs.set(inode.ino, {
      ino: inode.ino,
      entries: new Map(),
      pblk: [run.start],
      free: [maxFree(buf, 0, end, ctx.bs, ctx.ft)],
      hint: [],
      indexed: false,
    });
  });
}
