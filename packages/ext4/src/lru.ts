/** A small least-recently-used map with a fixed entry budget. */
export class Lru<K, V> {
  private readonly map = new Map<K, V>();
  constructor(
    private readonly capacity: number,
    /** Called with each entry pushed out by `set` (e.g. to recycle buffers). */
    private readonly onEvict?: (value: V, key: K) => void,
  ) {}
  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }
  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.capacity) {
      const first = this.map.entries().next();
      if (!first.done) {
        this.map.delete(first.value[0]);
        this.onEvict?.(first.value[1], first.value[0]);
      }
    }
  }
  delete(key: K): void {
    this.map.delete(key);
  }
  clear(): void {
    this.map.clear();
  }
  get size(): number {
    return this.map.size;
  }
}
