import type { BlockDevice } from "./block-device.js";
import {
  FormatError,
  PartitionNotFoundError,
  PartitionOverlapError,
  PartitionRangeError,
  UnsupportedError,
} from "./errors.js";
import { gptPartitions, hasGptSignature, readGpt } from "./gpt.js";
import {
  hasValidStatusBytes,
  isUsedEntry,
  MBR_LAYOUT,
  type MbrSector,
  mbrPartition,
  parseMbrSector,
  readMbrPartitions,
} from "./mbr.js";
import {
  type ParseContext,
  type Partition,
  type PartitionTable,
  type ProtectiveMbrInfo,
  problem,
  type ReadPartitionTableOptions,
} from "./partition.js";
import { MBR_GPT_PROTECTIVE } from "./partition-types.js";
import { RangeDevice } from "./range-device.js";

/**
 * Read the partition table of a whole-disk device.
 *
 * Returns null when the device has no partition table (for example a bare filesystem, or a FAT
 * boot sector whose 0x55AA is not an MBR). Follows Linux: a GPT is used when sector 0 holds a
 * protective or hybrid MBR (an 0xEE entry); a GPT header without one is still read, with a warning.
 * Malformed tables throw FormatError/ChecksumError/PartitionRangeError/PartitionOverlapError
 * naming the byte offset; see `ReadPartitionTableOptions.lenient` for what becomes a warning.
 */
export async function readPartitionTable(
  device: BlockDevice,
  options: ReadPartitionTableOptions = {},
): Promise<PartitionTable | null> {
  const ctx: ParseContext = { file: device.name, lenient: options.lenient ?? false, warnings: [] };
  if (options.sectorSize !== undefined && !isValidSectorSize(options.sectorSize)) {
    throw new RangeError(`invalid sector size ${options.sectorSize}`);
  }
  if (device.size < MBR_LAYOUT.size) return null;
  const mbr = parseMbrSector(await device.read(0, MBR_LAYOUT.size));
  const hasPmbr = mbr?.entries.some((e) => e.type === MBR_GPT_PROTECTIVE && isUsedEntry(e)) ?? false;
  const sizes = options.sectorSize
    ? [options.sectorSize]
    : [...new Set([device.sectorSize, 512, 4096])].filter(isValidSectorSize);

  if (hasPmbr) return readGptTable(device, mbr!, sizes, ctx);

  const mbrSize = options.sectorSize ?? device.sectorSize;
  const isMbr = mbr !== null && hasValidStatusBytes(mbr) && !isBareBootSector(mbr);
  if (isMbr) {
    if (await hasGptSignature(device, 1, mbrSize)) {
      ctx.warnings.push(
        "a GPT header at LBA 1 is ignored: the MBR has no 0xEE protective entry (as Linux does)",
      );
    }
    return readMbrTable(device, mbr, mbrSize, ctx);
  }
  for (const ss of sizes) {
    if (await hasGptSignature(device, 1, ss)) {
      ctx.warnings.push("GPT without a protective MBR in sector 0");
      return readGptTable(device, null, [ss], ctx);
    }
  }
  return null;
}

function isValidSectorSize(n: number): boolean {
  return Number.isInteger(n) && n >= 512 && n <= 65536 && (n & (n - 1)) === 0;
}

/**
 * A FAT/NTFS/exFAT volume boot record (a "superfloppy": filesystem with no partition table) also
 * ends in 0x55AA. When such a sector has no partition entries at all, it is not an MBR.
 */
function isBareBootSector(mbr: MbrSector): boolean {
  return mbr.volumeBootRecord && mbr.entries.every((e) => !isUsedEntry(e));
}

async function readMbrTable(
  device: BlockDevice,
  mbr: MbrSector,
  sectorSize: number,
  ctx: ParseContext,
): Promise<PartitionTable> {
  const partitions = await readMbrPartitions(device, mbr, sectorSize, ctx);
  checkMbrRanges(device, partitions, ctx);
  checkOverlaps(
    partitions.filter((p) => p.kind !== "logical"),
    ctx,
  );
  checkOverlaps(
    partitions.filter((p) => p.kind !== "extended"),
    ctx,
  );
  partitions.sort((a, b) => a.number - b.number);
  return {
    type: "mbr",
    sectorSize,
    diskId: mbr.diskSignature.toString(16).padStart(8, "0"),
    partitions,
    warnings: ctx.warnings,
  };
}

function checkMbrRanges(device: BlockDevice, partitions: Partition[], ctx: ParseContext): void {
  for (const p of partitions) {
    const where = { file: ctx.file, offset: p.entryOffset };
    if (p.start === 0) {
      problem(
        ctx,
        new PartitionRangeError(p.number, "starts at LBA 0, on top of the partition table", where),
      );
    } else if (p.start + p.size > device.size) {
      problem(
        ctx,
        new PartitionRangeError(
          p.number,
          `bytes ${p.start}-${p.start + p.size - 1} end past the end of the disk (${device.size} bytes)`,
          where,
        ),
      );
    }
  }
}

