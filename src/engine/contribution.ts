import type { L7Rules, RuleOrigin } from '../model/rules.js';
import { type L4Match, PORT_PROTOCOLS, PROTOCOL_NUMBER } from '../model/ports.js';
import type { PolicyEntry } from '../model/policy-map.js';
import { isPassFloor, PRECEDENCE_ALLOW, PRECEDENCE_DEFAULT_ALLOW, PRECEDENCE_STAND_IN_DENY } from '../model/policy-map.js';
import { ALLOW_LOCALHOST_ORIGIN, UNALLOCATED_IDENTITY_ORIGIN, UNREADABLE_IDENTITY_ORIGIN } from '../model/localhost.js';
import type { IdentityId } from '../model/identity.js';
import type { NamedPortResolver } from './rule-units.js';

/**
 * Who asks a map state for an entry. Map states count contributions by object identity: each is
 * created once (per attached rule unit, per L7 clause of it, and the default allow) and always
 * carries the same entry, so nothing is ever formatted into a string and parsed back to find the
 * rule or the L7 rules behind a map entry.
 */
export interface Contribution {
  /** The rule behind it (the leader's, for a shared one); null for the default allow of a direction nobody enforces. */
  readonly origin: RuleOrigin | null;
  readonly entry: PolicyEntry;
  /** The L7 rules a redirect entry carries (only for the L7 clauses of allow rules). */
  readonly l7?: L7Rules;
  /** For diagnostics: `u<unit>` or `u<unit>.<clause>`. */
  readonly label: string;
  /** The rule units making it together (equal content); absent or null for a contribution of one rule. */
  readonly sharers?: ContributionSharers | null;
  /**
   * True when it changes nothing but its raw keys: no tier (its origin's tier cannot change, as a
   * tiered unit shares with no other), no Pass floor, not a map state's own copy or cell. Lets a
   * map state skip the tier and Pass-band checks (three getters and a WeakSet) per contribution.
   */
  readonly plain?: boolean;
}

/**
 * Rule units of equal content (policy-resolver.ts `UnitShare`) make one contribution: the first
 * of them (the leader) names it, and when the leader goes the next one does, with no map change.
 */
export interface ContributionSharers {
  /** The leader's origin. */
  readonly origin: RuleOrigin;
  /** Every sharing unit's origin, the leader's first. */
  origins(): RuleOrigin[];
  /**
   * The clauses the units have in common, each with the contribution it makes (made once for the share: a new leader
   * keeps them): which L4Filters of Cilium's a contribution stands for (`dnsFilterKeys`).
   */
  readonly clauses: readonly { readonly l4: L4Match; readonly contribution: Contribution }[];
}

/** Where an egress named port's L4Filter is, asked for a peer identity: node-wide (named-ports.ts `resolveNamedNodeWide`). */
export type NamedEgress = (peer: IdentityId) => NamedPortResolver;

/** Unwired (tests of a map state alone): no name resolves, so no named filter counts and none widens a redirect. */
export const RESOLVES_NOTHING: NamedEgress = () => () => [];

/** A single-port key of one peer: where a DNS redirect's proxy reads the rules (`dnsFilterKeys`). */
export interface PeerPortKey {
  readonly identity: IdentityId;
  readonly protocol: number;
  readonly port: number;
  readonly portPrefixLen: number;
}

/**
 * Is a contribution at a single-port key in one of the L4Filters of that port whose rules the
 * redirect's DNS proxy holds (`proxyFilters`, see `dnsFilterKeys`)? A plain allow or DNS rule is when
 * some clause of its units is such a filter, not when only a range's LPM prefix put it there (`53-54`
 * keys 53/16 and 54/16): a range is its own filter (pkg/policy/l4.go keys filters by port and endPort;
 * attack finding 2030); a DNS rule of another filter of the port is not (finding 3160: the proxy holds
 * one filter's rules). Contributions of no unit (the default allow, allow-localhost, same-priority
 * cells), denies and other parsers' redirects are as before.
 */
export function inSinglePortFilter(c: Contribution, key: PeerPortKey, proxyFilters: { has(filter: string): boolean }, namedEgress: NamedEgress): boolean {
  if ((c.l7 !== undefined && c.l7.parser !== 'dns') || c.entry.deny || !c.sharers) return true;
  for (const f of dnsFilterKeys(c, key, namedEgress)) if (proxyFilters.has(f)) return true;
  return false;
}

/**
 * The L4Filters of Cilium's a contribution at a single-port key stands for: `#` for the numbered
 * filter of that port (a clause naming it alone: `port: "53"` or `53-53`), `n:<name>` for a named
 * port's, only where that name is the key's port (finding 2981: the unit's other names are filters of
 * other ports), resolved node-wide as Cilium resolves a filter's proxy ID (pkg/endpoint/bpf.go
 * `Endpoint.proxyID` → `GetNamedPort`: the filter's selectors then judge every peer they select,
 * whether or not it has the name; finding 3281). An egress rule's named and numbered ports are
 * separate units (rule-units.ts compileRule), and Cilium keeps a named port's filter (`dns/UDP`) apart
 * from the numbered one (`53/UDP`, pkg/policy/l4.go named ports; attack findings 2682, 2761). Only
 * egress keys are asked (DNS rules are egress only, cilium-ports.ts).
 */
