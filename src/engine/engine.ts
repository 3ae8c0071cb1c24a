import { Cidr, cidrContainsIp, IpAddress, IpFamily } from '../model/cidr.js';
import { namespaceWithDefaults, Pod, podKey } from '../model/cluster.js';
import { IdentityAllocator, IdentityId, podIdentityLabels, RESERVED_IDENTITIES } from '../model/identity.js';
import { LabelSet, labelSetKey, makeLabelSet, NAMESPACE_NAME_LABEL, reservedLabel, SOURCE_CIDR } from '../model/labels.js';
import { datapathLookup, LookupResult, PolicyEntry, PolicyKey, wildcardKey } from '../model/mapstate.js';
import { ContainerPort, FLOW_PROTOCOLS, MAX_PORT, protocolCovers } from '../model/ports.js';
import { Direction, DIRECTIONS, Policy, PolicyRef, policyRefKey, RuleOrigin, uniqueOrigins } from '../model/rules.js';
import { ChangeSet, EngineError, EngineEvent, EngineFailedError, L7Delta, MapCapacityError, MapDelta, MapSnapshot, RedirectInfo } from './events.js';
import { ModelStore } from './model-store.js';
import { validateBatch } from './validate.js';
import { diffMaps, EntryChange, L7Change, L7Row, MapState, Redirect, redirectId } from './map-state.js';
import {
  ALLOW_ENTRY,
  clauseEntry,
  compilePolicy,
  EnforcementUnit,
  NamedPortResolver,
  PARSER_OF_CODE,
  PortKey,
  portKeys,
  resolveNamedIn,
  l7ParserConflict,
  L7ParserConflictError,
  RuleUnit,
} from './rule-units.js';
import { DEFAULT_PROXY_PORT_RANGE, ProxyPortAllocator, ProxyPortRange, ProxyPortsExhaustedError } from './proxy-ports.js';
import { l7Allows, L7Parser, L7Policy, l7PolicyAllows, l7PolicyKey, L7Request, requestParser } from '../model/l7.js';
import type { L7Rules } from '../model/rules.js';
import { CachedSelector, SelectableIdentity, SelectionListener, SelectorCache } from './selector-cache.js';
import { diffStats, EngineStats, emptyStats } from './stats.js';
import { TombstoneMap } from './tombstone-map.js';

/** One allocated identity and what the engine knows about it. */
interface IdentityRecord extends SelectableIdentity {
  readonly labels: LabelSet;
  /** Pods and CIDR selectors holding it; reserved identities are never released. */
  refs: number;
  /** `name` → `protocol/port` → how many of its pods expose that named port. */
  readonly namedPorts: Map<string, Map<string, number>>;
}

/** A local identity's resolved policy, shared by every endpoint with that identity. */
interface LocalIdentity {
  readonly record: IdentityRecord;
  /** The rules whose subject selects it. */
  readonly units: Set<ActiveUnit>;
  /** How many enforcement units make each direction default-deny. */
  readonly enforcing: Record<Direction, Set<ActiveEnforcement>>;
  /** Map states, one per distinct container-port set of its endpoints (ingress named ports). */
  readonly groups: Map<string, Group>;
}

/** A map state shared by the endpoints with the same identity and the same container ports. */
interface Group {
  readonly key: string;
  readonly local: LocalIdentity;
  readonly ports: readonly ContainerPort[];
  readonly resolveNamed: NamedPortResolver;
  readonly state: MapState;
  readonly endpoints: Set<string>;
}

interface PodRecord {
  readonly pod: Pod;
  readonly local: boolean;
  readonly identity: IdentityRecord;
  group: Group | null;
}

interface ActiveUnit {
  readonly unit: RuleUnit;
  /**
   * Per clause: its map entry, its port keys unless they depend on named ports, its L7 rules and
   * the contribution source (clauses with L7 rules contribute under their own source, so the L7
   * tables know whose rules a redirect carries).
   */
  readonly clauses: readonly {
    readonly l4: RuleUnit['clauses'][number]['l4'];
    readonly entry: PolicyEntry;
    readonly keys: readonly PortKey[] | null;
    readonly l7: L7Rules | undefined;
    readonly source: string;
  }[];
  /** Short contribution tag in map states (the uid is long: hashing it per entry would cost). */
  readonly source: string;
  subject: CachedSelector | null;
  /** Some local identity is selected: peers are registered and targets kept current. */
  active: boolean;
  peers: CachedSelector[];
  /** Peer identities and how many of this unit's peer selectors select each. */
  readonly targets: Map<IdentityId, number>;
  /** CIDR identities this unit keeps allocated. */
  cidrRefs: IdentityRecord[];
  readonly subjectListener: SelectionListener;
  readonly peerListener: SelectionListener;
}

interface ActiveEnforcement {
  readonly unit: EnforcementUnit;
  subject: CachedSelector | null;
  readonly listener: SelectionListener;
}

interface PolicyRecord {
  readonly policy: Policy;
  readonly units: Map<string, ActiveUnit>;
  readonly enforcements: Map<string, ActiveEnforcement>;
}

export interface EngineOptions {
  /** Where proxy ports for L7 redirects come from (default 10000–20000). */
  readonly proxyPortRange?: ProxyPortRange;
  /** A proxy port allocator shared with other engines (full-recompute replays); overrides the range. */
  readonly proxyPortAllocator?: ProxyPortAllocator;
  /** Entries one endpoint's policy map may hold (Cilium's default: 16,384). */
  readonly mapCapacity?: number;
  /**
   * Where identity numbers come from. Engines sharing one keep the same number per label set, as
   * agents do with cluster-allocated identities (used by full-recompute replays).
   */
  readonly allocator?: IdentityAllocator;
  /**
   * Test-only fault injection: called at points inside every transaction (the point's name as
   * argument); throwing from it simulates an internal error there.
   */
  readonly faultHook?: (point: string) => void;
}

export const DEFAULT_MAP_CAPACITY = 16384;

const DEFAULT_ALLOW_SOURCE = 'default-allow';

function portsSignature(ports: readonly ContainerPort[]): string {
  return ports
    .map((p) => `${p.name ?? ''}:${p.port}/${p.protocol}`)
    .sort()
    .join(',');
}

function worldLabels(family: IpFamily): LabelSet {
  return makeLabelSet([reservedLabel('world'), reservedLabel(family === 'ipv4' ? 'world-ipv4' : 'world-ipv6')]);
}

/**
 * The incremental policy engine. Events flow through:
 * model (namespaces, pods, policies) → identities → selector caches → per-identity policy
 * (rule units selecting each local identity) → map states (one per identity and port set, shared
 * by its endpoints) → deltas per endpoint.
 *
 * `apply` is a transaction: the batch is validated against the model first (nothing changes if
 * any event is bad), then applied. Identities whose last user left are released at the end of
 * the transaction, so a pod deleted and re-created in one batch keeps its identity and yields no
 * deltas.
 */
export class Engine {
  private readonly statsCounters: EngineStats = emptyStats();
  private readonly allocator: IdentityAllocator;
  private readonly proxyPorts: ProxyPortAllocator;
  /** The committed model: what validation reads and what a failed transaction rebuilds from. */
  private readonly model = new ModelStore();
  /** Test-only: called at points inside a transaction, to inject faults. */
  private readonly faultHook: ((point: string) => void) | undefined;
  /** Set when the engine could not rebuild itself after an internal error: it refuses all work. */
  private failure: Error | null = null;
  /** While rebuilding, identities keep the numbers the allocator already holds for them. */
  private adopting = false;

