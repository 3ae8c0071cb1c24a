import { PolicyEntry, portRangeToPrefixes, precedence } from '../model/policy-map.js';
import { ContainerPort, FlowProtocol, L4Match, PORT_PROTOCOLS, PROTOCOL_NUMBER, protocolCovers, RuleProtocol } from '../model/ports.js';
import { LISTENER_PRIORITY, L7Parser } from '../model/l7.js';
import { Direction, L7Rules, Peer, Policy, PolicyRule, policyRefKey, RuleOrigin, Verdict } from '../model/rules.js';
import { compileTiered, failClosedNodeCover, type NodeCover } from './tiers.js';
import { flat } from '../model/intern.js';
import type { Selector } from '../model/selector.js';
import { cidrGroupSelector, cidrSelector, fqdnPeerSelector, IdentitySelector, isWildcardSelector, labelsSelector, remoteNodesSelector } from './selector-cache.js';

/**
 * A rule as the engine uses it. A `PolicyRule` becomes one unit, or two when some of its port
 * clauses are named ports on egress: those resolve against each peer identity's own named ports,
 * so their part can never use the identity-0 (any peer) key and is kept apart.
 */
export interface RuleUnit {
  /**
   * Equal uids mean equal content within one policy (units are only matched against the previous
   * version of their own policy): a re-applied unchanged rule keeps its unit and its work. The
   * units of one compiled policy have distinct uids (each names its rule's index or path).
   */
  readonly uid: string;
  /** The rule's index in its policy (NetworkPolicy-tier units; the order L7 conflicts are looked for in). */
  readonly index?: number;
  readonly origin: RuleOrigin;
  readonly direction: Direction;
  readonly verdict: Verdict;
  readonly subject: IdentitySelector;
  /** De-duplicated by key. */
  readonly peers: readonly IdentitySelector[];
  readonly clauses: readonly { readonly l4: L4Match; readonly l7?: L7Rules }[];
  /** Every clause is a named port on egress. */
  readonly namedEgress: boolean;
  /** Named ports resolve against the ports every pod of the peer identity shares (ClusterNetworkPolicy egress; network-splits.ts). */
  readonly peerNamedPorts?: boolean;
  /** A wildcard peer that maps to the identity-0 key (never for `namedEgress` units). */
  readonly anyPeer: boolean;
  /** A ClusterNetworkPolicy rule's entry (its tier precedence); otherwise `clauseEntry` decides. */
  readonly entry?: PolicyEntry;
  /** A Baseline-tier rule: contributes only where no NetworkPolicy-tier policy isolates the direction. */
  readonly baseline?: boolean;
}

export interface EnforcementUnit {
  /** Unique within its policy. */
  readonly uid: string;
  readonly origin: RuleOrigin;
  readonly direction: Direction;
  readonly subject: IdentitySelector;
}

function peerSelector(p: Peer): IdentitySelector {
  if (p.kind === 'cidrGroup') return cidrGroupSelector(p.selector, p.except, p.mode);
  return p.kind === 'selector' ? labelsSelector(p.selector) : p.kind === 'nodes' ? remoteNodesSelector(p.selector) : cidrSelector(p.cidr, p.except);
}

const byKey = (a: IdentitySelector, b: IdentitySelector): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * Peer selectors by peer list. A trace shares equal peer lists between rules (churn/trace.ts), so
 * 3,000 rules with 300 distinct peer groups build 300 selector lists, and their units share them.
 */
const PEERS_OF_LIST = new WeakMap<readonly Peer[], readonly IdentitySelector[]>();

/** A rule's peer selectors, sorted by key, one per key (the last one given), in an exact-size array. */
function peerSelectors(rule: PolicyRule): readonly IdentitySelector[] {
  if (rule.toFQDNs !== undefined && rule.toFQDNs.length > 0) return buildPeerSelectors(rule);
  let s = PEERS_OF_LIST.get(rule.peers);
  if (s === undefined) PEERS_OF_LIST.set(rule.peers, (s = buildPeerSelectors(rule)));
  return s;
}

