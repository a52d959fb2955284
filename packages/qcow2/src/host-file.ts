import { readSync, writeSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";

/** Requests up to this size use synchronous syscalls (see NodeHostFile.readSmall). */
const SMALL_IO = 256 * 1024;

import { BaseDevice, type BlockDevice, IoError, OutOfRangeError, ReadOnlyError } from "@imgpatch/disk";

/**
 * The container a qcow2 image lives in. Unlike a BlockDevice it can grow: allocating a cluster
 * past the end of the file extends it. Implementations: a host file (node:fs), an adapter over a
 * fixed-size BlockDevice (a qcow2 inside a partition; cannot grow), and a growable memory buffer.
 */
export interface HostFile {
  readonly name: string;
  readonly readOnly: boolean;
  /** Current length in bytes. */
  readonly length: number;
  /** Read up to target.length bytes at offset; returns how many were available before EOF. */
  read(offset: number, target: Uint8Array): Promise<number>;
  /** Write at offset, extending the file when needed. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Optional vectored write of contiguous pieces. */
  writev?(offset: number, parts: Uint8Array[]): Promise<void>;
  /** Make everything written so far durable (a barrier between ordered metadata updates). */
  sync(): Promise<void>;
  close(): Promise<void>;
}

export function isHostFile(x: unknown): x is HostFile {
  return typeof x === "object" && x !== null && typeof (x as HostFile).sync === "function";
}

/** A regular file opened through node:fs. */
export class NodeHostFile implements HostFile {
  private constructor(
    readonly name: string,
    private readonly fh: FileHandle,
    public length: number,
    readonly readOnly: boolean,
  ) {}

  /** Wraps a handle opened elsewhere (a backing file opened under the backing policy); owns it from now on. */
  static fromHandle(name: string, fh: FileHandle, length: number, readOnly: boolean): NodeHostFile {
    return new NodeHostFile(name, fh, length, readOnly);
  }

  static async open(path: string, options: { readOnly?: boolean; create?: boolean } = {}) {
    const readOnly = options.readOnly ?? false;
    try {
      const fh = await open(path, options.create ? "wx+" : readOnly ? "r" : "r+");
      const st = await fh.stat();
      return new NodeHostFile(path, fh, st.size, readOnly);
    } catch (err) {
      throw wrap(err, path);
    }
  }

  async read(offset: number, target: Uint8Array): Promise<number> {
    if (target.length <= SMALL_IO) return this.readSmall(offset, target);
    let done = 0;
    while (done < target.length) {
      let n: number;
      try {
        ({ bytesRead: n } = await this.fh.read(target, done, target.length - done, offset + done));
      } catch (err) {
        throw wrap(err, this.name, offset + done);
      }
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  /**
   * Small requests (metadata, copy-on-write clusters) go straight to the kernel: a thread-pool
   * round trip costs more than the copy itself, and these never block long.
   */
  private readSmall(offset: number, target: Uint8Array): number {
    let done = 0;
    try {
      while (done < target.length) {
        const n = readSync(this.fh.fd, target, done, target.length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (err) {
      throw wrap(err, this.name, offset + done);
    }
    return done;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError("image is read-only", { file: this.name, offset });
    if (data.length <= SMALL_IO) {
      let done = 0;
      try {
        while (done < data.length)
          done += writeSync(this.fh.fd, data, done, data.length - done, offset + done);
      } catch (err) {
        throw wrap(err, this.name, offset + done);
      }
      if (offset + data.length > this.length) this.length = offset + data.length;
      return;
    }
    let done = 0;
    while (done < data.length) {
      try {
        const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      } catch (err) {
        throw wrap(err, this.name, offset + done);
      }
    }
    if (offset + data.length > this.length) this.length = offset + data.length;
  }

  async writev(offset: number, parts: Uint8Array[]): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError("image is read-only", { file: this.name, offset });
    let total = 0;
    for (const p of parts) total += p.length;
    try {
      const { bytesWritten } = await this.fh.writev(parts, offset);
      if (bytesWritten < total) {
        // finish a short vectored write piece by piece
        let pos = offset;
        let skip = bytesWritten;
        for (const p of parts) {
          if (skip >= p.length) {
            skip -= p.length;
            pos += p.length;
            continue;
          }
          await this.write(pos + skip, p.subarray(skip));
          pos += p.length;
          skip = 0;
        }
      }
    } catch (err) {
      throw wrap(err, this.name, offset);
    }
    if (offset + total > this.length) this.length = offset + total;
  }

  async sync(): Promise<void> {
    if (this.readOnly) return;
    try {
      await this.fh.datasync();
    } catch (err) {
      throw wrap(err, this.name);
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** A qcow2 stored on a fixed-size block device (for example inside a partition). */
export class DeviceHostFile implements HostFile {
  constructor(readonly device: BlockDevice) {}
  get name(): string {
    return this.device.name;
  }
  get readOnly(): boolean {
    return this.device.readOnly;
  }
  get length(): number {
    return this.device.size;
  }
  async read(offset: number, target: Uint8Array): Promise<number> {
    const n = Math.max(0, Math.min(target.length, this.device.size - offset));
    if (n > 0) await this.device.readInto(offset, target.subarray(0, n));
    return n;
  }
  async write(offset: number, data: Uint8Array): Promise<void> {
    if (offset + data.length > this.device.size) {
      throw new OutOfRangeError("qcow2 image cannot grow past the end of its device", {
        file: this.name,
        offset,
      });
    }
    await this.device.write(offset, data);
  }
  async sync(): Promise<void> {
    if (!this.device.readOnly) await this.device.flush();
  }
  async close(): Promise<void> {
    await this.device.close();
  }
}

/** A growable in-memory file: for tests and scratch images. */
export class MemoryHostFile implements HostFile {
  private buf: Uint8Array;
  length: number;
  constructor(
    initial: Uint8Array = new Uint8Array(0),
    readonly name = "memory.qcow2",
    readonly readOnly = false,
  ) {
    this.buf = initial;
    this.length = initial.length;
  }
  /** The file's current contents (a view; copy it if you keep it). */
  get bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
  async read(offset: number, target: Uint8Array): Promise<number> {
    const n = Math.max(0, Math.min(target.length, this.length - offset));
    if (n > 0) target.set(this.buf.subarray(offset, offset + n));
    return n;
  }
  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError("image is read-only", { file: this.name, offset });
    const end = offset + data.length;
    if (end > this.buf.length) {
      const grown = new Uint8Array(Math.max(end, this.buf.length * 2));
      grown.set(this.buf.subarray(0, this.length));
      this.buf = grown;
    }
    this.buf.set(data, offset);
    if (end > this.length) this.length = end;
  }
  async sync(): Promise<void> {}
  async close(): Promise<void> {}
}

function wrap(err: unknown, file: string, offset?: number): Error {
  if (err instanceof IoError) return err;
  const e = err as NodeJS.ErrnoException;
  return new IoError(e.code ? `${e.code}: ${e.message}` : String(err), { file, offset }, { cause: err });
}

/**
 * A read-only raw image as a BlockDevice, read through a HostFile (so small reads take the
 * fast synchronous path). Used for raw backing files.
 */
export class RawHostDevice extends BaseDevice {
  readonly readOnly = true;
  readonly size: number;
  constructor(private readonly host: HostFile) {
    super();
    this.size = host.length;
  }
  get name(): string {
    return this.host.name;
  }
  static async open(path: string): Promise<RawHostDevice> {
    return new RawHostDevice(await NodeHostFile.open(path, { readOnly: true }));
  }
  protected async doRead(offset: number, target: Uint8Array): Promise<void> {
    const n = await this.host.read(offset, target);
    if (n < target.length)
      throw new IoError("unexpected end of file", { file: this.name, offset: offset + n });
  }
  protected async doWrite(offset: number): Promise<void> {
    throw new ReadOnlyError("raw backing image is read-only", { file: this.name, offset });
  }
  protected async doFlush(): Promise<void> {}
  protected async doClose(): Promise<void> {
    await this.host.close();
  }
}
