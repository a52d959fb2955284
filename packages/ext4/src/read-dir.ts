/** Directory iteration: leaf blocks (checksums, records), inline directories, listings, tree walks. */
import { encodeName, u32 } from "./bytes.js";
import {
  DIRENT_TAIL_SIZE,
  direntName,
  direntTailChecksum,
  fileTypeFromMode,
  hasDirentTail,
  parseDirentBlock,
  type RawDirent,
  storedDirentTailChecksum,
} from "./dirent.js";
import { Ext4ChecksumError, Ext4FormatError, Ext4UnsupportedError } from "./errors.js";
import { INODE_FLAGS } from "./features.js";
import type { WalkEntry } from "./fs.js";
import {
  DX_NODE_ENTRIES_OFFSET,
  DX_ROOT_INFO_OFFSET,
  dxChecksum,
  dxTailOffset,
  looksLikeDxNode,
  parseDxEntries,
  storedDxChecksum,
} from "./htree.js";
import { INLINE_DIR_PARENT_SIZE } from "./inline-data.js";
import { type Inode, S_IFDIR, S_IFMT } from "./inode.js";
import { allocBytes, checkBlockRange, locate, type ReadContext, reportProblem } from "./read-context.js";
import { copyIfCached } from "./read-data.js";
import { cachedInode, inodeSeed, itableChunkKey, loadInode, readInode, statsOf } from "./read-inode.js";
import { isDotOrDotDot, resolve } from "./read-lookup.js";
import { blockRuns, rootRuns } from "./read-map.js";
import { ibodyXattrs } from "./read-xattr.js";
import { Ext4Dirent, type Ext4Stats } from "./stats.js";

export function dirProblem(
  ctx: ReadContext,
  inode: Inode,
  block: number | undefined,
  msg: string,
): Ext4FormatError {
  return new Ext4FormatError(msg, locate(ctx, "directory block", { inode: inode.ino, block }));
}

/** Verify the checksum of a directory block (leaf tail or dx node tail). */
export function verifyDirBlock(
  ctx: ReadContext,
  inode: Inode,
  block: Uint8Array,
  blockNr: number,
  logical: number,
): "leaf" | "index" {
  const isIndexed = (inode.flags & INODE_FLAGS.INDEX) !== 0;
  const indexBlock = isIndexed && (logical === 0 || looksLikeDxNode(block, ctx.blockSize));
  if (!ctx.csum) return indexBlock ? "index" : "leaf";
  if (indexBlock) {
    const off = logical === 0 ? DX_ROOT_INFO_OFFSET + block[DX_ROOT_INFO_OFFSET + 5] : DX_NODE_ENTRIES_OFFSET;
    if (off + 4 <= block.length) {
      const node = parseDxEntries(block, off);
      if (dxTailOffset(node) + 8 <= block.length && node.count <= node.limit) {
        const stored = storedDxChecksum(block, node);
        const computed = dxChecksum(inodeSeed(ctx, inode), block, node);
        if (stored !== computed) {
          reportProblem(
            ctx,
            new Ext4ChecksumError(
              "htree node checksum mismatch",
              stored,
              computed,
              locate(ctx, "htree node", { inode: inode.ino, block: blockNr }),
            ),
          );
        }
        return "index";
      }
    }
    reportProblem(ctx, dirProblem(ctx, inode, blockNr, "htree node has no room for its checksum tail"));
    return "index";
  }
  if (!hasDirentTail(block)) {
    reportProblem(ctx, dirProblem(ctx, inode, blockNr, "directory block has no checksum tail"));
    return "leaf";
  }
  const stored = storedDirentTailChecksum(block);
  const computed = direntTailChecksum(inodeSeed(ctx, inode), block);
  if (stored !== computed) {
    reportProblem(
      ctx,
      new Ext4ChecksumError(
        "directory block checksum mismatch",
        stored,
        computed,
        locate(ctx, "directory block", { inode: inode.ino, block: blockNr }),
      ),
    );
  }
  return "leaf";
}

/** Parse the entries of one directory leaf block (excluding the checksum tail). */
export function parseDirLeaf(
  ctx: ReadContext,
  inode: Inode,
  block: Uint8Array,
  blockNr: number,
  logical: number,
): RawDirent[] {
  const kind = verifyDirBlock(ctx, inode, block, blockNr, logical);
  if (kind === "index" && logical !== 0) return [];
  const end = ctx.csum && hasDirentTail(block) ? block.length - DIRENT_TAIL_SIZE : block.length;
  // dx_root: the ".." entry's rec_len spans the index, so a linear parse sees just "." and "..".
  const { entries, problem } = parseDirentBlock(block, 0, end, ctx.blockSize, ctx.hasFileType);
  if (problem) {
    reportProblem(ctx, dirProblem(ctx, inode, blockNr, `${problem.message} at byte ${problem.offset}`));
  }
  return entries;
}