function buildPeerSelectors(rule: PolicyRule): IdentitySelector[] {
  // toFQDNs rules have no other peers (the reader refuses mixing them).
  const all = rule.toFQDNs && rule.toFQDNs.length > 0 ? [...rule.peers.map(peerSelector), ...rule.toFQDNs.map(fqdnPeerSelector)] : rule.peers.map(peerSelector);
  all.sort(byKey);
  let duplicates = false;
  for (let i = 1; i < all.length; i++) if ((all[i] as IdentitySelector).key === (all[i - 1] as IdentitySelector).key) duplicates = true;
  // The sort is stable: the last of equal keys is the one given last.
  return duplicates ? all.filter((s, i) => i + 1 === all.length || (all[i + 1] as IdentitySelector).key !== s.key).slice() : all;
}

const isNamedEgress = (rule: PolicyRule, c: { l4: L4Match }): boolean => rule.direction === 'egress' && c.l4.kind === 'named';

/** A rule with no port clause or no peer compiles to no unit. */
const hasUnits = (rule: PolicyRule): boolean => rule.ports.length > 0 && (rule.peers.length > 0 || (rule.toFQDNs?.length ?? 0) > 0);

/** `out` with the units of a rule that has some (`hasUnits`) appended (`append`); `subject` is `labelsSelector(rule.subject)`. */
function compileRule(rule: PolicyRule, index: number, subject: IdentitySelector, out: RuleUnit[] | null): RuleUnit[] | null {
  let named = 0;
  // isNamedEgress inline: the cold start compiles every adopted policy, mostly unoptimised.
  if (rule.direction === 'egress') for (let i = 0; i < rule.ports.length; i++) if ((rule.ports[i] as PolicyRule['ports'][number]).l4.kind === 'named') named++;
  // The rule's own clause array when it is not split (the common case): nothing copied per unit.
  if (named === 0 || named === rule.ports.length) return append(out, new NetworkPolicyUnit(index, rule, subject, rule.ports, named > 0));
  out = append(out, new NetworkPolicyUnit(index, rule, subject, rule.ports.filter((c) => isNamedEgress(rule, c)).slice(), true));
  return append(out, new NetworkPolicyUnit(index, rule, subject, rule.ports.filter((c) => !isNamedEgress(rule, c)).slice(), false));
}

/**
 * `out` with `x` appended, a one-element literal when there is no `out` yet: a push onto `[]`
 * reserves 17 slots, and most policies compile to one unit and one enforcement, in arrays the
 * resolver drops once it has attached them.
 */
function append<T>(out: T[] | null, x: T): T[] {
  if (out === null) return [x];
  out.push(x);
  return out;
}

/**
 * A NetworkPolicy-tier rule unit. Its uid is only needed when its policy is updated (to match it
 * against the previous version's units), and its peers only once some local identity adopts it
 * (most units never are), so both are built on first use and kept from then on.
 */
class NetworkPolicyUnit implements RuleUnit {
  // Declared, set in the constructor (here and in Enforcement): field initializers run as one more
  // call per instance, and a cold start compiles every adopted policy mostly unoptimised.
  declare readonly index: number;
  declare private readonly rule: PolicyRule;
  // The rule's, as fields: read for every adoption and contribution, where a getter is one more call.
  declare readonly origin: RuleOrigin;
  declare readonly direction: Direction;
  declare readonly verdict: Verdict;
  declare readonly subject: IdentitySelector;
  declare readonly clauses: readonly { readonly l4: L4Match; readonly l7?: L7Rules }[];
  declare readonly namedEgress: boolean;
  declare private cachedUid: string | undefined;
  declare private cachedPeers: readonly IdentitySelector[] | undefined;
  declare private cachedAnyPeer: boolean | undefined;

  constructor(index: number, rule: PolicyRule, subject: IdentitySelector, clauses: readonly { readonly l4: L4Match; readonly l7?: L7Rules }[], namedEgress: boolean) {
    this.index = index;
    this.rule = rule;
    this.origin = rule.origin;
    this.direction = rule.direction;
    this.verdict = rule.verdict;
    this.subject = subject;
    this.clauses = clauses;
    this.namedEgress = namedEgress;
    this.cachedUid = undefined;
    this.cachedPeers = undefined;
    this.cachedAnyPeer = undefined;
  }

  get peers(): readonly IdentitySelector[] {
    this.cachedPeers ??= peerSelectors(this.rule);
    return this.cachedPeers;
  }

