import type { ImgpatchError } from "./errors.js";

/** How a partition is described by its table. */
export type PartitionKind = "primary" | "extended" | "logical" | "gpt";

export interface Partition {
  /** The number Linux gives it: MBR primaries 1-4 by slot, logicals from 5; GPT by entry index + 1. */
  number: number;
  kind: PartitionKind;
  /** Byte offset of the partition on the disk. */
  start: number;
  /** Size in bytes. */
  size: number;
  /** MBR: type byte as "0x83"; GPT: type GUID, lowercase. */
  type: string;
  /** Friendly name of the type ("Linux filesystem", "EFI System"...), when it is a well-known one. */
  typeName?: string;
  /** GPT partition name (UTF-16 in the entry); "" for MBR. */
  name: string;
  /** PARTUUID as Linux shows it: the GPT unique GUID, or `<disk signature>-<nn>` for MBR. */
  uuid: string;
  /** MBR: status byte 0x80; GPT: attribute bit 2 "legacy BIOS bootable". */
  bootable: boolean;
  /** GPT attribute bits (bit 0 required, 1 no block-IO protocol, 2 legacy BIOS bootable, 48-63 type specific). */
  attributes?: bigint;
  /** Byte offset of the table entry that describes it (for diagnostics). */
  entryOffset: number;
}

export interface GptInfo {
  /** LBA of the header that was used (1 normally; the last LBA when the backup was used). */
  headerLba: number;
  /** LBA the used header names for the other copy. */
  alternateLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  revision: number;
  /** True when the primary header or its entries were unusable and the backup copy was read instead. */
  usedBackup: boolean;
}

export interface ProtectiveMbrInfo {
  /** "protective": only the 0xEE entry; "hybrid": other MBR entries alongside it (for BIOS-only OSes). */
  kind: "protective" | "hybrid";
  /** The non-0xEE entries of a hybrid MBR, numbered by MBR slot (1-4). Empty for a protective MBR. */
  partitions: Partition[];
}

export interface PartitionTable {
  type: "mbr" | "gpt";
  /** Logical sector size the table was read with (LBAs in the table are in these units). */
  sectorSize: number;
  /** GPT disk GUID (lowercase) or MBR disk signature as 8 hex digits. */
  diskId: string;
  /** Usable partitions (plus the MBR extended container, kind "extended"), sorted by number. */
  partitions: Partition[];
  /** Non-fatal problems: backup GPT used, backup missing, lenient-mode range/overlap findings... */
  warnings: string[];
  gpt?: GptInfo;
  /** For GPT disks: what the MBR in sector 0 looks like. */
  protectiveMbr?: ProtectiveMbrInfo;
}

export interface ReadPartitionTableOptions {
  /**
   * Logical sector size. Default: the device's sectorSize for MBR; for GPT the header is looked
   * for at the device's sector size first, then at 512 and 4096, and the size where it is found wins.
   */
  sectorSize?: number;
  /**
   * Lenient mode: partitions that overlap, reach past the disk or the table's usable area, and
   * broken extended-partition chains become `warnings` instead of errors (partitions that reach
   * past the disk are still listed, and openPartition refuses them). Checksum failures of both
   * GPT copies and malformed headers are always errors. Default false (strict).
   */
  lenient?: boolean;
}

/** Shared state while parsing one table. */
export interface ParseContext {
  file: string;
  lenient: boolean;
  warnings: string[];
}

/** In strict mode throw the error; in lenient mode record its message as a warning. */
export function problem(ctx: ParseContext, err: ImgpatchError): void {
  if (!ctx.lenient) throw err;
  ctx.warnings.push(err.message);
}
