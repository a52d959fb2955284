/**
 * The one generic B+tree of the package (the kernel's xfs_btree.c): block header codec for the
 * short (AG, 32-bit pointers) and long (bmbt, 64-bit pointers) forms, v4 and v5; lookups,
 * iteration and range queries (with overlapping keys for the rmapbt); insert, delete and update
 * with splits, sibling shifts, merges, new roots and root collapse (btree-update.ts). Each tree is a
 * small ops table (btree-alloc.ts, btree-ialloc.ts, btree-rmap.ts, btree-refcount.ts,
 * btree-bmap.ts); where its root lives, how its blocks are allocated and freed, and who owns them is
 * a `BtreeHost`.
 *
 * Block header (big-endian; short form / long form):
 *
 * | off s | off l | size s/l | field       | notes                                         |
 * |-------|-------|----------|-------------|-----------------------------------------------|
 * | 0     | 0     | 4        | bb_magic    | per tree and per version (v4 / v5 "…3…")       |
 * | 4     | 4     | 2        | bb_level    | 0 = leaf                                      |
 * | 6     | 6     | 2        | bb_numrecs  |                                               |
 * | 8     | 8     | 4 / 8    | bb_leftsib  | NULLAGBLOCK / NULLFSBLOCK (all ones) = none    |
 * | 12    | 16    | 4 / 8    | bb_rightsib |                                               |
 * | 16    | 24    | 8        | bb_blkno    | v5: daddr (512-byte sector) of this block     |
 * | 24    | 32    | 8        | bb_lsn      | v5: LSN of the last write                     |
 * | 32    | 40    | 16       | bb_uuid     | v5: sb_meta_uuid                              |
 * | 48    | 56    | 4 / 8    | bb_owner    | v5: AG number / inode number                  |
 * | 52    | 64    | 4        | bb_crc      | v5: CRC32C, little-endian                     |
 * | —     | 68    | 4        | bb_pad      | v5 long form only                             |
 *
 * Header length: short 16 (v4) / 56 (v5); long 24 (v4) / 72 (v5). A leaf holds `maxrecs` records
 * after the header; a node holds `maxrecs` keys (key pairs low+high for overlapping trees), then
 * `maxrecs` pointers, so the pointer array starts at a fixed offset for a given block size.
 */

import type { BufCache, MetaBuf } from "./buf.js";
import { verifyCrc } from "./buf.js";
import { be16, be32, be64, setBe16, setBe32, setBe64 } from "./bytes.js";
import { XfsFormatError } from "./errors.js";

/** A block pointer: agbno (short form) or fsblock (long form); NULL_PTR for none. */
export type Ptr = number;
export const NULL_PTR = -1;
/** Marks a node that lives in the inode fork (bmbt root), not in a block. */
export const INODE_ROOT_PTR = -2;

/** Deepest tree accepted when reading (guards against loops in damaged images). */
export const MAX_BTREE_LEVELS = 9;

export interface BtreeOps<R, K> {
  /** Short name used in errors ("bnobt"). */
  readonly name: string;
  /** bb_magic for v4 and v5 blocks. */
  readonly magicV4: number;
  readonly magicV5: number;
  readonly longPtrs: boolean;
  readonly recSize: number;
  /** Size of one key (for overlapping trees, of one of the low/high pair). */
  readonly keySize: number;
  /** Node keys are (low, high) pairs and range queries use the high keys (rmapbt). */
  readonly overlapping: boolean;
  readRec(b: Uint8Array, off: number): R;
  writeRec(b: Uint8Array, off: number, r: R): void;
  readKey(b: Uint8Array, off: number): K;
  writeKey(b: Uint8Array, off: number, k: K): void;
  /** The (low) key of a record. */
  keyOf(r: R): K;
  /** The highest key a record covers (overlapping trees; others may return keyOf). */
  highKeyOf(r: R): K;
  cmpKey(a: K, b: K): number;
}

/** The bmbt root in an inode fork (bmdr): the host decodes and encodes it. */
export interface InodeRoot<K> {
  level: number;
  keys: K[];
  ptrs: Ptr[];
}

