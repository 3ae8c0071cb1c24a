import { L7Parser, L7Policy, l7PolicyKey, meetDnsPolicies, mergeL7Rules, ALLOW_ALL_L7 } from '../model/l7.js';
import { ANY_IDENTITY, IdentityId } from '../model/identity.js';
import { maskPort, PolicyEntry, PolicyKey } from '../model/policy-map.js';
import type { Direction, L7Rules } from '../model/rules.js';
import { type L4Match, PORT_PROTOCOLS, PROTOCOL_NUMBER } from '../model/ports.js';
import { DEFAULT_ALLOW, type Contribution, dnsFilterKeys, inSinglePortFilter, type NamedEgress } from './contribution.js';
import { isPassCopy } from './map-tiers.js';
import { dirProto, idDir, rawKeyAt } from './raw-key.js';
import { type NamedPortResolver, PARSER_OF_CODE } from './rule-units.js';
import type { EngineStats } from './stats.js';

/**
 * A proxy redirect of one map: traffic on (direction, protocol, port prefix) to the `parser`
 * proxy. A port range with L7 rules is redirected by its LPM prefixes, as Cilium's map state keys
 * a range's L4Filter (pkg/policy/types PortProtoToMaskedPorts); the proxy judges each request by
 * its own destination port (`narrowerContributions`).
 */
export interface Redirect {
  readonly direction: Direction;
  readonly protocol: number;
  readonly port: number;
  readonly portPrefixLen: number;
  readonly parser: L7Parser;
}

/** The redirect of a kernel key whose entry redirects to `parser`. */
export function keyRedirect(key: PolicyKey, parser: L7Parser): Redirect {
  return { direction: key.direction, protocol: key.protocol, port: key.port, portPrefixLen: key.portPrefixLen, parser };
}

/** A single port's id is the one it had before prefixes were redirected (pinned proxy ports keep it). */
export function redirectId(r: Redirect): string {
  return r.portPrefixLen === 16 ? `${r.direction}/${r.protocol}/${r.port}/${r.parser}` : `${r.direction}/${r.protocol}/${r.port}/${r.portPrefixLen}/${r.parser}`;
}

/** One row of a map's L7 tables: what the proxy of `redirect` is told for one peer identity. */
export interface L7Row {
  readonly redirect: Redirect;
  /** The peer identity, ANY_IDENTITY standing for every peer. The proxy applies the peer's row and the ANY_IDENTITY row. */
  readonly peer: IdentityId;
  readonly policy: L7Policy;
  /**
   * A narrower port prefix inside the redirect's range this row applies to (absent: the whole
   * range): the rules of a narrower range or a plain allow that the datapath hides behind the wider
   * redirect key; the proxy ORs the rows whose range covers a request's port.
   */
  readonly range?: { readonly port: number; readonly portPrefixLen: number };
}

export interface L7Change {
  readonly rowKey: string;
  readonly before: L7Row | undefined;
  readonly after: L7Row | undefined;
}

/** A kernel-layer entry's change, as the L7 tables see it. */
interface KernelChange {
  readonly key: PolicyKey;
  readonly before: PolicyEntry | undefined;
  readonly after: PolicyEntry | undefined;
}

/** What the L7 tables read of their map state's raw layer (raw keys: raw-key.ts). */
export interface RawContributions {
  /** The contributions held at a raw key; undefined when it is not in the raw layer. */
  at(rk: number): Iterable<Contribution> | undefined;
  /** The raw layer's entries of one (direction, protocol) (`dirProto`). */
  entriesOf(dp: number): Iterable<{ readonly key: PolicyKey }> | undefined;
}

/** Which parser a redirect entry stands for (map states hold parser codes, see rule-units). */
function parserOf(e: PolicyEntry): L7Parser | undefined {
  return PARSER_OF_CODE[e.proxyPort];
}

