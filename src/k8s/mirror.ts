import { ciliumAgentOptions, type CiliumAgentOptions, type ParseOptions } from '../policy/manifest.js';
import { EngineBatches, type MirrorBatch } from './engine-batches.js';
import { DeferredLog } from './deferred-log.js';
import { keptOnUnreadable, meaningOf, objectKey, rec, unreadablePodMeaning, type Held, type LogFn, type ReadContext } from './held.js';
import { ListPages, otherKindSkipped, type Listed } from './list-pages.js';
import { ObjectStates, type ObjectState } from './object-states.js';
import { KnownKind, objectKind } from './objects.js';
import { otherIncarnation, stale, uidOf } from './resource-version.js';
import { steadyClock } from './steady-clock.js';
import { StreamVersions } from './stream-versions.js';
import type { ListHeader, WatchItem } from './watch.js';

type WatchEvent = Exclude<WatchItem, { type: 'LIST' | 'LIST_ITEM' }>;

/** An object's resourceVersion, when it is a string. */
const versionOf = (obj: Readonly<Record<string, unknown>>): string | undefined => {
  const rv = rec(obj.metadata).resourceVersion;
  return typeof rv === 'string' ? rv : undefined;
};

/** A BOOKMARK ending a watch-list watch's initial events (KEP-3157: `metav1.InitialEventsAnnotationKey`). */
const initialEventsEnd = (obj: Readonly<Record<string, unknown>>): boolean => rec(rec(obj.metadata).annotations)['k8s.io/initial-events-end'] === 'true';

export type { MirrorBatch } from './engine-batches.js';

/**
 * Options of a ClusterMirror. Cilium's agent options (`CiliumAgentOptions`) say how policies read:
 * without `nodeSelectorLabels`, `toNodes`/`fromNodes` get the fail-closed stand-in.
 */
export interface MirrorOptions extends CiliumAgentOptions {
  /** The node whose pods are local endpoints (`spec.nodeName`). */
  readonly nodeName: string;
  /** Called for what is skipped (unknown kinds, stale or duplicate events, bookmarks, errors). */
  readonly debug?: (msg: string, fields: Readonly<Record<string, unknown>>) => void;
  /** Called for ERROR watch events and objects that cannot be read (the object is skipped). */
  readonly warn?: (msg: string, fields: Readonly<Record<string, unknown>>) => void;
  /**
   * The clock (ms since the epoch; default `Date.now`): a pod being deleted stays an endpoint
   * until its `deletionTimestamp`, and `flush` removes the ones whose time has come.
   */
  readonly now?: () => number;
  /**
   * A monotonic clock (ms, any origin; default `performance.now` when `now` is not given): between
   * two readings the mirror's clock advances at least by the time it measures, so an NTP step back
   * does not delay a deletion (a step forward is followed: deletions come earlier, never later).
   */
  readonly elapsed?: () => number;
  /**
   * How many deleted objects keep their last resourceVersion (to drop a replayed older event),
   * oldest forgotten first (default 10,000). Without a bound, every pod name ever deleted stayed.
   */
  readonly maxTombstones?: number;
  /**
   * `true`: the streams carry every CiliumCIDRGroup from the start (a cluster may have none, and an
   * empty List or watch names no kind), so `cidrGroupRef`/`cidrGroupSelector` peers read at once.
   * Otherwise they read once a CiliumCIDRGroup object, typed List or bookmark arrived, and until
   * then as the fail-closed stand-in: a deny naming a group is never dropped because the agent
   * was not fed the groups (finding 2042).
   */
  readonly cidrGroups?: boolean;
  /** `true`: pod identities come from outside (ParseOptions.identitySplits `false`: attack finding 2247). */
  readonly externalIdentities?: boolean;
}

/**
 * The cluster as watch streams describe it, and as the engine holds it. Watch events and relists
 * update the first; `flush` gives the minimal events that bring the engine to it: unchanged
 * objects (a replayed or duplicated event, a status-only update, a relist of what is held) give
 * none, events older than the object's last resourceVersion are dropped, and a relist deletes what
 * it no longer lists. Several streams (one per kind) may feed one mirror.
 *
 * The parts: `ObjectStates` (object-states.ts: what the streams describe, versions, tombstones,
 * namespaces, deadlines), `ListPages` (list-pages.ts: Lists and their pages until the last),
 * `meaningOf` (held.ts: what an object means to the engine) and `EngineBatches`
 * (engine-batches.ts: what the engine holds, the batches to it and their retries).
 */
