import type { Engine } from '../../src/engine/engine.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { EMPTY_DNS_CACHE } from '../../src/model/fqdn.js';

/** The live answers the engine holds (its DNS cache file), as `endpoint name ip expiresAt`, sorted. */
export function learnt(engine: Engine): string[] {
  const lines = engine.dnsCacheFile().trim().split('\n').map((l) => JSON.parse(l) as { now?: number; endpoint?: string; name?: string; ip?: string; expiresAt?: number });
  const now = lines[0]?.now ?? 0;
  return lines.flatMap((l) => (l.endpoint !== undefined && (l.expiresAt ?? 0) > now ? [`${l.endpoint} ${l.name} ${l.ip} ${l.expiresAt}`] : [])).sort();
}

/** The model's live answers, in `learnt`'s form. */
export function learntByOracle(state: ClusterState): string[] {
  const dns = state.dns ?? EMPTY_DNS_CACHE;
  return dns.entries.filter((e) => e.expiresAt > dns.now).map((e) => `${e.endpoint} ${e.name} ${e.ip.text} ${e.expiresAt}`).sort();
}
