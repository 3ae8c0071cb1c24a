import type { LookupResult, PolicyEntry, PolicyKey } from '../model/policy-map.js';
import type { MapDelta } from './events.js';

export function entryEquals(a: PolicyEntry | undefined, b: PolicyEntry | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.deny === b.deny && a.proxyPort === b.proxyPort && a.precedence === b.precedence;
}

/**
 * The deltas turning one endpoint's map `before` into `after` (both keyed by policyKeyString):
 * an upsert per new or changed entry (with the value it replaces), a delete per vanished key.
 * Entries are compared as they are; `concrete` (when given) turns each delta's entries into what
 * the kernel map holds (the commit's proxy ports), in the same pass.
 */
export function diffMaps(endpoint: string, before: ReadonlyMap<string, LookupResult>, after: ReadonlyMap<string, LookupResult>, concrete?: (key: PolicyKey, e: PolicyEntry) => PolicyEntry): MapDelta[] {
  const out: MapDelta[] = [];
  for (const [ks, r] of after) {
    const b = before.get(ks);
    if (b && entryEquals(b.entry, r.entry)) continue;
    const entry = concrete ? concrete(r.key, r.entry) : r.entry;
    out.push(mapDelta(endpoint, 'upsert', r.key, entry, b && (concrete ? concrete(r.key, b.entry) : b.entry)));
  }
  for (const [ks, b] of before) if (!after.has(ks)) out.push(mapDelta(endpoint, 'delete', b.key, concrete ? concrete(b.key, b.entry) : b.entry, undefined));
  return out;
}

/**
 * One map delta (`previous` only on an overwrite). Every delta is built here: the cold start's
 * diffs run it thousands of times, so the rare delta of a churn event (`Commit.emit`, which runs
 * a handful of times per process) builds its object in warm code, not through the runtime.
 */
export function mapDelta(endpoint: string, op: 'upsert' | 'delete', key: PolicyKey, entry: PolicyEntry, previous: PolicyEntry | undefined): MapDelta {
  return previous === undefined ? { endpoint, op, key, entry } : { endpoint, op, key, entry, previous };
}