export class ClusterMirror {
  private readonly states: ObjectStates;
  private readonly batches: EngineBatches;
  private readonly lists: ListPages;
  /**
   * True once a Namespace was listed or watched: from then on a pod waits for its namespace (see
   * `EngineBatches.awaitNamespaces`). Without a namespace stream pods carry only their namespace's name.
   */
  private namespacesWatched = false;
  /** True once CiliumCIDRGroup objects are known to be watched (`MirrorOptions.cidrGroups`). */
  private groupsWatched: boolean;
  /** The kinds each stream (by source) carried: what its empty `List` relists (`relist`). */
  private readonly streamKinds = new Map<string, Set<string>>();
  /**
   * Streams (by source) whose watch reported an ERROR and that were not relisted since: events
   * may have been lost (client-go's reflector ends the watch on an ERROR event and relists).
   */
  private readonly awaitingRelist = new Set<string>();
  /** Streams that completed a List or a watch-list (its initial-events-end bookmark): they showed a whole view once. */
  private readonly relisted = new Set<string>();
  /**
   * Keys of the objects each stream's events left there (held or meaning nothing to the engine) since its last ERROR,
   * List or initial-events-end bookmark (bounded by the live states): what such a bookmark keeps (`bookmark`).
   */
  private readonly watchedSince = new Map<string, Set<string>>();
  /**
   * Informer streams (`watchInformer`) whose informer reported an error and did not connect again
   * since: client-node's informer stops on an error other than a 410 and loses what happens until
   * it is started again (finding 1641).
   */
  private readonly informersDown = new Set<string>();
  /**
   * Informer streams, one informer each (`fedByInformer`): client-node's informer gives its relists as adds, updates
   * and deletes of the differences, in any order and without a mark of their end, so its events are never known to be
   * in order (`StreamVersions.ordered`); an informer is a whole view from its first List (`soleInformer`).
   */
  private readonly informerSources = new Set<string>();
  /**
   * Informer streams → keys whose object a replayed DELETED took out of the informer's cache (`lostByInformer`) → the
   * version the mirror held then: while its state stays so, the object is held fail-closed (`unreported`).
   */
  private readonly lostKeys = new Map<string, Map<string, string | undefined>>();
  /**
   * Objects a retired informer last gave (`retireInformer`) → it and their version then: held fail-closed until a stream
   * gives them at that version or newer, or deletes them (finding 3702).
   */
  private readonly orphaned = new Map<string, { source: string; rv: string | undefined }>();
  /**
   * Objects a raw stream's event of another incarnation met (`ofAnotherIncarnation`, finding 3920) → the stream that set
   * their state and its incarnation then: the held one may be a replay the mirror took (3722, 3723) as well as the event,
   * so it is held fail-closed while it is that incarnation (an event of it at another version may be a replay as well,
   * 3960) until a List of its kind from the stream that set its state last (3961, 3980).
   */
  private readonly conflicted = new Map<string, { source: string; uid: string }>();
  /** Informer names → the number of informers fed under each (`fedByInformer`): a retired source's name is not reused. */
  private readonly informerNames = new Map<string, number>();
  /** Informer streams → keys → the older version the informer's cache took from a replay (`informerCached`). */
  private readonly cachedOlder = new Map<string, Map<string, string>>();
  /**
   * Streams after an ERROR: their ADDED events since, by object key (the last that is not stale
   * counts), held until it is known whether they are initial events (`holdInitial`).
   */
  private readonly initialEvents = new Map<string, Map<string, WatchEvent>>();
  /** The newest resourceVersion each stream showed: a relist older than it is refused (finding 1750). */
  private readonly versions = new StreamVersions();
  private readonly now: () => number;
  private readonly debug: LogFn;
  private readonly warn: LogFn;
  /** Holds the log callbacks while `observe`, `endStream`, `expire` or `flush` changes state. */
  private readonly log = new DeferredLog();
  /** Counts of what was read, for metrics and summaries. */
  readonly counts = { events: 0, stale: 0, ignored: 0, errors: 0, invalid: 0, relists: 0 };

  /** How objects read: the node, the clock, and only the Cilium agent options that differ from Cilium's defaults. */
  private readonly reading: ReadContext;

  constructor(options: MirrorOptions) {
    // Policies read their group peers (and, beside, as the stand-in: `effectiveHeld` picks one).
    const parseOptions: ParseOptions = { ...ciliumAgentOptions(options), cidrGroups: true, served: true, ...(options.externalIdentities === true ? { identitySplits: false } : {}) };
    this.groupsWatched = options.cidrGroups === true;
    this.debug = this.log.wrap(options.debug ?? (() => {}));
    this.warn = this.log.wrap(options.warn ?? (() => {}));
    this.now = steadyClock(options.now ?? Date.now, options.elapsed ?? (options.now ? undefined : () => performance.now()));
    this.reading = { nodeName: options.nodeName, now: this.now, parseOptions, debug: this.debug, warn: this.warn, groupsRead: () => this.batches.groupsReadable(this.groupsWatched) };
    this.states = new ObjectStates(
      options.maxTombstones ?? 10_000,
      (key) => this.batches.changed(key),
      this.debug,
      (key) => this.batches.reread(key),
      (key, state) => this.versions.pastOn(key, state.rv, state.source),
      (ns) => this.versions.namespaceGone(ns),
    );
    this.batches = new EngineBatches(this.states, this.debug, this.warn, (key) => this.unreported(key));
    this.lists = new ListPages({
      read: (obj, source) => this.readListed(obj, source),
      complete: (listed, header, rv, source) => this.relist(listed, header, rv, source),
      cutShort: (source) => this.awaitRelist(source),
      debug: this.debug,
      warn: this.warn,
    });
  }

  /** The mirror's clock (ms since the epoch): never backwards, never slower than `elapsed`. */
  clock(): number {
    return this.now();
  }

  /** Takes one item of a watch stream; `source` names it in logs (called once the item is taken). */
  observe(item: WatchItem, source: string): void {
    this.log.during(() => this.take(item, source));
  }

  private take(item: WatchItem, source: string): void {
    if (item.type === 'LIST_ITEM' || item.type === 'LIST') this.initialEvents.delete(source);
    if (item.type === 'LIST_ITEM') return this.lists.item(item, source);
    this.counts.events++;
    if (item.type === 'LIST') return this.lists.page(item, source);
    this.lists.abort(source, `a ${item.type} event arrived before the List's last page`);
    if (this.holdInitial(item, source)) return;
    this.observeEvent(item, source);
  }

