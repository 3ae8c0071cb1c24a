import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { EngineEvent } from '../engine/events.js';
import { IdentityAllocator } from '../kvstore/allocator.js';
import { connectEtcd } from '../kvstore/client.js';
import { labelSetKey, parseLabelSetKey } from '../kvstore/labels.js';
import { IdentityWatcher, type IdentityEvent } from '../kvstore/watcher.js';
import { namespaceWithDefaults, type Pod } from '../model/cluster.js';
import { limitedWarn, LogLimiter } from './log-limit.js';
import { FIRST_CLUSTER_IDENTITY, identityLabelProblem, MAX_CLUSTER_IDENTITY, podIdentityLabels } from '../model/identity.js';

/** What the agent's etcd identity source is told. */
export interface EtcdIdentityOptions {
  readonly url: string;
  /** Slave-key suffix of this node (no '/'). */
  readonly node: string;
  readonly logger: Logger;
  readonly prefix?: string;
  readonly leaseTtlSec?: number;
  /** First delay before retrying while etcd is unreachable, ms (default 200); doubles per failure up to `maxRetryMs`. */
  readonly retryMs?: number;
  /** Longest delay between retries, ms (default 8000). */
  readonly maxRetryMs?: number;
  /** The clock of the skipped-key warnings' rate limit (ms; default `Date.now`). */
  readonly now?: () => number;
  /** How often etcd's status is asked (ms; default 5000; each ask has the client's call deadline). */
  readonly statusIntervalMs?: number;
}

/** Counters of the etcd identity source (for summaries and tests). */
export interface EtcdIdentityStats {
  allocations: number;
  releases: number;
  failures: number;
  /** Master keys the engine cannot take as labels (an id outside 256..2^24-1: skipped; a value distill cannot read, or a label no cluster identity has: a fail-closed stand-in, finding 2001). */
  skipped: number;
  /** Microseconds of each successful allocation (etcd round trips included). */
  readonly allocationUs: number[];
}

const podKey = (namespace: string, name: string): string => `${namespace}/${name}`;
const withoutTimestamps = (message: string): string => message.replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, '');

/** A pod's cluster identity labels in the kvstore form (`source:key=value`). */
export function kvLabels(pod: Pod, namespaceLabels: Readonly<Record<string, string>>): string[] {
  return podIdentityLabels(pod, namespaceLabels).map((l) => `${l.source}:${l.key}=${l.value}`);
}

/** Why the engine would refuse this cluster identity (validate.ts checkIdentityId / checkIdentityLabels), if it would. */
function identityProblem(id: number, labels: Readonly<Record<string, string>>): string | undefined {
  if (id < FIRST_CLUSTER_IDENTITY || id > MAX_CLUSTER_IDENTITY) return `id ${id} is not a cluster identity (${FIRST_CLUSTER_IDENTITY}..${MAX_CLUSTER_IDENTITY})`;
  const entries = Object.entries(labels);
  if (entries.length === 0) return 'no labels';
  return entries.map(([k, v]) => identityLabelProblem(k, v)).find((p) => p !== undefined);
}

function sameLabelSet(labels: readonly string[], key: string): boolean {
  try {
    return labelSetKey(labels) === key;
  } catch {
    return false;
  }
}

/** A watcher upsert as the engine's identity event (labels in security-labels form). */
function engineIdentityEvent(e: Extract<IdentityEvent, { kind: 'upsertIdentity' }>): Extract<EngineEvent, { type: 'upsertIdentity' }> {
  const labels = Object.create(null) as Record<string, string>;
  for (const text of e.labels) {
    const eq = text.indexOf('=');
    labels[text.slice(0, eq)] = text.slice(eq + 1);
  }
  return { type: 'upsertIdentity', id: e.id, labels };
}

/**
 * Cluster identities through etcd (Cilium's kvstore allocator): the node's local pods are
 * allocated (acquire on add or relabel, release on delete) and the cluster's id/ keys are watched
 * and handed to the engine as identity events. The wanted state is kept apart from what etcd
 * holds, and a single pump moves one toward the other, so while etcd is down nothing is lost: the
 * pump retries, the engine keeps its last identities (pods without an id stay default deny).
 */
