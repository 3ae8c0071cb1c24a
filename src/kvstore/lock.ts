import type { Etcd3, ICompare, IRangeRequest, IRangeResponse, IRequestOp } from 'etcd3';
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
   * Takes the lock, polling with backoff while others hold it; with each look at the holder, `giveUp.read` is read in
   * the same request and `giveUp.done` may say the lock is no longer needed (returns undefined then, after
   * withdrawing from the queue), as it does at once when its own key is gone (its lease ended, or the key was
   * deleted; attack-findings-31x, 3220). The first look comes with the key's creation, as etcd's concurrency.Mutex
   * `tryAcquire` asks for the holder in the transaction that puts its key: one request per look, not three
   * (attack-findings-31u, 3142).
   */
  static async acquire(client: Etcd3, path: string, lease: string, giveUp: GiveUp, leftover: (lock: KvLock) => void, maxWaitMs = 10_000): Promise<KvLock | undefined> {
    const key = `${path}/${BigInt(lease).toString(16)}`;
    try {
      return await KvLock.queue(client, path, key, lease, giveUp, maxWaitMs);
    } catch (e) {
      // Our key may be in the queue, on a lease we keep alive: left there, it would hold every later taker of the
      // lock (etcd's Mutex `Lock` deletes it when the wait fails; attack-findings-31x, 3221). Deleting by name is
      // safe: only this lease writes it, and one acquire of a path at a time.
      const lock = new KvLock(client, key, '0');
      await lock.unlock().catch(() => leftover(lock));
      throw e;
    }
  }

  private static async queue(client: Etcd3, path: string, key: string, lease: string, giveUp: GiveUp, maxWaitMs: number): Promise<KvLock | undefined> {
    const holder: IRequestOp = { request_range: { key: Buffer.from(`${path}/`), range_end: prefixEnd(Buffer.from(`${path}/`)), sort_target: 'Create', sort_order: 'Ascend', limit: 1 } };
    const check: IRequestOp = { request_range: giveUp.read };
    const res = await client.kv.txn({
      compare: [{ key: Buffer.from(key), target: 'Create', result: 'Equal', create_revision: 0 }],
      success: [{ request_put: { key: Buffer.from(key), value: Buffer.alloc(0), lease } }, holder, check],
      failure: [{ request_range: { key: Buffer.from(key) } }, holder, check],
    });
    const rev = res.succeeded ? res.header.revision : (res.responses[0]?.response_range?.kvs[0]?.create_revision ?? res.header.revision);
    const lock = new KvLock(client, key, rev);
    const start = Date.now();
    let looked = res.responses.slice(1);
    for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
      const owner = looked[0]?.response_range?.kvs[0];
      const first = owner?.key.toString();
      if (first === key) return lock;
      // Our key is gone (its lease ended, or someone deleted it): no turn will come (etcd's Mutex: ErrSessionExpired).
      if (owner === undefined || BigInt(owner.create_revision) > BigInt(rev)) return undefined;
      const done = looked[1]?.response_range;
      if (done !== undefined && giveUp.done(done)) {
        await lock.unlock();
        return undefined;
      }
      if (Date.now() - start > maxWaitMs) throw new Error(`lock ${path}: still held by ${first} after ${maxWaitMs} ms`);
      await new Promise((r) => setTimeout(r, wait));
      looked = (await client.kv.txn({ compare: [], success: [holder, check], failure: [] })).responses;
    }
  }
}

/** A read asked with each look at a lock's holder, and whether its answer makes the lock unneeded. */
export interface GiveUp {
  readonly read: IRangeRequest;
  readonly done: (res: IRangeResponse) => boolean;
}
