import type { Etcd3, ICompare, IRequestOp, Lease } from 'etcd3';
import { isUnavailable, KvstoreUnavailableError, prefixEnd } from './client.js';
import { IDENTITIES_PREFIX } from './layout.js';
import { labelSetKey } from './labels.js';
import { KvLock } from './lock.js';
import { readSlaves, type SlaveKey, type SlaveView, slavesWrittenSince } from './slaves.js';

/** Cilium's cluster-wide identity range (the local cluster, no cluster-mesh bits). */
const MIN_GLOBAL_ID = 256;
const MAX_GLOBAL_ID = 65535;
/** How soon a lock key left by a failed unlock is deleted again without waiting for the next allocation. */
const UNLOCK_RETRY_MS = 1000;

export interface AllocatorOptions {
  /** etcd URL, for error messages. */
  readonly url: string;
  /** The slave-key suffix: unique per node, no '/' (Cilium uses the node's IP). */
  readonly node: string;
  readonly prefix?: string;
  readonly minId?: number;
  readonly maxId?: number;
  /**
   * Ids of other nodes this node may join (default: every id). An id its engine skips (the reserved range, past
   * 2^24: a hostile master key with a local pod's labels) parked the pod at the unallocated number for good while
   * the source reported itself settled (finding 3824); such an id is passed over as if it named another set.
   */
  readonly usableId?: (id: number) => boolean;
  readonly leaseTtlSec?: number;
  /** Attempts per allocation before AllocationConflictError (Cilium: 16). */
  readonly maxAttempts?: number;
  /** First backoff after a conflict, ms, doubled per attempt with jitter (Cilium: 20). */
  readonly backoffMs?: number;
  readonly random?: () => number;
  /**
   * Take the label set's lock around creating a new id (default true, as Cilium). Our create
   * transaction is safe without it among distill agents; the lock is for Cilium agents on the
   * same etcd, and costs two more writes per new id.
   */
  readonly locks?: boolean;
  /**
   * The cluster's ids as this node has seen them (its identity watcher): an id whose label set
   * nobody references any more is reused instead of doubled, and known ids are not tried as new.
   */
  readonly cache?: IdentityCache;
}

interface IdentityCache {
  idForLabels(labelsKey: string): number | undefined;
  readonly identities: ReadonlyMap<number, string>;
}

export interface Allocation {
  readonly id: number;
  /** True when this call created the id's master key. */
  readonly isNew: boolean;
}

class AllocationConflictError extends Error {}

/** Keys of the kvstore layout (pkg/kvstore/allocator: basePath/id, basePath/value, basePath/locks). */
export class IdentityKeys {
  constructor(readonly base: string = IDENTITIES_PREFIX) {}
  master(id: number): string {
    return `${this.base}/id/${id}`;
  }
  slavePrefix(labelsKey: string): string {
    return `${this.base}/value/${labelsKey}/`;
  }
  slave(labelsKey: string, node: string): string {
    return `${this.slavePrefix(labelsKey)}${node}`;
  }
  /** The lock of a label set (Cilium: path.Join(lockPrefix, key)); holders add /<lease hex>. */
  lock(labelsKey: string): string {
    return `${this.base}/locks/${labelsKey}`;
  }
  get idPrefix(): string {
    return `${this.base}/id/`;
  }
  get valuePrefix(): string {
    return `${this.base}/value/`;
  }
}

/** "No key starts with prefix": etcd compares every key of a range, and an empty range as create_revision 0. */
export function prefixIsEmpty(prefix: string): ICompare {
  const key = Buffer.from(prefix);
  return { key, range_end: prefixEnd(key), target: 'Create', result: 'Equal', create_revision: 0 };
}

/** The slave key still exists and still names the same id, as written. */
const slaveStill = (s: SlaveKey): ICompare => ({ key: Buffer.from(s.key), target: 'Value', result: 'Equal', value: Buffer.from(s.value) });

const put = (key: string, value: string, lease?: string): IRequestOp => ({
  request_put: { key: Buffer.from(key), value: Buffer.from(value), ...(lease === undefined ? {} : { lease }) },
});

/**
 * Cluster-wide identity allocator with Cilium's kvstore layout. The master key id/<id> maps an
 * id to its label set; each node that uses the id holds a slave key value/<labels>/<node> -> id on
 * its lease. A new id is created by one etcd transaction that requires the master key to be absent
 * AND the label set's slave keys unchanged since a read that found none naming an id of the set
 * (src/kvstore/slaves.ts), so concurrent allocators of one label set produce exactly one id (the
 * losers see the winner's slave key and reuse its id).
 */
