import { namespaceWithDefaults, Pod, podIps, podKey } from '../model/cluster.js';
import { podIdentityLabels } from '../model/identity.js';
import { CLUSTER_KEY, Label, LabelSet, labelSetKey, labelSetText, makeLabelSet, NAMESPACE_NAME_LABEL, POD_NAMESPACE_KEY, SERVICE_ACCOUNT_KEY } from '../model/labels.js';
import type { CiliumEndpoints } from './cilium-endpoints.js';
import type { EngineContext } from './context.js';
import type { IdentityRecord, IdentityTable } from './identities.js';
import type { PodFacts } from './pod-facts.js';
import type { PolicyResolver } from './policy-resolver.js';
import type { SharedMapState, SharedMaps } from './shared-maps.js';

export interface PodRecord {
  readonly pod: Pod;
  readonly local: boolean;
  /** Changed in place when the pod is re-identified (its other fields and indexes stay). */
  identity: IdentityRecord;
  /** The key of its identity labels: identity events re-identify the pods of one key. */
  labelKey: string;
  /** Its map state, for a local pod (an endpoint). */
  map: SharedMapState | null;
  /** When it was written (a counter): a namespace relabel re-writes its pods in this order. */
  readonly written: number;
}

/** A pod's identity labels and their key, with what they were derived from (compared by identity: label maps are never changed in place). */
interface IdentityLabelsMemo {
  readonly podLabels: Pod['labels'];
  readonly nsLabels: Readonly<Record<string, string>>;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly labels: LabelSet;
  /** Not interned: the identity table's copy replaces it once the pod has acquired (`shareKey`). */
  labelKey: string;
}

/**
 * Namespaces and pods as the engine holds them: each pod with its identity (acquired from its
 * labels and its namespace's labels) and, for a local pod, its map state.
 *
 * Contract: consumes namespace and pod events; emits identity acquire/release and endpoint
 * attach/detach (populating new map states through the policy resolver). A namespace relabel
 * re-identifies its pods and writes their addresses again. Every mutation records its undo.
 */
export class PodTable {
  private readonly namespaces = new Map<string, Readonly<Record<string, string>>>();
  private readonly podsByNamespace = new Map<string, Set<string>>();
  /** Pods by identity label-set key (kept only with external identities). */
  private readonly podsByLabels = new Map<string, Set<string>>();
  private lastIdentityLabels: IdentityLabelsMemo | null = null;
  /** Bumped whenever a local pod is added or removed (an upsert is both): the local endpoints' addresses may have changed. Never undone. */
  localVersion = 0;
  /** The last `written` given (never undone: an undone write leaves a gap, the order stays). */
  private writes = 0;
  /** Derives identity labels from a pod's address and ports (network-splits.ts); set once when the stages are wired. */
  splits: { podJoined(key: string, pod: Pod, base: LabelSet, baseKey: string): readonly Label[]; podLeft(key: string, pod: Pod, identity: IdentityRecord): void } | null = null;

  constructor(
    private readonly ctx: EngineContext,
    /** The pods by key, and IP text → the pod holding it (the last one added, while it stays): shared with the committed model. */
    private readonly facts: PodFacts<PodRecord>,
    private readonly identities: IdentityTable,
    private readonly maps: SharedMaps,
    private readonly resolver: PolicyResolver,
    /** The CiliumEndpoints (`ipIdentity`). */
    private readonly endpoints: CiliumEndpoints,
  ) {}

  get(key: string): PodRecord | undefined {
    return this.facts.pod(key);
  }

  /** A pod's identity labels (what policy subjects match), whether or not it has an identity yet. */
  labelsOf(key: string): LabelSet | undefined {
    const rec = this.facts.pod(key);
    return rec && podIdentityLabels(rec.pod, this.namespaceLabels(rec.pod.namespace));
  }

  records(): IterableIterator<PodRecord> {
    return this.facts.records();
  }

  /** The pod holding an IP (the ipcache's exact part). */
  byIp(ip: string): PodRecord | undefined {
    return this.facts.ownerOf(ip);
  }

  /** The ipcache's identity of the pod holding an IP (`ipIdentity`). */
  ipIdentityAt(ip: string): IdentityRecord | undefined {
    const rec = this.facts.ownerOf(ip);
    return rec && this.ipIdentity(rec, ip);
  }

