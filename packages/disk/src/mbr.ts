import type { BlockDevice } from "./block-device.js";
import { ByteView } from "./bytes.js";
import { FormatError, PartitionRangeError } from "./errors.js";
import { type ParseContext, type Partition, problem } from "./partition.js";
import { MBR_EXTENDED_TYPES, mbrTypeName } from "./partition-types.js";

/** Layout of sector 0 (the MBR) and of every extended boot record (EBR). */
export const MBR_LAYOUT = {
  diskSignature: 0x1b8, // u32le, shown by Linux as the disk id and used in MBR PARTUUIDs
  entries: 0x1be, // four 16-byte partition entries
  entrySize: 16,
  bootSignature: 0x1fe, // bytes 0x55 0xaa
  size: 512,
} as const;

/** One 16-byte partition entry (offsets relative to the entry). */
export const MBR_ENTRY = {
  status: 0x00, // u8: 0x80 active/bootable, 0x00 inactive; anything else means "not a table"
  type: 0x04, // u8 partition type id (CHS fields at 0x01 and 0x05 are ignored: LBA is authoritative)
  lbaStart: 0x08, // u32le, in sectors (relative, for EBR entries)
  sectors: 0x0c, // u32le, length in sectors
} as const;

/** Linux stops at 256 partitions per disk; a longer EBR chain is garbage or an attack. */
export const MAX_LOGICAL_PARTITIONS = 256;

export interface MbrEntry {
  slot: number;
  status: number;
  type: number;
  lbaStart: number;
  sectors: number;
  /** Offset of the entry inside the sector. */
  offset: number;
}

export interface MbrSector {
  diskSignature: number;
  entries: MbrEntry[];
  /** The sector also looks like a FAT/NTFS/exFAT volume boot record (jump + BIOS parameter block). */
  volumeBootRecord: boolean;
}

/** Parse a 512-byte boot record. Returns null when it has no 0x55AA signature. */
export function parseMbrSector(sector: Uint8Array): MbrSector | null {
  if (sector.length < MBR_LAYOUT.size) return null;
  const v = new ByteView(sector);
  if (v.u8(MBR_LAYOUT.bootSignature) !== 0x55 || v.u8(MBR_LAYOUT.bootSignature + 1) !== 0xaa) return null;
  const entries: MbrEntry[] = [];
  for (let slot = 0; slot < 4; slot++) {
    const off = MBR_LAYOUT.entries + slot * MBR_LAYOUT.entrySize;
    entries.push({
      slot,
      status: v.u8(off + MBR_ENTRY.status),
      type: v.u8(off + MBR_ENTRY.type),
      lbaStart: v.u32(off + MBR_ENTRY.lbaStart),
      sectors: v.u32(off + MBR_ENTRY.sectors),
      offset: off,
    });
  }
  return { diskSignature: v.u32(MBR_LAYOUT.diskSignature), entries, volumeBootRecord: isVolumeBootRecord(v) };
}

/** x86 jump at byte 0 followed by a plausible BIOS parameter block or an NTFS/exFAT OEM id. */
function isVolumeBootRecord(v: ByteView): boolean {
  const jump = (v.u8(0) === 0xeb && v.u8(2) === 0x90) || v.u8(0) === 0xe9;
  if (!jump) return false;
  if (v.has(3, "NTFS    ") || v.has(3, "EXFAT   ")) return true;
  const bytesPerSector = v.u16(11);
  const sectorsPerCluster = v.u8(13);
  const reserved = v.u16(14);
  const fats = v.u8(16);
  return (
    [512, 1024, 2048, 4096].includes(bytesPerSector) &&
    sectorsPerCluster > 0 &&
    (sectorsPerCluster & (sectorsPerCluster - 1)) === 0 &&
    reserved > 0 &&
    fats >= 1 &&
    fats <= 4
  );
}

/** An entry describes something (Linux ignores entries of type 0 or with zero length). */
export function isUsedEntry(e: MbrEntry): boolean {
  return e.type !== 0 && e.sectors !== 0;
}

/**
 * Whether the four status bytes are valid (0x00 or 0x80). A FAT/NTFS boot sector also ends in
 * 0x55AA but has boot code there, which almost never passes this test — Linux uses the same rule.
 */
export function hasValidStatusBytes(mbr: MbrSector): boolean {
  return mbr.entries.every((e) => e.status === 0 || e.status === 0x80);
}

export function mbrPartUuid(diskSignature: number, number: number): string {
  return `${diskSignature.toString(16).padStart(8, "0")}-${number.toString(16).padStart(2, "0")}`;
}

function typeString(type: number): string {
  return `0x${type.toString(16).padStart(2, "0")}`;
}

