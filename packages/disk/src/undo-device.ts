/**
 * Undo logs for in-place edits (the idea of e2fsprogs' undo files, our own format): before a range
 * of the image is overwritten for the first time, its original bytes are appended to a sidecar file
 * and made durable, so a failed run can be rolled back before the program exits and a crashed run
 * can be rolled back later. The original file size is recorded too (a qcow2 image grows its file;
 * rollback truncates it back).
 *
 * Undo file layout (little endian):
 *
 * | offset | size | field                                                        |
 * |--------|------|--------------------------------------------------------------|
 * | 0      | 8    | magic "IMGPUNDO"                                             |
 * | 8      | 4    | version (1)                                                  |
 * | 12     | 4    | header size (64)                                             |
 * | 16     | 8    | original size of the image file in bytes                     |
 * | 24     | 4    | chunk size (ranges are saved in aligned chunks of this size) |
 * | 28     | 32   | reserved (zero)                                              |
 * | 60     | 4    | CRC-32 of bytes 0..60                                        |
 *
 * followed by records, each:
 *
 * | offset | size   | field                                                   |
 * |--------|--------|---------------------------------------------------------|
 * | 0      | 4      | magic "UREC"                                            |
 * | 4      | 4      | data length                                             |
 * | 8      | 8      | image offset of the data                                |
 * | 16     | 4      | CRC-32 of bytes 0..16 and of the data                   |
 * | 20     | 4      | reserved (zero)                                         |
 * | 24     | length | the original bytes                                      |
 *
 * A record is fsynced before the image range it covers is written, so a torn or missing record at
 * the end of the file (a crash while appending it) covers a range that was never overwritten:
 * rollback stops at the first record that does not check out.
 */