/** A contribution of the NetworkPolicy tier itself (a ClusterNetworkPolicy rule never merges into its L7 rules; a Pass-band copy's source does). */
const ownL7 = (c: Contribution): boolean => !c.origin?.tier && !isPassCopy(c);

/**
 * One map state's L7 layer: the redirects its kernel entries use and, per redirect and peer
 * identity (and narrower port range), the L7 policy the proxy applies, derived from the raw
 * layer's contributions. Rows change only in `settle()`.
 */
export class L7Tables {
  /** Redirects the kernel layer uses, with how many entries use each. */
  private readonly redirectUse = new Map<string, { readonly redirect: Redirect; count: number }>();
  /** One row per (redirect, peer identity): `${redirectId}|${peer}` (and narrower ranges, see `visitForRedirect`). */
  readonly rows = new Map<string, L7Row>();
  private readonly rowsByRedirect = new Map<string, Set<string>>();
  /** Raw keys whose contributions changed since the last settle, while rows may depend on them. */
  private readonly touched = new Map<number, PolicyKey>();
  /**
   * Per port key (`portKeyId`), the L4Filters holding a DNS rule: the numbered one (`#`) where it holds one for some
   * peer identity (`dnsFilterKeys`), a named one (`n:<name>`) where a unit of the endpoint has a DNS clause on a name
   * resolving there node-wide (`countFilters`), with how many stand for each: the filters one of which the
   * port's DNS proxy holds (`proxyFilters`), a property of the port across every peer (attack findings 2761, 3160, 3281).
   */
  private readonly dnsFilters = new Map<string, Map<string, number>>();
  /** Port keys whose set of DNS filters changed since the last settle: every row of their redirect is redone. */
  private readonly dnsFiltersChanged = new Set<string>();
  /**
   * Per egress port key, the parsers of the named-port L4Filters holding L7 rules there (`countFilters`), with how
   * many clauses stand for each: one of them takes the port's proxy ID (`takenByOtherParser`, attack findings 3280, 3281).
   */
  private readonly namedParsers = new Map<string, Map<L7Parser, number>>();
  /** Port keys whose set of named-filter parsers changed since the last settle: every row of their redirects is redone. */
  private readonly namedParsersChanged = new Set<string>();
  /**
   * Per proxy ID (`proxyIdOf`: direction, protocol, first port), the endpoint's L7 filters there (`countFilters`): a
   * numbered or range clause from its first port, a named one at its resolved port (attack finding 3760).
   */
  private readonly proxyIds = new Map<string, ProxyIdFilters>();
  /** The proxy IDs holding filters of two parsers or more (`closedByProxyId`). */
  private readonly sharedIds = new Set<string>();
  /** Whether a filter came or went at a shared proxy ID since the last settle: every redirect's rows are redone. */
  private proxyIdsChanged = false;

  constructor(
    private readonly raw: RawContributions,
    private readonly stats: EngineStats,
    /** Where egress named ports resolve per peer: a named clause is its name's filter only at that name's port (`dnsFilterKeys`). */
    private readonly namedEgress: NamedEgress,
  ) {}

  /** The redirects the map's entries use. */
  redirects(): IterableIterator<string> {
    return this.redirectUse.keys();
  }

  redirect(id: string): Redirect | undefined {
    return this.redirectUse.get(id)?.redirect;
  }

  get hasRedirects(): boolean {
    return this.redirectUse.size > 0;
  }

  get isDirty(): boolean {
    return this.touched.size > 0 || this.filtersChanged;
  }

  /** Raw key `rk` changed by a contribution of `entry`: rows may depend on it if it redirects or the map has redirects. */
  touch(rk: number, key: PolicyKey, entry: PolicyEntry): void {
    if (entry.proxyPort !== 0 || this.redirectUse.size > 0) this.touched.set(rk, key);
  }

