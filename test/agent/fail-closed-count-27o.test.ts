import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';

/**
 * Review 27o of round 27q: a pod the engine refuses is held fail-closed and counted among the refused objects
 * (/healthz, `distill_objects_refused`). After the commit of another change it is read again (engine-batches.ts
 * `commit`): between that commit and the next flush's refusal, is it still counted, and is it still held at the
 * unallocated number? Setup as test/agent/refused-pod-27q.test.ts (an Admin Deny whose `networks` peer holds one
 * address of the dual-stack db: the engine refuses db).
 */
const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const pod = (name: string, ips: string[], node: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'shop', labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } },
});
const denyDb: WatchItem = {
  type: 'ADDED',
  object: {
    apiVersion: 'policy.networking.k8s.io/v1beta1',
    kind: 'ClusterNetworkPolicy',
    metadata: meta('deny-db'),
    spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ networks: ['10.0.0.3/32'] }, { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'db' } } } }] }] },
  },
};

describe('27o: the count of a pod held fail-closed across the commit of another change', () => {
  it('stays counted and held at the unallocated number at every flush', () => {
    const agent = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), stack: 'dual' });
    const settle = (items: readonly WatchItem[]): void => {
      for (const item of items) agent.mirror.observe(item, 'test');
      agent.flush();
      for (let i = 0; i < 50 && !agent.mirror.idle; i++) agent.flush();
    };
    settle([{ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } }, pod('web', ['10.0.0.2', 'fd00::2'], 'n1'), denyDb]);
    settle([pod('db', ['10.0.0.3', 'fd00::3'], 'n2')]);
    expect(agent.mirror.refusedObjects()).toEqual(['Pod/shop/db']);
    // Another change, flushed one flush at a time.
    agent.mirror.observe(pod('api', ['10.0.0.5', 'fd00::5'], 'n2'), 'test');
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      agent.flush();
      seen.push(`${agent.mirror.refusedObjectCount} ${agent.engine.identityOfIp(parseIp('fd00::3'))}`);
    }
    expect(seen).toEqual(Array.from({ length: 6 }, () => `1 ${UNALLOCATED_POD_IDENTITY}`));
    // A change of db itself (still refused): counted between its arrival and the flush that refuses it.
    const moved = pod('db', ['10.0.0.3', 'fd00::3'], 'n3');
    agent.mirror.observe({ ...moved, type: 'MODIFIED' } as WatchItem, 'test');
    const again = [`${agent.mirror.refusedObjectCount}`];
    for (let i = 0; i < 3; i++) {
      agent.flush();
      again.push(`${agent.mirror.refusedObjectCount} ${agent.engine.identityOfIp(parseIp('fd00::3'))}`);
    }
    expect(again).toEqual(['1', ...Array.from({ length: 3 }, () => `1 ${UNALLOCATED_POD_IDENTITY}`)]);
    // Its policy deleted, db commits as written: no longer counted.
    agent.mirror.observe({ type: 'DELETED', object: { ...(denyDb as { object: Record<string, unknown> }).object, metadata: meta('deny-db') } } as WatchItem, 'test');
    for (let i = 0; i < 10 && !agent.mirror.idle; i++) agent.flush();
    agent.flush();
    expect(agent.mirror.refusedObjectCount).toBe(0);
    expect(agent.engine.identityOfIp(parseIp('fd00::3'))).toBe(agent.engine.identityOfPod('shop/db'));
  });
});
