/**
 * Attribute leaf blocks: a header, an array of entries sorted by hash growing down from the
 * header, and names/values packed from the end of the block towards it.
 *
 * Header v4 (32 bytes):  blkinfo (12, magic 0xfbee) | count be16 | usedbytes be16 |
 *                        firstused be16 | holes u8 | pad u8 | freemap[3] (base be16, size be16)
 * Header v5 (80 bytes):  da3 blkinfo (56, magic 0x3bee) | same fields | pad be32
 * Entry (8 bytes):       | hashval be32 | nameidx be16 | flags u8 | pad u8 |
 * Local name (at nameidx):  | valuelen be16 | namelen u8 | name | value |
 * Remote name:              | valueblk be32 | valuelen be32 | namelen u8 | name |
 */

import type { XfsRawAttr } from "./attr-sf.js";
import { be16, be32 } from "./bytes.js";
import { XfsFormatError, type XfsLocation } from "./errors.js";

export const ATTR_LEAF_MAGIC = 0xfbee;
export const ATTR3_LEAF_MAGIC = 0x3bee;

// Entry flags.
export const ATTR_LOCAL = 1 << 0;
export const ATTR_ROOT = 1 << 1;
export const ATTR_SECURE = 1 << 2;
export const ATTR_PARENT = 1 << 3;
export const ATTR_INCOMPLETE = 1 << 7;
export const ATTR_NSP_MASK = ATTR_ROOT | ATTR_SECURE | ATTR_PARENT;

export interface AttrLeaf {
  forw: number;
  entries: (XfsRawAttr & { hashval: number })[];
}

export function decodeAttrLeaf(b: Uint8Array, v5: boolean, at: XfsLocation): AttrLeaf {
  const hdr = v5 ? 80 : 32;
  const off = v5 ? 56 : 12;
  const count = be16(b, off);
  if (hdr + count * 8 > b.length) throw new XfsFormatError(`attribute leaf holds ${count} entries`, at);
  const entries: AttrLeaf["entries"] = [];
  for (let i = 0; i < count; i++) {
    const e = hdr + i * 8;
    const hashval = be32(b, e);
    const nameidx = be16(b, e + 4);
    const flags = b[e + 6];
    if (flags & ATTR_INCOMPLETE) continue; // an interrupted set: not visible
    if (nameidx < hdr + count * 8 || nameidx >= b.length)
      throw new XfsFormatError(`attribute entry ${i} name index ${nameidx} out of the block`, at);
    if (flags & ATTR_LOCAL) {
      if (nameidx + 3 > b.length) throw new XfsFormatError(`attribute entry ${i} truncated`, at);
      const valuelen = be16(b, nameidx);
      const namelen = b[nameidx + 2];
      const end = nameidx + 3 + namelen + valuelen;
      if (namelen === 0 || end > b.length) throw new XfsFormatError(`attribute entry ${i} is malformed`, at);
      entries.push({
        hashval,
        flags: flags & ATTR_NSP_MASK,
        name: b.slice(nameidx + 3, nameidx + 3 + namelen),
        value: b.slice(nameidx + 3 + namelen, end),
      });
    } else {
      if (nameidx + 9 > b.length) throw new XfsFormatError(`attribute entry ${i} truncated`, at);
      const blk = be32(b, nameidx);
      const len = be32(b, nameidx + 4);
      const namelen = b[nameidx + 8];
      if (namelen === 0 || nameidx + 9 + namelen > b.length)
        throw new XfsFormatError(`attribute entry ${i} is malformed`, at);
      entries.push({
        hashval,
        flags: flags & ATTR_NSP_MASK,
        name: b.slice(nameidx + 9, nameidx + 9 + namelen),
        remote: { blk, len },
      });
    }
  }
  return { forw: be32(b, 0), entries };
}
