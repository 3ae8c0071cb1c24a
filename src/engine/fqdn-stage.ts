import { Cidr, IpAddress } from '../model/cidr.js';
import { compileFqdnSelector, FqdnMatcher } from '../model/fqdn.js';
import type { DnsServer, DnsTransport, FqdnEvent } from '../model/fqdn-events.js';
import { ANY_IDENTITY, IdentityId, worldLabels, worldName } from '../model/identity.js';
import { l7Allows, l7PolicyAllows, type DnsQuery } from '../model/l7.js';
import { LabelSet, labelSetKey, makeLabelSet, SOURCE_CIDR, type Label } from '../model/labels.js';
import { l4PrefixBits, LookupResult, maskPort, pickWinner, PolicyKey, policyKeyString } from '../model/policy-map.js';
import { PROTOCOL_NUMBER } from '../model/ports.js';
import { L7Rules, Policy } from '../model/rules.js';
import { Selector, selectorMatches } from '../model/selector.js';
import type { EngineContext } from './context.js';
import { DnsCache } from './dns-cache.js';
import type { IdentityRecord, IdentityTable } from './identities.js';
import { IpKey, ipKey, ipKeyOfText, ipOfKey } from './ip-key.js';
import { keyRedirect } from './l7-tables.js';
import type { MapState } from './map-state.js';
import type { PodTable } from './pod-table.js';
import { PARSER_OF_CODE } from './rule-units.js';
import { SelectorCache, SOURCE_FQDN } from './selector-cache.js';
import type { SharedMaps } from './shared-maps.js';

const MAX_MEMOISED_NAMES = 100_000;
const MAX_MEMOISED_PROBES = 4096;

/** A key one identity's LPM lookup probes, with its string (how settled entries are keyed). */
interface ProbeKey {
  readonly key: PolicyKey;
  readonly ks: string;
}

/** The keys one identity's LPM lookup probes (`longestMatch`), longest prefix first. */
interface ProbeKeys {
  readonly specific: readonly ProbeKey[];
  readonly wildcard: readonly ProbeKey[] | undefined;
}

interface DnsRule {
  readonly subject: Selector;
  readonly l7: L7Rules;
}

/** The selectors matching one name (computed once per name while the selectors in force stay). */
interface NameSelectors {
  readonly keys: readonly string[];
  /** `keys` sorted and joined: the part of a template key the name gives. */
  readonly joined: string;
  /** Its templates without a CIDR, per family: a learnt IP's usual lookup, no string built. */
  v4?: Template;
  v6?: Template;
}

/** What a learnt IP's identity is made of: labels, the CIDR it stands in for. Shared by all IPs alike. */
interface Template {
  readonly labels: LabelSet;
  readonly key: string;
  readonly cidr: Cidr | undefined;
  /** The labels of a selector's own pre-allocated identity (one selector, IPv4, no CIDR): not a combination. */
  readonly single: boolean;
}

/**
 * The FQDN stage (docs/fqdn-engine.md): the DNS cache, the DNS rules deciding what the proxy
 * learns, and the identity of every learnt IP. An IP's identity has the labels `fqdn:<selector>`
 * of every live FQDN selector matching one of its live names, the `cidr:` label of the CIDR
 * identity the ipcache's LPM would otherwise give it (so CIDR peers and denies select it exactly
 * as they select that prefix), and world. IPs with equal labels share one node-local identity, so
 * a new IP of a known name only adds an ipcache entry.
 *
 * Contract: consumes DNS events, policy events (DNS rules) and pod deletions; at `settle` (before
 * commit) re-identifies the IPs whose names changed, the learnt IPs a pod took or gave back, the
 * learnt IPs inside a CIDR identity that appeared or went, and every learnt IP when the FQDN
 * selectors in force changed. A transaction that touches none of these costs O(1) here.
 * Combination identities are bounded by `identityLimit`: past it an IP stays unselected (fail
 * closed) and `fqdnIdentitiesRefused` counts it. Every mutation records its undo.
 */