  // Derived state (caches), rebuilt from `model` by `resetCaches` + replay after an internal error.
  /** Every identity: pods (local and remote), reserved, CIDR. Peer selectors select from these. */
  private peerCache!: SelectorCache;
  /** Local identities only. Rule subjects select from these. */
  private subjectCache!: SelectorCache;
  private identitiesByKey!: TombstoneMap<string, IdentityRecord>;
  private identitiesById!: TombstoneMap<IdentityId, IdentityRecord>;
  private locals!: TombstoneMap<IdentityId, LocalIdentity>;
  private namespaces!: Map<string, Readonly<Record<string, string>>>;
  private pods!: TombstoneMap<string, PodRecord>;
  private podsByNamespace!: Map<string, Set<string>>;
  private podsByIp!: TombstoneMap<string, string>;
  private policies!: TombstoneMap<string, PolicyRecord>;
  private endpointGroups!: TombstoneMap<string, Group>;
  /** prefix length → network → CIDR identity, per family: the ipcache's LPM part. */
  private cidrIdentities!: Record<IpFamily, Map<number, Map<bigint, IdentityRecord>>>;
  /** Named-port-on-egress units by port name: a peer's named ports changing touches only these. */
  private namedEgressUnits!: Map<string, Set<ActiveUnit>>;
  /** Named ports of every pod (name → "protocol/port" → pods): Cilium's node-wide named-port map. */
  private clusterNamedPorts!: Map<string, Map<string, number>>;
  /** Pods per identity, counted with its named ports. */
  private podsPerIdentity!: Map<IdentityId, number>;
  private unitsBySource!: Map<string, ActiveUnit>;
  private nextSource = 1;

  // Transaction bookkeeping.
  private pendingRelease!: Set<IdentityRecord>;
  private dirtyGroups!: Set<Group>;
  /** Endpoints whose group changed in this transaction → their group before it (null: none). */
  private movedEndpoints!: Map<string, Group | null>;
  /** Undo closures of the running transaction, newest last; null outside `apply`. */
  private undoLog: (() => void)[] | null = null;
  /** Identities freed by the running transaction's commit, revived if it is rolled back. */
  private freedThisTxn!: Map<string, IdentityRecord>;
  /** Local identities that adopted a rule with L7 rules in the running transaction (checked for parser conflicts). */
  private adoptedThisTxn!: Set<LocalIdentity>;
  readonly mapCapacity: number;
  private worldIpv4!: IdentityRecord;
  private worldIpv6!: IdentityRecord;

  constructor(options: EngineOptions = {}) {
    this.proxyPorts = options.proxyPortAllocator ?? new ProxyPortAllocator(options.proxyPortRange ?? DEFAULT_PROXY_PORT_RANGE);
    this.mapCapacity = options.mapCapacity ?? DEFAULT_MAP_CAPACITY;
    this.allocator = options.allocator ?? new IdentityAllocator();
    this.faultHook = options.faultHook;
    this.resetCaches();
  }

  /** Empty caches holding the reserved identities only: a new engine, or one about to rebuild. */
  private resetCaches(): void {
    this.peerCache = new SelectorCache(this.statsCounters);
    this.subjectCache = new SelectorCache(this.statsCounters);
    this.identitiesByKey = new TombstoneMap();
    this.identitiesById = new TombstoneMap();
    this.locals = new TombstoneMap();
    this.namespaces = new Map();
    this.pods = new TombstoneMap();
    this.podsByNamespace = new Map();
    this.podsByIp = new TombstoneMap();
    this.policies = new TombstoneMap();
    this.endpointGroups = new TombstoneMap();
    this.cidrIdentities = { ipv4: new Map(), ipv6: new Map() };
    this.namedEgressUnits = new Map();
    this.clusterNamedPorts = new Map();
    this.podsPerIdentity = new Map();
    this.unitsBySource = new Map();
    this.nextSource = 1;
    this.pendingRelease = new Set();
    this.dirtyGroups = new Set();
    this.movedEndpoints = new Map();
    this.undoLog = null;
    this.freedThisTxn = new Map();
    this.adoptedThisTxn = new Set();
    for (const [name, id] of Object.entries(RESERVED_IDENTITIES)) {
      const labels = makeLabelSet([reservedLabel(name)]);
      const matchLabels = name === 'world-ipv4' ? worldLabels('ipv4') : name === 'world-ipv6' ? worldLabels('ipv6') : labels;
      const rec: IdentityRecord = { id, labels, matchLabels, refs: Infinity, namedPorts: new Map() };
      this.identitiesByKey.set(labelSetKey(labels), rec);
      this.identitiesById.set(id, rec);
      this.peerCache.addIdentity(rec);
    }
    this.worldIpv4 = this.identitiesById.get(RESERVED_IDENTITIES['world-ipv4']) as IdentityRecord;
    this.worldIpv6 = this.identitiesById.get(RESERVED_IDENTITIES['world-ipv6']) as IdentityRecord;
  }

  /**
   * A fault-injection point; while rebuilding, points are named `rebuild:<point>`. Call sites test
   * `faultHook` first: they sit on the per-event path, where a call per contribution shows.
   */
  private fault(point: string): void {
    this.faultHook?.(this.adopting ? `rebuild:${point}` : point);
  }

  // ---------------------------------------------------------------- public API

  /**
   * Applies a batch of events as one transaction and returns the map deltas it causes. Nothing
   * changes unless it returns: a bad event throws `EngineError` before anything is touched; a
   * refusal (a full map, no free proxy port, conflicting L7 parsers) is undone through the undo log; any other exception
   * (an internal error) makes the engine rebuild its caches from the committed model, with the
   * same identity numbers and proxy ports, before it propagates.
   */
  apply(events: readonly EngineEvent[]): ChangeSet {
    if (this.failure) throw new EngineFailedError(this.failure);
    validateBatch(this.model, events);
    const before = { ...this.statsCounters };
    const mark = this.allocator.mark();
    this.proxyPorts.begin();
    this.allocator.begin();
    let result: ReturnType<Engine['commit']>;
    try {
      result = this.transaction(events, before, mark);
    } catch (e) {
      if (!(e instanceof MapCapacityError || e instanceof ProxyPortsExhaustedError || e instanceof L7ParserConflictError)) this.recover(before);
      throw e;
    } finally {
      this.undoLog = null;
    }
    this.proxyPorts.commit();
    this.allocator.commit();
    this.freedThisTxn.clear();
    for (const e of events) this.model.apply(e);
    this.statsCounters.transactions++;
    this.statsCounters.events += events.length;
    this.statsCounters.deltas += result.deltas.length;
    this.statsCounters.l7Deltas += result.l7Deltas.length;
    return {
      deltas: result.deltas,
      l7Deltas: result.l7Deltas,
      endpointsAdded: result.endpointsAdded,
      endpointsRemoved: result.endpointsRemoved,
      work: diffStats(this.statsCounters, before),
    };
  }

  /** The events, then commit; a refusal is rolled back here and thrown. */
  private transaction(events: readonly EngineEvent[], before: EngineStats, mark: ReturnType<IdentityAllocator['mark']>): ReturnType<Engine['commit']> {
    const undo: (() => void)[] = [];
    this.undoLog = undo;
    for (const e of events) this.applyEvent(e);
    const result = this.commit();
    this.undoLog = null;
    const refusal = result.exhausted ?? this.findOverflow(result.touched) ?? this.findL7Conflict();
    this.adoptedThisTxn.clear();
    if (!refusal) return result;
    this.proxyPorts.rollback();
    this.rollback(undo, before, mark);
    this.allocator.commit();
    throw refusal;
  }

