/**
 * Names to inodes: lookup in one directory (down the htree index when there is one, else a cached
 * listing) and path resolution with symlinks followed inside the guest.
 */
import { decodeName, encodeName, u32 } from "./bytes.js";
import type { RawDirent } from "./dirent.js";
import { dxHash, effectiveHashVersion, isComputableHashVersion } from "./dx-hash.js";
import { Ext4ChecksumError, Ext4FormatError, Ext4FsError, Ext4UnsupportedError } from "./errors.js";
import { COMPAT, INCOMPAT, INODE_FLAGS } from "./features.js";
import { ROOT_INO } from "./fs.js";
import {
  DX_NODE_ENTRIES_OFFSET,
  DX_ROOT_INFO_OFFSET,
  type DxNode,
  dxNodeProblem,
  looksLikeDxNode,
  parseDxEntries,
  parseDxRootInfo,
} from "./htree.js";
import { type Inode, S_IFDIR, S_IFLNK, S_IFMT } from "./inode.js";
import { locate, PATH_MAX, type ReadContext, readBlock, warn } from "./read-context.js";
import { readSymlinkInode } from "./read-data.js";
import { dirEntries, parseDirLeaf, verifyDirBlock } from "./read-dir.js";
import { readInode } from "./read-inode.js";
import { mapBlock } from "./read-map.js";
import { hasCompat, hasIncompat } from "./superblock.js";

const MAX_SYMLINKS = 40;
const MAX_NAME_LEN = 255;

export interface Resolved {
  ino: number;
  inode: Inode;
  path: string;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function isDotOrDotDot(n: Uint8Array): boolean {
  return (n.length === 1 && n[0] === 0x2e) || (n.length === 2 && n[0] === 0x2e && n[1] === 0x2e);
}

/** Index of the last entry whose hash is <= target (entry 0 covers everything below entry 1). */
function dxFind(node: DxNode, hash: number): number {
  let lo = 1;
  let hi = node.entries.length - 1;
  let at = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (node.entries[mid].hash > hash) hi = mid - 1;
    else {
      at = mid;
      lo = mid + 1;
    }
  }
  return at;
}

/** Find `name` in directory `dir`: through the htree index when there is one. */
export async function lookup(ctx: ReadContext, dir: Inode, name: Uint8Array): Promise<RawDirent | undefined> {
  if ((dir.mode & S_IFMT) !== S_IFDIR) return undefined;
  if (dir.flags & INODE_FLAGS.ENCRYPT) {
    throw new Ext4UnsupportedError("encrypt", "cannot look up names in an encrypted directory", {
      file: ctx.device.name,
      inode: dir.ino,
    });
  }
  // Listing cache keys are the raw bytes (latin1 is a bijection), so names that are not valid
  // UTF-8 never collide.
  const key = Buffer.from(name.buffer, name.byteOffset, name.byteLength).toString("latin1");
  if (
    dir.flags & INODE_FLAGS.INDEX &&
    !(dir.flags & INODE_FLAGS.INLINE_DATA) &&
    !(dir.flags & INODE_FLAGS.CASEFOLD) &&
    hasCompat(ctx.sb, COMPAT.dir_index)
  ) {
    try {
      return await htreeLookup(ctx, dir, name);
    } catch (e) {
      if (!ctx.lenient || !(e instanceof Ext4FormatError || e instanceof Ext4ChecksumError)) throw e;
      warn(ctx, e.code, `${e.message}; falling back to a linear scan`);
    }
  }
  let map = ctx.dirCache.get(dir.ino);
  if (!map) {
    map = new Map();
    for await (const e of dirEntries(ctx, dir)) {
      const k = Buffer.from(e.name.buffer, e.name.byteOffset, e.name.byteLength).toString("latin1");
      if (!map.has(k)) map.set(k, e);
    }
    ctx.dirCache.set(dir.ino, map);
  }
  const hit = map.get(key);
  if (hit && sameBytes(hit.name, name)) return hit;
  if (!hit && dir.flags & INODE_FLAGS.CASEFOLD) {
    // Exact-case names are found above; other spellings would need Unicode casefolding.
    for (const e of map.values()) {
      if (decodeName(e.name).toLowerCase() === decodeName(name).toLowerCase()) {
        throw new Ext4UnsupportedError(
          "casefold",
          `'${decodeName(name)}' differs from an entry only by case in a casefolded directory; case-insensitive lookup is not supported`,
          { file: ctx.device.name, inode: dir.ino },
        );
      }
    }
  }
  return undefined;
}

