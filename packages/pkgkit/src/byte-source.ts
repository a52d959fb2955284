/**
 * Random-access byte sources a package is read from: a file on the host (positional reads, never
 * loaded whole) or a buffer in memory. Short reads fail with the caller's format error class.
 */
import { type FileHandle, open } from "node:fs/promises";
import { IoError } from "@imgpatch/disk";
import { type FormatErrorClass, PkgFormatError } from "./errors.js";

export interface ByteSource {
  /** Name used in error messages (the package's path). */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /** Exactly `length` bytes at `offset`; a truncated source is a format error. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** The bytes in [start, end) as chunks of at most `chunkSize` bytes. */
  stream(start: number, end: number, chunkSize?: number): AsyncIterable<Uint8Array>;
  close(): Promise<void>;
}

const DEFAULT_CHUNK = 1 << 20;

function checkRange(
  src: ByteSource,
  errors: FormatErrorClass,
  offset: number,
  length: number,
  what = "data",
): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new errors(`bad ${what} range (${offset}, ${length})`, { file: src.name, offset });
  }
  if (offset + length > src.size) {
    throw new errors(
      `truncated: ${what} needs ${length} bytes at offset ${offset} but the file has ${src.size}`,
      { file: src.name, offset },
    );
  }
}

export class BufferSource implements ByteSource {
  readonly size: number;
  constructor(
    private readonly data: Uint8Array,
    readonly name = "<buffer>",
    private readonly errors: FormatErrorClass = PkgFormatError,
  ) {
    this.size = data.length;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, this.errors, offset, length);
    return this.data.subarray(offset, offset + length);
  }

  async *stream(start: number, end: number, chunkSize = DEFAULT_CHUNK): AsyncIterable<Uint8Array> {
    checkRange(this, this.errors, start, end - start);
    for (let pos = start; pos < end; pos += chunkSize) {
      yield this.data.subarray(pos, Math.min(end, pos + chunkSize));
    }
  }

  async close(): Promise<void> {}
}

export class FileSource implements ByteSource {
  private constructor(
    private readonly fh: FileHandle,
    readonly name: string,
    readonly size: number,
    private readonly errors: FormatErrorClass,
  ) {}

  static async open(path: string, errors: FormatErrorClass = PkgFormatError): Promise<FileSource> {
    let fh: FileHandle;
    try {
      fh = await open(path, "r");
    } catch (cause) {
      throw new IoError(`cannot open package: ${(cause as Error).message}`, { file: path }, { cause });
    }
    const st = await fh.stat();
    return new FileSource(fh, path, st.size, errors);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, this.errors, offset, length);
    const buf = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) {
        throw new this.errors(`truncated while reading ${length} bytes`, {
          file: this.name,
          offset: offset + done,
        });
      }
      done += bytesRead;
    }
    return buf;
  }

  async *stream(start: number, end: number, chunkSize = DEFAULT_CHUNK): AsyncIterable<Uint8Array> {
    checkRange(this, this.errors, start, end - start);
    for (let pos = start; pos < end; pos += chunkSize) {
      yield await this.read(pos, Math.min(chunkSize, end - pos));
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Opens a path as a FileSource, or wraps a buffer. */
export async function openSource(
  input: string | Uint8Array,
  name?: string,
  errors: FormatErrorClass = PkgFormatError,
): Promise<ByteSource> {
  return typeof input === "string" ? FileSource.open(input, errors) : new BufferSource(input, name, errors);
}
