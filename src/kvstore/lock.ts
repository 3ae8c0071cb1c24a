import type { Etcd3, ICompare } from 'etcd3';
import { prefixEnd } from './client.js';

/**
 * etcd's concurrency.Mutex layout, which Cilium's kvstore.LockPath uses: the holder's key is
 * `<path>/<lease id in hex>` on its lease, and the lock belongs to the key with the lowest create
 * revision under `<path>/`. A dead holder's key goes with its lease.
 */
export class KvLock {
  private constructor(
    private readonly client: Etcd3,
    readonly key: string,
    readonly createRevision: string,
  ) {}

  /** "Still holding it", for the transactions done under the lock. */
  held(): ICompare {
    return { key: Buffer.from(this.key), target: 'Create', result: 'Equal', create_revision: this.createRevision };
  }

  async unlock(): Promise<void> {
    await this.client.delete().key(this.key);
  }

  /**
   * Takes the lock, polling with backoff while others hold it; between polls `giveUp()` may say
   * the lock is no longer needed (returns undefined then, after withdrawing from the queue).
   */
  static async acquire(client: Etcd3, path: string, lease: string, giveUp: () => Promise<boolean>, maxWaitMs = 10_000): Promise<KvLock | undefined> {
    const key = `${path}/${BigInt(lease).toString(16)}`;
    const res = await client.kv.txn({
      compare: [{ key: Buffer.from(key), target: 'Create', result: 'Equal', create_revision: 0 }],
      success: [{ request_put: { key: Buffer.from(key), value: Buffer.alloc(0), lease } }],
      failure: [{ request_range: { key: Buffer.from(key) } }],
    });
    const rev = res.succeeded ? res.header.revision : (res.responses[0]?.response_range?.kvs[0]?.create_revision ?? res.header.revision);
    const lock = new KvLock(client, key, rev);
    const start = Date.now();
    for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
      const first = await client.kv.range({
        key: Buffer.from(`${path}/`),
        range_end: prefixEnd(Buffer.from(`${path}/`)),
        sort_target: 'Create',
        sort_order: 'Ascend',
        limit: 1,
      });
      if (first.kvs[0]?.key.toString() === key) return lock;
      if ((await giveUp()) || Date.now() - start > maxWaitMs) {
        await lock.unlock();
        if (Date.now() - start > maxWaitMs) throw new Error(`lock ${path}: still held by ${first.kvs[0]?.key.toString()} after ${maxWaitMs} ms`);
        return undefined;
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