export async function readDirBlock(
  ctx: ReadContext,
  dir: Inode,
  logical: number,
): Promise<{ block: Uint8Array; blockNr: number }> {
  const nBlocks = Math.ceil(dir.size / ctx.blockSize);
  if (logical >= nBlocks) {
    throw new Ext4FormatError(
      `htree points at block ${logical}, past the directory end (${nBlocks} blocks)`,
      locate(ctx, "htree node", { inode: dir.ino }),
    );
  }
  const m = await mapBlock(ctx, dir, logical);
  if (m.physical === 0 || m.uninit) {
    throw new Ext4FormatError(
      `htree points at unmapped directory block ${logical}`,
      locate(ctx, "htree node", { inode: dir.ino }),
    );
  }
  return { block: await readBlock(ctx, m.physical, "directory block", dir.ino), blockNr: m.physical };
}

/**
 * Find a name through the htree: descend by hash, then scan the leaf (and the following ones
 * while the hash chain continues).
 */
export async function htreeLookup(
  ctx: ReadContext,
  dir: Inode,
  name: Uint8Array,
): Promise<RawDirent | undefined> {
  const root = await readDirBlock(ctx, dir, 0);
  const rb = root.block;
  const info = parseDxRootInfo(rb);
  const loc = locate(ctx, "htree root", { inode: dir.ino, block: root.blockNr });
  if (u32(rb, DX_ROOT_INFO_OFFSET) !== 0 || info.infoLength !== 8) {
    throw new Ext4FormatError(`bad dx_root_info (length ${info.infoLength})`, loc);
  }
  const maxLevels = hasIncompat(ctx.sb, INCOMPAT.large_dir) ? 3 : 2;
  if (info.indirectLevels >= maxLevels) {
    throw new Ext4FormatError(`htree depth ${info.indirectLevels + 1} exceeds the limit ${maxLevels}`, loc);
  }
  if (!isComputableHashVersion(info.hashVersion)) {
    throw new Ext4UnsupportedError(
      "dir_hash",
      `htree hash version ${info.hashVersion} is not supported`,
      loc,
    );
  }
  const version = effectiveHashVersion(info.hashVersion, ctx.sb.flags);
  const { hash } = dxHash(name, version, ctx.sb.hashSeed);
  verifyDirBlock(ctx, dir, rb, root.blockNr, 0);
  // path[k] = (node, index chosen) at level k.
  const path: { node: DxNode; at: number; blockNr: number }[] = [];
  let node = parseDxEntries(rb, DX_ROOT_INFO_OFFSET + 8);
  let blockNr = root.blockNr;
  const seen = new Set<number>([0]);
  let nodeBlock = rb;
  for (let level = 0; ; level++) {
    const problem = dxNodeProblem(nodeBlock, node, ctx.csum);
    if (problem) {
      throw new Ext4FormatError(
        problem,
        locate(ctx, level === 0 ? "htree root" : "htree node", { inode: dir.ino, block: blockNr }),
      );
    }
    const at = dxFind(node, hash);
    path.push({ node, at, blockNr });
    if (level === info.indirectLevels) break;
    const child = node.entries[at].block;
    if (seen.has(child)) {
      throw new Ext4FormatError(
        `htree node ${child} is referenced twice (cycle)`,
        locate(ctx, "htree node", { inode: dir.ino, block: blockNr }),
      );
    }
    seen.add(child);
    const c = await readDirBlock(ctx, dir, child);
    if (!looksLikeDxNode(c.block, ctx.blockSize)) {
      throw new Ext4FormatError(
        `htree interior block ${child} is not a dx node`,
        locate(ctx, "htree node", { inode: dir.ino, block: c.blockNr }),
      );
    }
    verifyDirBlock(ctx, dir, c.block, c.blockNr, child);
    node = parseDxEntries(c.block, DX_NODE_ENTRIES_OFFSET);
    blockNr = c.blockNr;
    nodeBlock = c.block;
  }
  // Scan leaves; continue into following leaves while the hash chain continues (collisions).
  for (let guard = 0; guard < 1 << 20; guard++) {
    const leaf = path[path.length - 1];
    const leafLogical = leaf.node.entries[leaf.at].block;
    const lb = await readDirBlock(ctx, dir, leafLogical);
    if (looksLikeDxNode(lb.block, ctx.blockSize) && ctx.blockSize > 12) {
      throw new Ext4FormatError(
        `htree leaf ${leafLogical} is an index block`,
        locate(ctx, "htree leaf", { inode: dir.ino, block: lb.blockNr }),
      );
    }
    for (const e of parseDirLeaf(ctx, dir, lb.block, lb.blockNr, leafLogical)) {
      if (sameBytes(e.name, name)) return e;
    }
    // Advance to the next leaf in hash order.
    let k = path.length - 1;
    while (k >= 0 && path[k].at + 1 >= path[k].node.entries.length) k--;
    if (k < 0) return undefined;
    const nextHash = path[k].node.entries[path[k].at + 1].hash;
    if ((nextHash & ~1) >>> 0 !== hash) return undefined;
    path[k].at++;
    for (let j = k + 1; j < path.length; j++) {
      const child = path[j - 1].node.entries[path[j - 1].at].block;
      const c = await readDirBlock(ctx, dir, child);
      verifyDirBlock(ctx, dir, c.block, c.blockNr, child);
      const n = parseDxEntries(c.block, DX_NODE_ENTRIES_OFFSET);
      const pr = dxNodeProblem(c.block, n, ctx.csum);
      if (pr) throw new Ext4FormatError(pr, locate(ctx, "htree node", { inode: dir.ino, block: c.blockNr }));
      path[j] = { node: n, at: 0, blockNr: c.blockNr };
    }
  }
  throw new Ext4FormatError("htree hash chain does not end", locate(ctx, "htree", { inode: dir.ino }));
}

