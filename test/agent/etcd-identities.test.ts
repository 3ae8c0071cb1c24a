import fc from 'fast-check';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { EtcdIdentitySource } from '../../src/agent/etcd-identities.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { summary } from '../../src/agent/summary.js';
import { comparable, referenceMaps } from '../../src/cluster/run.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { connectEtcd } from '../../src/kvstore/client.js';
import { parseLabelSetKey } from '../../src/kvstore/labels.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { EtcdServer, requireEtcdOrSkip } from '../kvstore/etcd-server.js';

/** Agents with --identities etcd against a real etcd on 127.0.0.1. */
const hasEtcd = requireEtcdOrSkip('agent etcd identity tests');
const suite = hasEtcd ? describe : describe.skip;
const logger = pino({ level: 'silent' });

let etcd: EtcdServer;
beforeAll(async () => {
  if (hasEtcd) etcd = await EtcdServer.start();
}, 30_000);
afterAll(async () => etcd?.destroy());

let rv = 1;
const ns: WatchItem = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1', labels: { 'kubernetes.io/metadata.name': 'shop' } } } };
const pod = (name: string, node: string, app = name, type: 'ADDED' | 'MODIFIED' | 'DELETED' = 'ADDED'): WatchItem => ({
  type,
  object: { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', resourceVersion: String(++rv), labels: { app } }, spec: { nodeName: node, containers: [{ name: 'c', image: 'i' }] }, status: { phase: 'Running', podIP: `10.0.0.${rv % 250}` } },
});
const allow: WatchItem = { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'shop', resourceVersion: '900' }, spec: { endpointSelector: { matchLabels: { app: 'a' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'b' } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] } } };

interface Node {
  agent: Agent;
  source: EtcdIdentitySource;
  backend: MemoryBackend;
}

function node(name: string, prefix: string): Node {
  const backend = new MemoryBackend();
  const source = new EtcdIdentitySource({ url: etcd.url, node: name, logger, prefix, retryMs: 50 });
  const agent = new Agent({ node: name, watch: [], backend, logger, registry: new Registry(), identitySource: source });
  source.start();
  return { agent, source, backend };
}

const feed = (nodes: Node[], items: WatchItem[]): void => {
  for (const n of nodes) {
    for (const i of items) n.agent.mirror.observe(i, 'test');
    n.agent.flush();
  }
};

/** Until every node holds its pods' ids and has applied the same identity table (bounded by counts of polls, not time). */
async function converge(nodes: Node[]): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    const tables = nodes.map((n) => JSON.stringify([...n.source.identities()].sort((x, y) => x[0] - y[0])));
    if (nodes.every((n) => n.source.settledCluster && n.source.peek().length === 0) && tables.every((t) => t === tables[0])) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('agents did not converge');
}

/** The same node computed by one agent with external identities fed etcd's table as CiliumIdentity objects. */
function reference(name: string, items: WatchItem[], table: ReadonlyMap<number, string>): MemoryBackend {
  const backend = new MemoryBackend();
  const agent = new Agent({ node: name, watch: [], backend, logger, registry: new Registry(), identities: 'external' });
  const ids: WatchItem[] = [...table].map(([id, key]) => ({
    type: 'ADDED',
    object: { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: { name: String(id), resourceVersion: String(10_000 + id) }, 'security-labels': Object.fromEntries(parseLabelSetKey(key).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])) },
  }));
  for (const i of [...items, ...ids]) agent.mirror.observe(i, 'ref');
  agent.flush();
  return backend;
}

const maps = (b: MemoryBackend): unknown => b.endpoints().sort().map((ep) => [ep, b.dump(ep)]);