  /**
   * After an ERROR the stream's ADDED events may be a watch-list's initial events (a relist):
   * client-go collects them in a temporary store and applies them at once at the initial-events-end
   * bookmark (tools/cache/reflector.go `watchList`: `r.store.Replace(temporaryStore.List(), ...)`).
   * Applied as they came, a transaction saw half of them: states the cluster never had (a policy's
   * new allow without the new deny read after it, finding 1340). So they are held until that
   * bookmark; a MODIFIED or a DELETED shows a watch resumed instead (from the last resourceVersion,
   * as client-go does after a 429 or a retriable 500), and what was held applies then, in order.
   * Another ERROR, a List, the stream's end or an end bookmark of a kind distill does not read
   * drops them (client-go retries "with clean state").
   * True when `item` was held.
   */
  private holdInitial(item: WatchEvent, source: string): boolean {
    const held = this.initialEvents.get(source);
    if (held === undefined) return false;
    if (item.type === 'ADDED') return this.holdAdded(held, item, source);
    if (item.type === 'BOOKMARK' && !initialEventsEnd(item.object)) return false;
    this.initialEvents.delete(source);
    // The bookmark is checked against the held events too: none of them applies when it is older than one.
    for (const e of held.values()) this.versions.note(source, versionOf(e.object));
    if (item.type === 'BOOKMARK' && objectKind(item.object) !== undefined && this.refusedAsOlder(source, versionOf(item.object), 'initial events', held.size)) return true;
    // An end bookmark of a kind distill does not read relists nothing: its events without the relist's deletes would be a state the cluster never had (1481).
    const unreadableEnd = item.type === 'BOOKMARK' && objectKind(item.object) === undefined;
    if (item.type !== 'ERROR' && !unreadableEnd) for (const e of held.values()) this.observeEvent(e, source);
    else if (unreadableEnd && held.size > 0) this.warn('initial events ended by a bookmark of a kind distill does not read: they are dropped (a relist is needed)', { source, events: held.size });
    return false;
  }

  /**
   * Holds an ADDED by its object's key, as client-go's `temporaryStore` (a Store keyed by
   * `DeletionHandlingMetaNamespaceKeyFunc`, reflector.go `watchList`) keeps one object per key:
   * what is held is bounded by the objects named, not by the events sent (finding 1640). Of two
   * ADDEDs of one object the one applying them in order would leave counts: the later, unless it
   * is stale against the earlier. An object of a kind distill does not read passes (it is ignored).
   */
  private holdAdded(held: Map<string, WatchEvent>, item: WatchEvent, source: string): boolean {
    const kind = objectKind(item.object);
    if (kind === undefined) return false;
    const key = objectKey(kind, item.object);
    const rvOf = (e: WatchEvent): unknown => rec(e.object.metadata).resourceVersion;
    const rv = rvOf(item);
    const before = held.get(key);
    const beforeRv = before && rvOf(before);
    if (before !== undefined && stale(typeof rv === 'string' ? rv : undefined, typeof beforeRv === 'string' ? beforeRv : undefined, false)) {
      this.counts.stale++;
      this.debug('stale or duplicate event dropped', { source, key, resourceVersion: rv, held: beforeRv });
      return true;
    }
    held.delete(key);
    held.set(key, item);
    return true;
  }

  /**
   * Events may have been lost on `source` (an ERROR, a List cut short): it awaits a relist, and its
   * ADDED events from now on may be a watch-list's initial events (`holdInitial`), and only they
   * count at its end bookmark (client-go's `temporaryStore`). After a failed
   * List client-go lists again (reflector.go `ListAndWatchWithContext` returns the `list` error and
   * `RunWithContext`'s `wait.BackoffUntil` starts it over), by a watch-list watch when its
   * WatchListClient feature is on, so what follows a List cut short is held as after an ERROR (1480).
   */
  private awaitRelist(source: string): void {
    this.awaitingRelist.add(source);
    this.versions.unordered(source);
    this.watchedSince.delete(source);
    this.initialEvents.set(source, new Map());
  }

  private observeEvent(item: WatchEvent, source: string): void {
    if (item.type === 'BOOKMARK') return this.bookmark(item.object, source);
    if (item.type !== 'ERROR') this.versions.note(source, rec(item.object.metadata).resourceVersion);
    if (item.type === 'ERROR') {
      this.counts.errors++;
      this.awaitRelist(source);
      return this.warn('watch stream error (a relist is needed to recover what it lost)', { source, status: item.object });
    }
    const deleted = item.type === 'DELETED';
    const key = this.observeObject(item.object, deleted, source);
    if (key === undefined) return;
    const kind = key.slice(0, key.indexOf('/'));
    this.kindsOf(source).add(kind);
    // Synthetic initial events are ADDED only: a MODIFIED or a DELETED is of the watch proper (not so for an informer's relist).
    if (item.type !== 'ADDED' && !this.informerSources.has(source)) this.versions.ordered(source, kind);
    const seen = this.watchedSince.get(source) ?? new Set<string>();
    this.watchedSince.set(source, seen);
    // By what exists after the event: a stale DELETED dropped leaves its object, kept; one that means nothing to the
    // engine (a Pending pod) is kept too, or the end bookmark buried it (finding 2842).
    if (!this.states.exists(key)) seen.delete(key);
    else seen.add(key);
  }

