import type { Cidr } from '../model/cidr.js';
import { NODE_ROLE_ORDER, type NodeAddressRole } from '../model/cluster.js';
import { parseLabelKey, POD_NAMESPACE_KEY, reservedLabel, SOURCE_K8S } from '../model/labels.js';
import { adminLevel, passFloorPrecedence, tierPrecedence, type PolicyEntry } from '../model/policy-map.js';
import type { L4Match } from '../model/ports.js';
import { policyRefKey, type Policy, type RuleOrigin } from '../model/rules.js';
import { makeSelector, matchLabelRequirement, type Selector } from '../model/selector.js';
import { networksCoverEverything, RULES_PER_DIRECTION, tierRuleName, type TieredSpec, type TierPort, type TierRule } from '../model/tiers.js';
import { networksPeerSelectors } from './network-splits.js';
import type { RuleUnit } from './rule-units.js';
import { fqdnPeerSelector, labelsSelector, nodesSelector, unknownNodeAllPortsSelector, unknownNodeSelector, type IdentitySelector } from './selector-cache.js';

/**
 * ClusterNetworkPolicy in the engine (docs/tiers-encoding.md): each Accept/Deny rule becomes a
 * rule unit whose entries carry the rule's own precedence (tier level from priority and rule
 * index, see `tierPrecedence`), so the datapath's highest-precedence covering entry is the first
 * matching rule; an Admin Pass rule's unit writes its band's floor, and the map state copies the
 * lower tiers into the band. A tiered policy never enforces default deny (no enforcement units).
 */

/** Why the engine cannot encode `spec` exactly (it refuses it), or null. */
export function tierSupportProblem(spec: TieredSpec): string | null {
  for (const r of spec.rules) {
    const where = `${r.path} (${tierRuleName(r)})`;
    if (r.index >= RULES_PER_DIRECTION) return `${where}: more than ${RULES_PER_DIRECTION} rules in one direction`;
  }
  return null;
}

/** Pods only: every pod identity carries its namespace label, world/host/CIDR identities do not. */
const POD_NAMESPACE = parseLabelKey(POD_NAMESPACE_KEY, SOURCE_K8S);

function podsOnly(sel: Selector): Selector {
  return makeSelector([...sel.requirements, { key: POD_NAMESPACE, operator: 'Exists', values: [] }]);
}

function l4Of(p: TierPort): L4Match {
  return p.kind === 'range' ? { kind: 'range', protocol: p.protocol, from: p.from, to: p.to } : { kind: 'named', protocol: 'ANY', name: p.name };
}

/**
 * A rule's entry. Deny and Accept: its own level, `sub` 255. An Admin Pass: the floor of its band
 * (the map state materialises the lower tiers above it, docs/tiers-encoding.md §3). A Baseline
 * Pass hands over to the default allow, which exists exactly where Baseline rules apply: an Accept.
 */
function ruleEntry(spec: TieredSpec, rule: TierRule, denyAll: boolean): PolicyEntry {
  if (rule.action === 'Pass' && !denyAll && spec.tier === 'Admin') return { deny: true, proxyPort: 0, precedence: passFloorPrecedence(adminLevel(spec.priority, rule.index)) };
  const deny = rule.action === 'Deny' || denyAll;
  return { deny, proxyPort: 0, precedence: tierPrecedence(spec.tier, spec.priority, rule.index, deny) };
}

const NODE_SELECTORS: ReadonlyMap<NodeAddressRole, IdentitySelector> = new Map(
  NODE_ROLE_ORDER.map((name) => {
    const l = reservedLabel(name);
    return [name, labelsSelector(makeSelector([matchLabelRequirement({ source: l.source, key: l.key }, '')]))];
  }),
);

/**
 * Per node identity role, how many of the addresses with that role some CIDR holds: 'all' or
 * 'some' (a role absent: none, or no such address). Wired by the engine to the node table.
 */
export type NodeCover = (cidrs: readonly Cidr[]) => ReadonlyMap<NodeAddressRole, 'all' | 'some'>;

/** Without a node table: every role partly held, so the rules fail closed. */
const FAIL_CLOSED: ReadonlyMap<NodeAddressRole, 'all' | 'some'> = new Map(NODE_ROLE_ORDER.map((r) => [r, 'some']));
export const failClosedNodeCover: NodeCover = () => FAIL_CLOSED;

/**
 * Node identities (host, remote-node, a labelled remote node's; its health endpoint's and Ingress's,
 * attack finding 160) follow labels, not addresses, so a networks CIDR short of both /0s cannot
 * split them by address (finding 442). Per role: when no address of that role lies in the rule's
 * CIDRs the rule meets none of them; when all do, the rule meets the role's selector exactly as a
 * peer. Otherwise fail closed: a Deny rule denies the role, a Pass rule denies it at its own level
 * (it would hand an address inside the CIDR to the lower tiers and one outside it to the next
 * rules: a deny is never more open than either), an Accept admits none. The engine re-resolves the
 * policy when a node change moves a role between these states (NodeTable `upsert`).
 */
function nodePeers(rule: TierRule, nodeCover: NodeCover): { exact: IdentitySelector[]; partial: IdentitySelector[] } {
  const exact: IdentitySelector[] = [];
  const partial: IdentitySelector[] = [];
  if (!rule.peers.some((p) => p.kind === 'networks') || rule.peers.some((p) => p.kind === 'unknown') || networksCoverEverything(rule.peers)) return { exact, partial };
  for (const [role, cover] of nodeCover(tierRuleNetworks(rule))) (cover === 'all' ? exact : partial).push(NODE_SELECTORS.get(role) as IdentitySelector);
  return { exact, partial };
}