export class EtcdIdentitySource {
  readonly stats: EtcdIdentityStats = { allocations: 0, releases: 0, failures: 0, skipped: 0, allocationUs: [] };
  /** Called when identity events wait (the agent queues a transaction). */
  onChange: () => void = () => {};
  private readonly client: Etcd3;
  private allocator: IdentityAllocator | undefined;
  private watcher: IdentityWatcher | undefined;
  private readonly namespaces = new Map<string, Readonly<Record<string, string>>>();
  private readonly pods = new Map<string, Pod>();
  /** Every pod known (local or not) and not held fail-closed -> its label-set key: settledCluster needs an id for each. */
  private readonly allPods = new Map<string, Pod>();
  /** Known pod -> its node (`spec.nodeName`), where the stream said it: what `settledCluster` waits for is named by it. */
  private readonly podNodes = new Map<string, string>();
  /** Pod -> the kvstore label set it should hold / holds in etcd now. */
  private readonly wanted = new Map<string, string[]>();
  private readonly held = new Map<string, string[]>();
  private readonly pending: EngineEvent[] = [];
  /** Ids whose upsert went to the engine → the labels it was last read with (a stand-in's: its last readable ones, or none). Their delete goes too; a skipped id's does not. */
  private readonly admittedIds = new Map<number, Readonly<Record<string, string>>>();
  /** Label sets this node holds whose master key was deleted or rewritten: the pump repairs them (`IdentityAllocator.repair`). */
  private readonly broken = new Set<string>();
  private pumping = false;
  private again = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private lastError: string | undefined;
  /** Failures since the last success: the retry delay doubles with each (attack-findings-19u, 1268). */
  private consecutiveFailures = 0;
  /** Why the last status check failed, or undefined (`checkStatus`). */
  private statusError: string | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  /** Skipped keys follow what any etcd writer puts: rate-limited as the mirror's warnings. */
  private readonly warnSkipped: (fields: object, msg: string) => void;

  constructor(private readonly opts: EtcdIdentityOptions) {
    this.client = connectEtcd(opts.url);
    this.warnSkipped = limitedWarn(opts.logger, new LogLimiter(opts.now ?? Date.now));
  }

  /** Starts connecting (retrying while etcd is down); never throws for an unreachable etcd. */
  start(): void {
    this.kick();
    this.scheduleStatusCheck();
  }

  private scheduleStatusCheck(): void {
    if (this.closed) return;
    this.statusTimer = setTimeout(() => void this.checkStatus(), this.opts.statusIntervalMs ?? 5000);
    this.statusTimer.unref();
  }

  /**
   * Asks etcd's status (within the client's call deadline). A stalled etcd (a blackholing network,
   * a stopped process, no quorum) leaves the watch open and silent and the pump idle: nothing else
   * would tell (attack finding 991). As Cilium's etcd status checker, which asks every endpoint's
   * Status with a timeout and reports "not able to connect to any etcd endpoints"
   * (pkg/kvstore/etcd.go `statusChecker`, `determineEndpointStatus`).
   */
  private async checkStatus(): Promise<void> {
    try {
      await this.client.maintenance.status();
      this.statusError = undefined;
    } catch (e) {
      this.statusError = `status check failed (${e instanceof Error ? e.message : String(e)})`;
    }
    this.scheduleStatusCheck();
  }

  /**
   * Why this node's identities may lag the cluster's, or undefined: the last attempt to reach etcd
   * failed (cleared once one succeeds), the last status check failed (`checkStatus`), or the
   * identity watch is down or relisting (`IdentityWatcher.problem`). Cilium's /healthz fails while
   * "Kvstore service is not ready".
   */
  get problem(): string | undefined {
    const problem = this.statusError ?? this.watcher?.problem;
    return this.lastError ?? (problem === undefined ? undefined : `etcd identities: ${problem}`);
  }

