import type { ClusterNode, ClusterState, External, Pod } from './cluster.js';
import { ipOwner, isApiServerAddress, nodeAddressRole, NODE_PREFIX, nodeRoleRank, podIps, podLabels } from './cluster.js';
import { IpAddress, IpFamily, isValidIp, parseIp } from './cidr.js';
import type { L7Parser, L7Request } from './l7.js';
import { LabelSet, makeLabelSet, reservedLabel } from './labels.js';
import { DEFAULT_STACK_MODE, reservedIdentityLabels, worldLabels } from './identity.js';
import type { FlowProtocol } from './ports.js';
import type { Direction, RuleOrigin } from './rules.js';
import type { TierOrigin } from './tiers.js';

/**
 * Flows and flow decisions: what both deciders (the reference evaluator and the engine's datapath
 * lookup) answer, and what scenarios and the CLI print. Plain data and pure functions.
 */

export type FlowEndpoint =
  /** `address`: the flow named the pod by this one of its addresses (else it uses the pod's primary `ip`). */
  | { readonly kind: 'pod'; readonly name: string; readonly pod: Pod; readonly labels: LabelSet; readonly address?: IpAddress }
  | { readonly kind: 'external'; readonly name: string; readonly external: External; readonly labels: LabelSet }
  /** A node (or a host-network pod on it, which uses its address): reserved `host` or `remote-node`. */
  | { readonly kind: 'node'; readonly name: string; readonly node: ClusterNode; readonly labels: LabelSet; readonly address: IpAddress };

export interface Flow {
  readonly from: string;
  readonly to: string;
  readonly port: number;
  readonly protocol: FlowProtocol;
  /** An L7 request carried by the flow: a redirected flow is then judged by the proxy too. */
  readonly request?: L7Request;
}

/** How one side (the source's egress or the destination's ingress) judged the flow, and why. */
export interface DirectionDecision {
  readonly direction: Direction;
  /** Policies that make this direction default-deny for the endpoint. */
  readonly enforcedBy: readonly RuleOrigin[];
  readonly allowedBy: readonly RuleOrigin[];
  readonly deniedBy: readonly RuleOrigin[];
  /** Allow rules with L7 rules that match: the flow goes through the L7 proxy. */
  readonly redirectedBy: readonly RuleOrigin[];
  readonly allowed: boolean;
  readonly proxied: boolean;
  /** For a redirected flow with a request: the proxy that got it and its verdict. */
  readonly l7?: { readonly parser: L7Parser; readonly allowed: boolean; readonly allowedBy: readonly RuleOrigin[] };
  /** A ClusterNetworkPolicy rule (Admin, or Baseline for a pod no NetworkPolicy-tier policy selects) decided. */
  readonly tier?: TierOrigin;
}

/** A redirect no proxy takes (SCTP on a DNS rule's ANY port, finding 1244): handed to a proxy and dropped there. */
export function droppedAtProxy(d: DirectionDecision): boolean {
  return !d.allowed && !d.proxied && d.deniedBy.length === 0 && d.redirectedBy.length > 0;
}

export interface FlowDecision {
  readonly allowed: boolean;
  readonly proxied: boolean;
  /** Absent when the source is not a pod (externals enforce nothing). */
  readonly egress?: DirectionDecision;
  /** Absent when the destination is not a pod. */
  readonly ingress?: DirectionDecision;
}

export class UnknownEndpointError extends Error {
  override readonly name = 'UnknownEndpointError';
}

/**
 * Labels an address outside the cluster carries: its one world label by the stack mode (identity.ts
 * `worldLabels`), and an API server address also
 * `reserved:kube-apiserver` (Cilium: the address has that label alone in the ipcache metadata, so
 * pkg/ipcache/metadata.go `resolveIdentity` adds its CIDR labels, world included).
 */
function externalLabels(state: ClusterState, ext: External): LabelSet {
  return withApiServer(state, ext.ip, worldLabels(state.stack ?? DEFAULT_STACK_MODE, ext.ip.family));
}

function withApiServer(state: ClusterState, ip: IpAddress, labels: LabelSet): LabelSet {
  return isApiServerAddress(state, ip.text) ? makeLabelSet([...labels, reservedLabel('kube-apiserver')]) : labels;
}

/**
 * The pod owning `ip` in the ipcache (a dual-stack pod has two addresses), if any: of two pods
 * claiming it, the last written, none once its owner left it (`ipOwner`), as the engine's ipcache.
 */
function podByAddress(state: ClusterState, ip: IpAddress): { key: string; pod: Pod; address: IpAddress } | undefined {
  const key = ipOwner(state, ip.text);
  const pod = key === undefined ? undefined : state.pods.get(key);
  const address = pod && podIps(pod).find((a) => a.text === ip.text);
  return key !== undefined && pod && address ? { key, pod, address } : undefined;
}

/**
 * The labels of a node's address: the agent's own node is `host`, every other `remote-node`; its
 * health endpoint's address `health`, its Ingress address `ingress`. An API server address adds
 * `reserved:kube-apiserver` (remote-node: Cilium's identity 7, pkg/identity `LookupReservedIdentityByLabels`
 * keeps both labels); on `host` it is one identity for all the agent's node's addresses, so every
 * one of them has it once one of them is an API server address (pkg/ipcache/metadata.go
 * `resolveIdentity`: `AddReservedIdentityWithLabels(ReservedIdentityHost, lbls)`).
 */
