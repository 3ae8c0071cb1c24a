import type { AllowLocalhost } from './localhost.js';
import { IpAddress, parseCidr, nthAddress } from './cidr.js';
import type { CidrGroup } from './cidr-group.js';
import type { DnsCacheState } from './fqdn.js';
import { podIdentityLabels, type StackMode } from './identity.js';
import { LabelSet, NAMESPACE_NAME_LABEL } from './labels.js';
import type { ContainerPort } from './ports.js';
import { Policy, PolicyRef, policyRefKey } from './rules.js';
import { flat } from './intern.js';

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
   * Absent: the pod has `ip` only. A pod held fail-closed may also list the addresses the engine held for it (two per
   * family at most: the agent's split step, finding 3260).
   */
  readonly ips?: readonly IpAddress[];
  /** `spec.serviceAccountName`; empty: the pod has none (a static pod's mirror pod), so no service-account label. */
  readonly serviceAccount: string;
  readonly ports: readonly ContainerPort[];
  /**
   * Set by the agent only, for a pod the engine refused (src/k8s/engine-batches.ts, finding 2352): the pod is held
   * fail-closed. No selector selects it and it brings no split or named port; its addresses are the unallocated
   * pod number (`UNALLOCATED_POD_IDENTITY`, which every local map denies both ways while some pod holds it), not
   * world or an older identity; a local one is an endpoint with an empty map (default deny both ways).
   */
  readonly failClosed?: true;
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
export interface ClusterNode extends NodeEndpointAddresses {
  readonly name: string;
  readonly ips: readonly IpAddress[];
  readonly local: boolean;
  /** The Node's `metadata.labels` (a ClusterNetworkPolicy `nodes` peer selects on them); absent = none. */
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * Held fail-closed by the agent (`upsertNode.failClosed`): a remote node's own addresses are denied both ways (finding
   * 2432); the local node's labels are unknown (2541), `allPorts` on every port (2730), `addresses` its own addresses
   * denied both ways (2900).
   */
  readonly failClosed?: NodeHold;
}

/**
 * The addresses of a node's cilium-health endpoint and of its Ingress (CiliumNode `spec.health`,
 * `spec.ingress`): ipcache entries with the reserved identities `health` (4) and `ingress` (8), not
 * the node's (cilium pkg/node/manager/policy.go `updatePolicy.Upsert`: labels.LabelHealth,
 * labels.LabelIngress). Absent: none.
 */
export interface NodeEndpointAddresses {
  readonly health?: readonly IpAddress[];
  readonly ingress?: readonly IpAddress[];
}

/**
 * How the agent holds a node fail-closed: `allPorts` (finding 2730) and `addresses` (its own addresses at the
 * unallocated number, as a held remote node's: finding 2900) only on the local node.
 */
export type NodeHold = true | 'allPorts' | 'addresses';

/** The reserved identity a node gives one of its addresses. */
export type NodeAddressRole = 'host' | 'remote-node' | 'health' | 'ingress';

/**
 * Every address a node puts in the ipcache with the role it gives it: its own addresses (`host` on
 * the agent's node, else `remote-node`), then its health endpoint's, then its Ingress's.
 */
export function nodeAddresses(node: Pick<ClusterNode, 'ips' | 'local' | 'health' | 'ingress'>): { ip: IpAddress; role: NodeAddressRole }[] {
  const own: NodeAddressRole = node.local ? 'host' : 'remote-node';
  return [...node.ips.map((ip) => ({ ip, role: own })), ...(node.health ?? []).map((ip) => ({ ip, role: 'health' as const })), ...(node.ingress ?? []).map((ip) => ({ ip, role: 'ingress' as const }))];
}

/** The health and Ingress addresses of `n`, without absent fields (exactOptionalPropertyTypes). */
export function nodeEndpointsOf(n: NodeEndpointAddresses): NodeEndpointAddresses {
  return { ...(n.health?.length ? { health: n.health } : {}), ...(n.ingress?.length ? { ingress: n.ingress } : {}) };
}

