/**
 * Cluster-wide identity allocation against a real etcd (started here: 127.0.0.1, random ports,
 * temp data dir): latency p50/p99 of `allocate()` uncontended (one allocator, new label sets one
 * after another; then a second node reusing them) and with 8 allocators (8 clients, 8 leases)
 * allocating the same new label set at once, and 8 distinct ones at once; then etcd keys and
 * bytes per identity. Each agent has its own client, lease and id/ watcher (the allocator's cache).
 *
 *   npm run bench:etcd           (needs the `etcd` binary: Debian etcd-server)
 */
import type { Etcd3 } from 'etcd3';
import { IdentityAllocator } from '../src/kvstore/allocator.js';
import { connectEtcd } from '../src/kvstore/client.js';
import { IDENTITIES_PREFIX } from '../src/kvstore/layout.js';
import { IdentityWatcher } from '../src/kvstore/watcher.js';
import { EtcdServer } from '../test/kvstore/etcd-server.js';

const N = Number(process.env.BENCH_IDS ?? 500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 200);
const AGENTS = 8;

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number);
};
const summary = (xs: number[]) => ({ n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99) });

async function timed<T>(out: number[], f: () => Promise<T>): Promise<T> {
  const t = process.hrtime.bigint();
  const r = await f();
  out.push(Number(process.hrtime.bigint() - t) / 1000);
  return r;
}

const podLabels = (i: number, tag: string) => [`k8s:app=${tag}-${i}`, 'k8s:io.kubernetes.pod.namespace=bench', `k8s:tier=t${i % 7}`];

async function main(): Promise<void> {
  const etcd = await EtcdServer.start();
  const clients: Etcd3[] = [];
  const client = () => {
    const c = connectEtcd(etcd.url);
    clients.push(c);
    return c;
  };
  try {
    // Every agent watches id/ (as it would to feed its engine); the allocator uses that cache.
    const watchers: IdentityWatcher[] = [];
    const agent = async (node: string, locks = true) => {
      const c = client();
      const w = await IdentityWatcher.start(c, () => {});
      watchers.push(w);
      return IdentityAllocator.create(c, { url: etcd.url, node, cache: w, locks });
    };
    const a = await agent('node-0');
    const b = await agent('node-1');
    for (let i = 0; i < 50; i++) await a.allocate(podLabels(i, 'warm'));
    const fresh: number[] = [];
    const reuse: number[] = [];
    for (let i = 0; i < N; i++) await timed(fresh, () => a.allocate(podLabels(i, 'solo')));
    for (let i = 0; i < N; i++) await timed(reuse, () => b.allocate(podLabels(i, 'solo')));

    const contention: Record<string, unknown> = {};
    const allAgents: IdentityAllocator[] = [];
    for (const locks of [true, false]) {
      const agents = await Promise.all([...Array(AGENTS).keys()].map((i) => agent(`agent-${i}-${locks}`, locks)));
      allAgents.push(...agents);
      const contended: number[] = [];
      const parallelDistinct: number[] = [];
      let created = 0;
      for (let r = 0; r < ROUNDS; r++) {
        const rs = await Promise.all(agents.map((ag) => timed(contended, () => ag.allocate(podLabels(r, `race-${locks}`)))));
        created += rs.filter((x) => x.isNew).length;
        if (new Set(rs.map((x) => x.id)).size !== 1) throw new Error(`round ${r}: several ids for one label set`);
        await Promise.all(agents.map((ag, i) => timed(parallelDistinct, () => ag.allocate(podLabels(r * AGENTS + i, `par-${locks}`)))));
      }
      const conflicts = agents.reduce((s, ag) => s + ag.stats.conflicts, 0);
      contention[locks ? 'withLocks' : 'withoutLocks'] = {
        sameNewLabelsUs: { ...summary(contended), idsCreated: created, conflicts },
        distinctNewLabelsUs: summary(parallelDistinct),
      };
    }

    // Footprint: the `solo` ids, referenced by 2 nodes each (node-0, node-1).
    const all = await clients[0]!.getAll().prefix(`${IDENTITIES_PREFIX}/`).exec();
    let masterBytes = 0;
    let slaveBytes = 0;
    let masters = 0;
    let slaves = 0;
    for (const kv of all.kvs) {
      const k = kv.key.toString();
      if (!k.includes('=solo-')) continue;
      slaves++;
      slaveBytes += kv.key.length + kv.value.length;
    }
    // Master keys carry the labels in their value, not their key: count them by value.
    for (const kv of all.kvs) {
      if (kv.key.toString().startsWith(`${IDENTITIES_PREFIX}/id/`) && kv.value.toString().includes('=solo-')) {
        masters++;
        masterBytes += kv.key.length + kv.value.length;
      }
    }
    const report = {
      date: new Date().toISOString(),
      etcd: 'Debian etcd-server, one member, 127.0.0.1',
      uncontendedNewUs: summary(fresh),
      uncontendedReuseUs: summary(reuse),
      eightAgents: { agents: AGENTS, rounds: ROUNDS, ...contention },
      perIdentity: {
        masterKeys: masters / N,
        masterBytes: Math.round(masterBytes / masters),
        slaveKeysPerNode: slaves / N / 2,
        slaveBytesPerNode: Math.round(slaveBytes / slaves),
      },
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    for (const w of watchers) await w.close();
    for (const ag of [a, b, ...allAgents]) await ag.close();
  } finally {
    for (const c of clients) c.close();
    await etcd.destroy();
  }
}

await main();
