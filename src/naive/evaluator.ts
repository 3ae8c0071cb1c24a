import { Cidr, cidrContainsIp, hostCidr } from '../model/cidr.js';
import { groupLabelsByScan, groupSelectorMatches } from '../model/cidr-group.js';
import { DnsCacheEntry, EMPTY_DNS_CACHE, liveMatches } from '../model/fqdn.js';
import { ClusterNode, ClusterState, isApiServerAddress, isHeldApiServerAddress, NODE_ROLE_ORDER, NodeAddressRole, nodeAddressRole, Pod, podIps, podLabels } from '../model/cluster.js';
import { combineSides, DirectionDecision, Flow, FlowDecision, FlowEndpoint, resolveEndpoint } from '../model/flow.js';
import { labelSetKey, reservedLabel } from '../model/labels.js';
import { ALLOW_LOCALHOST_ORIGIN, DEFAULT_ALLOW_LOCALHOST, UNALLOCATED_IDENTITY_ORIGIN } from '../model/localhost.js';
import { ContainerPort, FlowProtocol, type L4Match, l4Covers, protocolCovers, proxyTakes } from '../model/ports.js';
import { l7Allows, L7Parser, L7Request, LISTENER_PRIORITY, proxyReads } from '../model/l7.js';
import { Direction, L7Rules, Peer, PolicyRule, RuleOrigin, uniqueOrigins } from '../model/rules.js';
import { selectorMatches } from '../model/selector.js';
import { decideTiered, remoteNodeSelected } from './tiers.js';

/**
 * The reference evaluator: answers one flow at a time by scanning every rule of every policy.
 * It is the oracle the incremental engine is tested against, so it stays the simplest code that
 * could be right. Do not optimise it.
 */

function peerMatches(state: ClusterState, peer: Peer, ep: FlowEndpoint): boolean {
  // A stand-in for the API server's unknown addresses (finding 100) lapses once they are known.
  if (peer.kind === 'selector') return (peer.apiServerStandIn !== true || state.apiServer === undefined) && selectorMatches(peer.selector, ep.labels);
  if (peer.kind === 'nodes') return remoteNodeSelected(state, peer.selector, ep);
  // CIDR rules only ever match traffic from outside the cluster: pods are known by identity, and
  // nodes by reserved host/remote-node (Cilium's policy-cidr-match-mode default: CIDRs select no node).
  if (ep.kind !== 'external') return false;
  const ip = ep.external.ip;
  if (peer.except.some((e) => cidrContainsIp(e, ip))) return false;
  if (peer.kind === 'cidrGroup') return groupSelectorMatches(peer.selector, groupLabelsByScan(state.cidrGroups?.values() ?? [], hostCidr(ip)), peer.mode);
  return cidrContainsIp(peer.cidr, ip);
}

/**
 * A `toFQDNs` rule matches an address outside the cluster for which some live answer, learnt by
 * any endpoint of the node, of a name a selector matches holds it (Cilium's name manager selects
 * node-wide). Pods are known by their identity, never by a DNS answer, and so is an API server
 * address: its identity is its CIDR one plus `reserved:kube-apiserver`, without fqdn labels
 * (docs/semantics.md, kube-apiserver; attack finding 460).
 */
function fqdnEvidence(state: ClusterState, rule: PolicyRule, ep: FlowEndpoint): DnsCacheEntry[] {
  if (rule.toFQDNs === undefined || ep.kind !== 'external' || isApiServerAddress(state, ep.external.ip.text)) return [];
  return liveMatches(state.dns ?? EMPTY_DNS_CACHE, rule.toFQDNs, ep.external.ip);
}

/** The port clauses of `rule` that match the flow (none when no peer matches). */
function matchingClauses(state: ClusterState, rule: PolicyRule, peer: FlowEndpoint, protocol: FlowProtocol, port: number, destPorts: readonly ContainerPort[]): PolicyRule['ports'] {
  if (!rule.peers.some((p) => peerMatches(state, p, peer)) && fqdnEvidence(state, rule, peer).length === 0) return [];
  return rule.ports.filter((c) => l4Covers(c.l4, protocol, port, destPorts));
}

/**
 * The container ports a named port on egress resolves against: the destination pod's own named
 * ports (Kubernetes), kept only when every pod sharing its identity (identity labels) has the
 * same one, since the policy map keys on identity, and when that is the one port the name has for
 * that protocol node-wide (`nodeWideNamedPort`: Cilium's one cluster-wide map resolves an
 * ambiguous name to nothing). So never more permissive than either.
 */