  /**
   * A pod's identity in the ipcache at its address `ip` (default: its primary one): its own, except a
   * pod whose labels have no external identity (yet, or no longer: its CiliumIdentity or master key
   * deleted while the pod runs, its namespace relabelled before the new label set's id exists).
   * As init, the `cluster` entity allowed it and every deny on its labels missed it (attack finding
   * 800); as 0 (800/802's reading), a wildcard allow (`fromEntities: [all]`) admitted it past a deny
   * that selects it under both its old and its new labels (2002). Cilium's ipcache gives a remote
   * pod the number of its CiliumEndpoint (pkg/k8s/watchers/cilium_endpoint.go `endpointUpdated`:
   * `status.identity.id` for each address of `status.networking.addressing`), which keeps the old
   * number until the pod's node allocates the new one. So a remote such pod takes its CiliumEndpoint's
   * number at an address the endpoint lists when that number is a readable external identity (its
   * labels known, so every selector reads it as Cilium does); otherwise, and for a local pod (whose
   * number its own agent holds, pkg/allocator `syncLocalKeys`, which the state does not show), it is
   * `unallocated` (denied both ways by every local map): stricter than Cilium there (finding 2220).
   */
  ipIdentity(rec: PodRecord, ip?: string): IdentityRecord {
    if (rec.identity !== this.identities.pending) return rec.identity;
    // A pod held fail-closed reads no CiliumEndpoint (finding 2420): its labels are not known, so no endpoint's number is its own.
    return (rec.local || rec.pod.failClosed === true ? undefined : this.endpointIdentity(rec, ip ?? rec.pod.ip.text)) ?? this.identities.unallocated;
  }

  /**
   * The readable external identity the CiliumEndpoint of the pod (same namespace and name) names for `ip`, if it lists
   * `ip` and the identity's namespace, service account and cluster labels are the pod's own: what a running pod cannot
   * change (only its labels and its namespace's labels move), so a lagging endpoint always passes, and an endpoint
   * cannot make a pod of one namespace read as a pod of another (finding 2223; Cilium does not check).
   */
  private endpointIdentity(rec: PodRecord, ip: string): IdentityRecord | undefined {
    if (this.endpoints.size === 0) return undefined;
    const ep = this.endpoints.get(podKey(rec.pod));
    if (ep === undefined || !ep.ips.has(ip)) return undefined;
    const id = this.identities.externalReadable(ep.identity);
    if (id === undefined) return undefined;
    // Not through the replicas' memo (`identityLabels`): a read must not move it.
    const own = podIdentityLabels(rec.pod, this.namespaceLabels(rec.pod.namespace));
    return FIXED_KEYS.every((k) => sameFixed(own, id.labels, k)) ? id : undefined;
  }

  /** Before a CiliumEndpoint of pod `key` changes, or an identity it names: the pod's addresses are written again. */
  touchPod(key: string): void {
    const rec = this.facts.pod(key);
    if (rec === undefined) return;
    for (const ip of podIps(rec.pod)) this.ctx.touchIpcacheHost(ip);
  }

  /** Every pod IP (both of a dual-stack pod) with its pod's identity (the ipcache's host entries). */
  *ipEntries(): Iterable<{ ip: Pod['ip']; identity: IdentityRecord }> {
    for (const [text, rec] of this.facts.ipOwners()) {
      const ip = rec.pod.ips === undefined ? rec.pod.ip : rec.pod.ips.find((a) => a.text === text);
      if (ip) yield { ip, identity: this.ipIdentity(rec, text) };
    }
  }

  private namespaceLabels(ns: string): Readonly<Record<string, string>> {
    return this.namespaces.get(ns) ?? { [NAMESPACE_NAME_LABEL]: ns };
  }

  upsertNamespace(name: string, labels: Readonly<Record<string, string>>): void {
    const next = namespaceWithDefaults(name, labels).labels;
    const stored = this.namespaces.get(name);
    const prev = this.namespaceLabels(name);
    this.namespaces.set(name, next);
    if (!sameStringMap(prev, next)) {
      // Namespace labels are part of every pod identity in it: re-identify them. All of them move,
      // in order, so their order in the namespace's set is the one re-appending each would give.
      // A re-identification is a write of the pod's addresses (finding 1736).
      for (const k of [...(this.podsByNamespace.get(name) ?? [])]) {
        const rec = this.facts.pod(k) as PodRecord;
        this.moveIdentity(k, rec, false);
        this.retakeIps(rec);
      }
    }
    // Logged after the pods: undoing restores the labels first, then the pods' old identities.
    this.ctx.onUndo(() => (stored ? this.namespaces.set(name, stored) : this.namespaces.delete(name)));
  }

