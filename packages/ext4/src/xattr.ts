/**
 * Extended attributes: entries in the inode body (after the extra fields, behind a magic) or in
 * one external block (32-byte header, refcount, crc32c). Names are stored as a prefix index plus
 * suffix. Values live in the same region, or (ea_inode feature) in a separate inode.
 */
import { setU16, setU32, u16, u32 } from "./bytes.js";
import { crc32c, crc32cU32 } from "./crc32c.js";

export const XATTR_MAGIC = 0xea020000;
export const XATTR_BLOCK_HEADER_SIZE = 32;
export const XATTR_ENTRY_HEADER = 16;
const BLOCK_CSUM_OFFSET = 0x10;

/** Prefix indexes (e_name_index). */
export const XATTR_PREFIXES: ReadonlyArray<readonly [number, string]> = [
  [1, "user."],
  [2, "system.posix_acl_access"],
  [3, "system.posix_acl_default"],
  [4, "trusted."],
  [6, "security."],
  [7, "system."],
  [8, "system.richacl"],
];

export interface XattrEntry {
  nameIndex: number;
  /** Suffix bytes after the prefix. */
  nameSuffix: Uint8Array;
  /** Full name, prefix included. */
  name: string;
  valueOffset: number;
  valueInum: number;
  valueSize: number;
  hash: number;
  /** Offset of the entry inside the region. */
  offset: number;
}

export interface XattrBlockHeader {
  magic: number;
  refcount: number;
  blocks: number;
  hash: number;
  checksum: number;
}

export function xattrFullName(index: number, suffix: Uint8Array): string | undefined {
  const p = XATTR_PREFIXES.find(([i]) => i === index);
  if (!p) return undefined;
  return p[1] + new TextDecoder().decode(suffix);
}

/** Split a full name into (index, suffix) using the longest matching prefix. */
export function splitXattrName(name: string): { index: number; suffix: Uint8Array } | undefined {
  let best: readonly [number, string] | undefined;
  for (const p of XATTR_PREFIXES) {
    if (name.startsWith(p[1]) && (!best || p[1].length > best[1].length)) best = p;
  }
  if (!best) return undefined;
  // The ACL indexes name the whole attribute; nothing may follow.
  if ((best[0] === 2 || best[0] === 3 || best[0] === 8) && name !== best[1]) return undefined;
  return { index: best[0], suffix: new TextEncoder().encode(name.slice(best[1].length)) };
}

export function xattrEntrySize(nameLen: number): number {
  return (XATTR_ENTRY_HEADER + nameLen + 3) & ~3;
}

export function parseXattrBlockHeader(block: Uint8Array): XattrBlockHeader {
  return {
    magic: u32(block, 0),
    refcount: u32(block, 4),
    blocks: u32(block, 8),
    hash: u32(block, 12),
    checksum: u32(block, 16),
  };
}

export function encodeXattrBlockHeader(block: Uint8Array, h: XattrBlockHeader): void {
  setU32(block, 0, h.magic);
  setU32(block, 4, h.refcount);
  setU32(block, 8, h.blocks);
  setU32(block, 12, h.hash);
  setU32(block, 16, h.checksum);
}

/**
 * Parse the entry list in region[start, end). Value offsets are relative to `valueBase`.
 * Returns the entries and a problem string for the first structural error found (entry or value
 * outside the region, unknown prefix), so callers can raise a typed error naming the location.
 */
export function parseXattrEntries(
  region: Uint8Array,
  start: number,
  end: number,
  valueBase: number,
): { entries: XattrEntry[]; problem?: string } {
  const entries: XattrEntry[] = [];
  let off = start;
  while (off + 4 <= end && u32(region, off) !== 0) {
    if (off + XATTR_ENTRY_HEADER > end) return { entries, problem: `entry at ${off} runs past the end` };
    const nameLen = region[off];
    const nameIndex = region[off + 1];
    const valueOffset = u16(region, off + 2);
    const valueInum = u32(region, off + 4);
    const valueSize = u32(region, off + 8);
    const hash = u32(region, off + 12);
    const size = xattrEntrySize(nameLen);
    if (off + size > end)
      return { entries, problem: `entry at ${off} (name length ${nameLen}) runs past the end` };
    const nameSuffix = region.slice(off + 16, off + 16 + nameLen);
    const name = xattrFullName(nameIndex, nameSuffix);
    if (name === undefined)
      return { entries, problem: `entry at ${off} has unknown name index ${nameIndex}` };
    if (valueInum === 0) {
      const vs = valueBase + valueOffset;
      if (valueSize > 0 && (vs < start || vs + valueSize > end)) {
        return {
          entries,
          problem: `value of ${name} (offset ${valueOffset}, size ${valueSize}) is outside the area`,
        };
      }
    }
    entries.push({ nameIndex, nameSuffix, name, valueOffset, valueInum, valueSize, hash, offset: off });
    off += size;
  }
  return { entries };
}

