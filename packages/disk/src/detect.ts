import type { BlockDevice } from "./block-device.js";
import { PartitionNotFoundError, UnsupportedFormatError } from "./errors.js";
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
 * Throw UnsupportedFormatError unless `fs` is a filesystem imgpatch edits (ext2/3/4, XFS), with a
 * message like "partition 3 is btrfs — not supported (imgpatch edits ext2, ext3, ext4 and XFS)".
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
      `${subject} holds no recognisable filesystem (imgpatch edits ext2, ext3, ext4 and XFS)`,
      loc,
    );
  }
  const label = fs.label ? ` "${fs.label}"` : "";
  throw new UnsupportedFormatError(
    fs.type,
    `${subject} is ${fs.type}${label} (${fs.description}) — not supported (imgpatch edits ext2, ext3, ext4 and XFS)`,
    loc,
  );
}

export interface SelectVolumeOptions {
  /** Partition number to use; without it the one ext2/3/4/XFS volume is chosen (see selectVolume). */
  partition?: number;
  /** Image path for error messages (default: the device name). */
  file?: string;
  /** Open the volume view read-only. */
  readOnly?: boolean;
}

export interface SelectedVolume {
  volume: VolumeInspection;
  /** The volume as a device: a RangeDevice over the partition, or the disk itself without a table. */
  device: BlockDevice;
}

const ROOT_TYPE = /^Linux root/;

function describeFound(volumes: VolumeInspection[]): string {
  if (volumes.length === 0) return "no volumes";
  return volumes
    .map(
      (v) =>
        `${v.partition ? `partition ${v.partition.number}` : "the disk"} is ${v.filesystem?.type ?? "unrecognised"}`,
    )
    .join(", ");
}

/**
 * Pick the volume to edit. With `partition`, that one (PartitionNotFoundError if absent,
 * UnsupportedFormatError if it is not ext2/3/4 or XFS — "partition 3 is btrfs — not supported"). Without,
 * the only ext2/3/4/XFS volume; when there are several, the only one whose GPT type is a "Linux root"
 * type; otherwise an error listing them so the caller can ask for a partition number.
 */
export function selectVolume(
  device: BlockDevice,
  inspection: DiskInspection,
  options: SelectVolumeOptions = {},
): SelectedVolume {
  const file = options.file ?? device.name;
  const open = (volume: VolumeInspection): SelectedVolume => {
    const p = volume.partition;
    if (!p) return { volume, device };
    return {
      volume,
      device: new RangeDevice(device, p.start, p.size, {
        name: `${device.name}:p${p.number}`,
        readOnly: options.readOnly ?? false,
      }),
    };
  };
  if (options.partition !== undefined) {
    const n = options.partition;
    const volume = inspection.volumes.find((v) => v.partition?.number === n);
    if (!volume) {
      const have = inspection.volumes.map((v) => v.partition?.number).filter((x) => x !== undefined);
      throw new PartitionNotFoundError(
        n,
        inspection.table
          ? `no partition ${n} (partitions: ${have.join(", ") || "none"})`
          : `no partition ${n}: the disk has no partition table (${describeFound(inspection.volumes)})`,
        { file },
      );
    }
    assertSupportedFilesystem(volume.filesystem, { file, partition: n, offset: volume.partition?.start });
    return open(volume);
  }
  const supported = inspection.volumes.filter((v) => v.filesystem?.supported);
  if (supported.length === 1) return open(supported[0]);
  if (supported.length === 0) {
    throw new UnsupportedFormatError(
      "none",
      `no ext2/ext3/ext4/XFS filesystem found (${describeFound(inspection.volumes)})`,
      { file },
    );
  }
  const roots = supported.filter((v) => ROOT_TYPE.test(v.partition?.typeName ?? ""));
  if (roots.length === 1) return open(roots[0]);
  const list = supported.map((v) => `${v.partition!.number} (${v.filesystem!.type})`).join(", ");
  throw new UnsupportedFormatError(
    "ambiguous",
    `several ext2/3/4/XFS partitions: ${list}; choose one by number`,
    {
      file,
    },
  );
}
