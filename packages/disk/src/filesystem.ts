import type { BlockDevice } from "./block-device.js";
import { ByteView } from "./bytes.js";
import { formatUuid } from "./guid.js";

/** Filesystem (and other volume content) types, named as blkid names them. */
export type FilesystemType =
  | "ext2"
  | "ext3"
  | "ext4"
  | "jbd"
  | "xfs"
  | "btrfs"
  | "vfat"
  | "exfat"
  | "ntfs"
  | "f2fs"
  | "swap"
  | "LVM2_member"
  | "crypto_LUKS"
  | "iso9660"
  | "squashfs";

export interface FilesystemInfo {
  type: FilesystemType;
  /** Whether imgpatch can edit it (ext2, ext3, ext4, XFS). */
  supported: boolean;
  /** Human-readable, e.g. "ext4 filesystem", "LVM2 physical volume". */
  description: string;
  label?: string;
  uuid?: string;
  /** blkid-style version: "FAT16", "1" (swap/LUKS), "LVM2 001", "1.0" (ext rev.minor)... */
  version?: string;
  /** Byte offset (inside the volume) of the superblock or magic that identified it. */
  offset: number;
}

/** ext2/3/4 superblock, 1024 bytes into the volume; offsets relative to the superblock. */
export const EXT_SUPERBLOCK = {
  offset: 1024,
  magic: 0x38, // u16le 0xEF53
  minorRevLevel: 0x3e, // u16le
  revLevel: 0x4c, // u32le
  featureCompat: 0x5c, // u32le
  featureIncompat: 0x60, // u32le
  featureRoCompat: 0x64, // u32le
  uuid: 0x68, // 16 bytes
  volumeName: 0x78, // 16 bytes
} as const;

const EXT_MAGIC = 0xef53;
const EXT_COMPAT_HAS_JOURNAL = 0x4;
const EXT_INCOMPAT_FILETYPE = 0x2;
const EXT_INCOMPAT_RECOVER = 0x4;
const EXT_INCOMPAT_JOURNAL_DEV = 0x8;
const EXT_INCOMPAT_META_BG = 0x10;
const EXT_RO_COMPAT_SPARSE_SUPER = 0x1;
const EXT_RO_COMPAT_LARGE_FILE = 0x2;
const EXT_RO_COMPAT_BTREE_DIR = 0x4;
/** Feature sets an ext2 / ext3 driver understands; anything beyond makes it ext4. */
const EXT2_INCOMPAT = EXT_INCOMPAT_FILETYPE | EXT_INCOMPAT_META_BG;
const EXT3_INCOMPAT = EXT2_INCOMPAT | EXT_INCOMPAT_RECOVER;
const EXT23_RO_COMPAT = EXT_RO_COMPAT_SPARSE_SUPER | EXT_RO_COMPAT_LARGE_FILE | EXT_RO_COMPAT_BTREE_DIR;

/** XFS superblock at 0 (big-endian). */
export const XFS_SUPERBLOCK = {
  magic: "XFSB",
  uuid: 32,
  versionNum: 100,
  fname: 108,
  fnameSize: 12,
} as const;

/** btrfs superblock, 64 KiB into the volume. */
export const BTRFS_SUPERBLOCK = {
  offset: 0x10000,
  fsid: 0x20,
  magic: 0x40,
  label: 0x12b,
  labelSize: 256,
} as const;
const BTRFS_MAGIC = "_BHRfS_M";

/** Linux swap: signature in the last 10 bytes of the first page; v1 header after 1 KiB of boot bits. */
export const SWAP_HEADER = { version: 1024, uuid: 1036, volumeName: 1052, volumeNameSize: 16 } as const;
const SWAP_PAGE_SIZES = [4096, 8192, 16384, 32768, 65536];

/** LVM2 label: "LABELONE" at the start of one of the first four 512-byte sectors. */
export const LVM2_LABEL = { id: 0, offsetXl: 20, type: 24, sectors: 4, pvUuidLen: 32 } as const;

