/** Opening an image file as a guest-visible BlockDevice: qcow2 (with its backing chain) or raw. */
import { stat } from "node:fs/promises";
import {
  assertSupportedImageFormat,
  type BlockDevice,
  detectImageFormat,
  FileDevice,
  ImgpatchError,
} from "@imgpatch/disk";
import { openQcow2 } from "@imgpatch/qcow2";

export type DiskFormat = "qcow2" | "raw";

export class UsageError extends ImgpatchError {
  constructor(message: string, file?: string) {
    super("EUSAGE", message, { file });
  }
}

export interface OpenImageOptions {
  /** Skip detection (like qemu's -f). A raw image whose bytes look like qcow2 needs "raw" here. */
  format?: DiskFormat;
  readOnly?: boolean;
}

export interface OpenedImage {
  device: BlockDevice;
  format: DiskFormat;
  path: string;
}

/** Detects (or takes) the format and opens the image; the caller closes `device`. */
export async function openImage(path: string, options: OpenImageOptions = {}): Promise<OpenedImage> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new UsageError("no such image file", path);
  if (!st.isFile() && !st.isBlockDevice()) throw new UsageError("not a regular file", path);
  const readOnly = options.readOnly ?? true;
  let format = options.format;
  if (format === undefined) {
    const probe = await FileDevice.open(path, { readOnly: true });
    try {
      const info = await detectImageFormat(probe);
      assertSupportedImageFormat(info, path);
      format = info.format === "qcow2" ? "qcow2" : "raw";
    } finally {
      await probe.close();
    }
  }
  if (format === "qcow2") return { device: await openQcow2(path, { readOnly, name: path }), format, path };
  if (format !== "raw") throw new UsageError(`unknown format "${String(format)}" (qcow2 or raw)`, path);
  return { device: await FileDevice.open(path, { readOnly }), format, path };
}
