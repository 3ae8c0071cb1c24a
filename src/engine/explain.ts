import { hostCidr, IpAddress } from '../model/cidr.js';
import { podIps } from '../model/cluster.js';
import { ANY_IDENTITY, IdentityId, identityType, type IdentityType } from '../model/identity.js';
import { l7Allows, L7Parser, L7Policy, l7PolicyAllows, l7PolicyKey, L7Request, proxyReads } from '../model/l7.js';
import { makeLabelSet, reservedLabel, type LabelSet } from '../model/labels.js';
import { datapathLookup, LookupResult, maskPort, PolicyEntry, PolicyKey } from '../model/policy-map.js';
import { Direction, policyRefKey, RuleOrigin, uniqueOrigins } from '../model/rules.js';
import { concreteEntry, redirectInfo, rowPortRange } from './commit.js';
import { Contribution, originsOf } from './contribution.js';
import { EngineError, L7PortRange, L7TableRow, MapSnapshot, RedirectInfo } from './events.js';
import type { IdentityTable } from './identities.js';
import type { Redirect } from './l7-tables.js';
import type { MapState } from './map-state.js';
import type { NodeTable } from './node-table.js';
import type { PodTable } from './pod-table.js';
import { sharedListenerOrigins } from './subject-groups.js';
import type { ProxyPortAllocator } from './proxy-ports.js';
import { PARSER_OF_CODE } from './rule-units.js';
import type { SelectorCache } from './selector-cache.js';
import type { SharedMapState, SharedMaps } from './shared-maps.js';

/** Sizes, for tests and benchmarks. */
export interface EngineSizes {
  readonly identities: number;
  /** Identities some local endpoint holds. */
  readonly localIdentities: number;
  readonly selectors: number;
  readonly subjectSelectors: number;
  readonly mapStates: number;
  readonly endpoints: number;
}

/** One cached selector (see `EngineQueries.selectors`). */
export interface SelectorInfo {
  readonly selector: string;
  /** `peer`: selects peers (every identity); `subject`: selects the endpoints rules apply to (local identities). */
  readonly kind: 'peer' | 'subject';
  readonly policies: string[];
  readonly users: number;
  readonly identities: IdentityId[];
}

/** One rule of an endpoint's resolved policy. */
export interface ResolvedRule {
  readonly direction: Direction;
  readonly verdict: string;
  readonly origin: RuleOrigin;
  readonly peers: IdentityId[];
  readonly anyPeer: boolean;
  readonly l7: boolean;
}

/** The stages an engine's queries read; replaced as a whole when the engine rebuilds. */
export interface EngineStages {
  readonly identities: IdentityTable;
  readonly maps: SharedMaps;
  readonly pods: PodTable;
  readonly nodes: NodeTable;
  readonly peerCache: SelectorCache;
  readonly subjectCache: SelectorCache;
}

/**
 * The read-only queries: what an endpoint's kernel map and proxies hold, and why.
 *
 * Contract: reads the committed stages; never mutates anything (proxy ports are only looked up).
 */
export class EngineQueries {
  constructor(
    private readonly s: EngineStages,
    private readonly ports: ProxyPortAllocator,
    private readonly mapCapacity: number,
  ) {}

  endpoints(): string[] {
    return [...this.s.maps.byEndpoint.keys()].sort();
  }

  private mapOf(endpoint: string): SharedMapState {
    const m = this.s.maps.byEndpoint.get(endpoint);
    if (!m) throw new EngineError(0, 'query', `no local endpoint "${endpoint}"`);
    return m;
  }

  isEndpoint(endpoint: string): boolean {
    return this.s.maps.byEndpoint.has(endpoint);
  }

  mapState(endpoint: string): MapSnapshot {
    const m = this.mapOf(endpoint);
    if (!m.state.l7.hasRedirects) return m.state.entries;
    const out = new Map<string, LookupResult>();
    for (const [ks, r] of m.state.entries) out.set(ks, { key: r.key, entry: concreteEntry(this.ports, endpoint, r.key, r.entry) });
    return out;
  }

