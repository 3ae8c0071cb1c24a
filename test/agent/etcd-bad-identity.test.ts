import { Writable } from 'node:stream';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { EtcdIdentitySource } from '../../src/agent/etcd-identities.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { connectEtcd } from '../../src/kvstore/client.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { CuttableProxy, EtcdServer, polls as pollsUpTo, requireEtcdOrSkip } from '../kvstore/etcd-server.js';

/**
 * One master key in etcd that the engine refuses (an id in the reserved range, a `reserved:`
 * label) used to be handed to every transaction, never acknowledged: every later transaction of
 * the node was refused, so no pod got a map and no policy change (a new deny included) was ever
 * applied. Such a key is now skipped and counted, as malformed keys are.
 */
const hasEtcd = requireEtcdOrSkip('agent etcd bad identity tests');
const suite = hasEtcd ? describe : describe.skip;
const logger = pino({ level: 'silent' });
let etcd: EtcdServer;
beforeAll(async () => {
  if (hasEtcd) etcd = await EtcdServer.start();
}, 30_000);
afterAll(async () => etcd?.destroy());

const polls = (done: () => boolean): Promise<boolean> => pollsUpTo(done, 500);

/** An agent whose etcd identities come through a proxy the test can cut, id 300 = app=db of shop already put. */
async function agentBehindProxy(prefix: string, statusIntervalMs?: number) {
  const client = connectEtcd(etcd.url);
  const proxy = await CuttableProxy.start(etcd.url);
  await client.put(`${prefix}/id/300`).value('k8s:app=db;k8s:io.kubernetes.pod.namespace=shop;');
  const source = new EtcdIdentitySource({ url: proxy.url, node: 'n1', logger, prefix, retryMs: 50, ...(statusIntervalMs !== undefined ? { statusIntervalMs } : {}) });
  const agent = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), identitySource: source });
  const close = async (): Promise<void> => {
    await source.close();
    client.close();
    await proxy.close();
  };
  return { client, proxy, source, agent, close };
}

suite('agent --identities etcd: a master key the engine cannot take', () => {
  it('is skipped: the node keeps applying transactions; an id that is or turns bad is a fail-closed stand-in (2001)', async () => {
    const prefix = 'bad-identity/cilium/state/identities/v1';
    const client = connectEtcd(etcd.url);
    await client.put(`${prefix}/id/5`).value('k8s:app=x;');
    await client.put(`${prefix}/id/300`).value('reserved:host=;');
    await client.put(`${prefix}/id/301`).value('k8s:app=fine;');
    const backend = new MemoryBackend();
    const source = new EtcdIdentitySource({ url: etcd.url, node: 'n1', logger, prefix, retryMs: 50 });
    const agent = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identitySource: source });
    try {
      source.start();
      await polls(() => source.stats.skipped === 2 && source.peek().length > 0);
      const items: WatchItem[] = [
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } },
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', namespace: 'shop', resourceVersion: '2', labels: { app: 'a' } }, spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.2' } } },
      ];
      for (const item of items) agent.mirror.observe(item, 'test');
      agent.flush();
      await polls(() => {
        agent.flush();
        return backend.endpoints().length > 0 && source.peek().length === 0;
      });
      expect(agent.summary.refusals).toBe(0);
      expect(backend.endpoints()).toEqual(['shop/a']);
      expect(agent.engine.identityLabels(301)).toBeDefined();
      const denied = (id: number): boolean | undefined => agent.engine.lookup('shop/a', id, 'ingress', 6, 80)?.entry.deny;
      // shop/a has no policy (default allow, once its own id is allocated): 301 is allowed; 300 (a reserved label,
      // which Cilium reads) is a stand-in, denied.
      await polls(() => (agent.flush(), denied(301) === false));
      expect(denied(301)).toBe(false);
      expect(denied(300)).toBe(true);
      // 301 turns bad: the engine holds it as a stand-in rather than freezing (or deleting it: 2001).
      await client.put(`${prefix}/id/301`).value('cidr:10.0.0.0/8=;');
      await polls(() => {
        agent.flush();
        return source.stats.skipped === 3 && source.peek().length === 0;
      });
      expect(agent.summary.refusals).toBe(0);
      expect(denied(301)).toBe(true);
      // Deleting the stand-ins' keys deletes them; the out-of-range key's deletion is no event for the engine.
      await client.delete().key(`${prefix}/id/5`);
      await client.delete().key(`${prefix}/id/301`);
      await polls(() => {
        agent.flush();
        return source.peek().length === 0 && denied(301) === false;
      });
      expect(denied(301)).toBe(false);
      expect(agent.summary.refusals).toBe(0);
    } finally {
      await source.close();
      client.close();
    }
  }, 60_000);
});

