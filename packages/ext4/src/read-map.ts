/**
 * Logical→physical mapping of a file: extent trees (checked: magic, depth, counts, order, node
 * reuse, checksums) and ext2/3 block maps, as runs or one block at a time.
 */
import { parseBlockMapRoot } from "./block-map.js";
import { u32 } from "./bytes.js";
import { Ext4ChecksumError, Ext4FormatError } from "./errors.js";
import {
  EXT_MAX_DEPTH,
  EXTENT_HEADER_SIZE,
  EXTENT_MAGIC,
  type ExtentHeader,
  extentBlockChecksum,
  extentMaxEntries,
  parseExtent,
  parseExtentHeader,
  parseExtentIndex,
  storedExtentChecksum,
} from "./extent.js";
import { INODE_FLAGS } from "./features.js";
import type { BlockRun } from "./fs.js";
import type { Inode } from "./inode.js";
import { checkBlockRange, locate, type ReadContext, readBlock, reportProblem } from "./read-context.js";
import { inodeSeed } from "./read-inode.js";

/**
 * The file's mapped runs in logical order, adjacent runs coalesced. Validates extent trees
 * (magic, depth, counts, ordering, node reuse) and block maps; holes are simply absent.
 */
export async function* blockRuns(ctx: ReadContext, inode: Inode): AsyncGenerator<BlockRun> {
  const flat = rootRuns(ctx, inode);
  if (flat) {
    yield* flat;
    return;
  }
  let pending: BlockRun | undefined;
  const source = inode.flags & INODE_FLAGS.EXTENTS ? extentRuns(ctx, inode) : blockMapRuns(ctx, inode);
  for await (const r of source) {
    if (
      pending &&
      pending.uninit === r.uninit &&
      pending.logical + pending.length === r.logical &&
      pending.physical + pending.length === r.physical
    ) {
      pending.length += r.length;
      continue;
    }
    if (pending) yield pending;
    pending = { ...r };
  }
  if (pending) yield pending;
}

/**
 * Runs of a file whose extent tree is just the root in i_block (most files): computed without
 * async machinery, with the same checks as the tree walk. Undefined for deeper trees and maps.
 */
export function rootRuns(ctx: ReadContext, inode: Inode): BlockRun[] | undefined {
  if (!(inode.flags & INODE_FLAGS.EXTENTS)) return undefined;
  const h = checkExtentHeader(ctx, inode, inode.iBlock, undefined, undefined);
  if (h.depth !== 0) return undefined;
  const out: BlockRun[] = [];
  let next = 0;
  for (let i = 0; i < h.entries; i++) {
    const e = parseExtent(inode.iBlock, i);
    if (e.len === 0) throw extentProblem(ctx, inode, undefined, `extent ${i} has length 0`);
    if (e.block < next)
      throw extentProblem(
        ctx,
        inode,
        undefined,
        `extent ${i} (logical ${e.block}) overlaps or is out of order`,
      );
    if (e.block + e.len > 2 ** 32)
      throw extentProblem(ctx, inode, undefined, `extent ${i} runs past 2^32 blocks`);
    checkBlockRange(ctx, e.start, e.len, "extent", inode.ino);
    next = e.block + e.len;
    const last = out[out.length - 1];
    if (
      last &&
      last.uninit === e.uninit &&
      last.logical + last.length === e.block &&
      last.physical + last.length === e.start
    ) {
      last.length += e.len;
    } else out.push({ logical: e.block, physical: e.start, length: e.len, uninit: e.uninit });
  }
  return out;
}

export function extentProblem(
  ctx: ReadContext,
  inode: Inode,
  block: number | undefined,
  msg: string,
): Ext4FormatError {
  return new Ext4FormatError(
    msg,
    locate(ctx, block === undefined ? "extent root" : "extent block", { inode: inode.ino, block }),
  );
}

