/**
 * Write-behind for undo-logged in-place edits. The undo log's promise is that a range's original
 * bytes are durable in the undo file before the range is overwritten. Saving them write by write
 * costs one fsync per write (77 for a 500-file bundle); instead the writes are held here, reads see
 * them, and at a flush (or when the held bytes pass a bound) every range they cover is saved with
 * one append and one fdatasync, then the writes go to the image in their original order.
 *
 * Memory: held data is copied (callers reuse their buffers) and bounded by `limitBytes`; a write
 * larger than the bound is committed on its own at once.
 */
import type { ReadOriginal, UndoLog } from "./undo-device.js";

export type HeldKind = "write" | "zero" | "discard";

interface HeldOp {
  seq: number;
  kind: HeldKind;
  offset: number;
  length: number;
  /** The bytes of a write (a private copy). */
  data?: Uint8Array;
}

/** Where held operations finally go, in order. */
export interface HeldSink {
  write(offset: number, data: Uint8Array): Promise<void>;
  writeZeroes(offset: number, length: number): Promise<void>;
  discard(offset: number, length: number): Promise<void>;
}

/** Granularity of the read index (independent of the undo chunk size). */
const SLOT = 64 * 1024;
export const UNDO_HOLD_LIMIT = 32 * 1024 * 1024;

export class UndoWriteBuffer {
  private ops: HeldOp[] = [];
  private readonly index = new Map<number, HeldOp[]>();
  private seq = 0;
  private bytes = 0;
  /** Commits performed (one undo append + one fdatasync each at most); for tests and diagnostics. */
  commits = 0;
  /** Set when a commit failed: the run is failing, its held writes are not retried (see drop()). */
  failed = false;

  constructor(
    private readonly log: UndoLog,
    private readonly readOriginal: ReadOriginal,
    private readonly sink: HeldSink,
    private readonly limitBytes = UNDO_HOLD_LIMIT,
  ) {}

  /** True when operations are held. */
  get pending(): boolean {
    return this.ops.length > 0;
  }

  /** Holds an operation (copying a write's bytes); commits when the held bytes pass the bound. */
  async hold(kind: HeldKind, offset: number, length: number, data?: Uint8Array): Promise<void> {
    if (length <= 0) return;
    this.log.touched = true;
    const op: HeldOp = { seq: this.seq++, kind, offset, length };
    if (kind === "write") op.data = data!.slice(0, length);
    this.ops.push(op);
    this.indexOp(op);
    this.bytes += kind === "write" ? length : 64;
    if (this.bytes >= this.limitBytes) await this.commit();
  }

  private indexOp(op: HeldOp): void {
    for (let k = Math.floor(op.offset / SLOT); k * SLOT < op.offset + op.length; k++) {
      const list = this.index.get(k);
      if (list) list.push(op);
      else this.index.set(k, [op]);
    }
  }

  private hits(offset: number, length: number): HeldOp[] {
    const end = offset + length;
    const found = new Set<HeldOp>();
    for (let k = Math.floor(offset / SLOT); k * SLOT < end; k++) {
      for (const op of this.index.get(k) ?? [])
        if (op.offset < end && offset < op.offset + op.length) found.add(op);
    }
    return [...found];
  }

  /** Forgets held operations (closing after a failed commit: the caller rolls back from the log). */
  drop(): void {
    this.ops = [];
    this.index.clear();
    this.bytes = 0;
  }

  /** Whether any held operation overlaps [offset, offset + length). */
  overlaps(offset: number, length: number): boolean {
    return this.ops.length > 0 && this.hits(offset, length).length > 0;
  }

  /** Applies the held operations that overlap [offset, offset + target.length) onto bytes just read. */
  overlay(offset: number, target: Uint8Array): void {
    if (this.ops.length === 0) return;
    const end = offset + target.length;
    const hits = this.hits(offset, target.length);
    if (hits.length === 0) return;
    for (const op of hits.sort((a, b) => a.seq - b.seq)) {
      const from = Math.max(op.offset, offset);
      const to = Math.min(op.offset + op.length, end);
      if (op.data) target.set(op.data.subarray(from - op.offset, to - op.offset), from - offset);
      else target.fill(0, from - offset, to - offset);
    }
  }

  /**
   * Saves the original bytes of everything held (one append, one fdatasync), then performs the held
   * operations in order. On failure the operations not yet performed stay held.
   */
  async commit(): Promise<void> {
    if (this.ops.length === 0) return;
    this.failed = true;
    await this.log.preserveRanges(
      this.ops.map((o) => [o.offset, o.length] as const),
      this.readOriginal,
    );
    this.commits++;
    const ops = this.ops;
    let done = 0;
    try {
      for (; done < ops.length; done++) {
        const op = ops[done]!;
        if (op.kind === "write") await this.sink.write(op.offset, op.data!);
        else if (op.kind === "zero") await this.sink.writeZeroes(op.offset, op.length);
        else await this.sink.discard(op.offset, op.length);
      }
      this.failed = false;
    } finally {
      // What was performed leaves the buffer; what was not stays held (and visible to reads).
      this.ops = ops.slice(done);
      this.index.clear();
      this.bytes = 0;
      for (const op of this.ops) {
        this.indexOp(op);
        this.bytes += op.kind === "write" ? op.length : 64;
      }
    }
  }
}