  /** Removes the namespace's pods; `forgetNamespace` then drops the namespace itself. */
  removePodsIn(name: string): void {
    for (const k of [...(this.podsByNamespace.get(name) ?? [])]) this.removePod(k);
  }

  forgetNamespace(name: string): void {
    const stored = this.namespaces.get(name);
    this.namespaces.delete(name);
    if (stored) this.ctx.onUndo(() => this.namespaces.set(name, stored));
  }

  /** After identity events: pods of these label keys whose identity is no longer the current one are re-identified. */
  reidentify(labelKeys: readonly string[]): void {
    for (const labelKey of labelKeys) {
      for (const k of [...(this.podsByLabels.get(labelKey) ?? [])]) {
        const rec = this.facts.pod(k) as PodRecord;
        if (this.identities.current(labelKey) === rec.identity) continue;
        this.reidentifyPod(k);
      }
    }
  }

  /** Identity events and network splits: a new identity is no new claim on the pod's IPs, it keeps exactly the ones it owned (no CiliumEndpoint write: finding 1736). */
  reidentifyPod(key: string): void {
    this.moveIdentity(key, this.facts.pod(key) as PodRecord, true);
  }

  /**
   * Re-identifies a pod in place: the record keeps its IPs and its place in every index, only its
   * identity (and endpoint map) change, with the calls into identities, maps and splits in the
   * order a removal and re-addition make them (a namespace relabel moves ~100 pods: a new record,
   * two undo closures and the index rewrites per pod were most of its garbage).
   * `reappend`: move the pod to the end of its namespace's set, as a re-addition would.
   * `labels`: the identity labels to take (an undo gives back the old ones, as for a removal).
   */
  private moveIdentity(key: string, rec: PodRecord, reappend: boolean, labels?: LabelSet): void {
    const { pod } = rec;
    const undoLabels = this.splits ? rec.identity.labels : undefined;
    if (pod.ips === undefined) this.ctx.touchIpcacheHost(pod.ip);
    else for (const ip of pod.ips) this.ctx.touchIpcacheHost(ip);
    // A pod held fail-closed keeps `pending` through namespace relabels and identity events (finding 2352).
    if (pod.failClosed === true) return this.reappendIf(reappend, key, pod);
    if (rec.map) {
      this.maps.detachEndpoint(key, rec.map);
      rec.map = null;
    }
    const external = this.identities.source === 'external';
    if (external) removeFrom(this.podsByLabels, rec.labelKey, key);
    // A move is no write: the pod keeps the addresses it owned, and its ports their node-wide count.
    const nodeWide = this.ownsAny(rec);
    this.identities.releaseForPod(rec.identity, pod.ports, nodeWide);
    this.splits?.podLeft(key, pod, rec.identity);
    const memo = this.identityLabels(pod);
    const base = memo.labels;
    const derived = this.splits?.podJoined(key, pod, base, memo.labelKey) ?? [];
    labels ??= derived.length === 0 ? base : makeLabelSet([...base, ...derived]);
    const labelKey = labels === base ? memo.labelKey : labelSetKey(labels);
    rec.identity = this.identities.acquire(labels, undefined, pod.ports, labelKey, nodeWide);
    rec.labelKey = shareKey(memo, rec.identity, labelKey);
    if (external) addTo(this.podsByLabels, labelKey, key);
    this.reappendIf(reappend, key, pod);
    this.attachIfLocal(key, rec);
    // By key: a later event of the transaction may have replaced the record (a removal's undo re-adds a new one).
    this.ctx.onUndo(() => this.moveIdentity(key, this.facts.pod(key) ?? fail(key), false, undoLabels));
  }

  /** `reappend`: the pod moves to the end of its namespace's set, as a re-addition would. */
  private reappendIf(reappend: boolean, key: string, pod: Pod): void {
    if (!reappend) return;
    const inNs = this.podsByNamespace.get(pod.namespace) as Set<string>;
    inNs.delete(key);
    inNs.add(key);
  }