function egressNamedPorts(state: ClusterState, peer: FlowEndpoint): ContainerPort[] {
  if (peer.kind !== 'pod') return [];
  const key = labelSetKey(peer.labels);
  const splits = identitySplits(state);
  const all = [...state.pods.values()];
  const same = (a: ContainerPort, b: ContainerPort): boolean => a.name === b.name && a.protocol === b.protocol && a.port === b.port;
  return peer.pod.ports.filter((cp) => {
    if (cp.name === undefined) return false;
    const name = cp.name;
    const mine = splits(peer.pod, name);
    const sameIdentity = all.filter((p) => labelSetKey(podLabels(state, p)) === key && splits(p, name) === mine);
    return sameIdentity.every((p) => p.ports.some((q) => same(q, cp))) && nodeWideNamedPort(state, name, cp.protocol) === cp.port;
  });
}

/**
 * What tells apart pods that share labels but are different identities, for resolving the named
 * port `name`: the ClusterNetworkPolicy egress `networks` CIDRs (short of both /0s) holding their
 * addresses, their address families when a /0 is in force, and what they give each
 * `destinationNamedPort` name in force other than `name` (a split by `name` itself leaves the
 * name ambiguous). The engine splits identities by exactly these (tiers-encoding.md, "Identity
 * splits"); pods agreeing on all of them share one identity.
 */
function identitySplits(state: ClusterState): (pod: Pod, name: string) => string {
  const cidrs: Cidr[] = [];
  const names = new Set<string>();
  for (const policy of state.policies.values()) {
    for (const r of policy.tiered?.rules ?? []) {
      if (r.direction !== 'egress') continue;
      for (const p of r.protocols) if (p.kind === 'named') names.add(p.name);
      const zeros = new Set(r.peers.flatMap((p) => (p.kind === 'networks' ? p.cidrs.filter((c) => c.prefixLength === 0).map((c) => c.family) : [])));
      if (zeros.size === 2) continue;
      for (const p of r.peers) if (p.kind === 'networks') cidrs.push(...p.cidrs);
    }
  }
  const families = cidrs.some((c) => c.prefixLength === 0);
  const meaning = (pod: Pod, n: string): string =>
    pod.ports
      .filter((q) => q.name === n)
      .map((q) => `${q.protocol}-${q.port}`)
      .sort()
      .join('_');
  return (pod, name) => {
    const ips = podIps(pod);
    const nets = cidrs.map((c) => (ips.some((ip) => cidrContainsIp(c, ip)) ? '1' : '0')).join('');
    const family = families ? [...new Set(ips.map((ip) => ip.family))].sort().join('+') : '';
    const ports = [...names].filter((n) => n !== name).map((n) => meaning(pod, n));
    return JSON.stringify([nets, family, ports]);
  };
}

/**
 * The container ports a named port in an egress deny rule resolves against: those of every pod
 * owning one of its addresses (`ipOwner`), whoever the peer is. Cilium resolves the name in its
 * node-wide map and denies that port to every peer the rule selects (pkg/policy/l4.go toMapState;
 * Endpoint.GetNamedPort). Where Cilium finds the name ambiguous and writes no deny, this denies
 * every port the name has: never more open. The map holds, per ipcache address, the ports of the
 * one pod written there (pkg/ipcache/ipcache.go `upsertLocked` replaces the address's old
 * metadata's ports with the new one's, `deleteLocked` drops them): a pod that lost every address
 * to another pod brings none (3740).
 */
function clusterNamedPorts(state: ClusterState): ContainerPort[] {
  const owners = ipOwners(state);
  const out: ContainerPort[] = [];
  for (const [key, p] of state.pods) if (podIps(p).some((ip) => owners.get(ip.text) === key)) out.push(...p.ports.filter((cp) => cp.name !== undefined));
  return out;
}

/** Every claimed address → the key of the pod owning it, as `ipOwner` reads each (pods are kept in write order). */
function ipOwners(state: ClusterState): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, p] of state.pods) for (const ip of podIps(p)) out.set(ip.text, key);
  for (const ip of state.unownedIps ?? []) out.delete(ip);
  return out;
}

/**
 * One side of a flow: the ClusterNetworkPolicy tiers around the NetworkPolicy tier (./tiers.ts).
 * Named ports of tier rules resolve against the destination pod's own ports, as the API says.
 */