  /**
   * `c` was added at `key` (`delta` +1) or removed (-1): counts the numbered DNS filter of its port (see `dnsFilters`).
   * The policy resolver takes a named-port unit out of a peer before that peer's resolution of its names changes and puts
   * it back after (named-ports.ts `NamedPortListener`), so a removal counts the filters its addition counted.
   */
  countDnsFilters(key: PolicyKey, c: Contribution, delta: 1 | -1): void {
    // DNS rules are egress-only; named filters are counted from the endpoint's units (`countFilters`).
    if (c.l7 === undefined || c.l7.parser !== 'dns' || c.entry.deny || key.direction !== 'egress') return;
    const keys = dnsFilterKeys(c, key, this.namedEgress).filter((f) => f === '#');
    if (keys.length > 0) countIn(this.dnsFilters, this.dnsFiltersChanged, portKeyId(key), keys, delta);
  }

  /**
   * The named-port L7 clauses of a unit this map's endpoint adopted, counted (`delta` +1) or not (-1) as the filters of
   * the port their name resolves to (`resolve`: node-wide on egress, the resolver taking them out before a name's
   * node-wide ports change and putting them back after; the map's own ports on ingress). Cilium's redirect filters are
   * the endpoint's own (pkg/policy/resolve.go `forEachRedirectFilter`: every L4Filter with a redirecting per-selector
   * policy, whoever its selectors select) and `Endpoint.proxyID` resolves a filter's name with `GetNamedPort` (pkg/endpoint/bpf.go:
   * the node-wide map on egress, the endpoint's own ports on ingress), so a named filter takes its port whether or not
   * a peer holds its rules (attack findings 3381, 3382). Whether `clauses` has a named L7 one.
   */
  countFilters(direction: Direction, clauses: readonly NamedClause[], resolve: NamedPortResolver, delta: 1 | -1): boolean {
    let counted = false;
    for (const { l4, contribution: c } of clauses) {
      if (l4.kind === 'all' || c.l7 === undefined || c.entry.deny) continue;
      if (l4.kind === 'range') {
        // A numbered or range filter's proxy ID is its first port, one per protocol of ANY (finding 3760).
        if (l4.from === 0) continue;
        for (const p of l4.protocol === 'ANY' ? PORT_PROTOCOLS : [l4.protocol]) this.countProxyId(direction, PROTOCOL_NUMBER[p], l4.from, l4.to, c.l7.parser, false, delta);
        continue;
      }
      counted = true;
      for (const p of resolve(l4.name, l4.protocol)) {
        const protocol = PROTOCOL_NUMBER[p.protocol];
        const id = portKeyId({ direction, protocol, port: p.port, portPrefixLen: 16 });
        if (c.l7.parser === 'dns') countIn(this.dnsFilters, this.dnsFiltersChanged, id, [`n:${l4.name}`], delta);
        countIn(this.namedParsers, this.namedParsersChanged, id, [c.l7.parser], delta);
        this.countProxyId(direction, protocol, p.port, p.port, c.l7.parser, true, delta);
      }
    }
    return counted || this.proxyIdsChanged;
  }

  /** Counts one filter at its proxy ID; a filter coming or going where two parsers meet changes which redirects close. */
  private countProxyId(direction: Direction, protocol: number, start: number, to: number, parser: L7Parser, named: boolean, delta: 1 | -1): void {
    const id = `${direction}/${protocol}/${start}`;
    let t = this.proxyIds.get(id);
    if (t === undefined) this.proxyIds.set(id, (t = { direction, protocol, start, filters: new Map() }));
    const fk = `${named ? 'n' : '#'}/${parser}/${to}`;
    const f = t.filters.get(fk);
    const n = (f?.count ?? 0) + delta;
    if (n === 0) t.filters.delete(fk);
    else if (f) f.count = n;
    else t.filters.set(fk, { parser, to, named, count: n });
    const wasShared = this.sharedIds.has(id);
    const shared = new Set([...t.filters.values()].map((x) => x.parser)).size > 1;
    if (shared) this.sharedIds.add(id);
    else this.sharedIds.delete(id);
    if (t.filters.size === 0) this.proxyIds.delete(id);
    if ((wasShared || shared) && (n === 0 || f === undefined)) this.proxyIdsChanged = true;
  }