suite('distill agent --identities etcd', () => {
  it('two nodes share one id per label set; each node computes the maps of an engine fed that table', async () => {
    const prefix = `test-two-${process.pid}`;
    const nodes = [node('node-a', prefix), node('node-b', prefix)];
    const items = [ns, allow, pod('a', 'node-a'), pod('b', 'node-b'), pod('b2', 'node-a', 'b')];
    try {
      feed(nodes, items);
      await converge(nodes);
      const table = nodes[0]!.source.identities();
      expect(table.size).toBe(2);
      expect(new Set(table.values()).size).toBe(2);
      const bId = [...table].find(([, k]) => k.includes('k8s:app=b;'))![0];
      const ingress = nodes[0]!.backend.dump('shop/a').filter((r) => r.key.direction === 'ingress');
      expect(ingress.map((r) => r.key.identity)).toEqual([1, bId]); // 1: the local host (allow-localhost)
      for (const [i, n] of nodes.entries()) expect(maps(n.backend)).toEqual(maps(reference(`node-${'ab'[i]}`, items, table)));
    } finally {
      for (const n of nodes) await n.source.close();
    }
  }, 60_000);

  it('etcd stopped: the agent keeps its maps, a new pod is default deny; after etcd returns it converges', async () => {
    const prefix = `test-down-${process.pid}`;
    const nodes = [node('node-a', prefix), node('node-b', prefix)];
    const items = [ns, allow, pod('a', 'node-a'), pod('b', 'node-b')];
    let restart = false;
    try {
      feed(nodes, items);
      await converge(nodes);
      const before = JSON.stringify(maps(nodes[0]!.backend));
      await etcd.stop();
      restart = true;
      const c = pod('c', 'node-a');
      feed(nodes, [c]);
      for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 20));
      // The new endpoint has no identity yet: an empty map (default deny). Its address is the unallocated number
      // (finding 2002), which the old endpoints deny both ways: by an entry in each direction where an identity-0 allow
      // could admit it, by no entry elsewhere (finding 2132); their maps are otherwise unchanged.
      const during = maps(nodes[0]!.backend) as [string, { key: { identity: number; direction: string }; entry: { deny: boolean } }[]][];
      const old = during.filter(([ep]) => ep !== 'shop/c');
      expect(JSON.stringify(old.map(([ep, rows]) => [ep, rows.filter((r) => r.key.identity !== UNALLOCATED_POD_IDENTITY)]))).toBe(before);
      for (const [, rows] of old) {
        const open = ['ingress', 'egress'].filter((d) => rows.some((r) => r.key.identity === 0 && r.key.direction === d && !r.entry.deny));
        expect(open.length).toBeGreaterThan(0);
        expect(rows.filter((r) => r.key.identity === UNALLOCATED_POD_IDENTITY).map((r) => [r.key.direction, r.entry.deny])).toEqual(open.map((d) => [d, true]));
      }
      expect(during.find(([ep]) => ep === 'shop/c')?.[1] ?? []).toEqual([]);
      await etcd.start();
      restart = false;
      await converge(nodes);
      const table = nodes[1]!.source.identities();
      expect(table.size).toBe(3);
      for (const [i, n] of nodes.entries()) expect(maps(n.backend)).toEqual(maps(reference(`node-${'ab'[i]}`, [...items, c], table)));
      expect(nodes[0]!.source.stats.failures).toBeGreaterThan(0);
    } finally {
      if (restart) await etcd.start();
      for (const n of nodes) await n.source.close();
    }
  }, 90_000);

  it('a deleted pod releases its slave key; the ids stay equal after relabel', async () => {
    const prefix = `test-release-${process.pid}`;
    const nodes = [node('node-a', prefix), node('node-b', prefix)];
    const client = connectEtcd(etcd.url);
    try {
      feed(nodes, [ns, pod('x', 'node-a'), pod('y', 'node-b', 'x')]);
      await converge(nodes);
      expect((await client.getAll().prefix(`${prefix}/value/`).keys()).length).toBe(2);
      feed(nodes, [pod('x', 'node-a', 'z', 'MODIFIED'), pod('y', 'node-b', 'x', 'DELETED')]);
      await converge(nodes);
      const slaves = await client.getAll().prefix(`${prefix}/value/`).keys();
      expect(slaves.map((k) => k.slice(prefix.length))).toEqual([expect.stringMatching(/k8s:app=z;.*\/node-a$/)]);
    } finally {
      for (const n of nodes) await n.source.close();
      client.close();
    }
  }, 60_000);
});

const opArb = fc.oneof(
  fc.record({ kind: fc.constantFrom<'add' | 'relabel'>('add', 'relabel'), pod: fc.nat(7), node: fc.nat(2), app: fc.nat(3) }),
  fc.record({ kind: fc.constant<'delete'>('delete'), pod: fc.nat(7) }),
);
const APPS = ['a', 'b', 'c', 'd'];

