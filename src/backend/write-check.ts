import type { MapDelta } from '../engine/events.js';
import { l4PrefixBits, maskPort, NP_TIER_LEVEL, PolicyEntry, policyKeyString, PolicyKey, precedenceLevel, PRECEDENCE_DEFAULT_ALLOW } from '../model/policy-map.js';

/** The precedence of the transient deny (write-plan.ts `TRANSIENT_DENY`): above every tier level. */
export const PRECEDENCE_TRANSIENT_DENY = 0xffffffff;

/** A flow's rank under an entry: allow 0 < redirect 1 < deny-or-no-match 2 (write-plan.ts). */
export function entryRank(e: PolicyEntry): number {
  return e.deny ? 2 : e.proxyPort !== 0 ? 1 : 0;
}

/*
 * The exact per-operation check. An operation on key K of trie T (the peer's, or identity 0)
 * changes, for the packets whose longest match in T is K, T's match from `before` to `after`
 * (K's value, or when K is absent the fallback F: the longest ancestor of K present in T). The
 * datapath then picks between T's match and the other trie's match W by precedence (ties: the
 * longer protocol+port prefix, then the peer's trie). A tighten operation is safe when, for every
 * W there can be, the verdict after ranks at least as high as before; a loosen operation when
 * undoing it is safe in the same sense. Every state of the tighten phase then ranks every packet
 * at least as high as the old state, every state of the loosen phase at least as high as the new
 * state, whatever the two tries hold: that is what makes the phases compose across maps (a flow
 * between two endpoints) and the phase boundary fit the ipcache write.
 *
 * F is known for ancestors the plan writes (their value at that point of the plan). Ancestors it
 * does not write are in the old and the new state alike, and there, by the engine's insertion
 * rule (map-state.ts: no entry under a broader same-trie key of higher precedence), their
 * precedence is at most K's: every W that beats K's entry beats them too, so they act as an entry
 * of any rank at the lowest precedence. An operation that fails the check goes through the
 * transient deny (which passes it at both ends), and the map's plan is checked again.
 */
interface Side {
  readonly precedence: number;
  readonly bits: number;
  readonly rank: number;
}

const ANY_RANK: readonly number[] = [0, 1, 2];

/** The ranks an entry of precedence `p` can have (the NP tier's verdict bytes are exact). */
function ranksAt(p: number): readonly number[] {
  if (p === PRECEDENCE_TRANSIENT_DENY) return [2];
  if (p === PRECEDENCE_DEFAULT_ALLOW) return [0];
  if (precedenceLevel(p) !== NP_TIER_LEVEL) return ANY_RANK;
  const b = p & 0xff;
  return b === 0xff ? [2] : b === 1 ? [0] : b === 0 ? ANY_RANK : [1];
}

/** The ranks of entries with a precedence in [lo, hi]. */
function ranksIn(lo: number, hi: number): readonly number[] {
  if (lo > hi) return [];
  if (hi - lo >= 0x100) return ANY_RANK;
  const out = new Set<number>();
  for (let p = lo; p <= hi && out.size < 3; p++) for (const r of ranksAt(p)) out.add(r);
  return [...out];
}

/** The rank of the datapath's verdict between T's match `t` and the other trie's `w`. */
function verdictRank(t: Side | undefined, w: Side | undefined, zeroTrie: boolean): number {
  if (!t) return w ? w.rank : 2;
  if (!w) return t.rank;
  const wWins = w.precedence > t.precedence || (w.precedence === t.precedence && (zeroTrie ? w.bits >= t.bits : w.bits > t.bits));
  return wWins ? w.rank : t.rank;
}

/** Candidate other-trie matches: every precedence interval the sides cut, every tie-breaking prefix length. */
function otherMatches(sides: readonly Side[]): Side[] {
  const cuts = [...new Set(sides.map((s) => s.precedence))].sort((a, b) => a - b);
  const bits = new Set([0, 8, 24]);
  for (const s of sides) for (const b of [s.bits - 1, s.bits, s.bits + 1]) if (b === 0 || (b >= 8 && b <= 24)) bits.add(b);
  const out: Side[] = [];
  let lo = 0;
  for (const c of cuts) {
    for (const rank of ranksIn(lo, c - 1)) out.push({ precedence: lo, bits: 0, rank });
    for (const rank of ranksAt(c)) for (const b of bits) out.push({ precedence: c, bits: b, rank });
    lo = c + 1;
  }
  for (const rank of ranksIn(lo, PRECEDENCE_TRANSIENT_DENY)) out.push({ precedence: lo, bits: 0, rank });
  return out;
}