  /**
   * A BOOKMARK names its stream's kind: a Namespace one means pods wait for their namespace from
   * now on (a stream resumed at a resourceVersion may start with it, 993). One annotated
   * `k8s.io/initial-events-end: "true"` ends the initial events of a watch with
   * `sendInitialEvents=true` (KEP-3157 watch-list): client-go's reflector (tools/cache/reflector.go
   * `watchList`) replaces its store with what that watch gave at that bookmark, a relist of the
   * bookmark's kind: what the stream's events since its last ERROR, List or such bookmark left
   * (a superset of the initial events, as the watch's start is not on the stream) is kept, the
   * rest of the kind deleted (finding 1140).
   */
  private bookmark(obj: Readonly<Record<string, unknown>>, source: string): void {
    const md = rec(obj.metadata);
    const kind = objectKind(obj);
    this.debug('bookmark', { source, resourceVersion: md.resourceVersion });
    if (kind === 'Namespace') this.namespacesWatched = true;
    if (kind === 'CiliumCIDRGroup') this.groupsWatched = true;
    if (!initialEventsEnd(obj)) return this.versions.note(source, md.resourceVersion);
    if (kind === undefined) return this.warn('initial-events-end bookmark of a kind distill does not read: ignored', { source, apiVersion: obj.apiVersion, kind: obj.kind });
    if (this.refusedAsOlder(source, versionOf(obj), 'initial-events-end bookmark', 0)) return;
    this.versions.note(source, md.resourceVersion);
    this.versions.viewed(source, kind, md.resourceVersion);
    const seen = this.watchedSince.get(source) ?? new Set<string>();
    this.watchedSince.delete(source);
    this.counts.relists++;
    this.awaitingRelist.delete(source);
    this.relisted.add(source);
    this.kindsOf(source).add(kind);
    this.states.dropUnlisted(new Set([kind]), seen, typeof md.resourceVersion === 'string' ? md.resourceVersion : undefined, source);
  }

  /**
   * The stream ended (or became unreadable): a List it was reading is cut short and relists
   * nothing (client-go's reflector drops a list that fails half-way and lists again).
   */
  endStream(source: string): void {
    this.log.during(() => this.streamEnded(source));
  }

  private streamEnded(source: string): void {
    this.lists.abort(source, 'the stream ended before the List\'s last page');
    this.versions.ended(source);
    const held = this.initialEvents.get(source)?.size ?? 0;
    this.initialEvents.delete(source);
    if (held > 0) this.warn('stream ended before the end of its initial events: they are dropped (a relist is needed)', { source, events: held });
  }

  /** Streams reading a List (paged or not) that is not complete yet (sorted). */
  listsInProgress(): string[] {
    return this.lists.inProgress();
  }

  /** An object's kind, key and resourceVersion; undefined (counted, logged) for a kind distill does not read. */
  private identify(obj: Readonly<Record<string, unknown>>, source: string): { kind: KnownKind; key: string; rv: string | undefined; uid: string | undefined } | undefined {
    // A CiliumCIDRGroup at a cilium.io version distill does not know is a group it cannot read (finding 2045):
    // ignored, its prefixes and labels (which may name another group) would be missing from every group peer.
    const kind = objectKind(obj) ?? (obj.kind === 'CiliumCIDRGroup' && typeof obj.apiVersion === 'string' && obj.apiVersion.startsWith('cilium.io/') ? 'CiliumCIDRGroup' : undefined);
    if (kind === undefined) {
      this.counts.ignored++;
      this.debug('ignored object of unknown kind', { source, apiVersion: obj.apiVersion, kind: obj.kind });
      return undefined;
    }
    if (kind === 'CiliumCIDRGroup') this.groupsWatched = true;
    const rv = rec(obj.metadata).resourceVersion;
    return { kind, key: objectKey(kind, obj), rv: typeof rv === 'string' ? rv : undefined, uid: uidOf(obj) };
  }

  /** A listed object, read now (`ListPages`): unreadable, it is counted and logged. */
  private readListed(obj: Readonly<Record<string, unknown>>, source: string): { key: string; rv: string | undefined; uid: string | undefined; desired: Held | undefined; unreadable: boolean } | undefined {
    const id = this.identify(obj, source);
    if (id === undefined) return undefined;
    const { kind, key, rv, uid } = id;
    try {
      return { key, rv, uid, desired: meaningOf(kind, obj, source, this.reading), unreadable: false };
    } catch (e) {
      this.counts.invalid++;
      this.warn('listed object cannot be read: the last readable version of a policy, namespace or identity stays in force', { source, key, error: (e as Error).message });
      return { key, rv, uid, desired: kind === 'Pod' ? unreadablePodMeaning(obj, this.reading) : undefined, unreadable: true };
    }
  }

  private kindsOf(source: string): Set<string> {
    let kinds = this.streamKinds.get(source);
    if (!kinds) this.streamKinds.set(source, (kinds = new Set()));
    return kinds;
  }

