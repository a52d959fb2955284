/** Opening an image file as a guest-visible BlockDevice: qcow2 (with its backing chain) or raw. */
import { stat } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import {
  assertSupportedImageFormat,
  type BlockDevice,
  detectImageFormat,
  FileDevice,
  ImgpatchError,
  UndoDevice,
  type UndoLog,
} from "@imgpatch/disk";
import { type BackingRef, NodeHostFile, openQcow2 } from "@imgpatch/qcow2";
import { UndoHostFile } from "./undo-host-file.js";

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
  /** Writable opens only: save original bytes here before any overwrite (in-place runs). */
  undo?: UndoLog;
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
  if (format !== "qcow2" && format !== "raw")
    throw new UsageError(`unknown format "${String(format)}" (qcow2 or raw)`, path);
  const undo = readOnly ? undefined : options.undo;
  if (format === "qcow2") {
    if (!undo) return { device: await openQcow2(path, { readOnly, name: path }), format, path };
    const host = new UndoHostFile(await NodeHostFile.open(path), undo);
    try {
      const device = await openQcow2(host, {
        name: path,
        backing: (ref) => openBacking(ref, path),
      });
      // the device does not own a HostFile it was given: close it with the device
      const close = device.close.bind(device);
      device.close = async () => {
        try {
          await close();
        } finally {
          await host.close();
        }
      };
      return { device, format, path };
    } catch (err) {
      await host.close().catch(() => {});
      throw err;
    }
  }
  const file = await FileDevice.open(path, { readOnly });
  return { device: undo ? new UndoDevice(file, undo) : file, format, path };
}

/**
 * The backing image of a qcow2 opened through a HostFile (no path of its own for qcow2 to resolve
 * relative names against): resolved against the image's directory like qemu, opened read-only.
 */
async function openBacking(ref: BackingRef, image: string): Promise<BlockDevice> {
  const p = ref.path ?? (isAbsolute(ref.name) ? ref.name : resolve(dirname(image), ref.name));
  const fmt = ref.format === "qcow2" || ref.format === "raw" ? ref.format : undefined;
  return (await openImage(p, { format: fmt, readOnly: true })).device;
}
