import { cidrContainsIp, IpAddress } from '../model/cidr.js';
import { type ClusterNode, type ClusterState, isApiServerAddress, nodeAddressRole, type NodeAddressRole, type NodeHold, nodeRoleRank } from '../model/cluster.js';
import { k8sLabels, type LabelSet, makeLabelSet } from '../model/labels.js';
import { DirectionDecision, endpointAddress, FlowEndpoint } from '../model/flow.js';
import type { ContainerPort, FlowProtocol } from '../model/ports.js';
import type { Direction, Policy } from '../model/rules.js';
import { EMPTY_DNS_CACHE, liveMatches } from '../model/fqdn.js';
import { type Selector, selectorMatches } from '../model/selector.js';
import { Tier, TierAction, TierOrigin, TierPeer, TierPort, TierRule, tierRuleName } from '../model/tiers.js';

/**
 * The ClusterNetworkPolicy tiers, read literally from the API (apis/v1beta1, apis/v1alpha2: the same doc comments): in a tier, policies
 * by ascending priority; in a policy, rules in the order written; the first rule whose peer and
 * protocols match decides with its action. Policies sharing a priority are each asked for their
 * first match, and the group decides Deny over Pass over Accept (the most restrictive, whatever
 * order they were created in; the API leaves it to the implementation).
 */

interface Flow4 {
  readonly direction: Direction;
  readonly peer: FlowEndpoint;
  readonly protocol: FlowProtocol;
  readonly port: number;
  /** The destination pod's container ports (named ports resolve against them). */
  readonly destPorts: readonly ContainerPort[];
}

/** The address the flow uses: the one it named a pod by, else the pod's primary address. */
function endpointIp(ep: FlowEndpoint): IpAddress {
  return endpointAddress(ep);
}

/** Does `peer` of a rule with `action` match the flow's peer? `unknown` peers are handled by the caller (fail closed). */
function peerMatches(peer: TierPeer, action: TierAction, ep: FlowEndpoint, state: ClusterState): boolean {
  const dns = state.dns ?? EMPTY_DNS_CACHE;
  switch (peer.kind) {
    case 'pods':
      return ep.kind === 'pod' && selectorMatches(peer.selector, ep.labels);
    case 'networks':
      // Networks match pod addresses too (the API's `Networks` doc: 0.0.0.0/0 covers pod-to-pod).
      return peer.cidrs.some((c) => cidrContainsIp(c, endpointIp(ep)));
    case 'domainNames':
      // As a toFQDNs rule: an address outside the cluster a live learnt answer of a matching name
      // holds, unless it is an API server address (its identity has no fqdn labels: finding 460).
      return ep.kind === 'external' && !isApiServerAddress(state, ep.external.ip.text) && liveMatches(dns, peer.fqdns, ep.external.ip).length > 0;
    case 'nodes': {
      // The agent's own node held fail-closed (finding 2541): its labels unknown, a Deny's or Pass's peer selects it, an
      // Accept's never; held on every port (2730), none (`ruleMatches` denies it).
      const held = heldLocalNode(state, ep);
      if (held !== undefined) return held === true && action !== 'Accept';
      const labels = nodePeerLabels(state, ep);
      return labels !== undefined && selectorMatches(peer.selector, labels);
    }
    case 'unknown':
      return false;
  }
}

/**
 * The node labels a `nodes` peer sees at a node endpoint's address, or undefined when it is no
 * node's own address. The peer matches "the IPs present in the node.Status.Addresses field"
 * (types.go `Nodes`): the node's own addresses, which distill reads from the Node and CiliumNode
 * (ipcache identity host or remote-node), not its health endpoint's or Ingress's. Of several nodes
 * holding the address, the one the ipcache gives it to (`resolveEndpoint`: host first, then the
 * first node in the cluster's order); a `host` address carries the agent's own node's labels (the
 * first local node's, if several are marked local).
 */