/** Hash of one entry (name bytes, then value words) as stored in e_hash. */
export function xattrEntryHash(nameSuffix: Uint8Array, value: Uint8Array | undefined): number {
  let h = 0;
  for (let i = 0; i < nameSuffix.length; i++) h = ((h << 5) ^ (h >>> 27) ^ nameSuffix[i]) >>> 0;
  if (value) {
    const words = Math.ceil(value.length / 4);
    for (let w = 0; w < words; w++) {
      let v = 0;
      for (let k = 0; k < 4; k++) {
        const i = w * 4 + k;
        if (i < value.length) v |= value[i] << (8 * k);
      }
      h = ((h << 16) ^ (h >>> 16) ^ (v >>> 0)) >>> 0;
    }
  }
  return h >>> 0;
}

/** Hash of an xattr block: combination of its entries' hashes (0 if any entry hash is 0). */
export function xattrBlockHash(entryHashes: readonly number[]): number {
  let h = 0;
  for (const e of entryHashes) {
    if (e === 0) return 0;
    h = ((h << 16) ^ (h >>> 16) ^ e) >>> 0;
  }
  return h;
}

/** crc32c(fs seed, le64 block number, block with h_checksum zeroed). */
export function xattrBlockChecksum(fsSeed: number, blockNr: number, block: Uint8Array): number {
  let c = crc32cU32(crc32cU32(fsSeed, blockNr >>> 0), Math.floor(blockNr / 0x1_0000_0000) >>> 0);
  c = crc32c(c, block, 0, BLOCK_CSUM_OFFSET);
  c = crc32c(c, ZERO4);
  return crc32c(c, block, BLOCK_CSUM_OFFSET + 4, block.length);
}
const ZERO4 = new Uint8Array(4);

export function setXattrBlockChecksum(fsSeed: number, blockNr: number, block: Uint8Array): void {
  setU32(block, BLOCK_CSUM_OFFSET, xattrBlockChecksum(fsSeed, blockNr, block));
}

/** Write one entry header + name at `off`; returns the offset after it. */
export function encodeXattrEntry(
  region: Uint8Array,
  off: number,
  e: {
    nameIndex: number;
    nameSuffix: Uint8Array;
    valueOffset: number;
    valueInum: number;
    valueSize: number;
    hash: number;
  },
): number {
  region[off] = e.nameSuffix.length;
  region[off + 1] = e.nameIndex;
  setU16(region, off + 2, e.valueOffset);
  setU32(region, off + 4, e.valueInum);
  setU32(region, off + 8, e.valueSize);
  setU32(region, off + 12, e.hash);
  region.set(e.nameSuffix, off + 16);
  return off + xattrEntrySize(e.nameSuffix.length);
}

// ---- POSIX ACLs ----

export const ACL_TAG = {
  userObj: 0x1,
  user: 0x2,
  groupObj: 0x4,
  group: 0x8,
  mask: 0x10,
  other: 0x20,
} as const;

export interface AclEntry {
  tag: number;
  perm: number;
  /** uid/gid for ACL_USER / ACL_GROUP entries. */
  id?: number;
}

/**
 * Decode a POSIX ACL from either the ext4 on-disk form (version 1, short 4-byte entries for the
 * *_OBJ/mask/other tags) or the Linux xattr API form (version 2, 8-byte entries).
 */
export function decodePosixAcl(b: Uint8Array): AclEntry[] {
  if (b.length < 4) throw new RangeError("ACL shorter than its header");
  const version = u32(b, 0);
  const out: AclEntry[] = [];
  if (version === 2) {
    if ((b.length - 4) % 8) throw new RangeError("ACL (xattr form) has a partial entry");
    for (let o = 4; o < b.length; o += 8) {
      const tag = u16(b, o);
      const e: AclEntry = { tag, perm: u16(b, o + 2) };
      if (tag === ACL_TAG.user || tag === ACL_TAG.group) e.id = u32(b, o + 4);
      out.push(e);
    }
    return out;
  }
  if (version !== 1) throw new RangeError(`unknown ACL version ${version}`);
  let o = 4;
  while (o < b.length) {
    if (o + 4 > b.length) throw new RangeError("ACL (disk form) has a partial entry");
    const tag = u16(b, o);
    const perm = u16(b, o + 2);
    if (tag === ACL_TAG.user || tag === ACL_TAG.group) {
      if (o + 8 > b.length) throw new RangeError("ACL (disk form) has a partial entry");
      out.push({ tag, perm, id: u32(b, o + 4) });
      o += 8;
    } else {
      out.push({ tag, perm });
      o += 4;
    }
  }
  return out;
}

