import type { BlockDevice } from "./block-device.js";
import { ByteView } from "./bytes.js";
import { UnsupportedFormatError } from "./errors.js";

export type ImageFormat =
  | "raw"
  | "qcow2"
  | "qcow"
  | "qed"
  | "vmdk"
  | "vhd"
  | "vhdx"
  | "vdi"
  | "parallels"
  | "dmg"
  | "luks";

export interface ImageFormatInfo {
  format: ImageFormat;
  /** Whether imgpatch can open it (qcow2 v2/v3 and raw). */
  supported: boolean;
  /** Human-readable description, e.g. "VMware VMDK (sparse extent)". */
  description: string;
  /** Format version when the header has one (qcow2 2/3, LUKS 1/2, vmdk 1-3...). */
  version?: number;
  /** Byte offset of the identifying magic (the VHD footer sits at the end). */
  offset: number;
}

/** Where each container format keeps its magic. */
export const IMAGE_MAGIC = {
  qcow: { offset: 0, magic: "QFI\xfb", versionBe32: 4 }, // qcow v1 and qcow2 share the magic
  qed: { offset: 0, magic: "QED\0" },
  vmdkSparse: { offset: 0, magic: "KDMV", versionLe32: 4 }, // hosted sparse extent (also stream-optimized)
  vmdkCowd: { offset: 0, magic: "COWD" }, // ESX sparse extent
  vmdkDescriptor: { offset: 0, magic: "# Disk DescriptorFile" }, // text descriptor of a multi-file vmdk
  vhdx: { offset: 0, magic: "vhdxfile" },
  vdi: { offset: 0x40, magicLe32: 0xbeda107f, versionLe32: 0x44 },
  vhd: { footerFromEnd: 512, magic: "conectix" }, // footer at the end; dynamic VHDs copy it at 0
  parallels: { offset: 0, magics: ["WithoutFreeSpace", "WithouFreSpacExt"] },
  dmg: { footerFromEnd: 512, magic: "koly" },
  luks: { offset: 0, magic: "LUKS\xba\xbe", versionBe16: 6 },
} as const;

const HEAD_BYTES = 4096;

/**
 * Identify the container format of an image file by its magic numbers. Anything unrecognised is
 * "raw" (which may still hold a partition table or filesystem: see detectFilesystem/inspectDisk).
 * Reads at most the first 4 KiB and the last 512 bytes.
 */
export async function detectImageFormat(device: BlockDevice): Promise<ImageFormatInfo> {
  const head = new ByteView(await device.read(0, Math.min(HEAD_BYTES, device.size)));
  const tail =
    device.size >= 512
      ? new ByteView(await device.read(device.size - 512, 512))
      : new ByteView(new Uint8Array(0));
  const tailOffset = device.size - 512;
  const M = IMAGE_MAGIC;

  if (head.has(0, M.qcow.magic) && head.length >= 8) {
    const version = head.u32be(M.qcow.versionBe32);
    if (version === 1) {
      return { format: "qcow", supported: false, description: "QEMU qcow (version 1)", version, offset: 0 };
    }
    return {
      format: "qcow2",
      supported: version === 2 || version === 3,
      description:
        version === 2 || version === 3 ? `qcow2 v${version}` : `qcow2 with unknown version ${version}`,
      version,
      offset: 0,
    };
  }
  if (head.has(0, M.qed.magic))
    return { format: "qed", supported: false, description: "QEMU QED", offset: 0 };
  if (head.has(0, M.vmdkSparse.magic)) {
    const version = head.length >= 8 ? head.u32(M.vmdkSparse.versionLe32) : undefined;
    return {
      format: "vmdk",
      supported: false,
      description: "VMware VMDK (sparse extent)",
      version,
      offset: 0,
    };
  }
  if (head.has(0, M.vmdkCowd.magic)) {
    return { format: "vmdk", supported: false, description: "VMware VMDK (ESX sparse extent)", offset: 0 };
  }
  if (head.has(0, M.vmdkDescriptor.magic)) {
    return { format: "vmdk", supported: false, description: "VMware VMDK (descriptor file)", offset: 0 };
  }
  if (head.has(0, M.vhdx.magic))
    return { format: "vhdx", supported: false, description: "Hyper-V VHDX", offset: 0 };
  if (head.length >= M.vdi.offset + 8 && head.u32(M.vdi.offset) === M.vdi.magicLe32) {
    const v = head.u32(M.vdi.versionLe32);
    return {
      format: "vdi",
      supported: false,
      description: "VirtualBox VDI",
      version: v >>> 16,
      offset: M.vdi.offset,
    };
  }
  if (M.parallels.magics.some((m) => head.has(0, m))) {
    return { format: "parallels", supported: false, description: "Parallels disk image", offset: 0 };
  }
  if (head.has(0, M.luks.magic) && head.length >= 8) {
    const version = head.u16be(M.luks.versionBe16);
    return {
      format: "luks",
      supported: false,
      description: `LUKS${version} encrypted volume`,
      version,
      offset: 0,
    };
  }
  if (head.has(0, M.vhd.magic)) {
    return { format: "vhd", supported: false, description: "Microsoft VHD (dynamic)", offset: 0 };
  }
  if (tail.has(0, M.vhd.magic)) {
    // A fixed VHD is raw data followed by this footer; dynamic/differencing ones also have it at 0.
    return { format: "vhd", supported: false, description: "Microsoft VHD (fixed)", offset: tailOffset };
  }
  if (tail.has(0, M.dmg.magic)) {
    return { format: "dmg", supported: false, description: "Apple disk image (UDIF)", offset: tailOffset };
  }
  return { format: "raw", supported: true, description: "raw disk image", offset: 0 };
}

/** Throw UnsupportedFormatError with a hint when `info` is not a format imgpatch opens. */
export function assertSupportedImageFormat(info: ImageFormatInfo, file: string): void {
  if (info.supported) return;
  const hint =
    info.format === "luks"
      ? "decrypt it first"
      : info.format === "qcow2"
        ? "only qcow2 versions 2 and 3 exist"
        : `convert it first, e.g. qemu-img convert -O qcow2 ${file} out.qcow2`;
  throw new UnsupportedFormatError(info.format, `${info.description} image — not supported (${hint})`, {
    file,
    offset: info.offset,
  });
}
