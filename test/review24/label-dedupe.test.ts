import type { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectEtcd } from '../../src/kvstore/client.js';
import { IdentityEvent, IdentityWatcher } from '../../src/kvstore/watcher.js';
import { EtcdServer, requireEtcdOrSkip } from '../kvstore/etcd-server.js';

/*
 * Review of 1822 (canonicalLabelSetKey). Cilium reads a master key's value with
 * pkg/allocator key.go `GlobalIdentity.PutKey` -> pkg/labels `NewLabelArrayFromSortedList`: split on ';',
 * every part with a non-empty key appended in the value's order; no sort, no one-label-per-key map (that is
 * `NewLabelsFromModel`, which PutKey does not call). Selection reads that LabelArray: `LabelArray.Get/Has`
 * match on source AND key for a source-qualified key (`k8s.app`), and return the FIRST match.
 * The first canonicalLabelSetKey collapsed labels by key alone (source ignored), keeping the last: fixed.
 */
const P = 'cilium/state/identities/v1';
const withEtcd = requireEtcdOrSkip('review24 label dedupe') ? describe : describe.skip;
let etcd: EtcdServer;
const clients: Etcd3[] = [];

withEtcd('review24: a master key value naming one key under two sources', () => {
  beforeAll(async () => {
    etcd = await EtcdServer.start();
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await etcd?.destroy();
  });

  it('1891. keeps both labels (Cilium keeps every label; the engine keys them by source:key)', async () => {
    const c = connectEtcd(etcd.url);
    clients.push(c);
    await c.put(`${P}/id/300`).value('k8s:app=db;unspec:app=x;');
    const events: IdentityEvent[] = [];
    const w = await IdentityWatcher.start(c, (e) => events.push(e), P, 50);
    try {
      const up = events.find((e) => e.kind === 'upsertIdentity' && e.id === 300);
      expect(up).toBeDefined();
      expect(up?.kind === 'upsertIdentity' ? [...up.labels].sort() : []).toEqual(['k8s:app=db', 'unspec:app=x']);
    } finally {
      await w.close();
    }
  }, 30000);

  it('1891. a key named twice under one source: the first value, which the selectors of Cilium read (LabelArray.Get)', async () => {
    const c = connectEtcd(etcd.url);
    clients.push(c);
    const prefix = `dup/${P}`;
    await c.put(`${prefix}/id/301`).value('k8s:app=db;k8s:app=web;');
    const events: IdentityEvent[] = [];
    const w = await IdentityWatcher.start(c, (e) => events.push(e), prefix, 50);
    try {
      const up = events.find((e) => e.kind === 'upsertIdentity' && e.id === 301);
      // What a Cilium node's selector `app: db` sees for 301: "db" (first match). distill's engine must see it too.
      expect(up?.kind === 'upsertIdentity' ? up.labels : []).toContain('k8s:app=db');
    } finally {
      await w.close();
    }
  }, 30000);
});
