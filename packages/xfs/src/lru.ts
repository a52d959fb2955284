/**
 * A small least-recently-used map for the reader's caches (inodes, fork extents, directory entries,
 * inode chunks): a hit moves the entry to the young end, the oldest goes past `max`, and `onEvict`
 * hears of every entry that leaves (eviction, delete, clear) so dependent indexes can follow.
 */
export class Lru<K, V> {
  private readonly map = new Map<K, V>();
  constructor(
    private readonly max: number,
    private readonly onEvict?: (k: K, v: V) => void,
  ) {}
  get(k: K): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }
  set(k: K, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    if (this.map.size > this.max) {
      const [oldK, oldV] = this.map.entries().next().value as [K, V];
      this.map.delete(oldK);
      this.onEvict?.(oldK, oldV);
    }
  }
  delete(k: K): void {
    const v = this.map.get(k);
    if (v === undefined) return;
    this.map.delete(k);
    this.onEvict?.(k, v);
  }
  get size(): number {
    return this.map.size;
  }
  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }
  clear(): void {
    if (this.onEvict) for (const [k, v] of this.map) this.onEvict(k, v);
    this.map.clear();
  }
}
