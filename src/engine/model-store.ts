import { namespaceWithDefaults, podKey } from '../model/cluster.js';
import { policyRefKey } from '../model/rules.js';
import { DEFAULT_DNS_CACHE_OPTIONS, DnsCacheOptions } from '../model/fqdn.js';
import { endpointKey } from './cilium-endpoints.js';
import { DnsCache } from './dns-cache.js';
import type { EngineEvent } from './events.js';
import type { PodFact, PodFacts } from './pod-facts.js';
import type { PolicyFact, PolicyFacts } from './policy-facts.js';
import type { ModelView } from './validate.js';

/** `ModelStore.keep`'s events. */
type KeptEvent = Extract<EngineEvent, { readonly type: 'upsertIdentity' | 'deleteIdentity' | 'upsertNode' | 'deleteNode' | 'upsertCidrGroup' | 'deleteCidrGroup' | 'setApiServer' | 'upsertEndpoint' | 'deleteEndpoint' }>;

/**
 * The committed model: namespaces, pods and policies as of the last transaction that went through.
 * It is changed only after a transaction commits, so while one runs it is the state to fall back
 * to: validation reads it, and an engine whose caches an unexpected exception may have left half
 * changed rebuilds them from it. The pods and the owners of their IPs are the pod table's
 * (`PodFacts`: one table per fact), the policies the resolver's (`PolicyFacts`): each keeps what
 * a transaction overwrote until it commits.
 */
export class ModelStore implements ModelView {
  private readonly namespaces = new Map<string, Readonly<Record<string, string>>>();
  /**
   * Pod and policy keys by namespace, built when first asked for (a namespace deletion, which
   * validation and this model handle): until then no upsert pays for a Set entry nobody reads.
   * Built in the tables' order: the pods' is the pod table's (a key deleted and re-added may keep its place).
   */
  private podsByNs: Map<string, Set<string>> | null = null;
  private policiesByNs: Map<string, Set<string>> | null = null;
  private readonly identities = new Map<number, Extract<EngineEvent, { readonly type: 'upsertIdentity' }>>();
  private readonly nodes = new Map<string, EngineEvent & { type: 'upsertNode' }>();
  private readonly cidrGroups = new Map<string, EngineEvent & { type: 'upsertCidrGroup' }>();
  /** CiliumEndpoints by pod key (`namespace/name`). */
  private readonly endpoints = new Map<string, EngineEvent & { type: 'upsertEndpoint' }>();
  private apiServer: (EngineEvent & { type: 'setApiServer' }) | undefined;
  /** The committed DNS cache: fed only the answers the proxy learnt (the engine filters them). */
  dns: DnsCache;

  /**
   * `facts`: the pods, and each pod IP's owner in the ipcache (the last pod written with it; deleting
   * the owner leaves the IP unowned even when another pod still claims it: Cilium's pod watcher
   * deletes the entry, docs/semantics.md "Pods as endpoints"), so a replay alone cannot rebuild these.
   */
  constructor(
    private readonly facts: PodFacts<PodFact>,
    private readonly policies: PolicyFacts<PolicyFact>,
    readonly identitySource: 'local' | 'external' = 'local',
    dnsOptions: DnsCacheOptions = DEFAULT_DNS_CACHE_OPTIONS,
  ) {
    this.dns = new DnsCache(dnsOptions, false);
  }

  /** No namespace, pod, policy, identity or node (the DNS cache aside): rebuilding from it is free. */
  isEmpty(): boolean {
    return this.namespaces.size === 0 && this.facts.podCount === 0 && this.policies.size === 0 && this.identities.size === 0 && this.nodes.size === 0 && this.cidrGroups.size === 0 && this.endpoints.size === 0 && this.apiServer === undefined;
  }

  hasIdentity(id: number): boolean {
    return this.identities.has(id);
  }

  hasNode(name: string): boolean {
    return this.nodes.has(name);
  }

  hasCidrGroup(name: string): boolean {
    return this.cidrGroups.has(name);
  }

  dnsNow(): number {
    return this.dns.now;
  }

  hasNamespace(name: string): boolean {
    return this.namespaces.has(name);
  }

  hasPod(key: string): boolean {
    return this.facts.pod(key) !== undefined;
  }

