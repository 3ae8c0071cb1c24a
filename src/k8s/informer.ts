import type { ClusterMirror } from './mirror.js';
import { objectKind } from './objects.js';
import { compareDecimal, isDecimalVersion, otherIncarnation, stale, uidOf } from './resource-version.js';

/**
 * What distill needs of a `@kubernetes/client-node` informer (`makeInformer(...)`): its callbacks.
 * Structural, so distill does not depend on the client library.
 */
export interface InformerLike {
  on(verb: 'add' | 'update' | 'delete', cb: (obj: object) => void): void;
  on(verb: 'error' | 'connect', cb: (err?: unknown) => void): void;
}

/** Options of `watchInformer`. */
export interface InformerFeedOptions {
  /** The informer's kind and apiVersion (list items as the client returns them may lack both). */
  readonly kind: string;
  readonly apiVersion: string;
  /**
   * Called once the objects the informer gave in one run were taken (e.g. to flush the mirror): a
   * relist's deletes, adds and updates come in one run (client-node dist/cache.js `doneHandler`:
   * `deleteItems`, then `addOrUpdateItems`), so a flush here sees the whole relist (finding 1643).
   * What it throws goes to `onError`.
   */
  readonly onChange?: () => void;
  /**
   * Called with the informer's errors. A 410 makes it relist by itself; after another error it
   * stops until started again, and `mirror.streamsAwaitingRelist()` lists it until it connects (or is retired: `InformerFeed.retire`).
   */
  readonly onError?: (err: unknown) => void;
}

/**
 * What `watchInformer` returns: its source in the mirror, and `retire` for an informer replaced by a new one or stopped
 * for good (finding 3702): its source leaves `streamsAwaitingRelist()` and every per-stream record, what it gave that
 * exists is held fail-closed until a stream gives it again (the new informer's first List) or deletes it, and its
 * callbacks are ignored from then on (stop it too).
 */
export interface InformerFeed {
  readonly source: string;
  retire(): void;
}

type TypedModel = { constructor?: { getAttributeTypeMap?: () => readonly { name: string; baseName: string }[] } };

/**
 * An object of the typed client back in the API's JSON form: the generated models rename fields
 * that are reserved words (`from` is `_from` in a NetworkPolicy rule) and list each field's wire
 * name in `getAttributeTypeMap`; dates become RFC 3339 strings; absent fields are dropped.
 */
export function toWire(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(toWire);
  if (v instanceof Date) return v.toISOString();
  if (typeof v !== 'object' || v === null) return v;
  const map = (v as TypedModel).constructor?.getAttributeTypeMap?.();
  const rename = new Map((map ?? []).map((a) => [a.name, a.baseName]));
  return Object.fromEntries(
    Object.entries(v)
      .filter(([, x]) => x !== undefined)
      .map(([k, x]) => [rename.get(k) ?? k, toWire(x)]),
  );
}

/**
 * Feeds a ClusterMirror from an informer: `add`, `update` and `delete` become ADDED, MODIFIED and
 * DELETED events of the object as the API server sent it. Typed client objects (dates as `Date`)
 * are brought back to their JSON form (`toWire`). The informer's own relist after an expired watch arrives
 * as adds, updates and deletes, which the mirror reduces to the differences.
 */
export function watchInformer(informer: InformerLike, mirror: ClusterMirror, options: InformerFeedOptions): InformerFeed {
  const source = mirror.fedByInformer(`informer ${options.kind}`);
  let queued = false;
  let retired = false;
  // One call after the run of callbacks the informer makes (a microtask runs once that run returns).
  const changed = (): void => {
    if (queued || options.onChange === undefined) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      // Thrown out of a microtask it would end the process; in the informer's callback client-node swallowed it.
      try {
        options.onChange?.();
      } catch (e) {
        options.onError?.(e);
      }
    });
  };
  const take = (type: 'ADDED' | 'MODIFIED' | 'DELETED') => (obj: object) => {
    if (retired) return;
    const wire = toWire(obj) as Record<string, unknown>;
    const object = objectKind(wire) === undefined && wire.kind === undefined ? { ...wire, kind: options.kind, apiVersion: options.apiVersion } : wire;
    mirror.observe({ type, object }, source);
    changed();
  };
  informer.on('add', take('ADDED'));
  informer.on('update', take('MODIFIED'));
  informer.on('delete', take('DELETED'));
  // client-node's informer emits `connect` before each list or resumed watch, and stops on an error
  // other than a 410 (dist/cache.js `doneHandler`): down from the error until it connects again.
  informer.on('connect', () => {
    if (!retired) mirror.informerConnected(source);
  });
  informer.on('error', (err?: unknown) => {
    if (!retired) mirror.informerFailed(source);
    options.onError?.(err);
  });
  return {
    source,
    retire: () => {
      retired = true;
      mirror.retireInformer(source);
    },
  };
}