  /**
   * After an unexpected exception the caches may be half changed anywhere, so they are rebuilt
   * from the committed model (which the transaction never touched). The allocators' journals give
   * back every identity number and proxy port as they were, so the rebuilt maps are the old ones
   * exactly and nothing needs to reach a backend. If even that fails, the engine refuses all
   * further transactions: the kernel maps keep the last committed state.
   */
  private recover(before: EngineStats): void {
    this.proxyPorts.rollback();
    this.allocator.rollback();
    this.adopting = true;
    try {
      this.resetCaches();
      for (const e of this.model.events()) this.applyEvent(e);
      this.commit();
    } catch (e) {
      this.failure = e instanceof Error ? e : new Error(String(e));
    } finally {
      this.adopting = false;
      this.undoLog = null;
      Object.assign(this.statsCounters, before);
    }
  }

  /** A local identity that adopted rules in this transaction must not mix L7 parsers on a port. */
  private findL7Conflict(): L7ParserConflictError | null {
    for (const local of this.adoptedThisTxn) {
      const endpoint = [...local.groups.values()].flatMap((g) => [...g.endpoints]).sort()[0];
      const conflict = endpoint === undefined ? null : l7ParserConflict(endpoint, [...local.units].map((a) => a.unit));
      if (conflict) return conflict;
    }
    return null;
  }