/** A side as one number (precedence, prefix bits, rank); -1: no entry. Exact below 2^53. */
const sideCode = (s: Side | undefined): number => (s ? (s.precedence * 32 + s.bits) * 4 + s.rank : -1);
/** Memo of `neverLowers`, by trie kind, then before, then after. */
const neverLowersMemo = [new Map<number, Map<number, boolean>>(), new Map<number, Map<number, boolean>>()];
let memoSize = 0;

/** Whether T's match changing from `before` to `after` lowers no packet's rank, whatever the other trie holds. */
function neverLowers(before: Side | undefined, after: Side | undefined, zeroTrie: boolean): boolean {
  const byBefore = neverLowersMemo[zeroTrie ? 1 : 0] as Map<number, Map<number, boolean>>;
  const b = sideCode(before);
  const a = sideCode(after);
  let byAfter = byBefore.get(b);
  const known = byAfter?.get(a);
  if (known !== undefined) return known;
  const sides = [before, after].filter((x): x is Side => x !== undefined);
  const ok = [undefined, ...otherMatches(sides)].every((w) => verdictRank(after, w, zeroTrie) >= verdictRank(before, w, zeroTrie));
  if (++memoSize > 100_000) {
    for (const m of neverLowersMemo) m.clear();
    memoSize = 0;
  }
  if (!byAfter) byBefore.set(b, (byAfter = new Map()));
  byAfter.set(a, ok);
  return ok;
}

const sideOf = (e: PolicyEntry, k: PolicyKey): Side => ({ precedence: e.precedence, bits: l4PrefixBits(k), rank: entryRank(e) });

/** The strict ancestors of a key in its trie (shorter port prefixes, then the protocol-0 key). */
function ancestors(k: PolicyKey): PolicyKey[] {
  if (k.protocol === 0) return [];
  const out: PolicyKey[] = [];
  for (let len = k.portPrefixLen - 1; len >= 0; len--) out.push({ ...k, port: maskPort(k.port, len), portPrefixLen: len });
  out.push({ ...k, protocol: 0, port: 0, portPrefixLen: 0 });
  return out;
}

/** An ancestor the plan does not write, of whatever rank, below every W that can beat K (see above). */
const UNWRITTEN_ANCESTORS: readonly Side[] = ANY_RANK.map((rank) => ({ precedence: 0, bits: 0, rank }));
const NO_ANCESTOR: readonly (Side | undefined)[] = [undefined];
const ANY_ANCESTOR: readonly (Side | undefined)[] = [undefined, ...UNWRITTEN_ANCESTORS];

export const NOTHING_TRUSTED: ReadonlySet<MapDelta> = new Set();
/** A trie whose only written key is the operation's own: it has no written ancestor. */
export const NO_ANCESTOR_KEYS: readonly PolicyKey[] = Object.freeze([]);

/** `sideCode(sideOf(e, k))` without the Side; -1: no entry. */
const entryCode = (e: PolicyEntry | undefined, k: PolicyKey): number => (e ? (e.precedence * 32 + l4PrefixBits(k)) * 4 + entryRank(e) : -1);
/**
 * Memo of `safeOverUnwritten`, by the operation's kind (identity-0 trie, tighten, protocol 0: the
 * index's three bits), then its sides' codes before and after: the answer depends on nothing else.
 */
const overUnwrittenMemo: Map<number, Map<number, boolean>>[] = Array.from({ length: 8 }, () => new Map<number, Map<number, boolean>>());
let overUnwrittenSize = 0;

/**
 * Whether an operation from `was` to `now` (one of them absent: the fallback) lowers no rank when
 * the fallback is no entry or an ancestor the plan does not write.
 */
function safeOverUnwritten(k: PolicyKey, was: PolicyEntry | undefined, now: PolicyEntry | undefined, tighten: boolean): boolean {
  const zero = k.identity === 0;
  const byWas = overUnwrittenMemo[(zero ? 4 : 0) + (tighten ? 2 : 0) + (k.protocol === 0 ? 1 : 0)] as Map<number, Map<number, boolean>>;
  const wasCode = entryCode(was, k);
  const nowCode = entryCode(now, k);
  let byNow = byWas.get(wasCode);
  const known = byNow?.get(nowCode);
  if (known !== undefined) return known;
  const fallbacks: readonly (Side | undefined)[] = k.protocol === 0 ? NO_ANCESTOR : ANY_ANCESTOR;
  // The operation's own sides once, not per fallback; an indexed loop (a cold start's plan runs this per key, unoptimised).
  const wasSide = was && sideOf(was, k);
  const nowSide = now && sideOf(now, k);
  let ok = true;
  for (let i = 0; i < fallbacks.length && ok; i++) {
    const f = fallbacks[i];
    const before = wasSide ?? f;
    const after = nowSide ?? f;
    ok = tighten ? neverLowers(before, after, zero) : neverLowers(after, before, zero);
  }
  if (++overUnwrittenSize > 100_000) {
    for (const m of overUnwrittenMemo) m.clear();
    overUnwrittenSize = 0;
  }
  if (!byNow) byWas.set(wasCode, (byNow = new Map()));
  byNow.set(nowCode, ok);
  return ok;
}

