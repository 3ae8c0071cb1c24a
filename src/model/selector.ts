import { intern } from './intern.js';
import { formatLabelKey, Label, LabelKey, LabelSet, SOURCE_ANY } from './labels.js';

export type SelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface Requirement {
  readonly key: LabelKey;
  readonly operator: SelectorOperator;
  /** Sorted, de-duplicated; empty for Exists and DoesNotExist. */
  readonly values: readonly string[];
}

/**
 * A normalised label selector: the AND of its requirements. No requirements selects everything.
 * Two selectors that select the same way for every label set built from the same keys have the
 * same `key`, so caches can share them.
 */
export interface Selector {
  readonly requirements: readonly Requirement[];
  readonly key: string;
}

function requirementKey(r: Requirement): string {
  const k = formatLabelKey(r.key);
  switch (r.operator) {
    case 'In':
      return r.values.length === 1 ? `${k}=${r.values[0]}` : `${k} in (${r.values.join(',')})`;
    case 'NotIn':
      return `${k} notin (${r.values.join(',')})`;
    case 'Exists':
      return k;
    case 'DoesNotExist':
      return `!${k}`;
  }
}

export function makeSelector(requirements: Iterable<Requirement>): Selector {
  const unique = new Map<string, Requirement>();
  for (const r of requirements) {
    const values = r.operator === 'In' || r.operator === 'NotIn' ? [...new Set(r.values)].sort() : [];
    const norm: Requirement = { key: r.key, operator: r.operator, values };
    unique.set(requirementKey(norm), norm);
  }
  const sorted = [...unique.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return { requirements: sorted.map(([, r]) => r), key: intern(sorted.map(([k]) => k).join(' && ') || '<all>') };
}

export const WILDCARD_SELECTOR: Selector = makeSelector([]);

/**
 * A selector that every label set matching `a` or `b` matches (finding 2800): the requirements both have, and for a
 * key `a` restricts with In where `b` does too, In over the values of both (a set matching either side meets each
 * requirement of that side). `a` itself when the two are the same.
 */
export function coveringSelector(a: Selector, b: Selector): Selector {
  if (a.key === b.key) return a;
  const theirs = new Set(b.requirements.map(requirementKey));
  const out: Requirement[] = [];
  for (const r of a.requirements) {
    const k = formatLabelKey(r.key);
    const q = r.operator === 'In' ? b.requirements.find((x) => x.operator === 'In' && formatLabelKey(x.key) === k) : undefined;
    if (theirs.has(requirementKey(r))) out.push(r);
    else if (q !== undefined) out.push({ key: r.key, operator: 'In', values: [...r.values, ...q.values] });
  }
  return makeSelector(out);
}

export function matchLabelRequirement(key: LabelKey, value: string): Requirement {
  return { key, operator: 'In', values: [value] };
}

export function existsRequirement(key: LabelKey): Requirement {
  return { key, operator: 'Exists', values: [] };
}

/** Adds requirements to a selector (AND). */
export function andSelector(sel: Selector, extra: Iterable<Requirement>): Selector {
  return makeSelector([...sel.requirements, ...extra]);
}

export function hasSource(sel: Selector, source: string): boolean {
  return sel.requirements.some((r) => r.key.source === source);
}

/**
 * Indexed loops and no values array: selectors are evaluated once per (selector, candidate
 * identity), mostly in unoptimized code during a cold start, where each closure and array is an
 * allocation.
 */
function requirementMatches(r: Requirement, labels: LabelSet): boolean {
  // A key of source `any` looks through every source.
  const { key, source } = r.key;
  let found = false;
  let inValues = false;
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i] as LabelSet[number];
    if (l.key !== key || (source !== SOURCE_ANY && l.source !== source)) continue;
    found = true;
    if (r.values.includes(l.value)) {
      inValues = true;
      break;
    }
  }
  switch (r.operator) {
    case 'In':
      return inValues;
    case 'NotIn':
      return !inValues;
    case 'Exists':
      return found;
    case 'DoesNotExist':
      return !found;
  }
}

/**
 * With `index` (the same set's `labelIndex`), each requirement reads only the labels of its key:
 * matching costs the selector's size, not the set's (attack finding 1143: identities of 10,000 labels).
 */
export function selectorMatches(sel: Selector, labels: LabelSet, index?: LabelIndex): boolean {
  const reqs = sel.requirements;
  for (let i = 0; i < reqs.length; i++) {
    const r = reqs[i] as Requirement;
    if (!requirementMatches(r, index === undefined ? labels : (index.get(r.key.key) ?? NO_LABELS))) return false;
  }
  return true;
}

/** A label set's labels by key, of every source (a key of source `any` looks through them all). */
export type LabelIndex = ReadonlyMap<string, LabelSet>;

const NO_LABELS: LabelSet = [];

export function labelIndex(labels: LabelSet): LabelIndex {
  const out = new Map<string, Label[]>();
  for (const l of labels) {
    const same = out.get(l.key);
    if (same === undefined) out.set(l.key, [l]);
    else same.push(l);
  }
  return out;
}

export function isWildcard(sel: Selector): boolean {
  return sel.requirements.length === 0;
}

