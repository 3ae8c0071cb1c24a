import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { listPrefix } from './client.js';
import { IDENTITIES_PREFIX } from './layout.js';
import { canonicalLabelSetKey, parseLabelSetKey } from './labels.js';

/**
 * What a node's engine learns from the cluster's identities, in the kvstore's own shape (this folder
 * imports nothing else of distill); src/agent/etcd-identities.ts turns them into engine events.
 */
export type IdentityEvent =
  | { readonly kind: 'upsertIdentity'; readonly id: number; readonly labels: readonly string[] }
  | { readonly kind: 'deleteIdentity'; readonly id: number }
  /** An id whose value distill cannot read (Cilium reads it as labels): held as a fail-closed stand-in (finding 2001). */
  | { readonly kind: 'unreadableIdentity'; readonly id: number };

export interface WatcherStats {
  /** Keys under id/ that are not `id/<decimal>` -> labels: skipped (Cilium logs and skips a bad id too), a known id deleted. */
  invalid: number;
  disconnects: number;
  /** Lists after the watch was canceled (a compacted revision, or any other watch error) or reconnected. */
  relists: number;
}

/**
 * Lists then watches the master keys (id/ prefix) from the list's revision + 1, so no change is
 * missed or seen twice. When etcd cancels the watch (the revision to resume from was compacted
 * meanwhile, or any other watch error) the keys are listed again and every id the list no longer
 * holds is deleted, as Cilium's etcd watch loop does (pkg/kvstore/etcd.go: on `r.Err()`,
 * ErrCompacted included, `localCache.MarkAllForDeletion()` then `goto reList`). A watch that
 * reconnected after a disconnect is relisted the same way: a resumed watch cannot tell an etcd
 * that lost its data and whose new history already passed the old revision (finding 1821), and
 * etcd3 resumes from the revision current at the reconnect, not from the last one delivered.
 * Emits an upsert only when an id is new or its labels changed.
 */
export class IdentityWatcher {
  /** Id -> its label-set key, in Cilium's sorted form whatever order etcd holds it in. */
  readonly identities = new Map<number, string>();
  /** Label-set key (sorted) -> ids with that label set (more than one only until the GC collects the unused). */
  private readonly byLabels = new Map<string, Set<number>>();
  /** Ids whose value cannot be read (not in `identities`, never joined by the allocator): until deleted or readable. */
  private readonly unreadable = new Set<number>();
  readonly stats: WatcherStats = { invalid: 0, disconnects: 0, relists: 0 };
  private watcher: Watcher | undefined;
  private readonly idPrefix: string;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;
  /** Why changes may be missed now (watch disconnected, relisting), or undefined: `problem`. */
  private down: string | undefined;
  private failedLists = 0;

  private constructor(
    private readonly client: Etcd3,
    private readonly onEvent: (e: IdentityEvent) => void,
    prefix: string,
    private readonly retryMs: number,
  ) {
    this.idPrefix = `${prefix}/id/`;
  }

  static async start(client: Etcd3, onEvent: (e: IdentityEvent) => void, prefix = IDENTITIES_PREFIX, retryMs = 200): Promise<IdentityWatcher> {
    const w = new IdentityWatcher(client, onEvent, prefix, retryMs);
    await w.listAndWatch();
    return w;
  }

  /** Lists the ids (deleting those no longer listed), then watches from the list's revision + 1. */
  private async listAndWatch(): Promise<void> {
    // Paged: one response for all the ids failed over grpc-js's 4 MiB receive limit (1142).
    const listed = await listPrefix(this.client, this.idPrefix);
    const seen = new Set<number>();
    for (const kv of listed.kvs) {
      const id = this.put(kv);
      if (id !== undefined) seen.add(id);
    }
    for (const [id, labels] of [...this.identities]) if (!seen.has(id)) this.forget(id, labels);
    for (const id of [...this.unreadable]) if (!seen.has(id)) this.forgetUnreadable(id);
    const watcher = await this.client.watch().prefix(this.idPrefix).startRevision((BigInt(listed.revision) + 1n).toString()).create();
    if (this.closed) return void (await watcher.cancel());
    watcher.on('put', (kv) => this.put(kv));
    watcher.on('delete', (kv) => this.delete(kv));
    // `create` resolved on the first 'connected': every later one is a reconnect, whose history may not be ours (1821).
    watcher.on('connected', () => this.relist(watcher, 'watch reconnected; relisting'));
    watcher.on('disconnected', (err: Error) => {
      this.stats.disconnects++;
      this.down = `watch disconnected (${err.message}); reconnecting`;
    });
    watcher.on('error', () => this.relist(watcher, 'watch canceled (compacted history); relisting'));
    this.watcher = watcher;
    this.down = undefined;
    this.failedLists = 0;
  }

