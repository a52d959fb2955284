import { type FileHandle, open, stat } from "node:fs/promises";
import { BaseDevice } from "./base-device.js";
import type { DeviceExtent } from "./block-device.js";
import { IoError } from "./errors.js";
import { type HostDataRange, hostDataRanges } from "./host-extents.js";

export interface OpenFileOptions {
  /** Open for reading only (the default is read-write). */
  readOnly?: boolean;
  /** Create the file (failing if it exists) with this size in bytes; it starts sparse. */
  create?: { size: number };
  /** Logical sector size to advertise (default 512). */
  sectorSize?: number;
  /**
   * Early writeback: once this many bytes were written since the last flush started, an
   * fdatasync is started in the background (one at a time), so that the flush at close only
   * waits for what came after it, not for the whole edit. 0 turns it off. Default 4 MiB.
   */
  writebackBytes?: number;
}

const DEFAULT_WRITEBACK = 4 << 20;

/** A raw image file. Sparse-friendly: creating or extending uses truncate, never writes zeros. */
export class FileDevice extends BaseDevice {
  override readonly sectorSize: number;

  private constructor(
    readonly name: string,
    private readonly fh: FileHandle,
    readonly size: number,
    readonly readOnly: boolean,
    sectorSize: number,
    private readonly writebackBytes = DEFAULT_WRITEBACK,
    /** A read-only regular file with fewer blocks allocated than its size: its holes can be mapped. */
    private readonly sparse = false,
  ) {
    super();
    this.sectorSize = sectorSize;
  }

  /** The data ranges of a sparse read-only file (hostDataRanges), looked up once; null: unknown. */
  private dataRanges: Promise<HostDataRange[] | undefined> | undefined;

  /**
   * Holes of a sparse read-only file are "zero" (so a convert does not read them); everything else,
   * and every range of a writable or non-sparse file or when the holes cannot be known, is "data".
   */
  protected override async doMapExtents(offset: number, length: number): Promise<DeviceExtent[]> {
    if (!this.sparse) return [{ offset, length, kind: "data" }];
    this.dataRanges ??= hostDataRanges(this.name);
    const ranges = await this.dataRanges;
    if (!ranges) return [{ offset, length, kind: "data" }];
    const end = offset + length;
    const out: DeviceExtent[] = [];
    let at = offset;
    for (const r of ranges) {
      const a = Math.max(at, r.offset);
      const b = Math.min(end, r.offset + r.length);
      if (b <= a) {
        if (r.offset >= end) break;
        continue;
      }
      if (a > at) out.push({ offset: at, length: a - at, kind: "zero" });
      out.push({ offset: a, length: b - a, kind: "data" });
      at = b;
    }
    if (at < end) out.push({ offset: at, length: end - at, kind: "zero" });
    return out;
  }

  /** Bytes written since the last fdatasync started. */
  private unsynced = 0;
  /** The background fdatasync in flight, if any. */
  private writeback: Promise<void> | undefined;
  /** Its failure, reported by the next flush (a lost EIO would make a later flush lie). */
  private writebackError: unknown;

  private startWriteback(): void {
    this.unsynced = 0;
    const p = this.fh.datasync().then(
      () => {
        if (this.writeback === p) this.writeback = undefined;
      },
      (err: unknown) => {
        if (this.writeback === p) this.writeback = undefined;
        this.writebackError ??= err;
      },
    );
    this.writeback = p;
  }

  static async open(path: string, options: OpenFileOptions = {}): Promise<FileDevice> {
    const readOnly = options.readOnly ?? false;
    try {
      if (options.create) {
        const fh = await open(path, "wx+");
        try {
          await fh.truncate(options.create.size);
        } catch (err) {
          await fh.close();
          throw err;
        }
        return new FileDevice(
          path,
          fh,
          options.create.size,
          false,
          options.sectorSize ?? 512,
          options.writebackBytes,
        );
      }
      const fh = await open(path, readOnly ? "r" : "r+");
      const st = await fh.stat();
      let size = st.size;
      if (st.isBlockDevice()) size = (await stat(path)).size;
      const sparse = readOnly && st.isFile() && st.blocks * 512 < st.size;
      return new FileDevice(
        path,
        fh,
        size,
        readOnly,
        options.sectorSize ?? 512,
        options.writebackBytes,
        sparse,
      );
    } catch (err) {
      throw wrapIo(err, path);
    }
  }

  protected async doRead(offset: number, target: Uint8Array): Promise<void> {
    let done = 0;
    while (done < target.length) {
      let n: number;
      try {
        ({ bytesRead: n } = await this.fh.read(target, done, target.length - done, offset + done));
      } catch (err) {
        throw wrapIo(err, this.name, offset + done);
      }
      if (n === 0) {
        // The file shrank underneath us: what is not there reads as zeros would hide corruption.
        throw new IoError("unexpected end of file", { file: this.name, offset: offset + done });
      }
      done += n;
    }
  }

  protected async doWrite(offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      try {
        const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      } catch (err) {
        throw wrapIo(err, this.name, offset + done);
      }
    }
    this.unsynced += data.length;
    if (this.writebackBytes > 0 && this.unsynced >= this.writebackBytes && !this.writeback)
      this.startWriteback();
  }

  protected async doFlush(): Promise<void> {
    if (this.readOnly) return;
    try {
      // The background one may have started before the last writes: wait, then sync again.
      await this.writeback;
      const early = this.writebackError;
      this.writebackError = undefined;
      if (early !== undefined) throw early;
      this.unsynced = 0;
      await this.fh.datasync();
    } catch (err) {
      throw wrapIo(err, this.name);
    }
  }

  protected async doClose(): Promise<void> {
    await this.writeback;
    await this.fh.close();
  }
}

function wrapIo(err: unknown, file: string, offset?: number): Error {
  if (err instanceof IoError) return err;
  const e = err as NodeJS.ErrnoException;
  return new IoError(e.code ? `${e.code}: ${e.message}` : String(err), { file, offset }, { cause: err });
}