/**
 * Finding 740 end to end (docs/attack-findings-16w.md): the agent cut off from etcd while an id
 * allowed by a policy is collected and its number reused for other labels, and the history
 * compacted. Before, the watch died silently and the engine kept the old labels: the local
 * endpoint's map went on allowing the number, now the other pods'.
 */
suite('agent --identities etcd over a compacted history', () => {
  it('740. a reused id number stops being allowed as its old labels', async () => {
    const prefix = 'compaction/cilium/state/identities/v1';
    const { client, proxy, source, agent, close } = await agentBehindProxy(prefix);
    const allowed = (): boolean => agent.engine.endpoints().includes('shop/web') && agent.engine.lookup('shop/web', 300, 'ingress', 6, 80)?.entry.deny === false;
    try {
      source.start();
      const items: WatchItem[] = [
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } },
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'shop', resourceVersion: '2', labels: { app: 'web' } }, spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.2' } } },
        { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'from-db', namespace: 'shop', resourceVersion: '3' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'db' } }] }] } } },
      ];
      for (const item of items) agent.mirror.observe(item, 'test');
      await polls(() => (agent.flush(), allowed()));
      expect(allowed()).toBe(true);
      proxy.cut();
      await client.delete().key(`${prefix}/id/300`);
      await client.put(`${prefix}/id/300`).value('k8s:app=evil;k8s:io.kubernetes.pod.namespace=shop;');
      const rev = (await client.put('compaction/unrelated').value('x')).header.revision;
      await client.kv.compact({ revision: rev });
      proxy.heal();
      await polls(() => (agent.flush(), !allowed()));
      expect(allowed()).toBe(false);
      expect(agent.engine.identityLabels(300)?.some((l) => l.key === 'app' && l.value === 'evil')).toBe(true);
      expect(agent.summary.refusals).toBe(0);
    } finally {
      await close();
    }
  }, 60_000);
});

/**
 * Finding 1820 (docs/attack-findings-24w.md): a master key rewritten to a value distill cannot read (here Cilium's
 * form without its trailing ';', which Cilium's `NewLabelsFromSortedList` reads as app=evil) kept the id's last
 * labels: the local endpoint's map went on allowing 300 as app=db. And a local pod's own id so rewritten stayed
 * held: its pods kept a number other nodes read as other labels. Now the id is a fail-closed stand-in (finding 2001:
 * deleting it, as 1820 did, let its pods fall to identity 0); a held one is dropped and its pods get a new id of their
 * own labels, which they take over the stand-in.
 */
