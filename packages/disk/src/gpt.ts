import { crc32 } from "node:zlib";
import type { BlockDevice } from "./block-device.js";
import { ByteView } from "./bytes.js";
import { ChecksumError, FormatError, ImgpatchError, PartitionRangeError } from "./errors.js";
import { formatGuid, ZERO_GUID } from "./guid.js";
import type { GptInfo, ParseContext, Partition } from "./partition.js";
import { problem } from "./partition.js";
import { gptTypeName } from "./partition-types.js";

export const GPT_SIGNATURE = "EFI PART";

/** GPT header (UEFI spec §5.3.2); offsets from the start of the header sector. */
export const GPT_HEADER = {
  signature: 0x00, // 8 bytes "EFI PART"
  revision: 0x08, // u32le, 0x00010000 for 1.0
  headerSize: 0x0c, // u32le, bytes covered by headerCrc: 92 ≤ n ≤ sector size
  headerCrc: 0x10, // u32le, CRC32 of headerSize bytes with this field zeroed
  reserved: 0x14, // u32le
  myLba: 0x18, // u64le, LBA of this header
  alternateLba: 0x20, // u64le, LBA of the other copy
  firstUsableLba: 0x28, // u64le
  lastUsableLba: 0x30, // u64le
  diskGuid: 0x38, // 16 bytes
  entriesLba: 0x48, // u64le, first LBA of the entry array
  entryCount: 0x50, // u32le
  entrySize: 0x54, // u32le, 128 × 2^n
  entriesCrc: 0x58, // u32le, CRC32 of entryCount × entrySize bytes
  minSize: 92,
} as const;

/** One partition entry; entries may be longer than 128 bytes, the tail is reserved. */
export const GPT_ENTRY = {
  typeGuid: 0x00, // 16 bytes; all zero = unused entry
  uniqueGuid: 0x10, // 16 bytes, the PARTUUID
  firstLba: 0x20, // u64le
  lastLba: 0x28, // u64le, inclusive
  attributes: 0x30, // u64le
  name: 0x38, // 72 bytes UTF-16LE, NUL-padded
  nameSize: 72,
  minSize: 128,
} as const;

/**
 * Largest entry array we agree to read. The usual one is 16 KiB (128 × 128); tools allow a few
 * thousand entries. A header asking for more is corrupt or hostile, and must not make us allocate
 * gigabytes.
 */
export const MAX_GPT_ENTRY_ARRAY_BYTES = 4 * 1024 * 1024;

const ATTR_LEGACY_BIOS_BOOTABLE = 1n << 2n;

