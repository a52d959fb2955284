/**
 * Short-form attributes: all attributes inside the inode's attribute fork (local format).
 * Header: | 0 totsize be16 | 2 count u8 | 3 pad |
 * Entry:  | namelen u8 | valuelen u8 | flags u8 (namespace) | name | value |
 */
import { be16 } from "./bytes.js";
import { XfsFormatError, type XfsLocation } from "./errors.js";

export interface XfsRawAttr {
  /** Namespace flags (ATTR_ROOT = trusted, ATTR_SECURE = security, none = user). */
  flags: number;
  name: Uint8Array;
  /** The value, or undefined for a remote value (see `remote`). */
  value?: Uint8Array;
  remote?: { blk: number; len: number };
}

export function decodeSfAttrs(b: Uint8Array, where: XfsLocation = {}): XfsRawAttr[] {
  const at = { ...where, structure: "short-form attributes" };
  if (b.length < 4) throw new XfsFormatError("short-form attribute fork too small", at);
  const totsize = be16(b, 0);
  const count = b[2];
  if (totsize < 4 || totsize > b.length) throw new XfsFormatError(`short-form attribute size ${totsize}`, at);
  const out: XfsRawAttr[] = [];
  let p = 4;
  for (let i = 0; i < count; i++) {
    if (p + 3 > totsize) throw new XfsFormatError(`attribute ${i} runs past the fork`, at);
    const namelen = b[p];
    const valuelen = b[p + 1];
    const flags = b[p + 2];
    const end = p + 3 + namelen + valuelen;
    if (namelen === 0 || end > totsize) throw new XfsFormatError(`attribute ${i} is malformed`, at);
    out.push({
      flags,
      name: b.slice(p + 3, p + 3 + namelen),
      value: b.slice(p + 3 + namelen, end),
    });
    p = end;
  }
  return out;
}
