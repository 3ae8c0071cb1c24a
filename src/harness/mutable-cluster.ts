import type { EngineEvent } from '../engine/events.js';
import { ClusterChangeError, ClusterNode, ClusterState, Namespace, nodeEndpointsOf, namespaceWithDefaults, Pod, podKey, External } from '../model/cluster.js';
import { Policy, policyRefKey } from '../model/rules.js';

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
  /** Local pod keys → local?, as the events said. */
  readonly local = new Map<string, boolean>();
  private readonly podsByNamespace = new Map<string, Set<string>>();

  apply(e: EngineEvent): void {
    switch (e.type) {
      case 'upsertNamespace':
        this.namespaces.set(e.name, namespaceWithDefaults(e.name, e.labels));
        return;
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
        this.nodes.set(e.name, { name: e.name, ips: e.ips, local: e.local ?? false, ...nodeEndpointsOf(e), ...(e.labels ? { labels: e.labels } : {}) });
        return;
      case 'deleteNode':
        if (!this.nodes.delete(e.name)) throw new ClusterChangeError(`node "${e.name}" does not exist`);
        return;
      case 'upsertIdentity':
      case 'deleteIdentity':
        // Identity numbers are not part of the cluster model: the oracle decides by labels.
        return;
    }
  }

  private upsertPod(pod: Pod, local: boolean): void {
    const key = podKey(pod);
    this.pods.set(key, pod);
    this.local.set(key, local);
    let keys = this.podsByNamespace.get(pod.namespace);
    if (!keys) this.podsByNamespace.set(pod.namespace, (keys = new Set()));
    keys.add(key);
  }

  private deletePod(key: string): void {
    const pod = this.pods.get(key);
    if (!pod) throw new ClusterChangeError(`pod "${key}" does not exist`);
    this.pods.delete(key);
    this.local.delete(key);
    this.podsByNamespace.get(pod.namespace)?.delete(key);
  }

  /** As Kubernetes does: the namespace's pods and namespaced policies go with it. */
  private deleteNamespace(name: string): void {
    if (!this.namespaces.delete(name)) throw new ClusterChangeError(`namespace "${name}" does not exist`);
    for (const key of this.podsByNamespace.get(name) ?? []) {
      this.pods.delete(key);
      this.local.delete(key);
    }
    this.podsByNamespace.delete(name);
    for (const [key, p] of this.policies) if (p.ref.namespace === name) this.policies.delete(key);
  }
}