  /** Whether a port's set of filters changed since the last settle (no raw key need have). */
  private get filtersChanged(): boolean {
    return this.dnsFiltersChanged.size > 0 || this.namedParsersChanged.size > 0 || this.proxyIdsChanged;
  }

  /** Whether settling `changes` can change a row (maps without redirects, most of them, skip the L7 layer). */
  relevant(changes: readonly KernelChange[]): boolean {
    return this.touched.size > 0 || this.redirectUse.size > 0 || someRedirect(changes) || this.filtersChanged;
  }

  /**
   * Redirects follow the kernel entries that use them; a new redirect gets every row, a gone one
   * loses them, and a changed raw key recomputes the rows of its identity for the redirects whose
   * port it covers.
   */
  settle(changes: readonly KernelChange[]): { l7: L7Change[]; redirectsChanged: boolean } {
    const added = new Set<string>();
    const removed = new Set<string>();
    for (const c of changes) this.countRedirectUse(c, added, removed);
    const out: L7Change[] = [];
    for (const id of removed) for (const rowKey of [...(this.rowsByRedirect.get(id) ?? [])]) this.setRow(out, rowKey, id, undefined);
    // A redirect neither new nor touched by a raw key keeps its rows: no scratch work for it.
    if (added.size > 0 || this.touched.size > 0 || this.filtersChanged) {
      for (const [id, { redirect }] of this.redirectUse) {
        const pk = portKeyId(redirect);
        const filtersChanged = (redirect.parser === 'dns' && this.dnsFiltersChanged.has(pk)) || this.namedParsersChanged.has(pk) || this.proxyIdsChanged;
        this.refreshRedirectRows(out, id, redirect, added.has(id), filtersChanged);
      }
    }
    this.touched.clear();
    this.dnsFiltersChanged.clear();
    this.namedParsersChanged.clear();
    this.proxyIdsChanged = false;
    return { l7: out, redirectsChanged: added.size > 0 || removed.size > 0 };
  }

  private countRedirectUse(c: KernelChange, added: Set<string>, removed: Set<string>): void {
    const before = redirectOf(c.key, c.before);
    const after = redirectOf(c.key, c.after);
    if (before) {
      const id = redirectId(before);
      const u = this.redirectUse.get(id) as { redirect: Redirect; count: number };
      if (--u.count === 0) {
        this.redirectUse.delete(id);
        if (added.has(id)) added.delete(id);
        else removed.add(id);
      }
    }
    if (after) {
      const id = redirectId(after);
      const u = this.redirectUse.get(id);
      if (u) u.count++;
      else {
        this.redirectUse.set(id, { redirect: after, count: 1 });
        if (removed.has(id)) removed.delete(id);
        else added.add(id);
      }
    }
  }

  /**
   * Recomputes the rows of `redirect` for the peers a new redirect sees, or those of the touched raw
   * keys; both when the port's DNS filters changed (`every`), which can change the row of any peer.
   */
  private refreshRedirectRows(out: L7Change[], id: string, redirect: Redirect, isNew: boolean, every = false): void {
    const peers = new Set<IdentityId>();
    const narrower = new Map<string, PolicyKey>();
    if (isNew || every) {
      for (const proto of [redirect.protocol, 0]) {
        for (const r of this.raw.entriesOf(dirProto(redirect.direction, proto)) ?? []) {
          this.stats.mapEntriesVisited++;
          visitForRedirect(r.key, id, redirect, peers, narrower);
        }
      }
    }
    if (!isNew) for (const key of this.touched.values()) visitForRedirect(key, id, redirect, peers, narrower);
    for (const peer of peers) this.setRow(out, `${id}|${peer}`, id, this.computeRow(redirect, peer));
    for (const [rowKey, key] of narrower) this.setRow(out, rowKey, id, this.computeNarrowerRow(redirect, key));
  }

