import type { Direction } from './rules.js';
import type { IdentityId } from './identity.js';
import { FlowProtocol, proxyTakes } from './ports.js';

/**
 * The per-endpoint policy map, as Cilium lays it out in its BPF LPM trie. A key is
 * (identity, direction, protocol, destination port) where the LPM prefix always covers identity
 * and direction, then the protocol (unless it is the wildcard 0), then `portPrefixLen` bits of the
 * port. A port range therefore becomes a few masked-port keys.
 */
export interface PolicyKey {
  /** 0 = any identity. */
  readonly identity: IdentityId;
  readonly direction: Direction;
  /** IANA protocol number; 0 = any protocol (then port and portPrefixLen are 0 too). */
  readonly protocol: number;
  /** Destination port (ICMP: the type); the low 16 - portPrefixLen bits are zero. */
  readonly port: number;
  /** 0..16: how many leading bits of `port` must match. */
  readonly portPrefixLen: number;
}

/** A policy-map value: deny or allow, the proxy port of an L7 redirect (0: none), and its precedence. */
export interface PolicyEntry {
  readonly deny: boolean;
  /** Non-zero: redirect matching traffic to the L7 proxy listening on this port. */
  readonly proxyPort: number;
  /** Higher wins. See `precedence`. */
  readonly precedence: number;
}

/**
 * The verdict byte (bits 7-0 of a precedence): deny > redirect > plain allow. Cilium's precedence
 * orders verdicts the same way inside one level.
 */
const VERDICT_DENY = 255;
const VERDICT_REDIRECT = 2;
const VERDICT_ALLOW = 1;

/**
 * Tier levels (bits 31-16 of a precedence, docs/tiers-encoding.md §2): Admin rules 65 535 … 40 511,
 * the NetworkPolicy tier (Kubernetes NP, CNP, CCNP) 40 000, Baseline rules 39 999 … 14 975, the
 * default allow of a direction nothing isolates 1.
 */
export const NP_TIER_LEVEL = 40000;
const DEFAULT_ALLOW_LEVEL = 1;

/** Bits 15-8: 255 for an entry its own rule writes. */
const OWN_SUB = 0xff00;

/** An NP-tier precedence with verdict byte `v`. Multiplication, not <<: the result stays unsigned. */
function npTier(v: number): number {
  return NP_TIER_LEVEL * 0x10000 + v;
}

/** NP-tier precedences: deny > redirect > plain allow. */
export const PRECEDENCE_DENY = npTier(VERDICT_DENY);
export const PRECEDENCE_REDIRECT = npTier(VERDICT_REDIRECT);
export const PRECEDENCE_ALLOW = npTier(VERDICT_ALLOW);
/** The default allow: below every tier, so Baseline rules and the NP tier decide above it. */
export const PRECEDENCE_DEFAULT_ALLOW = DEFAULT_ALLOW_LEVEL * 0x10000 + VERDICT_ALLOW;
/**
 * The deny a local map holds for an identity distill cannot read (finding 1936): above every tier
 * level (an Admin `Accept` of priority 0 included), the transient deny's value (write-check.ts).
 */
export const PRECEDENCE_STAND_IN_DENY = 0xffffffff;
/** The lowest precedence the engine writes: entries above it may hide narrower ones. */
export const PRECEDENCE_LOWEST = PRECEDENCE_DEFAULT_ALLOW;

/**
 * Cilium's precedence inside the NetworkPolicy tier's level: the lower 8 bits order verdicts:
 * 255 deny, 255 - p for a redirect with listener priority p (lower p wins), 2 for a redirect
 * without one, 1 for an allow.
 */
export function precedence(verdict: 'deny' | 'allow' | 'redirect', listenerPriority?: number): number {
  if (verdict === 'deny') return PRECEDENCE_DENY;
  if (verdict === 'allow') return PRECEDENCE_ALLOW;
  if (listenerPriority === undefined) return PRECEDENCE_REDIRECT;
  if (!Number.isInteger(listenerPriority) || listenerPriority < 1 || listenerPriority > 252) {
    throw new RangeError(`listener priority ${listenerPriority} is outside 1..252`);
  }
  return npTier(255 - listenerPriority);
}

/** The verdict byte of a precedence. */
export function verdictByte(p: number): number {
  return p % 0x100;
}

/**
 * The precedence of a ClusterNetworkPolicy rule's entries (docs/tiers-encoding.md, byte layout):
 * bits 31-16 the tier level, bits 15-8 `sub` (255: the rule's own entry), bits 7-0 the verdict
 * byte (255 deny, 1 accept). `slot = priority * 25 + ruleIndex`; Admin levels are `65535 - slot`
 * (40 511 and up, above the NetworkPolicy tier's 40 000), Baseline levels `39999 - slot`
 * (14 975 … 39 999, between the NetworkPolicy tier and the default allow); an earlier rule is
 * above a later one.
 */