/** Validate an extent node header; returns it. */
export function checkExtentHeader(
  ctx: ReadContext,
  inode: Inode,
  node: Uint8Array,
  block: number | undefined,
  expectedDepth: number | undefined,
): ExtentHeader {
  const h = parseExtentHeader(node);
  if (h.magic !== EXTENT_MAGIC)
    throw extentProblem(ctx, inode, block, `bad extent magic 0x${h.magic.toString(16)}`);
  const cap = extentMaxEntries(node.length, block === undefined);
  if (h.max > cap || h.max === 0)
    throw extentProblem(ctx, inode, block, `eh_max ${h.max} exceeds the node's room (${cap})`);
  if (h.entries > h.max)
    throw extentProblem(ctx, inode, block, `eh_entries ${h.entries} exceeds eh_max ${h.max}`);
  if (h.depth > EXT_MAX_DEPTH) throw extentProblem(ctx, inode, block, `extent depth ${h.depth} is too deep`);
  if (expectedDepth !== undefined && h.depth !== expectedDepth) {
    throw extentProblem(ctx, inode, block, `extent node depth ${h.depth}, expected ${expectedDepth}`);
  }
  if (block !== undefined && ctx.csum) {
    const stored = storedExtentChecksum(node, h);
    const computed = extentBlockChecksum(inodeSeed(ctx, inode), node, h);
    if (stored !== computed) {
      reportProblem(
        ctx,
        new Ext4ChecksumError(
          "extent block checksum mismatch",
          stored,
          computed,
          locate(ctx, "extent block", { inode: inode.ino, block }),
        ),
      );
    }
  }
  return h;
}

export async function* extentRuns(ctx: ReadContext, inode: Inode): AsyncGenerator<BlockRun> {
  const visited = new Set<number>();
  let nextLogical = 0;
  async function* visit(
    node: Uint8Array,
    block: number | undefined,
    depth: number | undefined,
  ): AsyncGenerator<BlockRun> {
    const h = checkExtentHeader(ctx, inode, node, block, depth);
    if (h.depth === 0) {
      for (let i = 0; i < h.entries; i++) {
        const e = parseExtent(node, i);
        if (e.len === 0) throw extentProblem(ctx, inode, block, `extent ${i} has length 0`);
        if (e.block < nextLogical) {
          throw extentProblem(
            ctx,
            inode,
            block,
            `extent ${i} (logical ${e.block}) overlaps or is out of order`,
          );
        }
        if (e.block + e.len > 2 ** 32)
          throw extentProblem(ctx, inode, block, `extent ${i} runs past 2^32 blocks`);
        checkBlockRange(ctx, e.start, e.len, "extent", inode.ino);
        nextLogical = e.block + e.len;
        yield { logical: e.block, physical: e.start, length: e.len, uninit: e.uninit };
      }
      return;
    }
    for (let i = 0; i < h.entries; i++) {
      const ix = parseExtentIndex(node, i);
      if (ix.block < nextLogical && i > 0) {
        throw extentProblem(ctx, inode, block, `index entry ${i} (logical ${ix.block}) is out of order`);
      }
      if (visited.has(ix.leaf))
        throw extentProblem(ctx, inode, block, `extent node ${ix.leaf} is referenced twice (cycle)`);
      visited.add(ix.leaf);
      const child = await readBlock(ctx, ix.leaf, "extent block", inode.ino);
      yield* visit(child, ix.leaf, h.depth - 1);
    }
  }
  yield* visit(inode.iBlock, undefined, undefined);
}

export async function* blockMapRuns(ctx: ReadContext, inode: Inode): AsyncGenerator<BlockRun> {
  const bs = ctx.blockSize;
  const ptrsPer = bs / 4;
  const nBlocks = Math.ceil(inode.size / bs);
  const root = parseBlockMapRoot(inode.iBlock);
  const visited = new Set<number>();
  async function* level(ptr: number, depth: number, base: number): AsyncGenerator<BlockRun> {
    // depth 0: ptr is a data block at logical `base`.
    if (base >= nBlocks || ptr === 0) return;
    if (depth === 0) {
      checkBlockRange(ctx, ptr, 1, "data block", inode.ino);
      yield { logical: base, physical: ptr, length: 1, uninit: false };
      return;
    }
    if (visited.has(ptr)) {
      throw new Ext4FormatError(
        `indirect block ${ptr} is referenced twice`,
        locate(ctx, "indirect block", { inode: inode.ino, block: ptr }),
      );
    }
    visited.add(ptr);
    const blk = await readBlock(ctx, ptr, "indirect block", inode.ino);
    const span = ptrsPer ** (depth - 1);
    for (let i = 0; i < ptrsPer; i++) {
      const lb = base + i * span;
      if (lb >= nBlocks) break;
      const p = u32(blk, i * 4);
      if (p === 0) continue;
      if (depth === 1) {
        checkBlockRange(ctx, p, 1, "data block", inode.ino);
        yield { logical: lb, physical: p, length: 1, uninit: false };
      } else yield* level(p, depth - 1, lb);
    }
  }
  for (let i = 0; i < 12; i++) yield* level(root[i], 0, i);
  yield* level(root[12], 1, 12);
  yield* level(root[13], 2, 12 + ptrsPer);
  yield* level(root[14], 3, 12 + ptrsPer + ptrsPer * ptrsPer);
}