  redirects(endpoint: string): RedirectInfo[] {
    const m = this.mapOf(endpoint);
    return [...m.state.l7.redirects()].sort().map((id) => redirectInfo(this.ports, endpoint, m.state.l7.redirect(id) as Redirect));
  }

  l7Table(endpoint: string): L7TableRow[] {
    const m = this.mapOf(endpoint);
    return [...m.state.l7.rows.entries()]
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .map(([, row]) => ({ redirect: redirectInfo(this.ports, endpoint, row.redirect), peer: row.peer, policy: row.policy, ...rowPortRange(row) }));
  }

  l7Policies(endpoint: string): { redirect: RedirectInfo; portRange?: L7PortRange; policies: { peers: IdentityId[]; policy: L7Policy }[] }[] {
    const out = new Map<string, { redirect: RedirectInfo; portRange?: L7PortRange; byPolicy: Map<string, { peers: IdentityId[]; policy: L7Policy }> }>();
    for (const row of this.l7Table(endpoint)) {
      const rk = `${row.redirect.direction}/${row.redirect.protocol}/${row.redirect.port}/${row.redirect.portPrefixLen}/${row.redirect.parser}/${row.portRange?.port}-${row.portRange?.endPort}`;
      let r = out.get(rk);
      if (!r) out.set(rk, (r = { redirect: row.redirect, ...(row.portRange ? { portRange: row.portRange } : {}), byPolicy: new Map() }));
      const pk = l7PolicyKey(row.policy);
      const entry = r.byPolicy.get(pk);
      if (entry) entry.peers.push(row.peer);
      else r.byPolicy.set(pk, { peers: [row.peer], policy: row.policy });
    }
    return [...out.values()].map((r) => ({ redirect: r.redirect, ...(r.portRange ? { portRange: r.portRange } : {}), policies: [...r.byPolicy.values()].map((p) => ({ ...p, peers: p.peers.sort((a, b) => a - b) })) }));
  }

  /**
   * The proxy's verdict on a request to `port` (the flow's destination port): the redirect's rows
   * for the peer and any peer, and the rules of narrower port ranges covering `port`.
   */
  l7Verdict(endpoint: string, proxyPort: number, peer: IdentityId, request: L7Request, port: number): { parser: L7Parser; allowed: boolean } | undefined {
    const at = this.redirectAt(endpoint, proxyPort, port);
    if (!at) return undefined;
    const rows = [at.state.l7.rows.get(`${at.id}|${peer}`), peer === ANY_IDENTITY ? undefined : at.state.l7.rows.get(`${at.id}|${ANY_IDENTITY}`)];
    const readable = proxyReads(at.redirect.parser, request);
    const byRows = rows.some((r) => r !== undefined && l7PolicyAllows(r.policy, request));
    const allows = (c: Contribution): boolean => letsThrough(c, at.redirect.parser, request);
    return { parser: at.redirect.parser, allowed: readable && (byRows || at.state.l7.narrowerContributions(at.redirect, peer, port).some(allows)) };
  }

  /**
   * The redirect an endpoint's proxy port serves, with the map state holding its table; none when
   * `port` is outside its prefix (finding 360: a narrower rule on that port is no rule of this proxy).
   */
  private redirectAt(endpoint: string, proxyPort: number, port: number): { state: MapState; id: string; redirect: Redirect } | undefined {
    const state = this.mapOf(endpoint).state;
    const id = this.ports.redirectOf(endpoint, proxyPort);
    const redirect = id === undefined ? undefined : state.l7.redirect(id);
    if (id === undefined || !redirect || !(Number.isInteger(port) && port >= 0 && port <= 0xffff)) return undefined;
    return maskPort(port, redirect.portPrefixLen) === redirect.port ? { state, id, redirect } : undefined;
  }

