import type { Etcd3, ICompare } from 'etcd3';
import type { IdentityKeys } from './allocator.js';
import { prefixEnd } from './client.js';
import type { GiveUp } from './lock.js';

/** A slave key as read: which node's key, naming which id, its value as written. */
export interface SlaveKey {
  readonly key: string;
  readonly id: number;
  readonly value: string;
}

/** Slave keys read per label set, and distinct ids among them looked up; past either, nothing is created. */
const MAX_SLAVE_KEYS = 64;
const MAX_NAMED_IDS = 16;

/**
 * The id a slave key names, read as Cilium's kvstoreBackend.GetIfLocked (pkg/kvstore/allocator) reads
 * it: only a key whose node suffix has no '/' (`prefixMatchesKey`) and a value that
 * `strconv.ParseUint(v, 10, 64)` accepts (decimal digits, leading zeros allowed); every other key is
 * skipped. Ids past 2^53 are skipped too (outside every identity range).
 */
export function slaveId(prefix: string, key: string, value: string): number | undefined {
  if (key.slice(prefix.length).includes('/') || !/^[0-9]{1,20}$/.test(value)) return undefined;
  const id = Number(value);
  return Number.isSafeInteger(id) ? id : undefined;
}

/** A label set's slave keys at one etcd revision. */
export interface SlaveView {
  /** A slave key naming an id whose master key holds this label set (undefined when none does). */
  readonly joinable: SlaveKey | undefined;
  /**
   * Only when the read saw every slave key and every id they name, and none of them is an id of
   * this set: compares that hold while no slave key of the set was written and no master key
   * those keys name changed since the read, so that still no slave key names an id of the set.
   * Undefined when the read found an id of the set (`joinable`): a slave key deleted since (a
   * node releasing it) is invisible to these compares while another node's key may still name
   * that id, so creating or joining another id under them could leave two ids for the set.
   */
  readonly noIdOfSet: readonly ICompare[] | undefined;
  readonly revision: string;
}

/**
 * Reads a label set's slave keys and the master keys of the ids they name, at one revision. A slave
 * key naming an id whose master key holds other labels (or none), or a value Cilium cannot read,
 * names no id of this set: Cilium's allocator looks the set up in its cache of master keys first
 * (pkg/allocator Allocator.GetIfLocked: `mainCache.get` before the backend) and skips unreadable
 * values, so such keys never stop it from allocating. Nor does an id `usable` refuses (finding 3824).
 */
export async function readSlaves(client: Etcd3, keys: IdentityKeys, labelsKey: string, usable: (id: number) => boolean = () => true): Promise<SlaveView> {
  const prefix = Buffer.from(keys.slavePrefix(labelsKey));
  const res = await client.kv.range({ key: prefix, range_end: prefixEnd(prefix), limit: MAX_SLAVE_KEYS });
  const byId = new Map<number, SlaveKey>();
  for (const kv of res.kvs) {
    const key = kv.key.toString();
    const value = kv.value.toString();
    const id = slaveId(prefix.toString(), key, value);
    if (id !== undefined && !byId.has(id)) byId.set(id, { key, id, value });
  }
  const revision = res.header.revision;
  const named = [...byId.values()].slice(0, MAX_NAMED_IDS);
  const masters = await Promise.all(named.map((s) => client.kv.range({ key: Buffer.from(keys.master(s.id)), revision })));
  const after = String(BigInt(revision) + 1n);
  const notSince = (key: Buffer, rangeEnd?: Buffer): ICompare => ({
    key,
    ...(rangeEnd === undefined ? {} : { range_end: rangeEnd }),
    target: 'Mod',
    result: 'Less',
    mod_revision: after,
  });
  const joinable = named.find((s, i) => usable(s.id) && masters[i]?.kvs[0]?.value.toString() === labelsKey);
  const complete = !res.more && byId.size <= MAX_NAMED_IDS;
  return {
    joinable,
    noIdOfSet: joinable === undefined && complete ? [notSince(prefix, prefixEnd(prefix)), ...named.map((s) => notSince(Buffer.from(keys.master(s.id))))] : undefined,
    revision,
  };
}

/** Some slave key of the label set was written after `revision` (a node joined or created an id): its lock is not needed. */
export function slavesWrittenSince(keys: IdentityKeys, labelsKey: string, revision: string): GiveUp {
  const prefix = Buffer.from(keys.slavePrefix(labelsKey));
  return { read: { key: prefix, range_end: prefixEnd(prefix), keys_only: true, min_mod_revision: String(BigInt(revision) + 1n) }, done: (res) => res.kvs.length > 0 };
}
