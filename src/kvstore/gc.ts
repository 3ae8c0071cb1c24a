import type { Etcd3 } from 'etcd3';
import { IdentityKeys, prefixIsEmpty } from './allocator.js';
import { listPrefix } from './client.js';

export interface GcRound {
  /** Master keys seen. */
  readonly ids: number;
  /** Master keys no slave key references (candidates, or deleted when already stale last round). */
  readonly unreferenced: number;
  readonly deleted: number;
  /** Candidates for the next round: master key -> mod revision seen now. */
  readonly stale: Map<string, string>;
}

export interface GcOptions {
  readonly prefix?: string;
  /** Candidates from the previous round; only those still unreferenced and unmodified are deleted. */
  readonly previous?: ReadonlyMap<string, string>;
  /** Deletions per second at most (Cilium rate-limits its GC the same way). */
  readonly maxDeletesPerSec?: number;
  readonly sleep?: (ms: number) => Promise<void>;
}

/**
 * One round of Cilium's two-round identity GC: a master key with no slave key is marked in
 * round k and deleted in round k+1 if its mod revision is unchanged. The delete is one
 * transaction that also requires "still no slave key", so it can never remove an id that a node
 * acquired between the list and the delete.
 */
export async function runIdentityGc(client: Etcd3, opts: GcOptions = {}): Promise<GcRound> {
  const keys = new IdentityKeys(opts.prefix);
  const masters = await listPrefix(client, keys.idPrefix);
  const slaves = await listPrefix(client, keys.valuePrefix);
  const referenced = new Set<string>();
  for (const slave of slaves.kvs) {
    const rest = slave.key.toString().slice(keys.valuePrefix.length);
    referenced.add(rest.slice(0, rest.lastIndexOf('/')));
  }
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const gap = 1000 / (opts.maxDeletesPerSec ?? 10);
  const stale = new Map<string, string>();
  let unreferenced = 0;
  let deleted = 0;
  for (const kv of masters.kvs) {
    const labelsKey = kv.value.toString();
    if (referenced.has(labelsKey)) continue;
    unreferenced++;
    const masterKey = kv.key.toString();
    if (opts.previous?.get(masterKey) !== kv.mod_revision) {
      stale.set(masterKey, kv.mod_revision);
      continue;
    }
    const res = await client.kv.txn({
      compare: [
        { key: kv.key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision },
        prefixIsEmpty(keys.slavePrefix(labelsKey)),
      ],
      success: [{ request_delete_range: { key: kv.key } }],
      failure: [],
    });
    if (res.succeeded) deleted++;
    await sleep(gap);
  }
  return { ids: masters.kvs.length, unreferenced, deleted, stale };
}
