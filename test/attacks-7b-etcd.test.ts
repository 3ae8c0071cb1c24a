import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { EtcdIdentitySource } from '../src/agent/etcd-identities.js';
import { MemoryBackend } from '../src/backend/memory.js';
import type { WatchItem } from '../src/k8s/watch.js';
import { parseIp } from '../src/model/cidr.js';
import { CuttableProxy, EtcdServer, polls, requireEtcdOrSkip } from './kvstore/etcd-server.js';

/* Round 7b (docs/attack-findings-7b.md): what /healthz says while etcd identities cannot be reached. */

const hasEtcd = requireEtcdOrSkip('attack 7b etcd tests');
const suite = hasEtcd ? describe : describe.skip;
const logger = pino({ level: 'silent' });
let etcd: EtcdServer;
beforeAll(async () => {
  if (hasEtcd) etcd = await EtcdServer.start();
}, 30_000);
afterAll(async () => etcd?.destroy());

suite('84. agent: /healthz while etcd is down', () => {
  it('answers 503 while etcd is unreachable at start (the pod has no id, nothing is written), ok once it is back and the pod holds its id', async () => {
    const proxy = await CuttableProxy.start(etcd.url);
    proxy.cut();
    const source = new EtcdIdentitySource({ url: proxy.url, node: 'n1', logger, prefix: 'att7b/cilium/state/identities/v1', retryMs: 50 });
    let addr = '';
    const agent = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), identitySource: source, metricsAddr: '127.0.0.1:0', onListening: (a) => (addr = a) });
    const health = async (): Promise<[number, string]> => {
      const r = await fetch(`http://${addr}/healthz`);
      return [r.status, await r.text()];
    };
    try {
      // Without --exit-at-eof, run() resolves at stop: it is left running, and the server is up once addr is set.
      const running = agent.run();
      expect(await polls(() => addr !== '')).toBe(true);
      source.start();
      const items: WatchItem[] = [
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } },
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', namespace: 'shop', resourceVersion: '2', labels: { app: 'a' } }, spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.2' } } },
      ];
      for (const item of items) agent.mirror.observe(item, 'test');
      agent.flush();
      expect(await polls(() => source.stats.failures > 0)).toBe(true);
      const [status, body] = await health();
      expect(status, 'the pod waits for an id that cannot come: not ready').toBe(503);
      expect(body).toMatch(/^etcd identities: .*retrying/);
      expect(agent.engine.identityOfPod('shop/a'), 'meanwhile the pod holds no identity').toBeUndefined();
      proxy.heal();
      expect(await polls(() => (agent.flush(), source.settled && source.peek().length === 0 && agent.engine.identityOfPod('shop/a') !== undefined))).toBe(true);
      expect(agent.engine.identityOfIp(parseIp('10.0.0.2'))).toBe(agent.engine.identityOfPod('shop/a'));
      expect(await health()).toEqual([200, 'ok\n']);
      await agent.stop();
      await running;
    } finally {
      await agent.stop();
      await source.close();
      await proxy.close();
    }
  }, 60_000);
});