  private findOverflow(endpoints: Iterable<string>): MapCapacityError | null {
    let worst: { endpoint: string; group: Group } | null = null;
    for (const endpoint of endpoints) {
      const group = this.endpointGroups.get(endpoint);
      if (!group || group.state.entries.size <= this.mapCapacity) continue;
      if (!worst || group.state.entries.size > worst.group.state.entries.size) worst = { endpoint, group };
    }
    if (!worst) return null;
    const top = [...worst.group.state.entriesBySource()]
      .filter(([source]) => source !== DEFAULT_ALLOW_SOURCE)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([source, entries]) => {
        const o = this.originOfSource(source);
        return { rule: o ? `${policyRefKey(o.policy)} ${o.path}` : source, entries };
      });
    return new MapCapacityError(worst.endpoint, worst.group.state.entries.size, this.mapCapacity, top);
  }

  /** Undoes a committed-but-refused transaction: same model, same identity numbers, same maps. */
  private rollback(undo: readonly (() => void)[], stats: EngineStats, mark: ReturnType<IdentityAllocator['mark']>): void {
    for (let i = undo.length - 1; i >= 0; i--) (undo[i] as () => void)();
    for (const rec of [...this.pendingRelease]) if (rec.refs === 0) this.freeIdentity(rec);
    this.pendingRelease.clear();
    for (const g of this.dirtyGroups) g.state.settle();
    this.dirtyGroups.clear();
    this.movedEndpoints.clear();
    this.freedThisTxn.clear();
    this.adoptedThisTxn.clear();
    this.allocator.rewind(mark);
    Object.assign(this.statsCounters, stats);
  }

  stats(): EngineStats {
    return { ...this.statsCounters };
  }

  /** Local endpoints (pod keys `namespace/name`), sorted. */
  endpoints(): string[] {
    return [...this.endpointGroups.keys()].sort();
  }

  private groupOf(endpoint: string): Group {
    const g = this.endpointGroups.get(endpoint);
    if (!g) throw new EngineError(0, 'query', `no local endpoint "${endpoint}"`);
    return g;
  }

  /** An endpoint's policy map as the kernel would hold it (redirects carry its proxy ports). */
  mapState(endpoint: string): MapSnapshot {
    const g = this.groupOf(endpoint);
    if (!g.state.hasRedirects) return g.state.entries;
    const out = new Map<string, LookupResult>();
    for (const [ks, r] of g.state.entries) out.set(ks, { key: r.key, entry: this.concrete(endpoint, r.key, r.entry) });
    return out;
  }

  /** The endpoint's proxy redirects and the port each listens on. */
  redirects(endpoint: string): RedirectInfo[] {
    const g = this.groupOf(endpoint);
    return [...g.state.redirects()].sort().map((id) => this.redirectInfo(endpoint, g.state.redirect(id) as Redirect));
  }

  /**
   * Releases the proxy ports an endpoint this engine does not have still holds (ports restored
   * from pinned maps of an endpoint that is gone: `reconcile` calls this when it removes its map).
   */
  releaseProxyPorts(endpoint: string): void {
    if (this.endpointGroups.has(endpoint)) throw new EngineError(0, 'query', `endpoint "${endpoint}" is live; its proxy ports follow its policy`);
    for (const id of [...this.proxyPorts.redirectsOf(endpoint).keys()]) this.proxyPorts.release(endpoint, id);
  }

  /** What the endpoint's proxies are told: per redirect, per peer identity (0 = any), the L7 policy. */
  l7Table(endpoint: string): { redirect: RedirectInfo; peer: IdentityId; policy: L7Policy }[] {
    const g = this.groupOf(endpoint);
    return [...g.state.l7.entries()]
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .map(([, row]) => ({ redirect: this.redirectInfo(endpoint, row.redirect), peer: row.peer, policy: row.policy }));
  }

  /**
   * The L7 tables as a proxy is configured (Cilium's NPDS shape): per redirect, the distinct L7
   * policies, each with the set of peer identities it applies to (0 = any peer).
   */
  l7Policies(endpoint: string): { redirect: RedirectInfo; policies: { peers: IdentityId[]; policy: L7Policy }[] }[] {
    const out = new Map<string, { redirect: RedirectInfo; byPolicy: Map<string, { peers: IdentityId[]; policy: L7Policy }> }>();
    for (const row of this.l7Table(endpoint)) {
      const rk = `${row.redirect.direction}/${row.redirect.protocol}/${row.redirect.port}/${row.redirect.parser}`;
      let r = out.get(rk);
      if (!r) out.set(rk, (r = { redirect: row.redirect, byPolicy: new Map() }));
      const pk = l7PolicyKey(row.policy);
      const entry = r.byPolicy.get(pk);
      if (entry) entry.peers.push(row.peer);
      else r.byPolicy.set(pk, { peers: [row.peer], policy: row.policy });
    }
    return [...out.values()].map((r) => ({ redirect: r.redirect, policies: [...r.byPolicy.values()].map((p) => ({ ...p, peers: p.peers.sort((a, b) => a - b) })) }));
  }

  /**
   * The proxy's verdict on a request that reached it through proxy port `proxyPort` of the
   * endpoint from `peer`: the peer's row and the any-peer row are consulted. Undefined when the
   * port is not one of the endpoint's redirects.
   */
  l7Verdict(endpoint: string, proxyPort: number, peer: IdentityId, request: L7Request): { parser: L7Parser; allowed: boolean } | undefined {
    const at = this.redirectAt(endpoint, proxyPort);
    if (!at) return undefined;
    const rows = [at.state.l7.get(`${at.id}|${peer}`), peer === 0 ? undefined : at.state.l7.get(`${at.id}|0`)];
    const readable = requestParser(request) === at.redirect.parser;
    return { parser: at.redirect.parser, allowed: readable && rows.some((r) => r !== undefined && l7PolicyAllows(r.policy, request)) };
  }

  /** The redirect an endpoint's proxy port serves, with the map state holding its table. */
  private redirectAt(endpoint: string, proxyPort: number): { state: MapState; id: string; redirect: Redirect } | undefined {
    const state = this.groupOf(endpoint).state;
    const id = this.proxyPorts.redirectOf(endpoint, proxyPort);
    const redirect = id === undefined ? undefined : state.redirect(id);
    return id !== undefined && redirect ? { state, id, redirect } : undefined;
  }

  /**
   * Why the proxy on `proxyPort` allows a request from `peer`: the rules that let it through,
   * either without L7 rules (they allow every request) or with L7 rules that match it.
   */
  l7AllowedBy(endpoint: string, proxyPort: number, peer: IdentityId, request: L7Request): RuleOrigin[] {
    const at = this.redirectAt(endpoint, proxyPort);
    if (!at || requestParser(request) !== at.redirect.parser) return [];
    const out: RuleOrigin[] = [];
    for (const c of at.state.l7Contributions(at.redirect, peer)) {
      if (c.entry.deny) continue;
      const origin = this.originOfSource(c.source);
      if (!origin) continue;
      if (c.entry.proxyPort === 0) out.push(origin);
      else if (PARSER_OF_CODE[c.entry.proxyPort] === at.redirect.parser) {
        const rules = this.l7OfSource(c.source);
        if (rules && l7Allows(rules, request)) out.push(origin);
      }
    }
    return uniqueOrigins(out);
  }

  private redirectInfo(endpoint: string, r: Redirect): RedirectInfo {
    return { ...r, proxyPort: this.proxyPorts.portOf(endpoint, redirectId(r)) ?? 0 };
  }

  /** A map-state entry as the endpoint's kernel map holds it: redirects get the endpoint's port. */
  private concrete(endpoint: string, key: PolicyKey, e: PolicyEntry, strict = true): PolicyEntry {
    if (e.proxyPort === 0) return e;
    const parser = PARSER_OF_CODE[e.proxyPort] as L7Parser;
    const port = this.proxyPorts.portOf(endpoint, redirectId({ direction: key.direction, protocol: key.protocol, port: key.port, parser }));
    // A contribution whose redirect no kernel entry uses (it lost to another entry) has no port.
    if (port === undefined && !strict) return e;
    if (port === undefined) throw new Error(`internal: endpoint ${endpoint} has no proxy port for ${parser} on ${key.direction} ${key.protocol}/${key.port}`);
    return { deny: false, proxyPort: port, precedence: e.precedence };
  }

  /** The identity of a pod (local or remote). */
  identityOfPod(key: string): IdentityId | undefined {
    return this.pods.get(key)?.identity.id;
  }

  /** The ipcache lookup: pod IPs exactly, then the longest CIDR identity prefix, then world. */
  identityOfIp(ip: IpAddress): IdentityId {
    const podKeyOfIp = this.podsByIp.get(ip.text);
    const pod = podKeyOfIp === undefined ? undefined : this.pods.get(podKeyOfIp);
    if (pod) return pod.identity.id;
    const byLen = this.cidrIdentities[ip.family];
    const bits = ip.family === 'ipv4' ? 32 : 128;
    for (let len = bits; len >= 0; len--) {
      const m = byLen.get(len);
      if (!m) continue;
      const network = len === 0 ? 0n : (ip.value >> BigInt(bits - len)) << BigInt(bits - len);
      const rec = m.get(network);
      if (rec && rec.cidr && cidrContainsIp(rec.cidr, ip)) return rec.id;
    }
    return ip.family === 'ipv4' ? this.worldIpv4.id : this.worldIpv6.id;
  }

  identityLabels(id: IdentityId): LabelSet | undefined {
    return this.identitiesById.get(id)?.labels;
  }

  /** Every identity currently allocated, reserved ones included. */
  identities(): IdentityId[] {
    return [...this.identitiesById.keys()].sort((a, b) => a - b);
  }

  /** The datapath's verdict for traffic between `endpoint` and a peer identity. */
  lookup(endpoint: string, peer: IdentityId, direction: Direction, protocol: number, port: number): LookupResult | undefined {
    const hit = datapathLookup(this.groupOf(endpoint).state.entries, peer, direction, protocol, port);
    return hit && { key: hit.key, entry: this.concrete(endpoint, hit.key, hit.entry) };
  }

  /** Why an entry is in an endpoint's map: the rules contributing its key. */
  contributors(endpoint: string, key: PolicyKey): { origin: RuleOrigin | null; entry: PolicyEntry }[] {
    const g = this.groupOf(endpoint);
    return g.state.contributions(key).map((c) => ({ origin: this.originOfSource(c.source), entry: this.concrete(endpoint, key, c.entry, false) }));
  }

  /** The policies that make `direction` of the endpoint default-deny. */
  enforcedBy(endpoint: string, direction: Direction): RuleOrigin[] {
    const g = this.groupOf(endpoint);
    return [...g.local.enforcing[direction]].map((e) => e.unit.origin);
  }

  /** The resolved per-identity policy of an endpoint: each rule selecting it, with its peers. */
  policyOf(endpoint: string): { direction: Direction; verdict: string; origin: RuleOrigin; peers: IdentityId[]; anyPeer: boolean; l7: boolean }[] {
    const g = this.groupOf(endpoint);
    return [...g.local.units].map((a) => ({
      direction: a.unit.direction,
      verdict: a.unit.verdict,
      origin: a.unit.origin,
      peers: [...a.targets.keys()].sort((x, y) => x - y),
      anyPeer: a.unit.anyPeer,
      l7: a.unit.clauses.some((c) => c.l7 !== undefined),
    }));
  }

  /** Map pressure per endpoint (entries / capacity), fullest first. */
  mapPressure(): { endpoint: string; entries: number; capacity: number; pressure: number }[] {
    return [...this.endpointGroups]
      .map(([endpoint, g]) => ({ endpoint, entries: g.state.entries.size, capacity: this.mapCapacity, pressure: g.state.entries.size / this.mapCapacity }))
      .sort((a, b) => b.pressure - a.pressure || (a.endpoint < b.endpoint ? -1 : 1));
  }

  /** Sizes, for tests and benchmarks. */
  sizes(): { identities: number; localIdentities: number; selectors: number; subjectSelectors: number; mapStates: number; endpoints: number } {
    let mapStates = 0;
    for (const l of this.locals.values()) mapStates += l.groups.size;
    return {
      identities: this.identitiesById.size,
      localIdentities: this.locals.size,
      selectors: this.peerCache.selectorCount,
      subjectSelectors: this.subjectCache.selectorCount,
      mapStates,
      endpoints: this.endpointGroups.size,
    };
  }

  private originOfSource(source: string): RuleOrigin | null {
    return this.unitsBySource.get(unitSource(source))?.unit.origin ?? null;
  }

  private l7OfSource(source: string): L7Rules | undefined {
    const dot = source.indexOf('.');
    if (dot < 0) return undefined;
    return this.unitsBySource.get(source.slice(0, dot))?.clauses[Number(source.slice(dot + 1))]?.l7;
  }

  // ---------------------------------------------------------------- events

  private applyEvent(e: EngineEvent): void {
    if (this.faultHook) this.fault('event');
    switch (e.type) {
      case 'upsertNamespace':
        return this.upsertNamespace(e.name, e.labels);
      case 'deleteNamespace':
        return this.deleteNamespace(e.name);
      case 'upsertPod':
        return this.upsertPod(e.pod, e.local ?? false);
      case 'deletePod':
        return this.deletePod(`${e.namespace}/${e.name}`);
      case 'upsertPolicy':
        return this.upsertPolicy(e.policy);
      case 'deletePolicy':
        return this.deletePolicy(policyRefKey(e.ref));
    }
  }

  private namespaceLabels(ns: string): Readonly<Record<string, string>> {
    return this.namespaces.get(ns) ?? { [NAMESPACE_NAME_LABEL]: ns };
  }

  private upsertNamespace(name: string, labels: Readonly<Record<string, string>>): void {
    const next = namespaceWithDefaults(name, labels).labels;
    const stored = this.namespaces.get(name);
    const prev = this.namespaceLabels(name);
    this.namespaces.set(name, next);
    if (!sameStringMap(prev, next)) {
      // Namespace labels are part of every pod identity in it: re-identify them.
      for (const k of [...(this.podsByNamespace.get(name) ?? [])]) {
        const rec = this.pods.get(k) as PodRecord;
        this.removePod(k);
        this.addPod(rec.pod, rec.local);
      }
    }
    // Logged after the pods: undoing restores the labels first, then the pods' old identities.
    this.undoLog?.push(() => (stored ? this.namespaces.set(name, stored) : this.namespaces.delete(name)));
  }

  private deleteNamespace(name: string): void {
    for (const k of [...(this.podsByNamespace.get(name) ?? [])]) this.removePod(k);
    for (const [k, rec] of [...this.policies]) if (rec.policy.ref.namespace === name) this.deletePolicy(k);
    const stored = this.namespaces.get(name);
    this.namespaces.delete(name);
    if (stored) this.undoLog?.push(() => this.namespaces.set(name, stored));
  }

  private upsertPod(pod: Pod, local: boolean): void {
    const key = podKey(pod);
    if (this.pods.has(key)) this.removePod(key);
    this.addPod(pod, local);
  }

  private deletePod(key: string): void {
    this.removePod(key);
  }

  private addPod(pod: Pod, local: boolean): void {
    const key = podKey(pod);
    const labels = podIdentityLabels(pod, this.namespaceLabels(pod.namespace));
    const identity = this.acquireIdentity(labels, undefined, pod.ports);
    const rec: PodRecord = { pod, local, identity, group: null };
    this.pods.set(key, rec);
    let inNs = this.podsByNamespace.get(pod.namespace);
    if (!inNs) this.podsByNamespace.set(pod.namespace, (inNs = new Set()));
    inNs.add(key);
    this.podsByIp.set(pod.ip.text, key);
    if (local) this.joinGroup(key, rec);
    this.undoLog?.push(() => this.removePod(key));
  }

  private removePod(key: string): void {
    const rec = this.pods.get(key);
    if (!rec) throw new Error(`internal: pod ${key} vanished`);
    if (rec.group) this.leaveGroup(key, rec);
    this.pods.delete(key);
    const inNs = this.podsByNamespace.get(rec.pod.namespace);
    inNs?.delete(key);
    if (inNs?.size === 0) this.podsByNamespace.delete(rec.pod.namespace);
    if (this.podsByIp.get(rec.pod.ip.text) === key) this.podsByIp.delete(rec.pod.ip.text);
    this.changeNamedPorts(rec.identity, rec.pod.ports, -1);
    this.releaseIdentity(rec.identity);
    this.undoLog?.push(() => this.addPod(rec.pod, rec.local));
  }

  // ---------------------------------------------------------------- identities

  private acquireIdentity(labels: LabelSet, cidr: Cidr | undefined, ports: readonly ContainerPort[]): IdentityRecord {
    const key = labelSetKey(labels);
    if (this.faultHook) this.fault('acquireIdentity');
    const existing = this.identitiesByKey.get(key);
    if (existing) {
      existing.refs++;
      this.pendingRelease.delete(existing);
      this.changeNamedPorts(existing, ports, +1);
      return existing;
    }
    const freed = this.freedThisTxn.get(key);
    let rec: IdentityRecord;
    if (freed) {
      // Rolling back a refused transaction: the identity gets its old number back.
      this.freedThisTxn.delete(key);
      this.allocator.revive(freed.id, labels);
      rec = freed;
      rec.refs = 1;
    } else {
      // Rebuilding after an internal error: the allocator's journal gave back the old numbers.
      const adopted = this.adopting ? this.allocator.lookup(labels) : undefined;
      const id = adopted ?? this.allocator.acquire(labels, cidr ? 'local' : 'cluster').id;
      const matchLabels = cidr ? labels.filter((l) => l.source !== SOURCE_CIDR) : labels;
      rec = { id, labels, matchLabels, refs: 1, namedPorts: new Map(), ...(cidr ? { cidr } : {}) };
    }
    const id = rec.id;
    this.changeNamedPorts(rec, ports, +1);
    this.identitiesByKey.set(key, rec);
    this.identitiesById.set(id, rec);
    if (cidr) {
      const byLen = this.cidrIdentities[cidr.family];
      let m = byLen.get(cidr.prefixLength);
      if (!m) byLen.set(cidr.prefixLength, (m = new Map()));
      m.set(cidr.network, rec);
    }
    this.statsCounters.identitiesAllocated++;
    this.peerCache.addIdentity(rec);
    return rec;
  }

  private releaseIdentity(rec: IdentityRecord): void {
    rec.refs--;
    if (rec.refs === 0) this.pendingRelease.add(rec);
  }

  private freeIdentity(rec: IdentityRecord): void {
    if (this.faultHook) this.fault('freeIdentity');
    this.peerCache.removeIdentity(rec.id);
    this.identitiesByKey.delete(labelSetKey(rec.labels));
    this.identitiesById.delete(rec.id);
    if (rec.cidr) {
      const m = this.cidrIdentities[rec.cidr.family].get(rec.cidr.prefixLength);
      m?.delete(rec.cidr.network);
      if (m?.size === 0) this.cidrIdentities[rec.cidr.family].delete(rec.cidr.prefixLength);
    }
    this.allocator.release(rec.id);
    this.freedThisTxn.set(labelSetKey(rec.labels), rec);
    this.statsCounters.identitiesReleased++;
  }

  private acquireCidrIdentity(cidr: Cidr): IdentityRecord {
    const labels = makeLabelSet([{ source: SOURCE_CIDR, key: cidr.text, value: '' }, ...worldLabels(cidr.family)]);
    return this.acquireIdentity(labels, cidr, []);
  }

  /**
   * A pod joining or leaving an identity changes what egress named ports resolve to (see
   * resolveNamedEgress): for that identity, every name it has (the "every pod" condition), and,
   * when the cluster-wide set of ports of a name changes, every target of the rules on that name.
   * Their contributions are taken out before the change and put back after it.
   */
  private changeNamedPorts(rec: IdentityRecord, ports: readonly ContainerPort[], sign: 1 | -1): void {
    const names = new Set<string>(rec.namedPorts.keys());
    const clusterWide = new Set<string>();
    for (const p of ports) {
      if (p.name === undefined) continue;
      names.add(p.name);
      const count = this.clusterNamedPorts.get(p.name)?.get(`${p.protocol}/${p.port}`) ?? 0;
      if ((sign > 0 && count === 0) || (sign < 0 && count === 1)) clusterWide.add(p.name);
    }
    const pairs = new Map<ActiveUnit, Set<IdentityId>>();
    const pair = (a: ActiveUnit, t: IdentityId): void => {
      let s = pairs.get(a);
      if (!s) pairs.set(a, (s = new Set()));
      s.add(t);
    };
    for (const name of names) for (const a of this.namedEgressUnits.get(name) ?? []) if (a.targets.has(rec.id)) pair(a, rec.id);
    for (const name of clusterWide) for (const a of this.namedEgressUnits.get(name) ?? []) for (const t of a.targets.keys()) pair(a, t);
    for (const [a, ts] of pairs) for (const t of ts) this.forEachGroupOf(a, (g) => this.contribute(a, t, g, -1));
    addNamedPorts(rec.namedPorts, ports, sign);
    addNamedPorts(this.clusterNamedPorts, ports, sign);
    const pods = (this.podsPerIdentity.get(rec.id) ?? 0) + sign;
    if (pods > 0 && rec.cidr === undefined) this.podsPerIdentity.set(rec.id, pods);
    else this.podsPerIdentity.delete(rec.id);
    for (const [a, ts] of pairs) for (const t of ts) this.forEachGroupOf(a, (g) => this.contribute(a, t, g, +1));
  }

  /**
   * Egress named ports, never more permissive than Kubernetes (the destination pod's own port) nor
   * Cilium (one cluster-wide map; a name with two ports resolves to nothing): a name resolves, for
   * a peer identity, to (protocol, port) when every pod of the identity has that named port and
   * no pod of the cluster gives the name another port for that protocol.
   */
  private resolveNamedEgress(peer: IdentityId): NamedPortResolver {
    const rec = this.identitiesById.get(peer);
    return (name, protocol) => {
      const out: { protocol: (typeof FLOW_PROTOCOLS)[number]; port: number }[] = [];
      const pods = this.podsPerIdentity.get(peer) ?? 0;
      const cluster = [...(this.clusterNamedPorts.get(name)?.keys() ?? [])];
      for (const [pp, count] of rec?.namedPorts.get(name) ?? []) {
        const [proto, port] = pp.split('/') as [(typeof FLOW_PROTOCOLS)[number], string];
        if (count !== pods || !protocolCovers(protocol, proto)) continue;
        if (cluster.filter((k) => k.startsWith(`${proto}/`)).length === 1) out.push({ protocol: proto, port: Number(port) });
      }
      return out;
    };
  }

  // ---------------------------------------------------------------- groups (map states)

  private joinGroup(key: string, rec: PodRecord): void {
    if (this.faultHook) this.fault('joinGroup');
    this.noteMove(key);
    let local = this.locals.get(rec.identity.id);
    if (!local) local = this.addLocalIdentity(rec.identity);
    const sig = portsSignature(rec.pod.ports);
    let g = local.groups.get(sig);
    if (!g) {
      g = { key: `${rec.identity.id}|${sig}`, local, ports: rec.pod.ports, resolveNamed: resolveNamedIn(rec.pod.ports), state: new MapState(this.statsCounters, (e) => PARSER_OF_CODE[e.proxyPort], (src) => this.l7OfSource(src)), endpoints: new Set() };
      local.groups.set(sig, g);
      this.populateGroup(g);
    }
    g.endpoints.add(key);
    rec.group = g;
    this.endpointGroups.set(key, g);
  }

  private leaveGroup(key: string, rec: PodRecord): void {
    if (this.faultHook) this.fault('leaveGroup');
    const g = rec.group as Group;
    this.noteMove(key);
    g.endpoints.delete(key);
    rec.group = null;
    this.endpointGroups.delete(key);
    if (g.endpoints.size > 0) return;
    // Retired: its `entries` still hold the pre-transaction state, which the diff needs.
    g.local.groups.delete(portsSignature(g.ports));
    this.dirtyGroups.delete(g);
    if (g.local.groups.size === 0) this.removeLocalIdentity(g.local);
  }

  private noteMove(endpoint: string): void {
    if (!this.movedEndpoints.has(endpoint)) this.movedEndpoints.set(endpoint, this.endpointGroups.get(endpoint) ?? null);
  }

  private addLocalIdentity(record: IdentityRecord): LocalIdentity {
    const local: LocalIdentity = { record, units: new Set(), enforcing: { ingress: new Set(), egress: new Set() }, groups: new Map() };
    this.locals.set(record.id, local);
    this.statsCounters.policyResolutions++;
    // Subject selectors that select it report it to their units, which attach themselves.
    this.subjectCache.addIdentity(record);
    return local;
  }

  private removeLocalIdentity(local: LocalIdentity): void {
    this.subjectCache.removeIdentity(local.record.id);
    this.locals.delete(local.record.id);
  }

  /** Computes a new map state from its identity's policy. */
  private populateGroup(g: Group): void {
    this.dirtyGroups.add(g);
    for (const d of DIRECTIONS) if (g.local.enforcing[d].size === 0) g.state.add(wildcardKey(0, d), DEFAULT_ALLOW_SOURCE, ALLOW_ENTRY);
    for (const a of g.local.units) for (const t of this.targetsOf(a)) this.contribute(a, t, g, +1);
  }

  private *targetsOf(a: ActiveUnit): Iterable<IdentityId> {
    if (a.unit.anyPeer) yield 0;
    yield* a.targets.keys();
  }

  /**
   * The map states unit `a` contributes to. Invariant: a contributes to X's map states iff X has
   * adopted it (`X.units`), not merely when its subject selects X: while a unit activates, the
   * CIDR identities it allocates notify it before X has adopted it, and X's adoption then adds
   * every target at once.
   */
  private forEachGroupOf(a: ActiveUnit, fn: (g: Group) => void): void {
    if (!a.subject) return;
    for (const x of a.subject.selected) {
      const local = this.locals.get(x);
      if (local && local.units.has(a)) for (const g of local.groups.values()) fn(g);
    }
  }

  /** Adds (or removes) what unit `a` says about peer `peer` to map state `g`. */
  private contribute(a: ActiveUnit, peer: IdentityId, g: Group, sign: 1 | -1): void {
    if (this.faultHook) this.fault('contribute');
    const direction = a.unit.direction;
    this.dirtyGroups.add(g);
    for (const c of a.clauses) {
      const keys = c.keys ?? portKeys(c.l4, a.unit.namedEgress ? this.resolveNamedEgress(peer) : g.resolveNamed);
      for (const pk of keys) {
        const key: PolicyKey = { identity: peer, direction, protocol: pk.protocol, port: pk.port, portPrefixLen: pk.portPrefixLen };
        if (sign > 0) g.state.add(key, c.source, c.entry);
        else g.state.remove(key, c.source, c.entry);
      }
    }
  }

  // ---------------------------------------------------------------- policies

  private upsertPolicy(policy: Policy): void {
    const key = policyRefKey(policy.ref);
    const old = this.policies.get(key);
    const compiled = compilePolicy(policy);
    const rec: PolicyRecord = { policy, units: new Map(), enforcements: new Map() };
    const keepUnits = new Set(compiled.units.map((u) => u.uid));
    const keepEnf = new Set(compiled.enforcements.map((u) => u.uid));
    if (old) {
      for (const [uid, a] of old.units) if (!keepUnits.has(uid)) this.detachUnit(a);
      for (const [uid, e] of old.enforcements) if (!keepEnf.has(uid)) this.detachEnforcement(e);
    }
    this.policies.set(key, rec);
    for (const u of compiled.units) {
      const kept = old?.units.get(u.uid);
      if (!rec.units.has(u.uid)) rec.units.set(u.uid, kept ?? this.attachUnit(u));
    }
    for (const e of compiled.enforcements) rec.enforcements.set(e.uid, old?.enforcements.get(e.uid) ?? this.attachEnforcement(e));
    this.undoLog?.push(() => (old ? this.upsertPolicy(old.policy) : this.deletePolicy(key)));
  }

  private deletePolicy(key: string): void {
    const rec = this.policies.get(key);
    if (!rec) throw new Error(`internal: policy ${key} vanished`);
    for (const a of rec.units.values()) this.detachUnit(a);
    for (const e of rec.enforcements.values()) this.detachEnforcement(e);
    this.policies.delete(key);
    this.undoLog?.push(() => this.upsertPolicy(rec.policy));
  }

  private attachUnit(unit: RuleUnit): ActiveUnit {
    if (this.faultHook) this.fault('attachUnit');
    const source = `u${this.nextSource++}`;
    const a: ActiveUnit = {
      unit,
      clauses: unit.clauses.map((c, i) => {
        const l7 = unit.verdict === 'allow' ? c.l7 : undefined;
        return {
          l4: c.l4,
          entry: clauseEntry(unit.verdict, l7),
          keys: c.l4.kind === 'named' ? null : portKeys(c.l4, () => [], l7 !== undefined),
          l7,
          source: l7 ? `${source}.${i}` : source,
        };
      }),
      source,
      subject: null,
      active: false,
      peers: [],
      targets: new Map(),
      cidrRefs: [],
      subjectListener: { selectionChanged: (_cs, added, removed) => this.onSubjectChange(a, added, removed) },
      peerListener: { selectionChanged: (_cs, added, removed) => this.onPeerChange(a, added, removed) },
    };
    this.unitsBySource.set(a.source, a);
    a.subject = this.subjectCache.register(unit.subject, a.subjectListener);
    const selected = [...a.subject.selected];
    if (selected.length > 0) this.onSubjectChange(a, selected, []);
    return a;
  }

  private detachUnit(a: ActiveUnit): void {
    const cs = a.subject as CachedSelector;
    const selected = [...cs.selected];
    if (selected.length > 0) this.onSubjectChange(a, [], selected, true);
    this.subjectCache.unregister(cs, a.subjectListener);
    a.subject = null;
    this.unitsBySource.delete(a.source);
  }

  /** Registers the unit's peers once some local identity needs it. */
  private activate(a: ActiveUnit): void {
    if (this.faultHook) this.fault('activate');
    for (const sel of a.unit.peers) {
      if (a.unit.anyPeer && sel.kind === 'labels' && sel.selector.requirements.length === 0) continue;
      if (sel.kind === 'cidr') {
        // The prefixes a policy mentions get identities, so external addresses resolve to them.
        for (const c of [sel.cidr, ...sel.except]) a.cidrRefs.push(this.acquireCidrIdentity(c));
      }
      const cs = this.peerCache.register(sel, a.peerListener);
      a.peers.push(cs);
      for (const id of cs.selected) a.targets.set(id, (a.targets.get(id) ?? 0) + 1);
    }
    if (a.unit.namedEgress) {
      for (const c of a.unit.clauses) {
        if (c.l4.kind !== 'named') continue;
        let s = this.namedEgressUnits.get(c.l4.name);
        if (!s) this.namedEgressUnits.set(c.l4.name, (s = new Set()));
        s.add(a);
      }
    }
  }

  private deactivate(a: ActiveUnit): void {
    for (const cs of a.peers) this.peerCache.unregister(cs, a.peerListener);
    a.peers = [];
    a.targets.clear();
    for (const rec of a.cidrRefs) this.releaseIdentity(rec);
    a.cidrRefs = [];
    if (a.unit.namedEgress) {
      for (const c of a.unit.clauses) {
        if (c.l4.kind !== 'named') continue;
        const s = this.namedEgressUnits.get(c.l4.name);
        s?.delete(a);
        if (s?.size === 0) this.namedEgressUnits.delete(c.l4.name);
      }
    }
  }

  /** Local identities entering or leaving the unit's subject selection. */
  private onSubjectChange(a: ActiveUnit, added: readonly IdentityId[], removed: readonly IdentityId[], detaching = false): void {
    if (added.length > 0 && !a.active) {
      a.active = true;
      this.activate(a);
    }
    for (const x of added) {
      const local = this.locals.get(x);
      if (!local) continue;
      this.statsCounters.policyResolutions++;
      local.units.add(a);
      if (a.clauses.some((c) => c.l7 !== undefined)) this.adoptedThisTxn.add(local);
      for (const g of local.groups.values()) for (const t of this.targetsOf(a)) this.contribute(a, t, g, +1);
    }
    for (const x of removed) {
      const local = this.locals.get(x);
      if (!local || !local.units.has(a)) continue;
      this.statsCounters.policyResolutions++;
      for (const g of local.groups.values()) for (const t of this.targetsOf(a)) this.contribute(a, t, g, -1);
      local.units.delete(a);
    }
    const stillSelected = detaching ? 0 : (a.subject?.selected.size ?? 0);
    if (a.active && stillSelected === 0) {
      a.active = false;
      this.deactivate(a);
    }
  }

  private onPeerChange(a: ActiveUnit, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    if (this.faultHook) this.fault('peerChange');
    for (const id of added) {
      const n = a.targets.get(id) ?? 0;
      a.targets.set(id, n + 1);
      if (n === 0) this.forEachGroupOf(a, (g) => this.contribute(a, id, g, +1));
    }
    for (const id of removed) {
      const n = a.targets.get(id) ?? 0;
      if (n === 0) throw new Error(`internal: unit lost peer ${id} it never had`);
      if (n === 1) {
        this.forEachGroupOf(a, (g) => this.contribute(a, id, g, -1));
        a.targets.delete(id);
      } else {
        a.targets.set(id, n - 1);
      }
    }
  }

  private attachEnforcement(unit: EnforcementUnit): ActiveEnforcement {
    const e: ActiveEnforcement = {
      unit,
      subject: null,
      listener: { selectionChanged: (_cs, added, removed) => this.onEnforcementChange(e, added, removed) },
    };
    e.subject = this.subjectCache.register(unit.subject, e.listener);
    const selected = [...e.subject.selected];
    if (selected.length > 0) this.onEnforcementChange(e, selected, []);
    return e;
  }

  private detachEnforcement(e: ActiveEnforcement): void {
    const cs = e.subject as CachedSelector;
    const selected = [...cs.selected];
    if (selected.length > 0) this.onEnforcementChange(e, [], selected);
    this.subjectCache.unregister(cs, e.listener);
    e.subject = null;
  }

  private onEnforcementChange(e: ActiveEnforcement, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    if (this.faultHook) this.fault('enforcementChange');
    const d = e.unit.direction;
    const allowAll = wildcardKey(0, d);
    for (const x of added) {
      const local = this.locals.get(x);
      if (!local || local.enforcing[d].has(e)) continue;
      this.statsCounters.policyResolutions++;
      local.enforcing[d].add(e);
      if (local.enforcing[d].size === 1) {
        for (const g of local.groups.values()) {
          this.dirtyGroups.add(g);
          g.state.remove(allowAll, DEFAULT_ALLOW_SOURCE, ALLOW_ENTRY);
        }
      }
    }
    for (const x of removed) {
      const local = this.locals.get(x);
      if (!local || !local.enforcing[d].has(e)) continue;
      this.statsCounters.policyResolutions++;
      local.enforcing[d].delete(e);
      if (local.enforcing[d].size === 0) {
        for (const g of local.groups.values()) {
          this.dirtyGroups.add(g);
          g.state.add(allowAll, DEFAULT_ALLOW_SOURCE, ALLOW_ENTRY);
        }
      }
    }
  }

  // ---------------------------------------------------------------- commit

  private commit(): Omit<ChangeSet, 'work'> & { touched: Set<string>; exhausted: ProxyPortsExhaustedError | null } {
    for (const rec of [...this.pendingRelease]) if (rec.refs === 0) this.freeIdentity(rec);
    this.pendingRelease.clear();
    const changesByGroup = new Map<Group, { entries: EntryChange[]; l7: readonly L7Change[] }>();
    for (const g of this.dirtyGroups) {
      if (this.faultHook) this.fault('settle');
      const entries = g.state.settle();
      changesByGroup.set(g, { entries, l7: g.state.l7Changes });
    }
    this.dirtyGroups.clear();

    // Endpoints whose map changed group, and those whose group's redirects changed, get their
    // proxy ports brought in line: new redirects are allocated before any delta is written, and
    // released ports are freed only after, so old entries still translate to their old ports.
    const moved = new Map<string, Group | null>();
    for (const [endpoint, was] of this.movedEndpoints) {
      const now = this.endpointGroups.get(endpoint) ?? null;
      if (was !== now) moved.set(endpoint, was);
    }
    this.movedEndpoints.clear();
    const portEndpoints = new Set<string>(moved.keys());
    for (const g of changesByGroup.keys()) if (g.state.redirectsChanged) for (const ep of g.endpoints) portEndpoints.add(ep);
    const toRelease: { endpoint: string; redirect: string }[] = [];
    let exhausted: ProxyPortsExhaustedError | null = null;
    for (const endpoint of portEndpoints) {
      const g = this.endpointGroups.get(endpoint);
      const want = new Set(g ? g.state.redirects() : []);
      for (const id of this.proxyPorts.redirectsOf(endpoint).keys()) if (!want.has(id)) toRelease.push({ endpoint, redirect: id });
      for (const id of want) {
        try {
          if (this.proxyPorts.portOf(endpoint, id) === undefined) this.statsCounters.proxyPortsAllocated++;
          this.proxyPorts.allocate(endpoint, id);
        } catch (e) {
          if (!(e instanceof ProxyPortsExhaustedError)) throw e;
          exhausted ??= e;
        }
      }
    }
    if (exhausted) return { deltas: [], l7Deltas: [], endpointsAdded: [], endpointsRemoved: [], touched: new Set(), exhausted };

    const perEndpoint = new Map<string, { upserts: MapDelta[]; deletes: MapDelta[]; l7: L7Delta[] }>();
    const out = (endpoint: string): { upserts: MapDelta[]; deletes: MapDelta[]; l7: L7Delta[] } => {
      let o = perEndpoint.get(endpoint);
      if (!o) perEndpoint.set(endpoint, (o = { upserts: [], deletes: [], l7: [] }));
      return o;
    };
    const emit = (endpoint: string, key: PolicyKey, before: PolicyEntry | undefined, after: PolicyEntry | undefined): void => {
      if (this.faultHook) this.fault('emit');
      const b = before && this.concrete(endpoint, key, before);
      const a = after && this.concrete(endpoint, key, after);
      if (a) out(endpoint).upserts.push({ endpoint, op: 'upsert', key, entry: a, ...(b ? { previous: b } : {}) });
      else if (b) out(endpoint).deletes.push({ endpoint, op: 'delete', key, entry: b });
    };
    const emitL7 = (endpoint: string, before: L7Row | undefined, after: L7Row | undefined): void => {
      const row = after ?? before;
      if (!row) return;
      const redirect = this.redirectInfo(endpoint, row.redirect);
      if (after) out(endpoint).l7.push({ endpoint, op: 'upsert', redirect, peer: row.peer, policy: after.policy, ...(before ? { previous: before.policy } : {}) });
      else out(endpoint).l7.push({ endpoint, op: 'delete', redirect, peer: row.peer, policy: row.policy });
    };

    const endpointsAdded: string[] = [];
    const endpointsRemoved: string[] = [];
    for (const [endpoint, was] of moved) {
      const now = this.endpointGroups.get(endpoint) ?? null;
      if (now === null) {
        if (was !== null) endpointsRemoved.push(endpoint);
        continue;
      }
      if (was === null) endpointsAdded.push(endpoint);
      const wasChanges = was ? changesByGroup.get(was) : undefined;
      for (const d of this.diffGroups(endpoint, was, wasChanges?.entries ?? [], now)) {
        if (d.op === 'upsert') out(endpoint).upserts.push(d);
        else out(endpoint).deletes.push(d);
      }
      const beforeRows = new Map<string, L7Row>(was ? was.state.l7 : []);
      for (const c of wasChanges?.l7 ?? []) {
        if (c.before) beforeRows.set(c.rowKey, c.before);
        else beforeRows.delete(c.rowKey);
      }
      for (const [rk, row] of now.state.l7) {
        const b = beforeRows.get(rk);
        if (!b || l7PolicyKey(b.policy) !== l7PolicyKey(row.policy)) emitL7(endpoint, b, row);
      }
      for (const [rk, b] of beforeRows) if (!now.state.l7.has(rk)) emitL7(endpoint, b, undefined);
    }

    for (const [g, changes] of changesByGroup) {
      if (changes.entries.length === 0 && changes.l7.length === 0) continue;
      for (const endpoint of g.endpoints) {
        if (moved.has(endpoint)) continue;
        for (const c of changes.entries) emit(endpoint, c.key, c.before, c.after);
        for (const c of changes.l7) emitL7(endpoint, c.before, c.after);
      }
    }
    if (this.faultHook) this.fault('releasePorts');
    for (const r of toRelease) this.proxyPorts.release(r.endpoint, r.redirect);

    const deltas: MapDelta[] = [];
    const l7Deltas: L7Delta[] = [];
    for (const endpoint of [...perEndpoint.keys()].sort()) {
      const o = perEndpoint.get(endpoint) as { upserts: MapDelta[]; deletes: MapDelta[]; l7: L7Delta[] };
      deltas.push(...o.upserts, ...o.deletes);
      l7Deltas.push(...o.l7);
    }
    return { deltas, l7Deltas, endpointsAdded: endpointsAdded.sort(), endpointsRemoved: endpointsRemoved.sort(), touched: new Set(perEndpoint.keys()), exhausted: null };
  }

  /** Deltas turning the old group's pre-transaction state into the new group's current one. */
  private diffGroups(endpoint: string, was: Group | null, wasChanges: readonly EntryChange[], now: Group): MapDelta[] {
    const before = new Map<string, LookupResult>(was ? was.state.entries : []);
    for (const c of wasChanges) {
      if (c.before) before.set(c.keyString, { key: c.key, entry: c.before });
      else before.delete(c.keyString);
    }
    this.statsCounters.mapEntriesVisited += before.size + now.state.entries.size;
    // For one endpoint a redirect has one port, so symbolic entries differ iff their ports do.
    return diffMaps(endpoint, before, now.state.entries).map((d) => ({
      ...d,
      entry: this.concrete(endpoint, d.key, d.entry),
      ...(d.previous ? { previous: this.concrete(endpoint, d.key, d.previous) } : {}),
    }));
  }
}

function unitSource(source: string): string {
  const dot = source.indexOf('.');
  return dot < 0 ? source : source.slice(0, dot);
}

/** Counts named ports: name → "protocol/port" → how many pods have it. */
function addNamedPorts(namedPorts: Map<string, Map<string, number>>, ports: readonly ContainerPort[], sign: 1 | -1): void {
  for (const p of ports) {
    if (p.name === undefined) continue;
    let byPort = namedPorts.get(p.name);
    if (!byPort) namedPorts.set(p.name, (byPort = new Map()));
    const k = `${p.protocol}/${p.port}`;
    const n = (byPort.get(k) ?? 0) + sign;
    if (n > 0) byPort.set(k, n);
    else byPort.delete(k);
    if (byPort.size === 0) namedPorts.delete(p.name);
  }
}

function sameStringMap(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && b[k] === a[k]);
}
