import type { BlockDevice } from "./block-device.js";
import { UnsupportedFormatError } from "./errors.js";
import { detectFilesystem, type FilesystemInfo } from "./filesystem.js";
import type { Partition, PartitionTable, ReadPartitionTableOptions } from "./partition.js";
import { readPartitionTable } from "./partition-table.js";
import { RangeDevice } from "./range-device.js";

export { detectFilesystem, type FilesystemInfo, type FilesystemType } from "./filesystem.js";
export {
  assertSupportedImageFormat,
  detectImageFormat,
  type ImageFormat,
  type ImageFormatInfo,
} from "./image-format.js";

export interface VolumeInspection {
  /** The partition, or undefined for a whole device with no partition table. */
  partition?: Partition;
  /** What the volume holds, or null when nothing known was recognised. */
  filesystem: FilesystemInfo | null;
  /** Why the volume could not be probed (it reaches past the disk, in lenient mode). */
  error?: string;
}

export interface DiskInspection {
  table: PartitionTable | null;
  /** One entry per partition (extended containers left out), or one for the whole device. */
  volumes: VolumeInspection[];
}

/**
 * Read the partition table of a (guest-visible) disk and identify the filesystem on every
 * partition, or on the whole device when there is no table. This is what lets a caller say
 * "partition 3 is xfs — not supported" instead of failing on garbage.
 */
export async function inspectDisk(
  device: BlockDevice,
  options: ReadPartitionTableOptions = {},
): Promise<DiskInspection> {
  const table = await readPartitionTable(device, options);
  if (!table) return { table, volumes: [{ filesystem: await detectFilesystem(device) }] };
  const volumes: VolumeInspection[] = [];
  for (const partition of table.partitions) {
    if (partition.kind === "extended") continue;
    if (partition.start + partition.size > device.size) {
      volumes.push({ partition, filesystem: null, error: "partition reaches past the end of the disk" });
      continue;
    }
    const view = new RangeDevice(device, partition.start, partition.size, { readOnly: true });
    volumes.push({ partition, filesystem: await detectFilesystem(view) });
  }
  return { table, volumes };
}

/**
 * Throw UnsupportedFormatError unless `fs` is a filesystem imgpatch edits (ext2/3/4), with a
 * message like "partition 3 is xfs — not supported (imgpatch edits ext2, ext3 and ext4)".
 */
export function assertSupportedFilesystem(
  fs: FilesystemInfo | null,
  where: { file?: string; partition?: number; offset?: number } = {},
): asserts fs is FilesystemInfo {
  if (fs?.supported) return;
  const subject = where.partition !== undefined ? `partition ${where.partition}` : "the volume";
  const loc = { file: where.file, offset: where.offset };
  if (!fs) {
    throw new UnsupportedFormatError(
      "unknown",
      `${subject} holds no recognisable filesystem (imgpatch edits ext2, ext3 and ext4)`,
      loc,
    );
  }
  const label = fs.label ? ` "${fs.label}"` : "";
  throw new UnsupportedFormatError(
    fs.type,
    `${subject} is ${fs.type}${label} (${fs.description}) — not supported (imgpatch edits ext2, ext3 and ext4)`,
    loc,
  );
}