  private setRow(out: L7Change[], rowKey: string, redirectKey: string, row: L7Row | undefined): void {
    const before = this.rows.get(rowKey);
    if (before === undefined && row === undefined) return;
    if (before && row && l7PolicyKey(before.policy) === l7PolicyKey(row.policy)) return;
    if (row) {
      this.rows.set(rowKey, row);
      let s = this.rowsByRedirect.get(redirectKey);
      if (!s) this.rowsByRedirect.set(redirectKey, (s = new Set()));
      s.add(rowKey);
    } else {
      this.rows.delete(rowKey);
      const s = this.rowsByRedirect.get(redirectKey);
      s?.delete(rowKey);
      if (s?.size === 0) this.rowsByRedirect.delete(redirectKey);
    }
    out.push({ rowKey, before, after: row });
  }

  /**
   * The NP-tier contributions a proxy's decision for `peer` on `redirect` rests on: those of every raw key
   * of the peer (and, for a specific peer, of identity 0) that covers the redirected port.
   */
  contributions(redirect: Redirect, peer: IdentityId): Contribution[] {
    const out: Contribution[] = [];
    if (this.takenByOtherParser(redirect)) return out;
    for (const id of peer === ANY_IDENTITY ? [ANY_IDENTITY] : [peer, ANY_IDENTITY]) {
      for (const c of this.proxyReads(id, redirect)) if (ownL7(c)) out.push(c);
    }
    return out;
  }

  /**
   * The NP-tier contributions of the raw keys of `peer` (and of identity 0) inside the redirect's
   * prefix, narrower than it, that cover `port`. The proxy judges a request by every rule whose
   * range covers its port (cilium/proxy cilium/network_policy.cc: `PortNetworkPolicy` splits
   * overlapping `port`..`end_port` ranges into disjoint ones holding the rules of each covering
   * range, and `PortPolicy::forRange` ORs them with the wildcard port's),
   * so these add to the redirect's rows for that port: e.g. a plain allow the datapath hides behind
   * a wider redirect still lets its port's requests through. None for a single-port redirect.
   */
  narrowerContributions(redirect: Redirect, peer: IdentityId, port: number): Contribution[] {
    const out: Contribution[] = [];
    // The request reaches the redirect's proxy whatever a narrower key allows: another parser's cannot read it.
    if (this.takenByOtherParser(redirect)) return out;
    for (const id of peer === ANY_IDENTITY ? [ANY_IDENTITY] : [peer, ANY_IDENTITY]) {
      const idd = idDir(id, redirect.direction);
      for (let len = 16; len > redirect.portPrefixLen; len--) {
        for (const c of this.raw.at(rawKeyAt(idd, redirect.protocol, port, len)) ?? []) if (ownL7(c)) out.push(c);
      }
    }
    return out;
  }

  /**
   * The row of a raw key narrower than `redirect` inside its prefix: what its own contributions
   * let through on its ports (`narrowerContributions` judged one by one), for its identity.
   */
  private computeNarrowerRow(redirect: Redirect, key: PolicyKey): L7Row | undefined {
    this.stats.mapEntriesVisited++;
    if (this.takenByOtherParser(redirect)) return undefined;
    const range = { port: key.port, portPrefixLen: key.portPrefixLen };
    const lists: L7Rules[] = [];
    for (const c of this.raw.at(rawKeyAt(idDir(key.identity, key.direction), key.protocol, key.port, key.portPrefixLen)) ?? []) {
      if (c.entry.deny || !ownL7(c)) continue;
      if (c.entry.proxyPort === 0) return { redirect, peer: key.identity, policy: ALLOW_ALL_L7, range };
      if (parserOf(c.entry) === redirect.parser && c.l7) lists.push(c.l7);
    }
    return lists.length === 0 ? undefined : { redirect, peer: key.identity, policy: mergeL7Rules(redirect.parser, lists), range };
  }

