import { IpAddress, parseCidr, nthAddress } from './cidr.js';
import type { DnsCacheState } from './fqdn.js';
import { podIdentityLabels } from './identity.js';
import { LabelSet, NAMESPACE_NAME_LABEL } from './labels.js';
import type { ContainerPort } from './ports.js';
import { Policy, PolicyRef, policyRefKey } from './rules.js';

export interface Namespace {
  readonly name: string;
  /** Includes `kubernetes.io/metadata.name`, which Kubernetes sets on every namespace. */
  readonly labels: Readonly<Record<string, string>>;
}

/** A pod as the engine takes it: namespace, name, labels, its IPs, service account and container ports. */
export interface Pod {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Its primary address (`status.podIPs[0]`). */
  readonly ip: IpAddress;
  /**
   * Every address of a dual-stack pod (`status.podIPs`: at most one per family), `ip` first.
   * Absent: the pod has `ip` only.
   */
  readonly ips?: readonly IpAddress[];
  readonly serviceAccount: string;
  readonly ports: readonly ContainerPort[];
}

/** A peer outside the cluster: it has an address and enforces nothing. */
export interface External {
  readonly name: string;
  readonly ip: IpAddress;
}

/**
 * A cluster node: its addresses (`status.addresses` InternalIP/ExternalIP). Cilium gives them the
 * reserved identity `host` (the agent's own node, `local`) or `remote-node`
 * (cilium pkg/node/manager/manager.go `upsertIntoIDMD`), which world and CIDR selectors do not select.
 */
export interface ClusterNode {
  readonly name: string;
  readonly ips: readonly IpAddress[];
  readonly local: boolean;
}

/** How flows name a node: `node:<name>` (pod keys hold a `/`, never a `:`). */
export const NODE_PREFIX = 'node:';

/** The whole cluster as the policy engine sees it. Immutable: changes make a new state. */
export interface ClusterState {
  readonly namespaces: ReadonlyMap<string, Namespace>;
  /** Keyed by `namespace/name`. */
  readonly pods: ReadonlyMap<string, Pod>;
  readonly externals: ReadonlyMap<string, External>;
  /** Nodes by name; absent = none known. */
  readonly nodes?: ReadonlyMap<string, ClusterNode>;
  /** Keyed by `policyRefKey`. */
  readonly policies: ReadonlyMap<string, Policy>;
  /** What the DNS proxy learnt, and the clock (toFQDNs); absent = empty at time 0. */
  readonly dns?: DnsCacheState;
}

export const EMPTY_CLUSTER: ClusterState = {
  namespaces: new Map(),
  pods: new Map(),
  externals: new Map(),
  policies: new Map(),
};

/** Every address of a pod: `ips`, or `ip` alone. */
export function podIps(pod: Pick<Pod, 'ip' | 'ips'>): readonly IpAddress[] {
  return pod.ips ?? [pod.ip];
}

export function podKey(p: { namespace: string; name: string }): string {
  return `${p.namespace}/${p.name}`;
}

export function namespaceWithDefaults(name: string, labels: Readonly<Record<string, string>>): Namespace {
  return { name, labels: { ...labels, [NAMESPACE_NAME_LABEL]: name } };
}

export function podLabels(state: ClusterState, pod: Pod): LabelSet {
  const ns = state.namespaces.get(pod.namespace);
  return podIdentityLabels(pod, ns?.labels ?? { [NAMESPACE_NAME_LABEL]: pod.namespace });
}

/** Thrown when a change names something that does not exist, or already exists. */
export class ClusterChangeError extends Error {
  override readonly name = 'ClusterChangeError';
}

function withEntry<K, V>(m: ReadonlyMap<K, V>, k: K, v: V): Map<K, V> {
  const out = new Map(m);
  out.set(k, v);
  return out;
}

function withoutEntry<K, V>(m: ReadonlyMap<K, V>, k: K): Map<K, V> {
  const out = new Map(m);
  out.delete(k);
  return out;
}

export function upsertNamespace(state: ClusterState, ns: Namespace): ClusterState {
  return { ...state, namespaces: withEntry(state.namespaces, ns.name, ns) };
}

/** Deleting a namespace deletes its pods and its namespaced policies, as Kubernetes does. */
export function deleteNamespace(state: ClusterState, name: string): ClusterState {
  if (!state.namespaces.has(name)) throw new ClusterChangeError(`namespace "${name}" does not exist`);
  const pods = new Map([...state.pods].filter(([, p]) => p.namespace !== name));
  const policies = new Map([...state.policies].filter(([, p]) => p.ref.namespace !== name));
  return { ...state, namespaces: withoutEntry(state.namespaces, name), pods, policies };
}

/** Pods are kept in write order (an update moves a pod last): of two pods claiming one IP, the last written owns it. */
export function upsertPod(state: ClusterState, pod: Pod): ClusterState {
  const pods = new Map(state.pods);
  pods.delete(podKey(pod));
  pods.set(podKey(pod), pod);
  return { ...state, pods };
}

export function deletePod(state: ClusterState, key: string): ClusterState {
  if (!state.pods.has(key)) throw new ClusterChangeError(`pod "${key}" does not exist`);
  return { ...state, pods: withoutEntry(state.pods, key) };
}

export function upsertExternal(state: ClusterState, ext: External): ClusterState {
  return { ...state, externals: withEntry(state.externals, ext.name, ext) };
}

export function upsertNode(state: ClusterState, node: ClusterNode): ClusterState {
  return { ...state, nodes: withEntry(state.nodes ?? new Map(), node.name, node) };
}

export function deleteNode(state: ClusterState, name: string): ClusterState {
  if (!state.nodes?.has(name)) throw new ClusterChangeError(`node "${name}" does not exist`);
  return { ...state, nodes: withoutEntry(state.nodes, name) };
}

export function upsertPolicy(state: ClusterState, policy: Policy): ClusterState {
  return { ...state, policies: withEntry(state.policies, policyRefKey(policy.ref), policy) };
}

export function deletePolicy(state: ClusterState, ref: PolicyRef): ClusterState {
  const key = policyRefKey(ref);
  if (!state.policies.has(key)) throw new ClusterChangeError(`policy ${key} does not exist`);
  return { ...state, policies: withoutEntry(state.policies, key) };
}

/** Pod IPs are allocated from here when a scenario gives none. */
const POD_CIDR = parseCidr('10.244.0.0/16');

export function allocatePodIp(state: ClusterState): IpAddress {
  const used = new Set<string>();
  for (const p of state.pods.values()) for (const ip of podIps(p)) used.add(ip.text);
  for (const e of state.externals.values()) used.add(e.ip.text);
  for (const n of state.nodes?.values() ?? []) for (const ip of n.ips) used.add(ip.text);
  for (let n = 2n; ; n++) {
    const ip = nthAddress(POD_CIDR, n);
    if (!used.has(ip.text)) return ip;
  }
}
