import { intern } from './intern.js';
import { formatLabelKey, LabelKey, LabelSet, SOURCE_ANY } from './labels.js';

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

export function selectorMatches(sel: Selector, labels: LabelSet): boolean {
  const reqs = sel.requirements;
  for (let i = 0; i < reqs.length; i++) if (!requirementMatches(reqs[i] as Requirement, labels)) return false;
  return true;
}

export function isWildcard(sel: Selector): boolean {
  return sel.requirements.length === 0;
}

