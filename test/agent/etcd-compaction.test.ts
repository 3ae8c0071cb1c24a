import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { EtcdIdentitySource } from '../../src/agent/etcd-identities.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { connectEtcd } from '../../src/kvstore/client.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { CuttableProxy, EtcdServer, requireEtcdOrSkip } from '../kvstore/etcd-server.js';

/**
 * Finding 740 end to end (docs/attack-findings-16w.md): the agent cut off from etcd while an id
 * allowed by a policy is collected and its number reused for other labels, and the history
 * compacted. Before, the watch died silently and the engine kept the old labels: the local
 * endpoint's map went on allowing the number, now the other pods'.
 */
const hasEtcd = requireEtcdOrSkip('agent etcd compaction test');
const suite = hasEtcd ? describe : describe.skip;
const logger = pino({ level: 'silent' });
let etcd: EtcdServer;
beforeAll(async () => {
  if (hasEtcd) etcd = await EtcdServer.start();
}, 30_000);
afterAll(async () => etcd?.destroy());

const polls = async (done: () => boolean): Promise<boolean> => {
  for (let i = 0; i < 300; i++) {
    if (done()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return done();
};

suite('agent --identities etcd over a compacted history (740)', () => {
  it('740. a reused id number stops being allowed as its old labels', async () => {
    const prefix = 'compaction/cilium/state/identities/v1';
    const client = connectEtcd(etcd.url);
    const proxy = await CuttableProxy.start(etcd.url);
    await client.put(`${prefix}/id/300`).value('k8s:app=db;k8s:io.kubernetes.pod.namespace=shop;');
    const backend = new MemoryBackend();
    const source = new EtcdIdentitySource({ url: proxy.url, node: 'n1', logger, prefix, retryMs: 50 });
    const agent = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identitySource: source });
    const allowed = (): boolean => agent.engine.endpoints().includes('shop/web') && agent.engine.lookup('shop/web', 300, 'ingress', 6, 80)?.entry.deny === false;
    try {
      source.start();
      const items: WatchItem[] = [
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } },
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'shop', resourceVersion: '2', labels: { app: 'web' } }, spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.2' } } },
        { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'from-db', namespace: 'shop', resourceVersion: '3' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'db' } }] }] } } },
      ];
      for (const item of items) agent.mirror.observe(item, 'test');
      expect(await polls(() => (agent.flush(), allowed()))).toBe(true);
      proxy.cut();
      await client.delete().key(`${prefix}/id/300`);
      await client.put(`${prefix}/id/300`).value('k8s:app=evil;k8s:io.kubernetes.pod.namespace=shop;');
      const rev = (await client.put('compaction/unrelated').value('x')).header.revision;
      await client.kv.compact({ revision: rev });
      proxy.heal();
      expect(await polls(() => (agent.flush(), !allowed()))).toBe(true);
      expect(agent.engine.identityLabels(300)?.some((l) => l.key === 'app' && l.value === 'evil')).toBe(true);
      expect(agent.summary.refusals).toBe(0);
    } finally {
      await source.close();
      client.close();
      await proxy.close();
    }
  }, 60_000);
});