  get anyPeer(): boolean {
    // An allow on an egress named port resolves per peer, so a wildcard peer is every identity; a
    // deny's resolution does not depend on the peer (NamedPorts.resolveNamedAnyPod, named-ports.ts).
    this.cachedAnyPeer ??= (!this.namedEgress || this.verdict === 'deny') && this.peers.some(isWildcardSelector);
    return this.cachedAnyPeer;
  }

  get uid(): string {
    this.cachedUid ??= flat(JSON.stringify([this.index, this.origin.path, this.direction, this.verdict, this.subject.key, this.peers.map((p) => p.key), this.namedEgress ? 'n' : 'p', this.clauses]));
    return this.cachedUid;
  }
}

/**
 * What makes the contributions of two units equal: direction, verdict, named-port mode, subject,
 * peers and clauses (L7 rules included). Units with equal keys make one contribution together
 * (policy-resolver.ts `UnitShare`). Null for a ClusterNetworkPolicy unit: its tier, priority and
 * policy take part in the map state's same-priority groups, so it always contributes on its own.
 */
export function shareKey(unit: RuleUnit): string | null {
  if (unit.origin.tier !== undefined || unit.entry !== undefined || unit.baseline === true || unit.peerNamedPorts === true) return null;
  // The same string object for units of the same subject, peer list and clause list (a trace's
  // policies share them): the shares' Map hashes it once, where a key built per unit was
  // concatenated, flattened and hashed again (~140 characters for each of 3,000 cilium-2019 rules).
  let byClauses = SHARE_KEYS.get(unit.peers);
  if (byClauses === undefined) SHARE_KEYS.set(unit.peers, (byClauses = new WeakMap()));
  let bySubject = byClauses.get(unit.clauses);
  if (bySubject === undefined) byClauses.set(unit.clauses, (bySubject = new WeakMap()));
  let keys = bySubject.get(unit.subject);
  if (keys === undefined) bySubject.set(unit.subject, (keys = new Array<string | undefined>(8).fill(undefined)));
  const mode = (unit.direction === 'ingress' ? 0 : 4) + (unit.verdict === 'allow' ? 0 : 2) + (unit.namedEgress ? 1 : 0);
  return (keys[mode] ??= flat(buildShareKey(unit)));
}

/** Built by hand (a JSON.stringify per adopted unit was a tenth of a 3,000-rule cold start); NUL separates the parts: no label, selector or port name contains it. */
function buildShareKey(unit: RuleUnit): string {
  const peers = unit.peers;
  return `${unit.direction}\0${unit.verdict}\0${unit.namedEgress ? 'n' : 'p'}\0${peers.length}\0${unit.subject.key}${partOf(PEER_PARTS, peers, peersPart)}${partOf(CLAUSE_PARTS, unit.clauses, clausesPart)}`;
}

/** Share keys by peer list, clause list and subject, then by direction, verdict and named-port mode (`shareKey`). */
const SHARE_KEYS = new WeakMap<readonly IdentitySelector[], WeakMap<Clauses, WeakMap<IdentitySelector, (string | undefined)[]>>>();

type Clauses = RuleUnit['clauses'];
/** The peer and clause parts of share keys, by list: units of shared lists (peerSelectors; a trace's port lists) build each once. */
const PEER_PARTS = new WeakMap<readonly IdentitySelector[], string>();
const CLAUSE_PARTS = new WeakMap<Clauses, string>();

function partOf<T extends object>(cache: WeakMap<T, string>, list: T, build: (list: T) => string): string {
  let part = cache.get(list);
  if (part === undefined) cache.set(list, (part = flat(build(list))));
  return part;
}

function peersPart(peers: readonly IdentitySelector[]): string {
  let part = '';
  for (const p of peers) part += `\0${p.key}`;
  return part;
}

function clausesPart(clauses: Clauses): string {
  let part = '';
  for (const c of clauses) part += `\0${clauseKey(c.l4)}${c.l7 ? JSON.stringify(c.l7) : ''}`;
  return part;
}

function clauseKey(l4: L4Match): string {
  if (l4.kind === 'all') return '*';
  return l4.kind === 'range' ? `${l4.protocol}:${l4.from}-${l4.to}` : `${l4.protocol}:${l4.name}`;
}