export function decideDirection(
  state: ClusterState,
  subject: FlowEndpoint & { kind: 'pod' },
  direction: Direction,
  peer: FlowEndpoint,
  protocol: FlowProtocol,
  port: number,
  request?: L7Request,
): DirectionDecision {
  if (heldFailClosed(state, peer)) return { direction, enforcedBy: [], allowedBy: [], deniedBy: [UNALLOCATED_IDENTITY_ORIGIN], redirectedBy: [], allowed: false, proxied: false };
  const destPorts = direction === 'ingress' ? subject.pod.ports : peer.kind === 'pod' ? peer.pod.ports : [];
  return decideTiered(state, subject, { direction, peer, protocol, port, destPorts }, () => decideNpTier(state, subject, direction, peer, protocol, port, request));
}

/**
 * A peer the agent holds fail-closed (findings 2431, 2432): an address outside the cluster inside a CIDR group held
 * so (the API server's too: its CIDR identity would lose the group's labels), or a node address whose identity a remote node held so gives (its
 * holders' first role is remote-node, and the first such holder is held), or one the agent's own node held at its
 * addresses holds as `host` (finding 2900), or a health or Ingress address of a node so held (3060). Its ipcache number is the unallocated one, which every local map denies
 * both ways.
 */
function heldFailClosed(state: ClusterState, peer: FlowEndpoint): boolean {
  if (peer.kind === 'node') {
    const text = peer.address.text;
    const order = (n: ClusterNode): number => NODE_ROLE_ORDER.indexOf(nodeAddressRole(n, text) as NodeAddressRole);
    const first = [...(state.nodes?.values() ?? [])].filter((n) => nodeAddressRole(n, text) !== undefined).sort((a, b) => order(a) - order(b))[0];
    const role = first && nodeAddressRole(first, text);
    // An API server address held fail-closed (finding 3265), but as `host` (which carries the label then).
    if (role !== undefined && role !== 'host' && isHeldApiServerAddress(state, text)) return true;
    if (role === 'remote-node') return first?.failClosed === true;
    // Its own address as `host` of the local node held at its addresses (2900); a health or Ingress address of a node
    // whose own addresses are so held, remote or local (3060).
    const held = (n: ClusterNode): boolean => n.failClosed !== undefined && (!n.local || n.failClosed === 'addresses');
    return role !== undefined && [...(state.nodes?.values() ?? [])].some((n) => held(n) && nodeAddressRole(n, text) === role);
  }
  if (peer.kind !== 'external') return false;
  const ip = peer.external.ip;
  if (isHeldApiServerAddress(state, ip.text)) return true;
  return [...(state.cidrGroups?.values() ?? [])].some((g) => g.failClosed === true && g.cidrs.some((c) => cidrContainsIp(c, ip)));
}

/**
 * `allow-localhost: always` (Cilium's default): the local host reaches every endpoint on ingress,
 * on every port, as if each endpoint had a rule `fromEntities: [host]` that isolates nothing. It
 * is a plain allow of the NetworkPolicy tier: a deny covering the host wins (Cilium inserts it with
 * the map state's insertion rules, pkg/policy/mapstate.go `determineAllowLocalhostIngress`), and
 * a proxy redirect covering the host gets an allow-all for it (pkg/policy/l4.go `hostWildcardL7`,
 * l4_filter_test.go `TestAllowingLocalhostShadowsL7`). Remote nodes and egress are not covered.
 */
function localhostAllowed(state: ClusterState, peer: FlowEndpoint): boolean {
  // Identity 1, also when it carries `reserved:kube-apiserver` (the API server on this node): Cilium's key is the number.
  return (state.allowLocalhost ?? DEFAULT_ALLOW_LOCALHOST) === 'always' && peer.kind === 'node' && peer.labels.some((l) => l.source === HOST.source && l.key === HOST.key);
}

const HOST = reservedLabel('host');

