/**
 * A Map for big tables with delete/re-insert churn on the same keys. V8's Map (Node 20) leaves
 * a deleted entry in its bucket chain until the next rehash, so deleting and re-adding one key in
 * a 30,000-entry Map costs ~46 µs per cycle and grows with the table's free capacity (measured:
 * docs/benchmarks.md). Here a delete leaves the key in place holding a tombstone, so re-adding it
 * updates in place; tombstones are swept once they outnumber live entries (amortised O(1)).
 * Values are objects, so `undefined` from the inner Map means absent: one lookup per call.
 */
const GONE: unique symbol = Symbol('gone');

export class TombstoneMap<K, V extends object> implements Iterable<[K, V]> {
  private m = new Map<K, V | typeof GONE>();
  private tombstones = 0;

  get size(): number {
    return this.m.size - this.tombstones;
  }

  get(k: K): V | undefined {
    const v = this.m.get(k);
    return v === GONE ? undefined : v;
  }

  has(k: K): boolean {
    const v = this.m.get(k);
    return v !== undefined && v !== GONE;
  }

  set(k: K, v: V): this {
    // Without tombstones (a table that never lost a key) no lookup is needed before the write.
    if (this.tombstones > 0 && this.m.get(k) === GONE) this.tombstones--;
    this.m.set(k, v);
    return this;
  }

  delete(k: K): boolean {
    if (!this.has(k)) return false;
    this.m.set(k, GONE);
    this.tombstones++;
    if (this.tombstones > 1024 && this.tombstones > this.size) this.sweep();
    return true;
  }

  private sweep(): void {
    this.m = liveOnly(this.m);
    this.tombstones = 0;
  }

  *entries(): IterableIterator<[K, V]> {
    for (const [k, v] of this.m) if (v !== GONE) yield [k, v];
  }

  // Keys and values straight from the inner Map: no entry pair and no second generator per step.
  *keys(): IterableIterator<K> {
    const m = this.m;
    for (const k of m.keys()) if (m.get(k) !== GONE) yield k;
  }

  *values(): IterableIterator<V> {
    for (const v of this.m.values()) if (v !== GONE) yield v;
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }
}

/** The loop alone in its function: see Engine.applyEvents (V8 kept deoptimizing code after it). */
function liveOnly<K, V>(m: Map<K, V | typeof GONE>): Map<K, V | typeof GONE> {
  const next = new Map<K, V | typeof GONE>();
  for (const [k, v] of m) if (v !== GONE) next.set(k, v);
  return next;
}