  private observeObject(obj: Record<string, unknown>, deleted: boolean, source: string): string | undefined {
    const id = this.identify(obj, source);
    if (id === undefined) return undefined;
    const { kind, key, rv: rvs } = id;
    if (kind === 'Namespace') this.namespacesWatched = true;
    this.versions.noteObject(source, key, rvs);
    const state = this.states.get(key);
    const cachedOlder = deleted && this.informerCachedOlder(source, key, rvs);
    if (this.replayed(id, source, deleted, cachedOlder)) return key;
    if (cachedOlder) this.debug('informer deleted the older version its cache took from a replay: a delete', { source, key, resourceVersion: rvs, held: state?.rv });
    let desired: Held | undefined;
    try {
      desired = deleted ? undefined : meaningOf(kind, obj, source, this.reading);
    } catch (e) {
      this.counts.invalid++;
      desired = keptOnUnreadable(key, state?.desired, () => (kind === 'Pod' ? unreadablePodMeaning(obj, this.reading) : undefined));
      const msg = desired ? 'object update skipped: it cannot be read; the last readable version stays in force' : 'object skipped: it cannot be read';
      this.warn(msg, { source, key, error: (e as Error).message });
    }
    if (desired !== undefined && this.states.beforeNamespaceDeletion(desired, rvs)) {
      this.counts.stale++;
      this.debug('event older than its namespace\'s deletion dropped', { source, key, resourceVersion: rvs });
      return key;
    }
    this.states.set(key, cachedOlder ? state?.rv : (rvs ?? state?.rv), desired, source, id.uid);
    if (deleted) this.states.bury(key);
    if (deleted && kind === 'Namespace') this.states.namespaceGone(key.slice('Namespace//'.length), rvs);
    return key;
  }

  /**
   * True (counted, logged) when an event of `key` at `rv` is stale against its state (`deleted`: a DELETED, kept if
   * not older, or if it deletes the older version an informer's cache took, `cachedOlder`), or an ADDED or MODIFIED of
   * an object with no state or a tombstone not newer than a forgotten tombstone of its stream.
   */
  private replayed({ kind, key, rv, uid }: { kind: string; key: string; rv: string | undefined; uid: string | undefined }, source: string, deleted: boolean, cachedOlder: boolean): boolean {
    const state = this.states.get(key);
    if (state !== undefined && (stale(rv, state.rv, deleted) || this.ofAnotherIncarnation(state, key, uid, rv, deleted, source, kind)) && !cachedOlder) {
      this.counts.stale++;
      this.debug('stale or duplicate event dropped', { source, key, resourceVersion: rv, held: state.rv });
      this.informerCached(source, key, deleted || rv === state.rv ? undefined : rv);
      if (deleted && state.source === source && this.informerSources.has(source) && this.states.exists(key)) this.lostByInformer(source, key, rv, state.rv);
      else if (!deleted && rv === state.rv) this.informerHolds(source, key);
      else if (!stale(rv, state.rv, deleted) && state.source !== undefined && !this.informerSources.has(state.source)) this.incarnationsConflict(state, key, rv);
      return true;
    }
    this.informerCached(source, key, undefined);
    this.informerHolds(source, key);
    const known = this.versions.known(source, kind) || this.soleInformer(source);
    // A tombstone may be older than the bound (a delete of an object with no state, at an informer's cached version:
    // finding 3202): it stands for no newer write than the bound does.
    const gone = state === undefined || !this.states.exists(key);
    if (!gone || deleted || !known) return false;
    const forgotten = this.states.forgottenSince(source, kind, rv);
    const view = forgotten === undefined ? this.versions.viewedSince(source, kind, rv) : undefined;
    if (forgotten === undefined && view === undefined) return false;
    this.counts.stale++;
    if (forgotten !== undefined) this.debug('event older than a forgotten tombstone of its stream and kind dropped (a replay)', { source, key, resourceVersion: rv, forgotten });
    else this.debug('event of an object absent from its stream\'s whole view of a newer version dropped (a replay)', { source, key, resourceVersion: rv, view });
    return true;
  }

  /**
   * True when an event of `key` is of another incarnation (another `metadata.uid`) than its live state, at versions
   * that cannot be ordered (`otherIncarnation`, finding 3720), and cannot apply: a DELETED, from any stream (it deletes
   * its own incarnation, never this one); an ADDED or MODIFIED on the stream that set the state while its events of the
   * kind are in order (a List or a MODIFIED/DELETED since its last ERROR, not an informer's: its relist gives a
   * re-created object as an update): on a watch in order the held incarnation's DELETED comes before any event of
   * another, so this one is a replay (a replayed ADDED of an old allow with the same name). From another stream it
   * may be that stream lagging or ahead: taken, as before.
   */
  private ofAnotherIncarnation(state: ObjectState, key: string, uid: string | undefined, rv: string | undefined, deleted: boolean, source: string, kind: string): boolean {
    if (!otherIncarnation(uid, rv, state.uid, state.rv) || !this.states.exists(key)) return false;
    return deleted || (state.source === source && this.versions.isOrdered(source, kind) && !this.informerSources.has(source));
  }

  /**
   * An informer gave a stale DELETED of a live object it fed (finding 3203): client-node calls back only once it removed
   * the object from its cache (dist/cache.js `deleteObject`, by name whatever the version), so it will not report the
   * object's deletion unless it gives the object again. Only `replayGuard` keeps such a replay out of its cache. Until
   * the informer gives it again at the mirror's version or newer, or another stream changes it, the object is held
   * fail-closed (`unreported`: it may be gone, finding 3700) and its source awaits a relist (3701); warned once (3601).
   */
  private lostByInformer(source: string, key: string, rv: string | undefined, held: string | undefined): void {
    let keys = this.lostKeys.get(source);
    if (!keys) this.lostKeys.set(source, (keys = new Map()));
    if (keys.has(key) && keys.get(key) === held) return;
    keys.set(key, held);
    this.batches.reread(key);
    this.warn('a replayed DELETED emptied the informer\'s cache of a live object: its deletion will not be reported until the informer gives it again, it is held fail-closed meanwhile (build the informer with makeGuardedInformer or replayGuard)', { source, key, resourceVersion: rv, held });
  }

