import { viewOf } from "./bytes.js";
import { Qcow2FormatError } from "./errors.js";
import type { HostFile } from "./host-file.js";

/** One cluster-sized metadata table (an L2 table or a refcount block) held in memory. */
export interface CachedTable {
  readonly offset: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  dirty: boolean;
  pins: number;
}

/**
 * A bounded LRU cache of metadata clusters with write-back. Memory is capped at `capacity`
 * tables whatever the image size. Dirty tables are written when evicted or on `writeDirty`;
 * `beforeWriteBack` runs first so callers can enforce ordering (L2 tables may only reach the
 * disk after the refcounts that account for what they point to).
 */
export class TableCache {
  private readonly tables = new Map<number, CachedTable>();
  private last: CachedTable | undefined;
  /** How many tables were read from disk (for tests and diagnostics). */
  loads = 0;

  constructor(
    private readonly host: HostFile,
    private readonly tableSize: number,
    readonly capacity: number,
    private readonly what: string,
    private readonly beforeWriteBack: () => Promise<void> = async () => {},
  ) {
    if (capacity < 2) throw new RangeError("cache needs room for at least two tables");
  }

  get size(): number {
    return this.tables.size;
  }

  /** The table at `offset`, loading it if needed. `field` names the pointer, for errors. */
  async get(offset: number, field = this.what): Promise<CachedTable> {
    const last = this.last;
    if (last !== undefined && last.offset === offset) return last;
    const hit = this.tables.get(offset);
    if (hit) {
      this.tables.delete(offset);
      this.tables.set(offset, hit);
      this.last = hit;
      return hit;
    }
    const bytes = new Uint8Array(this.tableSize);
    const n = await this.host.read(offset, bytes);
    if (n < this.tableSize) {
      throw new Qcow2FormatError(field, `${this.what} at ${offset} lies past the end of the file`, {
        file: this.host.name,
        offset,
      });
    }
    this.loads++;
    return this.insert(offset, bytes, false);
  }

  /** Cache a freshly allocated table (contents given or zero) without reading the disk. */
  async create(offset: number, contents?: Uint8Array): Promise<CachedTable> {
    const existing = this.tables.get(offset);
    if (existing) this.tables.delete(offset);
    const bytes = contents ?? new Uint8Array(this.tableSize);
    return this.insert(offset, bytes, true);
  }

  private async insert(offset: number, bytes: Uint8Array, dirty: boolean): Promise<CachedTable> {
    await this.makeRoom();
    const t: CachedTable = { offset, bytes, view: viewOf(bytes), dirty, pins: 0 };
    this.tables.set(offset, t);
    this.last = t;
    return t;
  }

  private async makeRoom(): Promise<void> {
    while (this.tables.size >= this.capacity) {
      let victim: CachedTable | undefined;
      for (const t of this.tables.values()) {
        if (t.pins === 0) {
          victim = t;
          break;
        }
      }
      if (!victim) return; // everything pinned: exceed the bound briefly rather than deadlock
      if (victim.dirty) {
        await this.beforeWriteBack();
        // the hook may have written it already
        if (victim.dirty) {
          await this.host.write(victim.offset, victim.bytes);
          victim.dirty = false;
        }
      }
      this.tables.delete(victim.offset);
      if (this.last === victim) this.last = undefined;
    }
  }

  hasDirty(): boolean {
    for (const t of this.tables.values()) if (t.dirty) return true;
    return false;
  }

  /** Write every dirty table (in offset order, so neighbours coalesce in the OS). */
  async writeDirty(): Promise<boolean> {
    const dirty = [...this.tables.values()].filter((t) => t.dirty).sort((a, b) => a.offset - b.offset);
    for (const t of dirty) {
      await this.host.write(t.offset, t.bytes);
      t.dirty = false;
    }
    return dirty.length > 0;
  }

  /** Drop a table (after its cluster was freed); dirty contents are discarded. */
  forget(offset: number): void {
    this.tables.delete(offset);
    if (this.last?.offset === offset) this.last = undefined;
  }

  /** Drop everything clean (dirty tables stay). */
  dropClean(): void {
    for (const [k, t] of this.tables) if (!t.dirty && t.pins === 0) this.tables.delete(k);
    this.last = undefined;
  }
}
