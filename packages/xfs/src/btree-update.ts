/**
 * Write side of the generic B+tree (btree.ts): insert, delete and in-place update.
 *
 * After a leaf changes, the change settles upward along the lookup path:
 * - a block that overflows first tries to shift an entry to a sibling under the same parent, then
 *   splits (the new right half gets a block from the host, near the old one); a full root grows a
 *   new root above it (for a root inside an inode fork: its contents move into a new block and the
 *   inode root keeps one pointer, as xfs_btree_new_iroot does);
 * - a non-root block under half full (minrecs = maxrecs / 2, which xfs_repair checks) borrows an
 *   entry from a sibling that can spare one, else merges with a sibling and the parent loses an
 *   entry; a block-rooted tree whose root is left with one child drops a level (the child becomes
 *   the root); an inode root with one child pulls the child's entries back in when they fit;
 * - keys (and, for overlapping trees, high keys) are refreshed in every ancestor whose entry
 *   changed.
 * Cursors taken before a write are invalid after it.
 */
import {
  type Btree,
  type BtreeCursor,
  type BtreeNode,
  INODE_ROOT_PTR,
  NULL_PTR,
  type PathEntry,
} from "./btree.js";

function setEntryKeys<R, K>(
  t: Btree<R, K>,
  parent: BtreeNode<R, K>,
  idx: number,
  child: BtreeNode<R, K>,
): boolean {
  if (t.count(child) === 0) return false;
  const ops = t.ops;
  const lo = t.lowKey(child);
  let changed = parent.keys[idx] === undefined || ops.cmpKey(parent.keys[idx], lo) !== 0;
  parent.keys[idx] = lo;
  if (ops.overlapping) {
    const hi = t.highKey(child);
    if (parent.highKeys[idx] === undefined || ops.cmpKey(parent.highKeys[idx], hi) !== 0) changed = true;
    parent.highKeys[idx] = hi;
  }
  return changed;
}

function insertEntry<R, K>(
  t: Btree<R, K>,
  parent: BtreeNode<R, K>,
  at: number,
  child: BtreeNode<R, K>,
): void {
  parent.keys.splice(at, 0, t.lowKey(child));
  if (t.ops.overlapping) parent.highKeys.splice(at, 0, t.highKey(child));
  parent.ptrs.splice(at, 0, child.ptr);
}

function removeEntry<R, K>(parent: BtreeNode<R, K>, at: number): void {
  parent.keys.splice(at, 1);
  if (parent.highKeys.length > 0) parent.highKeys.splice(at, 1);
  parent.ptrs.splice(at, 1);
}

/** Move `n` entries from the end of `from` to the start of `to` (dir -1), or from the start of `from` to the end of `to`. */
function moveEntries<R, K>(from: BtreeNode<R, K>, to: BtreeNode<R, K>, n: number, fromEnd: boolean): void {
  if (from.level === 0) {
    if (fromEnd) to.recs.unshift(...from.recs.splice(from.recs.length - n, n));
    else to.recs.push(...from.recs.splice(0, n));
    return;
  }
  const ov = from.highKeys.length > 0 || to.highKeys.length > 0;
  if (fromEnd) {
    const at = from.ptrs.length - n;
    to.keys.unshift(...from.keys.splice(at, n));
    if (ov) to.highKeys.unshift(...from.highKeys.splice(at, n));
    to.ptrs.unshift(...from.ptrs.splice(at, n));
  } else {
    to.keys.push(...from.keys.splice(0, n));
    if (ov) to.highKeys.push(...from.highKeys.splice(0, n));
    to.ptrs.push(...from.ptrs.splice(0, n));
  }
}

/** Re-derive each ancestor's entry for the node below it, from level `i` up, while anything changes. */
function refreshUp<R, K>(t: Btree<R, K>, path: PathEntry<R, K>[], i: number): void {
  for (let j = i; j > 0; j--) {
    const pe = path[j - 1];
    if (!setEntryKeys(t, pe.node, pe.idx, path[j].node)) return;
    t.writeNode(pe.node);
  }
}

async function freeNode<R, K>(t: Btree<R, K>, node: BtreeNode<R, K>): Promise<void> {
  t.host.bufs.forget(t.host.ptrToOffset(node.ptr));
  node.buf = undefined;
  await t.host.freeBlock(node.ptr);
}