export function compilePolicy(policy: Policy, nodeCover: NodeCover = failClosedNodeCover): { units: RuleUnit[]; enforcements: EnforcementUnit[] } {
  if (policy.tiered) return { units: compileTiered(policy, policy.tiered, nodeCover), enforcements: [] };
  let units: RuleUnit[] | null = null;
  // No selector looked up again for the same Selector object (a rule's and its enforcement's subject usually are one), as in `policySubjects`.
  let subjectOf: Selector | undefined;
  let subject: IdentitySelector | undefined;
  for (let i = 0; i < policy.rules.length; i++) {
    const rule = policy.rules[i] as PolicyRule;
    // hasUnits inline: a rule with no port clause or no peer compiles to no unit.
    if (rule.ports.length === 0 || (rule.peers.length === 0 && (rule.toFQDNs?.length ?? 0) === 0)) continue;
    if (rule.subject !== subjectOf) subject = labelsSelector((subjectOf = rule.subject));
    units = compileRule(rule, i, subject as IdentitySelector, units);
  }
  // A policy has one or two enforcements: a scan finds the duplicates without building their uids.
  // Indexed loops: the cold start runs this in the interpreter, where a for-of allocates a result per step.
  let enforcements: Enforcement[] | null = null;
  const given = policy.enforcements;
  for (let i = 0; i < given.length; i++) {
    const e = given[i] as Policy['enforcements'][number];
    let seen = false;
    for (let j = 0; j < (enforcements?.length ?? 0); j++) {
      const x = (enforcements as Enforcement[])[j] as Enforcement;
      if (x.direction === e.direction && x.subject.key === e.subject.key) seen = true;
    }
    if (seen) continue;
    if (e.subject !== subjectOf) subject = labelsSelector((subjectOf = e.subject));
    enforcements = append(enforcements, new Enforcement(e.origin, e.direction, subject as IdentitySelector));
  }
  return { units: units ?? [], enforcements: enforcements ?? [] };
}

/**
 * The distinct subjects (by key) of what `compilePolicy` makes of a NetworkPolicy-tier policy, in
 * the order its units and then its enforcements first name them, without building the units: the
 * resolver registers a policy under its subjects and compiles it once one selects a local identity.
 */
export function policySubjects(policy: Policy): readonly IdentitySelector[] {
  let first: IdentitySelector | undefined;
  let more = false;
  // No selector looked up again for the same Selector object (a rule's and its enforcement's subject usually are one).
  let given: Selector | undefined;
  for (let i = 0; i < policy.rules.length; i++) {
    const rule = policy.rules[i] as PolicyRule;
    if (rule.subject === given || !hasUnits(rule)) continue;
    const s = labelsSelector((given = rule.subject));
    if (first === undefined) first = s;
    else if (s.key !== first.key) more = true;
  }
  for (let i = 0; i < policy.enforcements.length; i++) {
    const subject = (policy.enforcements[i] as Policy['enforcements'][number]).subject;
    if (subject === given) continue;
    const s = labelsSelector((given = subject));
    if (first === undefined) first = s;
    else if (s.key !== first.key) more = true;
  }
  if (first === undefined) return [];
  if (!more) return oneSubject(first);
  const out: IdentitySelector[] = [];
  for (const rule of policy.rules) if (hasUnits(rule)) addSubject(out, labelsSelector(rule.subject));
  for (const e of policy.enforcements) addSubject(out, labelsSelector(e.subject));
  return out;
}

/** One-subject lists, one per selector: most policies have a single subject, and a list per upsert was garbage. */
const ONE_SUBJECT = new WeakMap<IdentitySelector, readonly IdentitySelector[]>();

function oneSubject(s: IdentitySelector): readonly IdentitySelector[] {
  let list = ONE_SUBJECT.get(s);
  if (list === undefined) ONE_SUBJECT.set(s, (list = Object.freeze([s])));
  return list;
}

function addSubject(out: IdentitySelector[], s: IdentitySelector): void {
  if (!out.some((x) => x.key === s.key)) out.push(s);
}

/** An enforcement unit whose uid (direction, subject, origin) is built on first use, as a NetworkPolicy unit's. */
class Enforcement implements EnforcementUnit {
  declare readonly origin: RuleOrigin;
  declare readonly direction: Direction;
  declare readonly subject: IdentitySelector;
  declare private cachedUid: string | undefined;