  /**
   * A stream gave `key` at the mirror's version or newer: an informer feeding `source` holds it again (`lostByInformer`),
   * and one taking over from a retired informer reports it from now on (`retireInformer`): its source becomes `source`,
   * so its relists and a replay emptying its cache (`lostByInformer`) count for it.
   */
  private informerHolds(source: string, key: string): void {
    const keys = this.lostKeys.get(source);
    const found = keys?.delete(key) === true;
    if (keys?.size === 0) this.lostKeys.delete(source);
    const adopted = this.orphaned.delete(key);
    if (adopted) this.states.adopt(key, source);
    if (adopted || found) this.batches.reread(key);
  }

  /**
   * A raw stream's event of another incarnation than the held state was dropped (`ofAnotherIncarnation`): without versions
   * either may be the replay (the held one taken onto a tombstone, 3722, or from another stream, 3723), and keeping a
   * replayed allow against its name's genuine events would hold it for good (3920). Held fail-closed and its stream
   * awaiting a relist while the state is that incarnation (`relistedConflicts`).
   */
  private incarnationsConflict({ source, uid, rv: held }: ObjectState, key: string, rv: string | undefined): void {
    const before = this.conflicted.get(key);
    if (source === undefined || uid === undefined || (before?.source === source && before.uid === uid)) return;
    this.conflicted.set(key, { source, uid });
    this.batches.reread(key);
    this.warn('an event of another incarnation than the held object, at versions that cannot be ordered: the held one is held fail-closed until its stream relists', { source, key, resourceVersion: rv, held });
  }

  /** True when `key`'s stream may not report its deletion: its state is as when its informer lost it or retired. */
  private unreported(key: string): boolean {
    const state = this.states.get(key);
    if (state?.source === undefined || !this.states.exists(key)) return false;
    const keys = this.lostKeys.get(state.source);
    const orphan = this.orphaned.get(key);
    const conflict = this.conflicted.get(key);
    return (
      (keys?.has(key) === true && keys.get(key) === state.rv) ||
      (orphan !== undefined && orphan.source === state.source && orphan.rv === state.rv) ||
      (conflict !== undefined && conflict.uid === state.uid)
    );
  }

  /**
   * Drops the losses (`lostKeys`, `orphaned`) a later state of their object settled. Not at each flush (finding 3884:
   * a loop over every orphan, 5 ms a flush at 10,000): `unreported` reads the state, whose version only grows and which
   * a retired source never sets again, so a settled one holds nothing again (but an object forgotten and given again at
   * that very state, which it holds fail-closed); only `streamsAwaitingRelist` lists them. Pruned there and at each
   * retirement, they stay bounded by the live objects.
   */
  private pruneUnreported(): void {
    for (const [source, keys] of this.lostKeys) {
      for (const key of keys.keys()) if (this.states.get(key)?.source !== source || !this.unreported(key)) keys.delete(key);
      if (keys.size === 0) this.lostKeys.delete(source);
    }
    for (const key of this.orphaned.keys()) if (!this.unreported(key)) this.orphaned.delete(key);
    for (const key of this.conflicted.keys()) if (!this.unreported(key)) this.conflicted.delete(key);
  }

  /** Objects the mirror keeps a state of (live ones and at most `maxTombstones` deleted ones). */
  get size(): number {
    return this.states.size;
  }

  /**
   * Pods whose deletion grace period is over stop being endpoints: the next flush deletes them
   * (as a DELETED event would). `flush` calls it; returns how many there were.
   */
  expire(): number {
    return this.log.during(() => this.states.expire(this.now()));
  }

  /** The earliest deletionTimestamp (ms) of a pod still an endpoint, if any: when to flush next. */
  nextDeadline(): number | undefined {
    return this.states.nextDeadline();
  }

  /**
   * `source` relisted `kinds`: the states it set of them are its List's, their conflicts (`incarnationsConflict`) settled.
   * Those of the states another stream set since (an event of the held incarnation, 3960) stay: its List neither lists
   * nor drops them (`dropUnlisted` reads its own states only), so only that stream's relist speaks for them (3980).
   */
  private relistedConflicts(source: string, kinds: ReadonlySet<string>): void {
    for (const key of this.conflicted.keys()) {
      if (this.states.get(key)?.source !== source || !kinds.has(key.slice(0, key.indexOf('/')))) continue;
      this.conflicted.delete(key);
      this.batches.reread(key);
    }
  }

