import { adminLevel, isPassFloor, passFloorPrecedence, tierPrecedence, PolicyKey, policyKeyString } from '../model/policy-map.js';
import type { Direction } from '../model/rules.js';
import type { Tier, TierOrigin } from '../model/tiers.js';
import { type Contribution, derivedContribution } from './contribution.js';
import { covers, meet } from './raw-key.js';

/*
 * The ClusterNetworkPolicy parts of a map state that need no raw layer (map-state.ts drives them):
 * the Pass-band copies' mark, and a same-priority group's cells (docs/tiers-encoding.md §3).
 */

/** Pass-band copies: their source holds the same L7 rules on a broader key, so the L7 tables skip them. */
const COPIES = new WeakSet<Contribution>();

export function markPassCopy(c: Contribution): void {
  COPIES.add(c);
}

export function isPassCopy(c: Contribution): boolean {
  return COPIES.has(c);
}

/** Contributions by raw key, with their counts. */
export type Held = Map<string, { readonly key: PolicyKey; readonly contribs: Map<Contribution, number> }>;

export function hold(held: Held, key: PolicyKey, c: Contribution, sign: 1 | -1): void {
  const ks = policyKeyString(key);
  const h = held.get(ks);
  const n = (h?.contribs.get(c) ?? 0) + sign;
  if (n > 0) {
    if (h) h.contribs.set(c, n);
    else held.set(ks, { key, contribs: new Map([[c, n]]) });
  } else if (h) {
    h.contribs.delete(c);
    if (h.contribs.size === 0) held.delete(ks);
  }
}

/** The contributions of one tier, priority and direction in one map state. */
export interface Group {
  readonly tier: Tier;
  readonly priority: number;
  readonly direction: Direction;
  /** Policy name → contributions it makes. */
  readonly policies: Map<string, number>;
  /** While two or more policies contribute (flat): their contributions, out of the raw layer. */
  held: Held | null;
  /** In the raw layer while flat. */
  cells: { readonly key: PolicyKey; readonly c: Contribution }[];
}

const tierOf = (c: Contribution): TierOrigin => c.origin?.tier as TierOrigin;

/**
 * How specific a cell is: 0 … 19, strictly greater for a strictly smaller key (L4 prefix, then the
 * specific identity). A cell at depth `d` takes the slot of rule index `24 − d` of its priority
 * (the group's own rules are out of the raw layer while it is flat), so of the cells covering a
 * packet the most specific one has the highest level.
 */
function cellDepth(k: PolicyKey): number {
  return (k.protocol === 0 ? 0 : 1 + k.portPrefixLen) + (k.identity === 0 ? 0 : 1);
}

/**
 * A same-priority group's cells: its keys, plus the intersection of each identity-specific key
 * with each identity-0 key, so the cells covering a packet always have a most specific one. Each
 * cell gets the oracle's group decision for the packets it is the most specific cell of: each
 * policy's first matching rule (its highest-precedence contribution covering the cell), then Deny
 * over Pass over Accept, the policy first by name naming the rule. An Admin Pass cell is a floor:
 * the Pass band machinery materialises the lower tiers on it. A Baseline Pass is an Accept.
 */
export function flatten(held: Held): { key: PolicyKey; c: Contribution }[] {
  const cells = new Map<string, PolicyKey>();
  const keys = [...held.values()].map((h) => h.key);
  for (const k of keys) cells.set(policyKeyString(k), k);
  for (const a of keys) if (a.identity !== 0) for (const z of keys) {
    const m = z.identity === 0 ? meet(a, z) : undefined;
    if (m) cells.set(policyKeyString(m), m);
  }
  const out: { key: PolicyKey; c: Contribution }[] = [];
  for (const cell of cells.values()) {
    const decided = cellDecision(held, cell);
    if (!decided) continue;
    const t = tierOf(decided);
    const index = 24 - cellDepth(cell);
    const pass = isPassFloor(decided.entry.precedence);
    const precedence = pass ? passFloorPrecedence(adminLevel(t.priority, index)) : tierPrecedence(t.tier, t.priority, index, decided.entry.deny);
    out.push({ key: cell, c: derivedContribution(decided.origin, { deny: decided.entry.deny, proxyPort: 0, precedence }, undefined, `${decided.label}@cell`) });
  }
  return out;
}

/** The group's decision for `cell`: each policy's first matching rule, then Deny over Pass over Accept, the first policy by name naming it. */
function cellDecision(held: Held, cell: PolicyKey): Contribution | undefined {
  const first = new Map<string, Contribution>();
  for (const h of held.values()) {
    if ((h.key.identity !== 0 && h.key.identity !== cell.identity) || !covers(h.key, cell)) continue;
    for (const c of h.contribs.keys()) {
      const best = first.get(tierOf(c).policy);
      if (!best || c.entry.precedence > best.entry.precedence) first.set(tierOf(c).policy, c);
    }
  }
  const byName = [...first.values()].sort((a, b) => (tierOf(a).policy < tierOf(b).policy ? -1 : 1));
  return byName.find((c) => c.entry.deny && !isPassFloor(c.entry.precedence)) ?? byName.find((c) => isPassFloor(c.entry.precedence)) ?? byName[0];
}