/** Encode in the ext4 on-disk form (version 1). */
export function encodePosixAclDisk(entries: readonly AclEntry[]): Uint8Array {
  const size =
    4 + entries.reduce((n, e) => n + (e.tag === ACL_TAG.user || e.tag === ACL_TAG.group ? 8 : 4), 0);
  const b = new Uint8Array(size);
  setU32(b, 0, 1);
  let o = 4;
  for (const e of entries) {
    setU16(b, o, e.tag);
    setU16(b, o + 2, e.perm);
    if (e.tag === ACL_TAG.user || e.tag === ACL_TAG.group) {
      setU32(b, o + 4, e.id ?? 0);
      o += 8;
    } else o += 4;
  }
  return b;
}

/** Encode in the Linux xattr API form (version 2), as getxattr(2) returns it. */
export function encodePosixAclXattr(entries: readonly AclEntry[]): Uint8Array {
  const b = new Uint8Array(4 + 8 * entries.length);
  setU32(b, 0, 2);
  entries.forEach((e, i) => {
    const o = 4 + 8 * i;
    setU16(b, o, e.tag);
    setU16(b, o + 2, e.perm);
    setU32(b, o + 4, e.tag === ACL_TAG.user || e.tag === ACL_TAG.group ? (e.id ?? 0) : 0xffffffff);
  });
  return b;
}

export function isPosixAclName(name: string): boolean {
  return name === "system.posix_acl_access" || name === "system.posix_acl_default";
}

// ---- security.capability ----

export interface FileCapability {
  version: 1 | 2 | 3;
  effective: boolean;
  permitted: bigint;
  inheritable: bigint;
  /** Namespace root uid (version 3 only). */
  rootid?: number;
}

/** Decode a vfs_cap_data value (security.capability). */
export function decodeCapability(b: Uint8Array): FileCapability {
  if (b.length < 4) throw new RangeError("capability value too short");
  const magic = u32(b, 0);
  const rev = magic & 0xff000000;
  const effective = (magic & 1) !== 0;
  if (rev === 0x01000000) {
    if (b.length !== 12) throw new RangeError("capability v1 must be 12 bytes");
    return { version: 1, effective, permitted: BigInt(u32(b, 4)), inheritable: BigInt(u32(b, 8)) };
  }
  const wide = (lo: number, hi: number) => BigInt(lo) | (BigInt(hi) << 32n);
  if (rev === 0x02000000) {
    if (b.length !== 20) throw new RangeError("capability v2 must be 20 bytes");
    return {
      version: 2,
      effective,
      permitted: wide(u32(b, 4), u32(b, 12)),
      inheritable: wide(u32(b, 8), u32(b, 16)),
    };
  }
  if (rev === 0x03000000) {
    if (b.length !== 24) throw new RangeError("capability v3 must be 24 bytes");
    return {
      version: 3,
      effective,
      permitted: wide(u32(b, 4), u32(b, 12)),
      inheritable: wide(u32(b, 8), u32(b, 16)),
      rootid: u32(b, 20),
    };
  }
  throw new RangeError(`unknown capability revision 0x${rev.toString(16)}`);
}

export function encodeCapability(c: FileCapability): Uint8Array {
  const size = c.version === 1 ? 12 : c.version === 2 ? 20 : 24;
  const b = new Uint8Array(size);
  setU32(b, 0, (c.version << 24) | (c.effective ? 1 : 0));
  const lo = (v: bigint) => Number(v & 0xffffffffn);
  const hi = (v: bigint) => Number((v >> 32n) & 0xffffffffn);
  setU32(b, 4, lo(c.permitted));
  setU32(b, 8, lo(c.inheritable));
  if (c.version >= 2) {
    setU32(b, 12, hi(c.permitted));
    setU32(b, 16, hi(c.inheritable));
  }
  if (c.version === 3) setU32(b, 20, c.rootid ?? 0);
  return b;
}