export function dnsFilterKeys(c: Contribution, key: PeerPortKey, namedEgress: NamedEgress): string[] {
  const out: string[] = [];
  if (key.portPrefixLen !== 16) return out;
  let resolve: NamedPortResolver | undefined;
  for (const { l4, contribution } of c.sharers?.clauses ?? []) {
    // Only the clauses `c` stands for (its L7 rules', or the unit's plain ones; a pass copy keeps its source's `l7`):
    // another clause of the unit is another filter (finding 2980).
    if (l4.kind === 'all' || contribution.l7 !== c.l7) continue;
    if (l4.protocol === 'ANY' ? !ANY_PROTOCOL_NUMBERS.has(key.protocol) : PROTOCOL_NUMBER[l4.protocol] !== key.protocol) continue;
    if (l4.kind === 'range') {
      if (l4.from === key.port && l4.to === key.port) out.push('#');
      continue;
    }
    resolve ??= namedEgress(key.identity);
    if (resolve(l4.name, l4.protocol).some((p) => p.port === key.port && PROTOCOL_NUMBER[p.protocol] === key.protocol)) out.push(`n:${l4.name}`);
  }
  return out;
}

const ANY_PROTOCOL_NUMBERS: ReadonlySet<number> = new Set(PORT_PROTOCOLS.map((p) => PROTOCOL_NUMBER[p]));

/** The rules behind a contribution: one per sharing unit; `[null]` for the default allow. */
export function originsOf(c: Contribution): (RuleOrigin | null)[] {
  return c.sharers ? c.sharers.origins() : [c.origin];
}

/**
 * Every contribution has this one shape (L7 rules or not, copies and cells too): the map-state
 * code that reads them then sees a single hidden class instead of one per kind.
 */
class ContributionRecord implements Contribution {
  constructor(
    private readonly own: RuleOrigin | null,
    readonly entry: PolicyEntry,
    readonly l7: L7Rules | undefined,
    readonly label: string,
    readonly sharers: ContributionSharers | null,
    readonly plain: boolean,
  ) {}

  get origin(): RuleOrigin | null {
    return this.sharers === null ? this.own : this.sharers.origin;
  }
}

/** A contribution made inside the map state (Pass-band copies, same-priority cells); a copy of a shared one is shared by the same units. */
export function derivedContribution(origin: RuleOrigin | null, entry: PolicyEntry, l7: L7Rules | undefined, label: string, sharers: ContributionSharers | null = null): Contribution {
  return new ContributionRecord(origin, entry, l7, label, sharers, false);
}

/** Whether a rule's contribution is plain (see `Contribution.plain`). */
const isPlain = (origin: RuleOrigin | null, entry: PolicyEntry): boolean => origin?.tier === undefined && !isPassFloor(entry.precedence);

/**
 * The allow-all wildcard entry of a direction no policy enforces (Kubernetes' default allow), at the
 * default-allow level: below the Baseline tier and the NetworkPolicy tier.
 */
export const DEFAULT_ALLOW: Contribution = new ContributionRecord(null, { deny: false, proxyPort: 0, precedence: PRECEDENCE_DEFAULT_ALLOW }, undefined, 'default-allow', null, true);

/**
 * `allow-localhost: always`: the local host's ingress allow on every port, a plain allow of the
 * NetworkPolicy tier (Cilium's `localHostKey` entry; src/naive/evaluator.ts `localhostAllowed`).
 */
export const LOCALHOST_ALLOW: Contribution = new ContributionRecord(ALLOW_LOCALHOST_ORIGIN, { deny: false, proxyPort: 0, precedence: PRECEDENCE_ALLOW }, undefined, 'allow-localhost', null, true);

/**
 * The deny of an identity distill cannot read (finding 1936), in every local map and both directions,
 * every protocol and port, above every tier: its traffic is dropped whatever the rules say.
 */
export const UNREADABLE_DENY: Contribution = new ContributionRecord(UNREADABLE_IDENTITY_ORIGIN, { deny: true, proxyPort: 0, precedence: PRECEDENCE_STAND_IN_DENY }, undefined, 'unreadable-identity', null, true);

/**
 * The deny of `UNALLOCATED_POD_IDENTITY`, the ipcache's number of a pod whose labels have no external
 * identity yet (finding 2002), in every local map and both directions while some pod holds it.
 */
export const UNALLOCATED_DENY: Contribution = new ContributionRecord(UNALLOCATED_IDENTITY_ORIGIN, { deny: true, proxyPort: 0, precedence: PRECEDENCE_STAND_IN_DENY }, undefined, 'unallocated-identity', null, true);

/** The contribution of a rule unit's clauses without L7 rules (of every unit sharing it). */
export function unitContribution(unit: number, sharers: ContributionSharers, entry: PolicyEntry): Contribution {
  return new ContributionRecord(null, entry, undefined, `u${unit}`, sharers, isPlain(sharers.origin, entry));
}

/** The contribution of one L7 clause of a rule unit: its own, so redirects know whose L7 rules they carry. */
export function clauseContribution(unit: number, clause: number, sharers: ContributionSharers, entry: PolicyEntry, l7: L7Rules): Contribution {
  return new ContributionRecord(null, entry, l7, `u${unit}.${clause}`, sharers, isPlain(sharers.origin, entry));
}