export class FqdnStage {
  cache: DnsCache;
  private readonly dirty = new Set<IpKey>();
  /** Set by a new stage: everything is re-identified at the first settle. */
  private everything = true;
  /** `identities.fqdnSelectorEpoch` when the selectors in force were last looked at. */
  private seenEpoch = -1;
  private inForce = '';
  /** Policy key → its egress-allow DNS rules (what `dnsProxyLearns` reads). */
  private readonly dnsRules = new Map<string, readonly DnsRule[]>();
  /** The FQDN selectors in force, by name (matchName) and as patterns; rebuilt when they change. */
  private exact = new Map<string, string[]>();
  private patterns: { key: string; match: FqdnMatcher }[] = [];
  private readonly selectorsOfName = new Map<string, NameSelectors>();
  private readonly templates = new Map<string, Template>();
  private readonly keyOfLabels = new WeakMap<LabelSet, string>();
  /** Combination identities held by learnt IPs → how many IPs hold each (bounded by `identityLimit`). */
  private readonly combinations = new Map<IdentityRecord, number>();
  /** IPs left unselected by the limit: retried when a combination identity goes. */
  private readonly refused = new Set<IpKey>();
  /** (server identity, port, transport) → the keys its query's lookup probes. */
  private readonly probes = new Map<number, ProbeKeys>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly identities: IdentityTable,
    private readonly pods: PodTable,
    private readonly peerCache: SelectorCache,
    private readonly maps: SharedMaps,
    cache: DnsCache,
    private readonly identityLimit: number,
  ) {
    this.cache = cache;
  }

  /** `key` is `policyRefKey(p.ref)`. */
  policyUpserted(p: Policy, key: string): void {
    // No call while no policy has DNS rules (a cold start of plain policies).
    if (this.dnsRules.size > 0) this.policyDeleted(key);
    // Indexed loops, and no array for a policy without DNS rules: the cold start runs this in the interpreter once per policy.
    let rules: DnsRule[] | null = null;
    for (let i = 0; i < p.rules.length; i++) {
      const r = p.rules[i] as Policy['rules'][number];
      if (r.direction !== 'egress' || r.verdict !== 'allow') continue;
      for (let j = 0; j < r.ports.length; j++) {
        const l7 = (r.ports[j] as (typeof r.ports)[number]).l7;
        if (l7?.parser === 'dns') (rules ??= []).push({ subject: r.subject, l7 });
      }
    }
    if (rules === null) return;
    this.dnsRules.set(key, rules);
    this.ctx.onUndo(() => this.dnsRules.delete(key));
  }

  policyDeleted(key: string): void {
    const old = this.dnsRules.get(key);
    if (!old) return;
    this.dnsRules.delete(key);
    this.undoDelete(key, old);
  }

  /** Apart: a closure in `policyDeleted` would allocate its context on every call (each policy upsert asks). */
  private undoDelete(key: string, old: readonly DnsRule[]): void {
    this.ctx.onUndo(() => this.dnsRules.set(key, old));
  }

  /** The namespace's answers go (its policies are deleted one by one, `policyDeleted`). */
  namespaceDeleted(ns: string): void {
    this.cache.forgetNamespace(ns, this.changed, this.undo);
  }

  podDeleted(endpoint: string): void {
    this.cache.forgetEndpoint(endpoint, this.changed, this.undo);
  }

  /** Whether the DNS proxy learns this answer (`dnsProxyLearns`): judged as the query's flow when the server is known. */
  learns(endpoint: string, name: string, server?: DnsServer): boolean {
    return server ? this.proxyAllows(endpoint, name, server) : this.someDnsRuleAllows(endpoint, name);
  }

  /**
   * Without a server: some egress DNS rule of the endpoint allows the name. Only a local endpoint's
   * queries reach this node's proxy (as with a server: another node's endpoint has no map here).
   */
  private someDnsRuleAllows(endpoint: string, name: string): boolean {
    const labels = this.pods.labelsOf(endpoint);
    if (!labels || !this.maps.byEndpoint.has(endpoint)) return false;
    const request: { dns: DnsQuery } = { dns: { name } };
    for (const rules of this.dnsRules.values()) {
      for (const r of rules) if (selectorMatches(r.subject, labels) && l7Allows(r.l7, request)) return true;
    }
    return false;
  }

  /**
   * The query as the datapath sees it: only a query the endpoint's egress policy map redirects to
   * the DNS proxy reaches it, and the proxy judges it with that redirect's L7 rules (a plain allow
   * of the same peer and port merges in as allow-all, as in Cilium). To the server's identity on
   * its port and transport (UDP unless the server says TCP), looked up in the map as it stands at this point of the transaction (its pending
   * entries: `entries` is settled only at commit), like the datapath would after the events so far.
   * An endpoint of another node has no map here: its queries never reach this node's proxy.
   */
  private proxyAllows(endpoint: string, name: string, server: DnsServer): boolean {
    return this.proxyRedirectAllows(endpoint, name, server) && this.serverAdmits(endpoint, server);
  }

  /**
   * The proxy forwards an allowed query with the pod's source address and identity (Cilium's
   * transparent upstream socket), so a local server pod's ingress decides whether it is answered:
   * from the endpoint's identity on the server's port and transport. A server of another node has no map
   * here: its ingress is not judged (the answer is the evidence it was admitted).
   */
  private serverAdmits(endpoint: string, server: DnsServer): boolean {
    const rec = this.pods.byIp(server.ip.text);
    const client = this.pods.get(endpoint);
    // A node holding the address wins it (ipcacheHostAt): then no pod's ingress applies.
    if (!rec?.map || !client || this.ctx.ipcacheHostAt(server.ip) !== rec.identity.id) return true;
    const target = rec.map;
    const proto = PROTOCOL_NUMBER[server.protocol ?? 'UDP'];
    const keys = { specific: lookupKeys(client.identity.id, proto, server.port, 'ingress'), wildcard: lookupKeys(ANY_IDENTITY, proto, server.port, 'ingress') };
    const hit = probe(target.state, this.ctx.dirtyMaps.has(target), keys);
    return hit !== undefined && !hit.entry.deny;
  }

  /** The endpoint's egress redirects the query to the DNS proxy, whose rules for that peer allow the name. */
  private proxyRedirectAllows(endpoint: string, name: string, server: DnsServer): boolean {
    const m = this.maps.byEndpoint.get(endpoint);
    if (!m) return false;
    const peer = this.serverIdentity(server.ip);
    const request: { dns: DnsQuery } = { dns: { name } };
    const keys = this.probeKeys(peer, server.port, server.protocol ?? 'UDP');
    if (!this.ctx.dirtyMaps.has(m)) {
      // Untouched in this transaction: the settled entries and L7 rows are current (no garbage but the request).
      const hit = probe(m.state, false, keys);
      if (!hit || hit.entry.deny || PARSER_OF_CODE[hit.entry.proxyPort] !== 'dns') return false;
      const rows = m.state.l7.rows;
      const rid = `egress/${hit.key.protocol}/${hit.key.port}/dns|`;
      const own = rows.get(rid + peer);
      const any = peer === ANY_IDENTITY ? undefined : rows.get(rid + ANY_IDENTITY);
      return (own !== undefined && l7PolicyAllows(own.policy, request)) || (any !== undefined && l7PolicyAllows(any.policy, request));
    }
    const hit = probe(m.state, true, keys);
    if (!hit || hit.entry.deny || PARSER_OF_CODE[hit.entry.proxyPort] !== 'dns') return false;
    const redirect = keyRedirect(hit.key, 'dns');
    // The peer's L7 row and the any-peer row (explain.ts l7Verdict), as the raw contributions make them now.
    const allows = (id: IdentityId): boolean => {
      const policy = m.state.l7.policyFor(redirect, id);
      return policy !== undefined && l7PolicyAllows(policy, request);
    };
    return allows(peer) || (peer !== ANY_IDENTITY && allows(ANY_IDENTITY));
  }

  /** The policy keys an egress lookup of (peer, transport, port) probes, longest first per identity (memoised: no strings per answer). */
  private probeKeys(peer: IdentityId, port: number, transport: DnsTransport): ProbeKeys {
    const proto = PROTOCOL_NUMBER[transport];
    const k = (peer * 65536 + port) * 256 + proto;
    let keys = this.probes.get(k);
    if (keys === undefined) {
      if (this.probes.size >= MAX_MEMOISED_PROBES) this.probes.clear();
      keys = { specific: lookupKeys(peer, proto, port), wildcard: peer === ANY_IDENTITY ? undefined : lookupKeys(ANY_IDENTITY, proto, port) };
      this.probes.set(k, keys);
    }
    return keys;
  }

  /**
   * The server's identity as the ipcache has it at this point (`ipcacheHostAt`: a node's address,
   * health and Ingress addresses included, then a pod's, a learnt IP's, a host CIDR's), else the
   * longest CIDR identity's, else world. A learnt IP is brought up to date first: answers and
   * selectors earlier in the transaction may have moved it.
   */
  private serverIdentity(ip: IpAddress): IdentityId {
    const key = ipKey(ip);
    if (!this.pods.byIp(ip.text) && (this.cache.liveNames(key) !== undefined || this.identities.fqdnHostOf(key))) {
      this.syncSelectors();
      this.reidentify(key);
    }
    return this.ctx.ipcacheHostAt(ip) ?? this.identities.cidrIdentityOf(ip).id;
  }

  /** Applies a DNS event; returns whether it changed the cache (a refused answer does not). */
  apply(e: FqdnEvent): boolean {
    if (e.type === 'advanceTime') {
      this.cache.advance(e.seconds, this.changed, this.undo);
      return true;
    }
    if (!this.learns(e.endpoint, e.name, e.server)) return false;
    this.cache.record(e.endpoint, e.name, e.ips, e.ttl, this.changed, this.undo);
    return true;
  }

  private readonly changed = (ip: IpKey): void => {
    this.dirty.add(ip);
  };

  private readonly undo = (fn: () => void): void => this.ctx.onUndo(fn);

  /** Before commit: the learnt IPs whose identity may have changed get their new one. */
  settle(): void {
    this.collectStructural();
    if (this.dirty.size === 0) return;
    for (const ip of this.dirty) this.reidentify(ip);
    this.dirty.clear();
    if (this.refused.size > 0 && this.combinations.size < this.identityLimit) {
      // A combination went: the IPs the limit left out try again (next transaction at the latest).
      for (const ip of this.refused) this.reidentify(ip);
    }
    this.seenEpoch = this.identities.fqdnSelectorEpoch;
  }

  /**
   * What other stages changed that moves learnt IPs: the selectors in force (every IP), CIDR
   * identities (the IPs inside), pod IPs (that IP). Looks only at this transaction's own changes.
   */
  private collectStructural(): void {
    this.syncSelectors();
    if (this.everything) {
      this.everything = false;
      for (const ip of this.cache.liveIps()) this.dirty.add(ip);
      for (const ip of this.identities.fqdnHostKeys()) this.dirty.add(ip);
      return;
    }
    // Nothing learnt: no pod or CIDR change can move a learnt IP (the usual transaction without toFQDNs).
    if (this.cache.liveIpCount === 0 && this.identities.fqdnHostCount === 0) return;
    const cidrs: Cidr[] = [];
    const touched = this.ctx.ipcacheTouched;
    for (let i = 0; i < touched.size; i++) {
      const t = touched.at(i);
      if (t.host) {
        const key = ipKeyOfText(t.key);
        if (key !== undefined && (this.cache.liveNames(key) !== undefined || this.identities.fqdnHostOf(key))) this.dirty.add(key);
      } else cidrs.push(t.cidr);
    }
    for (const rec of this.ctx.pendingRelease) if (rec.refs === 0 && rec.cidr && !rec.fqdn) cidrs.push(rec.cidr);
    if (cidrs.length > 0) this.dirtyWithin(cidrs);
  }

  /** Marks the learnt IPs inside these prefixes (a CIDR identity appeared or went): only those are looked at (IPv4; `liveWithin`). */
  private dirtyWithin(cidrs: readonly Cidr[]): void {
    for (const c of cidrs) this.ctx.stats.fqdnIpsScanned += this.cache.liveWithin(c, this.changed);
  }

  /** Looks at the FQDN selectors in force if they may have changed; when they did, every learnt IP is re-identified at settle. */
  private syncSelectors(): void {
    if (this.identities.fqdnSelectorEpoch === this.seenEpoch) return;
    this.seenEpoch = this.identities.fqdnSelectorEpoch;
    if (!this.selectorsChanged()) return;
    this.everything = true;
    // Rolled back: the selectors in force are looked at again at the next settle.
    this.ctx.onUndo(() => {
      this.seenEpoch = -1;
      this.inForce = '\u0000';
    });
  }

  /** Recomputes the FQDN selectors in force (registered as peers); true when they changed. */
  private selectorsChanged(): boolean {
    const keys: string[] = [];
    for (const [key] of this.identities.fqdnSelectors()) if (this.peerCache.get(`fqdn:${key}`)) keys.push(key);
    const joined = keys.sort().join('\n');
    if (joined === this.inForce) return false;
    this.inForce = joined;
    this.rebuildSelectors();
    return true;
  }

  private rebuildSelectors(): void {
    this.exact = new Map();
    this.patterns = [];
    this.selectorsOfName.clear();
    this.templates.clear();
    for (const [key, sel] of this.identities.fqdnSelectors()) {
      // In force while a unit has it registered as a peer.
      if (!this.peerCache.get(`fqdn:${key}`)) continue;
      if ('matchName' in sel || !sel.matchPattern.includes('*')) {
        const name = 'matchName' in sel ? sel.matchName : sel.matchPattern;
        this.exact.set(name, [...(this.exact.get(name) ?? []), key]);
      } else {
        this.patterns.push({ key, match: compileFqdnSelector(sel) });
      }
    }
  }

  private selectorsOf(name: string): NameSelectors {
    let s = this.selectorsOfName.get(name);
    if (s === undefined) {
      // Names come from untrusted answers: the memo stays bounded.
      if (this.selectorsOfName.size >= MAX_MEMOISED_NAMES) this.selectorsOfName.clear();
      const keys = [...new Set([...(this.exact.get(name) ?? []), ...this.patterns.filter((p) => p.match(name)).map((p) => p.key)])].sort();
      s = { keys, joined: keys.join('\n') };
      this.selectorsOfName.set(name, s);
    }
    return s;
  }

  /** The identity template an IP should have now; undefined: no entry (not learnt, a pod's, or no selector). */
  private desired(ip: IpAddress, key: IpKey): Template | undefined {
    if (this.pods.byIp(ip.text)) return undefined;
    const names = this.cache.liveNames(key);
    if (names === undefined) return undefined;
    let sel: NameSelectors;
    if (typeof names === 'string') sel = this.selectorsOf(names);
    else {
      const keys = new Set<string>();
      for (const name of names.keys()) for (const k of this.selectorsOf(name).keys) keys.add(k);
      const sorted = [...keys].sort();
      sel = { keys: sorted, joined: sorted.join('\n') };
    }
    if (sel.keys.length === 0) return undefined;
    const cidr = this.identities.cidrIdentityOf(ip).cidr;
    if (!cidr) {
      const t = ip.family === 'ipv4' ? sel.v4 : sel.v6;
      if (t) return t;
    }
    const tkey = `${ip.family} ${cidr?.text ?? ''} ${sel.joined}`;
    let t = this.templates.get(tkey);
    if (!t) {
      const labels: Label[] = sel.keys.map((k) => ({ source: SOURCE_FQDN, key: k, value: '' }));
      if (cidr) labels.push({ source: SOURCE_CIDR, key: cidr.text, value: '' });
      const set = makeLabelSet([...labels, ...worldLabels(this.identities.stack, ip.family)]);
      // The selector's own identity (`acquireFqdnSelector`): one selector, no prefix, the IPv4 world
      // label, which an IPv6 address shares single-stack (both carry reserved:world).
      const single = sel.keys.length === 1 && !cidr && (ip.family === 'ipv4' || this.identities.stack === 'single');
      t = { labels: set, key: labelSetKey(set), cidr, single };
      this.templates.set(tkey, t);
    }
    if (!cidr && ip.family === 'ipv4') sel.v4 = t;
    else if (!cidr) sel.v6 = t;
    return t;
  }

  private keyOf(labels: LabelSet): string {
    let k = this.keyOfLabels.get(labels);
    if (k === undefined) this.keyOfLabels.set(labels, (k = labelSetKey(labels)));
    return k;
  }

  private reidentify(key: IpKey): void {
    this.ctx.stats.fqdnIpsChecked++;
    const ip = ipOfKey(key);
    let want = this.desired(ip, key);
    const current = this.identities.fqdnHostOf(key);
    if (want && current && this.keyOf(current.labels) === want.key) {
      if (this.refused.delete(key)) this.ctx.onUndo(() => this.refused.add(key));
      return;
    }
    if (want && !want.single && !this.combinations.has(this.identities.current(want.key) as IdentityRecord) && this.combinations.size >= this.identityLimit) {
      // Fail closed: the IP keeps no FQDN identity (the LPM's CIDR identity or world decides it).
      this.ctx.stats.fqdnIdentitiesRefused++;
      if (!this.refused.has(key)) {
        this.refused.add(key);
        this.ctx.onUndo(() => this.refused.delete(key));
      }
      want = undefined;
    } else if (this.refused.delete(key)) this.ctx.onUndo(() => this.refused.add(key));
    if (!want && !current) return;
    this.ctx.touchIpcacheHost(ip);
    const next = want ? this.identities.acquireFqdn(want.labels, want.cidr, want.key) : undefined;
    this.setHost(key, current, next);
    this.ctx.onUndo(() => this.restore(key, current, next));
  }

  /** Moves an IP from one identity to another (either may be undefined), counting combinations. */
  private setHost(key: IpKey, from: IdentityRecord | undefined, to: IdentityRecord | undefined): void {
    this.identities.setFqdnHost(key, to);
    if (to && !this.isSingle(to)) this.combinations.set(to, (this.combinations.get(to) ?? 0) + 1);
    if (from) {
      if (!this.isSingle(from)) {
        const n = (this.combinations.get(from) ?? 0) - 1;
        if (n > 0) this.combinations.set(from, n);
        else this.combinations.delete(from);
      }
      this.identities.release(from);
    }
  }

  private isSingle(rec: IdentityRecord): boolean {
    let fqdn = 0;
    for (const l of rec.labels) if (l.source === SOURCE_FQDN) fqdn++;
    const world = worldName(this.identities.stack, 'ipv4');
    return fqdn === 1 && rec.cidr === undefined && rec.labels.some((l) => l.source === 'reserved' && l.key === world);
  }

  private restore(key: IpKey, previous: IdentityRecord | undefined, next: IdentityRecord | undefined): void {
    const back = previous ? this.identities.acquireFqdn(previous.labels, previous.cidr, this.keyOf(previous.labels)) : undefined;
    this.setHost(key, next, back);
  }
}