  l7AllowedBy(endpoint: string, proxyPort: number, peer: IdentityId, request: L7Request, port: number): RuleOrigin[] {
    const at = this.redirectAt(endpoint, proxyPort, port);
    if (!at || !proxyReads(at.redirect.parser, request)) return [];
    const out: RuleOrigin[] = [];
    for (const c of [...at.state.l7.contributions(at.redirect, peer), ...at.state.l7.narrowerContributions(at.redirect, peer, port)]) {
      if (c.origin && letsThrough(c, at.redirect.parser, request)) for (const o of originsOf(c)) if (o) out.push(o);
    }
    return uniqueOrigins(out);
  }

  localEndpointsVersion(): number {
    return this.s.pods.localVersion;
  }

  /** A local endpoint's addresses (both of a dual-stack pod); none for a key that is not one. */
  endpointAddresses(endpoint: string): readonly IpAddress[] {
    const rec = this.s.pods.get(endpoint);
    return rec?.map ? podIps(rec.pod) : [];
  }

  /** The number the ipcache gives the pod: `unallocated` for a pod whose labels have no external id yet (finding 2185). */
  identityOfPod(key: string): IdentityId | undefined {
    const rec = this.s.pods.get(key);
    return rec && this.s.pods.ipIdentity(rec).id;
  }

  identityOfIp(ip: IpAddress): IdentityId {
    const ids = this.s.identities;
    return (this.s.nodes.at(ip.text) ?? this.s.pods.ipIdentityAt(ip.text) ?? ids.ipcacheOfCidr(this.s.nodes.apiServerAt(ip.text) ?? ids.fqdnHost(ip.text) ?? ids.cidrIdentityOf(ip), ip) ?? ids.unallocated).id;
  }

