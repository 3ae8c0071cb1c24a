import type { EngineEvent } from '../engine/events.js';
import { ClusterChangeError, ClusterNode, ClusterState, Namespace, nodeEndpointsOf, namespaceWithDefaults, Pod, podIps, podKey, External, sameNamespaceLabels } from '../model/cluster.js';
import type { DnsCacheState } from '../model/fqdn.js';
import type { CidrGroup } from '../model/cidr-group.js';
import { Policy, policyRefKey } from '../model/rules.js';
import { applyEventToCluster } from './cluster-sync.js';

/**
 * The cluster model of the replay's full-recompute mode and `--verify-every` oracle, updated in place:
 * each event costs O(change) (a namespace delete: O(its pods)), not a copy of every pod.
 * Readers see it as a ClusterState; they must not keep it across `apply` (nothing does: each
 * recompute reads it once). Same semantics and errors as `applyEventToCluster`.
 */
export class MutableCluster implements ClusterState {
  readonly namespaces = new Map<string, Namespace>();
  readonly pods = new Map<string, Pod>();
  readonly externals = new Map<string, External>();
  readonly nodes = new Map<string, ClusterNode>();
  readonly policies = new Map<string, Policy>();
  /** CiliumCIDRGroup objects by name (traces with `upsertCidrGroup` lines). */
  readonly cidrGroups = new Map<string, CidrGroup>();
  /** Local pod keys → local?, as the events said. */
  readonly local = new Map<string, boolean>();
  /** Addresses whose owner left them while other pods still claim them (`ipOwner`, src/model/cluster.ts `unownedAfter`). */
  readonly unownedIps = new Set<string>();
  private readonly podsByNamespace = new Map<string, Set<string>>();
  /** Address → the pod written last among its claimants: `unownedIps` kept in O(change), not by scanning every pod. */
  private readonly lastClaimant = new Map<string, string>();
  /** Address → how many pods claim it. */
  private readonly claims = new Map<string, number>();
  /**
   * The DNS cache the local pods' DNS proxies learnt (toFQDNs traces), stepped as the immutable
   * model steps it: an answer judged by the policy in force when it arrives (finding 870).
   */
  dns: DnsCacheState | undefined;

  apply(e: EngineEvent): void {
    switch (e.type) {
      case 'upsertNamespace':
        return this.upsertNamespace(namespaceWithDefaults(e.name, e.labels));
      case 'deleteNamespace':
        return this.deleteNamespace(e.name);
      case 'upsertPod':
        return this.upsertPod(e.pod, e.local ?? false);
      case 'deletePod':
        return this.deletePod(`${e.namespace}/${e.name}`);
      case 'upsertPolicy':
        this.policies.set(policyRefKey(e.policy.ref), e.policy);
        return;
      case 'deletePolicy': {
        const key = policyRefKey(e.ref);
        if (!this.policies.delete(key)) throw new ClusterChangeError(`policy ${key} does not exist`);
        return;
      }
      case 'upsertNode':
        this.nodes.set(e.name, { name: e.name, ips: e.ips, local: e.local ?? false, ...nodeEndpointsOf(e), ...(e.labels ? { labels: e.labels } : {}), ...(e.failClosed ? { failClosed: e.failClosed } : {}) });
        return;
      case 'deleteNode':
        if (!this.nodes.delete(e.name)) throw new ClusterChangeError(`node "${e.name}" does not exist`);
        return;
      case 'upsertIdentity':
      case 'deleteIdentity':
        // Identity numbers are not part of the cluster model: the oracle decides by labels.
        return;
      case 'upsertCidrGroup':
        this.cidrGroups.set(e.group.name, e.group);
        return;
      case 'deleteCidrGroup':
        if (!this.cidrGroups.delete(e.name)) throw new ClusterChangeError(`CiliumCIDRGroup "${e.name}" does not exist`);
        return;
      case 'dnsResponse':
      case 'advanceTime':
        // Only the DNS cache of the result is kept (an answer's server is never added as an external).
        this.dns = applyEventToCluster(this, e).dns;
        return;
    }
  }