  /** True once the id/ keys were listed (their events wait in `peek`). */
  get ready(): boolean {
    return this.watcher !== undefined;
  }

  /** True when every local pod holds its wanted label set in etcd and the watcher runs. */
  get settled(): boolean {
    if (!this.watcher || this.pumping || this.again) return false;
    if (this.wanted.size !== this.held.size) return false;
    for (const [pod, labels] of this.wanted) if (this.held.get(pod)?.join(';') !== labels.join(';')) return false;
    return true;
  }

  /** Settled, and every known pod (remote ones too: their nodes allocate them) has an id here. */
  get settledCluster(): boolean {
    if (!this.settled || !this.watcher) return false;
    for (const pod of this.allPods.values()) {
      if (this.watcher.idForLabels(labelSetKey(kvLabels(pod, this.namespaceLabels(pod.namespace)))) === undefined) return false;
    }
    return true;
  }

  /**
   * The known pods without an id here (`settledCluster` waits for them) and the nodes they run on (a pod whose node no
   * stream named has none), the first `limit` of each, sorted, and their counts: the `--exit-at-eof` wait's warning.
   */
  waitingFor(limit: number): { pods: string[]; podCount: number; nodes: string[]; nodeCount: number } {
    const pods: string[] = [];
    const nodes = new Set<string>();
    for (const [key, pod] of this.allPods) {
      if (this.watcher?.idForLabels(labelSetKey(kvLabels(pod, this.namespaceLabels(pod.namespace)))) !== undefined) continue;
      pods.push(key);
      const node = this.podNodes.get(key);
      if (node !== undefined) nodes.add(node);
    }
    const sorted = (names: Iterable<string>): string[] => [...names].sort().slice(0, limit);
    return { pods: sorted(pods), podCount: pods.length, nodes: sorted(nodes), nodeCount: nodes.size };
  }

  /** The ids this node's watcher knows, label-set key -> id (for checks). */
  identities(): ReadonlyMap<number, string> {
    return this.watcher?.identities ?? new Map();
  }

  /** Sees the agent's committed events: local pods and namespaces decide what is wanted. */
  observe(events: readonly EngineEvent[]): void {
    let touched = false;
    for (const e of events) {
      // As the engine stores them: Kubernetes' kubernetes.io/metadata.name added.
      if (e.type === 'upsertNamespace') this.namespaces.set(e.name, namespaceWithDefaults(e.name, e.labels).labels);
      else if (e.type === 'deleteNamespace') this.namespaces.delete(e.name);
      else if (e.type === 'upsertPod') {
        const key = podKey(e.pod.namespace, e.pod.name);
        // A pod held fail-closed is at the unallocated number whatever id its labels have: none is waited for (2845).
        if (e.pod.failClosed === true) this.allPods.delete(key);
        else this.allPods.set(key, e.pod);
        if (e.node !== undefined) this.podNodes.set(key, e.node);
        else this.podNodes.delete(key);
        if (e.local === true) this.pods.set(key, e.pod);
        else this.pods.delete(key);
      } else if (e.type === 'deletePod') {
        this.pods.delete(podKey(e.namespace, e.name));
        this.allPods.delete(podKey(e.namespace, e.name));
        this.podNodes.delete(podKey(e.namespace, e.name));
      } else continue;
      touched = true;
    }
    if (!touched) return;
    this.wanted.clear();
    for (const [key, pod] of this.pods) this.wanted.set(key, kvLabels(pod, this.namespaceLabels(pod.namespace)));
    this.kick();
  }

  private namespaceLabels(ns: string): Readonly<Record<string, string>> {
    return this.namespaces.get(ns) ?? namespaceWithDefaults(ns, {}).labels;
  }

  /** Identity events not yet applied (the agent acks them after its transaction commits). */
  peek(): readonly EngineEvent[] {
    return this.pending;
  }

  ack(n: number): void {
    this.pending.splice(0, n);
  }

