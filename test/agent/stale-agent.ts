import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { identity, meta, pod, shop } from './crd-fixtures.js';

// The stale-veto agent of findings 2670, 2672 (29s) and 2671 (29t): a full map for filler while 303 waits.

/** filler's egress to every peer on `n` TCP ports from 1000, 40 a rule (Cilium's limit): one entry each. */
export function full(n: number): WatchItem {
  const egress = Array.from({ length: Math.ceil(n / 40) }, (_, r) => ({ toEntities: ['all'], toPorts: [{ ports: Array.from({ length: Math.min(40, n - 40 * r) }, (_, i) => ({ port: String(1000 + 40 * r + i), protocol: 'TCP' })) }] }));
  return { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta('full', { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'filler' } }, egress } } };
}

/** An agent on n1 with CRD identities: web (300), db (303) remote; client (301) and filler (304) local. */
export function crdAgent() {
  const a = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger: pino({ level: 'silent' }), registry: new Registry(), identities: 'external' });
  const settle = (items: readonly WatchItem[]): void => {
    for (const item of items) a.mirror.observe(item, 'test');
    for (let i = 0; i < 50 && !a.mirror.idle; i++) a.flush();
    a.flush();
  };
  settle([shop(), pod('web', 'web', 'n2', '10.0.1.2'), pod('client', 'client', 'n1', '10.0.0.3'), pod('db', 'db', 'n2', '10.0.1.4'), pod('filler', 'filler', 'n1', '10.0.0.5')]);
  settle([identity(300, 'web', 'ADDED'), identity(301, 'client', 'ADDED'), identity(303, 'db', 'ADDED'), identity(304, 'filler', 'ADDED')]);
  /** client's egress verdict for `peer` on 80/TCP. */
  const egress = (peer: number): 'allow' | 'redirect' | 'deny' => {
    const hit = a.engine.lookup('shop/client', peer, 'egress', 6, 80);
    return hit === undefined || hit.entry.deny ? 'deny' : hit.entry.proxyPort !== 0 ? 'redirect' : 'allow';
  };
  return { a, settle, egress };
}