  constructor(origin: RuleOrigin, direction: Direction, subject: IdentitySelector) {
    this.origin = origin;
    this.direction = direction;
    this.subject = subject;
    this.cachedUid = undefined;
  }

  get uid(): string {
    // Its origin too: an update keeps an item of equal uid, origin and all (explain names it).
    this.cachedUid ??= flat(`${this.direction}#${this.subject.key}#${this.origin.path}`);
    return this.cachedUid;
  }
}

/**
 * Redirect entries in map states name their parser, not a port: `proxyPort` holds the parser's
 * code until the engine translates it into the endpoint's own proxy port for that redirect
 * (direction, protocol, port, parser). Map states stay shareable between endpoints that way.
 */
const REDIRECT_CODE: Readonly<Record<L7Parser, number>> = { http: 1, kafka: 2, dns: 3 };
export const PARSER_OF_CODE: readonly (L7Parser | undefined)[] = [undefined, 'http', 'kafka', 'dns'];

const REDIRECT_ENTRIES: Readonly<Record<L7Parser, PolicyEntry>> = {
  http: { deny: false, proxyPort: REDIRECT_CODE.http, precedence: precedence('redirect', LISTENER_PRIORITY.http) },
  kafka: { deny: false, proxyPort: REDIRECT_CODE.kafka, precedence: precedence('redirect', LISTENER_PRIORITY.kafka) },
  dns: { deny: false, proxyPort: REDIRECT_CODE.dns, precedence: precedence('redirect', LISTENER_PRIORITY.dns) },
};

/** The parser a kernel redirect entry stands for, from its precedence (255 - listener priority). */
export function parserOfRedirectPrecedence(p: number): L7Parser | undefined {
  return (Object.keys(REDIRECT_ENTRIES) as L7Parser[]).find((parser) => REDIRECT_ENTRIES[parser].precedence === p);
}

const DENY_ENTRY: PolicyEntry = { deny: true, proxyPort: 0, precedence: precedence('deny') };
const ALLOW_ENTRY: PolicyEntry = { deny: false, proxyPort: 0, precedence: precedence('allow') };

export interface PortKey {
  readonly protocol: number;
  readonly port: number;
  readonly portPrefixLen: number;
}

const ALL_PORTS: PortKey = { protocol: 0, port: 0, portPrefixLen: 0 };
const ALL_PORTS_KEYS: readonly PortKey[] = Object.freeze([ALL_PORTS]);

/** Is [from, to] one port prefix (what `portRangeToPrefixes` would return as a single entry)? */
function isPrefix(from: number, to: number): boolean {
  const size = to - from + 1;
  return Number.isInteger(from) && Number.isInteger(to) && from >= 0 && to <= 0xffff && size > 0 && (size & (size - 1)) === 0 && (from & (size - 1)) === 0;
}

function rangeKey(protocol: number, from: number, to: number): PortKey {
  if (from === 0) return { protocol, port: 0, portPrefixLen: 0 };
  return { protocol, port: from, portPrefixLen: 16 - Math.log2(to - from + 1) };
}

/** A named port resolved to (protocol, port) pairs. */
export type NamedPortResolver = (name: string, protocol: RuleProtocol) => readonly { protocol: FlowProtocol; port: number }[];

export function resolveNamedIn(ports: readonly ContainerPort[]): NamedPortResolver {
  return (name, protocol) => ports.filter((cp) => cp.name === name && protocolCovers(protocol, cp.protocol));
}

/**
 * The map keys (below identity and direction) an L4 match turns into: a range becomes its LPM
 * prefixes, with or without L7 rules (a redirected range's proxy judges each request by its port).
 */
export function portKeys(l4: L4Match, resolveNamed: NamedPortResolver): readonly PortKey[] {
  switch (l4.kind) {
    case 'all':
      return ALL_PORTS_KEYS;
    case 'range': {
      // One protocol and one prefix (the common case): an exact one-element array, kept per clause.
      if (l4.protocol !== 'ANY' && (l4.from === 0 || isPrefix(l4.from, l4.to))) return [rangeKey(PROTOCOL_NUMBER[l4.protocol], l4.from, l4.to)];
      const protocols: readonly FlowProtocol[] = l4.protocol === 'ANY' ? PORT_PROTOCOLS : [l4.protocol];
      const out: PortKey[] = [];
      for (const p of protocols) {
        const protocol = PROTOCOL_NUMBER[p];
        if (l4.from === 0) out.push({ protocol, port: 0, portPrefixLen: 0 });
        else for (const m of portRangeToPrefixes(l4.from, l4.to)) out.push({ protocol, port: m.port, portPrefixLen: m.prefixLen });
      }
      return out;
    }
    case 'named':
      return resolveNamed(l4.name, l4.protocol).map((r) => ({ protocol: PROTOCOL_NUMBER[r.protocol], port: r.port, portPrefixLen: 16 }));
  }
}