export interface BtreeHost<K> {
  readonly bufs: BufCache;
  readonly blockSize: number;
  readonly crc: boolean;
  /** sb_meta_uuid (16 bytes), checked and stamped in v5 headers. */
  readonly uuid: Uint8Array;
  /** bb_owner: AG number (short form) or inode number (long form). */
  readonly owner: number;
  /** AG number for error messages (short form trees). */
  readonly agno?: number;
  /** Device byte offset of a block pointer; throws XfsFormatError when it is out of range. */
  ptrToOffset(ptr: Ptr): number;
  /** Root pointer and number of levels (AGF/AGI fields, or the inode root: ptr INODE_ROOT_PTR). */
  getRoot(): { ptr: Ptr; levels: number };
  setRoot(ptr: Ptr, levels: number): void;
  /** A new block for the tree, preferably near `near`. */
  allocBlock(near: Ptr): Promise<Ptr>;
  freeBlock(ptr: Ptr): Promise<void>;
  /** For trees rooted in an inode fork. */
  inodeRoot?: {
    read(): InodeRoot<K>;
    write(root: InodeRoot<K>): void;
    /** Capacity of the in-inode root at a level (> 0). */
    maxRecs(level: number): number;
  };
}

/** One decoded tree block (or the in-inode root). */
export interface BtreeNode<R, K> {
  ptr: Ptr;
  level: number;
  left: Ptr;
  right: Ptr;
  recs: R[];
  keys: K[];
  highKeys: K[];
  ptrs: Ptr[];
  buf?: MetaBuf;
}

export interface PathEntry<R, K> {
  node: BtreeNode<R, K>;
  idx: number;
}

/** A position in the tree: the path from the root to a leaf record. Invalidated by any write. */
export interface BtreeCursor<R, K> {
  path: PathEntry<R, K>[];
  rec: R;
}

export type LookupMode = "le" | "ge" | "eq";

export function headerLength(longPtrs: boolean, crc: boolean): number {
  if (longPtrs) return crc ? 72 : 24;
  return crc ? 56 : 16;
}

export function maxRecsFor(
  blockSize: number,
  ops: BtreeOps<unknown, unknown>,
  crc: boolean,
  leaf: boolean,
): number {
  const space = blockSize - headerLength(ops.longPtrs, crc);
  if (leaf) return Math.floor(space / ops.recSize);
  return Math.floor(space / (ops.keySize * (ops.overlapping ? 2 : 1) + (ops.longPtrs ? 8 : 4)));
}

/** Largest number of levels a tree of `maxBlocks`-sized records could need (xfs_btree_compute_maxlevels). */
export function computeMaxLevels(minLeaf: number, minNode: number, records: number): number {
  let blocks = Math.ceil(records / minLeaf);
  let levels = 1;
  while (blocks > 1) {
    blocks = Math.ceil(blocks / minNode);
    levels++;
  }
  return levels;
}

export class Btree<R, K> {
  readonly hdrLen: number;
  readonly leafMax: number;
  readonly nodeMax: number;
  private readonly keyEntry: number;
  private readonly ptrSize: number;

  constructor(
    readonly ops: BtreeOps<R, K>,
    readonly host: BtreeHost<K>,
  ) {
    this.hdrLen = headerLength(ops.longPtrs, host.crc);
    this.leafMax = maxRecsFor(host.blockSize, ops as BtreeOps<unknown, unknown>, host.crc, true);
    this.nodeMax = maxRecsFor(host.blockSize, ops as BtreeOps<unknown, unknown>, host.crc, false);
    this.keyEntry = ops.keySize * (ops.overlapping ? 2 : 1);
    this.ptrSize = ops.longPtrs ? 8 : 4;
  }

  get magic(): number {
    return this.host.crc ? this.ops.magicV5 : this.ops.magicV4;
  }