  /**
   * The row of `peer` for `redirect`: allow-all when an allow rule without L7 rules covers the
   * peer and port, else the union of the L7 rules of the redirect's parser on that port.
   */
  private computeRow(redirect: Redirect, peer: IdentityId): L7Row | undefined {
    const policy = this.policyFor(redirect, peer, true);
    return policy === undefined ? undefined : { redirect, peer, policy };
  }

  /**
   * What the proxy of `redirect` lets through for `peer` (its row, or the row it would have mid-transaction): a DNS
   * proxy holds one filter's rules (`proxyFilters`); where Cilium's map order picks among several, only what every
   * one of them allows (finding 3160).
   */
  policyFor(redirect: Redirect, peer: IdentityId, countVisits = false): L7Policy | undefined {
    if (this.takenByOtherParser(redirect)) return undefined;
    const filters = redirect.parser === 'dns' ? this.proxyFilters(redirect) : undefined;
    if (filters === undefined || filters.size === 1) return policyOf(redirect.parser, this.proxyReads(peer, redirect, countVisits, filters));
    const byFilter = new Map<string, Contribution[]>([...filters].map((f) => [f, []]));
    const key = { identity: peer, protocol: redirect.protocol, port: redirect.port, portPrefixLen: redirect.portPrefixLen };
    for (const c of this.proxyReads(peer, redirect, countVisits, filters)) {
      const own = c.sharers ? dnsFilterKeys(c, key, this.namedEgress) : [...filters];
      for (const f of own) byFilter.get(f)?.push(c);
    }
    const policies: L7Policy[] = [];
    for (const held of byFilter.values()) {
      const p = policyOf(redirect.parser, held);
      if (p === undefined) return undefined;
      policies.push(p);
    }
    return meetDnsPolicies(policies);
  }

  /**
   * Whether the port's proxy may be another parser's (attack finding 3280). Cilium 1.19's proxy ID is (endpoint,
   * direction, protocol, port, listener), no parser (pkg/policy `ProxyID`); `addNewRedirects` (pkg/endpoint/bpf.go)
   * gives it the first filter it meets, named-port filters first (pkg/policy/l4.go `L4PolicyMap.ForEach`), skips the
   * rest ("if desiredRedirects[proxyID] != 0 { continue }"), and every filter's key takes that redirect's proxy port
   * (l4.go `makeMapStateEntry` → `LookupRedirectPort`, by proxy ID). So a named filter of another parser takes the
   * port: this redirect's requests reach a proxy that cannot parse them (denied, as is any query a DNS proxy's
   * filter does not hold); with several named filters, Go map order picks, so one of another parser is enough.
   */
  private takenByOtherParser(r: Redirect): boolean {
    for (const p of this.namedParsers.get(portKeyId(r))?.keys() ?? []) if (p !== r.parser) return true;
    return this.sharedIds.size > 0 && this.closedByProxyId(r);
  }

  /**
   * Whether a filter of the redirect's parser whose range covers the redirect's prefix has a proxy ID another parser's
   * filter may take (attack finding 3760). pkg/endpoint/bpf.go `Endpoint.proxyID`: "For port ranges the proxy is
   * identified by the first port in the range", so `53` and `53-60` share (endpoint, direction, protocol, 53), and
   * every key of both filters takes the redirect of that ID (l4.go `makeMapStateEntry` → `LookupRedirectPort` with the
   * filter's `Port`). `addNewRedirects` gives the ID the first filter `L4PolicyMap.ForEach` meets: named ones first,
   * else the numbered and range ones in Go map order, so the ID may go to any parser among its named filters if it has
   * some, else among all; a redirect is open only where its own parser is the one possible (the meet of both orders).
   * Narrower than Cilium where another filter of the parser, with an ID of its own, keys the same prefix for a peer.
   */
  private closedByProxyId(r: Redirect): boolean {
    const last = r.port + (1 << (16 - r.portPrefixLen)) - 1;
    for (const id of this.sharedIds) {
      const t = this.proxyIds.get(id) as ProxyIdFilters;
      if (t.direction !== r.direction || t.protocol !== r.protocol || t.start > r.port) continue;
      const winners = possibleWinners(t);
      if (winners.size === 1 && winners.has(r.parser)) continue;
      for (const f of t.filters.values()) if (f.parser === r.parser && last <= f.to) return true;
    }
    return false;
  }