const TIER_SLOTS_PER_PRIORITY = 25;
const MAX_TIER_SLOT = 1000 * TIER_SLOTS_PER_PRIORITY + TIER_SLOTS_PER_PRIORITY - 1;
export function tierPrecedence(tier: 'Admin' | 'Baseline', priority: number, ruleIndex: number, deny: boolean): number {
  if (!Number.isInteger(priority) || priority < 0 || priority > 1000) throw new RangeError(`priority ${priority} is outside 0..1000`);
  if (!Number.isInteger(ruleIndex) || ruleIndex < 0 || ruleIndex >= TIER_SLOTS_PER_PRIORITY) throw new RangeError(`rule index ${ruleIndex} is outside 0..${TIER_SLOTS_PER_PRIORITY - 1}`);
  const slot = priority * TIER_SLOTS_PER_PRIORITY + ruleIndex;
  const level = tier === 'Admin' ? 0xffff - slot : NP_TIER_LEVEL - 1 - slot;
  return level * 0x10000 + OWN_SUB + (deny ? VERDICT_DENY : VERDICT_ALLOW);
}

/** The level of the Admin rule at (priority, ruleIndex): where its Pass band lives. */
export function adminLevel(priority: number, ruleIndex: number): number {
  return precedenceLevel(tierPrecedence('Admin', priority, ruleIndex, false));
}

/**
 * Pass bands (docs/tiers-encoding.md §3, "Pass (materialised)"): an Admin Pass rule at level L
 * writes, on each of its keys K, a floor deny at `L.0.0` (the lower tiers' "no match drops") and a
 * copy at level L of every lower-tier entry meeting K. Inside the band the low 16 bits order the
 * copies exactly as the lower tiers are ordered: floor 0 < default allow 1 < Baseline slots
 * (2 + 2 × (level − lowest Baseline level) + deny, up to 50 051) < NetworkPolicy tier
 * (0xC400 + its verdict byte, so a redirect copy keeps its verdict byte in bits 7-0). Every copy is
 * below the Admin rule's own entries (`sub` 255) of level L, above every level below L.
 */
const BASELINE_LOWEST_LEVEL = NP_TIER_LEVEL - 1 - MAX_TIER_SLOT;
const BAND_NP_TIER = 0xc400;

/** The floor of a Pass band at `level`: a deny, below every copy of the band. */
export function passFloorPrecedence(level: number): number {
  return level * 0x10000;
}

/** Is `p` the floor of a Pass band (an Admin level, low 16 bits 0)? */
export function isPassFloor(p: number): boolean {
  return precedenceLevel(p) > NP_TIER_LEVEL && p % 0x10000 === 0;
}

/** Does `p` belong to the tiers an Admin Pass hands over to (NetworkPolicy tier, Baseline, default allow)? */
export function isBelowAdmin(p: number): boolean {
  return precedenceLevel(p) <= NP_TIER_LEVEL;
}

/** The precedence of the copy, in the Pass band at `level`, of a lower-tier entry of precedence `p`. */
export function passCopyPrecedence(level: number, p: number): number {
  const from = precedenceLevel(p);
  let o: number;
  if (from === NP_TIER_LEVEL) o = BAND_NP_TIER + verdictByte(p);
  else if (from >= BASELINE_LOWEST_LEVEL && from < NP_TIER_LEVEL) o = 2 + 2 * (from - BASELINE_LOWEST_LEVEL) + (verdictByte(p) === VERDICT_DENY ? 1 : 0);
  else if (p === PRECEDENCE_DEFAULT_ALLOW) o = 1;
  else throw new RangeError(`precedence ${p} is not a lower-tier precedence`);
  return level * 0x10000 + o;
}

/** The NetworkPolicy-tier precedence a Pass-band copy was made from; any other precedence unchanged. */
export function sourcePrecedence(p: number): number {
  const low = p % 0x10000;
  return precedenceLevel(p) > NP_TIER_LEVEL && low >= BAND_NP_TIER && low < OWN_SUB ? npTier(verdictByte(p)) : p;
}

/** The tier level of a precedence (`NP_TIER_LEVEL`: the NetworkPolicy tier). */
export function precedenceLevel(p: number): number {
  return Math.floor(p / 0x10000);
}

export function policyKeyString(k: PolicyKey): string {
  return `${k.identity}/${k.direction}/${k.protocol}/${k.port}/${k.portPrefixLen}`;
}

export function wildcardKey(identity: IdentityId, direction: Direction): PolicyKey {
  return { identity, direction, protocol: 0, port: 0, portPrefixLen: 0 };
}

