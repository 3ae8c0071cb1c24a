import type { Engine } from '../engine/engine.js';
import type { MapDelta } from '../engine/events.js';
import { entryEquals } from '../engine/map-state.js';
import { pickWinner, policyKeyString } from '../model/mapstate.js';
import type { Direction } from '../model/rules.js';
import { emptyWriteStats, MapBackend, WriteStats } from './backend.js';
import type { DecodedValue } from './encoding.js';

export interface ReconcileStats extends WriteStats {
  created: number;
  removed: number;
}

/**
 * Brings the backend's maps to the engine's desired state by writing only the difference: on a
 * restart with pinned maps and unchanged policy, nothing is written. Maps of endpoints the engine
 * no longer has are removed.
 */
export function reconcile(engine: Engine, backend: MapBackend): ReconcileStats {
  const stats: ReconcileStats = { ...emptyWriteStats(), created: 0, removed: 0 };
  const desired = new Set(engine.endpoints());
  for (const ep of backend.endpoints()) {
    if (!desired.has(ep)) {
      backend.remove(ep);
      stats.removed++;
    }
  }
  const existing = new Set(backend.endpoints());
  for (const ep of desired) {
    const want = engine.mapState(ep);
    const deltas: MapDelta[] = [];
    if (!existing.has(ep)) {
      backend.create(ep);
      stats.created++;
    } else {
      for (const r of backend.dump(ep)) {
        const w = want.get(policyKeyString(r.key));
        if (!w) deltas.push({ endpoint: ep, op: 'delete', key: r.key, entry: r.entry });
        else if (!entryEquals(w.entry, r.entry)) deltas.push({ endpoint: ep, op: 'upsert', key: w.key, entry: w.entry, previous: r.entry });
      }
    }
    const have = new Set(existing.has(ep) ? backend.dump(ep).map((r) => policyKeyString(r.key)) : []);
    for (const [ks, w] of want) if (!have.has(ks)) deltas.push({ endpoint: ep, op: 'upsert', key: w.key, entry: w.entry });
    if (deltas.length === 0) continue;
    const s = backend.apply(ep, deltas);
    stats.upserts += s.upserts;
    stats.deletes += s.deletes;
    stats.syscalls += s.syscalls;
  }
  return stats;
}

/**
 * The datapath decision from a backend's maps, as the kernel program takes it: an LPM lookup with
 * the peer's identity and one with identity 0, then the datapath's `pickWinner` (the value
 * carries its key's protocol+port prefix length for exactly this).
 */
export function backendLookup(backend: MapBackend, endpoint: string, peer: number, direction: Direction, protocol: number, port: number): DecodedValue | undefined {
  const specific = backend.lookup(endpoint, peer, direction, protocol, port);
  const wildcard = peer === 0 ? undefined : backend.lookup(endpoint, 0, direction, protocol, port);
  return pickWinner(specific, wildcard, (v) => v.entry.precedence, (v) => v.l4PrefixBits);
}