/** LUKS1/LUKS2 binary header (both keep the UUID at 168). */
export const LUKS_HEADER = {
  magic: "LUKS\xba\xbe",
  version: 6,
  label: 24,
  labelSize: 48,
  uuid: 168,
  uuidSize: 40,
};

/** ISO 9660 primary volume descriptor at sector 16 (2048-byte sectors). */
export const ISO_PVD = {
  offset: 0x8000,
  type: 0,
  id: 1,
  volumeId: 40,
  volumeIdSize: 32,
  created: 813,
} as const;

/** FAT boot sector / BIOS parameter block. */
export const FAT_BPB = {
  bytesPerSector: 11, // u16le
  sectorsPerCluster: 13, // u8
  reservedSectors: 14, // u16le
  fatCount: 16, // u8
  rootEntries: 17, // u16le (0 on FAT32)
  totalSectors16: 19, // u16le
  media: 21, // u8
  fatSize16: 22, // u16le (0 on FAT32)
  totalSectors32: 32, // u32le
  fatSize32: 36, // u32le (FAT32 only)
  ext16: 36, // FAT12/16 extended BPB: bootSig +2, volumeId +3, label +7 (11 bytes)
  ext32: 64, // FAT32 extended BPB, same layout
} as const;

/** How much of the start of a volume detection looks at: up to the btrfs superblock. */
export const PROBE_BYTES = BTRFS_SUPERBLOCK.offset + 0x1000;

/**
 * Identify what a volume (a partition or a whole device) holds, from its superblock. Returns null
 * when nothing known is found. Reads the first 68 KiB once. Label and UUID are filled in when they
 * sit in the superblock (blkid's values, formatted the same way).
 */
export async function detectFilesystem(device: BlockDevice): Promise<FilesystemInfo | null> {
  const v = new ByteView(await device.read(0, Math.min(PROBE_BYTES, device.size)));
  return (
    probeLuks(v) ??
    probeLvm2(v) ??
    probeXfs(v) ??
    probeExt(v) ??
    probeBtrfs(v) ??
    probeSwap(v) ??
    probeIso9660(v) ??
    probeSquashfs(v) ??
    probeF2fs(v) ??
    probeNtfsExfat(v) ??
    probeFat(v)
  );
}

function withOptional(
  info: FilesystemInfo,
  extra: { label?: string; uuid?: string; version?: string },
): FilesystemInfo {
  if (extra.label) info.label = extra.label;
  if (extra.uuid) info.uuid = extra.uuid;
  if (extra.version) info.version = extra.version;
  return info;
}

function probeExt(v: ByteView): FilesystemInfo | null {
  const sb = EXT_SUPERBLOCK.offset;
  if (v.length < sb + 0x100 || v.u16(sb + EXT_SUPERBLOCK.magic) !== EXT_MAGIC) return null;
  const compat = v.u32(sb + EXT_SUPERBLOCK.featureCompat);
  const incompat = v.u32(sb + EXT_SUPERBLOCK.featureIncompat);
  const roCompat = v.u32(sb + EXT_SUPERBLOCK.featureRoCompat);
  const journal = (compat & EXT_COMPAT_HAS_JOURNAL) !== 0;
  let type: FilesystemType;
  if (incompat & EXT_INCOMPAT_JOURNAL_DEV) type = "jbd";
  else if (!journal && (incompat & ~EXT2_INCOMPAT) === 0 && (roCompat & ~EXT23_RO_COMPAT) === 0)
    type = "ext2";
  else if (journal && (incompat & ~EXT3_INCOMPAT) === 0 && (roCompat & ~EXT23_RO_COMPAT) === 0) type = "ext3";
  else type = "ext4";
  const uuid = formatUuid(v.bytes, sb + EXT_SUPERBLOCK.uuid);
  return withOptional(
    {
      type,
      supported: type !== "jbd",
      description: type === "jbd" ? "external ext3/ext4 journal device" : `${type} filesystem`,
      offset: sb,
    },
    {
      label: v.utf8(sb + EXT_SUPERBLOCK.volumeName, 16),
      uuid: uuid === "00000000-0000-0000-0000-000000000000" ? undefined : uuid,
      version: `${v.u32(sb + EXT_SUPERBLOCK.revLevel)}.${v.u16(sb + EXT_SUPERBLOCK.minorRevLevel)}`,
    },
  );
}

