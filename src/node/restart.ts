import { emptyWriteStats, MapBackend, MapRecord, WriteStats, writePlan } from '../backend/backend.js';
import { MapWrite, planWrites } from '../backend/write-plan.js';
import type { Engine } from '../engine/engine.js';
import { keyRedirect, redirectId } from '../engine/l7-tables.js';
import { diffMaps } from '../engine/map-deltas.js';
import { DEFAULT_PROXY_PORT_RANGE, ProxyPortAllocator, ProxyPortRange } from '../engine/proxy-ports.js';
import { parserOfRedirectPrecedence } from '../engine/rule-units.js';
import { LookupResult, policyKeyString, sourcePrecedence } from '../model/policy-map.js';

/**
 * Restart: the node-level step that needs both the engine and a backend (so it lives above both):
 * pinned maps are brought to the engine's desired state, and proxy ports are read back from them.
 */

export interface ReconcileStats extends WriteStats {
  created: number;
  removed: number;
}

/**
 * Brings the backend's maps to the engine's desired state by writing only the difference: on a
 * restart with pinned maps and unchanged policy, nothing is written. The differences of all
 * endpoints are written in the fail-closed order of `planWrites` (a crash left maps between two
 * states; converging from there tightens every map before loosening any). Maps of endpoints the
 * engine no longer has are removed first (that only drops traffic). `betweenPhases` runs between
 * the tighten and the loosen writes, as in `applyChangeSet` (where an ipcache is brought to the engine's).
 */
export function reconcile(engine: Engine, backend: MapBackend, betweenPhases?: () => void): ReconcileStats {
  const stats: ReconcileStats = { ...emptyWriteStats(), created: 0, removed: 0 };
  const desired = engine.endpoints();
  const keep = new Set(desired);
  const existing = new Set(backend.endpoints());
  const stale = [...existing].filter((ep) => !keep.has(ep));
  for (const ep of stale) {
    backend.remove(ep);
    // Free before the desired maps (and their new redirects) are computed.
    engine.releaseProxyPorts(ep);
    stats.removed++;
  }
  const current = new Map<string, MapRecord[]>();
  const writes: MapWrite[] = [];
  for (const ep of desired) {
    const have = new Map<string, LookupResult>();
    if (!existing.has(ep)) {
      backend.create(ep);
      stats.created++;
    } else {
      const records = backend.dump(ep, 'diff');
      current.set(ep, records);
      for (const r of records) have.set(policyKeyString(r.key), r);
    }
    const deltas = diffMaps(ep, have, engine.mapState(ep));
    if (deltas.length > 0) writes.push({ endpoint: ep, deltas, size: have.size });
  }
  const s = writePlan(backend, planWrites(writes, backend.capacity, (ep) => current.get(ep) ?? []), betweenPhases);
  stats.upserts = s.upserts;
  stats.deletes = s.deletes;
  stats.syscalls = s.syscalls;
  return stats;
}

/**
 * Proxy ports as the pinned maps hold them, for an engine restarting on them
 * (`new Engine({ proxyPortAllocator: proxyPortsFromMaps(backend) })`): each redirect entry names
 * its port and, through its precedence, its parser, so the restarted engine keeps every port a
 * redirect still uses and `reconcile` rewrites nothing for them. Ports of redirects that are gone
 * are released when the engine first computes that endpoint.
 */
export function proxyPortsFromMaps(backend: MapBackend, range: ProxyPortRange = DEFAULT_PROXY_PORT_RANGE): ProxyPortAllocator {
  const ports = new ProxyPortAllocator(range);
  for (const ep of backend.endpoints()) {
    for (const { key, entry } of backend.dump(ep)) {
      const parser = entry.deny || entry.proxyPort === 0 ? undefined : parserOfRedirectPrecedence(sourcePrecedence(entry.precedence));
      if (parser) ports.reserve(ep, redirectId(keyRedirect(key, parser)), entry.proxyPort);
    }
  }
  return ports;
}