  /**
   * A pod of a relabelled namespace writes its addresses again: Cilium patches its CiliumEndpoint with
   * the new identity and every agent upserts them (docs/semantics.md "Pods as endpoints"). The pods
   * are written in their write order (distill's choice): it takes each address unless a pod of the
   * same relabel written after it holds it, so the last written of them owns it, whatever order
   * they are visited in.
   */
  private retakeIps(rec: PodRecord): void {
    const { pod } = rec;
    if (pod.ips === undefined) this.retakeIp(pod.ip.text, rec);
    else for (const ip of pod.ips) this.retakeIp(ip.text, rec);
  }

  private retakeIp(ip: string, rec: PodRecord): void {
    const held = this.facts.ownerOf(ip);
    if (held === rec || (held !== undefined && held.pod.namespace === rec.pod.namespace && held.written > rec.written)) return;
    this.moveOwner(ip, rec);
    const heldKey = held && podKey(held.pod);
    this.ctx.onUndo(() => this.moveOwner(ip, heldKey === undefined ? undefined : this.facts.pod(heldKey) ?? fail(heldKey)));
  }

  /** Whether the pod of `rec` owns one of its addresses in the ipcache: its named ports are then node-wide (3740). */
  private ownsAny(rec: PodRecord): boolean {
    const { pod } = rec;
    if (pod.ips === undefined) return this.facts.ownerOf(pod.ip.text) === rec;
    return pod.ips.some((ip) => this.facts.ownerOf(ip.text) === rec);
  }

  /**
   * `ip` goes to `to` (none: to no pod) from the pod owning it, whose named ports leave the node-wide map if that was
   * its last address, as `to`'s join it if it owned none (Cilium's ipcache counts the ports of each address's one pod).
   */
  private moveOwner(ip: string, to: PodRecord | undefined): void {
    const from = this.facts.ownerOf(ip);
    if (from === to) return;
    const gains = to !== undefined && !this.ownsAny(to);
    if (to === undefined) this.facts.deleteOwner(ip);
    else this.facts.setOwner(ip, to);
    if (from !== undefined) this.lostIp(from);
    if (gains) this.identities.namedPorts.changeNodeWide(to.identity.id, to.pod.ports, +1);
  }

  /** After `rec` lost an address to another pod: its named ports leave the node-wide map with its last one (3740). */
  private lostIp(rec: PodRecord): void {
    if (this.facts.pod(podKey(rec.pod)) !== rec || this.ownsAny(rec)) return;
    this.identities.namedPorts.changeNodeWide(rec.identity.id, rec.pod.ports, -1);
  }

  /** A local pod is an endpoint: attached to its identity's shared map state (populated when new). */
  private attachIfLocal(key: string, rec: PodRecord): void {
    if (!rec.local) return;
    const { map, created } = this.maps.attachEndpoint(key, rec.identity, rec.pod.ports);
    rec.map = map;
    if (created) this.resolver.populate(map);
  }

  /** The IPs a record owns in the ipcache; undefined when it owns all of them (the usual case). */
  private ownedIps(rec: PodRecord): string[] | undefined {
    const ips = podIps(rec.pod);
    if (ips.every((ip) => this.facts.ownerOf(ip.text) === rec)) return undefined;
    return ips.filter((ip) => this.facts.ownerOf(ip.text) === rec).map((ip) => ip.text);
  }

  /**
   * After a rebuild replayed the committed pods: gives each pod IP to the pod the committed model
   * says owns it (`ownerOf`: its key, or undefined when its owner was deleted and nobody owns it).
   */
  adoptIpOwners(ownerOf: (ip: string) => string | undefined): void {
    const changes: [Pod['ip'], PodRecord | undefined][] = [];
    for (const [text, held] of this.facts.ipOwners()) {
      const want = ownerOf(text);
      if (want === podKey(held.pod)) continue;
      const rec = want === undefined ? undefined : this.facts.pod(want) ?? fail(want);
      changes.push([podIps(held.pod).find((a) => a.text === text) as Pod['ip'], rec]);
    }
    for (const [ip, rec] of changes) {
      this.ctx.touchIpcacheHost(ip);
      this.moveOwner(ip.text, rec);
    }
  }

  /** `key`: `podKey(pod)` (flat; unique per pod, not interned: interning costs ~7x more). */
  upsertPod(pod: Pod, local: boolean, key: string = podKey(pod)): void {
    const old = this.facts.pod(key);
    if (old) this.removeRecord(key, old);
    this.addPod(key, pod, local);
  }

