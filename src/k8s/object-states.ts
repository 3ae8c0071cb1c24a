import { expiredPod, namespaceOfHeld, type Held, type LogFn } from './held.js';
import { compareDecimal, isDecimalVersion, stale } from './resource-version.js';
import { podIps, type Pod } from '../model/cluster.js';

/** One object as the streams describe it. */
export interface ObjectState {
  /** The last resourceVersion seen (deletes included: a replayed older event is dropped). */
  readonly rv: string | undefined;
  /** What the object means now; undefined: nothing (deleted, or not an endpoint). */
  readonly desired: Held | undefined;
  /**
   * The stream whose event or List set it last: only that stream's relists delete it (finding
   * 1342; client-go gives each informer its own store, and a List does not say its namespace).
   */
  readonly source: string | undefined;
  /** A tombstone's other streams that had shown its version when it was buried (`bury`, finding 3045). */
  readonly pastOn?: readonly string[];
  /** The object's `metadata.uid`, kept only when `rv` is not an integer: then it tells incarnations apart (finding 3720). */
  readonly uid?: string;
}

/**
 * What the watch streams describe, object by object (by key): each object's last resourceVersion
 * and meaning, the deleted ones kept as tombstones (at most `maxTombstones`), the objects of each
 * namespace, the namespaces' deletions, and the deadlines of pods being deleted. `changed` is told
 * of every key whose meaning was set.
 */
export class ObjectStates {
  private readonly objects = new Map<string, ObjectState>();
  /** Pods being deleted gracefully that are still endpoints: key → their deletionTimestamp (ms). */
  private readonly deadlines = new Map<string, number>();
  /** Keys of deleted objects whose state (their last resourceVersion) is kept, oldest first. */
  private readonly tombstones = new Set<string>();
  /** Namespace → keys of the pods and policies wanted in it (`desired`): what `namespaceGone` and `keysIn` visit. */
  private readonly inNamespace = new Map<string, Set<string>>();
  /**
   * Stream → kind → the newest resourceVersion of a tombstone of that stream and kind forgotten under the bound
   * (`bury`): what the forgotten tombstones still say (`forgottenSince`, finding 2960).
   */
  private readonly forgotten = new Map<string, Map<string, string>>();
  /** Deleted namespaces → the resourceVersion of their deletion, oldest first (`beforeNamespaceDeletion`). */
  private readonly namespaceDeletions = new Map<string, string>();

  /** Remote pods past their deadline (`expiredPod`) by address text: a pod claiming or leaving one re-reads them. */
  private readonly expiredAt = new Map<string, Set<string>>();
  /** Wanted pods (`desired`) by address text, while some pod is expired: the claims `claimedByOthers` reads (3043). */
  private readonly podsAt = new Map<string, Set<string>>();

  /** `reread`: told of an expired pod whose addresses another pod claimed or gave up (finding 2921). */
  constructor(
    private readonly maxTombstones: number,
    private readonly changed: (key: string) => void,
    private readonly debug: LogFn,
    private readonly reread: (key: string) => void = changed,
    private readonly pastOn: (key: string, state: ObjectState) => readonly string[] = () => [],
    /** Told of a deleted namespace none of whose objects is wanted any more (`namespaceGone`). */
    private readonly emptied: (ns: string) => void = () => {},
  ) {}

  get(key: string): ObjectState | undefined {
    return this.objects.get(key);
  }

  /** True when `key` has a state that is no tombstone: the streams describe it as there (with a meaning or not). */
  exists(key: string): boolean {
    return this.objects.has(key) && !this.tombstones.has(key);
  }