  /** Capacity of a node (the in-inode root has its own). */
  maxRecs(node: BtreeNode<R, K>): number {
    if (node.ptr === INODE_ROOT_PTR) return this.host.inodeRoot?.maxRecs(node.level) ?? 0;
    return node.level === 0 ? this.leafMax : this.nodeMax;
  }
  minRecs(node: BtreeNode<R, K>): number {
    return Math.floor((node.level === 0 ? this.leafMax : this.nodeMax) / 2);
  }
  count(node: BtreeNode<R, K>): number {
    return node.level === 0 ? node.recs.length : node.ptrs.length;
  }

  private fail(message: string, ptr?: Ptr, offset?: number): XfsFormatError {
    return new XfsFormatError(message, {
      structure: `${this.ops.name} block`,
      agno: this.host.agno,
      block: ptr !== undefined && ptr >= 0 ? ptr : undefined,
      file: this.host.bufs.dev.name,
      offset,
    });
  }

  // ---- block codec -------------------------------------------------------------------------

  private readPtr(b: Uint8Array, off: number): Ptr {
    if (this.ops.longPtrs) {
      const hi = be32(b, off);
      const lo = be32(b, off + 4);
      if (hi === 0xffffffff && lo === 0xffffffff) return NULL_PTR;
      if (hi >= 0x200000)
        throw this.fail(`pointer 0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")} out of range`);
      return hi * 0x1_0000_0000 + lo;
    }
    const v = be32(b, off);
    return v === 0xffffffff ? NULL_PTR : v;
  }
  private writePtr(b: Uint8Array, off: number, p: Ptr): void {
    if (this.ops.longPtrs) {
      if (p === NULL_PTR) {
        setBe32(b, off, 0xffffffff);
        setBe32(b, off + 4, 0xffffffff);
      } else setBe64(b, off, p);
    } else setBe32(b, off, p === NULL_PTR ? 0xffffffff : p);
  }

  /** Decode a block; `expectLevel` is checked when known (children of a node). */
  async readNode(ptr: Ptr, expectLevel?: number): Promise<BtreeNode<R, K>> {
    if (ptr === INODE_ROOT_PTR) return this.readInodeRoot();
    const offset = this.host.ptrToOffset(ptr);
    const buf = await this.host.bufs.read(offset, this.host.blockSize, `${this.ops.name} block`);
    // Decoded before and unchanged since (writeNode leaves its node here; dirty() clears it).
    if (buf.decoded !== undefined && buf.decodedBy === this.ops) {
      const hit = buf.decoded as BtreeNode<R, K>;
      if (expectLevel !== undefined && hit.level !== expectLevel)
        throw this.fail(`level ${hit.level}, expected ${expectLevel}`, ptr, offset);
      if (hit.ptr === ptr) return hit;
    }
    const b = buf.data;
    const L = this.ops.longPtrs;
    if (be32(b, 0) !== this.magic) throw this.fail(`bad magic 0x${be32(b, 0).toString(16)}`, ptr, offset);
    const level = be16(b, 4);
    const n = be16(b, 6);
    if (expectLevel !== undefined && level !== expectLevel) {
      throw this.fail(`level ${level}, expected ${expectLevel}`, ptr, offset);
    }
    if (level >= MAX_BTREE_LEVELS) throw this.fail(`level ${level} too deep`, ptr, offset);
    if (n > (level === 0 ? this.leafMax : this.nodeMax))
      throw this.fail(`${n} records exceed the block`, ptr, offset);
    if (this.host.crc && !buf.checked) {
      const crcOff = L ? 64 : 52;
      verifyCrc(b, crcOff, {
        structure: `${this.ops.name} block`,
        file: this.host.bufs.dev.name,
        offset,
        agno: this.host.agno,
        block: ptr,
      });
      const blkno = be64(b, L ? 24 : 16);
      if (blkno * 512 !== offset)
        throw this.fail(`bb_blkno ${blkno} does not match the block's address`, ptr, offset);
      const uuidOff = L ? 40 : 32;
      for (let i = 0; i < 16; i++) {
        if (b[uuidOff + i] !== this.host.uuid[i])
          throw this.fail("bb_uuid is not this filesystem's", ptr, offset);
      }
      const owner = L ? be64(b, 56) : be32(b, 48);
      if (owner !== this.host.owner)
        throw this.fail(`bb_owner ${owner}, expected ${this.host.owner}`, ptr, offset);
      buf.checked = true;
    }
    const node: BtreeNode<R, K> = {
      ptr,
      level,
      left: this.readPtr(b, 8),
      right: this.readPtr(b, L ? 16 : 12),
      recs: [],
      keys: [],
      highKeys: [],
      ptrs: [],
      buf,
    };
    const h = this.hdrLen;
    if (level === 0) {
      for (let i = 0; i < n; i++) node.recs.push(this.ops.readRec(b, h + i * this.ops.recSize));
    } else {
      const pbase = h + this.nodeMax * this.keyEntry;
      for (let i = 0; i < n; i++) {
        const ko = h + i * this.keyEntry;
        node.keys.push(this.ops.readKey(b, ko));
        if (this.ops.overlapping) node.highKeys.push(this.ops.readKey(b, ko + this.ops.keySize));
        node.ptrs.push(this.readPtr(b, pbase + i * this.ptrSize));
      }
    }
    buf.decoded = node;
    buf.decodedBy = this.ops;
    return node;
  }