function probeXfs(v: ByteView): FilesystemInfo | null {
  if (!v.has(0, XFS_SUPERBLOCK.magic) || v.length < 512) return null;
  return withOptional(
    { type: "xfs", supported: true, description: "XFS filesystem", offset: 0 },
    {
      uuid: formatUuid(v.bytes, XFS_SUPERBLOCK.uuid),
      label: v.text(XFS_SUPERBLOCK.fname, XFS_SUPERBLOCK.fnameSize, { trimSpaces: false }),
    },
  );
}

function probeBtrfs(v: ByteView): FilesystemInfo | null {
  const sb = BTRFS_SUPERBLOCK.offset;
  if (!v.has(sb + BTRFS_SUPERBLOCK.magic, BTRFS_MAGIC) || v.length < sb + 0x1000) return null;
  return withOptional(
    { type: "btrfs", supported: false, description: "btrfs filesystem", offset: sb },
    {
      uuid: formatUuid(v.bytes, sb + BTRFS_SUPERBLOCK.fsid),
      label: v.utf8(sb + BTRFS_SUPERBLOCK.label, BTRFS_SUPERBLOCK.labelSize),
    },
  );
}

function probeSwap(v: ByteView): FilesystemInfo | null {
  for (const ps of SWAP_PAGE_SIZES) {
    const v1 = v.has(ps - 10, "SWAPSPACE2");
    if (!v1 && !v.has(ps - 10, "SWAP-SPACE")) continue;
    const info: FilesystemInfo = {
      type: "swap",
      supported: false,
      description: "Linux swap space",
      offset: ps - 10,
    };
    if (!v1) return withOptional(info, { version: "0" });
    const uuid = formatUuid(v.bytes, SWAP_HEADER.uuid);
    return withOptional(info, {
      version: String(v.u32(SWAP_HEADER.version)),
      uuid: uuid === "00000000-0000-0000-0000-000000000000" ? undefined : uuid,
      label: v.utf8(SWAP_HEADER.volumeName, SWAP_HEADER.volumeNameSize),
    });
  }
  return null;
}

function probeLvm2(v: ByteView): FilesystemInfo | null {
  for (let s = 0; s < LVM2_LABEL.sectors; s++) {
    const base = s * 512;
    if (!v.has(base, "LABELONE") || !v.has(base + LVM2_LABEL.type, "LVM2 001")) continue;
    const pvOff = base + v.u32(base + LVM2_LABEL.offsetXl);
    const raw = pvOff + LVM2_LABEL.pvUuidLen <= v.length ? v.text(pvOff, LVM2_LABEL.pvUuidLen) : "";
    // blkid groups the 32 characters 6-4-4-4-4-4-6.
    const groups = [6, 4, 4, 4, 4, 4, 6];
    let uuid = "";
    let i = 0;
    for (const g of groups) {
      uuid += (uuid ? "-" : "") + raw.slice(i, i + g);
      i += g;
    }
    return withOptional(
      { type: "LVM2_member", supported: false, description: "LVM2 physical volume", offset: base },
      { uuid: raw.length === 32 ? uuid : undefined, version: "LVM2 001" },
    );
  }
  return null;
}

function probeLuks(v: ByteView): FilesystemInfo | null {
  if (!v.has(0, LUKS_HEADER.magic) || v.length < 512) return null;
  const version = v.u16be(LUKS_HEADER.version);
  return withOptional(
    { type: "crypto_LUKS", supported: false, description: `LUKS${version} encrypted volume`, offset: 0 },
    {
      version: String(version),
      uuid: v.text(LUKS_HEADER.uuid, LUKS_HEADER.uuidSize),
      label: version === 2 ? v.utf8(LUKS_HEADER.label, LUKS_HEADER.labelSize) : undefined,
    },
  );
}

