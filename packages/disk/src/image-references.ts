/**
 * The host files a container format's metadata names, for the formats detectImageFormat
 * recognises but imgpatch never opens (they are refused as unsupported): listed so that a safety
 * report can say where such an image would lead a tool that does open it. qcow2 has its own,
 * fuller reader in @imgpatch/qcow2 (readQcow2Links).
 *
 * Layouts read (only the fields needed):
 *
 * | format  | field                     | where                                             |
 * |---------|---------------------------|---------------------------------------------------|
 * | qcow v1 | backing_file_offset u64 BE | 8  (name of backing_file_size u32 BE at 16 bytes) |
 * | qed     | features u64 LE            | 16 (bit 0: has backing file)                      |
 * |         | backing_filename_offset    | 56 u32 LE, backing_filename_size u32 LE at 60     |
 * | vmdk    | text descriptor            | the file itself ("# Disk DescriptorFile"), or in  |
 * |         |                            | a sparse extent: descriptor_offset u64 LE at 28,  |
 * |         |                            | descriptor_size u64 LE at 36 (both in sectors)    |
 * | vhd     | footer copy at 0: disk_type u32 BE at 60 (4 = differencing), data_offset     |
 * |         | u64 BE at 16 → dynamic header: parent_unicode_name, 512 bytes UTF-16BE at 64  |
 *
 * In a vmdk descriptor, extent lines (`RW 2048 FLAT "disk-flat.vmdk" 0`) name data files and
 * `parentFileNameHint="…"` names the parent of a delta disk.
 */
import type { BlockDevice } from "./block-device.js";
import { ByteView } from "./bytes.js";
import type { ImageFormatInfo } from "./image-format.js";

export interface ImageFileReference {
  /** "backing file", "extent", "parent". */
  kind: string;
  /** As stored. */
  name: string;
}

/** Descriptors larger than this are not read (real ones are a few hundred bytes). */
const MAX_DESCRIPTOR = 64 * 1024;

async function readAt(device: BlockDevice, offset: number, length: number): Promise<Uint8Array> {
  if (offset < 0 || offset >= device.size) return new Uint8Array(0);
  return device.read(offset, Math.min(length, device.size - offset));
}

/** References named by a vmdk text descriptor. */
export function vmdkDescriptorReferences(text: string): ImageFileReference[] {
  const out: ImageFileReference[] = [];
  for (const line of text.split(/\r?\n/)) {
    const extent = /^\s*(?:RW|RDONLY|NOACCESS)\s+\d+\s+[A-Z]+\s+"([^"]*)"/.exec(line);
    if (extent) out.push({ kind: "extent", name: extent[1]! });
    const parent = /^\s*parentFileNameHint\s*=\s*"([^"]*)"/.exec(line);
    if (parent) out.push({ kind: "parent", name: parent[1]! });
  }
  return out;
}

/**
 * The file names in the metadata of an image detectImageFormat identified as `info`: none for
 * raw and for formats that name no files. qcow2 is not handled here (see readQcow2Links).
 */
export async function imageFileReferences(
  device: BlockDevice,
  info: ImageFormatInfo,
): Promise<ImageFileReference[]> {
  const head = new ByteView(await readAt(device, 0, 4096));
  const decoder = new TextDecoder("utf-8", { fatal: false });
  const nameAt = async (offset: number, size: number): Promise<string> => {
    if (size <= 0 || size > 4096) return "";
    const raw = await readAt(device, offset, size);
    const nul = raw.indexOf(0);
    return decoder.decode(nul < 0 ? raw : raw.subarray(0, nul));
  };
  switch (info.format) {
    case "qcow": {
      if (head.length < 20) return [];
      const name = await nameAt(Number(head.u64be(8)), head.u32be(16));
      return name ? [{ kind: "backing file", name }] : [];
    }
    case "qed": {
      if (head.length < 64 || (head.u64(16) & 1n) === 0n) return [];
      const name = await nameAt(head.u32(56), head.u32(60));
      return name ? [{ kind: "backing file", name }] : [];
    }
    case "vmdk": {
      if (info.description.includes("descriptor file")) {
        return vmdkDescriptorReferences(decoder.decode(await readAt(device, 0, MAX_DESCRIPTOR)));
      }
      if (head.length < 44 || !head.has(0, "KDMV")) return [];
      const at = Number(head.u64(28)) * 512;
      const size = Math.min(Number(head.u64(36)) * 512, MAX_DESCRIPTOR);
      if (at === 0 || size === 0) return [];
      return vmdkDescriptorReferences(decoder.decode(await readAt(device, at, size)));
    }
    case "vhd": {
      if (head.length < 64 || !head.has(0, "conectix") || head.u32be(60) !== 4) return [];
      const dyn = new ByteView(await readAt(device, Number(head.u64be(16)), 1024));
      if (dyn.length < 576 || !dyn.has(0, "cxsparse")) return [];
      const raw = dyn.slice(64, 512);
      let name = "";
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const c = (raw[i]! << 8) | raw[i + 1]!;
        if (c === 0) break;
        name += String.fromCharCode(c);
      }
      return name ? [{ kind: "parent", name }] : [];
    }
    default:
      return [];
  }
}
