/** A small least-recently-used map with a fixed entry budget. */
export class Lru<K, V> {
  private readonly map = new Map<K, V>();
  constructor(
    readonly capacity: number,
    /** Called with each entry pushed out by `set` (e.g. to recycle buffers). */
    private readonly onEvict?: (value: V, key: K) => void,
  ) {}
  /** The most recently used key: getting it again needs no reordering. */
  private newest: K | undefined;
  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined && key !== this.newest) {
      this.map.delete(key);
      this.map.set(key, v);
      this.newest = key;
    }
    return v;
  }
  /** The value without refreshing its recency. */
  peek(key: K): V | undefined {
    return this.map.get(key);
  }
  has(key: K): boolean {
    return this.map.has(key);
  }
  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    this.newest = key;
    if (this.map.size > this.capacity) {
      const first = this.map.keys().next();
      if (!first.done) {
        const v = this.map.get(first.value) as V;
        this.map.delete(first.value);
        this.onEvict?.(v, first.value);
      }
    }
  }
  delete(key: K): void {
    this.map.delete(key);
    if (key === this.newest) this.newest = undefined;
  }
  clear(): void {
    this.map.clear();
    this.newest = undefined;
  }
  get size(): number {
    return this.map.size;
  }
}