  /**
   * A relist: what the stream holds now. Held objects of its kinds (the list's, or its items')
   * that it does not list are deleted. `kubectl get -o json` prints every list as a plain `List`
   * (kubectl's get command builds one "for display"), so an empty one names no kind: it stands for
   * the kinds the stream carried. Without them, a relist after the last object of a kind was
   * deleted (e.g. in a watch gap after a 410 Gone) deleted nothing, and a deleted allow policy stayed.
   * A plain List is the whole stream's state also when it has items (`kubectl get pods,cnp` prints
   * one List for both): a kind it no longer lists is gone, not kept. A typed list (`PodList`)
   * speaks for its kind only: an item claiming another kind is skipped (its Go type holds only
   * the list's kind; client-go's reflector skips a watch event of another type), so it can
   * neither add a policy nor make the relist delete the objects of its kind.
   */
  private relist(listed: Map<string, Listed>, header: ListHeader, resourceVersion: string | undefined, source: string): void {
    if (this.refusedAsOlder(source, resourceVersion, 'List', listed.size, this.listedBehind(listed, source))) return;
    this.counts.relists++;
    this.awaitingRelist.delete(source);
    this.relisted.add(source);
    const kinds = header.itemKind === undefined ? new Set(this.streamKinds.get(source)) : new Set<string>();
    const listedKinds = new Set<string>();
    for (const [key, e] of listed) {
      // Items read before a late `kind` (kubectl sorts it after `items`) are checked now.
      if (otherKindSkipped(header.itemKind, e.rawKind, e.source, this.warn)) {
        listed.delete(key);
        continue;
      }
      if (typeof e.rawKind === 'string') listedKinds.add(e.rawKind);
      const state = this.states.get(key);
      this.versions.note(source, e.rv);
      this.versions.noteObject(source, key, e.rv);
      // Older than another stream showed it (each stream lags on its own): that stream's newer version stays.
      if (state !== undefined && stale(e.rv, state.rv, true)) {
        this.counts.stale++;
        continue;
      }
      const desired = e.unreadable ? keptOnUnreadable(key, state?.desired, () => e.desired) : e.desired;
      this.states.set(key, e.rv ?? state?.rv, desired !== undefined && this.states.beforeNamespaceDeletion(desired, e.rv) ? undefined : desired, source, e.uid);
    }
    for (const k of listedKinds) kinds.add(k);
    if (header.itemKind !== undefined) kinds.add(header.itemKind);
    this.warnKindsDropped(header, listedKinds, listed.size, source, kinds);
    for (const k of kinds) this.kindsOf(source).add(k);
    this.relistedConflicts(source, kinds);
    if (kinds.has('Namespace')) this.namespacesWatched = true;
    if (kinds.has('CiliumCIDRGroup')) this.groupsWatched = true;
    this.watchedSince.delete(source);
    this.versions.note(source, resourceVersion);
    // The watch after a List starts at the List's version (client-go reflector.go `ListAndWatchWithContext`): in order.
    for (const k of kinds) this.versions.viewed(source, k, resourceVersion);
    this.states.dropUnlisted(kinds, listed, resourceVersion, source);
  }

  /**
   * A version this stream showed of an object `listed` lists older (a List without a
   * resourceVersion, as kubectl prints them, is older than the stream's view when one of its
   * items is); undefined when none is.
   */
  private listedBehind(listed: ReadonlyMap<string, Listed>, source: string): string | undefined {
    for (const [key, e] of listed) {
      const state = this.states.get(key);
      if (state?.source === source && stale(e.rv, state.rv, true)) return state.rv;
    }
    return undefined;
  }

  /**
   * A relist (a List, or a watch-list's initial events at their end bookmark) at a version older
   * than `newest`, the newest its stream showed (`StreamVersions`), is refused: it cannot speak for
   * what the stream showed since (a deny created, an allow narrowed, a pod deleted after it), so
   * nothing of it applies and the stream awaits a relist that is not older (finding 1750).
   * `behind`: a newer version the stream showed found otherwise (`listedBehind`). True when refused.
   */
  private refusedAsOlder(source: string, rv: string | undefined, what: string, dropped: number, behind?: string): boolean {
    const newest = this.versions.behind(source, rv) ?? behind;
    if (newest === undefined) return false;
    this.counts.stale++;
    this.awaitRelist(source);
    this.warn(`${what} older than what its stream already showed: refused, the state stays (a relist that is not older is needed)`, { source, resourceVersion: rv, newest, objects: dropped });
    return true;
  }

  /**
   * A non-empty plain List that lists none of a kind its stream carried deletes every object of
   * that kind. That is right for a relist of one stream (`kubectl get pods,cnp`), wrong for
   * per-kind lists concatenated onto one stream (each would delete the kinds before it): the two
   * cannot be told apart, so the contract is one stream per resource type, and this says so loudly.
   */
  private warnKindsDropped(header: ListHeader, listedKinds: ReadonlySet<string>, listed: number, source: string, kinds: ReadonlySet<string>): void {
    if (header.itemKind !== undefined || listed === 0) return;
    const dropped = [...kinds].filter((k) => !listedKinds.has(k));
    if (dropped.length > 0) this.warn('a List without any object of a kind its stream carried deletes every object of that kind (feed one stream per resource type)', { source, kinds: dropped });
  }

  /**
   * Streams whose watch reported an ERROR and that were not relisted since, informer streams whose informer failed
   * and did not connect again, and informer streams whose cache lost a live object (`lostByInformer`: its deletion
   * would not be reported; it is held fail-closed until given again, finding 3701) (sorted).
   */
  streamsAwaitingRelist(): string[] {
    this.pruneUnreported();
    // The stream that set the held state now: its relist settles the conflict (`relistedConflicts`).
    const conflicts = [...this.conflicted].map(([key, c]) => this.states.get(key)?.source ?? c.source);
    return [...new Set([...this.awaitingRelist, ...this.informersDown, ...this.lostKeys.keys(), ...conflicts])].sort();
  }

  /**
   * Streams awaiting a relist that never showed a whole view (sorted): no List or watch-list of theirs
   * completed, so what they gave before their ERROR (or a List cut short) may be part of their objects,
   * e.g. an allow without the deny listed after it. A restart's first transaction waits for their
   * relist (findings 1751, 1753).
   */
  streamsWithoutView(): string[] {
    return [...this.awaitingRelist].filter((s) => !this.relisted.has(s)).sort();
  }