/** The NetworkPolicy tier: Kubernetes NetworkPolicy and Cilium's CNP/CCNP. */
function decideNpTier(
  state: ClusterState,
  subject: FlowEndpoint & { kind: 'pod' },
  direction: Direction,
  peer: FlowEndpoint,
  protocol: FlowProtocol,
  port: number,
  request?: L7Request,
): DirectionDecision {
  const destPorts: readonly ContainerPort[] = direction === 'ingress' ? subject.pod.ports : egressNamedPorts(state, peer);
  const enforcedBy: RuleOrigin[] = [];
  const allowedBy: RuleOrigin[] = [];
  const deniedBy: RuleOrigin[] = [];
  const redirectedBy: RuleOrigin[] = [];
  /** Matching allow clauses without L7 rules: every request passes the proxy (see `proxyVerdict` for DNS). */
  const plainAllows: PlainAllow[] = [];
  const l7Clauses: L7Clause[] = [];
  for (const policy of state.policies.values()) {
    for (const e of policy.enforcements) {
      if (e.direction === direction && selectorMatches(e.subject, subject.labels)) enforcedBy.push(e.origin);
    }
    for (const rule of policy.rules) {
      if (rule.direction !== direction || !selectorMatches(rule.subject, subject.labels)) continue;
      const clauses = matchingClauses(state, rule, peer, protocol, port, rule.verdict === 'deny' && direction === 'egress' ? clusterNamedPorts(state) : destPorts);
      if (clauses.length === 0) continue;
      if (rule.verdict === 'deny') {
        deniedBy.push(rule.origin);
        continue;
      }
      allowedBy.push(rule.origin);
      if (clauses.some((c) => c.l7 !== undefined)) redirectedBy.push(rule.origin);
      for (const c of clauses) {
        const filters = c.l4.kind === 'named' ? namedFilters(state, rule, c, protocol, port) : NUMBERED;
        const onePort = c.l4.kind === 'named' || (c.l4.kind === 'range' && c.l4.from !== 0 && c.l4.from === c.l4.to);
        if (c.l7) l7Clauses.push({ rules: c.l7, origin: rule.origin, onePort, filters, proxyId: proxyIdPort(state, direction, c.l4, protocol, port) });
        else plainAllows.push({ origin: rule.origin, onePort, filters });
      }
    }
  }
  if (direction === 'ingress' && localhostAllowed(state, peer)) {
    allowedBy.push(ALLOW_LOCALHOST_ORIGIN);
    plainAllows.push({ origin: ALLOW_LOCALHOST_ORIGIN, onePort: false, filters: NUMBERED });
  }
  const l4Allowed = deniedBy.length === 0 && (enforcedBy.length === 0 || allowedBy.length > 0);
  const proxied = l4Allowed && l7Clauses.length > 0;
  const base = { direction, enforcedBy, allowedBy, deniedBy, redirectedBy, proxied };
  // A redirect of a protocol no proxy takes (SCTP on a DNS rule's ANY port) is dropped on the way.
  if (proxied && !proxyTakes(protocol)) return { ...base, proxied: false, allowed: false };
  if (!proxied || request === undefined) return { ...base, allowed: l4Allowed };
  const ids = (start: number): Set<L7Parser> => proxyIdWinners(state, subject, direction, protocol, start);
  const l7 = proxyVerdict(l7Clauses, plainAllows, enforcedBy, request, () => l7FiltersOfPort(state, subject, direction, protocol, port), ids);
  return { ...base, allowed: l7.allowed, l7 };
}

/** A matching allow clause without L7 rules, and whether its port is a single port (not L3-only, not a range). */
interface L7Clause {
  readonly rules: L7Rules;
  readonly origin: RuleOrigin;
  readonly onePort: boolean;
  /** The L4Filters its rules are in (`namedFilters`): `#` for a numbered clause. */
  readonly filters: readonly string[];
  /** The port of its filter's proxy ID (`proxyIdPort`), if it has one. */
  readonly proxyId: number | undefined;
}

interface PlainAllow {
  readonly origin: RuleOrigin;
  readonly onePort: boolean;
  /** Its L4Filters: `n:<name>` for `name/proto`, apart from the numbered `53/proto` one, `#` (attack finding 2682). */
  readonly filters: readonly string[];
}

/**
 * The proxy's verdict on a redirected flow's request. The redirect with the lowest listener
 * priority wins; that proxy judges the request with the L7 rules of its parser, and lets
 * everything through for a peer some plain allow covers (`plainAllows`). Envoy (HTTP)
 * also reads the wildcard port's and covering ranges' rules (cilium/proxy network_policy.cc);
 * the agent's DNS proxy reads only the rules of the query's own port and protocol
 * (pkg/fqdn/dnsproxy/proxy.go `CheckAllowed`, `getPortRulesForID`), i.e. the L4Filter of that
 * single port, so an L3-only or range allow of the server does not widen it (attack finding 1965).
 */
