import type { Etcd3 } from 'etcd3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdentityAllocator } from '../../src/kvstore/allocator.js';
import { connectEtcd } from '../../src/kvstore/client.js';
import { runIdentityGc } from '../../src/kvstore/gc.js';
import { labelSetKey } from '../../src/kvstore/labels.js';
import { IdentityWatcher } from '../../src/kvstore/watcher.js';
import { PrivateEtcd, requireEtcdOrSkip } from './etcd-server.js';

/**
 * Several in-process allocators (each with its own client, lease and id/ watcher, as separate
 * agents would have) share one etcd; random batches of acquire/release run concurrently on random
 * nodes, with GC rounds in between. Node n0 creates ids without the label-set lock, the others
 * with it (both kinds share an etcd, as distill and Cilium agents could). After every batch: each referenced label set has one id, its
 * master key says so, every node's held ids equal its slave keys in etcd, and every node's
 * watcher converges to etcd's id/ keys.
 */
const withEtcd = requireEtcdOrSkip('etcd identity property test') ? describe : describe.skip;
const NODES = 3;
const LABEL_SETS = [['k8s:app=a'], ['k8s:app=b'], ['k8s:app=a', 'k8s:tier=db'], ['k8s:app=c', 'k8s:io.kubernetes.pod.namespace=x']];

type Op = { node: number; set: number; acquire: boolean };
const opArb = fc.record({ node: fc.nat(NODES - 1), set: fc.nat(LABEL_SETS.length - 1), acquire: fc.boolean() });

const etcd = new PrivateEtcd();
let run = 0;

/** DISTILL_PROP_SEED / DISTILL_PROP_PATH replay a reported failure; DISTILL_PROP_RUNS sets the number of runs. */
function replay(base: { numRuns: number }): fc.Parameters<[Op[][]]> {
  const seed = process.env.DISTILL_PROP_SEED;
  const path = process.env.DISTILL_PROP_PATH;
  const runs = process.env.DISTILL_PROP_RUNS;
  return {
    ...base,
    ...(runs ? { numRuns: Number(runs) } : {}),
    ...(seed ? { seed: Number(seed) } : {}),
    ...(path ? { path } : {}),
  };
}

async function converged(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 30));
  }
  throw new Error(`not converged: ${what}`);
}

withEtcd('identity allocation under random churn on several nodes', () => {
  etcd.setUp();

  it('keeps one id per label set and every node in agreement with etcd', () => churn(false));

  // 1823 under churn: slave keys of another writer (node `peer`, no lease) that name no id of their set: another
  // set's id (its master kept by a slave key of its own), a value Cilium cannot read, an id without a master key.
  it('keeps one id per label set beside slave keys naming no id of their set (1823)', () => churn(true));
});

/** A foreign writer's keys, written before the nodes start; `check` skips its node. */
const FOREIGN_NODE = 'peer';
async function plantForeign(c: Etcd3, prefix: string): Promise<void> {
  const slave = (set: number): string => `${prefix}/value/${labelSetKey(LABEL_SETS[set] as string[])}/${FOREIGN_NODE}`;
  await c.put(`${prefix}/id/300`).value('k8s:app=other;');
  await c.put(`${prefix}/value/k8s:app=other;/${FOREIGN_NODE}`).value('300');
  await c.put(slave(0)).value('300');
  await c.put(slave(1)).value('NaN');
  await c.put(slave(2)).value('0');
}

async function churn(foreign: boolean): Promise<void> {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.array(opArb, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 6 }), async (batches) => {
      const prefix = `distill-prop/${run++}/cilium/state/identities/v1`;
      const clients: Etcd3[] = [];
      const watchers: IdentityWatcher[] = [];
      const nodes: IdentityAllocator[] = [];
      try {
        if (foreign) {
          const c = connectEtcd(etcd.url);
          clients.push(c);
          await plantForeign(c, prefix);
        }
        for (let i = 0; i < NODES; i++) {
          const c = connectEtcd(etcd.url);
          clients.push(c);
          const w = await IdentityWatcher.start(c, () => {}, prefix);
          watchers.push(w);
          // With foreign keys, short backoffs: a set they block fails its 16 attempts in well under a second.
          nodes.push(await IdentityAllocator.create(c, { url: etcd.url, node: `n${i}`, prefix, cache: w, locks: i !== 0, ...(foreign ? { backoffMs: 1 } : {}) }));
        }
        const refs = nodes.map(() => new Map<number, number>());
        let stale = new Map<string, string>();
        for (const batch of batches) {
          await Promise.all(batch.map((op) => apply(op)));
          stale = (await runIdentityGc(clients[0] as Etcd3, { prefix, previous: stale, sleep: async () => {} })).stale;
          await check(clients[0] as Etcd3, prefix, nodes, watchers);
        }

        async function apply(op: Op): Promise<void> {
          const node = nodes[op.node] as IdentityAllocator;
          const held = refs[op.node] as Map<number, number>;
          const n = held.get(op.set) ?? 0;
          if (op.acquire || n === 0) {
            held.set(op.set, n + 1);
            await node.allocate(LABEL_SETS[op.set] as string[]);
          } else {
            held.set(op.set, n - 1);
            await node.release(LABEL_SETS[op.set] as string[]);
          }
        }
      } finally {
        for (const w of watchers) await w.close();
        for (const n of nodes) await n.close();
        for (const c of clients) c.close();
      }
    }),
    replay({ numRuns: process.env.DISTILL_LONG ? 60 : 12 }),
  );
}

async function check(c: Etcd3, prefix: string, nodes: IdentityAllocator[], watchers: IdentityWatcher[]): Promise<void> {
  const slaves = await c.getAll().prefix(`${prefix}/value/`).strings();
  const masters = await c.getAll().prefix(`${prefix}/id/`).strings();
  const idOf = new Map<string, string>();
  const perNode = new Map<string, Map<string, number>>();
  for (const [key, id] of Object.entries(slaves)) {
    const rest = key.slice(`${prefix}/value/`.length);
    const labels = rest.slice(0, rest.lastIndexOf('/'));
    const node = rest.slice(rest.lastIndexOf('/') + 1);
    if (node === FOREIGN_NODE) continue;
    expect(idOf.get(labels) ?? id, `label set ${labels} has two ids`).toBe(id);
    idOf.set(labels, id);
    expect(masters[`${prefix}/id/${id}`], `master key of id ${id}`).toBe(labels);
    const m = perNode.get(node) ?? new Map<string, number>();
    perNode.set(node, m.set(labels, Number(id)));
  }
  for (const node of nodes) expect(node.held(), `node ${node.node}`).toEqual(perNode.get(node.node) ?? new Map());
  const want = new Map(Object.entries(masters).map(([k, v]) => [Number(k.split('/').pop()), v]));
  await converged('watchers equal etcd id/', async () => watchers.every((w) => w.identities.size === want.size && [...want].every(([id, v]) => w.identities.get(id) === v)));
}
