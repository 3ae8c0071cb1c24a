import type { EngineEvent } from '../engine/events.js';
import { nodeEndpointsOf, type Pod } from '../model/cluster.js';
import type { IpAddress } from '../model/cidr.js';
import type { Policy } from '../model/rules.js';
import { ciliumAgentOptions, parseManifest, type CiliumAgentOptions, type ParseOptions } from '../policy/manifest.js';
import { failClosedStandIn } from '../policy/stand-in.js';
import { apiServerSliceOf, ciliumNodeOf, identityOf, IdentityEvent, KnownKind, namespaceOf, NodeAddresses, nodeOf, objectKind, podEndpoint } from './objects.js';
import type { ListHeader, WatchItem } from './watch.js';

/** What an agent feeds its engine: engine events, and identity events (external identities). */
export type AgentEvent = EngineEvent | IdentityEvent;

/** Options of a ClusterMirror. */
/** Cilium's agent options (`CiliumAgentOptions`) say how policies read: without `nodeSelectorLabels`, `toNodes`/`fromNodes` get the fail-closed stand-in. */
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
}

/** The events of one flush, to be applied as one transaction, then committed or rolled back. */
export interface MirrorBatch {
  readonly events: readonly AgentEvent[];
  /** The engine applied the events: the mirror now holds what they describe. */
  commit(): void;
  /**
   * The engine refused them: the mirror keeps what the engine holds. The objects are retried: a
   * refused batch of several objects in halves, in its order (so one object the engine refuses
   * cannot hold back the others), a refused single object when it changes or after the next
   * committed change (what it conflicted with may have gone).
   */
  rollback(): void;
}

/** What one object means to the engine, with a signature: equal signatures, no event. */
type Held =
  | { readonly kind: 'Namespace'; readonly name: string; readonly labels: Readonly<Record<string, string>>; readonly sig: string }
  | { readonly kind: 'Pod'; readonly pod: Pod; readonly local: boolean; readonly deleteAt: number | undefined; readonly sig: string }
  | { readonly kind: 'Policy'; readonly policy: Policy; readonly sig: string }
  | { readonly kind: 'Identity'; readonly id: number; readonly labels: Readonly<Record<string, string>>; readonly sig: string }
  | { readonly kind: 'Node'; readonly node: NodeAddresses; readonly sig: string }
  /** An EndpointSlice of default/kubernetes: its addresses are the API server's (`apiServerEvent`). */
  | { readonly kind: 'ApiServer'; readonly addresses: readonly IpAddress[]; readonly sig: string };

interface ObjectState {
  /** The last resourceVersion seen (deletes included: a replayed older event is dropped). */
  rv: string | undefined;
  /** What the object means now; undefined: nothing (deleted, or not an endpoint). */
  desired: Held | undefined;
  /**
   * The stream whose event or List set it last: only that stream's relists delete it (finding
   * 1342; client-go gives each informer its own store, and a List does not say its namespace).
   */
  source: string | undefined;
}

/** One object a List (or a page of it) listed, read when it arrived and applied when the List completes. */
interface Listed {
  readonly rv: string | undefined;
  readonly desired: Held | undefined;
  /** The object could not be read: it stands for what `keptOnUnreadable` keeps when the List completes. */
  readonly unreadable: boolean;
  /** The item's own `kind` (a typed List keeps only its kind's). */
  readonly rawKind: unknown;
  readonly source: string;
}

/**
 * A List being read: its items so far, over one or more pages. Nothing of it reaches the objects
 * (nor a flush) before its last page's closing brace: a transaction never sees half a relist.
 */
interface PendingList {
  /** The first page's header, once known (all pages must share it). */
  header: ListHeader | undefined;
  readonly listed: Map<string, Listed>;
  /** Pages read so far (each with a `continue`), and the first page's resourceVersion. */
  pages: number;
  resourceVersion: string | undefined;
  /**
   * The page sequence broke (a page of another List): pages are dropped up to one of the broken
   * List's kind without a `continue` (a page of another kind is dropped whatever it says). A page
   * does not say which page it is, so the broken List's tail taken for a whole List would make a
   * relist that deletes what the dropped pages listed.
   */
  discard: boolean;
}

type ListPage = Extract<WatchItem, { type: 'LIST' }>;
type WatchEvent = Exclude<WatchItem, { type: 'LIST' | 'LIST_ITEM' }>;

/** A BOOKMARK ending a watch-list watch's initial events (KEP-3157: `metav1.InitialEventsAnnotationKey`). */
const initialEventsEnd = (obj: Readonly<Record<string, unknown>>): boolean => rec(rec(obj.metadata).annotations)['k8s.io/initial-events-end'] === 'true';