suite('several agents on one etcd under random churn (property)', () => {
  it('every node converges to the maps of a single-process engine fed the same table; one id per label set', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 20 }), async (ops) => {
        const prefix = `test-prop-${process.pid}-${run++}`;
        const names = ['node-0', 'node-1', 'node-2'];
        const nodes = names.map((n) => node(n, prefix));
        const placed = new Map<number, number>();
        const items: WatchItem[] = [ns, allow];
        try {
          feed(nodes, items);
          for (const op of ops) {
            const where = placed.get(op.pod);
            let item: WatchItem | undefined;
            if (op.kind === 'delete') {
              if (where !== undefined) item = pod(`p${op.pod}`, names[where]!, 'a', 'DELETED');
              placed.delete(op.pod);
            } else {
              const n = where ?? op.node;
              placed.set(op.pod, n);
              item = pod(`p${op.pod}`, names[n]!, APPS[op.app]!, where === undefined ? 'ADDED' : 'MODIFIED');
            }
            if (!item) continue;
            items.push(item);
            feed([nodes[op.pod % nodes.length]!], [item]);
            feed(nodes.filter((_, i) => i !== op.pod % nodes.length), [item]);
          }
          await converge(nodes);
          const table = nodes[0]!.source.identities();
          expect(new Set(table.values()).size).toBe(table.size);
          const record = Object.fromEntries([...table].map(([id, key]) => [String(id), key]));
          for (const [i, n] of nodes.entries()) {
            n.agent.flush();
            const got = (JSON.parse(summary(n.agent, n.backend, true)) as { maps: unknown[] }).maps;
            expect(comparable(got)).toBe(comparable(referenceMaps(names[i]!, items, record)));
          }
        } finally {
          for (const n of nodes) await n.source.close();
        }
      }),
      { numRuns: 8 },
    );
  }, 300_000);
});

/** Finding 2845 (docs/attack-findings-30t.md): --exit-at-eof's settledCluster and the pods the agent holds fail-closed. */
const heldNs: WatchItem = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } };
const heldPod = (name: string, rv: number, node: string, ip: string, extra: { deletionTimestamp?: string; serviceAccountName?: string } = {}): WatchItem => ({
  type: 'ADDED',
  object: {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels: { app: name }, ...(extra.deletionTimestamp ? { deletionTimestamp: extra.deletionTimestamp } : {}) },
    spec: { nodeName: node, containers: [{ name: 'c', image: 'i' }], ...(extra.serviceAccountName ? { serviceAccountName: extra.serviceAccountName } : {}) },
    status: { phase: 'Running', podIP: ip },
  },
});

async function settledClusterAfterSettled(items: WatchItem[], prefix: string): Promise<boolean> {
  const backend = new MemoryBackend();
  const source = new EtcdIdentitySource({ url: etcd.url, node: 'node-a', logger, prefix, retryMs: 50 });
  const agent = new Agent({ node: 'node-a', watch: [], backend, logger, registry: new Registry(), identitySource: source });
  source.start();
  try {
    for (const i of items) agent.mirror.observe(i, 'test');
    agent.flush();
    // This node's pod holds its id and the engine applied it (bounded by polls), then a little more for the cluster.
    for (let i = 0; i < 500 && !(source.settled && source.peek().length === 0 && source.identities().size > 0); i++) {
      await new Promise((r) => setTimeout(r, 20));
      agent.flush();
    }
    for (let i = 0; i < 25 && !source.settledCluster; i++) await new Promise((r) => setTimeout(r, 20));
    return source.settledCluster;
  } finally {
    await agent.stop();
    await source.close();
  }
}

suite('2845. settledCluster waits for no id of a pod held fail-closed', () => {
  it('a remote pod past its deletionTimestamp (held at 255 until its DELETED) is not waited for', async () => {
    const past = new Date(Date.now() - 60_000).toISOString();
    const items = [heldNs, heldPod('a', 2, 'node-a', '10.0.0.2'), heldPod('gone', 3, 'node-b', '10.0.0.3', { deletionTimestamp: past })];
    // Before: false for good (no agent on node-b allocates gone's labels).
    expect(await settledClusterAfterSettled(items, `t30t-exp-${process.pid}`)).toBe(true);
  }, 30_000);
  it('a live remote pod is still waited for', async () => {
    const items = [heldNs, heldPod('a', 2, 'node-a', '10.0.0.2'), heldPod('b', 3, 'node-b', '10.0.0.3')];
    expect(await settledClusterAfterSettled(items, `t30t-live-${process.pid}`)).toBe(false);
  }, 30_000);
});

suite('2922. a pod the engine refuses (a service account name holding ";") with etcd identities', () => {
  it('remote: not waited for', async () => {
    const items = [heldNs, heldPod('a', 2, 'node-a', '10.0.0.2'), heldPod('odd', 3, 'node-b', '10.0.0.3', { serviceAccountName: 'x;y' })];
    expect(await settledClusterAfterSettled(items, `t30t-sa-${process.pid}`)).toBe(true);
  }, 30_000);
  it('local: settles', async () => {
    const items = [heldNs, heldPod('a', 2, 'node-a', '10.0.0.2'), heldPod('odd', 3, 'node-a', '10.0.0.3', { serviceAccountName: 'x;y' })];
    expect(await settledClusterAfterSettled(items, `t30t-sal-${process.pid}`)).toBe(true);
  }, 30_000);
});
