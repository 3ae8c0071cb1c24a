import type { Agent } from './agent.js';
import type { EtcdIdentitySource } from './etcd-identities.js';
import type { MapBackend } from '../backend/backend.js';
import { kernelIpcacheContent } from '../backend/ipcache-content.js';
import { l7RowJson, labelsOfEngine, mapRecordJson } from '../backend/record-json.js';

/** With etcd identities: the table this node saw (id -> kvstore label-set key) and its allocation latencies. */
function etcdSummary(source: EtcdIdentitySource): { identities: Record<string, string>; allocationUs: number[] } {
  const identities = Object.create(null) as Record<string, string>;
  for (const [id, key] of source.identities()) identities[String(id)] = key;
  return { identities, allocationUs: source.stats.allocationUs };
}

/**
 * Endpoints, map entries, transactions, refusals; with `json`, every local endpoint's map as `maps
 * dump --json` shows it, and the ipcache the engine wants (prefix → identity).
 */
export function summary(agent: Agent, backend: MapBackend, json: boolean, source?: EtcdIdentitySource): string {
  const endpoints = backend.endpoints();
  const entries = endpoints.reduce((n, ep) => n + backend.size(ep), 0);
  const s = agent.summary;
  if (!json) {
    return `${endpoints.length} endpoints, ${entries} map entries, ${s.transactions} transactions, ${s.refusals} refused, ${agent.mirror.counts.stale} stale events dropped, ${agent.mirror.counts.ignored} objects of unknown kinds ignored\n`;
  }
  const lo = labelsOfEngine(agent.engine);
  const maps = endpoints.map((ep) => {
    const records = backend.dump(ep);
    return { endpoint: ep, backend: backend.kind, capacity: backend.capacity, pressure: records.length / backend.capacity, entries: records.map((r) => mapRecordJson(r, lo)), l7: agent.engine.l7Table(ep).map((row) => l7RowJson(row, lo)) };
  });
  return `${JSON.stringify({ endpoints: endpoints.length, entries, transactions: s.transactions, refusals: s.refusals, events: s.events, stale: agent.mirror.counts.stale, ignored: agent.mirror.counts.ignored, maps, ipcache: Object.fromEntries(kernelIpcacheContent(agent.engine)), ...(source ? etcdSummary(source) : {}) })}\n`;
}