function rec(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/**
 * True when an event at resourceVersion `a` is stale against `b`, the object's last: older, or
 * the same for an upsert. A delete at the same version counts: an informer's relist reports a
 * vanished object with the last version it saw. Versions that are not integers are not compared.
 */
function stale(a: string | undefined, b: string | undefined, deleted: boolean): boolean {
  if (a === undefined || b === undefined || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return false;
  const order = compareDecimal(a, b);
  return deleted ? order < 0 : order <= 0;
}

/** The order of two decimal integers, in linear time (BigInt parsing of millions of digits takes seconds). */
function compareDecimal(a: string, b: string): number {
  const x = a.replace(/^0+/, '');
  const y = b.replace(/^0+/, '');
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** A name as text, whatever the wire holds (`String` throws on an object whose `toString` is not a function). */
const keyPart = (v: unknown): string => (typeof v === 'string' ? v : (JSON.stringify(v) ?? ''));

function objectKey(kind: KnownKind, obj: Record<string, unknown>): string {
  const md = rec(obj.metadata);
  const clusterScoped = kind === 'Namespace' || kind === 'Node' || kind === 'CiliumNode' || kind === 'CiliumClusterwideNetworkPolicy' || kind === 'ClusterNetworkPolicy' || kind === 'CiliumIdentity';
  const ns = clusterScoped ? '' : keyPart(md.namespace ?? 'default');
  return `${kind}/${ns}/${keyPart(md.name)}`;
}

/** The namespace an engine-held object lives in (deleting the namespace deletes it in the engine). */
function namespaceOfHeld(h: Held): string | undefined {
  if (h.kind === 'Pod') return h.pod.namespace;
  if (h.kind === 'Policy') return h.policy.ref.namespace;
  return undefined;
}

/** Sorted-key JSON: two objects with the same meaning get the same text. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v !== 'object' || v === null) return JSON.stringify(v) ?? 'null';
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
    .join(',')}}`;
}

/**
 * `clock` made never backwards: after an NTP step back, a pod whose deletionTimestamp had passed
 * would be an endpoint again at its next MODIFIED or relist (attack-findings-11b, 11b-1). With
 * `elapsed` (monotonic), also never slower than real time: after a step back, a pod's deadline
 * still comes after its grace period (the kubelet's, measured monotonically), not once the wall
 * clock caught up (attack-findings-11c, 340): its IP, freed at CNI DEL, would keep its identity.
 */
function steadyClock(clock: () => number, elapsed: (() => number) | undefined): () => number {
  let latest = -Infinity;
  let mark = elapsed?.() ?? 0;
  return () => {
    const t = clock();
    if (elapsed) {
      const m = elapsed();
      if (m > mark && latest > -Infinity) latest += m - mark;
      mark = Math.max(mark, m);
    }
    if (t > latest) latest = t;
    return latest;
  };
}

/**
 * The cluster as watch streams describe it, and as the engine holds it. Watch events and relists
 * update the first; `flush` gives the minimal events that bring the engine to it: unchanged
 * objects (a replayed or duplicated event, a status-only update, a relist of what is held) give
 * none, events older than the object's last resourceVersion are dropped, and a relist deletes what
 * it no longer lists. Several streams (one per kind) may feed one mirror.
 */
export class ClusterMirror {
  private readonly objects = new Map<string, ObjectState>();
  /** What the engine holds, by object key. */
  private readonly held = new Map<string, Held>();
  private readonly dirty = new Set<string>();
  /** Objects whose change the engine refused on its own: retried when they change or after the next commit. */
  private readonly refused = new Set<string>();
  /** After a refused batch of several objects: at most this many objects per flush (halved at each refusal, doubled at each commit) until the backlog is through. */
  private limit = Infinity;
  /**
   * True once a Namespace was listed or watched: from then on a pod waits for its namespace (see
   * `awaitNamespaces`). Without a namespace stream pods carry only their namespace's name.
   */
  private namespacesWatched = false;
  /** The kinds each stream (by source) carried: what its empty `List` relists (`relist`). */
  private readonly streamKinds = new Map<string, Set<string>>();
  /**
   * Streams (by source) whose watch reported an ERROR and that were not relisted since: events
   * may have been lost (client-go's reflector ends the watch on an ERROR event and relists).
   */
  private readonly awaitingRelist = new Set<string>();
  /**
   * Keys of the objects each stream's events left held since its last ERROR, List or
   * initial-events-end bookmark (bounded by what is held): what such a bookmark keeps (`bookmark`).
   */
  private readonly watchedSince = new Map<string, Set<string>>();
  /** Streams after an ERROR: their ADDED events since, held until it is known whether they are initial events (`holdInitial`). */
  private readonly initialEvents = new Map<string, WatchEvent[]>();
  /** Lists being read, by stream: applied as one relist once their last page is read (`relist`). */
  private readonly pending = new Map<string, PendingList>();
  /** Pods being deleted gracefully that are still endpoints: key → their deletionTimestamp (ms). */
  private readonly deadlines = new Map<string, number>();
  /** Keys of deleted objects whose state (their last resourceVersion) is kept, oldest first. */
  private readonly tombstones = new Set<string>();
  /** Namespace → keys of the pods and policies wanted in it (`desired`): what `namespaceGone` and `podsWaitingIn` visit. */
  private readonly inNamespace = new Map<string, Set<string>>();
  /** Deleted namespaces → the resourceVersion of their deletion, oldest first (`beforeNamespaceDeletion`). */
  private readonly namespaceDeletions = new Map<string, string>();
  private readonly now: () => number;
  private readonly debug: NonNullable<MirrorOptions['debug']>;
  private readonly warn: NonNullable<MirrorOptions['warn']>;
  /** Counts of what was read, for metrics and summaries. */
  readonly counts = { events: 0, stale: 0, ignored: 0, errors: 0, invalid: 0, relists: 0 };

  /** How policies read: only the Cilium agent options that differ from Cilium's defaults. */
  private readonly parseOptions: ParseOptions;

  constructor(private readonly options: MirrorOptions) {
    this.parseOptions = ciliumAgentOptions(options);
    this.debug = options.debug ?? (() => {});
    this.warn = options.warn ?? (() => {});
    this.now = steadyClock(options.now ?? Date.now, options.elapsed ?? (options.now ? undefined : () => performance.now()));
  }

  /** The mirror's clock (ms since the epoch): never backwards, never slower than `elapsed`. */
  clock(): number {
    return this.now();
  }

  /** Takes one item of a watch stream; `source` names it in logs. */
  observe(item: WatchItem, source: string): void {
    if (item.type === 'LIST_ITEM' || item.type === 'LIST') this.initialEvents.delete(source);
    if (item.type === 'LIST_ITEM') return this.listItem(item, source);
    this.counts.events++;
    if (item.type === 'LIST') return this.listPage(item, source);
    this.abortList(source, `a ${item.type} event arrived before the List's last page`);
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
   * as client-go does after a 429 or a retriable 500), and what was held applies then, in order. Another ERROR, a List or the stream's end drops them
   * (client-go retries "with clean state"). True when `item` was held.
   */
  private holdInitial(item: WatchEvent, source: string): boolean {
    const held = this.initialEvents.get(source);
    if (held === undefined) return false;
    if (item.type === 'ADDED') return held.push(item), true;
    if (item.type === 'BOOKMARK' && !initialEventsEnd(item.object)) return false;
    this.initialEvents.delete(source);
    if (item.type !== 'ERROR') for (const e of held) this.observeEvent(e, source);
    return false;
  }

  private observeEvent(item: WatchEvent, source: string): void {
    if (item.type === 'BOOKMARK') return this.bookmark(item.object, source);
    if (item.type === 'ERROR') {
      this.counts.errors++;
      this.awaitingRelist.add(source);
      this.watchedSince.delete(source);
      this.initialEvents.set(source, []);
      return this.warn('watch stream error (a relist is needed to recover what it lost)', { source, status: item.object });
    }
    const deleted = item.type === 'DELETED';
    const key = this.observeObject(item.object, deleted, source);
    if (key === undefined) return;
    this.kindsOf(source).add(key.slice(0, key.indexOf('/')));
    const seen = this.watchedSince.get(source) ?? new Set<string>();
    this.watchedSince.set(source, seen);
    // By what is held after the event: a stale DELETED dropped leaves its object held, and kept.
    if (this.objects.get(key)?.desired === undefined) seen.delete(key);
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
    if (!initialEventsEnd(obj)) return;
    if (kind === undefined) return this.warn('initial-events-end bookmark of a kind distill does not read: ignored', { source, apiVersion: obj.apiVersion, kind: obj.kind });
    const seen = this.watchedSince.get(source) ?? new Set<string>();
    this.watchedSince.delete(source);
    this.counts.relists++;
    this.awaitingRelist.delete(source);
    this.kindsOf(source).add(kind);
    this.dropUnlisted(new Set([kind]), seen, typeof md.resourceVersion === 'string' ? md.resourceVersion : undefined, source);
  }

  /**
   * The stream ended (or became unreadable): a List it was reading is cut short and relists
   * nothing (client-go's reflector drops a list that fails half-way and lists again).
   */
  endStream(source: string): void {
    const held = this.initialEvents.get(source)?.length ?? 0;
    this.initialEvents.delete(source);
    if (held > 0) this.warn('stream ended before the end of its initial events: they are dropped (a relist is needed)', { source, events: held });
    this.abortList(source, 'the stream ended before the List\'s last page');
  }

  /** Streams reading a List (paged or not) that is not complete yet (sorted). */
  listsInProgress(): string[] {
    return [...this.pending.keys()].sort();
  }

  /**
   * A List cut short: what its pages listed is dropped, nothing is deleted, and the stream waits
   * for a relist (/healthz reports it): what happened since the last complete relist may be lost.
   */
  private abortList(source: string, reason: string, discardRest = false): void {
    const p = this.pending.get(source);
    if (p === undefined) return;
    if (discardRest) this.pending.set(source, { header: p.header, listed: new Map(), pages: 0, resourceVersion: undefined, discard: true });
    else this.pending.delete(source);
    if (p.discard) return;
    this.awaitingRelist.add(source);
    this.warn('List cut short: nothing of it is applied (a relist is needed)', { source, reason, pages: p.pages, items: p.listed.size });
  }

  private pendingOf(source: string, header: ListHeader | undefined): PendingList {
    let p = this.pending.get(source);
    if (p === undefined) this.pending.set(source, (p = { header, listed: new Map(), pages: 0, resourceVersion: undefined, discard: false }));
    return p;
  }

  private listItem(item: Extract<WatchItem, { type: 'LIST_ITEM' }>, source: string): void {
    const p = this.pendingOf(source, item.list);
    if (p.discard) return;
    if (item.list !== undefined && p.header !== undefined && !sameHeader(item.list, p.header)) {
      return this.abortList(source, `a page of ${headerText(item.list)} in a List of ${headerText(p.header)}`, true);
    }
    p.header ??= item.list;
    this.listObject(p, item.object, `${source}.items[${item.index}]`);
  }

  /**
   * One item of a List, read now (what it means) and kept until the List completes. A typed
   * list (`PodList`) speaks for its kind only: an item claiming another kind is skipped (its Go
   * type holds only the list's kind; client-go's reflector skips a watch event of another type).
   * An object listed twice counts once, as its last listing (client-go's store Replace keys the items).
   */
  private listObject(p: PendingList, raw: Readonly<Record<string, unknown>>, source: string): void {
    const itemKind = p.header?.itemKind;
    if (this.otherKindSkipped(itemKind, raw.kind, source)) return;
    const obj = itemKind !== undefined && raw.kind === undefined ? { ...raw, kind: itemKind, apiVersion: p.header!.apiVersion } : raw;
    const id = this.identify(obj, source);
    if (id === undefined) return;
    const { kind, key, rv } = id;
    let desired: Held | undefined;
    let unreadable = false;
    try {
      desired = this.meaning(kind, obj, source);
    } catch (e) {
      this.counts.invalid++;
      unreadable = true;
      this.warn('listed object cannot be read: the last readable version of a policy, namespace or identity stays in force', { source, key, error: (e as Error).message });
    }
    if (p.listed.delete(key)) this.debug('object listed twice: its last listing counts', { source, key });
    p.listed.set(key, { rv, desired, unreadable, rawKind: raw.kind, source });
  }

  /** A typed List's item that names another kind: skipped, with a warning. */
  private otherKindSkipped(itemKind: string | undefined, rawKind: unknown, source: string): boolean {
    if (itemKind === undefined || rawKind === undefined || rawKind === itemKind) return false;
    this.warn(`a ${itemKind}List item of another kind is skipped: a typed list holds its kind only`, { source, kind: rawKind });
    return true;
  }

  /**
   * A List, or one page of a paged List (Kubernetes API concepts, "Retrieving large results sets
   * in chunks": `metadata.continue` on every page but the last, empty or absent on the last;
   * client-go tools/pager ListPager.list reads pages until `continue` is empty and only then hands
   * the whole list to the reflector's store Replace). A page must have the first page's kind,
   * apiVersion and resourceVersion (same page: "the resourceVersion of the collection remains
   * constant across each request"), else the List is broken. `remainingItemCount` is not read:
   * "its intended use is estimating the size of a collection", and a page claiming 0 with a
   * `continue` is not the last.
   */
  private listPage(item: ListPage, source: string): void {
    const header: ListHeader = { itemKind: item.itemKind, apiVersion: item.apiVersion };
    let p = this.pending.get(source);
    const mismatch = p === undefined || p.discard ? undefined : this.pageMismatch(p, header, item);
    if (mismatch !== undefined) this.abortList(source, mismatch, true);
    p = this.pendingOf(source, header);
    if (p.discard) {
      if (item.continue === undefined && (p.header === undefined || sameHeader(header, p.header))) this.pending.delete(source);
      return this.debug('List page dropped: its page sequence broke', { source });
    }
    p.header = header;
    if (p.pages === 0) p.resourceVersion = item.resourceVersion;
    item.items.forEach((raw, i) => this.listObject(p, raw, `${source}.items[${item.indexes?.[i] ?? i}]`));
    if (item.continue !== undefined) {
      p.pages++;
      return this.debug('List page read; waiting for the next', { source, pages: p.pages, items: p.listed.size, remainingItemCount: item.remainingItemCount });
    }
    this.pending.delete(source);
    this.relist(p, header, item.resourceVersion ?? p.resourceVersion, source);
  }

  /** An object's kind, key and resourceVersion; undefined (counted, logged) for a kind distill does not read. */
  private identify(obj: Readonly<Record<string, unknown>>, source: string): { kind: KnownKind; key: string; rv: string | undefined } | undefined {
    const kind = objectKind(obj);
    if (kind === undefined) {
      this.counts.ignored++;
      this.debug('ignored object of unknown kind', { source, apiVersion: obj.apiVersion, kind: obj.kind });
      return undefined;
    }
    const rv = rec(obj.metadata).resourceVersion;
    return { kind, key: objectKey(kind, obj), rv: typeof rv === 'string' ? rv : undefined };
  }

  /** Why a page does not continue the List being read, if it does not. */
  private pageMismatch(p: PendingList, header: ListHeader, item: ListPage): string | undefined {
    if (p.header !== undefined && !sameHeader(header, p.header)) return `a page of ${headerText(header)} in a List of ${headerText(p.header)}`;
    // Without a resourceVersion a next page cannot be told from a List started over: the union would keep what the new List omits.
    if (p.pages > 0 && item.resourceVersion === undefined) return 'a next page without a resourceVersion';
    if (p.pages > 0 && item.resourceVersion !== p.resourceVersion) return `a page at resourceVersion ${String(item.resourceVersion)} in a List at ${String(p.resourceVersion)}`;
    return undefined;
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
    const state = this.objects.get(key);
    if (state !== undefined && stale(rvs, state.rv, deleted)) {
      this.counts.stale++;
      this.debug('stale or duplicate event dropped', { source, key, resourceVersion: rvs, held: state.rv });
      return key;
    }
    let desired: Held | undefined;
    try {
      desired = deleted ? undefined : this.meaning(kind, obj, source);
    } catch (e) {
      this.counts.invalid++;
      desired = keptOnUnreadable(state?.desired);
      const msg = desired ? 'object update skipped: it cannot be read; the last readable version stays in force' : 'object skipped: it cannot be read';
      this.warn(msg, { source, key, error: (e as Error).message });
    }
    if (desired !== undefined && this.beforeNamespaceDeletion(desired, rvs)) {
      this.counts.stale++;
      this.debug('event older than its namespace\'s deletion dropped', { source, key, resourceVersion: rvs });
      return key;
    }
    this.setDesired(key, rvs ?? state?.rv, desired, source);
    if (deleted) this.bury(key);
    if (deleted && kind === 'Namespace') this.namespaceGone(key.slice('Namespace//'.length), rvs);
    return key;
  }

  /**
   * A namespace is deleted only once everything in it is: the namespace controller deletes its
   * content and removes its `kubernetes` finalizer only when none remains (kubernetes
   * pkg/controller/namespace/deletion/namespaced_resources_deleter.go `Delete`: `deleteAllContent`,
   * a `ResourcesRemainingError` while some remain, then `finalizeNamespace`). A pod or policy of
   * it still here is stale (its DELETED is late, on another stream) and is deleted with it: kept,
   * it came back under a namespace re-created with the same name and took that namespace's labels
   * (attack finding 801). `rv`, the deletion's resourceVersion, is kept: a later-read event of an
   * object of the deleted namespace is older than it (`beforeNamespaceDeletion`, finding 990), and
   * an object newer than it is of a namespace re-created since, which stays (waiting for it).
   */
  private namespaceGone(ns: string, rv: string | undefined): void {
    if (rv !== undefined && /^\d+$/.test(rv)) {
      this.namespaceDeletions.delete(ns);
      this.namespaceDeletions.set(ns, rv);
      const max = this.options.maxTombstones ?? 10_000;
      for (const old of this.namespaceDeletions.keys()) {
        if (this.namespaceDeletions.size <= max) break;
        this.namespaceDeletions.delete(old);
      }
    }
    for (const key of [...(this.inNamespace.get(ns) ?? [])]) {
      const state = this.objects.get(key)!;
      if (rv !== undefined && stale(rv, state.rv, false)) continue;
      this.debug('deleted with its namespace', { key, namespace: ns });
      this.setDesired(key, state.rv, undefined);
      this.bury(key);
    }
  }

  /**
   * True when a pod or policy at resourceVersion `rv` is older than its namespace's last deletion:
   * it is of the deleted namespace, gone before it (see `namespaceGone`), and its event was late on
   * its stream. Read after the deletion, it waited for its namespace and came back under one
   * re-created with the same name, with that namespace's labels (attack finding 990). This
   * compares resourceVersions across kinds: the API server's are the etcd revisions of its writes,
   * one order for every kind an etcd holds (a resource moved to another etcd with
   * `--etcd-servers-overrides` has its own; its objects in a re-created namespace would then be
   * dropped while their version is lower: fail-closed). Versions that are not integers are not compared.
   */
  private beforeNamespaceDeletion(desired: Held, rv: string | undefined): boolean {
    const ns = namespaceOfHeld(desired);
    const deletedAt = ns === undefined ? undefined : this.namespaceDeletions.get(ns);
    return deletedAt !== undefined && rv !== undefined && /^\d+$/.test(rv) && compareDecimal(rv, deletedAt) < 0;
  }

  /**
   * A deleted object keeps its state (its last resourceVersion) until `maxTombstones` later deletes:
   * then it is forgotten, as client-go's store forgets a deleted key
   * (tools/cache/thread_safe_store.go `Delete`). Its meaning is the same (nothing) either way.
   */
  private bury(key: string): void {
    this.tombstones.delete(key);
    this.tombstones.add(key);
    const max = this.options.maxTombstones ?? 10_000;
    for (const old of this.tombstones) {
      if (this.tombstones.size <= max) break;
      this.tombstones.delete(old);
      if (this.objects.get(old)?.desired === undefined) this.objects.delete(old);
    }
  }

  /** Objects the mirror keeps a state of (live ones and at most `maxTombstones` deleted ones). */
  get size(): number {
    return this.objects.size;
  }

  private setDesired(key: string, rv: string | undefined, desired: Held | undefined, source?: string): void {
    const state = this.objects.get(key);
    const before = state?.desired;
    this.objects.set(key, { rv, desired, source: source ?? state?.source });
    this.index(key, before && namespaceOfHeld(before), desired && namespaceOfHeld(desired));
    if (desired !== undefined) this.tombstones.delete(key);
    this.refused.delete(key);
    this.dirty.add(key);
    if (desired?.kind === 'Pod' && desired.deleteAt !== undefined) this.deadlines.set(key, desired.deleteAt);
    else this.deadlines.delete(key);
  }

  /** Moves `key` in the namespace index from `from` to `to` (either undefined: none). */
  private index(key: string, from: string | undefined, to: string | undefined): void {
    if (from === to) return;
    if (from !== undefined) {
      const keys = this.inNamespace.get(from);
      keys?.delete(key);
      if (keys?.size === 0) this.inNamespace.delete(from);
    }
    if (to !== undefined) {
      let keys = this.inNamespace.get(to);
      if (keys === undefined) this.inNamespace.set(to, (keys = new Set()));
      keys.add(key);
    }
  }

  /**
   * Pods whose deletion grace period is over stop being endpoints: the next flush deletes them
   * (as a DELETED event would). `flush` calls it; returns how many there were.
   */
  expire(): number {
    const now = this.now();
    let n = 0;
    for (const [key, at] of this.deadlines) {
      if (at > now) continue;
      this.setDesired(key, this.objects.get(key)?.rv, undefined);
      this.debug('pod deletion grace period over: no longer an endpoint', { key, deletionTimestamp: new Date(at).toISOString() });
      n++;
    }
    return n;
  }

  /** The earliest deletionTimestamp (ms) of a pod still an endpoint, if any: when to flush next. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const at of this.deadlines.values()) if (next === undefined || at < next) next = at;
    return next;
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
  private relist(p: PendingList, header: ListHeader, resourceVersion: string | undefined, source: string): void {
    this.counts.relists++;
    this.awaitingRelist.delete(source);
    const kinds = header.itemKind === undefined ? new Set(this.streamKinds.get(source)) : new Set<string>();
    const listedKinds = new Set<string>();
    for (const [key, e] of p.listed) {
      // Items read before a late `kind` (kubectl sorts it after `items`) are checked now.
      if (this.otherKindSkipped(header.itemKind, e.rawKind, e.source)) {
        p.listed.delete(key);
        continue;
      }
      if (typeof e.rawKind === 'string') listedKinds.add(e.rawKind);
      const state = this.objects.get(key);
      const desired = e.unreadable ? keptOnUnreadable(state?.desired) : e.desired;
      this.setDesired(key, e.rv ?? state?.rv, desired !== undefined && this.beforeNamespaceDeletion(desired, e.rv) ? undefined : desired, source);
    }
    for (const k of listedKinds) kinds.add(k);
    if (header.itemKind !== undefined) kinds.add(header.itemKind);
    this.warnKindsDropped(header, listedKinds, p.listed.size, source, kinds);
    for (const k of kinds) this.kindsOf(source).add(k);
    if (kinds.has('Namespace')) this.namespacesWatched = true;
    this.watchedSince.delete(source);
    this.dropUnlisted(kinds, p.listed, resourceVersion, source);
  }

  /** Deletes every object of `kinds` that `source` gave and `listed` does not hold (as of `resourceVersion`), with what their namespaces held. */
  private dropUnlisted(kinds: ReadonlySet<string>, listed: { has(key: string): boolean }, resourceVersion: string | undefined, source: string): void {
    const gone: string[] = [];
    for (const [key, state] of this.objects) {
      if (!kinds.has(key.slice(0, key.indexOf('/'))) || listed.has(key) || state.desired === undefined || state.source !== source) continue;
      if (state.desired.kind === 'Namespace') gone.push(state.desired.name);
      this.setDesired(key, resourceVersion ?? state.rv, undefined);
      this.bury(key);
    }
    for (const ns of gone) this.namespaceGone(ns, resourceVersion);
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

  private meaning(kind: KnownKind, obj: Record<string, unknown>, source: string): Held | undefined {
    switch (kind) {
      case 'Namespace': {
        const ns = namespaceOf(obj, source);
        return { kind, ...ns, sig: canonical(ns) };
      }
      case 'Pod': {
        const ep = podEndpoint(obj, this.options.nodeName, source, this.now());
        if (ep.pod === null) {
          this.debug('pod is not an endpoint', { source, reason: ep.reason });
          return undefined;
        }
        // The deadline is not part of the signature: a pod marked for deletion is the same endpoint until it passes.
        const sig = canonical({ ...ep.pod, ip: ep.pod.ip.text, ...(ep.pod.ips ? { ips: ep.pod.ips.map((a) => a.text) } : {}), local: ep.local });
        return { kind, pod: ep.pod, local: ep.local, deleteAt: ep.deleteAt, sig };
      }
      case 'Node':
      case 'CiliumNode': {
        const node = kind === 'Node' ? nodeOf(obj, this.options.nodeName, source) : ciliumNodeOf(obj, this.options.nodeName, source);
        if (node.ips.length === 0) {
          this.debug('node has no address yet', { source });
          return undefined;
        }
        const texts = (l: readonly IpAddress[] | undefined): string[] | undefined => l?.map((a) => a.text);
        return { kind: 'Node', node, sig: canonical({ ...node, ips: texts(node.ips), health: texts(node.health), ingress: texts(node.ingress) }) };
      }
      case 'EndpointSlice': {
        const addresses = apiServerSliceOf(obj, source);
        return addresses && { kind: 'ApiServer', addresses, sig: canonical(addresses.map((a) => a.text)) };
      }
      case 'CiliumIdentity': {
        const id = identityOf(obj, source);
        return { kind: 'Identity', ...id, sig: canonical(id) };
      }
      default: {
        const md = rec(obj.metadata);
        // What a policy means: its spec and its name; not its status or bookkeeping metadata.
        const manifest = { ...obj, metadata: { name: md.name, ...(md.namespace !== undefined ? { namespace: md.namespace } : {}), ...(md.labels !== undefined ? { labels: md.labels } : {}) } };
        delete (manifest as Record<string, unknown>).status;
        return { kind: 'Policy', policy: this.policyOf(manifest, source), sig: canonical(manifest) };
      }
    }
  }


  /** The policy, or its fail-closed stand-in when it uses what distill does not read (src/policy/stand-in.ts). */
  private policyOf(manifest: Record<string, unknown>, source: string): Policy {
    try {
      return parseManifest(manifest, source, this.parseOptions);
    } catch (e) {
      const standIn = failClosedStandIn(manifest, source, e, this.parseOptions);
      if (standIn === undefined) throw e;
      this.warn('policy enforced fail-closed: it uses what distill does not read', { source, error: (e as Error).message });
      return standIn;
    }
  }

  /** Streams whose watch reported an ERROR and that were not relisted since (sorted). */
  streamsAwaitingRelist(): string[] {
    return [...this.awaitingRelist].sort();
  }

  /** True when no change waits for a flush. */
  get idle(): boolean {
    return this.dirty.size === 0;
  }

  /** Local endpoints the engine holds, as `namespace/name`. */
  localEndpoints(): string[] {
    const out: string[] = [];
    for (const h of this.held.values()) if (h.kind === 'Pod' && h.local) out.push(`${h.pod.namespace}/${h.pod.name}`);
    return out.sort();
  }

  /**
   * The minimal events from what the engine holds to what the streams describe: namespace and
   * policy upserts first (so pods land on their policy at once), then pod changes, then deletes of
   * policies and namespaces. Commit or roll back the batch before the next flush.
   */
  flush(): MirrorBatch {
    this.expire();
    const next = new Map<string, Held | undefined>();
    for (const key of this.dirty) {
      this.dirty.delete(key);
      const want = this.objects.get(key)?.desired;
      if (want?.sig !== this.held.get(key)?.sig) next.set(key, want);
      if (next.size >= this.limit) break;
    }
    if (this.dirty.size === 0) this.limit = Infinity;
    const joined = this.joinRefusedPolicies(next);
    this.awaitNamespaces(next);
    const events = this.eventsFor(next);
    return {
      events,
      commit: () => this.commit(next),
      rollback: () => this.rollback(next, joined),
    };
  }

  /**
   * A pod whose namespace the engine does not hold (and this batch does not bring) is no endpoint
   * yet: its identity would lack the namespace's labels, so a deny or a `NotIn` selector on them
   * would miss it. Cilium refuses such an endpoint: fetchK8sMetadataForEndpoint
   * (daemon/cmd/endpoint.go) reads the namespace from the watcher's store (GetCachedNamespace,
   * pkg/k8s/watchers/namespace.go) and fails with NotFound. The pod is sent when its namespace
   * commits (`commit`).
   */
  private awaitNamespaces(next: Map<string, Held | undefined>): void {
    if (!this.namespacesWatched) return;
    for (const [key, want] of next) {
      if (want?.kind !== 'Pod') continue;
      const nsKey = `Namespace//${want.pod.namespace}`;
      if (next.has(nsKey) ? next.get(nsKey) !== undefined : this.held.has(nsKey)) continue;
      this.debug('pod waits for its namespace', { key, namespace: want.pod.namespace });
      if (this.held.has(key)) next.set(key, undefined);
      else next.delete(key);
    }
  }

  /**
   * A policy delete never commits apart from a policy upsert the engine refused (attack finding
   * 743): the refused object may be the deleted one's replacement (a relist listing `deny-b`
   * instead of `deny-a`), and the delete alone would allow what both the old and the listed state
   * deny. So the refused policies join a batch that deletes a policy, and if that batch is refused
   * too, all of it waits (`rollback`), retried after the next commit. The delete may also be what
   * the refused object conflicted with: then the joined batch commits. (Cilium keeps an endpoint's
   * last realized policy while its regeneration fails.) True when refused policies joined.
   */
  private joinRefusedPolicies(next: Map<string, Held | undefined>): boolean {
    let deletesPolicy = false;
    for (const [key, want] of next) if (want === undefined && this.held.get(key)?.kind === 'Policy') deletesPolicy = true;
    if (!deletesPolicy) return false;
    let joined = false;
    for (const key of this.refused) {
      const want = this.objects.get(key)?.desired;
      if (want?.kind !== 'Policy' || next.has(key) || want.sig === this.held.get(key)?.sig) continue;
      this.debug('a policy delete waits for a refused policy: retried together', { key });
      next.set(key, want);
      this.refused.delete(key);
      joined = true;
    }
    return joined;
  }

  private rollback(next: Map<string, Held | undefined>, joined: boolean): void {
    if (next.size === 1 || joined) {
      for (const key of next.keys()) this.refused.add(key);
      return;
    }
    // Retried in the batch's order (upserts before deletes), so no step is more open than the batch.
    const order = (key: string, want: Held | undefined): number => rank(want ?? (this.held.get(key) as Held), want !== undefined);
    const keys = [...next].sort(([ka, a], [kb, b]) => order(ka, a) - order(kb, b)).map(([key]) => key);
    const rest = [...this.dirty];
    this.dirty.clear();
    for (const key of [...keys, ...rest]) this.dirty.add(key);
    this.limit = Math.ceil(next.size / 2);
  }

  private commit(next: Map<string, Held | undefined>): void {
    // Past the refused object: larger steps again.
    if (this.limit !== Infinity) this.limit *= 2;
    // Once the backlog is through, what the engine refused alone is tried again (what it conflicted with may have gone).
    if (next.size > 0 && this.dirty.size === 0) {
      for (const key of this.refused) this.dirty.add(key);
      this.refused.clear();
    }
    for (const [key, want] of next) {
      if (want === undefined) this.held.delete(key);
      else this.held.set(key, want);
      if (want === undefined && key.startsWith('Namespace/')) this.dropNamespace(key.slice('Namespace//'.length));
      if (want !== undefined && key.startsWith('Namespace/')) this.podsWaitingIn(key.slice('Namespace//'.length));
    }
  }

  /** The namespace is held now: its pods that waited for it (`awaitNamespaces`) are sent at the next flush. */
  private podsWaitingIn(ns: string): void {
    for (const key of this.inNamespace.get(ns) ?? []) {
      if (this.objects.get(key)?.desired?.kind === 'Pod' && !this.held.has(key)) this.dirty.add(key);
    }
  }

  /** The engine deleted everything in the namespace with it: what is still wanted is re-sent at the next flush. */
  private dropNamespace(ns: string): void {
    for (const [key, h] of this.held) {
      if (namespaceOfHeld(h) !== ns) continue;
      this.held.delete(key);
      this.dirty.add(key);
    }
  }

  private eventsFor(next: Map<string, Held | undefined>): AgentEvent[] {
    const order: AgentEvent[][] = [[], [], [], [], [], []];
    const nodes = new Set<string>();
    let apiServer = false;
    for (const [key, want] of next) {
      const had = this.held.get(key);
      if ((want ?? had)?.kind === 'ApiServer') apiServer = true;
      else if ((want ?? had)?.kind === 'Node') nodes.add(key.slice(key.lastIndexOf('/') + 1));
      else if (want !== undefined) order[rank(want, true)]!.push(upsertOf(want));
      else if (had !== undefined) order[rank(had, false)]!.push(deleteOf(had));
    }
    for (const name of nodes) {
      const e = this.nodeEvent(name, next);
      if (e) order[e.type === 'upsertNode' ? 0 : 5]!.push(e);
    }
    if (apiServer) order[0]!.push(this.apiServerEvent(next));
    return order.flat();
  }

  /**
   * The API server's addresses: those of every EndpointSlice of default/kubernetes together, as
   * Cilium lists the Service's backends (pkg/ipcache/cell/apiserver_watcher.go). None left (all
   * deleted) is an empty set, not an unknown one: Cilium then removes the label from every address.
   */
  private apiServerEvent(next: ReadonlyMap<string, Held | undefined>): AgentEvent {
    const keys = new Set([...this.held.keys(), ...next.keys()]);
    const addresses: IpAddress[] = [];
    for (const k of keys) {
      const h = next.has(k) ? next.get(k) : this.held.get(k);
      if (h?.kind !== 'ApiServer') continue;
      for (const ip of h.addresses) if (!addresses.some((o) => o.text === ip.text)) addresses.push(ip);
    }
    return { type: 'setApiServer', addresses };
  }

  /**
   * One engine node per name, with the addresses of its Node and its CiliumNode object together
   * (Cilium's node manager takes every address of either into the ipcache).
   */
  private nodeEvent(name: string, next: ReadonlyMap<string, Held | undefined>): AgentEvent | undefined {
    const keys = [`Node//${name}`, `CiliumNode//${name}`];
    const nodeOfKey = (h: Held | undefined): NodeAddresses | undefined => (h?.kind === 'Node' ? h.node : undefined);
    const after = keys.map((k) => nodeOfKey(next.has(k) ? next.get(k) : this.held.get(k))).filter((n): n is NodeAddresses => n !== undefined);
    const ips = after.flatMap((n) => n.ips).filter((ip, i, all) => all.findIndex((o) => o.text === ip.text) === i);
    const endpoints = nodeEndpointsOf({ health: after.flatMap((n) => n.health ?? []), ingress: after.flatMap((n) => n.ingress ?? []) });
    // The labels of the Node object, else of the CiliumNode (`nodes` peers select on them).
    if (ips.length > 0) return { type: 'upsertNode', name, ips, local: after[0]!.local, ...endpoints, labels: after[0]!.labels };
    return keys.some((k) => this.held.has(k)) ? { type: 'deleteNode', name } : undefined;
  }
}

function sameHeader(a: ListHeader, b: ListHeader): boolean {
  return a.itemKind === b.itemKind && a.apiVersion === b.apiVersion;
}

const headerText = (h: ListHeader): string => `${h.itemKind ?? ''}List ${h.apiVersion}`;

/**
 * What an object that cannot be read (an update distill refuses) stands for: a policy, namespace
 * or identity keeps its last readable version, as Cilium's policy watcher returns on a validation
 * or parse error before touching the policy repository (pkg/policy/k8s cilium_network_policy.go
 * onUpsert: `cnp.Validate()`; network_policy.go: ParseNetworkPolicy). Dropping it instead would
 * delete an isolating or deny policy and open what it closed. A pod is dropped (no endpoint).
 */
function keptOnUnreadable(had: Held | undefined): Held | undefined {
  return had === undefined || had.kind === 'Pod' ? undefined : had;
}

/** Batch position: identities, namespaces, nodes, policies, pods (upserts) then pod, policy, node, namespace deletes. */
function rank(h: Held, upsert: boolean): number {
  if (h.kind === 'Identity' || h.kind === 'Node' || h.kind === 'ApiServer') return upsert ? 0 : 5;
  if (h.kind === 'Namespace') return upsert ? 0 : 5;
  if (h.kind === 'Policy') return upsert ? 1 : 4;
  return upsert ? 2 : 3;
}

function upsertOf(h: Held): AgentEvent {
  switch (h.kind) {
    case 'Namespace':
      return { type: 'upsertNamespace', name: h.name, labels: h.labels };
    case 'Pod':
      return { type: 'upsertPod', pod: h.pod, local: h.local };
    case 'Policy':
      return { type: 'upsertPolicy', policy: h.policy };
    case 'Identity':
      return { type: 'upsertIdentity', id: h.id, labels: h.labels };
    case 'Node':
      return { type: 'upsertNode', name: h.node.name, ips: h.node.ips, local: h.node.local, ...nodeEndpointsOf(h.node), labels: h.node.labels };
    case 'ApiServer':
      throw new Error('internal: API server slices make one setApiServer event (apiServerEvent)');
  }
}

function deleteOf(h: Held): AgentEvent {
  switch (h.kind) {
    case 'Namespace':
      return { type: 'deleteNamespace', name: h.name };
    case 'Pod':
      return { type: 'deletePod', namespace: h.pod.namespace, name: h.pod.name };
    case 'Policy':
      return { type: 'deletePolicy', ref: h.policy.ref };
    case 'Identity':
      return { type: 'deleteIdentity', id: h.id };
    case 'Node':
      return { type: 'deleteNode', name: h.node.name };
    case 'ApiServer':
      throw new Error('internal: API server slices make one setApiServer event (apiServerEvent)');
  }
}
