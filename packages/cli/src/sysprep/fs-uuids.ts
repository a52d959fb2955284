/**
 * fs-uuids: a new random UUID for every edited ext2/3/4 and XFS volume, written below the
 * filesystem layer once the editors have synced (CommitOptions.afterSync), the way the tools do it:
 *
 * ext2/3/4 (as tune2fs -U): s_uuid in the primary superblock and in every backup. Checksums seeded
 * from the UUID must stay valid:
 *  - metadata_csum: the old seed is kept in s_checksum_seed and INCOMPAT_CSUM_SEED is set
 *    (tune2fs -U's own choice on a mounted filesystem, kernel ≥ 4.4), so no other checksum changes;
 *    when the seed feature is already on, only the UUID changes. Superblock checksums recomputed.
 *  - gdt_csum / uninit_bg: group descriptor checksums are crc16 over the UUID: every copy of every
 *    descriptor block is rewritten (filesystems with meta_bg are refused).
 * Superblock fields used (offsets in the 1024-byte superblock):
 *   | 0x38 | 2 | s_magic 0xEF53        | 0x60 | 4 | s_feature_incompat (0x2000 CSUM_SEED) |
 *   | 0x5A | 2 | s_block_group_nr      | 0x64 | 4 | s_feature_ro_compat                    |
 *   | 0x68 | 16| s_uuid                | 0x270| 4 | s_checksum_seed | 0x3FC | 4 | s_checksum |
 *
 * XFS (as xfs_admin -U): v5 (crc) keeps the UUID stamped in every metadata block by moving it to
 * sb_meta_uuid and setting INCOMPAT_META_UUID (unless already set), then changes sb_uuid; v4 only
 * changes sb_uuid. Every AG's superblock is rewritten (and its CRC on v5). Fields:
 *   | 32 | 16 | sb_uuid | 216 | 4 | sb_features_incompat (v5; 0x4 META_UUID) |
 *   | 224| 4  | sb_crc (LE) | 248 | 16 | sb_meta_uuid (v5) |
 * The kernel refuses a log whose record headers name another UUID ("empty log check failed"), so
 * every record header in the internal log gets the new h_fs_uuid (offset 304) and its checksum
 * (h_crc, offset 32, LE) recomputed — only after the stored checksum was reproduced from the
 * record as it is (header, extended headers, data), so nothing is rewritten that is not understood.
 * xfs_admin reformats the log instead; rewriting the headers keeps every cycle and LSN as it was.
 */
import { randomBytes } from "node:crypto";
import { type BlockDevice, ImgpatchError } from "@imgpatch/disk";
import {
  checksumSeed,
  gdtBlockCount,
  gdtBlockLocation,
  groupFirstBlock,
  groupHasSuperblock,
  hasIncompat,
  INCOMPAT,
  parseSuperblock,
  primarySuperblockBlock,
  RO_COMPAT,
  type Superblock,
  setGroupDescChecksum,
  setSuperblockChecksum,
} from "@imgpatch/ext4";
import { logRecordCrc, sectorCrc } from "@imgpatch/xfs";
import type { EditedVolume } from "../image/open-guest.js";

/** A volume whose UUID cannot be changed safely (names the device and the structure's offset). */
export class FsUuidError extends ImgpatchError {
  constructor(message: string, file: string, offset?: number) {
    super("EFSUUID", message, { file, offset });
  }
}