export function mbrPartition(
  e: MbrEntry,
  number: number,
  kind: Partition["kind"],
  baseLba: number,
  sectorSize: number,
  diskSignature: number,
  sectorOffset: number,
): Partition {
  const p: Partition = {
    number,
    kind,
    start: (baseLba + e.lbaStart) * sectorSize,
    size: e.sectors * sectorSize,
    type: typeString(e.type),
    name: "",
    uuid: mbrPartUuid(diskSignature, number),
    bootable: e.status === 0x80,
    entryOffset: sectorOffset + e.offset,
  };
  const typeName = mbrTypeName(e.type);
  if (typeName !== undefined) p.typeName = typeName;
  return p;
}

/**
 * Read a DOS partition table: the four primary slots and, for an extended partition, the chain
 * of EBRs. The chain is walked with a visited set and a length bound, so a looping or endless
 * chain ends in an error (strict) or a warning (lenient), never a hang.
 */
export async function readMbrPartitions(
  device: BlockDevice,
  mbr: MbrSector,
  sectorSize: number,
  ctx: ParseContext,
): Promise<Partition[]> {
  const diskSectors = Math.floor(device.size / sectorSize);
  const parts: Partition[] = [];
  let extended: { entry: MbrEntry; number: number } | undefined;
  for (const e of mbr.entries) {
    if (!isUsedEntry(e)) continue;
    const number = e.slot + 1;
    const isExt = MBR_EXTENDED_TYPES.has(e.type);
    parts.push(mbrPartition(e, number, isExt ? "extended" : "primary", 0, sectorSize, mbr.diskSignature, 0));
    if (isExt) {
      if (extended) {
        problem(
          ctx,
          new FormatError(`more than one extended partition (slots ${extended.number} and ${number})`, {
            file: ctx.file,
            offset: e.offset,
          }),
        );
        continue;
      }
      extended = { entry: e, number };
    }
  }
  if (extended) {
    const ext = extended.entry;
    // A container starting outside the disk is reported by the range check; there is no chain to walk.
    if (ext.lbaStart >= diskSectors) return parts;
    parts.push(...(await readLogicalPartitions(device, ext, sectorSize, mbr.diskSignature, ctx)));
  }
  return parts;
}

async function readLogicalPartitions(
  device: BlockDevice,
  ext: MbrEntry,
  sectorSize: number,
  diskSignature: number,
  ctx: ParseContext,
): Promise<Partition[]> {
  const out: Partition[] = [];
  const extStart = ext.lbaStart;
  const extEnd = Math.min(ext.lbaStart + ext.sectors, Math.floor(device.size / sectorSize));
  const visited = new Set<number>();
  const buf = new Uint8Array(MBR_LAYOUT.size);
  let ebrLba = extStart;
  let next = 5;
  for (let steps = 0; ; steps++) {
    const where = { file: ctx.file, offset: ebrLba * sectorSize };
    if (steps >= MAX_LOGICAL_PARTITIONS) {
      problem(
        ctx,
        new FormatError(`extended partition chain longer than ${MAX_LOGICAL_PARTITIONS} links`, where),
      );
      break;
    }
    if (visited.has(ebrLba)) {
      problem(ctx, new FormatError(`extended partition chain loops back to the EBR at LBA ${ebrLba}`, where));
      break;
    }
    visited.add(ebrLba);
    if (ebrLba < extStart || ebrLba >= extEnd) {
      problem(
        ctx,
        new FormatError(
          `extended boot record at LBA ${ebrLba} lies outside the extended partition (LBA ${extStart}-${extEnd - 1})`,
          where,
        ),
      );
      break;
    }
    await device.readInto(ebrLba * sectorSize, buf);
    const ebr = parseMbrSector(buf);
    if (!ebr) {
      // An extended partition with no logical partitions often has a zeroed first EBR.
      if (!(steps === 0 && new ByteView(buf).isZero())) {
        problem(ctx, new FormatError("extended boot record has no 0x55AA signature", where));
      }
      break;
    }
    let link: MbrEntry | undefined;
    for (const e of ebr.entries) {
      if (!isUsedEntry(e)) continue;
      if (MBR_EXTENDED_TYPES.has(e.type)) {
        link ??= e;
        continue;
      }
      const p = mbrPartition(e, next, "logical", ebrLba, sectorSize, diskSignature, ebrLba * sectorSize);
      const endLba = ebrLba + e.lbaStart + e.sectors;
      if (e.lbaStart === 0) {
        problem(
          ctx,
          new PartitionRangeError(
            next,
            `logical partition starts on its own extended boot record (LBA ${ebrLba})`,
            {
              file: ctx.file,
              offset: p.entryOffset,
            },
          ),
        );
      } else if (endLba > ext.lbaStart + ext.sectors) {
        problem(
          ctx,
          new PartitionRangeError(
            next,
            `logical partition (LBA ${ebrLba + e.lbaStart}-${endLba - 1}) ends past its extended partition (LBA ${extStart}-${ext.lbaStart + ext.sectors - 1})`,
            { file: ctx.file, offset: p.entryOffset },
          ),
        );
      }
      out.push(p);
      next++;
    }
    if (!link) break;
    ebrLba = extStart + link.lbaStart;
  }
  return out;
}