  /**
   * Why this watcher may be missing changes, or undefined: its watch is disconnected, or it is
   * relisting after a cancel and the list keeps failing (etcd down after a compaction). Cilium's
   * etcd status checker likewise reports an unreachable etcd as the kvstore's error
   * (pkg/kvstore/etcd.go `statusChecker`: "not able to connect to any etcd endpoints",
   * returned by `Status()`), which fails the agent's health.
   */
  get problem(): string | undefined {
    return this.down;
  }

  /**
   * The watch was canceled by etcd, or reconnected to an etcd whose history may not be the one it
   * watched: events since its last revision may be lost for good.
   */
  private relist(canceled: Watcher, why: string): void {
    if (this.closed || this.watcher !== canceled) return;
    this.watcher = undefined;
    this.stats.relists++;
    canceled.removeAllListeners();
    canceled.on('error', () => undefined);
    void canceled.cancel().catch(() => undefined);
    this.down = why;
    const attempt = (): void => {
      if (this.closed) return;
      this.listAndWatch().catch((e: unknown) => {
        this.failedLists++;
        this.down = `relist after a canceled watch failed ${this.failedLists} times (${e instanceof Error ? e.message : String(e)}); retrying`;
        this.retry = setTimeout(attempt, this.retryMs);
      });
    };
    attempt();
  }

  /** The lowest id the cluster has for a label-set key, as far as this watcher has seen. */
  idForLabels(labelsKey: string): number | undefined {
    const ids = this.byLabels.get(labelsKey);
    return ids && ids.size > 0 ? Math.min(...ids) : undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
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

  /**
   * The id of the key, or undefined when it is not an id. An id whose value cannot be read leaves
   * `identities` (its last labels are not what the key says now, finding 1820: Cilium reads every
   * non-empty value as labels, `NewLabelsFromSortedList` never fails, so the number now stands for
   * other pods) and is reported once as unreadable, listed or watched alike: deleting it let its pods'
   * addresses fall to identity 0, past the denies both readings apply (finding 2001, as 1936).
   */
  private put(kv: IKeyValue): number | undefined {
    const id = this.idOf(kv);
    if (id === undefined) return undefined;
    let key: string;
    try {
      // Indexed in Cilium's sorted form (1822): a value in another order names the same label set.
      key = canonicalLabelSetKey(parseLabelSetKey(kv.value.toString()));
    } catch {
      this.stats.invalid++;
      const old = this.identities.get(id);
      if (old !== undefined) {
        this.identities.delete(id);
        this.unindex(id, old);
      }
      if (!this.unreadable.has(id)) {
        this.unreadable.add(id);
        this.onEvent({ kind: 'unreadableIdentity', id });
      }
      return id;
    }
    this.unreadable.delete(id);
    const old = this.identities.get(id);
    if (old === key) return id;
    if (old !== undefined) this.unindex(id, old);
    this.identities.set(id, key);
    const ids = this.byLabels.get(key) ?? new Set<number>();
    this.byLabels.set(key, ids.add(id));
    this.onEvent({ kind: 'upsertIdentity', id, labels: parseLabelSetKey(key) });
    return id;
  }

  private delete(kv: IKeyValue): void {
    const id = this.idOf(kv);
    if (id !== undefined && this.unreadable.has(id)) return this.forgetUnreadable(id);
    const old = id === undefined ? undefined : this.identities.get(id);
    if (id === undefined || old === undefined) return;
    this.forget(id, old);
  }

  private forget(id: number, labelsKey: string): void {
    this.identities.delete(id);
    this.unindex(id, labelsKey);
    this.onEvent({ kind: 'deleteIdentity', id });
  }

  private forgetUnreadable(id: number): void {
    this.unreadable.delete(id);
    this.onEvent({ kind: 'deleteIdentity', id });
  }

  private unindex(id: number, labelsKey: string): void {
    const ids = this.byLabels.get(labelsKey);
    ids?.delete(id);
    if (ids?.size === 0) this.byLabels.delete(labelsKey);
  }
}
