import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectEtcd } from '../../src/kvstore/client.js';
import { IdentityEvent, IdentityWatcher } from '../../src/kvstore/watcher.js';
import { CuttableProxy, EtcdServer, PrivateEtcd, requireEtcdOrSkip, until } from './etcd-server.js';

// Findings 740, 741 (docs/attack-findings-16w.md): a watch resumed at a compacted revision is canceled
// by etcd, one resumed on an etcd that lost its data waits for a revision the new history reaches only
// much later. Cilium relists on a watch error (pkg/kvstore/etcd.go watch loop: ErrCompacted ->
// MarkAllForDeletion, reList); distill relists in both cases.
const P = 'cilium/state/identities/v1';
const withEtcd = requireEtcdOrSkip('etcd identity watch compaction') ? describe : describe.skip;
const etcd = new PrivateEtcd();

withEtcd('identity watch relists when its history is gone (740, 741)', () => {
  etcd.setUp();

  it('740. after a partition during which an id was deleted, reused for other labels and the history compacted, the watcher relists: no stale labels, later events still arrive', async () => {
    const direct = connectEtcd(etcd.url, { callTimeoutMs: 2000 });
    etcd.track(direct);
    await direct.put(`${P}/id/300`).value('k8s:app=db;');
    await direct.put(`${P}/id/310`).value('k8s:app=cache;');
    const proxy = await CuttableProxy.start(etcd.url);
    const viaProxy = connectEtcd(proxy.url, { callTimeoutMs: 2000 });
    etcd.track(viaProxy);
    const events: IdentityEvent[] = [];
    const w = await IdentityWatcher.start(viaProxy, (e) => events.push(e), P, 50);
    try {
      expect(w.identities.get(300)).toBe('k8s:app=db;');
      proxy.cut();
      // Meanwhile: app=db's id is collected and its number handed to other labels; app=cache's is gone.
      await direct.delete().key(`${P}/id/300`);
      await direct.delete().key(`${P}/id/310`);
      await direct.put(`${P}/id/300`).value('k8s:app=evil;');
      await direct.put(`${P}/id/301`).value('k8s:app=web;');
      const rev = (await direct.put('unrelated').value('x')).header.revision;
      await direct.kv.compact({ revision: rev });
      events.length = 0;
      proxy.heal();
      await until('the watcher sees the cluster as it is', () => w.identities.get(300) === 'k8s:app=evil;' && !w.identities.has(310) && w.identities.has(301));
      expect([...w.identities].sort()).toEqual([
        [300, 'k8s:app=evil;'],
        [301, 'k8s:app=web;'],
      ]);
      expect(events).toContainEqual({ kind: 'deleteIdentity', id: 310 });
      expect(events).toContainEqual({ kind: 'upsertIdentity', id: 300, labels: ['k8s:app=evil'] });
      expect(w.stats.relists).toBeGreaterThanOrEqual(1);
      // The new watch delivers what follows.
      await direct.put(`${P}/id/302`).value('k8s:app=late;');
      await until('a put after the relist arrives', () => w.identities.get(302) === 'k8s:app=late;');
    } finally {
      await w.close();
      await proxy.close();
    }
  }, 30000);

  it('741. after etcd restarts without its data (revisions start over) the watcher relists: an id number reused for other labels is not kept with its old ones', async () => {
    const wiped = await EtcdServer.start();
    const direct = connectEtcd(wiped.url, { callTimeoutMs: 2000 });
    const c = connectEtcd(wiped.url, { callTimeoutMs: 2000 });
    etcd.track(direct);
    etcd.track(c);
    const events: IdentityEvent[] = [];
    let w: IdentityWatcher | undefined;
    try {
      await direct.put(`${P}/id/300`).value('k8s:app=db;');
      for (let i = 0; i < 20; i++) await direct.put('unrelated').value(String(i));
      w = await IdentityWatcher.start(c, (e) => events.push(e), P, 50);
      await wiped.stop();
      rmSync(join(wiped.dataDir, 'data'), { recursive: true, force: true });
      await wiped.start();
      // The new etcd's allocations start over: 300 goes to other labels (revision 2, far below the watch's).
      await direct.put(`${P}/id/300`).value('k8s:app=evil;');
      await direct.put(`${P}/id/301`).value('k8s:app=web;');
      const watcher = w;
      await until('the watcher sees the new etcd as it is', () => watcher.identities.get(300) === 'k8s:app=evil;' && watcher.identities.get(301) === 'k8s:app=web;');
      expect(events).toContainEqual({ kind: 'upsertIdentity', id: 300, labels: ['k8s:app=evil'] });
    } finally {
      await w?.close();
      await wiped.destroy();
    }
  }, 30000);

  // Finding 1821 (docs/attack-findings-24w.md): 741's check (the reconnect's revision below the last one seen) misses an
  // etcd that lost its data and whose new history already passed the watch's revision when the watch reconnects: a
  // clustermesh-apiserver / kvstoremesh etcd restarted on an emptyDir is refilled by its initial sync (as many writes as the
  // old one held) before agents get back. The resumed watch then replays the new history from the old revision on and
  // never sees what was written below it.
  it('1821. after etcd restarts without its data and its new history passes the watch revision before the watch reconnects, the watcher relists', async () => {
    const wiped = await EtcdServer.start();
    const direct = connectEtcd(wiped.url, { callTimeoutMs: 2000 });
    etcd.track(direct);
    const proxy = await CuttableProxy.start(wiped.url);
    const viaProxy = connectEtcd(proxy.url, { callTimeoutMs: 2000 });
    etcd.track(viaProxy);
    const events: IdentityEvent[] = [];
    let w: IdentityWatcher | undefined;
    try {
      await direct.put(`${P}/id/300`).value('k8s:app=db;');
      await direct.put(`${P}/id/310`).value('k8s:app=cache;');
      for (let i = 0; i < 20; i++) await direct.put('unrelated').value(String(i));
      w = await IdentityWatcher.start(viaProxy, (e) => events.push(e), P, 50);
      expect(w.identities.get(300)).toBe('k8s:app=db;');
      proxy.cut();
      await wiped.stop();
      rmSync(join(wiped.dataDir, 'data'), { recursive: true, force: true });
      await wiped.start();
      // The new history: 300 handed to other labels, 310 gone, 301 new (revisions 2, 3), then refilled past the old revision.
      await direct.put(`${P}/id/300`).value('k8s:app=evil;');
      await direct.put(`${P}/id/301`).value('k8s:app=web;');
      for (let i = 0; i < 40; i++) await direct.put('unrelated').value(String(i));
      events.length = 0;
      proxy.heal();
      const watcher = w;
      await until('the watcher sees the new etcd as it is', () => watcher.identities.get(300) === 'k8s:app=evil;' && !watcher.identities.has(310) && watcher.identities.has(301), 100);
      expect(events).toContainEqual({ kind: 'upsertIdentity', id: 300, labels: ['k8s:app=evil'] });
      expect(events).toContainEqual({ kind: 'deleteIdentity', id: 310 });
      // The new watch delivers what follows.
      await direct.put(`${P}/id/302`).value('k8s:app=late;');
      await until('a put after the relist arrives', () => watcher.identities.get(302) === 'k8s:app=late;');
    } finally {
      await w?.close();
      await proxy.close();
      await wiped.destroy();
    }
  }, 30000);
});