suite('agent --identities etcd: a master key rewritten to a value distill cannot read', () => {
  it('1820. the id stops being allowed as its old labels; a local pod whose own id is so rewritten gets a new one', async () => {
    const prefix = 'unreadable/cilium/state/identities/v1';
    const { client, source, agent, close } = await agentBehindProxy(prefix);
    const allowed = (): boolean => agent.engine.endpoints().includes('shop/web') && agent.engine.lookup('shop/web', 300, 'ingress', 6, 80)?.entry.deny === false;
    const webId = (): number | undefined => source.identities().size > 0 ? [...source.identities()].find(([, labels]) => labels.startsWith('k8s:app=web;'))?.[0] : undefined;
    try {
      source.start();
      const items: WatchItem[] = [
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } },
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'shop', resourceVersion: '2', labels: { app: 'web' } }, spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.2' } } },
        { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'from-db', namespace: 'shop', resourceVersion: '3' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'db' } }] }] } } },
      ];
      for (const item of items) agent.mirror.observe(item, 'test');
      await polls(() => (agent.flush(), allowed() && source.settled && webId() !== undefined));
      expect(allowed()).toBe(true);
      await client.put(`${prefix}/id/300`).value('k8s:app=evil;k8s:io.kubernetes.pod.namespace=shop');
      await polls(() => (agent.flush(), !allowed()));
      expect(allowed()).toBe(false);
      // Denied by an entry of its own (the stand-in) on egress, where web's default allow admits every number; on
      // ingress no identity-0 entry admits a number no selector names, so no entry is needed (finding 2132).
      expect(agent.engine.lookup('shop/web', 300, 'egress', 6, 80)?.entry.deny).toBe(true);
      expect(agent.engine.lookup('shop/web', 300, 'ingress', 6, 80)).toBeUndefined();
      // The local pod's own id, rewritten the same way: dropped and allocated again (a new number for app=web).
      const old = webId() as number;
      await client.put(`${prefix}/id/${old}`).value('k8s:app=evil;k8s:io.kubernetes.pod.namespace=shop');
      await polls(() => (agent.flush(), source.settled && webId() !== undefined && webId() !== old));
      const now = webId();
      expect(now).toBeDefined();
      expect(now).not.toBe(old);
      // web's pod takes the new readable id over its old number's stand-in.
      await polls(() => (agent.flush(), agent.engine.identityOfIp(parseIp('10.0.0.2')) === now));
      expect(agent.engine.identityOfIp(parseIp('10.0.0.2'))).toBe(now);
      expect(await client.get(`${prefix}/value/${source.identities().get(now as number)}/n1`).string()).toBe(String(now));
      expect(agent.summary.refusals).toBe(0);
    } finally {
      await close();
    }
  }, 60_000);
});

/**
 * Finding 745 (docs/attack-findings-16w.md, -17w.md): a relist that keeps failing, or a watch cut
 * off from etcd, was on no health check: the source's `problem` held the pump's errors only, and
 * with every local pod settled the pump does not run. Cilium's etcd status checker reports an
 * unreachable etcd as the kvstore's error (pkg/kvstore/etcd.go `statusChecker`, `Status()`), which
 * fails the agent's health. The relist here fails for good because a second writer put more under
 * id/ than one List response can carry (grpc-js's 4 MiB receive limit): the watch's events are
 * small, so only the relist after a compaction hits it.
 */
suite('agent --identities etcd: the identity watch down or its relist failing', () => {
  it('745. is on notReady (/healthz) until the watcher follows etcd again', async () => {
    const prefix = 'relist-fails/cilium/state/identities/v1';
    const { client, proxy, source, agent, close } = await agentBehindProxy(prefix);
    try {
      source.start();
      await polls(() => (agent.flush(), source.settled && agent.engine.identityLabels(300) !== undefined));
      expect(agent.notReady).toBeUndefined();
      proxy.cut();
      await polls(() => agent.notReady !== undefined);
      expect(agent.notReady).toMatch(/etcd identities: watch disconnected/);
      await client.delete().key(`${prefix}/id/300`);
      const junk = 'x'.repeat(1_000_000);
      for (let i = 0; i < 5; i++) await client.put(`${prefix}/id/junk-${i}`).value(junk);
      const rev = (await client.put('relist-fails/unrelated').value('x')).header.revision;
      await client.kv.compact({ revision: rev });
      proxy.heal();
      await polls(() => /relist after a canceled watch failed ([2-9]|\d{2,}) times/.test(agent.notReady ?? ''));
      expect(agent.notReady).toMatch(/etcd identities: relist after a canceled watch failed \d+ times/);
      // Id 300 is still believed to be app=db meanwhile: that is what /healthz now says.
      expect(agent.engine.identityLabels(300)).toBeDefined();
      await client.delete().prefix(`${prefix}/id/junk-`);
      await polls(() => (agent.flush(), agent.notReady === undefined && agent.engine.identityLabels(300) === undefined));
      expect(agent.notReady).toBeUndefined();
      expect(agent.engine.identityLabels(300)).toBeUndefined();
    } finally {
      await close();
    }
  }, 60_000);
});