function nodePeerLabels(state: ClusterState, ep: FlowEndpoint, remoteOnly = false): LabelSet | undefined {
  const { nodes, holder, role } = ipcacheHolder(state, ep);
  const node = role === 'remote-node' ? holder : role === 'host' && !remoteOnly ? nodes.find((n) => n.local) : undefined;
  return node && nodeLabelSet(node);
}

/** The node the ipcache gives a node endpoint's address to, and the role it gives it (none for other endpoints). */
function ipcacheHolder(state: ClusterState, ep: FlowEndpoint): { nodes: ClusterNode[]; holder?: ClusterNode; role?: NodeAddressRole } {
  const nodes = [...(state.nodes?.values() ?? [])];
  if (ep.kind !== 'node') return { nodes };
  const holder = nodes.filter((n) => nodeRoleRank(n, ep.address.text) >= 0).sort((a, b) => nodeRoleRank(a, ep.address.text) - nodeRoleRank(b, ep.address.text))[0];
  return holder === undefined ? { nodes } : { nodes, holder, role: nodeAddressRole(holder, ep.address.text) as NodeAddressRole };
}

/** How the agent's own node is held (`upsertNode.failClosed`) when the flow's peer is an address the ipcache gives `host`. */
function heldLocalNode(state: ClusterState, ep: FlowEndpoint): NodeHold | undefined {
  const { nodes, role } = ipcacheHolder(state, ep);
  return role === 'host' ? nodes.find((n) => n.local)?.failClosed : undefined;
}

/**
 * A Deny or Pass rule with a `nodes` peer denies the local node held on every port (finding 2730), whatever its
 * protocols; held at its addresses too (2900: its own are denied anyway, another local node's may be `host`).
 */
function deniesHeldAllPorts(rule: TierRule, ep: FlowEndpoint, state: ClusterState): boolean {
  const held = heldLocalNode(state, ep);
  return rule.action !== 'Accept' && rule.peers.some((p) => p.kind === 'nodes') && (held === 'allPorts' || held === 'addresses');
}

/**
 * A CiliumNetworkPolicy `toNodes`/`fromNodes` selector: Cilium ANDs `reserved:remote-node` to it
 * (pkg/k8s/apis/cilium.io/utils/utils.go), so it matches a remote node's own address whose node
 * labels it matches, never the agent's own node.
 */
export function remoteNodeSelected(state: ClusterState, selector: Selector, ep: FlowEndpoint): boolean {
  const labels = nodePeerLabels(state, ep, true);
  return labels !== undefined && selectorMatches(selector, labels);
}

function nodeLabelSet(node: ClusterNode): LabelSet {
  return makeLabelSet(k8sLabels(node.labels ?? {}));
}

function portMatches(p: TierPort, f: Flow4): boolean {
  if (p.kind === 'range') return p.protocol === f.protocol && f.port >= p.from && f.port <= p.to;
  return f.destPorts.some((cp) => cp.name === p.name && cp.port === f.port && cp.protocol === f.protocol);
}

/** The API's fail-closed rule: a Deny or Pass rule with a peer distill cannot read is a "Deny all" rule. */
function failsClosedToDenyAll(rule: TierRule): boolean {
  return rule.action !== 'Accept' && rule.peers.some((p) => p.kind === 'unknown');
}

function ruleMatches(rule: TierRule, f: Flow4, state: ClusterState): boolean {
  // Fail closed: Deny and Pass rules with an unknown peer match everything, Accept rules nothing ("treat the rule as matching no traffic").
  if (failsClosedToDenyAll(rule)) return true;
  if (rule.peers.some((p) => p.kind === 'unknown')) return false;
  if (deniesHeldAllPorts(rule, f.peer, state)) return true;
  if (!rule.peers.some((p) => peerMatches(p, rule.action, f.peer, state))) return false;
  return rule.protocols.length === 0 || rule.protocols.some((p) => portMatches(p, f));
}

