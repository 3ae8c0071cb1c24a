import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { EtcdIdentitySource } from '../../src/agent/etcd-identities.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { connectEtcd } from '../../src/kvstore/client.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { EtcdServer, polls, requireEtcdOrSkip } from '../kvstore/etcd-server.js';

/**
 * Finding 3824 (docs/attack-findings-33i.md): a master key outside the cluster range (which the engine skips) holding a
 * local pod's label set, written by a hostile etcd writer before the pod allocates. The node joined it, so the pod sat
 * at the unallocated number (255, denied both ways) for good while the source reported itself settled.
 */
const hasEtcd = requireEtcdOrSkip('agent etcd unusable id tests');
const suite = hasEtcd ? describe : describe.skip;
const logger = pino({ level: 'silent' });
let etcd: EtcdServer;
beforeAll(async () => {
  if (hasEtcd) etcd = await EtcdServer.start();
}, 30_000);
afterAll(async () => etcd?.destroy());

const LABELS = 'k8s:app=a;k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=shop;k8s:io.cilium.k8s.policy.cluster=default;k8s:io.cilium.k8s.policy.serviceaccount=default;k8s:io.kubernetes.pod.namespace=shop;';
const items: WatchItem[] = [
  { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } },
  { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', namespace: 'shop', resourceVersion: '2', labels: { app: 'a' } }, spec: { nodeName: 'n1', serviceAccountName: 'default', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.2' } } },
];

/** The pod's ipcache identity and the id its node's slave key names, once the source settled, after `hostile` wrote. */
async function allocateAfter(prefix: string, hostile: Record<string, string>): Promise<{ ipcache: number | undefined; slave: string | null }> {
  const client = connectEtcd(etcd.url);
  for (const [k, v] of Object.entries(hostile)) await client.put(`${prefix}/${k}`).value(v);
  const source = new EtcdIdentitySource({ url: etcd.url, node: 'n1', logger, prefix, retryMs: 50 });
  const agent = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), identitySource: source });
  try {
    source.start();
    for (const item of items) agent.mirror.observe(item, 'test');
    await polls(() => (agent.flush(), source.settled && source.peek().length === 0), 200);
    agent.flush();
    const ipcache = agent.engine.ipcache().find((e) => e.prefix === '10.0.0.2/32')?.identity;
    return { ipcache, slave: await client.get(`${prefix}/value/${LABELS}/n1`).string() };
  } finally {
    await source.close();
    client.close();
  }
}

suite('3824. an id the engine skips is not joined', () => {
  it('a master key in the reserved range, one past 2^24, and a slave key naming one: the pod gets an id of the cluster range', async () => {
    for (const [name, hostile] of [
      ['reserved master', { 'id/5': LABELS }],
      ['past 2^24 master', { 'id/20000000': LABELS }],
      ['reserved master and slave', { 'id/6': LABELS, [`value/${LABELS}/evil`]: '6' }],
    ] as const) {
      const { ipcache, slave } = await allocateAfter(`unusable-${name.replace(/\W/g, '')}/ids`, hostile);
      expect(ipcache, name).toBeGreaterThanOrEqual(256);
      expect(ipcache, name).toBeLessThanOrEqual(65535);
      expect(slave, name).toBe(String(ipcache));
    }
  }, 60_000);
});