/**
 * Finding 991 (docs/attack-findings-18w.md): etcd stalls (the connection stays open, nothing comes
 * back: a blackholing network, a stopped etcd process, an etcd without quorum). The watch saw no
 * error and the pump was idle, so /healthz stayed 200 while the identities stopped following etcd
 * (here id 301 is created meanwhile and never seen). Cilium's etcd status checker asks every
 * endpoint's Status with a timeout, periodically, and reports "not able to connect to any etcd
 * endpoints" (pkg/kvstore/etcd.go `statusChecker`, `determineEndpointStatus`), which fails health.
 */
suite('agent --identities etcd: etcd stalls', () => {
  it('991. is on notReady (/healthz) while etcd does not answer, and ready again once it does', async () => {
    const prefix = 'stall/cilium/state/identities/v1';
    const { client, proxy, source, agent, close } = await agentBehindProxy(prefix, 100);
    try {
      source.start();
      await polls(() => (agent.flush(), source.settled && agent.engine.identityLabels(300) !== undefined));
      expect(agent.notReady).toBeUndefined();
      proxy.freeze();
      await client.put(`${prefix}/id/301`).value('k8s:app=evil;k8s:io.kubernetes.pod.namespace=shop;');
      await polls(() => agent.notReady !== undefined);
      expect(agent.notReady).toMatch(/etcd identities: status check failed/);
      expect(agent.engine.identityLabels(301)).toBeUndefined();
      proxy.thaw();
      await polls(() => (agent.flush(), agent.notReady === undefined && agent.engine.identityLabels(301) !== undefined));
      expect(agent.notReady).toBeUndefined();
    } finally {
      proxy.thaw();
      await close();
    }
  }, 60_000);
});

/**
 * Finding 746 (docs/attack-findings-16w.md, -17w.md): a second etcd writer putting N master keys
 * the engine cannot take logged N `etcd identity skipped` lines; they now go through the mirror's
 * `LogLimiter` (10 at once, then one per 500 ms), `stats.skipped` still counts each.
 */
suite('agent --identities etcd: a flood of master keys the engine cannot take', () => {
  it('746. logs a bounded number of skipped lines', async () => {
    const prefix = 'skipped-flood/cilium/state/identities/v1';
    const client = connectEtcd(etcd.url);
    const lines: { msg?: string }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as { msg?: string });
        cb();
      },
    });
    const source = new EtcdIdentitySource({ url: etcd.url, node: 'n1', logger: pino({ level: 'info' }, sink), prefix, retryMs: 50, now: () => 0 });
    try {
      source.start();
      await polls(() => source.ready);
      for (let id = 10; id < 110; id++) await client.put(`${prefix}/id/${id}`).value(`k8s:app=a${id};`);
      await polls(() => source.stats.skipped === 100);
      expect(source.stats.skipped).toBe(100);
      await new Promise((r) => setImmediate(r));
      expect(lines.filter((l) => l.msg === 'etcd identity skipped: the engine cannot take it')).toHaveLength(10);
    } finally {
      await source.close();
      client.close();
    }
  }, 60_000);
});

/**
 * Finding 741 end to end (docs/attack-findings-16w.md): etcd restarted without its data
 * (revisions start over) while the agent watches it, and id 300 handed to other labels by the new
 * history. On e09107d the watch waited for a revision the new history reaches only much later:
 * the engine kept 300 = app=db and the local endpoint's map went on allowing the number.
 */
