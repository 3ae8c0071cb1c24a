import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { IdentityAllocator } from '../../src/kvstore/allocator.js';
import { connectEtcd } from '../../src/kvstore/client.js';
import { CuttableProxy, PrivateEtcd, requireEtcdOrSkip, until } from './etcd-server.js';

/*
 * Review 31x of 31u's lock (docs/attack-findings-31x.md). etcd's concurrency.Mutex `Lock`, once the keys created
 * before its own are gone, reads its own key and returns ErrSessionExpired when it is lost: a waiter whose key went
 * (its lease expired, or an operator removed a stale lock with `etcdctl del --prefix <lock path>/`) must not keep
 * polling for a turn that can never come.
 */
const P = 'cilium/state/identities/v1';
const withEtcd = requireEtcdOrSkip('lock attack tests') ? describe : describe.skip;

const etcd = new PrivateEtcd();
const client = (): Etcd3 => etcd.client({ callTimeoutMs: 2000 });

/** A foreign holder of a label set's lock (a Cilium agent), and the waiter queued behind it. */
async function queuedBehindHolder(set: string, opts: { leaseTtlSec?: number } = {}) {
  const c = client();
  const lease = c.lease(30);
  const lockPath = `${P}/locks/${set}`;
  const holder = `${lockPath}/${BigInt(await lease.grant()).toString(16)}`;
  await c.put(holder).value('').lease(await lease.grant());
  const w = await IdentityAllocator.create(client(), { url: etcd.url, node: 'waiter', ...opts });
  const labels = set.split(';').filter((l) => l !== '');
  // `at`: when the allocation ended, to compare with when the waiter's turn came.
  const pending = w.allocate(labels).then(
    (a) => ({ ok: true as const, id: a.id, at: Date.now() }),
    (e: unknown) => ({ ok: false as const, error: (e as Error).message, at: Date.now() }),
  );
  await until('waiter queued behind the holder', async () => (await c.getAll().prefix(`${lockPath}/`).keys()).length === 2);
  return { c, lease, lockPath, holder, w, pending };
}

withEtcd('31x. the label-set lock in real etcd', () => {
  etcd.setUp();

  describe('3220. a lock waiter whose own key is gone', () => {
    it('an operator removing a stale lock (del --prefix): the waiter allocates at once, not after 10 s with "still held by undefined"', async () => {
      const q = await queuedBehindHolder('k8s:app=stale;');
      const freed = Date.now();
      await q.c.delete().prefix(`${q.lockPath}/`);
      const got = await q.pending;
      expect(got).toMatchObject({ ok: true });
      expect(got.at - freed).toBeLessThan(5000);
      expect(await q.c.getAll().prefix(`${q.lockPath}/`).keys()).toEqual([]);
      const masters = Object.values(await q.c.getAll().prefix(`${P}/id/`).strings()).filter((v) => v === 'k8s:app=stale;');
      expect(masters).toHaveLength(1);
      await q.lease.revoke();
      await q.w.close();
    }, 20_000);

    it("the waiter's lease lost while it waits (its key goes with it): it allocates under its new lease once the holder leaves", async () => {
      const q = await queuedBehindHolder('k8s:app=expired;');
      const lost = q.w.currentLease!;
      await q.c.leaseClient.leaseRevoke({ ID: lost });
      await until('the waiter has a new lease', async () => q.w.currentLease !== undefined && q.w.currentLease !== lost);
      const freed = Date.now();
      await q.c.delete().key(q.holder);
      const got = await q.pending;
      expect(got).toMatchObject({ ok: true });
      expect(got.at - freed).toBeLessThan(5000);
      const slaves = await q.c.getAll().prefix(`${P}/value/k8s:app=expired;/`).strings();
      expect(Object.values(slaves)).toEqual([String(got.ok ? got.id : -1)]);
      await q.lease.revoke();
      await q.w.close();
    }, 20_000);
  });

  /*
   * etcd's concurrency.Mutex `Lock` deletes its key when waiting fails ("release lock key if wait failed"). A waiter
   * whose look at the holder failed (etcd away for a moment) threw out of `KvLock.acquire` and left its key in the
   * queue on its lease, which it keeps alive: the lock of that label set was then held for good by a node that no
   * longer wanted it, once its retry joined an id another node made meanwhile (without the lock).
   */
  describe('3221. a lock waiter whose look at the holder fails', () => {
    it('leaves no key in the queue: a later taker of the lock is not held by a node that stopped waiting', async () => {
      const set = 'k8s:app=cut-waiter;';
      const c = client();
      const lease = c.lease(30);
      const lockPath = `${P}/locks/${set}`;
      const holder = `${lockPath}/${BigInt(await lease.grant()).toString(16)}`;
      await c.put(holder).value('').lease(await lease.grant());
      const proxy = await CuttableProxy.start(etcd.url);
      const viaProxy = connectEtcd(proxy.url, { callTimeoutMs: 500 });
      etcd.track(viaProxy);
      const w = await IdentityAllocator.create(viaProxy, { url: etcd.url, node: 'cut-waiter' });
      const failed = w.allocate(['k8s:app=cut-waiter']).then(
        () => 'allocated',
        (e: unknown) => (e as Error).message,
      );
      await until('waiter queued behind the holder', async () => (await c.getAll().prefix(`${lockPath}/`).keys()).length === 2);
      proxy.cut();
      expect(await failed).not.toBe('allocated');
      proxy.heal();
      await until("the waiter's key left the queue without another allocation", async () => (await c.getAll().prefix(`${lockPath}/`).keys()).length === 1);
      // The holder's node makes the id and lets the lock go; the waiter's retry joins that id (no lock needed).
      const x = await IdentityAllocator.create(client(), { url: etcd.url, node: 'cut-holder', locks: false });
      const made = await x.allocate(['k8s:app=cut-waiter']);
      await c.delete().key(holder);
      expect(await w.allocate(['k8s:app=cut-waiter'])).toEqual({ id: made.id, isNew: false });
      expect(await c.getAll().prefix(`${lockPath}/`).keys()).toEqual([]);
      await lease.revoke();
      await Promise.all([w.close(), x.close()]);
      await proxy.close();
    }, 30_000);
  });
});
