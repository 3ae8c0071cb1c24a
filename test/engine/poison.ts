import type { EngineEvent } from '../../src/engine/events.js';
import { parseManifest } from '../../src/policy/manifest.js';

/**
 * A clusterwide policy of `rules` × 40 port entries for every local endpoint: over a small map
 * capacity, so a transaction holding it is refused while a local endpoint lives. UNPOISON deletes it.
 */
export function poison(rules: number): EngineEvent {
  return {
    type: 'upsertPolicy',
    policy: parseManifest(
      { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'poison' }, spec: { endpointSelector: {}, ingress: Array.from({ length: rules }, (_, i) => ({ fromEntities: ['all'], toPorts: [{ ports: Array.from({ length: 40 }, (_, j) => ({ port: String(2000 + 40 * i + j), protocol: 'TCP' })) }] })) } },
      'poison.yaml',
    ),
  };
}

export const UNPOISON: EngineEvent = { type: 'deletePolicy', ref: { kind: 'CiliumClusterwideNetworkPolicy', name: 'poison' } };