export class IdentityAllocator {
  readonly keys: IdentityKeys;
  readonly stats = { attempts: 0, conflicts: 0, leasesGranted: 0, leasesLost: 0 };
  private readonly local = new Map<string, { id: number; refs: number }>();
  /** Per label set, the tail of its queue: allocate and release of one label set run in call order. */
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly pendingUnlocks: KvLock[] = [];
  private unlockTimer: NodeJS.Timeout | undefined;
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private closed = false;
  private granting: Promise<string> | undefined;
  private readonly usable: (id: number) => boolean;

  private constructor(
    private readonly client: Etcd3,
    private readonly opts: AllocatorOptions,
  ) {
    if (opts.node === '' || opts.node.includes('/')) throw new Error(`allocator node ${JSON.stringify(opts.node)}: must be non-empty without '/'`);
    this.keys = new IdentityKeys(opts.prefix);
    this.usable = opts.usableId ?? (() => true);
  }

  static async create(client: Etcd3, opts: AllocatorOptions): Promise<IdentityAllocator> {
    const a = new IdentityAllocator(client, opts);
    await a.ensureLease();
    return a;
  }

  get node(): string {
    return this.opts.node;
  }

  /** The lease the slave keys are on now (hex as in lock keys is `BigInt(id).toString(16)`). */
  get currentLease(): string | undefined {
    return this.leaseId;
  }

  /** The label sets this node holds and their ids (its local view). */
  held(): Map<string, number> {
    return new Map([...this.local].map(([k, v]) => [k, v.id]));
  }

  /** The label sets this node holds under `id` (one, unless etcd was rewritten), without copying `held()`. */
  keysHeldAs(id: number): string[] {
    const out: string[] = [];
    for (const [key, held] of this.local) if (held.id === id) out.push(key);
    return out;
  }

  /** The id of a label set (`source:key=value` strings), reusing the cluster's id if there is one. */
  async allocate(labels: Iterable<string>): Promise<Allocation> {
    const key = labelSetKey(labels);
    return this.inOrder(key, () => this.allocateKey(key));
  }

  private async allocateKey(key: string): Promise<Allocation> {
    const held = this.local.get(key);
    if (held) {
      held.refs++;
      return { id: held.id, isNew: false };
    }
    const result = await this.allocateGlobal(key);
    this.local.set(key, { id: result.id, refs: 1 });
    return result;
  }

  /** Drops one local reference; the last one deletes this node's slave key. */
  async release(labels: Iterable<string>): Promise<void> {
    const key = labelSetKey(labels);
    return this.inOrder(key, () => this.releaseKey(key));
  }

