/**
 * What a whole disk's filesystems do not use, for copying only live data (`sparsify`,
 * `convert --sparsify`): every ext2/3/4 volume reports its free blocks from its bitmaps, every XFS
 * volume its free extents from each AG's bnobt (see ext4FreeSpace and xfsFreeSpace for what is
 * conservatively kept); everything else — partition tables, gaps between partitions,
 * unrecognised or damaged volumes — is kept as it is.
 */
import { type BlockDevice, inspectDisk, RangeDevice, type ZeroRange } from "@imgpatch/disk";

export interface VolumeFreeSpace {
  /** Partition number, or null for a bare filesystem. */
  partition: number | null;
  filesystem: string;
  freeBytes: number;
  notes: string[];
}

export interface FreeSpaceMap {
  /** Free byte ranges of the disk (absolute offsets). */
  free: ZeroRange[];
  freeBytes: number;
  volumes: VolumeFreeSpace[];
}

export async function freeSpaceMap(disk: BlockDevice): Promise<FreeSpaceMap> {
  const inspection = await inspectDisk(disk);
  const out: FreeSpaceMap = { free: [], freeBytes: 0, volumes: [] };
  for (const v of inspection.volumes) {
    const start = v.partition?.start ?? 0;
    const size = v.partition?.size ?? disk.size;
    const partition = v.partition?.number ?? null;
    const type = v.filesystem?.type ?? "unknown";
    const ext = type === "ext2" || type === "ext3" || type === "ext4";
    if (v.error || (!ext && type !== "xfs")) {
      out.volumes.push({ partition, filesystem: type, freeBytes: 0, notes: [v.error ?? "copied as it is"] });
      continue;
    }
    const view = new RangeDevice(disk, start, size, { readOnly: true });
    try {
      // each reader is loaded when a volume of its kind is found (the bin's start-up stays small)
      const fsFree = ext ? await ext4Free(view) : await xfsFree(view);
      for (const r of fsFree.free) out.free.push({ offset: start + r.offset, length: r.length });
      out.freeBytes += fsFree.freeBytes;
      out.volumes.push({ partition, filesystem: type, freeBytes: fsFree.freeBytes, notes: fsFree.notes });
    } catch (err) {
      // A volume we cannot read is copied whole: never lose bytes because of our own limits.
      out.volumes.push({
        partition,
        filesystem: type,
        freeBytes: 0,
        notes: [`not read (${(err as Error).message}): copied as it is`],
      });
    }
  }
  return out;
}

async function ext4Free(view: BlockDevice) {
  const { Ext4Fs, ext4FreeSpace } = await import("@imgpatch/ext4");
  return ext4FreeSpace(await Ext4Fs.open(view));
}

async function xfsFree(view: BlockDevice) {
  const { XfsFs, xfsFreeSpace } = await import("@imgpatch/xfs");
  return xfsFreeSpace(await XfsFs.open(view));
}