async function newNode<R, K>(t: Btree<R, K>, level: number, near: number): Promise<BtreeNode<R, K>> {
  const ptr = await t.host.allocBlock(near);
  return { ptr, level, left: NULL_PTR, right: NULL_PTR, recs: [], keys: [], highKeys: [], ptrs: [] };
}

/** Split `node` in two; it keeps the left half, the returned new block holds the right half. */
async function split<R, K>(t: Btree<R, K>, node: BtreeNode<R, K>): Promise<BtreeNode<R, K>> {
  const n = t.count(node);
  const right = await newNode(t, node.level, node.ptr);
  moveEntries(node, right, n - Math.ceil(n / 2), true);
  right.left = node.ptr;
  right.right = node.right;
  if (node.right !== NULL_PTR) {
    const rr = await t.readNode(node.right, node.level);
    rr.left = right.ptr;
    t.writeNode(rr);
  }
  node.right = right.ptr;
  t.writeNode(right);
  t.writeNode(node);
  return right;
}

/** Try to make room in `node` by giving an entry to a sibling under the same parent. */
async function tryShift<R, K>(t: Btree<R, K>, pe: PathEntry<R, K>, node: BtreeNode<R, K>): Promise<boolean> {
  const p = pe.node;
  const idx = pe.idx;
  if (idx > 0) {
    const left = await t.readNode(p.ptrs[idx - 1], node.level);
    if (t.count(left) < t.maxRecs(left)) {
      moveEntries(node, left, 1, false);
      t.writeNode(left);
      t.writeNode(node);
      setEntryKeys(t, p, idx - 1, left);
      setEntryKeys(t, p, idx, node);
      return true;
    }
  }
  if (idx + 1 < p.ptrs.length) {
    const right = await t.readNode(p.ptrs[idx + 1], node.level);
    if (t.count(right) < t.maxRecs(right)) {
      moveEntries(node, right, 1, true);
      t.writeNode(right);
      t.writeNode(node);
      setEntryKeys(t, p, idx, node);
      setEntryKeys(t, p, idx + 1, right);
      return true;
    }
  }
  return false;
}

/** Settle a path whose node at `i` may hold one entry too many. */
async function settleGrow<R, K>(t: Btree<R, K>, path: PathEntry<R, K>[], start: number): Promise<void> {
  let i = start;
  for (;;) {
    const node = path[i].node;
    if (t.count(node) <= t.maxRecs(node)) {
      t.writeNode(node);
      refreshUp(t, path, i);
      return;
    }
    if (i === 0) {
      if (node.ptr === INODE_ROOT_PTR) {
        // The inode root moves into a block; the inode keeps one pointer to it.
        const child = await newNode(t, node.level, NULL_PTR);
        moveEntries(node, child, t.count(node), false);
        t.writeNode(child);
        node.level++;
        insertEntry(t, node, 0, child);
        t.writeNode(node);
        path.splice(1, 0, { node: child, idx: 0 });
        path[0] = { node, idx: 0 };
        i = 1;
        continue;
      }
      const right = await split(t, node);
      const root = await newNode(t, node.level + 1, node.ptr);
      insertEntry(t, root, 0, node);
      insertEntry(t, root, 1, right);
      t.writeNode(root);
      t.host.setRoot(root.ptr, root.level + 1);
      return;
    }
    const pe = path[i - 1];
    if (await tryShift(t, pe, node)) {
      t.writeNode(pe.node);
      refreshUp(t, path, i - 1);
      return;
    }
    const right = await split(t, node);
    setEntryKeys(t, pe.node, pe.idx, node);
    insertEntry(t, pe.node, pe.idx + 1, right);
    i--;
  }
}