function lookupKeys(identity: IdentityId, protocol: number, port: number, direction: 'egress' | 'ingress' = 'egress'): ProbeKey[] {
  const keys: PolicyKey[] = [];
  for (let len = 16; len >= 0; len--) keys.push({ identity, direction, protocol, port: maskPort(port, len), portPrefixLen: len });
  keys.push({ identity, direction, protocol: 0, port: 0, portPrefixLen: 0 });
  return keys.map((key) => ({ key, ks: policyKeyString(key) }));
}

/**
 * The datapath's lookup (`datapathLookup`): the longest match for the peer and for identity 0,
 * then the higher precedence, the longer L4 prefix, the specific one (`pickWinner`). `pending`:
 * the entries as the next settle will make them (mid-transaction, `entries` lags behind).
 */
function probe(state: MapState, pending: boolean, keys: ProbeKeys): LookupResult | undefined {
  const specific = longest(state, pending, keys.specific);
  const wildcard = keys.wildcard && longest(state, pending, keys.wildcard);
  return pickWinner(specific, wildcard, (r) => r.entry.precedence, (r) => l4PrefixBits(r.key));
}

function longest(state: MapState, pending: boolean, keys: readonly ProbeKey[]): LookupResult | undefined {
  for (const k of keys) {
    const r = pending ? state.pendingEntry(k.key) : state.entries.get(k.ks);
    if (r) return r;
  }
  return undefined;
}