  /**
   * The addresses of `ips` (texts) that a pod other than `key`, wanted and `sent`, claims: one not expired
   * (`expiredPod`), or an expired one of a lower key (of two expired pods at one address the lower key holds it,
   * finding 2924: both holding it, deleting the last writer left it unowned while the other still claimed it).
   * Read from the pods by address (`podsAt`, finding 3043: a scan of every state per expired pod read before).
   */
  claimedByOthers(key: string, ips: ReadonlySet<string>, sent: (pod: Pod, key: string, ip: string) => boolean): Set<string> {
    const claimed = new Set<string>();
    for (const ip of ips) {
      for (const k of this.podsAt.get(ip) ?? []) {
        const d = this.objects.get(k)?.desired;
        if (k === key || d?.kind !== 'Pod' || (d.expired === true && k > key) || !sent(d.pod, k, ip)) continue;
        claimed.add(ip);
        break;
      }
    }
    return claimed;
  }

  /** Whether some remote pod past its deadline is held (`expiredPod`). */
  get hasExpired(): boolean {
    return this.expiredAt.size > 0;
  }

  /** Re-reads the expired pods other than `key` at the addresses `ips` (texts): a claim on them changed. */
  rereadExpiredAt(ips: Iterable<string>, key?: string): void {
    for (const k of this.expiredAmong(ips)) if (k !== key) this.reread(k);
  }

  /** The expired pods (`expiredPod`) at the addresses `ips` (texts). */
  expiredAmong(ips: Iterable<string>): Set<string> {
    const keys = new Set<string>();
    if (this.expiredAt.size === 0) return keys;
    for (const ip of ips) for (const k of this.expiredAt.get(ip) ?? []) keys.add(k);
    return keys;
  }

  /** Keys of the pods and policies wanted in namespace `ns`. */
  keysIn(ns: string): Iterable<string> {
    return this.inNamespace.get(ns) ?? [];
  }

  /** Objects kept a state of (live ones and at most `maxTombstones` deleted ones). */
  get size(): number {
    return this.objects.size;
  }

  set(key: string, rv: string | undefined, desired: Held | undefined, source?: string, uid?: string): void {
    const state = this.objects.get(key);
    const before = state?.desired;
    const from = source ?? state?.source;
    this.objects.set(key, uid === undefined || isDecimalVersion(rv) ? { rv, desired, source: from } : { rv, desired, source: from, uid });
    this.index(key, before && namespaceOfHeld(before), desired && namespaceOfHeld(desired));
    if (desired !== undefined) this.tombstones.delete(key);
    this.changed(key);
    this.indexExpired(key, before, desired);
    if (desired?.kind === 'Pod' && desired.deleteAt !== undefined) this.deadlines.set(key, desired.deleteAt);
    else this.deadlines.delete(key);
  }

  /**
   * Keeps `expiredAt`, and re-reads the expired pods at the addresses a pod other than them claimed or gave up (or a
   * namespace's pods, when it comes or goes: its pods' claims count only with it, `claimedByOthers`): what an expired
   * pod holds depends on the other pods' claims (`HeldForms.expiredAtFree`), so a claim given up hands the address back
   * to it, fail-closed, as a fresh mirror reads it, not to world (finding 2921).
   */
  private indexExpired(key: string, before: Held | undefined, after: Held | undefined): void {
    if (this.expiredAt.size === 0 && (after?.kind !== 'Pod' || after.expired !== true)) return;
    const pods = [before, after].filter((h): h is Extract<Held, { kind: 'Pod' }> => h?.kind === 'Pod');
    for (const h of pods) if (h.expired === true) indexAt(this.expiredAt, key, podIps(h.pod), h === after);
    if (this.expiredAt.size === 0) return this.podsAt.clear();
    if (this.podsAt.size === 0) this.indexPods();
    else for (const h of pods) indexAt(this.podsAt, key, podIps(h.pod), h === after);
    const claims = pods.map((h) => h.pod);
    const ns = (after ?? before)?.kind === 'Namespace' && (before === undefined) !== (after === undefined) ? key.slice('Namespace//'.length) : undefined;
    for (const k of ns === undefined ? [] : this.keysIn(ns)) {
      const d = this.objects.get(k)?.desired;
      if (d?.kind === 'Pod') claims.push(d.pod);
    }
    this.rereadExpiredAt(claims.flatMap((pod) => podIps(pod).map((ip) => ip.text)), key);
  }

