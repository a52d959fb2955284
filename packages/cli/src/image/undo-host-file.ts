/**
 * In-place edits of a qcow2 image with an undo log: qcow2 writes its container file through a
 * HostFile (which can grow), so the undo log sits there — every write first saves the original
 * bytes of what it overwrites (see UndoLog in @imgpatch/disk); growth is undone by truncation.
 */
import type { UndoLog } from "@imgpatch/disk";
import type { HostFile } from "@imgpatch/qcow2";

export class UndoHostFile implements HostFile {
  constructor(
    private readonly inner: HostFile,
    private readonly log: UndoLog,
  ) {}

  get name(): string {
    return this.inner.name;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get length(): number {
    return this.inner.length;
  }

  read(offset: number, target: Uint8Array): Promise<number> {
    return this.inner.read(offset, target);
  }

  /** Current bytes of a range never written through us (zeros past the end of the file). */
  private readonly readOriginal = async (offset: number, target: Uint8Array): Promise<void> => {
    const n = await this.inner.read(offset, target);
    if (n < target.length) target.fill(0, n);
  };

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.log.preserve(offset, data.length, this.readOriginal);
    await this.inner.write(offset, data);
  }

  async writev(offset: number, parts: Uint8Array[]): Promise<void> {
    let total = 0;
    for (const p of parts) total += p.length;
    await this.log.preserve(offset, total, this.readOriginal);
    if (this.inner.writev) return this.inner.writev(offset, parts);
    let at = offset;
    for (const p of parts) {
      await this.inner.write(at, p);
      at += p.length;
    }
  }

  sync(): Promise<void> {
    return this.inner.sync();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
