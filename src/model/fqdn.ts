import { unmapIp, type IpAddress } from './cidr.js';
import type { DnsServer } from './fqdn-events.js';

/**
 * DNS-based peers (`toFQDNs`): FQDN selectors, their matching, and the DNS cache the DNS proxy
 * fills from the answers it sees. Plain data and pure functions; time is always a parameter
 * (seconds on the caller's clock), never read from the wall clock.
 */

/** One `toFQDNs` entry, normalised (lower case, no trailing dot). Exactly one field is set. */
export type FqdnSelector = { readonly matchName: string } | { readonly matchPattern: string };

/**
 * DNS names compare case-insensitively and with the trailing root dot optional (Cilium stores
 * both names and patterns as `strings.ToLower(dns.Fqdn(x))`, i.e. with the dot added).
 */
export function normalizeFqdn(name: string): string {
  // ASCII letters only, as miekg/dns names in presentation form (every other byte is a `\DDD`
  // escape): `toLowerCase` would fold the Kelvin sign U+212A into `k`.
  const lower = name.trim().replace(/[A-Z]+/g, (s) => s.toLowerCase());
  return lower.length > 1 && lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/**
 * The canonical text of a selector: what Cilium puts in an `fqdn:` label of a selector identity
 * (`fqdn:*.cilium.io`). Names and patterns without `*` select the same names, so they share it.
 */
export function fqdnSelectorKey(s: FqdnSelector): string {
  return 'matchName' in s ? s.matchName : s.matchPattern;
}

/** Characters Cilium's CRD allows (`FQDNMatchNameRegexString`, `FQDNMatchPatternRegexString`). */
const NAME_RE = /^([-a-zA-Z0-9_]+[.]?)+$/;
const PATTERN_RE = /^([-a-zA-Z0-9_*]+[.]?)+$/;
/** `+kubebuilder:validation:MaxLength=255` on both fields. */
const MAX_FQDN_LENGTH = 255;

/** Why `value` is not a valid matchName / matchPattern, or undefined when it is. */
export function fqdnSyntaxError(field: 'matchName' | 'matchPattern', value: string): string | undefined {
  if (value.length > MAX_FQDN_LENGTH) return `is longer than ${MAX_FQDN_LENGTH} characters`;
  // Linear-time checks first: the CRD's nested-quantifier expressions backtrack on long inputs.
  const chars = field === 'matchName' ? /^[-a-zA-Z0-9_.]+$/ : /^[-a-zA-Z0-9_.*]+$/;
  if (!chars.test(value) || value.includes('..') || value.startsWith('.')) {
    return field === 'matchName'
      ? `"${value}" is not a valid DNS name (letters, digits, "-", "_", labels separated by single dots)${value.includes('*') ? '; a wildcard is written in matchPattern' : ''}`
      : `"${value}" is not a valid DNS pattern (letters, digits, "-", "_", "*", labels separated by single dots)`;
  }
  const re = field === 'matchName' ? NAME_RE : PATTERN_RE;
  return re.test(value) ? undefined : `"${value}" is not a valid ${field}`;
}

export function makeFqdnSelector(field: 'matchName' | 'matchPattern', value: string): FqdnSelector {
  const v = normalizeFqdn(value);
  return field === 'matchName' ? { matchName: v } : { matchPattern: v };
}

/**
 * Whether `label` matches one label of a pattern, where `*` stands for zero or more characters of
 * one label. Greedy leftmost matching of the `*`-separated pieces is exact for `*`-only globs, and
 * each piece is searched once from where the previous one ended: no backtracking, O(label ×
 * piece) at worst with labels ≤ 63 characters.
 */
function labelMatches(pattern: string, label: string): boolean {
  const pieces = pattern.split('*');
  if (pieces.length === 1) return pattern === label;
  // A star stands for DNS characters only (`allowedDNSCharsREGroup`, `[-a-zA-Z0-9_]`), and the
  // pattern's own characters are DNS characters (the reader refuses others).
  if (!DNS_LABEL.test(label)) return false;
  const first = pieces[0] as string;
  const last = pieces[pieces.length - 1] as string;
  if (first.length + last.length > label.length || !label.startsWith(first) || !label.endsWith(last)) return false;
  let at = first.length;
  const end = label.length - last.length;
  for (let i = 1; i < pieces.length - 1; i++) {
    const piece = pieces[i] as string;
    const found = label.indexOf(piece, at);
    if (found < 0 || found + piece.length > end) return false;
    at = found + piece.length;
  }
  return true;
}

export type FqdnMatcher = (normalizedName: string) => boolean;

/**
 * Cilium 1.19 `matchpattern.go`: a pattern of stars alone, with or without the trailing dot (`*`,
 * `**`, `***.`: `dnsWildcardRegex`, `^[*]{1,}[.]?$`), matches every name; before 1.19 only `*` did.
 */
export function isDnsWildcard(pattern: string): boolean {
  return /^\*+\.?$/.test(pattern);
}

const DNS_LABEL = /^[-a-z0-9_]*$/;

/**
 * The length of a leading multi-label wildcard: two or more stars and a dot (`**.`, `***.`:
 * `subdomainWildcardSpecifierPrefix`, `^[*]{2,}[.]`, Cilium ≥ 1.19), else 0.
 */
export function multiLabelPrefixLength(pattern: string): number {
  const m = /^\*{2,}\./.exec(pattern);
  return m ? m[0].length : 0;
}

/**
 * Compiles a selector into a matcher of normalised names, as Cilium's matchpattern does: stars
 * alone match every name; otherwise `*` matches zero or more DNS characters within one label, and
 * (Cilium ≥ 1.19) a leading `**.` matches one or more whole labels; elsewhere `**` is `*`.
 */
export function compileFqdnSelector(s: FqdnSelector): FqdnMatcher {
  if ('matchName' in s) {
    const want = s.matchName;
    return (name) => name === want;
  }
  const pattern = s.matchPattern;
  if (isDnsWildcard(pattern)) return () => true;
  const prefix = multiLabelPrefixLength(pattern);
  const multi = prefix > 0;
  const labels = pattern.slice(prefix).split('.');
  return (name) => {
    const got = name.split('.');
    const extra = got.length - labels.length;
    if (multi ? extra < 1 : extra !== 0) return false;
    return labels.every((p, i) => labelMatches(p, got[i + extra] as string)) && got.slice(0, extra).every((l) => l.length > 0 && DNS_LABEL.test(l));
  };
}

export function fqdnSelectorMatches(s: FqdnSelector, name: string): boolean {
  return compileFqdnSelector(s)(normalizeFqdn(name));
}

// ---------------------------------------------------------------------------------------------
// The DNS cache

/** Cilium agent options that shape the cache (`--tofqdns-min-ttl`, `--tofqdns-endpoint-max-ip-per-hostname`). */
export interface DnsCacheOptions {
  /** Seconds; an answer lives max(TTL, minTtl). Cilium's default is 0 since cilium#21439 (3,600 before). */
  readonly minTtl: number;
  /** Per endpoint and name; beyond it the entries that expire first (the oldest) go. Default 1,000; 0 = no limit. */
  readonly maxIpsPerHostname: number;
  /**
   * The engine's circuit breaker on FQDN identities (CFP-28427, "Circuit breakers?": up to 2^N − 1
   * selector combinations for N selectors, allocated from untrusted answers): at most this many
   * identities held by learnt IPs beyond the selectors' own pre-allocated ones (combinations of
   * selectors, IPs inside a CIDR identity, IPv6). Past it a learnt IP needing a new one stays
   * unselected: fail closed. Default 1,024. Not part of the oracle's semantics.
   */
  readonly maxSelectorCombinations?: number;
}

/**
 * The longest TTL a DNS answer can carry: the RR header's TTL is 32 bits (RFC 1035 §3.2.1; miekg/dns
 * `RR_Header.Ttl uint32`, which Cilium's proxy passes on as an `int`, so 2^31 and above stay large).
 */
export const MAX_DNS_TTL = 2 ** 32 - 1;

export const DEFAULT_DNS_CACHE_OPTIONS: DnsCacheOptions = { minTtl: 0, maxIpsPerHostname: 1000 };

/**
 * How many of `count` addresses of one (endpoint, name) are over `maxIpsPerHostname`. A limit of 0 is
 * no limit, as in Cilium: pkg/fqdn/cache.go `updateWithEntry` marks a name over the limit only
 * `if c.perHostLimit > 0`, and `cleanupOverLimitEntries` returns at once when `perHostLimit == 0`.
 */
export function ipsOverLimit(count: number, options: DnsCacheOptions): number {
  return options.maxIpsPerHostname > 0 ? count - options.maxIpsPerHostname : 0;
}

/** `maxSelectorCombinations` when not set: 2^10, the CFP's "10 distinct selectors would be OK (1024)". */
export const DEFAULT_MAX_SELECTOR_COMBINATIONS = 1024;

/**
 * One learnt (endpoint, name, IP), alive while `now <= expiresAt`: Cilium pkg/fqdn/cache.go
 * `isExpiredBy` is `pointInTime.After(entry.ExpirationTime)` (cache_test.go `TestTTLInsertWithZeroValue`:
 * TTL 10 still found at +10, gone at +11).
 */
export interface DnsCacheEntry {
  readonly endpoint: string;
  readonly name: string;
  readonly ip: IpAddress;
  readonly learntAt: number;
  readonly expiresAt: number;
  /** The server whose answer taught it, when known (the scenario harness replays the answer with it). */
  readonly server?: DnsServer;
}

/**
 * The whole node's DNS cache: the entries of every endpoint. Immutable (each change makes a new
 * one), like the cluster model the oracle reads. `now` is the clock of the last event.
 */
export interface DnsCacheState {
  readonly now: number;
  readonly options: DnsCacheOptions;
  readonly entries: readonly DnsCacheEntry[];
  /**
   * How many times each endpoint's answers were dropped with it (its pod deleted, or gone from the
   * node). A pod deleted and re-created under the same name is another endpoint, with no history:
   * this is what tells it from an update of the pod when only two states are compared.
   */
  readonly dropped?: ReadonlyMap<string, number>;
}

export const EMPTY_DNS_CACHE: DnsCacheState = { now: 0, options: DEFAULT_DNS_CACHE_OPTIONS, entries: [] };

export function entryKey(e: Pick<DnsCacheEntry, 'endpoint' | 'name' | 'ip'>): string {
  return `${e.endpoint} ${e.name} ${e.ip.text}`;
}

/**
 * Records one answer the DNS proxy saw (the caller decides whether it saw it). An IP already
 * known for (endpoint, name) keeps the later expiry of the two. Over `maxIpsPerHostname`, the
 * entries of (endpoint, name) that expire first are evicted (equal TTLs: the oldest answers).
 */
export function recordDnsAnswer(cache: DnsCacheState, endpoint: string, name: string, ips: readonly IpAddress[], ttl: number, server?: DnsServer): DnsCacheState {
  const n = normalizeFqdn(name);
  const expiresAt = cache.now + Math.max(ttl, cache.options.minTtl);
  const byKey = new Map<string, DnsCacheEntry>();
  for (const e of cache.entries) byKey.set(entryKey(e), e);
  for (const ip of ips.map(unmapIp)) {
    const fresh: DnsCacheEntry = { endpoint, name: n, ip, learntAt: cache.now, expiresAt, ...(server ? { server } : {}) };
    const old = byKey.get(entryKey(fresh));
    byKey.set(entryKey(fresh), old && old.expiresAt >= expiresAt ? old : fresh);
  }
  const mine = [...byKey.values()].filter((e) => e.endpoint === endpoint && e.name === n);
  const over = ipsOverLimit(mine.length, cache.options);
  if (over > 0) {
    const order = [...mine].sort((a, b) => a.expiresAt - b.expiresAt || a.learntAt - b.learntAt || (a.ip.text < b.ip.text ? -1 : 1));
    for (const e of order.slice(0, over)) byKey.delete(entryKey(e));
  }
  return { ...cache, entries: [...byKey.values()] };
}

/** Moves the clock forward and drops what expired. */
export function advanceDnsClock(cache: DnsCacheState, seconds: number): DnsCacheState {
  if (!(seconds >= 0)) throw new RangeError(`time only moves forward (got ${seconds} s)`);
  const now = cache.now + seconds;
  return { ...cache, now, entries: cache.entries.filter((e) => e.expiresAt >= now) };
}

/** The DNS cache without a deleted pod's answers (the endpoint is gone). */
export function withoutPodAnswers(dns: DnsCacheState | undefined, pod: string): DnsCacheState | undefined {
  return withoutAnswersOf(dns, (endpoint) => endpoint === pod);
}

/** The DNS cache without the answers of the endpoints that are `gone`, each counted in `dropped`. */
export function withoutAnswersOf(dns: DnsCacheState | undefined, gone: (endpoint: string) => boolean): DnsCacheState | undefined {
  if (dns === undefined) return undefined;
  const lost = new Set(dns.entries.filter((e) => gone(e.endpoint)).map((e) => e.endpoint));
  if (lost.size === 0) return dns;
  const dropped = new Map(dns.dropped);
  for (const endpoint of lost) dropped.set(endpoint, (dropped.get(endpoint) ?? 0) + 1);
  return { ...dns, entries: dns.entries.filter((e) => !lost.has(e.endpoint)), dropped };
}

/** How many times `endpoint`'s answers were dropped (`withoutAnswersOf`). */
export function droppedCount(dns: DnsCacheState | undefined, endpoint: string): number {
  return dns?.dropped?.get(endpoint) ?? 0;
}

/**
 * The live entries for `ip` whose name some selector matches. Cilium's name manager selects IPs
 * node-wide: an IP learnt by any endpoint is selected for every endpoint whose policy has a
 * matching selector (the per-endpoint caches only decide how long it stays).
 */
export function liveMatches(cache: DnsCacheState, selectors: readonly FqdnSelector[], ip: IpAddress): DnsCacheEntry[] {
  const matchers = selectors.map(compileFqdnSelector);
  return cache.entries.filter((e) => e.expiresAt >= cache.now && e.ip.text === ip.text && matchers.some((m) => m(e.name)));
}