suite('agent --identities etcd over an etcd restarted without its data', () => {
  it('741. a reused id number stops being allowed as its old labels', async () => {
    const wiped = await EtcdServer.start();
    const prefix = 'wiped/cilium/state/identities/v1';
    const client = connectEtcd(wiped.url, { callTimeoutMs: 2000 });
    const source = new EtcdIdentitySource({ url: wiped.url, node: 'n1', logger, prefix, retryMs: 50 });
    const agent = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), identitySource: source });
    const allowed = (): boolean => agent.engine.endpoints().includes('shop/web') && agent.engine.lookup('shop/web', 300, 'ingress', 6, 80)?.entry.deny === false;
    try {
      await client.put(`${prefix}/id/300`).value('k8s:app=db;k8s:io.kubernetes.pod.namespace=shop;');
      for (let i = 0; i < 20; i++) await client.put('wiped/unrelated').value(String(i));
      source.start();
      const items: WatchItem[] = [
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } },
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'shop', resourceVersion: '2', labels: { app: 'web' } }, spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.2' } } },
        { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'from-db', namespace: 'shop', resourceVersion: '3' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'db' } }] }] } } },
      ];
      for (const item of items) agent.mirror.observe(item, 'test');
      await polls(() => (agent.flush(), allowed() && source.settled));
      expect(allowed()).toBe(true);
      await wiped.stop();
      rmSync(join(wiped.dataDir, 'data'), { recursive: true, force: true });
      await wiped.start();
      // The new history hands 300 to other labels at revision ~2, far below the watch's.
      await client.put(`${prefix}/id/300`).value('k8s:app=evil;k8s:io.kubernetes.pod.namespace=shop;');
      // The relist may run before the put (300 deleted first) or after it.
      const evil = (): boolean => agent.engine.identityLabels(300)?.some((l) => l.key === 'app' && l.value === 'evil') === true;
      await polls(() => (agent.flush(), !allowed() && evil()));
      expect(allowed()).toBe(false);
      expect(evil()).toBe(true);
      expect(agent.summary.refusals).toBe(0);
    } finally {
      await source.close();
      client.close();
      await wiped.destroy();
    }
  }, 60_000);

  // Finding 1821 (docs/attack-findings-24w.md): the same, but the new history has passed the watch's revision when the agent
  // gets back to etcd (a refilled clustermesh-apiserver etcd): 741's revision check did not fire and the watch resumed.
  it('1821. a reused id number stops being allowed as its old labels when the new history passed the old revision first', async () => {
    const wiped = await EtcdServer.start();
    const prefix = 'wiped-refilled/cilium/state/identities/v1';
    const client = connectEtcd(wiped.url, { callTimeoutMs: 2000 });
    const proxy = await CuttableProxy.start(wiped.url);
    const source = new EtcdIdentitySource({ url: proxy.url, node: 'n1', logger, prefix, retryMs: 50 });
    const agent = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), identitySource: source });
    const allowed = (): boolean => agent.engine.endpoints().includes('shop/web') && agent.engine.lookup('shop/web', 300, 'ingress', 6, 80)?.entry.deny === false;
    try {
      await client.put(`${prefix}/id/300`).value('k8s:app=db;k8s:io.kubernetes.pod.namespace=shop;');
      for (let i = 0; i < 20; i++) await client.put('wiped/unrelated').value(String(i));
      source.start();
      const items: WatchItem[] = [
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } },
        { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'shop', resourceVersion: '2', labels: { app: 'web' } }, spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.2' } } },
        { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'from-db', namespace: 'shop', resourceVersion: '3' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'db' } }] }] } } },
      ];
      for (const item of items) agent.mirror.observe(item, 'test');
      await polls(() => (agent.flush(), allowed() && source.settled));
      expect(allowed()).toBe(true);
      proxy.cut();
      await wiped.stop();
      rmSync(join(wiped.dataDir, 'data'), { recursive: true, force: true });
      await wiped.start();
      await client.put(`${prefix}/id/300`).value('k8s:app=evil;k8s:io.kubernetes.pod.namespace=shop;');
      for (let i = 0; i < 60; i++) await client.put('wiped/unrelated').value(String(i));
      proxy.heal();
      const evil = (): boolean => agent.engine.identityLabels(300)?.some((l) => l.key === 'app' && l.value === 'evil') === true;
      await polls(() => (agent.flush(), !allowed() && evil()));
      expect(allowed()).toBe(false);
      expect(evil()).toBe(true);
      expect(agent.summary.refusals).toBe(0);
    } finally {
      await source.close();
      client.close();
      await proxy.close();
      await wiped.destroy();
    }
  }, 60_000);
});

/**
 * Finding 3824 (docs/attack-findings-33i.md): a master key outside the cluster range (which the engine skips) holding a
 * local pod's label set, written by a hostile etcd writer before the pod allocates. The node joined it, so the pod sat
 * at the unallocated number (255, denied both ways) for good while the source reported itself settled.
 */
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
    await pollsUpTo(() => (agent.flush(), source.settled && source.peek().length === 0), 200);
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