function probeIso9660(v: ByteView): FilesystemInfo | null {
  const pvd = ISO_PVD.offset;
  if (v.length < pvd + 2048 || v.u8(pvd + ISO_PVD.type) !== 1 || !v.has(pvd + ISO_PVD.id, "CD001"))
    return null;
  // blkid derives the UUID from the creation date-time "YYYYMMDDHHMMSScc".
  const d = v.text(pvd + ISO_PVD.created, 16);
  const uuid =
    /^\d{16}$/.test(d) && d !== "0000000000000000"
      ? [
          d.slice(0, 4),
          d.slice(4, 6),
          d.slice(6, 8),
          d.slice(8, 10),
          d.slice(10, 12),
          d.slice(12, 14),
          d.slice(14, 16),
        ].join("-")
      : undefined;
  return withOptional(
    { type: "iso9660", supported: false, description: "ISO 9660 filesystem", offset: pvd },
    { label: v.text(pvd + ISO_PVD.volumeId, ISO_PVD.volumeIdSize), uuid },
  );
}

function probeSquashfs(v: ByteView): FilesystemInfo | null {
  if (!v.has(0, "hsqs") || v.length < 96) return null;
  return withOptional(
    { type: "squashfs", supported: false, description: "SquashFS filesystem", offset: 0 },
    { version: `${v.u16(28)}.${v.u16(30)}` },
  );
}

function probeF2fs(v: ByteView): FilesystemInfo | null {
  if (v.length < 1028 || v.u32(1024) !== 0xf2f52010) return null;
  return { type: "f2fs", supported: false, description: "F2FS filesystem", offset: 1024 };
}

function probeNtfsExfat(v: ByteView): FilesystemInfo | null {
  if (v.has(3, "NTFS    "))
    return { type: "ntfs", supported: false, description: "NTFS filesystem", offset: 3 };
  if (v.has(3, "EXFAT   "))
    return { type: "exfat", supported: false, description: "exFAT filesystem", offset: 3 };
  return null;
}

function probeFat(v: ByteView): FilesystemInfo | null {
  if (v.length < 512) return null;
  const jump = v.u8(0) === 0xeb || v.u8(0) === 0xe9;
  const bps = v.u16(FAT_BPB.bytesPerSector);
  const spc = v.u8(FAT_BPB.sectorsPerCluster);
  const reserved = v.u16(FAT_BPB.reservedSectors);
  const fats = v.u8(FAT_BPB.fatCount);
  const media = v.u8(FAT_BPB.media);
  if (!jump || ![512, 1024, 2048, 4096].includes(bps) || spc === 0 || (spc & (spc - 1)) !== 0) return null;
  if (reserved === 0 || fats === 0 || fats > 4 || (media !== 0xf0 && media < 0xf8)) return null;
  const fatSize = v.u16(FAT_BPB.fatSize16) || v.u32(FAT_BPB.fatSize32);
  const total = v.u16(FAT_BPB.totalSectors16) || v.u32(FAT_BPB.totalSectors32);
  const rootSectors = Math.ceil((v.u16(FAT_BPB.rootEntries) * 32) / bps);
  const dataSectors = total - (reserved + fats * fatSize + rootSectors);
  if (fatSize === 0 || total === 0 || dataSectors <= 0) return null;
  const clusters = Math.floor(dataSectors / spc);
  const version = clusters < 4085 ? "FAT12" : clusters < 65525 ? "FAT16" : "FAT32";
  const ext = v.u16(FAT_BPB.fatSize16) === 0 ? FAT_BPB.ext32 : FAT_BPB.ext16;
  let uuid: string | undefined;
  let label: string | undefined;
  if (v.u8(ext + 2) === 0x29 || v.u8(ext + 2) === 0x28) {
    const id = v
      .u32(ext + 3)
      .toString(16)
      .toUpperCase()
      .padStart(8, "0");
    uuid = `${id.slice(0, 4)}-${id.slice(4)}`;
    if (v.u8(ext + 2) === 0x29) {
      label = v.text(ext + 7, 11);
      if (label === "NO NAME") label = undefined;
    }
  }
  return withOptional(
    { type: "vfat", supported: false, description: `${version} filesystem`, offset: 0 },
    {
      uuid,
      label,
      version,
    },
  );
}