  /** Pod IP → the key of the pod owning it: a copy, for a rebuild that refills the tables (`events`). */
  ipOwnerKeys(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [ip, rec] of this.facts.ipOwners()) out.set(ip, podKey(rec.pod));
    return out;
  }

  hasPolicy(key: string): boolean {
    return this.policies.get(key) !== undefined;
  }

  podsInNamespace(namespace: string): Iterable<string> {
    if (this.podsByNs === null) {
      this.podsByNs = new Map();
      for (const [key, rec] of this.facts.podEntries()) index(this.podsByNs, rec.pod.namespace, key, true);
    }
    return this.podsByNs.get(namespace) ?? [];
  }

  policiesInNamespace(namespace: string): Iterable<string> {
    if (this.policiesByNs === null) {
      this.policiesByNs = new Map();
      for (const [key, rec] of this.policies.entries()) if (rec.given.ref.namespace !== undefined) index(this.policiesByNs, rec.given.ref.namespace, key, true);
    }
    return this.policiesByNs.get(namespace) ?? [];
  }

  /** Records a committed event (already validated), with the engine's semantics. */
  apply(e: EngineEvent): void {
    switch (e.type) {
      case 'upsertNamespace':
        this.namespaces.set(e.name, namespaceWithDefaults(e.name, e.labels).labels);
        return;
      case 'dnsResponse':
        this.dns.record(e.endpoint, e.name, e.ips, e.ttl, noop);
        return;
      case 'advanceTime':
        this.dns.advance(e.seconds, noop);
        return;
      case 'deleteNamespace':
        // Its pods and policies left the tables with the transaction: their DNS history and index entries go here.
        this.dns.forgetNamespace(e.name, noop);
        this.podsByNs?.delete(e.name);
        this.policiesByNs?.delete(e.name);
        this.namespaces.delete(e.name);
        return;
      case 'upsertPod': {
        if (this.podsByNs === null && (e.local ?? false)) return;
        const key = podKey(e.pod); // flat: a concatenation is a tree of 32-byte pieces until flattened
        if (!(e.local ?? false)) this.dns.forgetEndpoint(key, noop); // no endpoint here: its DNS history goes (engine.ts)
        if (this.podsByNs !== null) index(this.podsByNs, e.pod.namespace, key, true);
        return;
      }
      case 'deletePod': {
        const key = `${e.namespace}/${e.name}`;
        this.dns.forgetEndpoint(key, noop);
        if (this.podsByNs !== null) index(this.podsByNs, e.namespace, key, false);
        return;
      }
      case 'upsertPolicy':
        // The policy itself is in the resolver's table: only the namespace index, once built (not in a cold start), records it.
        if (this.policiesByNs !== null && e.policy.ref.namespace !== undefined) index(this.policiesByNs, e.policy.ref.namespace, policyRefKey(e.policy.ref), true);
        return;
      case 'deletePolicy':
        if (this.policiesByNs !== null && e.ref.namespace !== undefined) index(this.policiesByNs, e.ref.namespace, policyRefKey(e.ref), false);
        return;
      default:
        return this.keep(e);
    }
  }

  /** The events whose records the model keeps as they came: identities, nodes, CIDR groups, the API server, CiliumEndpoints. */
  private keep(e: KeptEvent): void {
    switch (e.type) {
      case 'upsertIdentity':
        this.identities.set(e.id, e);
        return;
      case 'deleteIdentity':
        this.identities.delete(e.id);
        return;
      case 'upsertNode':
        this.nodes.set(e.name, e);
        return;
      case 'deleteNode':
        this.nodes.delete(e.name);
        return;
      case 'upsertCidrGroup':
        this.cidrGroups.set(e.group.name, e);
        return;
      case 'deleteCidrGroup':
        this.cidrGroups.delete(e.name);
        return;
      case 'setApiServer':
        this.apiServer = e;
        return;
      case 'upsertEndpoint':
        this.endpoints.set(endpointKey(e), e);
        return;
      case 'deleteEndpoint':
        this.endpoints.delete(endpointKey(e));
        return;
    }
  }

  /**
   * Events that build this model from nothing (the DNS cache aside: `dns.clone()`): identities,
   * namespaces, then pods, then policies. Who owns an IP two pods claim is not in them: `ipOwnerKeys`.
   */
  events(): EngineEvent[] {
    const out: EngineEvent[] = [];
    for (const e of this.identities.values()) out.push(e);
    for (const node of this.nodes.values()) out.push(node);
    for (const group of this.cidrGroups.values()) out.push(group);
    if (this.apiServer) out.push(this.apiServer);
    for (const ep of this.endpoints.values()) out.push(ep);
    for (const [name, labels] of this.namespaces) out.push({ type: 'upsertNamespace', name, labels });
    // In write order (an undone transaction may have moved records in the table): a relabel re-writes pods in it.
    for (const { pod, local } of [...this.facts.records()].sort((a, b) => a.written - b.written)) out.push({ type: 'upsertPod', pod, local });
    for (const { given } of this.policies.records()) out.push({ type: 'upsertPolicy', policy: given });
    return out;
  }
}

const noop = (): void => undefined;

function index(m: Map<string, Set<string>>, k: string, v: string, add: boolean): void {
  let s = m.get(k);
  if (add) {
    if (!s) m.set(k, (s = new Set()));
    s.add(v);
  } else if (s) {
    s.delete(v);
    if (s.size === 0) m.delete(k);
  }
}
