/**
 * Extended attribute layout for writing: an inode's attributes as a list, laid out into the
 * in-inode area first (system.data of inline_data always there) and the rest into one external
 * block (entries sorted as the kernel's lookups expect, hashes, block hash, checksum).
 */
import { setU32, u32 } from "./bytes.js";
import { GOOD_OLD_INODE_SIZE } from "./inode.js";
import {
  encodeXattrBlockHeader,
  encodeXattrEntry,
  XATTR_BLOCK_HEADER_SIZE,
  XATTR_MAGIC,
  xattrBlockHash,
  xattrEntryHash,
  xattrEntrySize,
} from "./xattr.js";

export interface XattrItem {
  index: number;
  suffix: Uint8Array;
  value: Uint8Array;
}

const pad4 = (n: number) => (n + 3) & ~3;

function sortKey(a: XattrItem, b: XattrItem): number {
  if (a.index !== b.index) return a.index - b.index;
  if (a.suffix.length !== b.suffix.length) return a.suffix.length - b.suffix.length;
  for (let i = 0; i < a.suffix.length; i++) if (a.suffix[i] !== b.suffix[i]) return a.suffix[i] - b.suffix[i];
  return 0;
}

/** Bytes an item takes in a region (entry + padded value). */
export function xattrItemSize(it: XattrItem): number {
  return xattrEntrySize(it.suffix.length) + pad4(it.value.length);
}

/**
 * Split items between the inode body (capacity `ibodySize` bytes incl. the 4-byte magic) and
 * a block (capacity `blockSize`). Returns undefined when they do not fit.
 */
export function planXattrs(
  items: XattrItem[],
  ibodySize: number,
  blockSize: number,
): { ibody: XattrItem[]; block: XattrItem[] } | undefined {
  const ibody: XattrItem[] = [];
  const block: XattrItem[] = [];
  // 4 bytes magic + 4 bytes end marker in the inode; 32-byte header + 4-byte end marker in a block.
  let ifree = ibodySize > 8 ? ibodySize - 8 : 0;
  let bfree = blockSize - XATTR_BLOCK_HEADER_SIZE - 4;
  const ordered = [...items].sort((a, b) => {
    const sysData = (x: XattrItem) =>
      x.index === 7 && new TextDecoder().decode(x.suffix) === "data" ? 0 : 1;
    return sysData(a) - sysData(b) || xattrItemSize(a) - xattrItemSize(b) || sortKey(a, b);
  });
  for (const it of ordered) {
    const sz = xattrItemSize(it);
    if (sz <= ifree) {
      ibody.push(it);
      ifree -= sz;
    } else if (sz <= bfree) {
      block.push(it);
      bfree -= sz;
    } else return undefined;
  }
  return { ibody, block };
}

/** Write the in-inode xattr area (raw inode bytes, after the extra fields). */
export function writeIbodyXattrs(raw: Uint8Array, extraIsize: number, items: XattrItem[]): void {
  const start = GOOD_OLD_INODE_SIZE + extraIsize;
  if (start + 4 > raw.length) {
    if (items.length) throw new Error("no in-inode xattr space");
    return;
  }
  raw.fill(0, start);
  if (items.length === 0) return;
  setU32(raw, start, XATTR_MAGIC);
  const region = raw.subarray(start + 4);
  layout(region, 0, items, false);
}

/** Fill an xattr block (refcount 1). The caller sets the checksum. */
export function writeXattrBlock(buf: Uint8Array, items: XattrItem[]): void {
  buf.fill(0);
  const sorted = [...items].sort(sortKey);
  const hashes = layout(buf, XATTR_BLOCK_HEADER_SIZE, sorted, true);
  encodeXattrBlockHeader(buf, {
    magic: XATTR_MAGIC,
    refcount: 1,
    blocks: 1,
    hash: xattrBlockHash(hashes),
    checksum: 0,
  });
}

/**
 * Entries from `entriesStart`, values packed down from the end of the region. Value offsets are
 * relative to the region start for in-inode areas (after the magic) and to the block start for blocks.
 */
function layout(region: Uint8Array, entriesStart: number, items: XattrItem[], isBlock: boolean): number[] {
  let eoff = entriesStart;
  let vend = region.length;
  const hashes: number[] = [];
  for (const it of items) {
    const vlen = pad4(it.value.length);
    vend -= vlen;
    region.set(it.value, vend);
    const hash = xattrEntryHash(it.suffix, it.value);
    hashes.push(hash);
    eoff = encodeXattrEntry(region, eoff, {
      nameIndex: it.index,
      nameSuffix: it.suffix,
      valueOffset: it.value.length === 0 ? 0 : vend,
      valueInum: 0,
      valueSize: it.value.length,
      hash,
    });
  }
  if (eoff + 4 > vend) throw new Error("xattr region overflow");
  void isBlock;
  void u32;
  return hashes;
}