/** Settle a path whose node at `i` may have fallen under minrecs. */
async function settleShrink<R, K>(t: Btree<R, K>, path: PathEntry<R, K>[], start: number): Promise<void> {
  let i = start;
  for (;;) {
    const node = path[i].node;
    if (i === 0) {
      if (node.level > 0 && t.count(node) === 1) {
        if (node.ptr !== INODE_ROOT_PTR) {
          t.host.setRoot(node.ptrs[0], node.level);
          await freeNode(t, node);
          return;
        }
        const ir = t.host.inodeRoot;
        const child = await t.readNode(node.ptrs[0], node.level - 1);
        if (ir && child.level > 0 && t.count(child) <= ir.maxRecs(child.level)) {
          node.level = child.level;
          node.keys = [];
          node.highKeys = [];
          node.ptrs = [];
          moveEntries(child, node, t.count(child), false);
          await freeNode(t, child);
        }
      }
      t.writeNode(node);
      return;
    }
    const pe = path[i - 1];
    if (t.count(node) >= t.minRecs(node)) {
      t.writeNode(node);
      refreshUp(t, path, i);
      return;
    }
    const ir = t.host.inodeRoot;
    if (i === 1 && ir && pe.node.ptr === INODE_ROOT_PTR && pe.node.ptrs.length === 1) {
      // Under an inode root with one entry: pull this block into the inode when it fits
      // (xfs_btree_kill_iroot); a leaf cannot become the inode root, the fork code converts that.
      if (node.level > 0 && t.count(node) <= ir.maxRecs(node.level)) {
        const root = pe.node;
        root.level = node.level;
        root.keys = [];
        root.highKeys = [];
        root.ptrs = [];
        moveEntries(node, root, t.count(node), false);
        await freeNode(t, node);
        t.writeNode(root);
        return;
      }
      t.writeNode(node);
      refreshUp(t, path, i);
      return;
    }
    const p = pe.node;
    const idx = pe.idx;
    const left = idx > 0 ? await t.readNode(p.ptrs[idx - 1], node.level) : null;
    const right = idx + 1 < p.ptrs.length ? await t.readNode(p.ptrs[idx + 1], node.level) : null;
    if (right && t.count(right) > t.minRecs(right)) {
      moveEntries(right, node, 1, false);
      t.writeNode(right);
      t.writeNode(node);
      setEntryKeys(t, p, idx, node);
      setEntryKeys(t, p, idx + 1, right);
      t.writeNode(p);
      refreshUp(t, path, i - 1);
      return;
    }
    if (left && t.count(left) > t.minRecs(left)) {
      moveEntries(left, node, 1, true);
      t.writeNode(left);
      t.writeNode(node);
      setEntryKeys(t, p, idx - 1, left);
      setEntryKeys(t, p, idx, node);
      t.writeNode(p);
      refreshUp(t, path, i - 1);
      return;
    }
    if (left) {
      moveEntries(node, left, t.count(node), false);
      await relink(t, left, node.right);
      t.writeNode(left);
      await freeNode(t, node);
      setEntryKeys(t, p, idx - 1, left);
      removeEntry(p, idx);
      path[i - 1] = { node: p, idx: idx - 1 };
      i--;
      continue;
    }
    if (right) {
      moveEntries(right, node, t.count(right), false);
      await relink(t, node, right.right);
      t.writeNode(node);
      await freeNode(t, right);
      setEntryKeys(t, p, idx, node);
      removeEntry(p, idx + 1);
      i--;
      continue;
    }
    // An only child (possible under an inode root): keep it as it is.
    t.writeNode(node);
    refreshUp(t, path, i);
    return;
  }
}

/** `node` absorbed its right sibling: its right pointer becomes `newRight`, whose left pointer comes back. */
async function relink<R, K>(t: Btree<R, K>, node: BtreeNode<R, K>, newRight: number): Promise<void> {
  node.right = newRight;
  if (newRight !== NULL_PTR) {
    const rr = await t.readNode(newRight, node.level);
    rr.left = node.ptr;
    t.writeNode(rr);
  }
}

/** Insert a record (its key must not already be present, except in trees that allow that). */
export async function btreeInsert<R, K>(t: Btree<R, K>, rec: R): Promise<void> {
  const path = await t.descend(t.ops.keyOf(rec));
  const leaf = path[path.length - 1];
  leaf.node.recs.splice(leaf.idx + 1, 0, rec);
  leaf.idx++;
  await settleGrow(t, path, path.length - 1);
}

/** Delete the record under the cursor. */
export async function btreeDeleteAt<R, K>(t: Btree<R, K>, cur: BtreeCursor<R, K>): Promise<void> {
  const path = cur.path;
  const leaf = path[path.length - 1];
  leaf.node.recs.splice(leaf.idx, 1);
  await settleShrink(t, path, path.length - 1);
}

/** Replace the record under the cursor; the new record must keep its place in key order. */
export async function btreeUpdateAt<R, K>(t: Btree<R, K>, cur: BtreeCursor<R, K>, rec: R): Promise<void> {
  const path = cur.path;
  const leaf = path[path.length - 1];
  leaf.node.recs[leaf.idx] = rec;
  cur.rec = rec;
  t.writeRecord(leaf.node, leaf.idx);
  refreshUp(t, path, path.length - 1);
}
