/**
 * Attribute names as Linux shows them: the on-disk namespace flag becomes a prefix
 * (none → "user.", ATTR_ROOT → "trusted.", ATTR_SECURE → "security."), and XFS's own POSIX ACL
 * attributes (trusted "SGI_ACL_FILE" / "SGI_ACL_DEFAULT", big-endian xfs_acl) appear as
 * system.posix_acl_access / system.posix_acl_default in the kernel's xattr format.
 *
 * xfs_acl:     | count be32 | entries: tag be32, id be32, perm be16, pad be16 (12 bytes) |
 * posix xattr: | version le32 = 2 | entries: tag le16, perm le16, id le32 (8 bytes) |
 */

import { ATTR_PARENT, ATTR_ROOT, ATTR_SECURE } from "./attr-leaf.js";
import { be16, be32 } from "./bytes.js";
import { XfsFormatError, type XfsLocation } from "./errors.js";

export const SGI_ACL_FILE = "SGI_ACL_FILE";
export const SGI_ACL_DEFAULT = "SGI_ACL_DEFAULT";
export const POSIX_ACL_ACCESS = "system.posix_acl_access";
export const POSIX_ACL_DEFAULT = "system.posix_acl_default";
const ACL_USER = 0x02;
const ACL_GROUP = 0x08;
const ACL_UNDEFINED_ID = 0xffffffff;
/** Most ACL entries an xfs_acl may hold on v5 (XFS_ACL_MAX_ENTRIES bound used for sanity). */
const ACL_MAX_ENTRIES = 8191;

/** The Linux xattr name of an on-disk attribute, or undefined for namespaces Linux does not show. */
export function linuxAttrName(flags: number, name: Uint8Array): string | undefined {
  const s = Buffer.from(name).toString("latin1");
  if (flags & ATTR_PARENT) return undefined;
  if (flags & ATTR_ROOT) {
    if (s === SGI_ACL_FILE) return POSIX_ACL_ACCESS;
    if (s === SGI_ACL_DEFAULT) return POSIX_ACL_DEFAULT;
    return `trusted.${s}`;
  }
  if (flags & ATTR_SECURE) return `security.${s}`;
  return `user.${s}`;
}

/** Converts an on-disk xfs_acl into the posix_acl xattr bytes the kernel returns. */
export function xfsAclToPosix(v: Uint8Array, at: XfsLocation): Uint8Array {
  if (v.length < 4) throw new XfsFormatError("ACL attribute too short", at);
  const count = be32(v, 0);
  if (count > ACL_MAX_ENTRIES || 4 + count * 12 > v.length)
    throw new XfsFormatError(`ACL attribute claims ${count} entries`, at);
  const out = new Uint8Array(4 + count * 8);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 2, true);
  for (let i = 0; i < count; i++) {
    const p = 4 + i * 12;
    const tag = be32(v, p);
    const id = be32(v, p + 4);
    const perm = be16(v, p + 8);
    const q = 4 + i * 8;
    dv.setUint16(q, tag, true);
    dv.setUint16(q + 2, perm, true);
    dv.setUint32(q + 4, tag === ACL_USER || tag === ACL_GROUP ? id : ACL_UNDEFINED_ID, true);
  }
  return out;
}
