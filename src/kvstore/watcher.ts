import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { IDENTITIES_PREFIX } from './client.js';
import { parseLabelSetKey } from './labels.js';

/**
 * What a node's engine learns from the cluster's identities, in the kvstore's own shape (this folder
 * imports nothing else of distill); src/agent/etcd-identities.ts turns them into engine events.
 */
export type IdentityEvent =
  | { readonly kind: 'upsertIdentity'; readonly id: number; readonly labels: readonly string[] }
  | { readonly kind: 'deleteIdentity'; readonly id: number };

export interface WatcherStats {
  /** Keys under id/ that are not `id/<decimal>` -> labels; skipped (Cilium logs and skips them too). */
  invalid: number;
  disconnects: number;
}

/**
 * Lists then watches the master keys (id/ prefix) from the list's revision + 1, so no change is
 * missed or seen twice; when etcd goes away the watch stream reconnects and resumes after the
 * last revision it delivered (etcd's revisions survive a restart), so events are not lost.
 * Emits an upsert only when an id is new or its labels changed.
 */
export class IdentityWatcher {
  readonly identities = new Map<number, string>();
  /** Label-set key -> ids with that label set (more than one only until the GC collects the unused). */
  private readonly byLabels = new Map<string, Set<number>>();
  readonly stats: WatcherStats = { invalid: 0, disconnects: 0 };
  private watcher: Watcher | undefined;
  private readonly idPrefix: string;

  private constructor(
    private readonly onEvent: (e: IdentityEvent) => void,
    prefix: string,
  ) {
    this.idPrefix = `${prefix}/id/`;
  }

  static async start(client: Etcd3, onEvent: (e: IdentityEvent) => void, prefix = IDENTITIES_PREFIX): Promise<IdentityWatcher> {
    const w = new IdentityWatcher(onEvent, prefix);
    const listed = await client.getAll().prefix(w.idPrefix).exec();
    for (const kv of listed.kvs) w.put(kv);
    const from = (BigInt(listed.header.revision) + 1n).toString();
    const watcher = await client.watch().prefix(w.idPrefix).startRevision(from).create();
    watcher.on('put', (kv) => w.put(kv));
    watcher.on('delete', (kv) => w.delete(kv));
    watcher.on('disconnected', () => w.stats.disconnects++);
    w.watcher = watcher;
    return w;
  }

  /** The lowest id the cluster has for a label-set key, as far as this watcher has seen. */
  idForLabels(labelsKey: string): number | undefined {
    const ids = this.byLabels.get(labelsKey);
    return ids && ids.size > 0 ? Math.min(...ids) : undefined;
  }

  async close(): Promise<void> {
    await this.watcher?.cancel();
    this.watcher = undefined;
  }

  private idOf(kv: IKeyValue): number | undefined {
    const suffix = kv.key.toString().slice(this.idPrefix.length);
    const id = /^[0-9]{1,10}$/.test(suffix) ? Number(suffix) : NaN;
    if (Number.isSafeInteger(id) && id > 0) return id;
    this.stats.invalid++;
    return undefined;
  }

  private put(kv: IKeyValue): void {
    const id = this.idOf(kv);
    if (id === undefined) return;
    const key = kv.value.toString();
    let labels: string[];
    try {
      labels = parseLabelSetKey(key);
    } catch {
      this.stats.invalid++;
      return;
    }
    const old = this.identities.get(id);
    if (old === key) return;
    if (old !== undefined) this.unindex(id, old);
    this.identities.set(id, key);
    const ids = this.byLabels.get(key) ?? new Set<number>();
    this.byLabels.set(key, ids.add(id));
    this.onEvent({ kind: 'upsertIdentity', id, labels });
  }

  private delete(kv: IKeyValue): void {
    const id = this.idOf(kv);
    const old = id === undefined ? undefined : this.identities.get(id);
    if (id === undefined || old === undefined) return;
    this.identities.delete(id);
    this.unindex(id, old);
    this.onEvent({ kind: 'deleteIdentity', id });
  }

  private unindex(id: number, labelsKey: string): void {
    const ids = this.byLabels.get(labelsKey);
    ids?.delete(id);
    if (ids?.size === 0) this.byLabels.delete(labelsKey);
  }
}