  /**
   * The L4Filters of a DNS redirect's port whose rules its proxy holds (attack finding 3160). Cilium 1.19 gives the
   * port's proxy ID (endpoint, direction, protocol, port, listener) the rules of the first filter with a redirect that
   * `addNewRedirects` meets (pkg/endpoint/bpf.go: later filters of an ID already seen are skipped), walking
   * `L4PolicyMap.ForEach` (pkg/policy/l4.go): every named-port filter before the numbered one. So one named filter
   * holding a DNS rule takes the port; two or more are picked by Go map order (all returned: the row is their meet);
   * with none, the numbered filter.
   */
  private proxyFilters(r: Redirect): ReadonlySet<string> {
    let named: Set<string> | undefined;
    for (const f of this.dnsFilters.get(portKeyId(r))?.keys() ?? []) if (f !== '#') (named ??= new Set()).add(f);
    return named ?? NUMBERED_FILTER;
  }

  /**
   * The contributions of `identity` whose rules the redirect's proxy reads. Envoy reads every key
   * covering the redirect's whole prefix: every broader-or-equal port prefix, then every protocol (the
   * port-0 rules, cilium/proxy network_policy.cc). The agent's DNS proxy reads only the rules of the
   * query's own port and protocol (pkg/fqdn/dnsproxy/proxy.go `CheckAllowed`, `getPortRulesForID`:
   * that port's L4Filter), so an L3-only or range allow of the server does not widen it (attack
   * finding 1965); the default allow of a direction nobody enforces is in that filter too, as a
   * wildcard DNS rule (pkg/policy/l4_filter_test.go `TestDNSWildcardInDefaultAllow`).
   */
  private *proxyReads(identity: IdentityId, r: Redirect, countVisits = false, filters = r.parser === 'dns' ? this.proxyFilters(r) : undefined): Iterable<Contribution> {
    const idd = idDir(identity, r.direction);
    const dns = r.parser === 'dns';
    for (let len = r.portPrefixLen; len >= (dns ? r.portPrefixLen : 0); len--) {
      if (countVisits) this.stats.mapEntriesVisited++;
      const held = this.raw.at(rawKeyAt(idd, r.protocol, r.port, len)) ?? [];
      // The DNS proxy's filter is the port's own: a range's plain allow keyed at the same prefix is not in it (finding 2030).
      if (filters) {
        const key = { identity, protocol: r.protocol, port: r.port, portPrefixLen: len };
        for (const c of held) if (inSinglePortFilter(c, key, filters, this.namedEgress)) yield c;
      } else yield* held;
    }
    if (countVisits) this.stats.mapEntriesVisited++;
    for (const c of this.raw.at(rawKeyAt(idd, 0, 0, 0)) ?? []) if (!dns || c === DEFAULT_ALLOW) yield c;
  }
}

const NUMBERED_FILTER: ReadonlySet<string> = new Set(['#']);

/** A unit's clause as `countFilters` reads it. */
type NamedClause = { readonly l4: L4Match; readonly contribution: Contribution };

/** The L7 filters at one proxy ID, by kind, parser and last port, with how many clauses stand for each. */
interface ProxyIdFilters {
  readonly direction: Direction;
  readonly protocol: number;
  readonly start: number;
  readonly filters: Map<string, { readonly parser: L7Parser; readonly to: number; readonly named: boolean; count: number }>;
}