const GROUP_ORDER: readonly TierAction[] = ['Deny', 'Pass', 'Accept'];

/** A Pass rule with a `nodes` peer denies the held local node at its own level (finding 2541: passing or not under labels it cannot read, a deny is never more open). */
function passDeniesHeldNode(rule: TierRule, f: Flow4, state: ClusterState): boolean {
  return rule.action === 'Pass' && rule.peers.some((p) => p.kind === 'nodes') && heldLocalNode(state, f.peer) !== undefined;
}

function originOf(policy: Policy, rule: TierRule, f: Flow4, state: ClusterState): TierOrigin {
  const t = policy.tiered as NonNullable<Policy['tiered']>;
  const action = failsClosedToDenyAll(rule) || passDeniesHeldNode(rule, f, state) ? 'Deny' : rule.action;
  return { tier: t.tier, policy: policy.ref.name, priority: t.priority, rule: tierRuleName(rule), path: rule.path, action };
}

/** The first decision of `tier` for the subject's `direction`, or undefined when no rule matches. */
function walkTier(state: ClusterState, tier: Tier, subject: FlowEndpoint & { kind: 'pod' }, f: Flow4): TierOrigin | undefined {
  const byPriority = new Map<number, Policy[]>();
  for (const p of state.policies.values()) {
    if (p.tiered?.tier !== tier || !selectorMatches(p.tiered.subject, subject.labels)) continue;
    byPriority.set(p.tiered.priority, [...(byPriority.get(p.tiered.priority) ?? []), p]);
  }
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const group = (byPriority.get(priority) as Policy[]).sort((a, b) => (a.ref.name < b.ref.name ? -1 : a.ref.name > b.ref.name ? 1 : 0));
    const hits: TierOrigin[] = [];
    for (const p of group) {
      const rule = (p.tiered as NonNullable<Policy['tiered']>).rules.find((r) => r.direction === f.direction && ruleMatches(r, f, state));
      if (rule) hits.push(originOf(p, rule, f, state));
    }
    for (const action of GROUP_ORDER) {
      const hit = hits.find((h) => h.action === action);
      if (hit) return hit;
    }
  }
  return undefined;
}

/** A direction decided by a tier rule: final, never proxied (an L7 redirect is an NP-tier allow). */
function tierDecision(direction: Direction, origin: TierOrigin): DirectionDecision {
  const by = [{ policy: { kind: 'ClusterNetworkPolicy' as const, name: origin.policy }, path: origin.path }];
  const allowed = origin.action === 'Accept';
  return { direction, enforcedBy: [], allowedBy: allowed ? by : [], deniedBy: allowed ? [] : by, redirectedBy: [], allowed, proxied: false, tier: origin };
}

/**
 * Wraps the NetworkPolicy-tier decision in the tiers: Admin first; on Pass or no match the
 * NetworkPolicy tier, final for a subject it selects in this direction (some policy enforces) or
 * for a flow one of its rules matched; otherwise Baseline; a Baseline Pass or no match leaves the NP-tier answer (default allow).
 */
export function decideTiered(
  state: ClusterState,
  subject: FlowEndpoint & { kind: 'pod' },
  f: Flow4,
  npTier: () => DirectionDecision,
): DirectionDecision {
  const admin = walkTier(state, 'Admin', subject, f);
  if (admin && admin.action !== 'Pass') return tierDecision(f.direction, admin);
  const np = npTier();
  // Final when the tier selects the subject in this direction, or when one of its rules matched
  // (a Cilium allow with enableDefaultDeny: false decides what it allows, without isolating).
  if (np.enforcedBy.length > 0 || np.deniedBy.length > 0 || np.allowedBy.length > 0) return np;
  const baseline = walkTier(state, 'Baseline', subject, f);
  if (baseline && baseline.action !== 'Pass') return tierDecision(f.direction, baseline);
  return np;
}
