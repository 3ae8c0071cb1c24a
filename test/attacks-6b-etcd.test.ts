import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { EtcdIdentitySource } from '../src/agent/etcd-identities.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { connectEtcd } from '../src/kvstore/client.js';
import type { WatchItem } from '../src/k8s/watch.js';
import { parseIp } from '../src/model/cidr.js';
import { EtcdServer, polls, requireEtcdOrSkip } from './kvstore/etcd-server.js';

const hasEtcd = requireEtcdOrSkip('attack 6b etcd tests');
const suite = hasEtcd ? describe : describe.skip;
const logger = pino({ level: 'silent' });
let etcd: EtcdServer;
beforeAll(async () => {
  if (hasEtcd) etcd = await EtcdServer.start();
}, 30_000);
afterAll(async () => etcd?.destroy());

suite('hostile etcd identities', () => {
  for (const how of ['relabelled', 'deleted and recreated', 'deleted'] as const) {
    it(`a local pod's id ${how}${how === 'deleted' ? '' : ' with other labels'}: the pod gets an id of its own labels again`, async () => {
      const prefix = `att6b-${how.replace(/ /g, '-')}/cilium/state/identities/v1`;
      const client = connectEtcd(etcd.url);
      const backend = new MemoryBackend();
      const source = new EtcdIdentitySource({ url: etcd.url, node: 'n1', logger, prefix, retryMs: 50 });
      const agent = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identitySource: source });
      const labelsOfPod = (): string[] => {
        const id = agent.engine.identityOfIp(parseIp('10.0.0.2'));
        return id === undefined ? [] : (agent.engine.identityLabels(id) ?? []).map((l) => `${l.source}:${l.key}=${l.value}`);
      };
      try {
        source.start();
        const items: WatchItem[] = [
          { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } },
          { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', namespace: 'shop', resourceVersion: '2', labels: { app: 'a' } }, spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.2' } } },
        ];
        for (const item of items) agent.mirror.observe(item, 'test');
        const settled = async (): Promise<boolean> =>
          polls(() => {
            agent.flush();
            return source.settled && source.peek().length === 0 && labelsOfPod().includes('k8s:app=a');
          });
        expect(await settled()).toBe(true);
        const id = agent.engine.identityOfIp(parseIp('10.0.0.2'))!;
        const hostile = 'k8s:app=admin;k8s:io.kubernetes.pod.namespace=shop;';
        if (how !== 'relabelled') await client.delete().key(`${prefix}/id/${id}`);
        if (how === 'deleted') {
          // As Cilium's syncLocalKeys: the master key is re-created for the same id.
          let master: string | null = null;
          for (let i = 0; i < 250 && master === null; i++) {
            await new Promise((r) => setTimeout(r, 20));
            master = await client.get(`${prefix}/id/${id}`).string();
          }
          expect(master).toBe('k8s:app=a;k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=shop;k8s:io.cilium.k8s.policy.cluster=default;k8s:io.cilium.k8s.policy.serviceaccount=default;k8s:io.kubernetes.pod.namespace=shop;');
          expect(await settled(), `pod labels now: ${labelsOfPod().join(',')}`).toBe(true);
          expect(agent.engine.identityOfIp(parseIp('10.0.0.2'))).toBe(id);
          return;
        }
        await client.put(`${prefix}/id/${id}`).value(hostile);
        await polls(() => {
          agent.flush();
          return agent.engine.identityLabels(id)?.some((l) => l.value === 'admin') === true;
        });
        // Not Cilium's: its endpoint keeps the id, whose traffic then carries k8s:app=admin on every node.
        expect(await settled(), `pod labels now: ${labelsOfPod().join(',')}`).toBe(true);
        expect(agent.engine.identityOfIp(parseIp('10.0.0.2'))).not.toBe(id);
      } finally {
        await source.close();
        client.close();
      }
    }, 60_000);
  }
});
