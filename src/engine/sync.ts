import type { ClusterState, Pod } from '../model/cluster.js';
import type { Policy } from '../model/rules.js';
import type { EngineEvent } from './events.js';

/** Which pods are the node's own endpoints. */
export type LocalityRule = (pod: Pod) => boolean;

export const ALL_LOCAL: LocalityRule = () => true;

/**
 * The events that turn the engine's view of `from` into `to`: what a Kubernetes watch would
 * deliver. Objects are compared by reference: the cluster model is immutable, so an unchanged
 * object is the same object. O(cluster) — for scenarios and tests, not for the agent's path.
 */
export function clusterEvents(from: ClusterState, to: ClusterState, isLocal: LocalityRule = ALL_LOCAL): EngineEvent[] {
  const events: EngineEvent[] = [];
  for (const [name, ns] of to.namespaces) {
    if (from.namespaces.get(name) !== ns) events.push({ type: 'upsertNamespace', name, labels: ns.labels });
  }
  for (const [key, pod] of from.pods) {
    if (!to.pods.has(key)) events.push({ type: 'deletePod', namespace: pod.namespace, name: pod.name });
  }
  for (const [key, p] of from.policies) {
    if (!to.policies.has(key)) events.push({ type: 'deletePolicy', ref: p.ref });
  }
  for (const [key, pod] of to.pods) {
    if (from.pods.get(key) !== pod) events.push({ type: 'upsertPod', pod, local: isLocal(pod) });
  }
  for (const [key, p] of to.policies) {
    if (from.policies.get(key) !== p) events.push({ type: 'upsertPolicy', policy: p as Policy });
  }
  for (const name of from.namespaces.keys()) {
    if (!to.namespaces.has(name)) events.push({ type: 'deleteNamespace', name });
  }
  return events;
}

/** Every event needed to build `state` from nothing. */
export function initialEvents(state: ClusterState, isLocal: LocalityRule = ALL_LOCAL): EngineEvent[] {
  return clusterEvents({ namespaces: new Map(), pods: new Map(), externals: new Map(), policies: new Map() }, state, isLocal);
}