  async close(revoke = true): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.statusTimer);
    await this.watcher?.close().catch(() => undefined);
    await this.allocator?.close(revoke).catch(() => undefined);
    this.client.close();
  }

  private kick(): void {
    if (this.closed) return;
    if (this.pumping) return void (this.again = true);
    this.pumping = true;
    this.pump().then(
      () => this.pumped(undefined),
      (e: unknown) => this.pumped(e),
    );
  }

  private pumped(err: unknown): void {
    this.pumping = false;
    const previous = this.lastError;
    const error = err === undefined ? undefined : `etcd identities: ${err instanceof Error ? err.message : String(err)}; retrying`;
    this.lastError = error;
    if (error !== undefined) {
      this.stats.failures++;
      const delayMs = this.retryDelayMs(this.consecutiveFailures++);
      // One warning per distinct error, not one per attempt: an etcd down for an hour is one line, not 18,000.
      // grpc-js stamps its "Failed to connect" message with the attempt's time: compare without it.
      const repeated = previous !== undefined && withoutTimestamps(previous) === withoutTimestamps(error);
      const log = repeated ? this.opts.logger.debug.bind(this.opts.logger) : this.opts.logger.warn.bind(this.opts.logger);
      log({ error: err instanceof Error ? err.message : String(err), attempt: this.consecutiveFailures, retryInMs: delayMs }, 'etcd identities: retrying');
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.kick(), delayMs);
      return;
    }
    this.consecutiveFailures = 0;
    if (this.again) (this.again = false), this.kick();
    else this.onChange();
  }

  /**
   * Exponential backoff from `retryMs` to `maxRetryMs`, as Cilium's etcd client spaces the retries of a
   * failed list (pkg/kvstore/etcd.go `Watch`: `backoff.Exponential{Min: 50ms, Max: 1m}`); a lower cap here
   * because identities are what new pods wait for.
   */
  private retryDelayMs(failuresBefore: number): number {
    const first = this.opts.retryMs ?? 200;
    return Math.min(this.opts.maxRetryMs ?? 8000, first * 2 ** Math.min(failuresBefore, 30));
  }

  private async pump(): Promise<void> {
    await this.connect();
    for (;;) {
      this.again = false;
      await this.repairBroken();
      const todo = [...this.wanted].filter(([pod, labels]) => this.held.get(pod)?.join(';') !== labels.join(';'));
      const gone = [...this.held.keys()].filter((pod) => !this.wanted.has(pod));
      if (todo.length === 0 && gone.length === 0) return;
      await Promise.all(todo.map(([pod, labels]) => this.acquire(pod, labels)));
      await Promise.all(gone.map((pod) => this.release(pod)));
    }
  }

  private async connect(): Promise<void> {
    this.watcher ??= await IdentityWatcher.start(
      this.client,
      (e) => {
        this.checkHeld(e);
        const event = this.admit(e);
        if (event === undefined) return;
        this.pending.push(event);
        if (!this.pumping) this.onChange();
      },
      this.opts.prefix,
    );
    this.onChange();
    this.allocator ??= await IdentityAllocator.create(this.client, {
      url: this.opts.url,
      node: this.opts.node,
      cache: this.watcher,
      usableId: (id) => id >= FIRST_CLUSTER_IDENTITY && id <= MAX_CLUSTER_IDENTITY,
      ...(this.opts.prefix !== undefined ? { prefix: this.opts.prefix } : {}),
      ...(this.opts.leaseTtlSec !== undefined ? { leaseTtlSec: this.opts.leaseTtlSec } : {}),
    });
  }

  /**
   * The engine event for a watcher event, or undefined for a master key the engine would refuse
   * (it refuses the whole transaction, and the event would come back in every later one: one bad
   * key in etcd would freeze the node's policy). Such a key is skipped and counted, as the
   * watcher skips malformed ones. A cluster id whose value distill cannot read (malformed, or
   * labels the engine refuses) goes to the engine as a fail-closed stand-in (`standIn`, finding 2001).
   */
  private admit(e: IdentityEvent): EngineEvent | undefined {
    if (e.kind === 'deleteIdentity') return this.admittedIds.delete(e.id) ? { type: 'deleteIdentity', id: e.id } : undefined;
    if (e.kind === 'unreadableIdentity') return this.standIn(e.id, 'its value cannot be read as labels');
    const event = engineIdentityEvent(e);
    const problem = identityProblem(e.id, event.labels);
    if (problem === undefined) {
      this.admittedIds.set(e.id, event.labels);
      return event;
    }
    return this.standIn(e.id, problem);
  }

  /**
   * A master key Cilium reads as labels (`NewLabelsFromSortedList` never fails) and distill cannot:
   * held as a fail-closed stand-in (events.ts `upsertIdentity.unreadable`) under its last readable
   * labels, so its pods keep the number and every local map denies it. Deleting it (1820) let their
   * addresses fall to identity 0, which wildcard allows admit past the denies both readings apply
   * (1936's hole, through etcd). An id outside the cluster range is skipped as before.
   */
  private standIn(id: number, problem: string): EngineEvent | undefined {
    this.stats.skipped++;
    if (id < FIRST_CLUSTER_IDENTITY || id > MAX_CLUSTER_IDENTITY) {
      this.warnSkipped({ id, problem }, 'etcd identity skipped: the engine cannot take it');
      return this.admittedIds.delete(id) ? { type: 'deleteIdentity', id } : undefined;
    }
    this.warnSkipped({ id, problem }, 'etcd identity cannot be read: every local map denies its number until a readable value');
    const labels = this.admittedIds.get(id) ?? {};
    this.admittedIds.set(id, labels);
    return { type: 'upsertIdentity', id, labels, unreadable: true };
  }

  /**
   * A master key of an id this node holds that is deleted, or now names other labels (etcd was
   * written by someone else): without a repair the node's pods with those labels had no id any more
   * (reserved:init) for good, the allocator still counting them as holding it.
   */
  private checkHeld(e: IdentityEvent): void {
    if (!this.allocator) return;
    for (const key of this.allocator.keysHeldAs(e.id)) {
      if (e.kind === 'upsertIdentity' && sameLabelSet(e.labels, key)) continue;
      this.opts.logger.warn({ id: e.id, labels: key, change: e.kind === 'deleteIdentity' ? 'deleted' : 'relabelled' }, 'etcd identities: the master key of an id this node holds changed; repairing it');
      this.broken.add(key);
      this.kick();
    }
  }

  /** Restores deleted master keys; a rewritten one makes its pods allocate again (the next pump round). */
  private async repairBroken(): Promise<void> {
    for (const key of [...this.broken]) {
      // Before the await: a change seen while this repair runs marks the set again, for the next round.
      this.broken.delete(key);
      const outcome = await this.allocator!.repair(parseLabelSetKey(key));
      if (outcome !== 'dropped') continue;
      for (const [pod, labels] of this.held) if (sameLabelSet(labels, key)) this.held.delete(pod);
    }
  }

  /** Acquire first, then release the old set: a relabelled pod never has no id in between. */
  private async acquire(pod: string, labels: string[]): Promise<void> {
    const t0 = process.hrtime.bigint();
    await this.allocator!.allocate(labels);
    this.stats.allocationUs.push(Number((process.hrtime.bigint() - t0) / 1000n));
    this.stats.allocations++;
    const old = this.held.get(pod);
    this.held.set(pod, labels);
    if (old) await this.releaseLabels(pod, old);
  }

  private async release(pod: string): Promise<void> {
    const old = this.held.get(pod);
    if (!old) return;
    this.held.delete(pod);
    try {
      await this.allocator!.release(old);
      this.stats.releases++;
    } catch (e) {
      this.held.set(pod, old);
      throw e;
    }
  }

  private async releaseLabels(pod: string, labels: string[]): Promise<void> {
    try {
      await this.allocator!.release(labels);
      this.stats.releases++;
    } catch (e) {
      // The reference is gone locally: the slave key stays until the lease ends or the next release.
      this.opts.logger.warn({ pod, error: (e as Error).message }, 'etcd identities: release failed');
    }
  }
}
