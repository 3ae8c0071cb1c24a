import { compareDecimal, isDecimalVersion } from './resource-version.js';

/**
 * The newest resourceVersion each stream showed (its events, bookmarks and relists), as client-go's
 * reflector keeps `lastSyncResourceVersion`: it relists "with a resource version no older than has
 * already been observed in relist results or watch events" (tools/cache/reflector.go
 * `relistResourceVersion`), and the API server answers such a List or watch-list "not older than"
 * it (`resourceVersionMatch=NotOlderThan`). A relist older than it is a source gone back in time
 * (a lagging API server replica, a replayed recording): it cannot speak for what the stream showed
 * since (finding 1750). Versions that are not integers are not kept nor compared.
 *
 * Also, per stream and kind, whether its events are in resourceVersion order (`ordered`): a watch delivers "all
 * changes that occurred after the resource version the watch started at" (Kubernetes API concepts, "Semantics for
 * watch"), after an initial state (a List's items, a watch-list's initial events, the synthetic ADDED events of a
 * watch started without a version) that comes in any order; and whether it showed a whole view once (`viewed`): then
 * every object it still has is one the mirror was shown, so a later initial state holds no object unknown to it that
 * is older than what it showed (finding 2960).
 */
export class StreamVersions {
  private readonly newest = new Map<string, string>();
  /** Stream → kind → the newest version of an object of that kind it gave (`noteObject`). */
  private readonly newestOfKind = new Map<string, Map<string, string>>();
  /**
   * Namespace ('' for cluster-scoped kinds) → kind → the streams that gave an object of it (`noteObject`): what `pastOn`
   * looks at. A namespace's entry goes with it (`namespaceGone`, finding 3201).
   */
  private readonly carriers = new Map<string, Map<string, Set<string>>>();
  private readonly inOrder = new Map<string, Set<string>>();
  private readonly views = new Map<string, Set<string>>();
  /** Stream → kind → the newest version of a whole view it showed of that kind (`viewed`, `viewedSince`). */
  private readonly viewVersions = new Map<string, Map<string, string>>();

  /** `source` showed `rv` (anything but an integer string is ignored). */
  note(source: string, rv: unknown): void {
    if (typeof rv !== 'string' || !isDecimalVersion(rv)) return;
    const before = this.newest.get(source);
    if (before === undefined || compareDecimal(rv, before) > 0) this.newest.set(source, rv);
  }

  /** `source` gave an object `key` (`Kind/namespace/name`) at `rv` (an event or a List's item). */
  noteObject(source: string, key: string, rv: string | undefined): void {
    const { kind, ns } = scopeOf(key);
    const kinds = this.carriers.get(ns) ?? new Map<string, Set<string>>();
    this.carriers.set(ns, kinds);
    kinds.set(kind, (kinds.get(kind) ?? new Set<string>()).add(source));
    if (isDecimalVersion(rv)) keepNewest(this.newestOfKind, source, kind, rv);
  }

  /**
   * Namespace `ns` was deleted with everything in it (its objects buried first): the streams that carried it are
   * forgotten; a stream past the deletion gives its objects again, and is noted again, before any of them is buried.
   */
  namespaceGone(ns: string): void {
    this.carriers.delete(ns);
  }

  /**
   * The streams other than `source` that gave objects of `key`'s kind and namespace and an object of its kind at `rv`
   * or newer: a later event of theirs older than `rv` comes after one newer than it (finding 3045).
   */
  pastOn(key: string, rv: string | undefined, source: string | undefined): string[] {
    const { kind, ns } = scopeOf(key);
    const streams = this.carriers.get(ns)?.get(kind);
    if (streams === undefined || streams.size < 2 || !isDecimalVersion(rv)) return [];
    return [...streams].filter((s) => {
      const newest = this.newestOfKind.get(s)?.get(kind);
      return s !== source && newest !== undefined && compareDecimal(newest, rv) >= 0;
    });
  }

  /** The newest version `source` showed when `rv` is older than it; undefined otherwise. */
  behind(source: string, rv: string | undefined): string | undefined {
    const newest = this.newest.get(source);
    if (newest === undefined || !isDecimalVersion(rv)) return undefined;
    return compareDecimal(rv, newest) < 0 ? newest : undefined;
  }

  /** `source`'s events of `kind` are in resourceVersion order from now on (its initial state is over). */
  ordered(source: string, kind: string): void {
    add(this.inOrder, source, kind);
  }

  /**
   * `source` showed every object of `kind` (a List, a watch-list's initial events) at `rv` (its resourceVersion, when an
   * integer), and its events are in order.
   */
  viewed(source: string, kind: string, rv: unknown): void {
    add(this.views, source, kind);
    add(this.inOrder, source, kind);
    if (typeof rv === 'string' && isDecimalVersion(rv)) keepNewest(this.viewVersions, source, kind, rv);
  }

  /**
   * The version of `source`'s newest whole view of `kind` when `rv` is not newer than it; undefined otherwise. The
   * view showed every object of the kind there was at its version, each at its version then, so one the mirror has no
   * live state of at a version not newer than the view's was gone by then: its event is a replay (finding 3640). An
   * object's version only grows, and one re-created gets a new one (Kubernetes API concepts, "Resource versions").
   */
  viewedSince(source: string, kind: string, rv: string | undefined): string | undefined {
    const view = this.viewVersions.get(source)?.get(kind);
    if (view === undefined || !isDecimalVersion(rv)) return undefined;
    return compareDecimal(rv, view) <= 0 ? view : undefined;
  }

  /** `source` may give an initial state again (after an ERROR, a List cut short): no kind of it is in order. */
  unordered(source: string): void {
    this.inOrder.delete(source);
  }

  /** `source` ended: a stream under its name later is another watch, which may see other objects. */
  ended(source: string): void {
    this.inOrder.delete(source);
    this.views.delete(source);
    this.viewVersions.delete(source);
  }

  /** `source` gives no event again (a retired informer, finding 3702): all it showed goes. */
  retired(source: string): void {
    this.ended(source);
    this.newest.delete(source);
    this.newestOfKind.delete(source);
    for (const kinds of this.carriers.values()) for (const streams of kinds.values()) streams.delete(source);
  }

  /** True when `source`'s events of `kind` are in resourceVersion order now (not only once viewed: no initial state since). */
  isOrdered(source: string, kind: string): boolean {
    return this.inOrder.get(source)?.has(kind) === true;
  }

  /**
   * True when an event of `source` of an object of `kind` the mirror has no state of cannot be older than what the
   * stream showed: its events of `kind` are in order, or it showed them all once (`viewed`).
   */
  known(source: string, kind: string): boolean {
    return this.isOrdered(source, kind) || this.views.get(source)?.has(kind) === true;
  }
}

/** The kind and namespace of an object key (`Kind/namespace/name`). */
function scopeOf(key: string): { kind: string; ns: string } {
  const first = key.indexOf('/');
  return { kind: key.slice(0, first), ns: key.slice(first + 1, key.lastIndexOf('/')) };
}

/** `versions`' entry for `source` and `kind` becomes `rv` unless it is newer already. */
function keepNewest(versions: Map<string, Map<string, string>>, source: string, kind: string, rv: string): void {
  let kinds = versions.get(source);
  if (kinds === undefined) versions.set(source, (kinds = new Map()));
  const before = kinds.get(kind);
  if (before === undefined || compareDecimal(rv, before) > 0) kinds.set(kind, rv);
}

function add(sets: Map<string, Set<string>>, source: string, kind: string): void {
  let kinds = sets.get(source);
  if (kinds === undefined) sets.set(source, (kinds = new Set()));
  kinds.add(kind);
}