function proxyVerdict(
  l7Clauses: readonly L7Clause[],
  plainAllows: readonly PlainAllow[],
  enforcedBy: readonly RuleOrigin[],
  request: L7Request,
  portFilters: () => ReadonlyMap<string, ReadonlySet<L7Parser>>,
  proxyIdTakers: (start: number) => ReadonlySet<L7Parser>,
): NonNullable<DirectionDecision['l7']> {
  let parser = (l7Clauses[0] as { rules: L7Rules }).rules.parser;
  for (const c of l7Clauses) if (LISTENER_PRIORITY[c.rules.parser] < LISTENER_PRIORITY[parser]) parser = c.rules.parser;
  const filters = portFilters();
  if (onePortRedirect(l7Clauses, parser) && takenByOtherParser(filters, parser)) return { parser, allowed: false, allowedBy: [] };
  if (sharesProxyId(l7Clauses, parser, proxyIdTakers)) return { parser, allowed: false, allowedBy: [] };
  const dnsFilters = new Set([...filters].filter(([, parsers]) => parsers.has('dns')).map(([f]) => f));
  // A proxy cannot read another protocol's requests, nor an HTTP target Envoy refuses: they fail whatever the rules say.
  const readable = proxyReads(parser, request);
  const matched = l7Clauses.filter((c) => c.rules.parser === parser && l7Allows(c.rules, request));
  if (parser === 'dns') return dnsProxyVerdict(matched, plainAllows, enforcedBy, readable, proxyFilters(dnsFilters));
  const allowedBy = readable ? uniqueOrigins([...plainAllows.map((p) => p.origin), ...matched.map((c) => c.origin)]) : [];
  const allowed = readable && (allowedBy.length > 0 || enforcedBy.length === 0);
  return { parser, allowed, allowedBy };
}

/** Whether the flow's redirect is a single port's (a named or one-port clause of its parser): the port's proxy ID. */
function onePortRedirect(l7Clauses: readonly L7Clause[], parser: L7Parser): boolean {
  return l7Clauses.some((c) => c.rules.parser === parser && c.onePort);
}

/**
 * A named-port filter of another parser on the port takes its proxy ID (attack finding 3280): Cilium 1.19's proxy ID
 * has no parser (pkg/policy `ProxyID`), pkg/endpoint/bpf.go `addNewRedirects` gives it the first filter it meets,
 * named ones first (pkg/policy/l4.go `L4PolicyMap.ForEach`), and every filter's map entry takes that redirect's port
 * (l4.go `makeMapStateEntry` → `LookupRedirectPort`): the request reaches a proxy that cannot parse it.
 */
function takenByOtherParser(filters: ReadonlyMap<string, ReadonlySet<L7Parser>>, parser: L7Parser): boolean {
  for (const [f, parsers] of filters) if (f !== '#' && [...parsers].some((p) => p !== parser)) return true;
  return false;
}

/**
 * Whether a clause of the redirect's parser has a proxy ID another parser's filter may take (attack finding 3760):
 * pkg/endpoint/bpf.go `Endpoint.proxyID` identifies a range by its first port, a named filter by its resolved port, so
 * `53`, `53-60` and a name resolving to 53 share (endpoint, direction, protocol, 53); `addNewRedirects` gives the ID
 * the first filter pkg/policy/l4.go `L4PolicyMap.ForEach` meets, named ones first, else in Go map order, and every key of
 * every filter of the ID takes its redirect. Open only where the parser is the one possible taker (the meet of orders).
 */
function sharesProxyId(l7Clauses: readonly L7Clause[], parser: L7Parser, takers: (start: number) => ReadonlySet<L7Parser>): boolean {
  for (const c of l7Clauses) {
    if (c.rules.parser !== parser || c.proxyId === undefined) continue;
    for (const p of takers(c.proxyId)) if (p !== parser) return true;
  }
  return false;
}

/** A matched clause's proxy ID port: a range's first port, a named one's port where its name resolves (node-wide on egress). */
function proxyIdPort(state: ClusterState, direction: Direction, l4: L4Match, protocol: FlowProtocol, port: number): number | undefined {
  if (l4.kind === 'range') return l4.from === 0 ? undefined : l4.from;
  if (l4.kind === 'named') return direction === 'ingress' || nodeWideNamedPort(state, l4.name, protocol) === port ? port : undefined;
  return undefined;
}

