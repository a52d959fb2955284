/**
 * In-place edits of a qcow2 image with an undo log: qcow2 writes its container file through a
 * HostFile (which can grow), so the undo log sits there. Writes over the file's original bytes are
 * held (UndoWriteBuffer in @imgpatch/disk) until qcow2's next sync barrier, then one undo append and
 * one fdatasync save every original range they cover before they reach the file. Writes past the
 * original end go straight through: rollback undoes growth by truncation.
 */
import { type UndoLog, UndoWriteBuffer } from "@imgpatch/disk";
import type { HostFile } from "@imgpatch/qcow2";

export class UndoHostFile implements HostFile {
  private readonly held: UndoWriteBuffer;

  constructor(
    private readonly inner: HostFile,
    private readonly log: UndoLog,
  ) {
    this.held = new UndoWriteBuffer(
      log,
      // Current bytes of a range never written through us (zeros past the end of the file).
      async (offset, target) => {
        const n = await inner.read(offset, target);
        if (n < target.length) target.fill(0, n);
      },
      {
        write: (o, d) => inner.write(o, d),
        writeZeroes: (o, n) => inner.write(o, new Uint8Array(n)),
        discard: (o, n) => inner.write(o, new Uint8Array(n)),
      },
    );
  }

  get name(): string {
    return this.inner.name;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get length(): number {
    return this.inner.length;
  }

  /** Commits held writes (for tests and diagnostics). */
  get commits(): number {
    return this.held.commits;
  }

  async read(offset: number, target: Uint8Array): Promise<number> {
    const n = await this.inner.read(offset, target);
    // Held writes all lie inside the original size, which the file never shrinks below.
    this.held.overlay(offset, target.subarray(0, n));
    return n;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const split = Math.max(offset, Math.min(offset + data.length, this.log.originalSize));
    if (split > offset)
      await this.held.hold("write", offset, split - offset, data.subarray(0, split - offset));
    if (split < offset + data.length) await this.inner.write(split, data.subarray(split - offset));
  }

  async writev(offset: number, parts: Uint8Array[]): Promise<void> {
    if (offset >= this.log.originalSize && this.inner.writev) return this.inner.writev(offset, parts);
    let at = offset;
    for (const p of parts) {
      await this.write(at, p);
      at += p.length;
    }
  }

  async sync(): Promise<void> {
    await this.held.commit();
    await this.inner.sync();
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