/** Whether `a` is a strict ancestor of `k` in k's trie (same identity and direction assumed). */
function isAncestor(a: PolicyKey, k: PolicyKey): boolean {
  if (a.protocol === 0) return k.protocol !== 0;
  return a.protocol === k.protocol && a.portPrefixLen < k.portPrefixLen && maskPort(k.port, a.portPrefixLen) === a.port;
}

/** The written ancestors of `k`: from its trie's written keys, or by name when the trie has many. */
function writtenAncestors(k: PolicyKey, trie: readonly PolicyKey[]): readonly PolicyKey[] {
  if (trie.length <= 1 || k.protocol === 0) return NO_ANCESTOR_KEYS;
  if (trie.length > 24) return ancestors(k);
  // A loop rather than `filter`: most keys have no written ancestor, and then nothing is allocated.
  let out: PolicyKey[] | undefined;
  for (let i = 0; i < trie.length; i++) {
    const a = trie[i] as PolicyKey;
    if (isAncestor(a, k)) (out ??= []).push(a);
  }
  return out ?? NO_ANCESTOR_KEYS;
}

/** Whether an operation lowers no rank (tighten) or, undone, raises none (loosen); see above. */
export function opSafe(k: PolicyKey, was: PolicyEntry | undefined, now: PolicyEntry | undefined, tighten: boolean, current: ReadonlyMap<string, PolicyEntry | undefined>, trie: readonly PolicyKey[]): boolean {
  const zero = k.identity === 0;
  if (was && now) return tighten ? neverLowers(sideOf(was, k), sideOf(now, k), zero) : neverLowers(sideOf(now, k), sideOf(was, k), zero);
  if (!safeOverUnwritten(k, was, now, tighten)) return false;
  // Ancestors the plan writes: their value at this point of the plan.
  const written = writtenAncestors(k, trie);
  if (written.length === 0) return true;
  const wasSide = was && sideOf(was, k);
  const nowSide = now && sideOf(now, k);
  for (const a of written) {
    const e = current.get(policyKeyString(a));
    if (!e) continue;
    const f = sideOf(e, a);
    const before = wasSide ?? f;
    const after = nowSide ?? f;
    if (!(tighten ? neverLowers(before, after, zero) : neverLowers(after, before, zero))) return false;
  }
  return true;
}

/**
 * The keys of a map's plan whose operation fails the exact check. `trusted`: operations already
 * judged on the map's real entries (`redirectRaises`), replayed but not checked.
 * Each operation's key string and trie are looked up once (a cold start's plan runs this once per
 * map entry, in unoptimised code): the key strings in an array by the operation's position in the
 * plan, the tries by identity in one Map per direction, with no string built for them.
 */
export function unsafeKeys(plan: { readonly tighten: readonly MapDelta[]; readonly loosen: readonly MapDelta[] }, trusted: ReadonlySet<MapDelta>): Set<string> {
  const current = new Map<string, PolicyEntry | undefined>();
  const ingressTries = new Map<number, PolicyKey[]>();
  const egressTries = new Map<number, PolicyKey[]>();
  const nt = plan.tighten.length;
  const n = nt + plan.loosen.length;
  const keys: string[] = new Array<string>(n);
  const tries: PolicyKey[][] = new Array<PolicyKey[]>(n);
  for (let i = 0; i < n; i++) {
    const d = (i < nt ? plan.tighten[i] : plan.loosen[i - nt]) as MapDelta;
    const k = d.key;
    const ks = policyKeyString(k);
    keys[i] = ks;
    const byIdentity = k.direction === 'ingress' ? ingressTries : egressTries;
    let trie = byIdentity.get(k.identity);
    if (!trie) byIdentity.set(k.identity, (trie = []));
    tries[i] = trie;
    if (current.has(ks)) continue;
    current.set(ks, d.op === 'delete' ? d.entry : d.previous);
    trie.push(k);
  }
  const bad = new Set<string>();
  for (let i = 0; i < n; i++) {
    const tighten = i < nt;
    const d = (tighten ? plan.tighten[i] : plan.loosen[i - nt]) as MapDelta;
    const ks = keys[i] as string;
    const now = d.op === 'upsert' ? d.entry : undefined;
    if (!trusted.has(d) && !opSafe(d.key, current.get(ks), now, tighten, current, tries[i] as PolicyKey[])) bad.add(ks);
    current.set(ks, now);
  }
  return bad;
}