/** All entries of a directory inode ("." and ".." included where stored). */
export async function* dirEntries(ctx: ReadContext, inode: Inode): AsyncGenerator<RawDirent> {
  yield* await dirEntryList(ctx, inode);
}

/** The entries of dirEntries as one array (no asynchronous step per entry). */
export async function dirEntryList(ctx: ReadContext, inode: Inode): Promise<RawDirent[]> {
  if ((inode.mode & S_IFMT) !== S_IFDIR) {
    throw new Ext4FormatError("not a directory", locate(ctx, "inode", { inode: inode.ino }));
  }
  if (inode.flags & INODE_FLAGS.ENCRYPT) {
    throw new Ext4UnsupportedError(
      "encrypt",
      "directory names are encrypted (fscrypt); listing is not supported",
      {
        file: ctx.device.name,
        inode: inode.ino,
      },
    );
  }
  const out: RawDirent[] = [];
  if (inode.flags & INODE_FLAGS.INLINE_DATA) {
    for await (const e of inlineDirEntries(ctx, inode)) out.push(e);
    return out;
  }
  const bs = ctx.blockSize;
  const nBlocks = Math.ceil(inode.size / bs);
  let runs = rootRuns(ctx, inode);
  if (!runs) {
    runs = [];
    for await (const r of blockRuns(ctx, inode)) {
      if (r.logical >= nBlocks) break;
      runs.push(r);
    }
  }
  for (const r of runs) {
    if (r.logical >= nBlocks) break;
    const n = Math.min(r.length, nBlocks - r.logical);
    if (r.uninit) continue;
    // Whole runs are read at once (directories of many blocks are usually contiguous). A
    // directory block often sits next to its files' data: when a data window holding it is
    // cached, it is copied from there; otherwise it is read alone (a walk that does not read
    // file contents must not pull the data in through the read-ahead).
    const CH = 64;
    for (let k = 0; k < n; k += CH) {
      const cnt = Math.min(CH, n - k);
      const first = r.physical + k;
      checkBlockRange(ctx, first, cnt, "directory block", inode.ino);
      ctx.counters.metadataBlocks += cnt;
      let buf: Uint8Array | undefined;
      if (cnt === 1) {
        buf = ctx.blockCache.get(first) ?? ctx.dirAhead.get(first);
        ctx.dirAhead.delete(first);
      }
      if (!buf) {
        buf = allocBytes(cnt * bs);
        if (!copyIfCached(ctx, first * bs, buf)) {
          ctx.counters.reads++;
          ctx.counters.bytes += buf.length;
          await ctx.device.readInto(first * bs, buf);
        }
      }
      for (let j = 0; j < cnt; j++) {
        const blk = buf.subarray(j * bs, (j + 1) * bs);
        for (const e of parseDirLeaf(ctx, inode, blk, first + j, r.logical + k + j)) out.push(e);
      }
    }
  }
  return out;
}

export async function* inlineDirEntries(ctx: ReadContext, inode: Inode): AsyncGenerator<RawDirent> {
  const parent = u32(inode.iBlock, 0);
  yield { inode: inode.ino, recLen: 0, nameLen: 1, fileType: 2, offset: -1, name: encodeName(".") };
  yield { inode: parent, recLen: 0, nameLen: 2, fileType: 2, offset: -1, name: encodeName("..") };
  const a = parseDirentBlock(
    inode.iBlock,
    INLINE_DIR_PARENT_SIZE,
    inode.iBlock.length,
    ctx.blockSize,
    ctx.hasFileType,
  );
  if (a.problem)
    reportProblem(ctx, dirProblem(ctx, inode, undefined, `inline directory: ${a.problem.message}`));
  yield* a.entries;
  const x = (await ibodyXattrs(ctx, inode)).find((e) => e.entry.name === "system.data");
  if (x && x.value.length > 0) {
    const b = parseDirentBlock(x.value, 0, x.value.length, ctx.blockSize, ctx.hasFileType);
    if (b.problem)
      reportProblem(
        ctx,
        dirProblem(ctx, inode, undefined, `inline directory (xattr part): ${b.problem.message}`),
      );
    yield* b.entries;
  }
}

/** Entries of a directory inode, without "." and "..". */
export async function readdirInode(
  ctx: ReadContext,
  dir: Inode,
  parentPath = `<inode ${dir.ino}>`,
): Promise<Ext4Dirent[]> {
  const out: Ext4Dirent[] = [];
  for (const e of await dirEntryList(ctx, dir)) {
    if (isDotOrDotDot(e.name)) continue;
    let ft = e.fileType;
    if (!ctx.hasFileType || ft === 0 || ft > 7) ft = fileTypeFromMode((await readInode(ctx, e.inode)).mode);
    out.push(Ext4Dirent.fromFileType(direntName(e.name), e.name, e.inode, ft, parentPath));
  }
  return out;
}