/**
 * The parsers whose filter may take the proxy ID (direction, protocol, `start`) of `subject`: of the L7 clauses of the
 * allow rules selecting it, whoever they select (pkg/policy/resolve.go `forEachRedirectFilter`), those whose ID it is;
 * the named ones' parsers if there are some (they come first in `L4PolicyMap.ForEach`), else every one's.
 */
function proxyIdWinners(state: ClusterState, subject: FlowEndpoint & { kind: 'pod' }, direction: Direction, protocol: FlowProtocol, start: number): Set<L7Parser> {
  const named = new Set<L7Parser>();
  const all = new Set<L7Parser>();
  for (const policy of state.policies.values()) {
    for (const rule of policy.rules) {
      if (rule.direction !== direction || rule.verdict !== 'allow' || !selectorMatches(rule.subject, subject.labels)) continue;
      for (const c of rule.ports) {
        if (c.l7 === undefined || c.l4.kind === 'all' || !protocolCovers(c.l4.protocol, protocol)) continue;
        if (c.l4.kind === 'range') {
          if (c.l4.from === start) all.add(c.l7.parser);
          continue;
        }
        const at = direction === 'egress' ? nodeWideNamedPort(state, c.l4.name, protocol) === start : l4Covers(c.l4, protocol, start, subject.pod.ports);
        if (!at) continue;
        all.add(c.l7.parser);
        named.add(c.l7.parser);
      }
    }
  }
  return named.size > 0 ? named : all;
}

/**
 * The DNS proxy holds the rules of one L4Filter of the port (attack finding 3160): pkg/endpoint/bpf.go
 * `addNewRedirects` gives the port's proxy ID the first filter with a redirect it meets and skips the others, walking
 * pkg/policy/l4.go `L4PolicyMap.ForEach`, named-port filters first; pkg/proxy/dns.go `setRules` hands that filter's
 * selectors to dnsproxy `UpdateAllowed`, which replaces the port's rules. One named filter holding a DNS rule: its
 * rules alone; several: Go map order picks, so a query passes only if every one of them lets it through; none: the
 * numbered filter.
 */
function proxyFilters(dnsFilters: ReadonlySet<string>): ReadonlySet<string> {
  const named = [...dnsFilters].filter((f) => f !== '#');
  return new Set(named.length > 0 ? named : ['#']);
}

/** Within one filter, a plain single-port allow lets every query through (rule.go `mergePortProto`, finding 2761). */
function dnsProxyVerdict(
  matched: readonly { readonly origin: RuleOrigin; readonly filters: readonly string[] }[],
  plainAllows: readonly PlainAllow[],
  enforcedBy: readonly RuleOrigin[],
  readable: boolean,
  filters: ReadonlySet<string>,
): NonNullable<DirectionDecision['l7']> {
  const byFilter = [...filters].map((f) => [
    ...plainAllows.filter((p) => p.onePort && p.filters.includes(f)).map((p) => p.origin),
    ...matched.filter((c) => c.filters.includes(f)).map((c) => c.origin),
  ]);
  const every = byFilter.every((origins) => origins.length > 0);
  const allowedBy = readable && every ? uniqueOrigins(byFilter.flat()) : [];
  return { parser: 'dns', allowed: readable && (every || enforcedBy.length === 0), allowedBy };
}

const NUMBERED: readonly string[] = ['#'];

/**
 * The named L4Filters a matching named clause's rules are in (engine `dnsFilterKeys`): its own name's and those of the
 * rule's named clauses of the same rules (one toPorts entry's L7 rules, or the rule's plain clauses) whose name
 * resolves node-wide to the port: Cilium's filter of that name then holds the rule's selector with those rules, and
 * judges every peer it selects (finding 3281).
 */
function namedFilters(state: ClusterState, rule: PolicyRule, c: PolicyRule['ports'][number], protocol: FlowProtocol, port: number): string[] {
  const out = new Set<string>();
  if (c.l4.kind === 'named') out.add(`n:${c.l4.name}`);
  for (const o of rule.ports) {
    if (o.l4.kind === 'named' && o.l7 === c.l7 && protocolCovers(o.l4.protocol, protocol) && nodeWideNamedPort(state, o.l4.name, protocol) === port) out.add(`n:${o.l4.name}`);
  }
  return [...out];
}