  private readInodeRoot(): BtreeNode<R, K> {
    const ir = this.host.inodeRoot;
    if (!ir) throw this.fail("tree has no inode root");
    const r = ir.read();
    if (r.level < 1 || r.level >= MAX_BTREE_LEVELS) throw this.fail(`inode root level ${r.level}`);
    if (r.ptrs.length > ir.maxRecs(r.level)) throw this.fail("inode root holds too many records");
    return {
      ptr: INODE_ROOT_PTR,
      level: r.level,
      left: NULL_PTR,
      right: NULL_PTR,
      recs: [],
      keys: r.keys,
      highKeys: [],
      ptrs: r.ptrs,
    };
  }

  /** Encode a node into its buffer (or the inode root) and mark it dirty. */
  writeNode(node: BtreeNode<R, K>): void {
    if (node.ptr === INODE_ROOT_PTR) {
      this.host.inodeRoot?.write({ level: node.level, keys: node.keys, ptrs: node.ptrs });
      return;
    }
    let buf = node.buf;
    if (!buf) {
      buf = this.host.bufs.fresh(
        this.host.ptrToOffset(node.ptr),
        this.host.blockSize,
        `${this.ops.name} block`,
      );
      node.buf = buf;
    }
    const b = buf.data;
    const L = this.ops.longPtrs;
    setBe32(b, 0, this.magic);
    setBe16(b, 4, node.level);
    setBe16(b, 6, this.count(node));
    this.writePtr(b, 8, node.left);
    this.writePtr(b, L ? 16 : 12, node.right);
    if (this.host.crc) {
      setBe64(b, L ? 24 : 16, buf.offset / 512);
      b.set(this.host.uuid.subarray(0, 16), L ? 40 : 32);
      if (L) setBe64(b, 56, this.host.owner);
      else setBe32(b, 48, this.host.owner);
      if (L) setBe32(b, 68, 0);
    }
    const h = this.hdrLen;
    if (node.level === 0) {
      for (let i = 0; i < node.recs.length; i++) this.ops.writeRec(b, h + i * this.ops.recSize, node.recs[i]);
    } else {
      const pbase = h + this.nodeMax * this.keyEntry;
      for (let i = 0; i < node.ptrs.length; i++) {
        const ko = h + i * this.keyEntry;
        this.ops.writeKey(b, ko, node.keys[i]);
        if (this.ops.overlapping) this.ops.writeKey(b, ko + this.ops.keySize, node.highKeys[i]);
        this.writePtr(b, pbase + i * this.ptrSize, node.ptrs[i]);
      }
    }
    this.host.bufs.dirty(buf, this.host.crc ? { crcOffset: L ? 64 : 52, lsnOffset: L ? 32 : 24 } : {});
    buf.decoded = node;
    buf.decodedBy = this.ops;
  }