  /**
   * Repairs a label set this node holds whose master key no longer maps its id to it. Deleted:
   * re-created for the same id (only if still absent), with this node's slave key, as Cilium's
   * syncLocalKeys / UpdateKey (pkg/allocator) does. Naming other labels (rewritten in etcd): this
   * node's hold is dropped (its slave key deleted, every local reference forgotten) so the next
   * `allocate` gets an id of the set's own labels. Cilium keeps the endpoint on the id, whose
   * traffic then carries the rewritten labels on every node; that is more open than either set.
   */
  async repair(labels: Iterable<string>): Promise<'ok' | 'restored' | 'dropped'> {
    const key = labelSetKey(labels);
    return this.inOrder(key, async () => {
      const held = this.local.get(key);
      if (!held) return 'ok';
      const master = this.keys.master(held.id);
      const lease = await this.ensureLease();
      const res = await this.client.kv.txn({
        compare: [{ key: Buffer.from(master), target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [put(master, key), put(this.keys.slave(key, this.opts.node), String(held.id), lease)],
        failure: [{ request_range: { key: Buffer.from(master) } }],
      });
      if (res.succeeded) return 'restored';
      const value = res.responses[0]?.response_range?.kvs[0]?.value.toString();
      if (value === key || value === undefined) return 'ok';
      await this.client.delete().key(this.keys.slave(key, this.opts.node));
      this.local.delete(key);
      return 'dropped';
    });
  }

  private async releaseKey(key: string): Promise<void> {
    const held = this.local.get(key);
    if (!held) throw new Error(`release of label set ${key} not held by node ${this.opts.node}`);
    if (--held.refs > 0) return;
    this.local.delete(key);
    try {
      await this.client.delete().key(this.keys.slave(key, this.opts.node));
    } catch (err) {
      held.refs = 1;
      this.local.set(key, held);
      throw this.wrap(err, `release of ${key}`);
    }
  }

  /** Stops keepalives; `revoke` also deletes every slave key of this node now (else they expire with the lease). */
  async close(revoke = true): Promise<void> {
    this.closed = true;
    clearTimeout(this.unlockTimer);
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = undefined;
    if (!lease) return;
    if (revoke) await lease.revoke().catch(() => lease.release());
    else lease.release();
  }

  private inOrder<T>(key: string, op: () => Promise<T>): Promise<T> {
    const run = (this.queues.get(key) ?? Promise.resolve()).then(op, op);
    const tail = run.catch(() => undefined);
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return run;
  }

  private async allocateGlobal(key: string): Promise<Allocation> {
    const max = this.opts.maxAttempts ?? 16;
    for (let attempt = 0; attempt < max; attempt++) {
      this.stats.attempts++;
      try {
        const got = await this.tryOnce(key);
        if (got) return got;
      } catch (err) {
        throw this.wrap(err, `allocation of ${key}`);
      }
      this.stats.conflicts++;
      await this.backoff(attempt);
    }
    throw new AllocationConflictError(`allocation of ${key} on node ${this.opts.node}: still conflicting after ${max} attempts`);
  }

  private async tryOnce(key: string): Promise<Allocation | undefined> {
    const lease = await this.ensureLease();
    await this.retryUnlocks();
    const seen = await readSlaves(this.client, this.keys, key, this.usable);
    const reused = await this.reuse(key, lease, seen);
    // Created only after a read that found no id of the set. When the read found one and joining
    // it failed (its slave key deleted or changed since), this attempt ends: Cilium's
    // lockedAllocate (pkg/allocator) returns an error when AcquireReference fails for an id it
    // found, and Allocate backs off and looks again; it never allocates a new id after finding one.
    const noIdOfSet = seen.noIdOfSet;
    if (reused || noIdOfSet === undefined) return reused;
    // A new id, under the label set's lock as in Cilium (so Cilium agents sharing this etcd never
    // race us into two ids); the transaction itself also requires `noIdOfSet` (nothing written since `seen`).
    if (this.opts.locks === false) return this.createNew(key, lease, noIdOfSet, undefined);
    const lock = await KvLock.acquire(this.client, this.keys.lock(key), lease, slavesWrittenSince(this.keys, key, seen.revision), (left) => this.unlockLater(left));
    if (!lock) return this.reuse(key, lease, await readSlaves(this.client, this.keys, key, this.usable));
    try {
      return await this.createNew(key, lease, noIdOfSet, lock);
    } finally {
      await lock.unlock().catch(() => this.unlockLater(lock));
    }
  }

  /** Creates an id for a label set while `noIdOfSet` (from a read that found no id of the set) holds. */
  private async createNew(key: string, lease: string, noIdOfSet: readonly ICompare[], lock: KvLock | undefined): Promise<Allocation | undefined> {
    const id = this.pickId();
    const res = await this.client.kv.txn({
      compare: [
        { key: Buffer.from(this.keys.master(id)), target: 'Create', result: 'Equal', create_revision: 0 },
        ...noIdOfSet,
        ...(lock ? [lock.held()] : []),
      ],
      success: [put(this.keys.master(id), key), put(this.keys.slave(key, this.opts.node), String(id), lease)],
      failure: [],
    });
    if (res.succeeded) return { id, isNew: true };
    // Lost the race for this label set (or the id): join the winner's id at once, no backoff.
    return this.reuse(key, lease, await readSlaves(this.client, this.keys, key, this.usable));
  }

  /**
   * The id of a label set some node already uses (a slave key naming an id whose master key holds
   * the set, guarded by that key still naming it), else, only when `seen` found no id of the set,
   * one the cache knows (guarded by `seen.noIdOfSet`). Never creates an id.
   */
  private async reuse(key: string, lease: string, seen: SlaveView): Promise<Allocation | undefined> {
    const found = seen.joinable;
    if (found !== undefined) return (await this.acquireExisting(key, found.id, lease, [slaveStill(found)])) ? { id: found.id, isNew: false } : undefined;
    const cached = this.opts.cache?.idForLabels(key);
    if (cached !== undefined && this.usable(cached) && seen.noIdOfSet !== undefined && (await this.acquireExisting(key, cached, lease, seen.noIdOfSet))) return { id: cached, isNew: false };
    return undefined;
  }

  /** Lock keys left behind by an unlock that failed (etcd away): they would block others until our lease ends. */
  private async retryUnlocks(): Promise<void> {
    const pending = this.pendingUnlocks.splice(0);
    for (const lock of pending) await lock.unlock().catch(() => this.unlockLater(lock));
  }

  /**
   * A lock key an unlock could not delete: retried before the next allocation and, for a node that allocates nothing
   * more, on a timer; on our live lease it would otherwise hold that label set's lock for every node (3221).
   */
  private unlockLater(lock: KvLock): void {
    this.pendingUnlocks.push(lock);
    if (this.closed || this.unlockTimer !== undefined) return;
    this.unlockTimer = setTimeout(() => {
      this.unlockTimer = undefined;
      void this.retryUnlocks();
    }, UNLOCK_RETRY_MS);
    this.unlockTimer.unref();
  }

  /**
   * Adds this node's slave key only while the master key still maps the id to this label set and
   * `guard` holds. Every slave key of a label set that names an id of the set must name one id:
   * joining an id is guarded by a slave key that still names it (or, for an id only the cache
   * knows, by the slave keys being unchanged since a read that found none naming an id of the set),
   * so a node creating a new id at the same time (which needs the same) cannot leave two.
   */
  private async acquireExisting(key: string, id: number, lease: string, guard: readonly ICompare[]): Promise<boolean> {
    const res = await this.client.kv.txn({
      compare: [{ key: Buffer.from(this.keys.master(id)), target: 'Value', result: 'Equal', value: Buffer.from(key) }, ...guard],
      success: [put(this.keys.slave(key, this.opts.node), String(id), lease)],
      failure: [],
    });
    return res.succeeded;
  }

  private pickId(): number {
    const min = this.opts.minId ?? MIN_GLOBAL_ID;
    const max = this.opts.maxId ?? MAX_GLOBAL_ID;
    const taken = this.opts.cache?.identities;
    let id = min;
    for (let tries = 0; tries < 64; tries++) {
      id = min + Math.floor((this.opts.random ?? Math.random)() * (max - min + 1));
      if (!taken?.has(id)) break;
    }
    return id;
  }

  private async backoff(attempt: number): Promise<void> {
    const base = (this.opts.backoffMs ?? 20) * 2 ** Math.min(attempt, 6);
    const ms = base / 2 + (this.opts.random ?? Math.random)() * base;
    await new Promise((r) => setTimeout(r, ms));
  }

  /**
   * The node's lease, granted on first use and again after etcd reported it lost (expired while
   * etcd or this node was away); a new lease re-creates every slave key this node holds.
   */
  private async ensureLease(): Promise<string> {
    if (this.leaseId !== undefined) return this.leaseId;
    if (this.closed) throw new Error(`allocator of node ${this.opts.node} is closed`);
    // One grant at a time: a recovery and a caller's allocate must not both grant a lease.
    this.granting ??= this.grantLease().finally(() => (this.granting = undefined));
    return this.granting;
  }

  private async grantLease(): Promise<string> {
    const lease = this.client.lease(this.opts.leaseTtlSec ?? 15, { autoKeepAlive: true });
    lease.on('lost', () => {
      if (this.lease !== lease) return;
      this.stats.leasesLost++;
      this.lease = undefined;
      this.leaseId = undefined;
      void this.recover();
    });
    let id: string;
    try {
      id = await lease.grant();
      // The keys go on the new lease before it is used, so a failed restore is retried whole.
      if (this.stats.leasesGranted > 0) await this.restoreSlaveKeys(id);
    } catch (err) {
      lease.release();
      throw this.wrap(err, 'lease grant');
    }
    this.stats.leasesGranted++;
    this.lease = lease;
    this.leaseId = id;
    return id;
  }

  /** Re-grants the lease and restores the slave keys without waiting for the next call (an idle node still uses its ids). */
  private async recover(): Promise<void> {
    for (let attempt = 0; !this.closed && this.leaseId === undefined; attempt++) {
      try {
        await this.ensureLease();
      } catch {
        await this.backoff(Math.min(attempt + 4, 6));
      }
    }
  }

  private async restoreSlaveKeys(lease: string): Promise<void> {
    for (const [key, { id }] of this.local) {
      // Unguarded, as Cilium's UpdateKey: our endpoints use this id, so it is restored even if
      // another node created a second id for the label set while our lease was gone.
      if (await this.acquireExisting(key, id, lease, [])) continue;
      // The master key was collected meanwhile: re-create it for the same id if still free (as Cilium's UpdateKey).
      await this.client.kv.txn({
        compare: [{ key: Buffer.from(this.keys.master(id)), target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [put(this.keys.master(id), key), put(this.keys.slave(key, this.opts.node), String(id), lease)],
        failure: [],
      });
    }
  }

  private wrap(err: unknown, op: string): Error {
    if (isUnavailable(err)) return new KvstoreUnavailableError(this.opts.url, `${op} (node ${this.opts.node})`, err);
    return err instanceof Error ? err : new Error(String(err));
  }
}