/**
 * The L4Filters of (direction, protocol, port) with their parsers: the numbered one holding a DNS rule for some peer
 * the rule selects, the named ones holding L7 rules of any parser (`takenByOtherParser`) whose name resolves there:
 * the filters one of which the port's DNS proxy holds (`proxyFilters`), so the plain allows that widen it. A property
 * of the port across every peer, not of the flow's peer: a plain allow in such a filter widens the
 * redirect (rule.go `mergePortProto`; a nil selector is `matchPattern: "*"`, dnsproxy
 * `GetSelectorRegexMap`), one in another filter of the same port does not, as a named port's
 * filter (`dns/UDP`) is not the numbered one (`53/UDP`, pkg/policy/l4.go; attack findings 2682,
 * 2761) and the redirect wins their shared map entry (mapstate `Merge`).
 */
function l7FiltersOfPort(state: ClusterState, subject: FlowEndpoint & { kind: 'pod' }, direction: Direction, protocol: FlowProtocol, port: number): Map<string, Set<L7Parser>> {
  const out = new Map<string, Set<L7Parser>>();
  const pods = [...state.pods.keys()].map((name) => resolveEndpoint(state, name));
  for (const policy of state.policies.values()) {
    for (const rule of policy.rules) {
      if (rule.direction !== direction || rule.verdict !== 'allow' || !selectorMatches(rule.subject, subject.labels)) continue;
      for (const c of rule.ports) {
        if (c.l7 === undefined || c.l4.kind === 'all') continue;
        // Named filters of every parser (the engine's `namedParsers`); of the others, DNS ones only.
        if (c.l7.parser !== 'dns' && c.l4.kind !== 'named') continue;
        if (c.l4.kind === 'range' && (c.l4.from !== port || c.l4.to !== port || !l4Covers(c.l4, protocol, port, []))) continue;
        const l4 = c.l4;
        // A named filter is the endpoint's whoever it selects, its name resolved node-wide on egress, at the subject's own
        // ports on ingress (Cilium's `Endpoint.proxyID` → `GetNamedPort`; findings 3381, 3382).
        if (l4.kind === 'named') {
          const resolved = direction === 'egress' ? protocolCovers(l4.protocol, protocol) && nodeWideNamedPort(state, l4.name, protocol) === port : l4Covers(l4, protocol, port, subject.pod.ports);
          if (resolved) add(out, `n:${l4.name}`, c.l7.parser);
          continue;
        }
        // The engine counts a numbered DNS filter where it keys a rule, by the identities it selects.
        const selected = (ep: FlowEndpoint): boolean => rule.peers.some((p) => peerMatches(state, p, ep)) && l4Covers(l4, protocol, port, []);
        const existing = rule.peers.some((p) => p.kind !== 'selector' || p.entity !== undefined);
        if (!existing && !pods.some(selected)) continue;
        add(out, '#', c.l7.parser);
      }
    }
  }
  return out;
}

function add(filters: Map<string, Set<L7Parser>>, f: string, parser: L7Parser): void {
  filters.set(f, (filters.get(f) ?? new Set<L7Parser>()).add(parser));
}

/**
 * Where Cilium 1.19 resolves an egress named port for a filter's proxy ID (pkg/endpoint/bpf.go `Endpoint.proxyID` →
 * pkg/policy/types `namedPortMultiMap.GetNamedPort`): the one port the pods owning an address (`clusterNamedPorts`)
 * give the name for the protocol; none when no pod does or two ports do ("ErrDuplicateNamedPorts").
 */
function nodeWideNamedPort(state: ClusterState, name: string, protocol: FlowProtocol): number | undefined {
  const ports = new Set(clusterNamedPorts(state).filter((cp) => cp.name === name && cp.protocol === protocol).map((cp) => cp.port));
  return ports.size === 1 ? (ports.values().next().value as number) : undefined;
}

/** A flow is allowed when the source's egress allows it and the destination's ingress allows it. */
export function decideFlow(state: ClusterState, flow: Flow): FlowDecision {
  const src = resolveEndpoint(state, flow.from);
  const dst = resolveEndpoint(state, flow.to);
  const egress = src.kind === 'pod' ? decideDirection(state, src, 'egress', dst, flow.protocol, flow.port, flow.request) : undefined;
  const ingress = dst.kind === 'pod' ? decideDirection(state, dst, 'ingress', src, flow.protocol, flow.port, flow.request) : undefined;
  return combineSides(egress, ingress);
}