  /**
   * `labels`: undoing a removal gives the pod back the identity labels it had (derived ones depend on other pods).
   * `owned`: the IPs it takes in the ipcache (all when absent: the last writer owns an IP).
   * `written`: when it was written (undoing a removal gives it back; absent: now).
   */
  private addPod(key: string, pod: Pod, local: boolean, labels?: LabelSet, owned?: readonly string[], written?: number): void {
    if (pod.failClosed === true) return this.addFailClosed(key, pod, local, owned, written);
    const memo = this.identityLabels(pod);
    const base = memo.labels;
    const derived = this.splits?.podJoined(key, pod, base, memo.labelKey) ?? [];
    labels ??= derived.length === 0 ? base : makeLabelSet([...base, ...derived]);
    const labelKey = labels === base ? memo.labelKey : labelSetKey(labels);
    const identity = this.identities.acquire(labels, undefined, pod.ports, labelKey, takesAny(pod, owned));
    const rec: PodRecord = { pod, local, identity, labelKey: shareKey(memo, identity, labelKey), map: null, written: written ?? ++this.writes };
    if (local) this.localVersion++;
    if (this.identities.source === 'external') addTo(this.podsByLabels, labelKey, key);
    this.facts.setPod(key, rec);
    let inNs = this.podsByNamespace.get(pod.namespace);
    if (!inNs) this.podsByNamespace.set(pod.namespace, (inNs = new Set()));
    inNs.add(key);
    // No array for the one address of a single-stack pod (podIps).
    let previous: [string, string][] | null = null;
    if (pod.ips === undefined) previous = this.takeIp(pod.ip, rec, owned, previous);
    else for (const ip of pod.ips) previous = this.takeIp(ip, rec, owned, previous);
    this.attachIfLocal(key, rec);
    if (this.ctx.undoLog !== null) this.undoAdd(key, previous);
  }

  /**
   * A pod the agent holds fail-closed (`Pod.failClosed`, finding 2352): it takes its addresses in the ipcache as
   * `pending`, which `ipIdentity` writes as the unallocated number (no CiliumEndpoint is read for it: its labels
   * are not read), and counts in `pendingPods`, so every local map denies that number both ways. It joins no
   * group of the network splits (its labels, address or ports change no other pod's identity); its named ports count
   * cluster-wide while it owns an address (`acquirePending`, findings 3264, 3740); a local one is attached to `pending`'s map state, which stays empty (default deny both ways).
   */
  private addFailClosed(key: string, pod: Pod, local: boolean, owned: readonly string[] | undefined, written: number | undefined): void {
    const identity = this.identities.acquirePending(pod.ports, takesAny(pod, owned));
    const rec: PodRecord = { pod, local, identity, labelKey: '', map: null, written: written ?? ++this.writes };
    if (local) this.localVersion++;
    this.facts.setPod(key, rec);
    let inNs = this.podsByNamespace.get(pod.namespace);
    if (!inNs) this.podsByNamespace.set(pod.namespace, (inNs = new Set()));
    inNs.add(key);
    let previous: [string, string][] | null = null;
    for (const ip of podIps(pod)) previous = this.takeIp(ip, rec, owned, previous);
    this.attachIfLocal(key, rec);
    if (this.ctx.undoLog !== null) this.undoAdd(key, previous);
  }

  /** The pod of `rec` takes `ip` in the ipcache (unless `owned` leaves it out); `previous` gains the pod that held it. */
  private takeIp(ip: Pod['ip'], rec: PodRecord, owned: readonly string[] | undefined, previous: [string, string][] | null): [string, string][] | null {
    this.ctx.touchIpcacheHost(ip);
    if (owned && !owned.includes(ip.text)) return previous;
    // Who held it: the undo gives it back, and its named ports may leave the node-wide map (rec's joined it with its identity).
    const prev = this.facts.ownerOf(ip.text);
    if (prev && this.ctx.undoLog !== null) (previous ??= []).push([ip.text, podKey(prev.pod)]);
    this.facts.setOwner(ip.text, rec);
    if (prev) this.lostIp(prev);
    return previous;
  }

  /** Apart: a closure in `addPod` would allocate its context on every call, undo log or not (a cold start has none). */
  private undoAdd(key: string, previous: readonly [string, string][] | null): void {
    this.ctx.onUndo(() => {
      this.removePod(key);
      // The IPs it took go back to the pods that held them (by key: their records may be new ones by now).
      for (const [ip, prevKey] of previous ?? []) this.moveOwner(ip, this.facts.pod(prevKey) ?? fail(prevKey));
    });
  }