/** The parsers whose filter may take a proxy ID: its named filters' if it has some (they come first), else every one's. */
function possibleWinners(t: ProxyIdFilters): Set<L7Parser> {
  const named = new Set<L7Parser>();
  const all = new Set<L7Parser>();
  for (const f of t.filters.values()) {
    all.add(f.parser);
    if (f.named) named.add(f.parser);
  }
  return named.size > 0 ? named : all;
}

/** Counts `keys` (with repeats) at port key `id` by `delta`; marks `id` changed when a key comes or goes. */
function countIn<K>(counts: Map<string, Map<K, number>>, changed: Set<string>, id: string, keys: readonly K[], delta: 1 | -1): void {
  let m = counts.get(id);
  if (!m) counts.set(id, (m = new Map()));
  for (const f of keys) {
    const n = (m.get(f) ?? 0) + delta;
    if (n === 0) m.delete(f);
    else m.set(f, n);
    if (n === 0 || (n === 1 && delta === 1)) changed.add(id);
  }
  if (m.size === 0) counts.delete(id);
}

/**
 * The policy of contributions held for one peer on one redirect: allow-all when an allow rule without L7 rules is
 * among them, else the union of the L7 rules of the redirect's parser.
 */
function policyOf(parser: L7Parser, held: Iterable<Contribution>): L7Policy | undefined {
  const lists: L7Rules[] = [];
  for (const c of held) {
    // A ClusterNetworkPolicy rule is another tier: it never merges into the NP tier's L7 rules.
    if (c.entry.deny || !ownL7(c)) continue;
    if (c.entry.proxyPort === 0) return ALLOW_ALL_L7;
    if (parserOf(c.entry) === parser && c.l7) lists.push(c.l7);
  }
  return lists.length === 0 ? undefined : mergeL7Rules(parser, lists);
}

/** A (direction, protocol, port prefix) of a key or redirect, whatever its identity. */
function portKeyId(k: { readonly direction: Direction; readonly protocol: number; readonly port: number; readonly portPrefixLen: number }): string {
  return `${k.direction}/${k.protocol}/${k.port}/${k.portPrefixLen}`;
}

function redirectOf(key: PolicyKey, e: PolicyEntry | undefined): Redirect | undefined {
  if (e === undefined || e.proxyPort === 0) return undefined;
  const parser = parserOf(e);
  return parser === undefined ? undefined : keyRedirect(key, parser);
}

function visitForRedirect(key: PolicyKey, id: string, redirect: Redirect, peers: Set<IdentityId>, narrower: Map<string, PolicyKey>): void {
  if (coversPort(key, redirect)) peers.add(key.identity);
  else if (insidePrefix(key, redirect)) narrower.set(`${id}|${key.identity}|${key.port}/${key.portPrefixLen}`, key);
}

/** Whether a change leaves a redirect entry. */
function someRedirect(changes: readonly KernelChange[]): boolean {
  for (const c of changes) if (c.after !== undefined && c.after.proxyPort !== 0) return true;
  return false;
}

/** Is `key` a narrower port prefix inside the redirect's, of its direction and protocol? */
function insidePrefix(key: PolicyKey, r: Redirect): boolean {
  if (key.direction !== r.direction || key.protocol !== r.protocol || key.portPrefixLen <= r.portPrefixLen) return false;
  return maskPort(key.port, r.portPrefixLen) === r.port;
}

/** Does `key` cover the redirect's (direction, protocol, port prefix), whatever its identity? */
function coversPort(key: PolicyKey, r: Redirect): boolean {
  if (key.direction !== r.direction) return false;
  if (key.protocol === 0) return true;
  if (key.protocol !== r.protocol || key.portPrefixLen > r.portPrefixLen) return false;
  return maskPort(r.port, key.portPrefixLen) === maskPort(key.port, key.portPrefixLen);
}
