/**
 * Counts per item for the few items most keys hold (a raw map entry has one contribution in most
 * cases): the first item inline, a Map only from the second on. Iteration follows insertion order,
 * as a Map's does: the inline slot is used only while nothing else is held, so it is always the
 * oldest item.
 */
export class SmallCounts<T> {
  // Declared, set in the constructor: field initializers would run as one more call per instance (one per raw key).
  declare private one: T | undefined;
  declare private oneCount: number;
  declare private more: Map<T, number> | undefined;

  /** Empty, or holding `first` once. */
  constructor(first?: T) {
    this.one = first;
    this.oneCount = first === undefined ? 0 : 1;
    this.more = undefined;
  }

  get size(): number {
    return (this.oneCount > 0 ? 1 : 0) + (this.more?.size ?? 0);
  }

  get(x: T): number | undefined {
    return this.oneCount > 0 && this.one === x ? this.oneCount : this.more?.get(x);
  }

  /** `n` must be positive: `delete` removes. */
  set(x: T, n: number): void {
    if (this.oneCount > 0 && this.one === x) this.oneCount = n;
    else if (this.oneCount === 0 && (this.more === undefined || this.more.size === 0)) {
      this.one = x;
      this.oneCount = n;
    } else (this.more ??= new Map()).set(x, n);
  }

  delete(x: T): void {
    if (this.oneCount > 0 && this.one === x) {
      this.one = undefined;
      this.oneCount = 0;
    } else this.more?.delete(x);
  }

  *keys(): IterableIterator<T> {
    if (this.oneCount > 0) yield this.one as T;
    if (this.more !== undefined) yield* this.more.keys();
  }

  *[Symbol.iterator](): IterableIterator<[T, number]> {
    if (this.oneCount > 0) yield [this.one as T, this.oneCount];
    if (this.more !== undefined) yield* this.more;
  }
}