  /**
   * The replicas of a workload arrive one after another with the same labels object (a trace's
   * pods share one, as a ReplicaSet's pods share a template): the last pod's identity labels are
   * reused rather than rebuilt (~2.7 KB of garbage a pod).
   */
  private identityLabels(pod: Pod): IdentityLabelsMemo {
    const nsLabels = this.namespaceLabels(pod.namespace);
    const last = this.lastIdentityLabels;
    if (last !== null && last.podLabels === pod.labels && last.nsLabels === nsLabels && last.namespace === pod.namespace && last.serviceAccount === pod.serviceAccount) return last;
    const labels = podIdentityLabels(pod, nsLabels);
    return (this.lastIdentityLabels = { podLabels: pod.labels, nsLabels, namespace: pod.namespace, serviceAccount: pod.serviceAccount, labels, labelKey: labelSetText(labels) });
  }

  removePod(key: string): void {
    const rec = this.facts.pod(key);
    if (!rec) throw new Error(`internal: pod ${key} vanished`);
    this.removeRecord(key, rec);
  }

  private removeRecord(key: string, rec: PodRecord): void {
    const owned = this.ownedIps(rec);
    for (const ip of podIps(rec.pod)) this.ctx.touchIpcacheHost(ip);
    if (rec.local) this.localVersion++;
    if (rec.map) {
      this.maps.detachEndpoint(key, rec.map);
      rec.map = null;
    }
    this.facts.deletePod(key);
    const failClosed = rec.pod.failClosed === true;
    if (this.identities.source === 'external' && !failClosed) removeFrom(this.podsByLabels, rec.labelKey, key);
    const inNs = this.podsByNamespace.get(rec.pod.namespace);
    inNs?.delete(key);
    if (inNs?.size === 0) this.podsByNamespace.delete(rec.pod.namespace);
    for (const ip of podIps(rec.pod)) if (this.facts.ownerOf(ip.text) === rec) this.facts.deleteOwner(ip.text);
    this.identities.releaseForPod(rec.identity, rec.pod.ports, owned === undefined || owned.length > 0);
    if (!failClosed) this.splits?.podLeft(key, rec.pod, rec.identity);
    const labels = this.splits ? rec.identity.labels : undefined;
    this.ctx.onUndo(() => this.addPod(key, rec.pod, rec.local, labels, owned, rec.written));
  }
}

/**
 * The identity table's copy of a pod's label key when the pod's identity is the one of that key (not
 * `pending`, not derived labels), so every pod of an identity holds one string; the memo takes it too.
 */
function shareKey(memo: IdentityLabelsMemo, identity: IdentityRecord, labelKey: string): string {
  if (identity.key !== labelKey) return labelKey;
  if (memo.labelKey === labelKey) memo.labelKey = identity.key;
  return identity.key;
}

/** The identity labels a running pod cannot change: its namespace's name, its service account, its cluster. */
const FIXED_KEYS = [POD_NAMESPACE_KEY, SERVICE_ACCOUNT_KEY, CLUSTER_KEY] as const;

/**
 * `source:value` of every label of `key` (none: empty), so `k8s:` and another source differ, and an identity holding
 * the key twice (`k8s:` the pod's namespace, `unspec:` another, which an `any:` selector reads) is not the pod's
 * (review 27v, finding 2322: only the first label of the key was compared).
 */
function fixedValues(labels: LabelSet, key: string): string[] {
  return labels
    .filter((x) => x.key === key)
    .map((l) => `${l.source}:${l.value}`)
    .sort();
}

/** Whether `a` and `b` hold the same labels of `key`. */
function sameFixed(a: LabelSet, b: LabelSet, key: string): boolean {
  const x = fixedValues(a, key);
  const y = fixedValues(b, key);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Whether a pod written now takes one of its addresses: all of them, or those of `owned` (an undone removal's). */
function takesAny(pod: Pod, owned: readonly string[] | undefined): boolean {
  return owned === undefined || podIps(pod).some((ip) => owned.includes(ip.text));
}

function fail(key: string): never {
  throw new Error(`internal: pod ${key} vanished`);
}

function addTo(m: Map<string, Set<string>>, k: string, v: string): void {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}

function removeFrom(m: Map<string, Set<string>>, k: string, v: string): void {
  const s = m.get(k);
  s?.delete(v);
  if (s?.size === 0) m.delete(k);
}

function sameStringMap(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && b[k] === a[k]);
}
