/**
 * Remote attribute values: values too large for a leaf live in their own attribute-fork blocks.
 * On v5 every fs block of a value starts with a header, on v4 the blocks hold only value bytes.
 *
 * v5 header (56 bytes): | 0 magic "XARM" | 4 offset be32 (byte offset of this piece in the value) |
 *   | 8 bytes be32 (value bytes in this block) | 12 crc (LE) | 16 uuid | 32 owner be64 |
 *   | 40 blkno be64 (daddr) | 48 lsn be64 |
 */
import { be32, be64, le32 } from "./bytes.js";
import { XfsChecksumError, XfsFormatError, type XfsLocation } from "./errors.js";
import { crcMatches, sectorCrc } from "./sb.js";

export const ATTR3_RMT_MAGIC = 0x5841524d; // "XARM"
export const ATTR3_RMT_HDR_SIZE = 56;
const RMT_CRC_OFFSET = 12;

/** Fs blocks a remote value of `len` bytes occupies. */
export function remoteBlocks(len: number, blockSize: number, v5: boolean): number {
  const per = v5 ? blockSize - ATTR3_RMT_HDR_SIZE : blockSize;
  return Math.max(1, Math.ceil(len / per));
}

/**
 * Reassembles a value from its blocks (`blocks[i]` is the i-th fs block of the value, with the
 * daddr it was read from), checking each v5 header against owner, position and uuid.
 */
export function assembleRemoteValue(
  blocks: { data: Uint8Array; daddr: number }[],
  len: number,
  v5: boolean,
  owner: number,
  uuid: Uint8Array,
  at: XfsLocation,
): Uint8Array {
  const out = new Uint8Array(len);
  let pos = 0;
  for (const { data, daddr } of blocks) {
    if (pos >= len) break;
    if (!v5) {
      const n = Math.min(data.length, len - pos);
      out.set(data.subarray(0, n), pos);
      pos += n;
      continue;
    }
    const loc = { ...at, structure: "remote attribute block" };
    if (be32(data, 0) !== ATTR3_RMT_MAGIC) throw new XfsFormatError("bad remote attribute magic", loc);
    if (!crcMatches(data, data.length, RMT_CRC_OFFSET))
      throw new XfsChecksumError(
        "remote attribute block CRC mismatch",
        le32(data, 12),
        sectorCrc(data, data.length, 12),
        loc,
      );
    const offset = be32(data, 4);
    const bytes = be32(data, 8);
    if (offset !== pos || bytes > data.length - ATTR3_RMT_HDR_SIZE || bytes > len - pos || bytes === 0)
      throw new XfsFormatError("remote attribute block out of sequence", loc);
    if (be64(data, 32) !== owner)
      throw new XfsFormatError("remote attribute block owned by another inode", loc);
    if (be64(data, 40) !== daddr)
      throw new XfsFormatError("remote attribute block records another address", loc);
    for (let i = 0; i < 16; i++)
      if (data[16 + i] !== uuid[i])
        throw new XfsFormatError("remote attribute block has a foreign UUID", loc);
    out.set(data.subarray(ATTR3_RMT_HDR_SIZE, ATTR3_RMT_HDR_SIZE + bytes), pos);
    pos += bytes;
  }
  if (pos < len) throw new XfsFormatError(`remote attribute value short by ${len - pos} bytes`, at);
  return out;
}