  private upsertPod(pod: Pod, local: boolean): void {
    const key = podKey(pod);
    const old = this.pods.get(key);
    const taken = podIps(pod).map((ip) => ip.text);
    if (old) this.release(key, old, taken);
    // Write order, as `upsertPod` of src/model/cluster.ts: an update moves the pod last (a fresh engine's owner of a shared address).
    this.pods.delete(key);
    this.pods.set(key, pod);
    for (const ip of taken) {
      if (!old || !podIps(old).some((a) => a.text === ip)) this.claims.set(ip, (this.claims.get(ip) ?? 0) + 1);
      this.lastClaimant.set(ip, key);
      this.unownedIps.delete(ip);
    }
    this.local.set(key, local);
    // A pod not on this node has no endpoint here, nor DNS history (withLocality in cluster-sync.ts).
    if (!local) this.dropAnswers(key);
    let keys = this.podsByNamespace.get(pod.namespace);
    if (!keys) this.podsByNamespace.set(pod.namespace, (keys = new Set()));
    // In write order, as `pods`: a relabel re-writes them in it.
    keys.delete(key);
    keys.add(key);
  }

  /** New labels re-write the namespace's pods, in their write order (`upsertNamespace` of src/model/cluster.ts, finding 1736). */
  private upsertNamespace(ns: Namespace): void {
    const before = this.namespaces.get(ns.name)?.labels ?? namespaceWithDefaults(ns.name, {}).labels;
    this.namespaces.set(ns.name, ns);
    const keys = this.podsByNamespace.get(ns.name);
    if (!keys || sameNamespaceLabels(before, ns.labels)) return;
    for (const key of keys) {
      const pod = this.pods.get(key) as Pod;
      this.pods.delete(key);
      this.pods.set(key, pod);
      for (const { text: ip } of podIps(pod)) {
        this.lastClaimant.set(ip, key);
        this.unownedIps.delete(ip);
      }
    }
  }

  private deletePod(key: string): void {
    const pod = this.pods.get(key);
    if (!pod) throw new ClusterChangeError(`pod "${key}" does not exist`);
    this.release(key, pod, []);
    this.pods.delete(key);
    this.local.delete(key);
    this.podsByNamespace.get(pod.namespace)?.delete(key);
    this.dropAnswers(key);
  }

  private dropAnswers(pod: string): void {
    // Not `withoutPodAnswers`: its per-endpoint `dropped` count is for diffing two states
    // (clusterEvents), which this model never is, and would grow with every deleted learner.
    const dns = this.dns;
    if (dns?.entries.some((e) => e.endpoint === pod)) this.dns = { ...dns, entries: dns.entries.filter((e) => e.endpoint !== pod) };
  }

  /** As Kubernetes does: the namespace's pods and namespaced policies go with it. */
  private deleteNamespace(name: string): void {
    if (!this.namespaces.delete(name)) throw new ClusterChangeError(`namespace "${name}" does not exist`);
    for (const key of this.podsByNamespace.get(name) ?? []) {
      this.release(key, this.pods.get(key) as Pod, []);
      this.pods.delete(key);
      this.local.delete(key);
      this.dropAnswers(key);
    }
    this.podsByNamespace.delete(name);
    for (const [key, p] of this.policies) if (p.ref.namespace === name) this.policies.delete(key);
  }

  /** Pod `key` (as `pod`) stops claiming its addresses outside `kept`: one it owned becomes unowned while others claim it. */
  private release(key: string, pod: Pod, kept: readonly string[]): void {
    for (const { text: ip } of podIps(pod)) {
      if (kept.includes(ip)) continue;
      const n = (this.claims.get(ip) ?? 1) - 1;
      const owned = this.lastClaimant.get(ip) === key && !this.unownedIps.has(ip);
      if (this.lastClaimant.get(ip) === key) this.lastClaimant.delete(ip);
      if (n === 0) {
        this.claims.delete(ip);
        this.unownedIps.delete(ip);
      } else {
        this.claims.set(ip, n);
        if (owned) this.unownedIps.add(ip);
      }
    }
  }
}