  /** The whole ipcache: node and pod IPs as host prefixes (a pod wins over a CIDR identity of the same prefix), then CIDR identities. */
  ipcache(): { prefix: string; identity: IdentityId }[] {
    const out = new Map<string, IdentityId>();
    const ids = this.s.identities;
    for (const rec of ids.cidrIdentities()) if (rec.cidr) out.set(rec.cidr.text, (ids.ipcacheOfCidr(rec, rec.cidr) ?? rec).id);
    // A held group's prefixes hold no CIDR identity (finding 3273): their entries read the unallocated number.
    for (const c of ids.heldGroupPrefixes()) if (!out.has(c.text)) out.set(c.text, ids.unallocated.id);
    for (const { ip, identity } of ids.fqdnHostEntries()) out.set(hostCidr(ip).text, (ids.ipcacheOfCidr(identity, ip) ?? identity).id);
    for (const { ip, identity } of this.s.nodes.apiServerEntries()) out.set(hostCidr(ip).text, (ids.ipcacheOfCidr(identity, ip) ?? identity).id);
    for (const { ip, identity } of this.s.pods.ipEntries()) out.set(hostCidr(ip).text, identity.id);
    // A node's address wins over a pod claiming it (a host-network pod is not an endpoint).
    for (const { ip, identity } of this.s.nodes.entries()) out.set(hostCidr(ip).text, identity.id);
    return [...out].map(([prefix, identity]) => ({ prefix, identity })).sort((a, b) => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0));
  }

  /** An unreadable external identity's (a fail-closed stand-in, finding 1936) with `reserved:unreadable-identity` first: `maps dump` must not show its deny as one of its last labels'. */
  identityLabels(id: IdentityId): LabelSet | undefined {
    // A pod without an identity yet (finding 2002): `reserved:unallocated-identity`, the labels of no identity.
    if (id === this.s.identities.unallocated.id) return this.s.identities.unallocated.labels;
    const rec = this.s.identities.get(id);
    return rec?.unreadable === true ? makeLabelSet([reservedLabel('unreadable-identity'), ...rec.labels]) : rec?.labels;
  }

  identities(): IdentityId[] {
    return [...this.s.identities.ids()].sort((a, b) => a - b);
  }

  lookup(endpoint: string, peer: IdentityId, direction: Direction, protocol: number, port: number): LookupResult | undefined {
    const hit = datapathLookup(this.mapOf(endpoint).state.entries, peer, direction, protocol, port);
    return hit && { key: hit.key, entry: concreteEntry(this.ports, endpoint, hit.key, hit.entry) };
  }

  contributors(endpoint: string, key: PolicyKey): { origin: RuleOrigin | null; entry: PolicyEntry }[] {
    const m = this.mapOf(endpoint);
    // A contribution of equal rules (policy-resolver.ts UnitShare) stands for each of them.
    return m.state.contributions(key).flatMap((c) => originsOf(c).map((origin) => ({ origin, entry: concreteEntry(this.ports, endpoint, key, c.entry, false) })));
  }

  enforcedBy(endpoint: string, direction: Direction): RuleOrigin[] {
    return [...this.mapOf(endpoint).local.enforcing[direction]].map((e) => e.unit.origin);
  }

  policyOf(endpoint: string): ResolvedRule[] {
    return [...this.mapOf(endpoint).local.units].map((a) => ({
      direction: a.unit.direction,
      verdict: a.unit.verdict,
      origin: a.unit.origin,
      peers: [...a.targets.keys()].sort((x, y) => x - y),
      anyPeer: a.unit.anyPeer,
      l7: a.unit.clauses.some((c) => c.l7 !== undefined),
    }));
  }

  /**
   * The selector caches as `cilium-dbg policy selectors` lists them: each selector, the policies
   * and number of rules using it, and the identities it selects now. Peer selectors exist only
   * while some local endpoint needs them (lazy registration); subject selectors always.
   */
  selectors(): SelectorInfo[] {
    const rows = (cache: SelectorCache, kind: SelectorInfo['kind']): SelectorInfo[] =>
      [...cache.selectors()].map((cs) => ({
        selector: cs.selector.key,
        kind,
        policies: [...new Set([...cs.listeners].flatMap((l) => (sharedListenerOrigins(l) ?? (l.origin ? [l.origin] : [])).map((o) => policyRefKey(o.policy))))].sort(),
        // A peer selector's listener may stand for several equal rules (policy-resolver.ts UnitShare).
        users: [...cs.listeners].reduce((n, l) => n + (sharedListenerOrigins(l)?.length ?? 1), 0),
        identities: [...cs.selected].sort((a, b) => a - b),
      }));
    return [...rows(this.s.peerCache, 'peer'), ...rows(this.s.subjectCache, 'subject')].sort((a, b) => (a.selector < b.selector ? -1 : a.selector > b.selector ? 1 : a.kind < b.kind ? -1 : 1));
  }

  mapPressure(): { endpoint: string; entries: number; capacity: number; pressure: number }[] {
    return [...this.s.maps.byEndpoint]
      .map(([endpoint, m]) => ({ endpoint, entries: m.state.entries.size, capacity: this.mapCapacity, pressure: m.state.entries.size / this.mapCapacity }))
      .sort((a, b) => b.pressure - a.pressure || (a.endpoint < b.endpoint ? -1 : 1));
  }

  /** Identities by Cilium's identity type (one pass over the identity table: for metrics scrapes, not per event). */
  identityTypes(): Map<IdentityType, number> {
    const counts = new Map<IdentityType, number>([['reserved', 0], ['cluster_local', 0], ['node_local', 0], ['remote_node', 0]]);
    for (const id of this.s.identities.ids()) {
      const t = identityType(id);
      counts.set(t, counts.get(t)! + 1);
    }
    return counts;
  }

  sizes(): EngineSizes {
    return {
      identities: this.s.identities.size,
      localIdentities: this.s.maps.locals.size,
      selectors: this.s.peerCache.selectorCount,
      subjectSelectors: this.s.subjectCache.selectorCount,
      mapStates: this.s.maps.mapStateCount,
      endpoints: this.s.maps.byEndpoint.size,
    };
  }
}

/** Does an NP-tier contribution let `request` through a `parser` proxy: a plain allow, or a matching L7 rule of that parser? */
function letsThrough(c: Contribution, parser: L7Parser, request: L7Request): boolean {
  if (c.entry.deny) return false;
  return c.entry.proxyPort === 0 || (PARSER_OF_CODE[c.entry.proxyPort] === parser && c.l7 !== undefined && l7Allows(c.l7, request));
}
