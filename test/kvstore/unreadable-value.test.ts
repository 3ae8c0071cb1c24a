import { describe, expect, it } from 'vitest';
import { connectEtcd } from '../../src/kvstore/client.js';
import { IdentityEvent, IdentityWatcher } from '../../src/kvstore/watcher.js';
import { CuttableProxy, PrivateEtcd, requireEtcdOrSkip, until } from './etcd-server.js';

/**
 * Finding 1820 (docs/attack-findings-24w.md): a master key rewritten to a value distill cannot read kept the id's
 * last labels, watched or listed, for good. Cilium reads any non-empty value as labels (pkg/labels
 * `NewLabelsFromSortedList`: split on ';', every part through `ParseLabel`, never an error; pkg/kvstore/allocator
 * `ListAndWatch` hands it to `OnModify`), so the number then stands for other labels: here `k8s:app=evil` without
 * its trailing ';'. The id now leaves the watcher's table: no policy entry keeps allowing it as its old labels, and
 * the allocator never joins it. Finding 2001 (docs/attack-findings-26a.md): it is reported once as unreadable (the
 * agent holds it as a fail-closed stand-in) instead of deleted, whose pods fell to identity 0 (1936's hole).
 */
const P = 'cilium/state/identities/v1';
const withEtcd = requireEtcdOrSkip('etcd identity unreadable value') ? describe : describe.skip;
const etcd = new PrivateEtcd();

withEtcd('an id whose master key value turns unreadable (1820)', () => {
  etcd.setUp();

  it('1820, 2001. watched: the id leaves the table, reported unreadable (once), not deleted; a readable value later brings it back', async () => {
    const c = connectEtcd(etcd.url);
    etcd.track(c);
    const prefix = `watched/${P}`;
    await c.put(`${prefix}/id/300`).value('k8s:app=db;');
    const events: IdentityEvent[] = [];
    const w = await IdentityWatcher.start(c, (e) => events.push(e), prefix, 50);
    try {
      expect(w.identities.get(300)).toBe('k8s:app=db;');
      await c.put(`${prefix}/id/300`).value('k8s:app=evil');
      await until('the unreadable value takes 300 out of the table', () => !w.identities.has(300), 100);
      expect(events).toContainEqual({ kind: 'unreadableIdentity', id: 300 });
      expect(events).not.toContainEqual({ kind: 'deleteIdentity', id: 300 });
      expect(w.idForLabels('k8s:app=db;')).toBeUndefined();
      // Another unreadable value: no second event.
      await c.put(`${prefix}/id/300`).value('k8s:app=worse');
      await c.put(`${prefix}/id/399`).value('k8s:app=next;');
      await until('399 arrives', () => w.identities.has(399));
      expect(events.filter((e) => e.kind === 'unreadableIdentity')).toHaveLength(1);
      await c.put(`${prefix}/id/300`).value('k8s:app=evil;');
      await until('a readable value brings 300 back', () => w.identities.get(300) === 'k8s:app=evil;');
    } finally {
      await w.close();
    }
  }, 30000);

  it('1820, 2001. listed (a relist after a compaction): an id whose value the list gives unreadable leaves the table as unreadable; a relist without it deletes it', async () => {
    const direct = connectEtcd(etcd.url);
    etcd.track(direct);
    const prefix = `listed/${P}`;
    await direct.put(`${prefix}/id/300`).value('k8s:app=db;');
    const proxy = await CuttableProxy.start(etcd.url);
    const viaProxy = connectEtcd(proxy.url);
    etcd.track(viaProxy);
    const events: IdentityEvent[] = [];
    const w = await IdentityWatcher.start(viaProxy, (e) => events.push(e), prefix, 50);
    const compactCut = async (change: () => Promise<unknown>): Promise<void> => {
      proxy.cut();
      await change();
      const rev = (await direct.put('listed/unrelated').value('x')).header.revision;
      await direct.kv.compact({ revision: rev });
      proxy.heal();
    };
    try {
      expect(w.identities.get(300)).toBe('k8s:app=db;');
      await compactCut(async () => {
        await direct.put(`${prefix}/id/300`).value('k8s:app=evil');
        await direct.put(`${prefix}/id/301`).value('k8s:app=web;');
      });
      await until('the relist gives 301', () => w.identities.has(301), 100);
      expect([...w.identities]).toEqual([[301, 'k8s:app=web;']]);
      expect(events).toContainEqual({ kind: 'unreadableIdentity', id: 300 });
      expect(events).not.toContainEqual({ kind: 'deleteIdentity', id: 300 });
      // Deleted while the watch is cut: the next relist deletes the unreadable id.
      await compactCut(async () => {
        await direct.delete().key(`${prefix}/id/300`);
        await direct.put(`${prefix}/id/302`).value('k8s:app=api;');
      });
      await until('the relist gives 302', () => w.identities.has(302), 100);
      expect(events).toContainEqual({ kind: 'deleteIdentity', id: 300 });
    } finally {
      await w.close();
      await proxy.close();
    }
  }, 30000);

  // Finding 1822: a value in another order than Cilium's sorted form (or naming a key twice) is the same label set;
  // Cilium's cache indexes the parsed labels re-encoded (pkg/allocator/cache.go `OnAdd`: `nextKeyCache[encodeKey(key)]`),
  // distill indexed the raw value: `idForLabels` never found the id, so `--exit-at-eof` (settledCluster) waited for good.
  it('1822. a value in another order, or naming a key twice, is indexed under its sorted label set', async () => {
    const c = connectEtcd(etcd.url);
    etcd.track(c);
    const prefix = `unsorted/${P}`;
    await c.put(`${prefix}/id/300`).value('k8s:io.kubernetes.pod.namespace=shop;k8s:app=db;');
    const events: IdentityEvent[] = [];
    const w = await IdentityWatcher.start(c, (e) => events.push(e), prefix, 50);
    try {
      expect(w.idForLabels('k8s:app=db;k8s:io.kubernetes.pod.namespace=shop;')).toBe(300);
      // The same set in Cilium's order: no event (nothing changed).
      await c.put(`${prefix}/id/300`).value('k8s:app=db;k8s:io.kubernetes.pod.namespace=shop;');
      await c.put(`${prefix}/id/301`).value('k8s:app=web;k8s:app=api;');
      await until('301 arrives', () => w.identities.has(301));
      expect(events.filter((e) => e.id === 300)).toHaveLength(1);
      // A key named twice: the first value, what Cilium's selectors read (`LabelArray.Get`; review 1891).
      expect(w.idForLabels('k8s:app=web;')).toBe(301);
    } finally {
      await w.close();
    }
  }, 30000);
});