  /**
   * Record `idx` of a leaf block was replaced (nothing else changed): only its bytes are
   * written, not the whole block.
   */
  writeRecord(node: BtreeNode<R, K>, idx: number): void {
    const buf = node.buf;
    if (!buf || node.level !== 0 || node.ptr === INODE_ROOT_PTR || be16(buf.data, 6) !== node.recs.length) {
      this.writeNode(node);
      return;
    }
    this.ops.writeRec(buf.data, this.hdrLen + idx * this.ops.recSize, node.recs[idx]);
    const L = this.ops.longPtrs;
    this.host.bufs.dirty(buf, this.host.crc ? { crcOffset: L ? 64 : 52, lsnOffset: L ? 32 : 24 } : {});
    buf.decoded = node;
    buf.decodedBy = this.ops;
  }

  /** The low key of a node's contents. */
  lowKey(node: BtreeNode<R, K>): K {
    return node.level === 0 ? this.ops.keyOf(node.recs[0]) : node.keys[0];
  }
  /** The high key of a node's contents (largest high key of its entries). */
  highKey(node: BtreeNode<R, K>): K {
    const ops = this.ops;
    if (!ops.overlapping) {
      return node.level === 0 ? ops.keyOf(node.recs[node.recs.length - 1]) : node.keys[node.keys.length - 1];
    }
    let best: K | undefined;
    if (node.level === 0) {
      for (const r of node.recs) {
        const k = ops.highKeyOf(r);
        if (best === undefined || ops.cmpKey(k, best) > 0) best = k;
      }
    } else {
      for (const k of node.highKeys) if (best === undefined || ops.cmpKey(k, best) > 0) best = k;
    }
    return best as K;
  }

  // ---- read side ---------------------------------------------------------------------------

  async root(): Promise<BtreeNode<R, K>> {
    const { ptr, levels } = this.host.getRoot();
    if (levels < 1 || levels > MAX_BTREE_LEVELS) throw this.fail(`tree has ${levels} levels`);
    return this.readNode(ptr, levels - 1);
  }