/** A directory entry with its inode's stats (a symlink's own, as lstat gives). */
export interface Ext4EntryStats {
  name: string;
  /** The name's bytes as stored. */
  nameBytes: Uint8Array;
  ino: number;
  stats: Ext4Stats;
}

/**
 * The entries of a directory inode (without "." and "..") with each one's stats, read by inode
 * number: no path lookup per entry. The inode-table chunks the entries need and that are not cached
 * are read together (one read per 64 KiB of table, all in flight at once) before the entries are
 * parsed without further waiting; then the blocks of the subdirectories found are read ahead
 * (readAheadDirBlocks). The inodes are not kept in the inode cache (a walk sees each once).
 */
export async function lstatEntriesInode(ctx: ReadContext, dir: Inode): Promise<Ext4EntryStats[]> {
  const entries = (await dirEntryList(ctx, dir)).filter((e) => !isDotOrDotDot(e.name));
  const missing = new Map<number, number>();
  for (const e of entries) {
    if (ctx.inodeCache.has(e.inode)) continue;
    const key = itableChunkKey(ctx, e.inode);
    if (!missing.has(key) && !ctx.itableCache.has(key)) missing.set(key, e.inode);
  }
  if (missing.size > 0) await Promise.all([...missing.values()].map((ino) => loadInode(ctx, ino, false)));
  const out: Ext4EntryStats[] = [];
  const subdirs: Inode[] = [];
  for (const e of entries) {
    // Usually cached now; a chunk evicted meanwhile (tiny cache) is read again.
    const inode = cachedInode(ctx, e.inode, false) ?? (await loadInode(ctx, e.inode, false));
    if ((inode.mode & S_IFMT) === S_IFDIR) subdirs.push(inode);
    out.push({ name: direntName(e.name), nameBytes: e.name, ino: e.inode, stats: statsOf(ctx, inode) });
  }
  // Only an optimisation: a failed read is reported when the directory itself is listed.
  if (subdirs.length > 1) await readAheadDirBlocks(ctx, subdirs).catch(() => {});
  return out;
}

/**
 * Read-ahead of directory blocks. Directory blocks with at most AHEAD_GAP_BYTES of other blocks
 * between them share one read (of at most AHEAD_SPAN_BYTES); larger holes are skipped. A tree
 * written by mke2fs -d or a package manager puts each directory's block next to its files' data,
 * so the holes are mostly small: on the 65,000-directory bench tree bridging them took ~1,500
 * reads (560 MB for 260 MB of directories) and reading directory blocks only ~90,000 reads and
 * more CPU (3.7 vs 2.7 s): a read through the thread pool costs more than copying 32 KiB.
 */
const AHEAD_GAP_BYTES = 32 * 1024;
const AHEAD_SPAN_BYTES = 1 << 20;
/** Most directory blocks waiting in ctx.dirAhead (32 MiB of 4 KiB blocks). */
const DIR_AHEAD_MAX = 8192;
/** Blocks kept per buffer (a cached block pins its buffer: this bounds what stays pinned). */
const AHEAD_PACK_BLOCKS = 16;
/** Span buffers kept for reuse per context (a walk reads hundreds of MiB through them). */
const SPAN_POOL_MAX = 16;

/** Span buffers of readAheadDirBlocks, reused (all AHEAD_SPAN_BYTES long). */
const spanPool = new WeakMap<ReadContext, Uint8Array[]>();

/** Reads `length` bytes at `offset` into a pooled buffer and hands them to `use`. */
async function readSpan(
  ctx: ReadContext,
  offset: number,
  length: number,
  use: (buf: Uint8Array) => void,
): Promise<void> {
  let pool = spanPool.get(ctx);
  if (!pool) {
    pool = [];
    spanPool.set(ctx, pool);
  }
  const whole = pool.pop() ?? allocBytes(AHEAD_SPAN_BYTES);
  const buf = whole.subarray(0, length);
  try {
    ctx.counters.reads++;
    ctx.counters.bytes += length;
    await ctx.device.readInto(offset, buf);
    use(buf);
  } finally {
    if (pool.length < SPAN_POOL_MAX) pool.push(whole);
  }
}

/**
 * Reads the blocks of one-block directories (the common case; a block mapped by the extent root)
 * into the block cache, where dirEntryList finds them. A walk lists a directory's subdirectories
 * next, and their blocks usually lie close together (between their files' data), so a few reads
 * replace one small read per directory; only the directory blocks are kept.
 */