export function clauseEntry(verdict: Verdict, l7: L7Rules | undefined): PolicyEntry {
  if (verdict === 'deny') return DENY_ENTRY;
  if (l7) return REDIRECT_ENTRIES[l7.parser];
  return ALLOW_ENTRY;
}

/**
 * Two allow rules selecting one endpoint put different L7 parsers on one port of one direction.
 * Cilium keeps one L4Filter per (port, endPort, protocol) and direction and refuses to merge two
 * parsers into it ("cannot merge conflicting L7 parsers", pkg/policy/l4.go mergePortProto): the
 * endpoint's new policy cannot be computed and the endpoint keeps its previous one
 * (pkg/endpoint/policy.go regeneratePolicy). distill refuses the whole transaction instead.
 */
export class L7ParserConflictError extends Error {
  override readonly name = 'L7ParserConflictError';
  constructor(
    readonly endpoint: string,
    readonly direction: Direction,
    /** The L4 filter both rules name, e.g. `80/TCP`, `80-90/TCP`, `http/TCP`. */
    readonly port: string,
    readonly rules: readonly [{ readonly origin: RuleOrigin; readonly parser: L7Parser }, { readonly origin: RuleOrigin; readonly parser: L7Parser }],
  ) {
    const [a, b] = rules;
    super(
      `endpoint ${endpoint}: cannot merge conflicting L7 parsers on ${direction} ${port}: ${policyRefKey(a.origin.policy)} ${a.origin.path} (${a.parser}) and ${policyRefKey(b.origin.policy)} ${b.origin.path} (${b.parser}); the transaction is refused`,
    );
  }
}

/** Cilium's L4Filter key of a clause: ANY counts as each of TCP, UDP and SCTP. */
function filterKeys(l4: L4Match): string[] {
  if (l4.kind === 'all') return [];
  const protocols: readonly FlowProtocol[] = l4.protocol === 'ANY' ? PORT_PROTOCOLS : [l4.protocol];
  const port = l4.kind === 'named' ? l4.name : l4.from === l4.to ? String(l4.from) : `${l4.from}-${l4.to}`;
  return protocols.map((p) => `${port}/${p}`);
}

/** The order conflicts are looked for in: by policy, then rule index, path, direction, verdict, selectors and clauses. */
function conflictOrder(u: RuleUnit): string {
  const peers = u.peers.map((p) => p.key).join(';');
  return `${policyRefKey(u.origin.policy)}#${u.index ?? 0}:${u.origin.path}#${u.direction}/${u.verdict}#${u.subject.key}#${peers}#${u.namedEgress ? 'n' : 'p'}${JSON.stringify(u.clauses)}`;
}

/** The first conflict between the allow rules of one endpoint (its units), or null. */
export function l7ParserConflict(endpoint: string, units: Iterable<RuleUnit>): L7ParserConflictError | null {
  const seen = new Map<string, { origin: RuleOrigin; parser: L7Parser }>();
  const withL7 = [...units]
    .filter((u) => u.verdict === 'allow' && u.clauses.some((c) => c.l7 !== undefined))
    .map((u) => ({ u, order: conflictOrder(u) }))
    .sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0))
    .map((x) => x.u);
  for (const u of withL7) {
    for (const c of u.clauses) {
      if (!c.l7) continue;
      for (const k of filterKeys(c.l4)) {
        const key = `${u.direction} ${k}`;
        const first = seen.get(key);
        if (!first) seen.set(key, { origin: u.origin, parser: c.l7.parser });
        else if (first.parser !== c.l7.parser) return new L7ParserConflictError(endpoint, u.direction, k, [first, { origin: u.origin, parser: c.l7.parser }]);
      }
    }
  }
  return null;
}