/** The CIDRs of a rule's networks peers. */
export function tierRuleNetworks(rule: TierRule): Cidr[] {
  return rule.peers.flatMap((p) => (p.kind === 'networks' ? p.cidrs : []));
}

/** `nodesOnly`: the selectors of a Pass rule's Deny of partly held node roles (`nodePeers`), instead of its own peers. */
function ruleUnit(policy: Policy, spec: TieredSpec, rule: TierRule, nodeCover: NodeCover, nodesOnly?: readonly IdentitySelector[]): RuleUnit | null {
  // Fail closed: an unknown peer makes a Deny or Pass rule match every peer (the API's "Deny all"), an Accept rule no traffic at all.
  const unknownPeer = rule.peers.some((p) => p.kind === 'unknown');
  if (unknownPeer && rule.action === 'Accept') return null;
  const denyAll = unknownPeer;
  const byKey = new Map<string, IdentitySelector>();
  // Both /0s match every address: the identity-0 key, not one key per identity (network-splits.ts).
  const anyPeer = nodesOnly === undefined && (denyAll || networksCoverEverything(rule.peers));
  if (anyPeer) byKey.set('', labelsSelector(makeSelector([])));
  else if (nodesOnly === undefined) for (const p of rule.peers) {
    const sels = p.kind === 'pods' ? [labelsSelector(podsOnly(p.selector))] : p.kind === 'networks' ? networksPeerSelectors(p.cidrs) : p.kind === 'domainNames' ? p.fqdns.map(fqdnPeerSelector) : p.kind === 'nodes' ? [nodesSelector(p.selector, rule.action === 'Deny' ? 'select' : undefined)] : [];
    for (const s of sels) byKey.set(s.key, s);
  }
  if (nodesOnly) for (const s of nodesOnly) byKey.set(s.key, s);
  else {
    const { exact, partial } = nodePeers(rule, nodeCover);
    for (const s of rule.action === 'Deny' ? [...exact, ...partial] : exact) byKey.set(s.key, s);
  }
  if (byKey.size === 0) return null;
  const peers = [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const entry = ruleEntry(spec, rule, denyAll);
  const action = denyAll ? 'Deny' : rule.action;
  const origin: RuleOrigin = { policy: policy.ref, path: rule.path, tier: { tier: spec.tier, policy: policy.ref.name, priority: spec.priority, rule: tierRuleName(rule), path: rule.path, action } };
  // A fail-closed Deny is the API's "Deny all": every peer, every protocol.
  const clauses = (rule.protocols.length === 0 || denyAll ? [{ kind: 'all' } as const] : rule.protocols.map(l4Of)).map((l4) => ({ l4 }));
  return {
    // The entry (priority, index, action) is part of the uid: a priority change or a reorder
    // replaces exactly the units whose entries change; the rule's name too, as explain reports it.
    uid: `${policyRefKey(policy.ref)}#tier#${rule.path}#${tierRuleName(rule)}#${entry.precedence}#${rule.direction}/${rule.action}#${spec.subject.key}#${peers.map((p) => p.key).join(';')}#${JSON.stringify(clauses)}`,
    origin,
    direction: rule.direction,
    verdict: entry.deny ? 'deny' : 'allow',
    subject: labelsSelector(spec.subject),
    peers,
    clauses,
    namedEgress: false,
    // Egress named ports resolve against the destination identity's pods, which agree (network-splits.ts).
    peerNamedPorts: rule.direction === 'egress' && rule.protocols.some((p) => p.kind === 'named'),
    anyPeer,
    entry,
    baseline: spec.tier === 'Baseline',
  };
}

/**
 * The node identities a Pass rule denies at its own level: the node roles its networks partly hold (`nodePeers`) and,
 * with a `nodes` peer, the agent's own node while its labels are unknown (held fail-closed, finding 2541: selected or
 * not under the labels it cannot read, the rule would pass it or hand it to the next rules; a deny is never more open).
 */
function passDenies(rule: TierRule, nodeCover: NodeCover): IdentitySelector[] {
  if (rule.action !== 'Pass' || rule.peers.some((p) => p.kind === 'unknown')) return [];
  const partial = nodePeers(rule, nodeCover).partial;
  return rule.peers.some((p) => p.kind === 'nodes') ? [...partial, unknownNodeSelector] : partial;
}

/** The rule units of a ClusterNetworkPolicy the engine supports (`tierSupportProblem` is null). */
export function compileTiered(policy: Policy, spec: TieredSpec, nodeCover: NodeCover): RuleUnit[] {
  const out: RuleUnit[] = [];
  for (const r of spec.rules) {
    const u = ruleUnit(policy, spec, r, nodeCover);
    if (u) out.push(u);
    const partial = passDenies(r, nodeCover);
    const nodes = partial.length > 0 ? ruleUnit(policy, spec, { ...r, action: 'Deny' }, nodeCover, partial) : null;
    if (nodes) out.push(nodes);
    // The agent's own node held on every port (finding 2730): one entry per Deny or Pass rule with a `nodes` peer.
    const allPorts = r.action !== 'Accept' && r.peers.some((p) => p.kind === 'nodes') && !r.peers.some((p) => p.kind === 'unknown');
    if (allPorts) out.push(ruleUnit(policy, spec, { ...r, action: 'Deny', protocols: [] }, nodeCover, [unknownNodeAllPortsSelector]) as RuleUnit);
  }
  return out;
}