  /** Builds `podsAt` from every wanted pod: the first pod expired (kept only while one is, so no pod costs it before). */
  private indexPods(): void {
    for (const [k, state] of this.objects) if (state.desired?.kind === 'Pod') indexAt(this.podsAt, k, podIps(state.desired.pod), true);
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
   * A deleted object keeps its state (its last resourceVersion) until `maxTombstones` later deletes:
   * then it is forgotten, as client-go's store forgets a deleted key
   * (tools/cache/thread_safe_store.go `Delete`). Its meaning is the same (nothing) either way.
   */
  bury(key: string): void {
    const buried = this.objects.get(key);
    const pastOn = buried === undefined ? [] : this.pastOn(key, buried);
    if (buried !== undefined && pastOn.length > 0) this.objects.set(key, { ...buried, pastOn });
    this.tombstones.delete(key);
    this.tombstones.add(key);
    for (const old of this.tombstones) {
      if (this.tombstones.size <= this.maxTombstones) break;
      this.tombstones.delete(old);
      const state = this.objects.get(old);
      if (state?.desired !== undefined) continue;
      this.objects.delete(old);
      if (state === undefined || !isDecimalVersion(state.rv)) continue;
      for (const source of [state.source, ...(state.pastOn ?? [])]) if (source !== undefined) this.remember(source, old.slice(0, old.indexOf('/')), state.rv);
    }
  }

  /**
   * Keeps the newest version of the forgotten tombstones of `kind` for `source`: the tombstone's stream, and the other
   * streams that had shown its version when it was buried (finding 3045): a replay of the deleted object may come on
   * any stream that carried it, and on such a stream an event older than it is as far from its place as on its own.
   */
  private remember(source: string, kind: string, rv: string): void {
    let kinds = this.forgotten.get(source);
    if (kinds === undefined) this.forgotten.set(source, (kinds = new Map()));
    const before = kinds.get(kind);
    if (before === undefined || compareDecimal(rv, before) > 0) kinds.set(kind, rv);
  }

  /** The keys and versions of the objects `source` last set that exist (no tombstone). */
  liveOf(source: string): [string, string | undefined][] {
    return [...this.objects].filter(([key, st]) => st.source === source && !this.tombstones.has(key)).map(([key, st]) => [key, st.rv]);
  }

  /** `source` gave `key` at its version: it is the stream that reports it from now on (a retired informer's object, 3702). */
  adopt(key: string, source: string): void {
    const state = this.objects.get(key);
    if (state !== undefined) this.objects.set(key, { ...state, source });
  }

  /** `source` gives no event again (a retired informer, finding 3702): its forgotten tombstones go. */
  retired(source: string): void {
    this.forgotten.delete(source);
  }

  /**
   * The newest version of a tombstone of `source` and `kind` that was forgotten, when `rv` is not newer than it (each
   * write has its own version, and a tombstone an informer's relist made holds the deleted object's last one, finding
   * 3046: a replay of that version is no newer);
   * undefined otherwise (or when `rv` is not an integer). On a stream whose events are in order, an object with no
   * state at such a version is one it can have sent only before that deletion: a replay of a deleted object whose
   * own tombstone was forgotten (finding 2960). An event delivered out of order is dropped only when more than
   * `maxTombstones` deletes came between it and its place.
   */
  forgottenSince(source: string, kind: string, rv: string | undefined): string | undefined {
    const floor = this.forgotten.get(source)?.get(kind);
    if (floor === undefined || !isDecimalVersion(rv)) return undefined;
    return compareDecimal(rv, floor) <= 0 ? floor : undefined;
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
  namespaceGone(ns: string, rv: string | undefined): void {
    if (isDecimalVersion(rv)) {
      this.namespaceDeletions.delete(ns);
      this.namespaceDeletions.set(ns, rv);
      for (const old of this.namespaceDeletions.keys()) {
        if (this.namespaceDeletions.size <= this.maxTombstones) break;
        this.namespaceDeletions.delete(old);
      }
    }
    for (const key of [...(this.inNamespace.get(ns) ?? [])]) {
      const state = this.objects.get(key)!;
      if (rv !== undefined && stale(rv, state.rv, false)) continue;
      this.debug('deleted with its namespace', { key, namespace: ns });
      this.set(key, state.rv, undefined);
      this.bury(key);
    }
    if (!this.inNamespace.has(ns)) this.emptied(ns);
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
  beforeNamespaceDeletion(desired: Held, rv: string | undefined): boolean {
    const ns = namespaceOfHeld(desired);
    const deletedAt = ns === undefined ? undefined : this.namespaceDeletions.get(ns);
    return deletedAt !== undefined && isDecimalVersion(rv) && compareDecimal(rv, deletedAt) < 0;
  }

  /**
   * Deletes every object of `kinds` that `source` gave and `listed` does not hold (as of
   * `resourceVersion`), with what their namespaces held. A deleted object keeps the later of the
   * relist's version and its own: a relist at a version older than the object's last event (a
   * resourceVersion going backwards) must not let an event older than that one bring it back (1644).
   */
  dropUnlisted(kinds: ReadonlySet<string>, listed: { has(key: string): boolean }, resourceVersion: string | undefined, source: string): void {
    const gone: string[] = [];
    for (const [key, state] of this.objects) {
      if (!kinds.has(key.slice(0, key.indexOf('/'))) || listed.has(key) || state.source !== source) continue;
      if (state.desired === undefined) {
        this.omitted(key, state, resourceVersion);
        continue;
      }
      if (state.desired.kind === 'Namespace') gone.push(state.desired.name);
      this.set(key, laterVersion(resourceVersion, state.rv), undefined);
      this.bury(key);
    }
    for (const ns of gone) this.namespaceGone(ns, resourceVersion);
  }

  /**
   * An object that means nothing to the engine (a pod without an endpoint, a local one past its deletion
   * deadline, an object never readable) and that a relist omits is deleted too: it becomes a
   * tombstone at the later version (finding 2840: kept live at its own, it was never forgotten, and
   * a replayed event between the two versions brought it back, at an address another pod holds
   * since, finding 2841). A tombstone already stays where it is.
   */
  private omitted(key: string, state: ObjectState, resourceVersion: string | undefined): void {
    if (this.tombstones.has(key)) return;
    this.objects.set(key, { ...state, rv: laterVersion(resourceVersion, state.rv) });
    this.bury(key);
  }

  /**
   * Pods whose deletion grace period is over at `now` stop being endpoints, and a remote one is held fail-closed until
   * its DELETED (`expiredPod`, finding 2843); returns how many there were.
   */
  expire(now: number): number {
    let n = 0;
    for (const [key, at] of this.deadlines) {
      if (at > now) continue;
      const state = this.objects.get(key);
      const was = state?.desired;
      this.set(key, state?.rv, was?.kind === 'Pod' && !was.local ? expiredPod(was) : undefined, state?.source, state?.uid);
      this.debug('pod deletion grace period over: no longer an endpoint', { key, deletionTimestamp: new Date(at).toISOString() });
      n++;
    }
    return n;
  }

  /** The earliest deletionTimestamp (ms) of a pod still an endpoint, if any. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const at of this.deadlines.values()) if (next === undefined || at < next) next = at;
    return next;
  }
}

/** Adds `key` at the addresses `ips` of `index` (`add`), or removes it. */
function indexAt(index: Map<string, Set<string>>, key: string, ips: readonly { text: string }[], add: boolean): void {
  for (const ip of ips) {
    const at = index.get(ip.text) ?? new Set<string>();
    if (add) index.set(ip.text, at.add(key));
    else if (at.delete(key) && at.size === 0) index.delete(ip.text);
  }
}

/** The later of two resourceVersions (`a` when they cannot be compared, else `b`'s if `a` is missing). */
function laterVersion(a: string | undefined, b: string | undefined): string | undefined {
  return a !== undefined && b !== undefined && stale(a, b, false) ? b : (a ?? b);
}
