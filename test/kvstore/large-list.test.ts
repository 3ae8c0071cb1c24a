import { describe, expect, it } from 'vitest';
import { connectEtcd } from '../../src/kvstore/client.js';
import { runIdentityGc } from '../../src/kvstore/gc.js';
import { IdentityEvent, IdentityWatcher } from '../../src/kvstore/watcher.js';
import { PrivateEtcd, requireEtcdOrSkip } from './etcd-server.js';

/**
 * Finding 1142 (docs/attack-findings-19w.md): the identity watcher listed id/ in one Range
 * response; over grpc-js's 4 MiB receive limit (here 30,000 identities of some 180 bytes each, a
 * large cluster's count: Cilium allows 65,535 per cluster) the list failed, so the agent never
 * became ready (and a relist after a compaction never succeeded). Cilium lists in pages of 256
 * keys at one revision (pkg/kvstore/etcd.go `paginatedList`, `ListBatchSize: 256` in `newClient`).
 */
const P = 'large/cilium/state/identities/v1';
const COUNT = 30_000;
const labels = (i: number): string => `k8s:app=service-${i};k8s:io.cilium.k8s.policy.cluster=default;k8s:io.cilium.k8s.policy.serviceaccount=default;k8s:io.kubernetes.pod.namespace=team-${i % 97}-namespace;k8s:tier=backend;`;
const withEtcd = requireEtcdOrSkip('etcd identity list over 4 MiB') ? describe : describe.skip;
const etcd = new PrivateEtcd();

withEtcd('identity watcher: more identities than one response carries (1142)', () => {
  etcd.setUp();

  it('1142. lists 30,000 identities (over 4 MiB) and watches from the list\'s revision', async () => {
    const client = connectEtcd(etcd.url, { callTimeoutMs: 20_000 });
    etcd.track(client);
    for (let i = 0; i < COUNT; i += 100) {
      const puts = [];
      for (let j = i; j < i + 100; j++) puts.push({ request_put: { key: Buffer.from(`${P}/id/${256 + j}`), value: Buffer.from(labels(j)) } });
      await client.kv.txn({ compare: [], success: puts, failure: [] });
    }
    const events: IdentityEvent[] = [];
    const w = await IdentityWatcher.start(client, (e) => events.push(e), P);
    try {
      expect(w.identities.size).toBe(COUNT);
      expect(w.identities.get(256 + 12_345)).toBe(labels(12_345));
      expect(events.length).toBe(COUNT);
      // Nothing between the pages' revision and the watch is missed.
      await client.put(`${P}/id/${256 + COUNT}`).value('k8s:app=late;');
      await client.delete().key(`${P}/id/256`);
      while (w.identities.has(256) || !w.identities.has(256 + COUNT)) await new Promise((r) => setTimeout(r, 20));
      expect(w.identities.size).toBe(COUNT);
      // The GC's lists too (`distill identity-gc`): every id unreferenced (no slave keys here), none deleted in a first round.
      const round = await runIdentityGc(client, { prefix: P });
      expect([round.ids, round.unreferenced, round.deleted]).toEqual([COUNT, COUNT, 0]);
    } finally {
      await w.close();
    }
  }, 120_000);
});