async function readAheadDirBlocks(ctx: ReadContext, dirs: readonly Inode[]): Promise<void> {
  const bs = ctx.blockSize;
  const want: number[] = [];
  // Blocks read ahead wait in ctx.dirAhead until listed; the oldest are dropped past DIR_AHEAD_MAX.
  const budget = DIR_AHEAD_MAX >> 1;
  for (const d of dirs) {
    if (want.length >= budget) break;
    if (d.size !== bs || d.flags & (INODE_FLAGS.INLINE_DATA | INODE_FLAGS.ENCRYPT)) continue;
    let runs: ReturnType<typeof rootRuns>;
    try {
      runs = rootRuns(ctx, d);
    } catch {
      continue; // damaged: reported when the directory is listed
    }
    const r = runs?.[0];
    if (r?.logical !== 0 || r.uninit) continue;
    if (r.physical < ctx.sb.firstDataBlock || r.physical >= ctx.sb.blocksCount) continue;
    if (!ctx.blockCache.has(r.physical) && !ctx.dirAhead.has(r.physical)) want.push(r.physical);
  }
  if (want.length < 2) return;
  want.sort((a, b) => a - b);
  const gap = Math.floor(AHEAD_GAP_BYTES / bs);
  const span = Math.max(1, Math.floor(AHEAD_SPAN_BYTES / bs));
  const reads: Promise<void>[] = [];
  for (let i = 0; i < want.length; ) {
    const first = want[i];
    const blocks = [first];
    let j = i + 1;
    for (; j < want.length; j++) {
      const b = want[j];
      if (b === blocks[blocks.length - 1]) continue; // two hard links to one directory block
      if (b - blocks[blocks.length - 1] > gap + 1 || b - first >= span) break;
      blocks.push(b);
    }
    i = j;
    if (blocks.length === 1) continue; // read alone when listed
    const count = blocks[blocks.length - 1] - first + 1;
    reads.push(
      readSpan(ctx, first * bs, count * bs, (buf) => {
        ctx.counters.metadataBlocks += blocks.length;
        for (let k = 0; k < blocks.length; k += AHEAD_PACK_BLOCKS) {
          const n = Math.min(AHEAD_PACK_BLOCKS, blocks.length - k);
          const pack = allocBytes(n * bs);
          for (let m = 0; m < n; m++) {
            const b = blocks[k + m];
            pack.set(buf.subarray((b - first) * bs, (b - first + 1) * bs), m * bs);
            ctx.dirAhead.set(b, pack.subarray(m * bs, (m + 1) * bs));
          }
        }
        for (const b of ctx.dirAhead.keys()) {
          if (ctx.dirAhead.size <= DIR_AHEAD_MAX) break;
          ctx.dirAhead.delete(b);
        }
      }),
    );
  }
  await Promise.all(reads);
}

/**
 * Depth-first pre-order walk below `root` (included). Directories are entered once (a
 * directory reachable twice is corrupt: error, or skipped in lenient mode); symlinks are not
 * followed.
 */
export async function* walk(ctx: ReadContext, root = "/"): AsyncGenerator<WalkEntry> {
  const r = await resolve(ctx, root, true);
  const seen = new Set<number>();
  // Iterative pre-order DFS (recursive async generators cost O(depth) per yielded entry).
  const stack: { ino: number; inode: Inode; path: string; depth: number }[] = [
    { ino: r.ino, inode: r.inode, path: r.path, depth: 0 },
  ];
  while (stack.length > 0) {
    const cur = stack.pop()!;
    yield {
      path: cur.path,
      ino: cur.ino,
      stats: statsOf(ctx, cur.inode),
      inode: cur.inode,
      depth: cur.depth,
    };
    if ((cur.inode.mode & S_IFMT) !== S_IFDIR) continue;
    if (seen.has(cur.ino)) {
      reportProblem(
        ctx,
        new Ext4FormatError(
          `directory reached twice (at ${cur.path})`,
          locate(ctx, "directory", { inode: cur.ino }),
        ),
      );
      continue;
    }
    seen.add(cur.ino);
    const entries = await dirEntryList(ctx, cur.inode);
    const prefix = cur.path === "/" ? "/" : `${cur.path}/`;
    const base = stack.length;
    for (const d of entries) {
      if (isDotOrDotDot(d.name)) continue;
      const child = cachedInode(ctx, d.inode, false) ?? (await loadInode(ctx, d.inode, false));
      stack.push({ ino: d.inode, inode: child, path: prefix + direntName(d.name), depth: cur.depth + 1 });
    }
    // Children were pushed in directory order; reverse them so they pop in that order.
    for (let i = base, j = stack.length - 1; i < j; i++, j--) {
      const t = stack[i];
      stack[i] = stack[j];
      stack[j] = t;
    }
  }
}