/** Of several nodes holding one address, the role that decides its identity comes first here. */
export const NODE_ROLE_ORDER: readonly NodeAddressRole[] = ['host', 'remote-node', 'health', 'ingress'];

/** Where the role `node` gives `ipText` stands in NODE_ROLE_ORDER; -1 when the node does not hold it. */
export function nodeRoleRank(node: Pick<ClusterNode, 'ips' | 'local' | 'health' | 'ingress'>, ipText: string): number {
  const role = nodeAddressRole(node, ipText);
  return role === undefined ? -1 : NODE_ROLE_ORDER.indexOf(role);
}

/** Which reserved identity a node gives `ipText`, if it holds it: its own node address before its health, then Ingress address. */
export function nodeAddressRole(node: Pick<ClusterNode, 'ips' | 'local' | 'health' | 'ingress'>, ipText: string): NodeAddressRole | undefined {
  return nodeAddresses(node).find((a) => a.ip.text === ipText)?.role;
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
  /** CiliumCIDRGroup objects by name (./cidr-group.ts); absent = none. */
  readonly cidrGroups?: ReadonlyMap<string, CidrGroup>;
  /** Keyed by `policyRefKey`. */
  readonly policies: ReadonlyMap<string, Policy>;
  /** What the DNS proxy learnt, and the clock (toFQDNs); absent = empty at time 0. */
  readonly dns?: DnsCacheState;
  /**
   * Addresses some pod claims but none owns in the ipcache: their owner was deleted, or dropped them
   * in an update, while another pod still claimed them (`ipOwner`). Absent = none.
   */
  readonly unownedIps?: ReadonlySet<string>;
  /**
   * The backend addresses of the default/kubernetes Service (its EndpointSlices), which Cilium
   * labels `reserved:kube-apiserver` in the ipcache (pkg/ipcache/cell/apiserver_watcher.go
   * `registerAPIServerBackendWatcher`). Absent = not known yet (docs/semantics.md, "kube-apiserver").
   */
  readonly apiServer?: readonly IpAddress[];
  /**
   * Addresses whose API server change the agent holds fail-closed (finding 3265, `setApiServer.held`), among `apiServer`
   * or not: outside the cluster or on a node other than as `host`, the unallocated number; on the agent's own node,
   * `host` (with the label as `apiServer` gives it). Absent = none.
   */
  readonly apiServerHeld?: readonly IpAddress[];
  /** Cilium's `allow-localhost` agent option (./localhost.ts); absent = `always`, Cilium's default under Kubernetes. */
  readonly allowLocalhost?: AllowLocalhost;
  /** Cilium's IP stack mode (./identity.ts `StackMode`): which world label and identity an outside address has; absent = single, Cilium's default install. */
  readonly stack?: StackMode;
  /**
   * Pods (keys) of another node: no endpoint here, so this node's DNS proxy never sees their
   * queries and keeps no DNS history for them. Absent = every pod is local.
   */
  readonly remotePods?: ReadonlySet<string>;
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

/** `namespace/name`, flat (a kept key needs no `flat` of its own; a copied pod's is built once). */
export function podKey(p: { namespace: string; name: string }): string {
  if (p instanceof KeyedPod) return p.key;
  return flat(`${p.namespace}/${p.name}`);
}

/**
 * A pod read from a trace, whose key is built once: the pod table, the model store and validation
 * each look a pod up by it (two copies kept a pod otherwise). Fields as a plain pod's, in the same
 * order; the key is private (not in JSON, spreads or `Object.keys`).
 */
export class KeyedPod implements Pod {
  declare readonly namespace: string;
  declare readonly name: string;
  declare readonly labels: Pod['labels'];
  declare readonly ip: IpAddress;
  declare readonly ips?: readonly IpAddress[];
  declare readonly serviceAccount: string;
  declare readonly ports: readonly ContainerPort[];
  declare readonly failClosed?: true;
  #key: string | undefined = undefined;

  /**
   * `ips` undefined for a single-stack pod (no `ips` property then, as a plain pod has none); `failClosed` only when
   * given (`Pod.failClosed`: the engine's validation refuses a value other than true).
   */
  constructor(namespace: string, name: string, labels: Pod['labels'], ip: IpAddress, ips: readonly IpAddress[] | undefined, serviceAccount: string, ports: readonly ContainerPort[], failClosed?: unknown) {
    this.namespace = namespace;
    this.name = name;
    this.labels = labels;
    this.ip = ip;
    if (ips !== undefined) this.ips = ips;
    this.serviceAccount = serviceAccount;
    this.ports = ports;
    if (failClosed !== undefined) (this as { failClosed?: unknown }).failClosed = failClosed;
  }

  get key(): string {
    this.#key ??= flat(`${this.namespace}/${this.name}`);
    return this.#key;
  }
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

/**
 * New labels re-identify every pod of the namespace (its labels are part of each pod's identity),
 * and a re-identification is a write of the pod's addresses: Cilium patches the pod's
 * CiliumEndpoint with the new identity and every agent upserts its addresses (docs/semantics.md
 * "Pods as endpoints", finding 1736). They are written in the order they were written before
 * (distill's choice: Cilium's order is each CiliumEndpoint controller's timing), so they move last
 * keeping that order, and take back the addresses their owners left.
 */
export function upsertNamespace(state: ClusterState, ns: Namespace): ClusterState {
  const namespaces = withEntry(state.namespaces, ns.name, ns);
  const before = state.namespaces.get(ns.name)?.labels ?? { [NAMESPACE_NAME_LABEL]: ns.name };
  if (sameNamespaceLabels(before, ns.labels)) return { ...state, namespaces };
  const moved = [...state.pods].filter(([, p]) => p.namespace === ns.name);
  if (moved.length === 0) return { ...state, namespaces };
  const pods = new Map([...state.pods].filter(([, p]) => p.namespace !== ns.name));
  for (const [key, p] of moved) pods.set(key, p);
  const taken = moved.flatMap(([, p]) => podIps(p).map((ip) => ip.text));
  return withPods({ ...state, namespaces }, pods, unownedAfter(state, pods, [], taken));
}

/** Whether two label maps are equal (a namespace's labels: equal ones re-identify none of its pods). */
export function sameNamespaceLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

/** Deleting a namespace deletes its pods and its namespaced policies, as Kubernetes does. */
export function deleteNamespace(state: ClusterState, name: string): ClusterState {
  if (!state.namespaces.has(name)) throw new ClusterChangeError(`namespace "${name}" does not exist`);
  const pods = new Map([...state.pods].filter(([, p]) => p.namespace !== name));
  const policies = new Map([...state.policies].filter(([, p]) => p.ref.namespace !== name));
  const lost = [...state.pods].filter(([, p]) => p.namespace === name).flatMap(([k, p]) => podIps(p).map((ip): [string, string] => [k, ip.text]));
  return withPods({ ...state, namespaces: withoutEntry(state.namespaces, name), policies }, pods, unownedAfter(state, pods, lost, []));
}

/**
 * The key of the pod owning `ip` (its text) in the ipcache: of the pods claiming it, the last
 * written (pods are kept in write order), unless its owner left it since (`unownedIps`). Cilium's
 * CiliumEndpoint watcher overwrites the entry on every write of a claimant, and deletes it when the
 * pod it names is deleted or drops the address (`IPCache.Upsert` / `DeleteOnMetadataMatch`,
 * pkg/k8s/watchers/cilium_endpoint.go): the other claimants get it back only when written again.
 */
export function ipOwner(state: ClusterState, ip: string): string | undefined {
  if (state.unownedIps?.has(ip)) return undefined;
  let owner: string | undefined;
  for (const [key, pod] of state.pods) if (podIps(pod).some((a) => a.text === ip)) owner = key;
  return owner;
}

/**
 * `unownedIps` once the pods of `lost` (key, address) no longer claim those addresses and a write
 * took `taken`: an address its owner lost becomes unowned; one no pod claims any more is forgotten.
 */
function unownedAfter(before: ClusterState, pods: ReadonlyMap<string, Pod>, lost: readonly (readonly [string, string])[], taken: readonly string[]): Set<string> {
  const out = new Set(before.unownedIps ?? []);
  for (const [key, ip] of lost) if (ipOwner(before, ip) === key) out.add(ip);
  for (const ip of taken) out.delete(ip);
  if (out.size === 0) return out;
  const claimed = new Set<string>();
  for (const p of pods.values()) for (const ip of podIps(p)) claimed.add(ip.text);
  for (const ip of out) if (!claimed.has(ip)) out.delete(ip);
  return out;
}

function withPods(state: ClusterState, pods: ReadonlyMap<string, Pod>, unowned: ReadonlySet<string>): ClusterState {
  const { unownedIps: _, ...rest } = state;
  return unowned.size === 0 ? { ...rest, pods } : { ...rest, pods, unownedIps: unowned };
}

/**
 * Pods are kept in write order (an update moves a pod last): of two pods claiming one IP, the last
 * written owns it (`ipOwner`); an address its update drops goes from the ipcache if it owned it.
 */
export function upsertPod(state: ClusterState, pod: Pod): ClusterState {
  const key = podKey(pod);
  const pods = new Map(state.pods);
  const old = pods.get(key);
  pods.delete(key);
  pods.set(key, pod);
  const taken = podIps(pod).map((ip) => ip.text);
  const lost = old ? podIps(old).filter((ip) => !taken.includes(ip.text)).map((ip): [string, string] => [key, ip.text]) : [];
  return withPods(state, pods, unownedAfter(state, pods, lost, taken));
}

export function deletePod(state: ClusterState, key: string): ClusterState {
  const old = state.pods.get(key);
  if (!old) throw new ClusterChangeError(`pod "${key}" does not exist`);
  const pods = withoutEntry(state.pods, key);
  return withPods(state, pods, unownedAfter(state, pods, podIps(old).map((ip): [string, string] => [key, ip.text]), []));
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

export function upsertCidrGroup(state: ClusterState, group: CidrGroup): ClusterState {
  return { ...state, cidrGroups: withEntry(state.cidrGroups ?? new Map(), group.name, group) };
}

export function deleteCidrGroup(state: ClusterState, name: string): ClusterState {
  if (!state.cidrGroups?.has(name)) throw new ClusterChangeError(`CiliumCIDRGroup "${name}" does not exist`);
  return { ...state, cidrGroups: withoutEntry(state.cidrGroups, name) };
}

/** The API server's addresses, replacing the old set (Cilium diffs the whole backend set on each change). */
export function setApiServer(state: ClusterState, addresses: readonly IpAddress[], held: readonly IpAddress[] = []): ClusterState {
  const { apiServerHeld: _old, ...rest } = state;
  return { ...rest, apiServer: addresses, ...(held.length > 0 ? { apiServerHeld: held } : {}) };
}

/** Whether `ipText` is an address whose API server change is held fail-closed (`ClusterState.apiServerHeld`). */
export function isHeldApiServerAddress(state: Pick<ClusterState, 'apiServerHeld'>, ipText: string): boolean {
  return state.apiServerHeld?.some((ip) => ip.text === ipText) === true;
}

/** Whether `ipText` is one of the API server's known addresses. */
export function isApiServerAddress(state: Pick<ClusterState, 'apiServer'>, ipText: string): boolean {
  return state.apiServer?.some((ip) => ip.text === ipText) === true;
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