/** What `replayGuard` needs of a `@kubernetes/client-node` `Watch`: its `watch` call (structural). */
export interface WatchLike {
  watch(path: string, queryParams: Record<string, string | number | boolean | undefined>, callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void, done: (err: unknown) => void): Promise<unknown>;
}

const recordOf = (v: unknown): Readonly<Record<string, unknown>> => (typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {});

/** What the guard does with a watch event: pass it on, drop it, or drop it and make the informer relist. */
type Verdict = 'pass' | 'drop' | 'relist';

const rvOf = (m: Readonly<Record<string, unknown>>): string | undefined => (typeof m.resourceVersion === 'string' ? m.resourceVersion : undefined);

/**
 * The version a watch started at when it bounds its events: a watch from a resourceVersion other than "0" gives "all
 * changes that occurred after" it (Kubernetes API concepts, "Semantics for watch"), so an event at it or older is a
 * replay (finding 3721). Undefined for '' or "0" (synthetic ADDEDs of the current state, any version) or a version
 * that is not an integer.
 */
function boundOf(queryParams: Readonly<Record<string, unknown>>): string | undefined {
  const rv = queryParams.resourceVersion;
  return typeof rv === 'string' && isDecimalVersion(rv) && compareDecimal(rv, '0') > 0 ? rv : undefined;
}

/**
 * An ADDED, MODIFIED or DELETED of an object: dropped when at or below the watch's start (`bound`) or older than the
 * version of it `held` returns (a DELETED: older; an add or update: not newer); at versions that cannot be ordered, one
 * of another uid than the held object (3720): a DELETED is dropped (it deletes its own incarnation), an add or update
 * on a watch started at a version makes the informer relist (`resumed`: in order, the held one's DELETED would have
 * come first, so it is a replay; or the held one is a replay that passed unjudged, which only a List corrects).
 */
function judge(phase: string, obj: unknown, held: (name: string, namespace: string | undefined) => unknown, bound: string | undefined, resumed: boolean, forced: ForcedRelists): Verdict {
  if (phase !== 'ADDED' && phase !== 'MODIFIED' && phase !== 'DELETED') return 'pass';
  const md = recordOf(recordOf(obj).metadata);
  const rv = rvOf(md);
  if (bound !== undefined && isDecimalVersion(rv) && compareDecimal(rv, bound) <= 0) return 'drop';
  if (typeof md.name !== 'string') return 'pass';
  const cached = recordOf(held(md.name, typeof md.namespace === 'string' ? md.namespace : undefined));
  const cachedMd = recordOf(cached.metadata);
  if (stale(rv, rvOf(cachedMd), phase === 'DELETED')) return 'drop';
  if (!otherIncarnation(uidOf(obj), rv, uidOf(cached), rvOf(cachedMd))) return 'pass';
  if (phase === 'DELETED') return 'drop';
  return resumed ? forced.verdict(JSON.stringify([md.namespace, md.name, uidOf(obj), rv, uidOf(cached), rvOf(cachedMd)])) : 'pass';
}

/** At most so many forced relists are remembered (`ForcedRelists`): a replay older than them may cost one List again. */
const maxForcedRelists = 1024;

/**
 * The replays a guard made its informer relist for, each with the incarnation and version it held then (finding 3921).
 * Met again with the held object unchanged, the List since confirmed that one (a relist keeps a cached object only when
 * it lists it at that version): the event is a replay, dropped. Without this a server replaying at each watch start
 * kept its informer listing for good.
 */
class ForcedRelists {
  private readonly seen = new Set<string>();

  verdict(event: string): Verdict {
    if (this.seen.has(event)) return 'drop';
    if (this.seen.size >= maxForcedRelists) this.seen.delete(this.seen.values().next().value as string);
    this.seen.add(event);
    return 'relist';
  }
}