async function readGptTable(
  device: BlockDevice,
  mbr: MbrSector | null,
  sizes: number[],
  ctx: ParseContext,
): Promise<PartitionTable> {
  let sectorSize: number | undefined;
  for (const ss of sizes) {
    if (await hasGptSignature(device, 1, ss)) {
      sectorSize = ss;
      break;
    }
  }
  if (sectorSize === undefined) {
    for (const ss of sizes) {
      if (await hasGptSignature(device, Math.floor(device.size / ss) - 1, ss)) {
        sectorSize = ss;
        break;
      }
    }
  }
  if (sectorSize === undefined) {
    throw new FormatError(
      `protective MBR (type 0xEE) but no GPT header at LBA 1 or at the last LBA (tried sector sizes ${sizes.join(", ")})`,
      { file: ctx.file, offset: sizes[0] },
    );
  }
  const { copy, info } = await readGpt(device, sectorSize, ctx);
  const partitions = gptPartitions(device, copy, sectorSize, ctx);
  checkOverlaps(partitions, ctx);
  const table: PartitionTable = {
    type: "gpt",
    sectorSize,
    diskId: copy.header.diskGuid,
    partitions,
    warnings: ctx.warnings,
    gpt: info,
  };
  if (mbr) table.protectiveMbr = protectiveMbrInfo(mbr, sectorSize, ctx);
  return table;
}

function protectiveMbrInfo(mbr: MbrSector, sectorSize: number, ctx: ParseContext): ProtectiveMbrInfo {
  const others = mbr.entries.filter((e) => isUsedEntry(e) && e.type !== MBR_GPT_PROTECTIVE);
  const pmbr = mbr.entries.find((e) => e.type === MBR_GPT_PROTECTIVE && isUsedEntry(e))!;
  if (pmbr.lbaStart !== 1) {
    ctx.warnings.push(`protective MBR entry starts at LBA ${pmbr.lbaStart}, not 1`);
  }
  return {
    kind: others.length > 0 ? "hybrid" : "protective",
    partitions: others.map((e) =>
      mbrPartition(e, e.slot + 1, "primary", 0, sectorSize, mbr.diskSignature, 0),
    ),
  };
}

/**
 * Report overlapping partitions. Sort by start and sweep, comparing each partition with the one
 * that reaches furthest so far: O(n log n), so a 32k-entry GPT cannot make it quadratic.
 */
function checkOverlaps(partitions: Partition[], ctx: ParseContext): void {
  const sorted = partitions
    .filter((p) => p.size > 0)
    .sort((a, b) => a.start - b.start || a.number - b.number);
  let reach: Partition | undefined;
  for (const p of sorted) {
    if (reach && p.start < reach.start + reach.size) {
      problem(
        ctx,
        new PartitionOverlapError(
          p.number,
          reach.number,
          `bytes ${p.start}-${p.start + p.size - 1} and ${reach.start}-${reach.start + reach.size - 1}`,
          { file: ctx.file, offset: p.entryOffset },
        ),
      );
    }
    if (!reach || p.start + p.size > reach.start + reach.size) reach = p;
  }
}

export interface OpenPartitionOptions extends ReadPartitionTableOptions {
  /** A table already read from this device (saves re-reading it). */
  table?: PartitionTable;
  /** Open the view read-only even if the device is writable. */
  readOnly?: boolean;
}

/**
 * A RangeDevice over partition `number` (Linux numbering). Throws PartitionNotFoundError when the
 * disk has no table or no such partition, UnsupportedError for an MBR extended container, and
 * OutOfRangeError when the partition reaches past the device (possible in lenient mode).
 */
export async function openPartition(
  device: BlockDevice,
  number: number,
  options: OpenPartitionOptions = {},
): Promise<RangeDevice> {
  const table = options.table ?? (await readPartitionTable(device, options));
  if (!table) {
    throw new PartitionNotFoundError(number, `no partition table, so no partition ${number}`, {
      file: device.name,
    });
  }
  const p = table.partitions.find((x) => x.number === number);
  if (!p) {
    const have = table.partitions.map((x) => x.number).join(", ") || "none";
    throw new PartitionNotFoundError(
      number,
      `no partition ${number} in the ${table.type.toUpperCase()} table (partitions: ${have})`,
      { file: device.name },
    );
  }
  if (p.kind === "extended") {
    throw new UnsupportedError(
      `partition ${number} is an extended partition (a container for logical partitions 5+), not a volume`,
      { file: device.name, offset: p.start },
    );
  }
  return new RangeDevice(device, p.start, p.size, {
    name: `${device.name}:p${number}`,
    readOnly: options.readOnly ?? false,
  });
}