/** Physical block for logical block `lblk` (0 for a hole), descending the extent tree or block map directly. */
export async function mapBlock(
  ctx: ReadContext,
  inode: Inode,
  lblk: number,
): Promise<{ physical: number; uninit: boolean }> {
  if (inode.flags & INODE_FLAGS.EXTENTS) {
    let node = inode.iBlock;
    let block: number | undefined;
    let depth: number | undefined;
    for (let guard = 0; guard <= EXT_MAX_DEPTH + 1; guard++) {
      const h = checkExtentHeader(ctx, inode, node, block, depth);
      if (h.depth === 0) {
        // Binary search the last extent starting at or before lblk.
        let lo = 0;
        let hi = h.entries - 1;
        let found = -1;
        while (lo <= hi) {
          const mid = (lo + hi) >> 1;
          if (u32(node, EXTENT_HEADER_SIZE + mid * 12) <= lblk) {
            found = mid;
            lo = mid + 1;
          } else hi = mid - 1;
        }
        if (found < 0) return { physical: 0, uninit: false };
        const e = parseExtent(node, found);
        if (lblk >= e.block + e.len) return { physical: 0, uninit: false };
        checkBlockRange(ctx, e.start, e.len, "extent", inode.ino);
        return { physical: e.start + (lblk - e.block), uninit: e.uninit };
      }
      let found = -1;
      for (let i = 0; i < h.entries; i++) {
        if (u32(node, EXTENT_HEADER_SIZE + i * 12) <= lblk) found = i;
        else break;
      }
      if (found < 0) return { physical: 0, uninit: false };
      const ix = parseExtentIndex(node, found);
      depth = h.depth - 1;
      block = ix.leaf;
      node = await readBlock(ctx, ix.leaf, "extent block", inode.ino);
    }
    throw extentProblem(ctx, inode, block, "extent tree too deep");
  }
  const ptrsPer = ctx.blockSize / 4;
  const root = parseBlockMapRoot(inode.iBlock);
  let rel = lblk;
  const path: number[] = [];
  let start: number;
  if (rel < 12) return { physical: checkedData(ctx, inode, root[rel]), uninit: false };
  rel -= 12;
  const dind = rel - ptrsPer;
  if (rel < ptrsPer) {
    start = root[12];
    path.push(rel);
  } else if (dind < ptrsPer * ptrsPer) {
    start = root[13];
    path.push(Math.floor(dind / ptrsPer), dind % ptrsPer);
  } else {
    rel = dind - ptrsPer * ptrsPer;
    if (rel >= ptrsPer ** 3) return { physical: 0, uninit: false };
    start = root[14];
    path.push(Math.floor(rel / (ptrsPer * ptrsPer)), Math.floor(rel / ptrsPer) % ptrsPer, rel % ptrsPer);
  }
  let ptr = start;
  for (const idx of path) {
    if (ptr === 0) return { physical: 0, uninit: false };
    const blk = await readBlock(ctx, ptr, "indirect block", inode.ino);
    ptr = u32(blk, idx * 4);
  }
  return { physical: checkedData(ctx, inode, ptr), uninit: false };
}

export function checkedData(ctx: ReadContext, inode: Inode, p: number): number {
  if (p !== 0) checkBlockRange(ctx, p, 1, "data block", inode.ino);
  return p;
}