/**
 * What `judge` says; 'pass' when it throws (a `held` given as an unbound `informer.get`): client-node's `Watch`
 * ignores what its callback throws (dist/watch.js, the `line` handler), so a throw here dropped every event (3600).
 */
function judged(verdict: () => Verdict): Verdict {
  try {
    return verdict();
  } catch {
    return 'pass';
  }
}

/** What `ListWatch.doneHandler` takes for a 410 Gone: it lists again and watches from the List's version. */
const relistNeeded = (): Error => Object.assign(new Error('replayGuard: an event of another incarnation than the cached object, at versions that cannot be ordered: relisting'), { statusCode: 410 });

/**
 * A `Watch` for client-node's `ListWatch` that drops a watch event older than the version of its object the informer
 * holds (`held`: the informer's `get(name, namespace)`) or not newer than the version the watch started at (3721).
 * Build the informer with it (`new ListWatch(path, replayGuard(new Watch(kc), (n, ns) => informer.get(n, ns)), listFn,
 * false)`) when its server may replay events (finding 3203): client-node's cache removes an object on any DELETED of its
 * name, whatever the version (dist/cache.js `deleteObject`), and replaces it with any version that differs, older too
 * (`addOrUpdateObject`, `isSameVersion`). A replayed DELETED of an older incarnation thus empties the cache of the live
 * object, and its genuine DELETED later calls nothing: the mirror kept the deleted object. On a stream in order no event
 * of an object is older than the version the informer holds of it (listed at or below the List's version, or watched
 * before), so what is dropped is a replay; the informer's resume point is not moved back by it either (`watchHandler`
 * sets it from every event it reads). Versions that are not integers are not ordered: there the object's uid tells a
 * replay of another incarnation (3720, `judge`); an add or update of one ends the watch as a 410 would, so the
 * informer relists (each such event costs a List). When `held` throws, the event passes as it would without the guard (3600).
 */
export function replayGuard<W extends WatchLike>(watch: W, held: (name: string, namespace: string | undefined) => unknown): W {
  const guarded = Object.create(watch) as W;
  const forced = new ForcedRelists();
  const call: WatchLike['watch'] = (path, queryParams, callback, done) => {
    const bound = boundOf(queryParams);
    const resumed = typeof queryParams.resourceVersion === 'string' && queryParams.resourceVersion !== '' && queryParams.resourceVersion !== '0';
    let ended = false;
    // Once: after a relist it forces, the aborted request's own end is not the informer's.
    const end = (err: unknown): void => {
      if (ended) return;
      ended = true;
      done(err);
    };
    return watch.watch(path, queryParams, (phase, obj, raw) => {
      if (ended) return;
      const verdict = judged(() => judge(phase, obj, held, bound, resumed, forced));
      if (verdict === 'pass') callback(phase, obj, raw);
      else if (verdict === 'relist') end(relistNeeded());
    }, end);
  };
  Object.defineProperty(guarded, 'watch', { value: call });
  return guarded;
}

/** What `makeGuardedInformer` needs of `@kubernetes/client-node`: its `Watch` and `ListWatch` classes (pass the module). */
export interface InformerClasses<K, W extends WatchLike, L extends { get(name: string, namespace?: string): unknown }, F> {
  readonly Watch: new (kubeconfig: K) => W;
  readonly ListWatch: new (path: string, watch: W, listFn: F, autoStart?: boolean, labelSelector?: string, fieldSelector?: string) => L;
}

/**
 * client-node's `makeInformer` with its watch behind `replayGuard` (finding 3603: `makeInformer` builds its own `Watch`,
 * dist/informer.js, so its informer cannot be guarded): `makeGuardedInformer(k8s, kc, path, listFn)` with `k8s` the
 * client-node module. Not started, as `makeInformer`'s (`autoStart` false): call `start()` once `watchInformer` took it.
 */
export function makeGuardedInformer<K, W extends WatchLike, L extends { get(name: string, namespace?: string): unknown }, F>(
  client: InformerClasses<K, W, L, F>,
  kubeconfig: K,
  path: string,
  listFn: F,
  labelSelector?: string,
  fieldSelector?: string,
): L {
  const built: { informer?: L } = {};
  const watch = replayGuard(new client.Watch(kubeconfig), (name, ns) => built.informer?.get(name, ns));
  built.informer = new client.ListWatch(path, watch, listFn, false, labelSelector, fieldSelector);
  return built.informer;
}