  /** Index of the last entry whose key is <= k, or -1. */
  private lastLE(node: BtreeNode<R, K>, k: K): number {
    let lo = 0;
    let hi = this.count(node) - 1;
    let ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const mk = node.level === 0 ? this.ops.keyOf(node.recs[mid]) : node.keys[mid];
      if (this.ops.cmpKey(mk, k) <= 0) {
        ans = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return ans;
  }

  /** Path to the leaf that would hold key `k`; the leaf idx is the last record <= k (may be -1). */
  async descend(k: K): Promise<PathEntry<R, K>[]> {
    const path: PathEntry<R, K>[] = [];
    let node = await this.root();
    for (;;) {
      const idx = this.lastLE(node, k);
      if (node.level === 0) {
        path.push({ node, idx });
        return path;
      }
      if (node.ptrs.length === 0) throw this.fail("empty interior node", node.ptr);
      const ci = Math.max(idx, 0);
      path.push({ node, idx: ci });
      node = await this.readNode(node.ptrs[ci], node.level - 1);
    }
  }

  private cursorAt(path: PathEntry<R, K>[]): BtreeCursor<R, K> {
    const leaf = path[path.length - 1];
    return { path, rec: leaf.node.recs[leaf.idx] };
  }

  /** Find a record by key: the last <= k, the first >= k, or an equal one. */
  async lookup(k: K, mode: LookupMode): Promise<BtreeCursor<R, K> | null> {
    const path = await this.descend(k);
    const leaf = path[path.length - 1];
    if (mode === "le" || mode === "eq") {
      if (leaf.idx < 0) {
        // Only possible at the tree's leftmost leaf: nothing <= k.
        return null;
      }
      const cur = this.cursorAt(path);
      if (mode === "eq" && this.ops.cmpKey(this.ops.keyOf(cur.rec), k) !== 0) return null;
      return cur;
    }
    // ge: first record > the last <= k, unless that one equals k.
    if (leaf.idx >= 0 && this.ops.cmpKey(this.ops.keyOf(leaf.node.recs[leaf.idx]), k) === 0)
      return this.cursorAt(path);
    const cur: BtreeCursor<R, K> = { path, rec: undefined as unknown as R };
    return (await this.step(cur, 1)) ? cur : null;
  }

  /** The first (or last) record of the tree. */
  async edge(last: boolean): Promise<BtreeCursor<R, K> | null> {
    const path: PathEntry<R, K>[] = [];
    let node = await this.root();
    for (;;) {
      const n = this.count(node);
      if (n === 0) {
        if (node.level === 0) return null;
        throw this.fail("empty interior node", node.ptr);
      }
      const idx = last ? n - 1 : 0;
      path.push({ node, idx });
      if (node.level === 0) return this.cursorAt(path);
      node = await this.readNode(node.ptrs[idx], node.level - 1);
    }
  }

  /** Move the cursor one record forward (dir 1) or back (-1); false at the end. */
  async step(cur: BtreeCursor<R, K>, dir: 1 | -1): Promise<boolean> {
    const path = cur.path;
    let i = path.length - 1;
    // Climb while this level's position cannot move.
    for (; i >= 0; i--) {
      const e = path[i];
      const next = e.idx + dir;
      if (next >= 0 && next < this.count(e.node)) {
        e.idx = next;
        break;
      }
    }
    if (i < 0) return false;
    for (let j = i + 1; j < path.length; j++) {
      const parent = path[j - 1];
      const child = await this.readNode(parent.node.ptrs[parent.idx], parent.node.level - 1);
      const n = this.count(child);
      if (n === 0) throw this.fail("empty block inside the tree", child.ptr);
      path[j] = { node: child, idx: dir === 1 ? 0 : n - 1 };
    }
    cur.rec = path[path.length - 1].node.recs[path[path.length - 1].idx];
    return true;
  }

  /** Every record in key order (copies: the decoded nodes stay cached on their buffers). */
  async *records(): AsyncGenerator<R> {
    const cur = await this.edge(false);
    if (!cur) return;
    do yield { ...cur.rec };
    while (await this.step(cur, 1));
  }

  /**
   * Records overlapping [lo, hi]: for overlapping trees, those with keyOf <= hi and highKeyOf >= lo
   * (found through the node high keys); for others, from the last record <= lo while keyOf <= hi.
   */
  async queryRange(lo: K, hi: K, visit: (r: R) => unknown): Promise<void> {
    const ops = this.ops;
    if (!ops.overlapping) {
      let cur = await this.lookup(lo, "le");
      if (!cur) cur = await this.edge(false);
      if (!cur) return;
      do {
        if (ops.cmpKey(ops.keyOf(cur.rec), hi) > 0) return;
        if (visit(cur.rec) === false) return;
      } while (await this.step(cur, 1));
      return;
    }
    const walk = async (node: BtreeNode<R, K>): Promise<boolean> => {
      if (node.level === 0) {
        for (const r of node.recs) {
          if (ops.cmpKey(ops.keyOf(r), hi) > 0) return true;
          if (ops.cmpKey(ops.highKeyOf(r), lo) >= 0 && visit(r) === false) return false;
        }
        return true;
      }
      for (let i = 0; i < node.ptrs.length; i++) {
        if (ops.cmpKey(node.keys[i], hi) > 0) return true;
        if (ops.cmpKey(node.highKeys[i], lo) < 0) continue;
        if (!(await walk(await this.readNode(node.ptrs[i], node.level - 1)))) return false;
      }
      return true;
    };
    await walk(await this.root());
  }

  /** Every block of the tree (root first, level by level), for counting and checks. */
  async blocks(): Promise<Ptr[]> {
    const out: Ptr[] = [];
    let level: BtreeNode<R, K>[] = [await this.root()];
    while (level.length > 0) {
      const next: BtreeNode<R, K>[] = [];
      for (const n of level) {
        if (n.ptr !== INODE_ROOT_PTR) out.push(n.ptr);
        if (n.level > 0) for (const p of n.ptrs) next.push(await this.readNode(p, n.level - 1));
      }
      level = next;
    }
    return out;
  }
}