export interface GptHeader {
  lba: number;
  revision: number;
  headerSize: number;
  alternateLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  diskGuid: string;
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

export interface GptCopy {
  header: GptHeader;
  entries: Uint8Array;
}

/** True when the sector at `lba` starts with the GPT signature. */
export async function hasGptSignature(
  device: BlockDevice,
  lba: number,
  sectorSize: number,
): Promise<boolean> {
  const off = lba * sectorSize;
  if (lba < 0 || off + sectorSize > device.size) return false;
  return new ByteView(await device.read(off, 8)).has(0, GPT_SIGNATURE);
}

function lbaField(
  v: ByteView,
  field: number,
  sectorSize: number,
  where: { file: string; base: number },
): number {
  const value = v.u64(field);
  if (value > BigInt(Math.floor(Number.MAX_SAFE_INTEGER / sectorSize))) {
    throw new FormatError(`GPT LBA ${value} is too large`, { file: where.file, offset: where.base + field });
  }
  return Number(value);
}

/**
 * Read and fully validate one GPT copy (header at `lba` and its entry array). Throws a
 * FormatError/ChecksumError naming the offending offset.
 */
export async function readGptCopy(
  device: BlockDevice,
  lba: number,
  sectorSize: number,
  file: string,
): Promise<GptCopy> {
  const base = lba * sectorSize;
  const diskSectors = Math.floor(device.size / sectorSize);
  if (lba < 0 || lba >= diskSectors) {
    throw new FormatError(`GPT header LBA ${lba} lies outside the disk (${diskSectors} sectors)`, {
      file,
      offset: base,
    });
  }
  const sector = await device.read(base, sectorSize);
  const v = new ByteView(sector);
  const at = (field: number) => ({ file, offset: base + field });
  if (!v.has(GPT_HEADER.signature, GPT_SIGNATURE)) {
    throw new FormatError(`no GPT header signature at LBA ${lba}`, at(0));
  }
  const headerSize = v.u32(GPT_HEADER.headerSize);
  if (headerSize < GPT_HEADER.minSize || headerSize > sectorSize) {
    throw new FormatError(
      `GPT header size ${headerSize} is outside 92..${sectorSize}`,
      at(GPT_HEADER.headerSize),
    );
  }
  const stored = v.u32(GPT_HEADER.headerCrc);
  const copy = sector.slice(0, headerSize);
  new DataView(copy.buffer).setUint32(GPT_HEADER.headerCrc, 0, true);
  const actual = crc32(copy) >>> 0;
  if (actual !== stored) {
    throw new ChecksumError(
      `GPT header CRC32 mismatch at LBA ${lba} (stored 0x${hex32(stored)}, computed 0x${hex32(actual)})`,
      at(GPT_HEADER.headerCrc),
    );
  }
  const w = { file, base };
  const myLba = lbaField(v, GPT_HEADER.myLba, sectorSize, w);
  if (myLba !== lba) {
    throw new FormatError(`GPT header at LBA ${lba} says it is at LBA ${myLba}`, at(GPT_HEADER.myLba));
  }
  const header: GptHeader = {
    lba,
    revision: v.u32(GPT_HEADER.revision),
    headerSize,
    alternateLba: lbaField(v, GPT_HEADER.alternateLba, sectorSize, w),
    firstUsableLba: lbaField(v, GPT_HEADER.firstUsableLba, sectorSize, w),
    lastUsableLba: lbaField(v, GPT_HEADER.lastUsableLba, sectorSize, w),
    diskGuid: formatGuid(sector, GPT_HEADER.diskGuid),
    entriesLba: lbaField(v, GPT_HEADER.entriesLba, sectorSize, w),
    entryCount: v.u32(GPT_HEADER.entryCount),
    entrySize: v.u32(GPT_HEADER.entrySize),
    entriesCrc: v.u32(GPT_HEADER.entriesCrc),
  };
  if (header.firstUsableLba > header.lastUsableLba + 1) {
    throw new FormatError(
      `GPT first usable LBA ${header.firstUsableLba} is after last usable LBA ${header.lastUsableLba}`,
      at(GPT_HEADER.firstUsableLba),
    );
  }
  if (header.lastUsableLba >= diskSectors) {
    throw new FormatError(
      `GPT last usable LBA ${header.lastUsableLba} is past the end of the disk (${diskSectors} sectors of ${sectorSize} bytes; image truncated?)`,
      at(GPT_HEADER.lastUsableLba),
    );
  }
  const { entrySize, entryCount } = header;
  if (
    entrySize < GPT_ENTRY.minSize ||
    entrySize % GPT_ENTRY.minSize !== 0 ||
    (entrySize & (entrySize - 1)) !== 0
  ) {
    throw new FormatError(`GPT entry size ${entrySize} is not 128 × 2^n`, at(GPT_HEADER.entrySize));
  }
  const arrayBytes = entryCount * entrySize;
  if (arrayBytes > MAX_GPT_ENTRY_ARRAY_BYTES) {
    throw new FormatError(
      `GPT entry array of ${entryCount} × ${entrySize} bytes exceeds the ${MAX_GPT_ENTRY_ARRAY_BYTES}-byte limit`,
      at(GPT_HEADER.entryCount),
    );
  }
  const arraySectors = Math.ceil(arrayBytes / sectorSize);
  if (header.entriesLba + arraySectors > diskSectors) {
    throw new FormatError(
      `GPT entry array (LBA ${header.entriesLba}, ${arraySectors} sectors) reaches past the end of the disk`,
      at(GPT_HEADER.entriesLba),
    );
  }
  if (arraySectors > 0 && lba >= header.entriesLba && lba < header.entriesLba + arraySectors) {
    throw new FormatError(
      `GPT entry array at LBA ${header.entriesLba} overlaps its own header`,
      at(GPT_HEADER.entriesLba),
    );
  }
  const entries = await device.read(header.entriesLba * sectorSize, arrayBytes);
  const entriesCrc = crc32(entries) >>> 0;
  if (entriesCrc !== header.entriesCrc) {
    throw new ChecksumError(
      `GPT entry array CRC32 mismatch (stored 0x${hex32(header.entriesCrc)}, computed 0x${hex32(entriesCrc)}; array at offset ${header.entriesLba * sectorSize})`,
      at(GPT_HEADER.entriesCrc),
    );
  }
  return { header, entries };
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/** Turn a validated entry array into partitions, checking each against the header and the disk. */
export function gptPartitions(
  device: BlockDevice,
  copy: GptCopy,
  sectorSize: number,
  ctx: ParseContext,
): Partition[] {
  const { header, entries } = copy;
  const v = new ByteView(entries);
  const diskSectors = Math.floor(device.size / sectorSize);
  const out: Partition[] = [];
  for (let i = 0; i < header.entryCount; i++) {
    const off = i * header.entrySize;
    const type = formatGuid(entries, off + GPT_ENTRY.typeGuid);
    if (type === ZERO_GUID) continue;
    const number = i + 1;
    const entryOffset = header.entriesLba * sectorSize + off;
    const where = { file: ctx.file, offset: entryOffset };
    const first = v.u64(off + GPT_ENTRY.firstLba);
    const last = v.u64(off + GPT_ENTRY.lastLba);
    if (last < first) {
      problem(ctx, new PartitionRangeError(number, `last LBA ${last} is before first LBA ${first}`, where));
      continue;
    }
    if (last >= BigInt(diskSectors)) {
      const err = new PartitionRangeError(
        number,
        `LBA ${first}-${last} ends past the end of the disk (${diskSectors} sectors of ${sectorSize} bytes)`,
        where,
      );
      if (last >= BigInt(Math.floor(Number.MAX_SAFE_INTEGER / sectorSize))) throw err;
      problem(ctx, err);
    } else if (first < BigInt(header.firstUsableLba) || last > BigInt(header.lastUsableLba)) {
      problem(
        ctx,
        new PartitionRangeError(
          number,
          `LBA ${first}-${last} lies outside the usable area LBA ${header.firstUsableLba}-${header.lastUsableLba}`,
          where,
        ),
      );
    }
    const attributes = v.u64(off + GPT_ENTRY.attributes);
    const p: Partition = {
      number,
      kind: "gpt",
      start: Number(first) * sectorSize,
      size: (Number(last) - Number(first) + 1) * sectorSize,
      type,
      name: v.utf16le(off + GPT_ENTRY.name, GPT_ENTRY.nameSize),
      uuid: formatGuid(entries, off + GPT_ENTRY.uniqueGuid),
      bootable: (attributes & ATTR_LEGACY_BIOS_BOOTABLE) !== 0n,
      attributes,
      entryOffset,
    };
    const typeName = gptTypeName(type);
    if (typeName !== undefined) p.typeName = typeName;
    out.push(p);
  }
  return out;
}

export interface GptReadResult {
  copy: GptCopy;
  info: GptInfo;
}

/**
 * Read the GPT, preferring the primary copy at LBA 1 and falling back (with a warning) to the
 * backup at the last LBA when the primary header or its entry array is unusable. When the primary
 * is fine, the backup is still checked so a damaged or misplaced backup is reported.
 */
export async function readGpt(
  device: BlockDevice,
  sectorSize: number,
  ctx: ParseContext,
): Promise<GptReadResult> {
  const lastLba = Math.floor(device.size / sectorSize) - 1;
  let primary: GptCopy | undefined;
  let primaryError: ImgpatchError | undefined;
  try {
    primary = await readGptCopy(device, 1, sectorSize, ctx.file);
  } catch (err) {
    if (!(err instanceof ImgpatchError)) throw err;
    primaryError = err;
  }
  if (primary) {
    await checkBackup(device, primary, sectorSize, lastLba, ctx);
    return { copy: primary, info: info(primary.header, false) };
  }
  let backup: GptCopy;
  try {
    backup = await readGptCopy(device, lastLba, sectorSize, ctx.file);
  } catch (err) {
    if (!(err instanceof ImgpatchError)) throw err;
    const message = `no usable GPT: primary: ${primaryError!.message}; backup: ${err.message}`;
    const where = { file: ctx.file, offset: primaryError!.offset };
    throw primaryError instanceof ChecksumError && err instanceof ChecksumError
      ? new ChecksumError(message, where)
      : new FormatError(message, where);
  }
  ctx.warnings.push(
    `primary GPT is unusable (${primaryError!.message}); using the backup GPT header at LBA ${lastLba}`,
  );
  return { copy: backup, info: info(backup.header, true) };
}

async function checkBackup(
  device: BlockDevice,
  primary: GptCopy,
  sectorSize: number,
  lastLba: number,
  ctx: ParseContext,
): Promise<void> {
  const alt = primary.header.alternateLba;
  if (alt > lastLba) {
    ctx.warnings.push(
      `backup GPT header LBA ${alt} is past the end of the disk (last LBA ${lastLba}); image truncated?`,
    );
    return;
  }
  if (alt !== lastLba) {
    ctx.warnings.push(`backup GPT header is at LBA ${alt}, not at the last LBA ${lastLba}; disk resized?`);
  }
  if (alt === 1) return;
  try {
    const backup = await readGptCopy(device, alt, sectorSize, ctx.file);
    if (
      backup.header.diskGuid !== primary.header.diskGuid ||
      backup.header.entriesCrc !== primary.header.entriesCrc
    ) {
      ctx.warnings.push(`backup GPT at LBA ${alt} does not match the primary GPT`);
    }
  } catch (err) {
    if (!(err instanceof ImgpatchError)) throw err;
    ctx.warnings.push(`backup GPT is unusable: ${err.message}`);
  }
}

function info(h: GptHeader, usedBackup: boolean): GptInfo {
  return {
    headerLba: h.lba,
    alternateLba: h.alternateLba,
    firstUsableLba: h.firstUsableLba,
    lastUsableLba: h.lastUsableLba,
    entriesLba: h.entriesLba,
    entryCount: h.entryCount,
    entrySize: h.entrySize,
    revision: h.revision,
    usedBackup,
  };
}
