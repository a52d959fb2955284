import { getU64, viewOf } from "./bytes.js";
import { Qcow2FormatError } from "./errors.js";
import type { BitmapsExtension } from "./extensions.js";
import type { HostFile } from "./host-file.js";
import { OFFSET_MASK_HI, stdOffset } from "./l2-entry.js";

/**
 * Persistent dirty bitmaps (docs/interop/qcow2.txt, "Bitmaps"). We do not maintain them: on the
 * first write we drop them the way a careful bitmap-unaware writer should — clear the autoclear
 * bit, remove the extension, and release their clusters — so `qemu-img check` stays clean.
 *
 * Directory entry: 0 u64 bitmap_table_offset, 8 u32 bitmap_table_size (entries), 12 u32 flags,
 * 16 u8 type, 17 u8 granularity_bits, 18 u16 name_size, 20 u32 extra_data_size, 24 extra data,
 * name, padding to 8. Bitmap table entry: bits 9..55 data cluster offset (0 = all zeros/ones).
 */
export interface BitmapEntry {
  name: string;
  tableOffset: number;
  tableSize: number;
  flags: number;
  granularityBits: number;
}

const MAX_DIRECTORY = 64 * 1024 * 1024;

export async function readBitmapDirectory(host: HostFile, ext: BitmapsExtension): Promise<BitmapEntry[]> {
  const file = host.name;
  const size = ext.directorySize;
  if (size > MAX_DIRECTORY || ext.directoryOffset + size > host.length || ext.directoryOffset <= 0) {
    throw new Qcow2FormatError("bitmap_directory", "bitmap directory lies outside the file or is too large", {
      file,
      offset: ext.directoryOffset,
    });
  }
  const dir = new Uint8Array(size);
  await host.read(ext.directoryOffset, dir);
  const v = viewOf(dir);
  const out: BitmapEntry[] = [];
  let pos = 0;
  for (let i = 0; i < ext.nbBitmaps; i++) {
    if (pos + 24 > size) {
      throw new Qcow2FormatError(`bitmap_directory[${i}]`, "entry runs past the directory", {
        file,
        offset: ext.directoryOffset + pos,
      });
    }
    const nameSize = v.getUint16(pos + 18);
    const extra = v.getUint32(pos + 20);
    const len = Math.ceil((24 + extra + nameSize) / 8) * 8;
    if (pos + 24 + extra + nameSize > size) {
      throw new Qcow2FormatError(`bitmap_directory[${i}]`, "entry runs past the directory", {
        file,
        offset: ext.directoryOffset + pos,
      });
    }
    out.push({
      tableOffset: getU64(v, pos),
      tableSize: v.getUint32(pos + 8),
      flags: v.getUint32(pos + 12),
      granularityBits: v.getUint8(pos + 17),
      name: new TextDecoder().decode(dir.subarray(pos + 24 + extra, pos + 24 + extra + nameSize)),
    });
    pos += len;
  }
  return out;
}

/** Every host cluster the bitmaps hold a reference on (directory, tables, data), as cluster indexes. */
export async function bitmapClusters(
  host: HostFile,
  ext: BitmapsExtension,
  clusterSize: number,
): Promise<number[]> {
  const file = host.name;
  const clusters: number[] = [];
  const span = (offset: number, bytes: number) => {
    const first = Math.floor(offset / clusterSize);
    const last = Math.floor((offset + Math.max(bytes, 1) - 1) / clusterSize);
    for (let c = first; c <= last; c++) clusters.push(c);
  };
  span(ext.directoryOffset, ext.directorySize);
  for (const [i, b] of (await readBitmapDirectory(host, ext)).entries()) {
    const bytes = b.tableSize * 8;
    if (b.tableOffset < 0 || b.tableOffset % clusterSize !== 0 || b.tableOffset + bytes > host.length) {
      throw new Qcow2FormatError(`bitmap "${b.name}" table`, "offset invalid or past the end of the file", {
        file,
        offset: b.tableOffset,
      });
    }
    if (bytes === 0) continue;
    span(b.tableOffset, bytes);
    const table = new Uint8Array(bytes);
    await host.read(b.tableOffset, table);
    const v = viewOf(table);
    for (let k = 0; k < b.tableSize; k++) {
      const hi = v.getUint32(k * 8);
      const lo = v.getUint32(k * 8 + 4);
      if ((hi & OFFSET_MASK_HI) > 0x1f_ffff) continue;
      const off = stdOffset(hi, lo);
      if (off !== 0) {
        if (off % clusterSize !== 0) {
          throw new Qcow2FormatError(`bitmap "${b.name}" table[${k}]`, "data cluster offset misaligned", {
            file,
            offset: b.tableOffset + k * 8,
          });
        }
        clusters.push(off / clusterSize);
      }
    }
    void i;
  }
  return clusters;
}
