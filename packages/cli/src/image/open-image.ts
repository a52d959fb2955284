/**
 * Opening an image file as a guest-visible BlockDevice: qcow2 (with its backing chain) or raw.
 * Every backing link and external data file goes through the backing policy of @imgpatch/qcow2
 * (the image's own directory plus `allowBacking`); a refused link throws UnsafeImageError.
 */
import { stat } from "node:fs/promises";
import {
  assertSupportedImageFormat,
  type BlockDevice,
  detectImageFormat,
  FileDevice,
  ImgpatchError,
  UndoDevice,
  type UndoLog,
  UnsafeImageError,
} from "@imgpatch/disk";
import { NodeHostFile, openQcow2, readQcow2Links } from "@imgpatch/qcow2";
import { UndoHostFile } from "./undo-host-file.js";

export type DiskFormat = "qcow2" | "raw";

/** The format a file's name promises: .qcow2/.qcow → qcow2, .img/.raw → raw, else none. */
export function formatFromName(path: string): DiskFormat | undefined {
  if (/\.qcow2?$/i.test(path)) return "qcow2";
  if (/\.(img|raw)$/i.test(path)) return "raw";
  return undefined;
}

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
  /**
   * Directories (besides the image's own) that backing files and external data files may come
   * from (`--allow-backing`); see @imgpatch/qcow2's backing policy.
   */
  allowBacking?: readonly string[];
}

export interface OpenedImage {
  device: BlockDevice;
  format: DiskFormat;
  path: string;
  /** Format confusion and similar notes (a file named like raw whose bytes are qcow2). */
  warnings: string[];
}

/** Detects (or takes) the format and opens the image; the caller closes `device`. */
export async function openImage(path: string, options: OpenImageOptions = {}): Promise<OpenedImage> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new UsageError("no such image file", path);
  if (!st.isFile() && !st.isBlockDevice()) throw new UsageError("not a regular file", path);
  const readOnly = options.readOnly ?? true;
  let format = options.format;
  const warnings: string[] = [];
  // `--format raw` never probes: the bytes are the guest's, whatever they look like.
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
  // Format confusion: a file named like a raw image whose bytes are a qcow2 header naming other
  // files. qemu would probe it as qcow2 too; say so, and let the policy judge those files. (A
  // self-contained qcow2 named .img — most cloud images — is not worth a word.)
  const confused =
    options.format === undefined &&
    format === "qcow2" &&
    formatFromName(path) === "raw" &&
    (await namesFiles(path));
  const note = `${path} is named like a raw image but its bytes are a qcow2 header naming other files, opened as qcow2 (pass --format raw if it is raw)`;
  if (confused) warnings.push(note);
  try {
    const device = await openAs(path, format, readOnly, options);
    return { device, format, path, warnings };
  } catch (err) {
    if (confused && err instanceof UnsafeImageError) {
      throw new UnsafeImageError(
        err.link,
        err.storedName,
        err.target,
        err.reason,
        `${err.detail}; note: ${note}`,
        { file: err.file, offset: err.offset },
        err.trust,
      );
    }
    throw err;
  }
}

/** Whether the qcow2 at `path` names a backing file or an external data file. */
async function namesFiles(path: string): Promise<boolean> {
  const host = await NodeHostFile.open(path, { readOnly: true });
  try {
    const links = await readQcow2Links(host);
    return links.backing !== undefined || links.dataFile !== undefined;
  } catch {
    return false; // malformed: openQcow2 reports it
  } finally {
    await host.close();
  }
}

async function openAs(
  path: string,
  format: DiskFormat,
  readOnly: boolean,
  options: OpenImageOptions,
): Promise<BlockDevice> {
  const undo = readOnly ? undefined : options.undo;
  const allowBacking = options.allowBacking;
  if (format === "qcow2") {
    if (!undo) return openQcow2(path, { readOnly, name: path, allowBacking });
    const host = new UndoHostFile(await NodeHostFile.open(path), undo);
    try {
      const device = await openQcow2(host, { name: path, path, allowBacking });
      // the device does not own a HostFile it was given: close it with the device
      const close = device.close.bind(device);
      device.close = async () => {
        try {
          await close();
        } finally {
          await host.close();
        }
      };
      return device;
    } catch (err) {
      await host.close().catch(() => {});
      throw err;
    }
  }
  const file = await FileDevice.open(path, { readOnly });
  return undo ? new UndoDevice(file, undo) : file;
}