export interface MaskedPort {
  readonly port: number;
  readonly prefixLen: number;
}

/**
 * The fewest masked ports (value + prefix length over 16 bits) whose union is exactly
 * [from, to]: the classic range-to-prefix split, at most 30 prefixes. [0, 65535] is one
 * prefix of length 0.
 */
export function portRangeToPrefixes(from: number, to: number): MaskedPort[] {
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > 0xffff || from > to) {
    throw new RangeError(`invalid port range ${from}-${to}`);
  }
  const out: MaskedPort[] = [];
  let start = from;
  while (start <= to) {
    // Largest aligned block starting at `start` that stays within the range.
    let size = start === 0 ? 0x10000 : start & -start;
    while (start + size - 1 > to) size >>= 1;
    out.push({ port: start, prefixLen: 16 - Math.log2(size) });
    start += size;
  }
  return out;
}

/** Prefix length of a key below identity+direction: protocol bits, then port bits. */
export function l4PrefixBits(key: PolicyKey): number {
  return key.protocol === 0 ? 0 : 8 + key.portPrefixLen;
}

/** A policy-map key with its value, as a lookup or a dump returns them. */
export interface LookupResult {
  readonly key: PolicyKey;
  readonly entry: PolicyEntry;
}

/** `port` with its low `16 - prefixLen` bits cleared: the port of a masked-port key of that prefix length. */
export function maskPort(port: number, prefixLen: number): number {
  return prefixLen === 0 ? 0 : (port >> (16 - prefixLen)) << (16 - prefixLen);
}

/** The last port a masked-port key of that prefix length covers (`port` is its first). */
export function maskedPortEnd(port: number, prefixLen: number): number {
  return port + 2 ** (16 - prefixLen) - 1;
}

/** Entries one endpoint's policy map holds by default (Cilium's \`bpf-policy-map-max\`: 16,384). */
export const DEFAULT_MAP_CAPACITY = 16384;

/** The LPM trie lookup for one identity: the longest-prefix key that covers the packet. */
function longestMatch(state: ReadonlyMap<string, LookupResult>, identity: IdentityId, direction: Direction, protocol: number, port: number): LookupResult | undefined {
  // A trie returns one longest match; probing the candidate prefixes from longest to shortest
  // gives the same answer with plain map lookups.
  for (let len = 16; len >= 0; len--) {
    const hit = state.get(policyKeyString({ identity, direction, protocol, port: maskPort(port, len), portPrefixLen: len }));
    if (hit) return hit;
  }
  return state.get(policyKeyString(wildcardKey(identity, direction)));
}

/**
 * The datapath's choice between the identity-specific hit and the identity-0 hit: the higher
 * precedence wins, then the longer protocol+port prefix, then the identity-specific one.
 */
export function pickWinner<T>(specific: T | undefined, wildcard: T | undefined, precedenceOf: (t: T) => number, prefixBitsOf: (t: T) => number): T | undefined {
  if (specific === undefined) return wildcard;
  if (wildcard === undefined) return specific;
  if (precedenceOf(specific) !== precedenceOf(wildcard)) return precedenceOf(specific) > precedenceOf(wildcard) ? specific : wildcard;
  if (prefixBitsOf(specific) !== prefixBitsOf(wildcard)) return prefixBitsOf(specific) > prefixBitsOf(wildcard) ? specific : wildcard;
  return specific;
}

/**
 * The datapath's decision, as the kernel program makes it: an LPM lookup with the peer's
 * identity and one with identity 0, then `pickWinner`. No match: the packet is dropped (default
 * deny).
 */
export function datapathLookup(state: ReadonlyMap<string, LookupResult>, identity: IdentityId, direction: Direction, protocol: number, port: number): LookupResult | undefined {
  const specific = longestMatch(state, identity, direction, protocol, port);
  const wildcard = identity === 0 ? undefined : longestMatch(state, 0, direction, protocol, port);
  return pickWinner(specific, wildcard, (r) => r.entry.precedence, (r) => l4PrefixBits(r.key));
}

/**
 * What the datapath does with a packet whose lookup hit `entry`: passed at L4 or dropped, and
 * whether to a proxy. A redirect of a protocol no proxy takes (SCTP on a DNS rule's ANY port) is
 * dropped on the way (finding 1244; `proxyTakes`).
 */
export function datapathPasses(entry: PolicyEntry | undefined, protocol: FlowProtocol): { readonly allowed: boolean; readonly proxied: boolean } {
  const redirected = entry !== undefined && !entry.deny && entry.proxyPort !== 0;
  const allowed = entry !== undefined && !entry.deny && (!redirected || proxyTakes(protocol));
  return { allowed, proxied: allowed && redirected };
}