  /**
   * An informer feeds the mirror (`watchInformer`): its source name, `name` for the first informer under it, then
   * `name #2`, `name #3`... so each informer is a stream of its own (finding 3048); its events are never taken as in
   * order (`informerSources`).
   */
  fedByInformer(name: string): string {
    const n = (this.informerNames.get(name) ?? 0) + 1;
    this.informerNames.set(name, n);
    const source = n === 1 ? name : `${name} #${n}`;
    this.informerSources.add(source);
    return source;
  }

  /**
   * The informer feeding `source` is replaced or stopped for good (`InformerFeed.retire`, finding 3702): it leaves every
   * per-stream record, and what it last gave that exists is held fail-closed (`unreported`) until a stream gives it at
   * the mirror's version or newer (a new informer's first List gives every object it lists as an add: its cache starts
   * empty) or deletes it. What the new informer's List lacks thus never stays allowed: deleted while no informer ran,
   * no stream reports its deletion.
   */
  retireInformer(source: string): void {
    if (!this.informerSources.delete(source)) return;
    this.log.during(() => {
      this.pruneUnreported();
      for (const [key, rv] of this.states.liveOf(source)) {
        this.orphaned.set(key, { source, rv });
        this.batches.reread(key);
      }
      for (const set of [this.informersDown, this.awaitingRelist, this.relisted]) set.delete(source);
      for (const map of [this.lostKeys, this.cachedOlder, this.streamKinds, this.watchedSince, this.initialEvents]) map.delete(source);
      this.versions.retired(source);
      this.states.retired(source);
      this.debug('informer retired: what it gave is held fail-closed until a stream gives it again', { source, objects: this.orphaned.size });
    });
  }

  /**
   * What an informer's cache holds older than the mirror, by source and key (finding 3044): client-node's informer
   * replaces its cached object with any version that differs (dist/cache.js `addOrUpdateObject`, `isSameVersion`), so a
   * replayed older ADDED or MODIFIED, dropped here as stale, is what it holds; its relist then deletes that version
   * (`deleteItems` gives the cached object), which, older than the mirror's, was dropped too and the pod stayed.
   * `rv` undefined: its cache holds the mirror's version (or nothing).
   */
  private informerCached(source: string, key: string, rv: string | undefined): void {
    if (!this.informerSources.has(source)) return;
    const keys = this.cachedOlder.get(source);
    if (rv === undefined) {
      keys?.delete(key);
      if (keys?.size === 0) this.cachedOlder.delete(source);
    } else if (keys === undefined) this.cachedOlder.set(source, new Map([[key, rv]]));
    else keys.set(key, rv);
  }

  /** True when a DELETED of `key` at `rv` on `source` deletes the older version its informer's cache took (`informerCached`). */
  private informerCachedOlder(source: string, key: string, rv: string | undefined): boolean {
    return rv !== undefined && this.cachedOlder.get(source)?.get(key) === rv;
  }

  /**
   * True when an informer feeds `source` (one alone: `fedByInformer`): then an add or update of an object with no state
   * older than a forgotten tombstone of the stream is a replay (finding 3040). client-node's informer (dist/cache.js `ListWatch`)
   * starts with a List (its `resourceVersion` empty), watches from the List's version and resumes from the last
   * version it saw (`doneHandler`); its relist after a 410 gives the deletes first (`deleteItems`, at the versions it
   * held), then an add or update only of an object it does not hold at that version (`addOrUpdateObject`,
   * `isSameVersion`): one changed or created since, newer than every version it gave before the relist, so newer
   * than its forgotten tombstones; only the order within one relist is arbitrary. Two informers under one source
   * (one per namespace, or one replacing another) would see different objects: each has a source of its own (3048).
   */
  private soleInformer(source: string): boolean {
    return this.informerSources.has(source);
  }

  /**
   * An informer feeding `source` failed (`watchInformer`): events are lost until it connects again
   * (`informerConnected`). No hold starts (unlike an ERROR event): the informer's own relist comes
   * as adds, updates and deletes of the differences, in one turn of the event loop.
   */
  informerFailed(source: string): void {
    this.informersDown.add(source);
  }

  /** The informer feeding `source` connected (it relists, or resumes its watch from its last resourceVersion). */
  informerConnected(source: string): void {
    this.informersDown.delete(source);
  }

  /** True when no change waits for a flush. */
  get idle(): boolean {
    return this.batches.idle;
  }

  /**
   * Objects the engine refused on their own and still lacks (it keeps their previous version, or none), by key
   * (`Kind/namespace/name`), sorted: retried when they change or after the next commit (`EngineBatches.rollback`).
   */
  refusedObjects(): string[] {
    return this.batches.refusedObjects();
  }

  /** How many objects `refusedObjects` lists (no copy: read at every flush). */
  get refusedObjectCount(): number {
    return this.batches.refusedObjectCount;
  }

  /** How many CiliumCIDRGroup objects cannot be read: while some is, group peers read as the fail-closed stand-in. */
  get unreadableCidrGroups(): number {
    return this.batches.unreadableGroupCount;
  }

  /** Local endpoints the engine holds, as `namespace/name`. */
  localEndpoints(): string[] {
    return this.batches.localEndpoints();
  }

  /**
   * The minimal events from what the engine holds to what the streams describe: namespace and
   * policy upserts first (so pods land on their policy at once), then pod changes, then deletes of
   * policies and namespaces. Commit or roll back the batch before the next flush: a flush while a
   * batch with events is open throws (and changes nothing), as does settling a batch twice.
   */
  flush(): MirrorBatch {
    this.batches.checkSettled();
    return this.log.during(() => {
      this.expire();
      return this.batches.flush(this.namespacesWatched, this.groupsWatched);
    });
  }
}