/** Resolve a guest path from the root: symlinks followed inside the guest, `..` never above `/`. */
export async function resolve(ctx: ReadContext, path: string, followLast: boolean): Promise<Resolved> {
  if (typeof path !== "string") throw new Ext4FsError("EINVAL", "path must be a string", String(path));
  if (path.length > PATH_MAX * 4) throw new Ext4FsError("ENAMETOOLONG", "path too long", path.slice(0, 64));
  let links = 0;
  const stack: { ino: number; name: string }[] = [];
  let todo = path.split("/").filter((c) => c !== "" && c !== ".");
  let cur = await readInode(ctx, ROOT_INO);
  if ((cur.mode & S_IFMT) !== S_IFDIR)
    throw new Ext4FormatError("root inode is not a directory", locate(ctx, "inode", { inode: ROOT_INO }));
  const dirAt = async () =>
    stack.length ? readInode(ctx, stack[stack.length - 1].ino) : readInode(ctx, ROOT_INO);
  while (todo.length > 0) {
    const comp = todo.shift()!;
    if (comp === "..") {
      stack.pop();
      cur = await dirAt();
      continue;
    }
    if ((cur.mode & S_IFMT) !== S_IFDIR) throw new Ext4FsError("ENOTDIR", "not a directory", path);
    const nameBytes = encodeName(comp);
    if (nameBytes.length > MAX_NAME_LEN) throw new Ext4FsError("ENAMETOOLONG", "name too long", path);
    const e = await lookup(ctx, cur, nameBytes);
    if (!e) throw new Ext4FsError("ENOENT", "no such file or directory", path);
    const child = await readInode(ctx, e.inode);
    const isLast = todo.length === 0;
    if ((child.mode & S_IFMT) === S_IFLNK && (!isLast || followLast)) {
      if (++links > MAX_SYMLINKS) throw new Ext4FsError("ELOOP", "too many levels of symbolic links", path);
      const target = decodeName(await readSymlinkInode(ctx, child));
      if (target.startsWith("/")) stack.length = 0;
      todo = [...target.split("/").filter((c) => c !== "" && c !== "."), ...todo];
      cur = await dirAt();
      continue;
    }
    stack.push({ ino: e.inode, name: comp });
    cur = child;
  }
  const ino = stack.length ? stack[stack.length - 1].ino : ROOT_INO;
  return { ino, inode: cur, path: "/" + stack.map((s) => s.name).join("/") };
}