export function formatUuid(u: Uint8Array): string {
  const h = Buffer.from(u).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A random (version 4) UUID, as uuidgen makes. */
export function newUuid(): Uint8Array {
  const u = new Uint8Array(randomBytes(16));
  u[6] = (u[6] & 0x0f) | 0x40;
  u[8] = (u[8] & 0x3f) | 0x80;
  return u;
}

const le32 = (b: Uint8Array, o: number) =>
  (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
const setLe32 = (b: Uint8Array, o: number, v: number) => {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
};
const be32 = (b: Uint8Array, o: number) =>
  ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
const setBe32 = (b: Uint8Array, o: number, v: number) => {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
};

/** Sets a new UUID on an ext2/3/4 volume; returns the change line. */
export async function setExt4Uuid(dev: BlockDevice, uuid: Uint8Array = newUuid()): Promise<string> {
  const primary = await dev.read(1024, 1024);
  const sb = parseSuperblock(primary, { file: dev.name, offset: 1024 });
  const oldUuid = sb.uuid.slice();
  const csum = (sb.featureRoCompat & RO_COMPAT.metadata_csum) !== 0;
  const gdtCsum = !csum && (sb.featureRoCompat & RO_COMPAT.gdt_csum) !== 0;
  if (gdtCsum && hasIncompat(sb, INCOMPAT.meta_bg))
    throw new FsUuidError(
      "fs-uuids: gdt_csum with meta_bg is not supported (use tune2fs -U)",
      dev.name,
      1024,
    );
  const seed = checksumSeed(sb);
  const setSeed = csum && !hasIncompat(sb, INCOMPAT.metadata_csum_seed);

  const patch = (raw: Uint8Array) => {
    raw.set(uuid, 0x68);
    if (setSeed) {
      setLe32(raw, 0x60, le32(raw, 0x60) | INCOMPAT.metadata_csum_seed);
      setLe32(raw, 0x270, seed);
    }
    setSuperblockChecksum(raw);
  };
  // Every superblock copy: the primary at byte 1024, backups at the start of their groups.
  const copies: number[] = [1024];
  for (let g = 1; g < sb.groupCount; g++)
    if (groupHasSuperblock(sb, g)) copies.push(groupFirstBlock(sb, g) * sb.blockSize);
  for (const at of copies) {
    const raw = at === 1024 ? primary : await dev.read(at, 1024);
    if (raw[0x38] !== 0x53 || raw[0x39] !== 0xef) continue; // no backup there (resized, damaged): leave it
    patch(raw);
    await dev.write(at, raw);
  }
  if (gdtCsum) await rewriteGroupDescChecksums(dev, sb, uuid, copies);
  return `fs-uuids: ext4 UUID ${formatUuid(oldUuid)} -> ${formatUuid(uuid)}${setSeed ? " (metadata_csum_seed set)" : ""}`;
}

/** gdt_csum: every descriptor's crc16 covers the UUID; rewrites each GDT copy with the new one. */
async function rewriteGroupDescChecksums(
  dev: BlockDevice,
  old: Superblock,
  uuid: Uint8Array,
  sbCopies: readonly number[],
): Promise<void> {
  const sb: Superblock = { ...old, uuid };
  const blocks = gdtBlockCount(sb);
  const primaryBlock = primarySuperblockBlock(sb);
  for (const at of sbCopies) {
    const sbBlock = at === 1024 ? primaryBlock : at / sb.blockSize;
    for (let i = 0; i < blocks; i++) {
      const off = gdtBlockLocation(sb, i, sbBlock) * sb.blockSize;
      const block = await dev.read(off, sb.blockSize);
      const per = sb.blockSize / sb.descSize;
      for (let j = 0; j < per; j++) {
        const g = i * per + j;
        if (g >= sb.groupCount) break;
        const desc = block.subarray(j * sb.descSize, (j + 1) * sb.descSize);
        setGroupDescChecksum(sb, g, desc);
      }
      await dev.write(off, block);
    }
  }
}

const XFS_MAGIC = 0x58465342;
const XFS_INCOMPAT_META_UUID = 1 << 2;

/** Sets a new UUID on an XFS volume (every AG superblock); returns the change line. */
export async function setXfsUuid(dev: BlockDevice, uuid: Uint8Array = newUuid()): Promise<string> {
  const head = await dev.read(0, 512);
  if (be32(head, 0) !== XFS_MAGIC) throw new FsUuidError("fs-uuids: not an XFS superblock", dev.name, 0);
  const blocksize = be32(head, 4);
  const agblocks = be32(head, 84);
  const agcount = be32(head, 88);
  const sectsize = (head[102] << 8) | head[103];
  const v5 = (((head[100] << 8) | head[101]) & 0x000f) === 5;
  if (
    sectsize < 512 ||
    sectsize > 32768 ||
    blocksize < 512 ||
    agcount === 0 ||
    agblocks === 0 ||
    agcount * agblocks * blocksize > dev.size + blocksize * agblocks
  )
    throw new FsUuidError("fs-uuids: implausible XFS geometry", dev.name, 0);
  const oldUuid = head.slice(32, 48);
  const logStart = Number((BigInt(be32(head, 48)) << 32n) | BigInt(be32(head, 52)));
  const logBlocks = be32(head, 96);
  const agblklog = head[124];
  // sb_logstart is an XFS fsblock number: AG number in the high bits, block within the AG below
  const logStartByte =
    (Math.floor(logStart / 2 ** agblklog) * agblocks + (logStart % 2 ** agblklog)) * blocksize;
  const hadMeta = v5 && (be32(head, 216) & XFS_INCOMPAT_META_UUID) !== 0;
  for (let ag = 0; ag < agcount; ag++) {
    const at = ag * agblocks * blocksize;
    if (at + sectsize > dev.size) break;
    const sec = await dev.read(at, sectsize);
    if (be32(sec, 0) !== XFS_MAGIC) continue; // a damaged secondary: xfs_repair's business
    if (v5 && !hadMeta) {
      // the metadata stays stamped with the old UUID: it becomes the meta UUID
      sec.set(oldUuid, 248);
      setBe32(sec, 216, be32(sec, 216) | XFS_INCOMPAT_META_UUID);
    }
    sec.set(uuid, 32);
    if (v5) setLe32(sec, 224, sectorCrc(sec, sectsize, 224));
    await dev.write(at, sec);
  }
  if (logStart !== 0) await rewriteLogUuids(dev, logStartByte, logBlocks * blocksize, oldUuid, uuid);
  return `fs-uuids: xfs UUID ${formatUuid(oldUuid)} -> ${formatUuid(uuid)}${v5 && !hadMeta ? " (meta_uuid keeps the old one)" : ""}`;
}

const XLOG_MAGIC = 0xfeedbabe;
const BB = 512;
const XLOG_HEADER_CYCLE_SIZE = 32 * 1024;

/** Bytes of the log ring scanned at a time (the log itself may be up to 2 GiB). */
const LOG_WINDOW = 4 << 20;

/** Rewrites h_fs_uuid (and h_crc) of every record header of the internal log naming `oldUuid`. */
async function rewriteLogUuids(
  dev: BlockDevice,
  logStartByte: number,
  logBytes: number,
  oldUuid: Uint8Array,
  uuid: Uint8Array,
): Promise<number> {
  if (logStartByte + logBytes > dev.size || logBytes % BB !== 0)
    throw new FsUuidError("fs-uuids: the XFS log lies outside the volume", dev.name, logStartByte);
  /** `len` bytes of the ring from offset `at` (a record may wrap past the end). */
  const readRing = async (at: number, len: number): Promise<Uint8Array> => {
    const out = new Uint8Array(len);
    for (let done = 0; done < len; ) {
      const off = (at + done) % logBytes;
      const n = Math.min(len - done, logBytes - off);
      out.set(await dev.read(logStartByte + off, n), done);
      done += n;
    }
    return out;
  };
  const same = (a: Uint8Array, off: number, b: Uint8Array) => b.every((x, i) => a[off + i] === x);
  let n = 0;
  for (let w = 0; w < logBytes; w += LOG_WINDOW) {
    const win = await dev.read(logStartByte + w, Math.min(LOG_WINDOW, logBytes - w));
    for (let i = 0; i + BB <= win.length; i += BB) {
      if (be32(win, i) !== XLOG_MAGIC || !same(win, i + 304, oldUuid)) continue;
      const at = w + i;
      const version = be32(win, i + 8);
      const len = be32(win, i + 12);
      const size = be32(win, i + 320);
      if (len > 2 << 20 || size > 2 << 20) continue; // not a record header a kernel wrote (iclogs are ≤ 256 KiB)
      const hblks =
        version & 2 && size > XLOG_HEADER_CYCLE_SIZE ? Math.ceil(size / XLOG_HEADER_CYCLE_SIZE) : 1;
      const rec = await readRing(at, hblks * BB + Math.ceil(len / BB) * BB);
      const stored = le32(rec, 32);
      const hsize = [328, 324].find((h) => logRecordCrc(rec, h, hblks, len) === stored);
      rec.set(uuid, 304);
      if (hsize !== undefined) setLe32(rec, 32, logRecordCrc(rec, hsize, hblks, len));
      else if (stored !== 0)
        throw new FsUuidError(
          "fs-uuids: an XFS log record's checksum could not be reproduced; not rewritten (use xfs_admin -U)",
          dev.name,
          logStartByte + at,
        );
      await dev.write(logStartByte + at, rec.subarray(0, BB));
      n++;
    }
  }
  return n;
}

/** The fs-uuids operation over the edited volumes. */
export async function setFilesystemUuids(volumes: readonly EditedVolume[]): Promise<string[]> {
  const out: string[] = [];
  for (const v of volumes) {
    const line = v.type === "xfs" ? await setXfsUuid(v.device) : await setExt4Uuid(v.device);
    out.push(`${v.name}: ${line}`);
  }
  return out;
}