import { constants as fsc } from "node:fs";
import { type FileHandle, open, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { crc32 } from "node:zlib";
import type { BlockDevice, DeviceExtent } from "./block-device.js";
import { FormatError, ImgpatchError, IoError } from "./errors.js";
import { type HeldKind, UndoWriteBuffer } from "./undo-buffer.js";
import { WrappedDevice } from "./wrapped-device.js";

const MAGIC = "IMGPUNDO";
const VERSION = 1;
const HEADER_BYTES = 64;
const RECORD_MAGIC = 0x43455255; // "UREC" read little endian
const RECORD_HEAD = 24;
/** Default granularity of saved ranges: coarse enough to keep records (and fsyncs) few. */
export const UNDO_CHUNK = 64 * 1024;
/** Largest chunk size a header may claim (bounds what rollback allocates). */
const MAX_CHUNK = 16 * 1024 * 1024;

/** The sidecar undo file of an image: `IMAGE.imgpatch-undo` beside it. */
export function undoPathFor(image: string): string {
  return join(dirname(image), `${basename(image)}.imgpatch-undo`);
}

/** An undo file exists where one must be created: a previous run did not finish. */
export class UndoPendingError extends ImgpatchError {
  constructor(
    readonly undoPath: string,
    image: string,
  ) {
    super(
      "EUNDOPENDING",
      `an undo file from an unfinished in-place run exists (${undoPath}); roll it back first`,
      { file: image },
    );
  }
}

export interface UndoHeader {
  originalSize: number;
  chunkSize: number;
}

function encodeHeader(h: UndoHeader): Uint8Array {
  const b = new Uint8Array(HEADER_BYTES);
  const v = new DataView(b.buffer);
  b.set(new TextEncoder().encode(MAGIC), 0);
  v.setUint32(8, VERSION, true);
  v.setUint32(12, HEADER_BYTES, true);
  v.setBigUint64(16, BigInt(h.originalSize), true);
  v.setUint32(24, h.chunkSize, true);
  v.setUint32(60, crc32(b.subarray(0, 60)) >>> 0, true);
  return b;
}

function decodeHeader(b: Uint8Array, file: string): UndoHeader {
  const bad = (msg: string, offset?: number) =>
    new FormatError(`not a usable undo file: ${msg}`, { file, offset });
  if (b.length < HEADER_BYTES) throw bad("shorter than its header");
  if (new TextDecoder().decode(b.subarray(0, 8)) !== MAGIC) throw bad("bad magic", 0);
  const v = new DataView(b.buffer, b.byteOffset, HEADER_BYTES);
  if (crc32(b.subarray(0, 60)) >>> 0 !== v.getUint32(60, true)) throw bad("header checksum mismatch", 60);
  if (v.getUint32(8, true) !== VERSION) throw bad(`version ${v.getUint32(8, true)} is not supported`, 8);
  if (v.getUint32(12, true) !== HEADER_BYTES) throw bad("unexpected header size", 12);
  const size = v.getBigUint64(16, true);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw bad("original size out of range", 16);
  const chunkSize = v.getUint32(24, true);
  if (chunkSize === 0 || chunkSize > MAX_CHUNK || chunkSize % 512 !== 0) throw bad("bad chunk size", 24);
  return { originalSize: Number(size), chunkSize };
}

async function syncDir(path: string): Promise<void> {
  // Make the creation/removal of the undo file itself durable (not possible on every platform).
  let fh: FileHandle | undefined;
  try {
    fh = await open(dirname(path), fsc.O_RDONLY);
    await fh.sync();
  } catch {
    // directories cannot be fsynced here; the file's own fsync is what we can do
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** Records are appended in pieces of at most this many bytes. */
const BATCH = 8 * 1024 * 1024;

function encodeRecord(at: number, data: Uint8Array): Uint8Array {
  const rec = new Uint8Array(RECORD_HEAD + data.length);
  rec.set(data, RECORD_HEAD);
  const v = new DataView(rec.buffer);
  v.setUint32(0, RECORD_MAGIC, true);
  v.setUint32(4, data.length, true);
  v.setBigUint64(8, BigInt(at), true);
  v.setUint32(16, crc32(data, crc32(rec.subarray(0, 16))) >>> 0, true);
  return rec;
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Reads original image bytes at `offset` into `target` (only ranges not yet overwritten are asked for). */
export type ReadOriginal = (offset: number, target: Uint8Array) => Promise<void>;

/**
 * The writer side of an undo file. `preserve(offset, length, read)` must be awaited before the
 * image range is overwritten; it saves every chunk of the range (inside the original size) not
 * saved yet, and returns once the undo file is durable.
 */
export class UndoLog {
  private readonly saved = new Set<number>();
  private end = HEADER_BYTES;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Records written, appends made (each holds one or more records) and fdatasyncs (diagnostics). */
  records = 0;
  appends = 0;
  syncs = 0;
  /** Whether any write was announced (even past the original end): if not, the image is untouched. */
  touched = false;

  private constructor(
    readonly path: string,
    readonly image: string,
    private readonly fh: FileHandle,
    readonly originalSize: number,
    readonly chunkSize: number,
  ) {}

  /**
   * Creates the undo file for `image` (whose current size is `originalSize`) and makes it
   * durable. Refuses when one exists already (an unfinished run: roll it back first).
   */
  static async create(
    image: string,
    originalSize: number,
    options: { path?: string; chunkSize?: number } = {},
  ): Promise<UndoLog> {
    const path = options.path ?? undoPathFor(image);
    const chunkSize = options.chunkSize ?? UNDO_CHUNK;
    if (chunkSize <= 0 || chunkSize > MAX_CHUNK || chunkSize % 512 !== 0)
      throw new RangeError("chunk size must be a multiple of 512 up to 16 MiB");
    let fh: FileHandle;
    try {
      fh = await open(path, "wx");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new UndoPendingError(path, image);
      throw new IoError(
        `cannot create the undo file ${path}: ${(err as Error).message}`,
        { file: image },
        {
          cause: err,
        },
      );
    }
    try {
      await fh.write(encodeHeader({ originalSize, chunkSize }), 0, HEADER_BYTES, 0);
      await fh.sync();
      await syncDir(path);
    } catch (err) {
      await fh.close().catch(() => {});
      await rm(path, { force: true }).catch(() => {});
      throw new IoError(
        `cannot write the undo file ${path}: ${(err as Error).message}`,
        { file: image },
        {
          cause: err,
        },
      );
    }
    return new UndoLog(path, image, fh, originalSize, chunkSize);
  }

  /** Save what [offset, offset+length) holds now, where it was never saved; durable on return. */
  preserve(offset: number, length: number, readOriginal: ReadOriginal): Promise<void> {
    return this.preserveRanges([[offset, length]], readOriginal);
  }

  /**
   * Saves what every range holds now, where never saved, with one sync at the end (the records are
   * appended in batches of at most BATCH bytes, so memory stays bounded whatever the ranges cover).
   * Durable on return.
   */
  preserveRanges(
    ranges: ReadonlyArray<readonly [offset: number, length: number]>,
    readOriginal: ReadOriginal,
  ): Promise<void> {
    this.touched = true;
    const run = this.queue.then(() => this.doPreserve(ranges, readOriginal));
    this.queue = run.catch(() => {});
    return run;
  }

  private async doPreserve(
    ranges: ReadonlyArray<readonly [number, number]>,
    readOriginal: ReadOriginal,
  ): Promise<void> {
    if (this.closed) throw new IoError("undo log is closed", { file: this.image });
    const cs = this.chunkSize;
    const chunks = new Set<number>();
    for (const [offset, length] of ranges) {
      const stop = Math.min(offset + length, this.originalSize);
      if (length <= 0 || offset >= stop) continue; // beyond the original end: truncation undoes it
      for (let c = Math.floor(offset / cs); c * cs < stop; c++) if (!this.saved.has(c)) chunks.add(c);
    }
    if (chunks.size === 0) return;
    const sorted = [...chunks].sort((a, b) => a - b);
    let batch: Uint8Array[] = [];
    let batchBytes = 0;
    const flushBatch = async () => {
      if (batch.length === 0) return;
      await this.append(batch.length === 1 ? batch[0]! : concat(batch, batchBytes));
      this.records += batch.length;
      batch = [];
      batchBytes = 0;
    };
    // Runs of consecutive chunks are read with one call each (bounded by BATCH).
    for (let i = 0; i < sorted.length; ) {
      let j = i + 1;
      while (j < sorted.length && sorted[j] === sorted[j - 1]! + 1 && (j - i + 1) * cs <= BATCH) j++;
      const start = sorted[i]! * cs;
      const end = Math.min((sorted[j - 1]! + 1) * cs, this.originalSize);
      const original = new Uint8Array(end - start);
      await readOriginal(start, original);
      for (let c = sorted[i]!; c < sorted[i]! + (j - i); c++) {
        const at = c * cs;
        const n = Math.min(cs, this.originalSize - at);
        const rec = encodeRecord(at, original.subarray(at - start, at - start + n));
        if (batchBytes + rec.length > BATCH) await flushBatch();
        batch.push(rec);
        batchBytes += rec.length;
      }
      i = j;
    }
    await flushBatch();
    try {
      await this.fh.datasync();
      this.syncs++;
    } catch (err) {
      throw new IoError(
        `cannot sync the undo file ${this.path}: ${(err as Error).message}`,
        { file: this.image },
        {
          cause: err,
        },
      );
    }
    // Only now may the ranges be overwritten: mark them saved.
    for (const c of sorted) this.saved.add(c);
  }

  private async append(rec: Uint8Array): Promise<void> {
    let done = 0;
    try {
      while (done < rec.length) {
        const { bytesWritten } = await this.fh.write(rec, done, rec.length - done, this.end + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw new IoError(
        `cannot write the undo file ${this.path}: ${(err as Error).message}`,
        { file: this.image },
        {
          cause: err,
        },
      );
    }
    this.end += rec.length;
    this.appends++;
  }

  /** The run succeeded and the image is durable: remove the undo file. */
  async discard(): Promise<void> {
    await this.queue;
    await this.close();
    await rm(this.path, { force: true });
    await syncDir(this.path);
  }

  /** Closes the undo file and keeps it (rollback needs it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    await this.fh.close();
  }
}

export interface RollbackResult {
  /** Records applied. */
  records: number;
  /** Image size after rollback (the original size). */
  size: number;
  /** Bytes after the last valid record that were ignored (a record torn by a crash). */
  ignoredBytes: number;
}

/**
 * Puts the image back as the undo file describes it (original bytes, original size), fsyncs it
 * and removes the undo file. The image must not be open for writing elsewhere.
 */
export async function rollbackUndo(image: string, undoPath = undoPathFor(image)): Promise<RollbackResult> {
  let uf: FileHandle;
  try {
    uf = await open(undoPath, "r");
  } catch (err) {
    throw new IoError(
      `cannot open the undo file ${undoPath}: ${(err as Error).message}`,
      { file: image },
      {
        cause: err,
      },
    );
  }
  let result: RollbackResult;
  try {
    const undoSize = (await uf.stat()).size;
    const head = new Uint8Array(HEADER_BYTES);
    await uf.read(head, 0, HEADER_BYTES, 0);
    const h = decodeHeader(head, undoPath);
    const img = await open(image, "r+");
    try {
      let pos = HEADER_BYTES;
      let records = 0;
      const rh = new Uint8Array(RECORD_HEAD);
      const rv = new DataView(rh.buffer);
      for (;;) {
        if (pos + RECORD_HEAD > undoSize) break;
        await uf.read(rh, 0, RECORD_HEAD, pos);
        const len = rv.getUint32(4, true);
        const at = Number(rv.getBigUint64(8, true));
        if (
          rv.getUint32(0, true) !== RECORD_MAGIC ||
          len === 0 ||
          len > h.chunkSize ||
          pos + RECORD_HEAD + len > undoSize ||
          at + len > h.originalSize
        )
          break;
        const data = new Uint8Array(len);
        await uf.read(data, 0, len, pos + RECORD_HEAD);
        if (crc32(data, crc32(rh.subarray(0, 16))) >>> 0 !== rv.getUint32(16, true)) break;
        let done = 0;
        while (done < len) done += (await img.write(data, done, len - done, at + done)).bytesWritten;
        records++;
        pos += RECORD_HEAD + len;
      }
      // only regular files grow (a block device has a fixed size and cannot be truncated)
      const ist = await img.stat();
      if (ist.isFile() && ist.size !== h.originalSize) await img.truncate(h.originalSize);
      await img.sync();
      result = { records, size: h.originalSize, ignoredBytes: undoSize - pos };
    } finally {
      await img.close();
    }
  } finally {
    await uf.close();
  }
  await rm(undoPath, { force: true });
  await syncDir(undoPath);
  return result;
}

/** Reads an undo file's header (to tell the user what a leftover file would do). */
export async function readUndoHeader(undoPath: string): Promise<UndoHeader> {
  const fh = await open(undoPath, "r");
  try {
    const head = new Uint8Array(HEADER_BYTES);
    const { bytesRead } = await fh.read(head, 0, HEADER_BYTES, 0);
    return decodeHeader(head.subarray(0, bytesRead), undoPath);
  } finally {
    await fh.close();
  }
}

/**
 * A BlockDevice whose modifications are preceded by saving the original bytes in an UndoLog
 * (for raw images edited in place). Writes are held (UndoWriteBuffer) until `flush`/`close` or until
 * the held bytes pass a bound: then one append and one fdatasync of the undo file cover all of them,
 * and only after that do they reach the image. Reads see held writes. Closing does not discard the log.
 */
export class UndoDevice extends WrappedDevice implements BlockDevice {
  private readonly held: UndoWriteBuffer;

  constructor(
    inner: BlockDevice,
    readonly log: UndoLog,
    options: { holdBytes?: number } = {},
  ) {
    super(inner);
    this.held = new UndoWriteBuffer(log, (o, t) => inner.readInto(o, t), inner, options.holdBytes);
  }

  /** Commits so far (each: at most one undo append batch and one fdatasync). */
  get commits(): number {
    return this.held.commits;
  }

  private hold(kind: HeldKind, offset: number, length: number, data?: Uint8Array): Promise<void> {
    // Writes the inner device would refuse (read-only, out of range) are refused now, not at flush.
    if (this.inner.readOnly || !(offset >= 0 && length >= 0 && offset + length <= this.inner.size)) {
      if (kind === "write") return this.inner.write(offset, data!);
      return kind === "zero" ? this.inner.writeZeroes(offset, length) : this.inner.discard(offset, length);
    }
    return this.held.hold(kind, offset, length, data);
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    await this.inner.readInto(offset, target);
    this.held.overlay(offset, target);
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = await this.inner.read(offset, length);
    this.held.overlay(offset, out);
    return out;
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.hold("write", offset, data.length, data);
  }
  writeZeroes(offset: number, length: number): Promise<void> {
    return this.hold("zero", offset, length);
  }
  discard(offset: number, length: number): Promise<void> {
    return this.hold("discard", offset, length);
  }
  async mapExtents(offset: number, length: number): Promise<DeviceExtent[]> {
    // The inner device cannot describe held writes: put those in place first (rare: mapping is for copies).
    if (this.held.overlaps(offset, length)) await this.held.commit();
    return this.inner.mapExtents(offset, length);
  }
  async flush(): Promise<void> {
    await this.held.commit();
    await this.inner.flush();
  }
  async close(): Promise<void> {
    try {
      // After a failed commit the run is failing: its held writes are dropped, not retried.
      if (this.held.failed) this.held.drop();
      else await this.held.commit();
    } finally {
      await this.inner.close();
    }
  }
}
