/**
 * Exact reads from a stream of chunks (a decompressed payload, an archive member): headers come out
 * as copies, bulk data as views into the chunks, with the absolute position tracked for error
 * messages and a size limit against decompression bombs.
 */
import { type FormatErrorClass, PkgFormatError } from "./errors.js";

/** Reads exact byte counts from a stream of chunks, tracking the absolute position and a size limit. */
export class ChunkReader {
  private chunk: Uint8Array = new Uint8Array(0);
  private at = 0;
  private done = false;
  /** Bytes consumed so far (the offset inside the decompressed payload). */
  position = 0;
  private readonly it: AsyncIterator<Uint8Array>;

  constructor(
    input: AsyncIterable<Uint8Array>,
    private readonly limit: number,
    private readonly file: string,
    private readonly errors: FormatErrorClass = PkgFormatError,
  ) {
    this.it = input[Symbol.asyncIterator]();
  }

  private async more(): Promise<boolean> {
    while (this.at >= this.chunk.length) {
      if (this.done) return false;
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return false;
      }
      this.chunk = r.value;
      this.at = 0;
    }
    return true;
  }

  /** Stops the underlying stream early (lets decoders release what they hold). */
  async close(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.it.return?.();
    }
  }

  /** True when the stream has no more bytes. */
  async atEnd(): Promise<boolean> {
    return !(await this.more());
  }

  private advance(n: number): void {
    this.at += n;
    this.position += n;
    if (this.position > this.limit) {
      throw new this.errors(`payload expands past the ${this.limit} bytes its header accounts for`, {
        file: this.file,
        offset: this.position,
      });
    }
  }

  /** Exactly n bytes (n small: headers and names); null at a clean end of stream when n bytes are absent. */
  async readExact(n: number, what: string): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (!(await this.more())) {
        throw new this.errors(`truncated payload: ${what} needs ${n} bytes, stream ended`, {
          file: this.file,
          offset: this.position,
        });
      }
      const take = Math.min(n - got, this.chunk.length - this.at);
      out.set(this.chunk.subarray(this.at, this.at + take), got);
      got += take;
      this.advance(take);
    }
    return out;
  }

  /** Yields exactly n bytes as views into the stream's chunks. */
  async *readRange(n: number, what: string): AsyncIterable<Uint8Array> {
    let left = n;
    while (left > 0) {
      if (!(await this.more())) {
        throw new this.errors(`truncated payload: ${what} ends ${left} bytes early`, {
          file: this.file,
          offset: this.position,
        });
      }
      const take = Math.min(left, this.chunk.length - this.at);
      const view = this.chunk.subarray(this.at, this.at + take);
      this.advance(take);
      left -= take;
      yield view;
    }
  }

  /** Everything left in the stream, as views. */
  async *rest(): AsyncIterable<Uint8Array> {
    while (await this.more()) {
      const view = this.chunk.subarray(this.at);
      this.advance(view.length);
      yield view;
    }
  }

  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.readRange(n, what)) {
      // discard
    }
  }

  async pad(to: number, what: string): Promise<void> {
    const rem = this.position % to;
    if (rem !== 0) await this.skip(to - rem, what);
  }
}