function nodeLabels(state: ClusterState, node: ClusterNode, address: IpAddress): LabelSet {
  const role = nodeAddressRole(node, address.text) ?? (node.local ? 'host' : 'remote-node');
  const labels = reservedIdentityLabels(role);
  if (role !== 'host') return withApiServer(state, address, labels);
  const hostIsApiServer = (state.apiServer ?? []).some((ip) => {
    const holder = nodeHolding(state, ip);
    return holder !== undefined && nodeAddressRole(holder, ip.text) === 'host';
  });
  return hostIsApiServer ? makeLabelSet([...labels, reservedLabel('kube-apiserver')]) : labels;
}

function nodeEndpoint(state: ClusterState, node: ClusterNode, address: IpAddress): FlowEndpoint {
  return { kind: 'node', name: NODE_PREFIX + node.name, node, labels: nodeLabels(state, node, address), address };
}

/** The address a flow uses for an endpoint: the one it named it by, else a pod's primary address. */
export function endpointAddress(ep: FlowEndpoint): IpAddress {
  return ep.kind === 'pod' ? (ep.address ?? ep.pod.ip) : ep.kind === 'node' ? ep.address : ep.external.ip;
}

/**
 * The node holding `ip` among its addresses (its health and Ingress addresses included), if any;
 * of two that hold it, the one whose role comes first in NODE_ROLE_ORDER (the agent's own node first).
 */
function nodeByAddress(state: ClusterState, ip: IpAddress): FlowEndpoint | undefined {
  const node = nodeHolding(state, ip);
  return node && nodeEndpoint(state, node, ip);
}

function nodeHolding(state: ClusterState, ip: IpAddress): ClusterNode | undefined {
  const rank = (n: ClusterNode): number => nodeRoleRank(n, ip.text);
  return [...(state.nodes?.values() ?? [])].filter((n) => rank(n) >= 0).sort((a, b) => rank(a) - rank(b))[0];
}

/**
 * A pod or an external by name, a node by `node:<name>` (its first address), or a node or pod by
 * one of its addresses (`10.0.0.5`, `fd00::5`). A node's address wins over a pod claiming it: a pod
 * with a node's address is a host-network pod, which is not an endpoint (docs/semantics.md). An
 * external at a node's or a pod's address is that node or pod (the datapath resolves addresses).
 */
export function resolveEndpoint(state: ClusterState, name: string): FlowEndpoint {
  const pod = state.pods.get(name);
  if (pod) return { kind: 'pod', name, pod, labels: podLabels(state, pod) };
  const external = state.externals.get(name);
  const node = !external && name.startsWith(NODE_PREFIX) ? state.nodes?.get(name.slice(NODE_PREFIX.length)) : undefined;
  // Its identity is its first address's (the agent's own node, if another node lists that address too).
  const first = node?.ips[0];
  if (node && first) return { ...nodeEndpoint(state, node, first), labels: (nodeByAddress(state, first) ?? nodeEndpoint(state, node, first)).labels };
  // The datapath knows addresses, not names: an external at a node's or a pod's address reaches it (the ipcache).
  const address = external ? external.ip : isValidIp(name) ? parseIp(name) : undefined;
  const byNode = address && nodeByAddress(state, address);
  if (byNode) return byNode;
  const byAddress = address && podByAddress(state, address);
  if (byAddress) return { kind: 'pod', name: byAddress.key, pod: byAddress.pod, labels: podLabels(state, byAddress.pod), address: byAddress.address };
  if (external) return { kind: 'external', name, external, labels: externalLabels(state, external) };
  throw new UnknownEndpointError(`no pod, external or node named "${name}", and no pod or node has that address`);
}

const FAMILY_NAME = { ipv4: 'IPv4', ipv6: 'IPv6' } as const;

/** A flow end given as an address (`--to 2001:db8::1`, a probe's `{ip: ...}`): its family is the packet's; else undefined. */
function endFamily(name: string): IpFamily | undefined {
  return isValidIp(name) ? parseIp(name).family : undefined;
}

/**
 * Why no packet goes from `a` to `b`, or undefined: an IP header has one family (finding 2691), so two
 * ends given as addresses of different families ("10.0.0.1 is IPv4, 2001:db8::1 is IPv6") are no
 * packet. An IPv4-mapped IPv6 text (`::ffff:10.0.0.1`) is an IPv6 address (docs/semantics.md "Address
 * text"). An end named by name (a pod, external or node) is judged against either family: the policy
 * question is about its identity (docs/attack-findings-30c.md 2741).
 */
export function familyMismatch(a: string, b: string): string | undefined {
  const [fa, fb] = [endFamily(a), endFamily(b)];
  if (fa === undefined || fb === undefined || fa === fb) return undefined;
  return `${a} is ${FAMILY_NAME[fa]}, ${b} is ${FAMILY_NAME[fb]}: no packet goes between them (an IP header has one family)`;
}

/**
 * The flow's verdict from its two sides: allowed when both allow it (for a request, both proxies
 * included); proxied when both sides let it through at L3/L4 and at least one redirects it, so it
 * reached a proxy (even if that proxy then refused the request).
 */
export function combineSides(egress: DirectionDecision | undefined, ingress: DirectionDecision | undefined): FlowDecision {
  const allowed = (egress?.allowed ?? true) && (ingress?.allowed ?? true);
  const l4Allowed = (d: DirectionDecision | undefined): boolean => d === undefined || d.allowed || d.l7 !== undefined;
  const proxied = l4Allowed(egress) && l4Allowed(ingress) && ((egress?.proxied ?? false) || (ingress?.proxied ?? false));
  return { allowed, proxied, ...(egress ? { egress } : {}), ...(ingress ? { ingress } : {}) };
}
