import { AllowLocalhost, DEFAULT_ALLOW_LOCALHOST } from '../model/localhost.js';
import type { IpAddress } from '../model/cidr.js';
import { nodeEndpointsOf, podKey } from '../model/cluster.js';
import { IdentityAllocator, IdentityId, identityLabelsFrom, type IdentityType, LOCAL_IDENTITY_FLAG, DEFAULT_STACK_MODE, type StackMode, UNALLOCATED_POD_IDENTITY } from '../model/identity.js';
import type { L7Parser, L7Policy, L7Request } from '../model/l7.js';
import { labelSetKey, type LabelSet } from '../model/labels.js';
import { DEFAULT_MAP_CAPACITY, LookupResult, PolicyEntry, PolicyKey } from '../model/policy-map.js';
import { Direction, Policy, policyRefKey, RuleOrigin, withoutApiServerStandIns } from '../model/rules.js';
import { Commit, CommitResult, findL7Conflict, findOverflow } from './commit.js';
import { EngineContext } from './context.js';
import { ChangeSet, EngineError, EngineEvent, EngineFailedError, L7PortRange, L7TableRow, MapCapacityError, MapSnapshot, RedirectInfo, TransactionVetoedError } from './events.js';
import { EngineQueries, EngineSizes, EngineStages, ResolvedRule, SelectorInfo } from './explain.js';
import { IdentityRecord, IdentityTable } from './identities.js';
import { IpcacheView } from './ipcache-view.js';
import { ModelStore } from './model-store.js';
import { NetworkSplits } from './network-splits.js';
import { NodeTable } from './node-table.js';
import { PodFacts } from './pod-facts.js';
import { PolicyFacts } from './policy-facts.js';
import { type PodRecord, PodTable } from './pod-table.js';
import { PolicyResolver } from './policy-resolver.js';
import { DEFAULT_PROXY_PORT_RANGE, ProxyPortAllocator, ProxyPortRange, ProxyPortsExhaustedError } from './proxy-ports.js';
import { L7ParserConflictError } from './rule-units.js';
import { CidrGroupTable } from './cidr-groups.js';
import { CiliumEndpoints, endpointKey } from './cilium-endpoints.js';
import { SelectorCache } from './selector-cache.js';
import { SharedMaps } from './shared-maps.js';
import type { PolicyRecord } from './subject-groups.js';
import { diffStats, EngineStats, emptyStats } from './stats.js';
import { DEFAULT_DNS_CACHE_OPTIONS, DEFAULT_MAX_SELECTOR_COMBINATIONS, DnsCacheOptions } from '../model/fqdn.js';
import { FqdnStage } from './fqdn-stage.js';
import { formatDnsCache, parseDnsCache } from './dns-persist.js';
import { checkEngineOptions, validateBatch } from './validate.js';
import { BoundaryCopier, freezeDeltas, frozenLabels, frozenRecord, frozenSnapshot } from './boundary-copy.js';

/**
 * A caller's last word on a transaction, given the change set it would cause before anything is committed and each
 * local endpoint's identity after it (`endpointIdentity`, as `identityOfPod`): an error refuses it (undone as a
 * capacity refusal is), null lets it commit.
 */
export type TransactionVeto = (changes: Pick<ChangeSet, 'deltas' | 'ipcache' | 'l7Deltas'>, endpointIdentity: (endpoint: string) => IdentityId | undefined) => TransactionVetoedError | null;

/** How an engine is set up: proxy ports, map capacity, where identity numbers come from. */
export interface EngineOptions {
  /** Where proxy ports for L7 redirects come from (default 10000–20000). */
  readonly proxyPortRange?: ProxyPortRange;
  /** A proxy port allocator shared with other engines (full-recompute replays); overrides the range. */
  readonly proxyPortAllocator?: ProxyPortAllocator;
  /** Entries one endpoint's policy map may hold (Cilium's default: 16,384). */
  readonly mapCapacity?: number;
  /**
   * Where identity numbers come from. Engines sharing one keep the same number per label set, as
   * agents do with cluster-allocated identities (used by full-recompute replays).
   */
  readonly allocator?: IdentityAllocator;
  /**
   * Where pod identity numbers come from. `local` (default): this engine allocates them.
   * `external`: the cluster does (CiliumIdentity objects, a kvstore), told by `upsertIdentity` /
   * `deleteIdentity` events, so map keys are the cluster's numbers; a pod whose labels have no
   * identity is reserved `init` as an endpoint (default deny) and 0 in the ipcache (unknown: only
   * L3-wildcard entries decide, attack findings 800 and 802). CIDR identities stay this
   * engine's own.
   */
  readonly identitySource?: 'local' | 'external';
  /** toFQDNs: `minTtl` (s, default 0) and `maxIpsPerHostname` (default 1,000; 0 = no limit), as Cilium's `--tofqdns-*` options. */
  readonly dns?: Partial<DnsCacheOptions>;
  /** Cilium's `allow-localhost` option (src/model/localhost.ts): `always` (default, Cilium's under Kubernetes) or `policy`. */
  readonly allowLocalhost?: AllowLocalhost;
  /** Cilium's IP stack mode (model/identity.ts `StackMode`): `single` (default, Cilium's default install) or `dual`. */
  readonly stack?: StackMode;
  /**
   * Test-only fault injection: called at points inside every transaction (the point's name as
   * argument); throwing from it simulates an internal error there.
   */
  readonly faultHook?: (point: string) => void;
}

/** The stages of one engine, wired together (rebuilt as a whole after an internal error). */
interface Stages extends EngineStages {
  readonly resolver: PolicyResolver;
  readonly fqdn: FqdnStage;
  readonly splits: NetworkSplits;
  readonly cidrGroups: CidrGroupTable;
  readonly endpoints: CiliumEndpoints;
  readonly commit: Commit;
  readonly queries: EngineQueries;
}

/**
 * The incremental policy engine: one façade over the stages (docs/architecture.md), wired here.
 * Events flow through the pod table and the policy resolver → identities → selector caches →
 * per-identity policy → shared map states → commit (deltas per endpoint).
 *
 * `apply` is a transaction: the batch is validated against the model first (nothing changes if
 * any event is bad), then applied. Identities whose last user left are released at the end of
 * the transaction, so a pod deleted and re-created in one batch keeps its identity and yields no
 * deltas.
 */
export class Engine {
  private readonly statsCounters: EngineStats = emptyStats();
  private readonly allocator: IdentityAllocator;
  private readonly proxyPorts: ProxyPortAllocator;
  /** The committed model: what validation reads and what a failed transaction rebuilds from. */
  private readonly model: ModelStore;
  /** The pods and pod IP owners: the pod table's, which the committed model reads (kept from before a transaction until it commits). */
  private readonly podFacts = new PodFacts<PodRecord>();
  /** The stored policies: the resolver's, which the committed model reads (kept from before a transaction until it commits). */
  private readonly policyFacts = new PolicyFacts<PolicyRecord>();
  private readonly ctx: EngineContext;
  /** The DNS answers of the running transaction that the proxy learnt (the model records only those). */
  private readonly learnt = new Set<EngineEvent>();
  /** Set when the engine could not rebuild itself after an internal error: it refuses all work. */
  private failure: Error | null = null;
  /** The endpoints of a restored DNS cache, until the first transaction tells which are still local pods. */
  private restoredEndpoints: string[] | null = null;
  private readonly copier = new BoundaryCopier();
  /** Derived state, rebuilt from `model` after an internal error. */
  private stages!: Stages;
  readonly mapCapacity: number;
  readonly allowLocalhost: AllowLocalhost;
  readonly stack: StackMode;

  constructor(options: EngineOptions = {}) {
    checkEngineOptions(options);
    this.proxyPorts = options.proxyPortAllocator ?? new ProxyPortAllocator(options.proxyPortRange ?? DEFAULT_PROXY_PORT_RANGE);
    this.mapCapacity = options.mapCapacity ?? DEFAULT_MAP_CAPACITY;
    this.allocator = options.allocator ?? new IdentityAllocator();
    this.model = new ModelStore(this.podFacts, this.policyFacts, options.identitySource ?? 'local', { ...DEFAULT_DNS_CACHE_OPTIONS, ...options.dns });
    this.ctx = new EngineContext(this.statsCounters, options.faultHook);
    this.allowLocalhost = options.allowLocalhost ?? DEFAULT_ALLOW_LOCALHOST;
    this.stack = options.stack ?? DEFAULT_STACK_MODE;
    this.resetStages();
  }

  /** The toFQDNs options answers are judged with: `EngineOptions.dns` over Cilium's defaults. */
  dnsOptions(): DnsCacheOptions {
    return this.model.dns.options;
  }

  /** Empty stages holding the reserved identities only: a new engine, or one about to rebuild. */
  private resetStages(): void {
    const ctx = this.ctx;
    ctx.endTransaction();
    const peerCache = new SelectorCache(this.statsCounters);
    const subjectCache = new SelectorCache(this.statsCounters);
    const identities = new IdentityTable(ctx, this.allocator, peerCache, this.model.identitySource, this.stack);
    const maps = new SharedMaps(ctx, subjectCache);
    const resolver = new PolicyResolver(ctx, this.policyFacts, identities, maps, subjectCache, peerCache);
    resolver.allowLocalhost = this.allowLocalhost === 'always';
    identities.namedPorts.listener = resolver;
    const endpoints = new CiliumEndpoints(ctx);
    const pods = new PodTable(ctx, this.podFacts, identities, maps, resolver, endpoints);
    const nodes = new NodeTable(ctx, identities);
    const splits = new NetworkSplits(ctx, pods, peerCache);
    if (this.model.identitySource === 'local') pods.splits = splits;
    const stages = { identities, maps, pods, nodes, peerCache, subjectCache };
    const fqdn = new FqdnStage(ctx, identities, pods, peerCache, maps, this.model.dns.clone(), this.model.dns.options.maxSelectorCombinations ?? DEFAULT_MAX_SELECTOR_COMBINATIONS);
    ctx.nodeCover = (cidrs) => nodes.cover(cidrs);
    ctx.namedEgress = () => identities.namedPorts.resolveNamedNodeWide;
    ctx.ipcache = new IpcacheView(nodes, pods, identities);
    const commit = new Commit(ctx, maps, this.proxyPorts);
    const cidrGroups = new CidrGroupTable(ctx, identities, peerCache, nodes);
    this.stages = { ...stages, resolver, fqdn, splits, cidrGroups, endpoints, commit, queries: new EngineQueries(stages, this.proxyPorts, this.mapCapacity) };
  }

  // ---------------------------------------------------------------- transactions

  /**
   * Applies a batch of events as one transaction and returns the map deltas it causes. Nothing
   * changes unless it returns: a bad event throws `EngineError` before anything is touched; a
   * refusal (a full map, no free proxy port, conflicting L7 parsers) is undone through the undo
   * log; any other exception (an internal error) makes the engine rebuild its stages from the
   * committed model, with the same identity numbers and proxy ports, before it propagates. `veto`, if given, sees
   * the change set before the commit and may refuse it (`TransactionVetoedError`, undone like a refusal).
   */
  apply(given: readonly EngineEvent[], veto?: TransactionVeto): ChangeSet {
    if (this.failure) throw new EngineFailedError(this.failure);
    if (!Array.isArray(given)) validateBatch(this.model, given);
    const copies = this.copier.events(given);
    validateBatch(this.model, copies);
    const events = copies as EngineEvent[];
    const before = { ...this.statsCounters };
    const mark = this.allocator.mark();
    this.proxyPorts.begin();
    this.allocator.begin();
    let result: CommitResult;
    if (this.learnt.size > 0) this.learnt.clear();
    try {
      result = this.transaction(events, before, mark, veto);
    } catch (e) {
      // A refusal is undone before it is thrown; anything else (or pod facts left open) is rebuilt.
      if (!(e instanceof MapCapacityError || e instanceof ProxyPortsExhaustedError || e instanceof L7ParserConflictError || e instanceof TransactionVetoedError) || this.podFacts.inTransaction || this.policyFacts.inTransaction) this.recover(before);
      throw e;
    } finally {
      this.ctx.undoLog = null;
    }
    this.proxyPorts.commit();
    this.allocator.commit();
    this.podFacts.commit();
    this.policyFacts.commit();
    this.ctx.endTransaction();
    this.record(events);
    if (this.restoredEndpoints) this.recordRestoredGone();
    if (this.learnt.size > 0) this.learnt.clear();
    this.statsCounters.transactions++;
    this.statsCounters.events += events.length;
    this.statsCounters.deltas += result.deltas.length;
    this.statsCounters.l7Deltas += result.l7Deltas.length;
    freezeDeltas(result.deltas);
    return {
      deltas: result.deltas,
      l7Deltas: result.l7Deltas,
      ipcache: result.ipcache,
      endpointsAdded: result.endpointsAdded,
      endpointsRemoved: result.endpointsRemoved,
      work: diffStats(this.statsCounters, before),
    };
  }

  /** The events, then commit; a refusal is rolled back here and thrown. */
  private transaction(events: readonly EngineEvent[], before: EngineStats, mark: ReturnType<IdentityAllocator['mark']>, veto: TransactionVeto | undefined): CommitResult {
    // On an empty model (a cold start) a refusal rebuilds the empty stages instead: no undo log,
    // whose closures (one per pod or policy) would live through the whole batch and then be garbage.
    const undo: (() => void)[] | null = this.model.isEmpty() ? null : [];
    this.ctx.undoLog = undo;
    this.podFacts.begin();
    this.policyFacts.begin();
    // Its ipcache was empty too: no prefix had an identity before (context.ts IpcacheJournal.bulk).
    this.ctx.ipcacheTouched.bulk = undo === null;
    this.applyEvents(events);
    if (this.restoredEndpoints) this.forgetRestoredGone();
    const result = this.commit();
    this.ctx.undoLog = null;
    const refusal = result.exhausted ?? findOverflow(this.stages.maps, result.touched, this.mapCapacity) ?? findL7Conflict(this.ctx) ?? (veto ? veto(result, (ep) => this.stages.queries.identityOfPod(ep)) : null);
    if (this.ctx.adoptedL7.size > 0) this.ctx.adoptedL7.clear();
    if (!refusal) return result;
    if (undo === null) {
      this.recover(before);
      throw refusal;
    }
    this.proxyPorts.rollback();
    this.rollback(undo, before, mark);
    this.allocator.commit();
    // The undo must have given back the committed pods, IP owners and policies; if not, they are restored and the stages rebuilt.
    const podsUndone = this.podFacts.undone();
    if (!this.policyFacts.undone() || !podsUndone) this.recover(before);
    throw refusal;
  }

  /*
   * The loops over a batch's events sit alone in their functions, with nothing after them. V8
   * (Node 20) compiles a loop on the stack (OSR) during the cold start's huge batch, before the code
   * after the loop has ever run, and keeps that code: every later small batch entered it and
   * deoptimized just after the loop (measured: 1 transaction in 2 of txn-micro, 1 in 7 of the
   * cilium-ci churn, in apply and transaction alike).
   */
  private applyEvents(events: readonly EngineEvent[]): void {
    for (let i = 0; i < events.length; i++) this.applyEvent(events[i] as EngineEvent);
  }

  /** The committed events into the model (DNS answers only if the proxy learnt them). */
  private record(events: readonly EngineEvent[]): void {
    for (let i = 0; i < events.length; i++) {
      const e = events[i] as EngineEvent;
      if (e.type !== 'dnsResponse' || this.learnt.has(e)) this.model.apply(e);
    }
  }

  private commit(): CommitResult {
    this.stages.splits.settle();
    this.stages.fqdn.settle();
    this.stages.identities.freeUnused();
    this.syncUnallocatedDeny();
    this.stages.resolver.placeDenies();
    return this.stages.commit.run();
  }

  /**
   * Finding 2002: every local map denies `UNALLOCATED_POD_IDENTITY` while some pod holds it (a pod
   * whose labels have no external identity). Decided once, at commit, from the state (how many pods
   * hold `pending`): a rebuild from the model reaches the same maps, and the pods' moves within the
   * transaction (each undone by its inverse) never toggle the maps themselves.
   */
  private syncUnallocatedDeny(): void {
    const { identities, resolver } = this.stages;
    const want = identities.pendingPods > 0 || identities.heldGroupCount > 0 || this.stages.nodes.heldCount > 0 || this.stages.nodes.heldApiServerCount > 0;
    if (want !== resolver.denies(UNALLOCATED_POD_IDENTITY)) resolver.setDeniedEverywhere(UNALLOCATED_POD_IDENTITY, want);
  }

  /**
   * After an unexpected exception the stages may be half changed anywhere, so they are rebuilt
   * from the committed model (which the transaction never touched). The allocators' journals give
   * back every identity number and proxy port as they were, so the rebuilt maps are the old ones
   * exactly and nothing needs to reach a backend. If even that fails, the engine refuses all
   * further transactions: the kernel maps keep the last committed state.
   */
  private recover(before: EngineStats): void {
    this.proxyPorts.rollback();
    this.allocator.rollback();
    try {
      this.podFacts.rollback();
      this.policyFacts.rollback();
      const events = this.model.events();
      const owners = this.model.ipOwnerKeys();
      this.podFacts.clear();
      this.policyFacts.clear();
      this.resetStages();
      this.ctx.adopting = true;
      for (const e of events) this.applyEvent(e);
      this.stages.pods.adoptIpOwners((ip) => owners.get(ip));
      this.commit();
    } catch (e) {
      this.failure = e instanceof Error ? e : new Error(String(e));
    } finally {
      this.ctx.adopting = false;
      this.ctx.endTransaction();
      Object.assign(this.statsCounters, before);
    }
  }

  /** Undoes a committed-but-refused transaction: same model, same identity numbers, same maps. */
  private rollback(undo: readonly (() => void)[], stats: EngineStats, mark: ReturnType<IdentityAllocator['mark']>): void {
    for (let i = undo.length - 1; i >= 0; i--) (undo[i] as () => void)();
    this.stages.identities.freeUnused();
    // A map state the transaction retired comes back new (re-populated): its denies are placed as at a commit (2132).
    this.stages.resolver.placeDenies();
    for (const m of this.ctx.dirtyMaps) m.state.settle();
    this.ctx.endTransaction();
    this.allocator.rewind(mark);
    Object.assign(this.statsCounters, stats);
  }

  private applyEvent(e: EngineEvent): void {
    if (this.ctx.faultHook) this.ctx.fault('event');
    const { pods, resolver, fqdn, splits } = this.stages;
    if (e.type === 'dnsResponse' || e.type === 'advanceTime') {
      // A query judged as a flow sees the pods' identities as of this event, splits included.
      if (e.type === 'dnsResponse' && e.server) splits.settle();
      if (fqdn.apply(e) && e.type === 'dnsResponse') this.learnt.add(e);
      return;
    }
    switch (e.type) {
      case 'upsertNamespace':
        return pods.upsertNamespace(e.name, e.labels);
      case 'deleteNamespace':
        fqdn.namespaceDeleted(e.name);
        pods.removePodsIn(e.name);
        // Every stage a deletePolicy reaches: the splits and the node table kept a deleted namespace's policies.
        for (const key of resolver.policiesIn(e.name)) this.deletePolicy(key);
        return pods.forgetNamespace(e.name);
      case 'upsertPod': {
        // A pod that is not (or no longer) local has no endpoint here: its DNS history goes with it.
        const key = podKey(e.pod);
        if (!(e.local ?? false)) fqdn.podDeleted(key);
        return pods.upsertPod(e.pod, e.local ?? false, key);
      }
      case 'deletePod':
        fqdn.podDeleted(`${e.namespace}/${e.name}`);
        return pods.removePod(`${e.namespace}/${e.name}`);
      case 'upsertPolicy':
        return this.upsertPolicy(e.policy);
      case 'deletePolicy':
        return this.deletePolicy(policyRefKey(e.ref));
      case 'upsertIdentity':
        return this.upsertIdentity(e.id, identityLabelsFrom(e.labels), e.unreadable === true);
      case 'deleteIdentity':
        return this.identityChanged(e.id, () => this.stages.identities.deleteExternal(e.id));
      case 'upsertNode':
        return this.nodeChanged(() => this.stages.nodes.upsert(e.name, e.ips, e.local ?? false, nodeEndpointsOf(e), e.labels, e.failClosed));
      case 'deleteNode':
        return this.nodeChanged(() => this.stages.nodes.delete(e.name));
      case 'upsertCidrGroup':
        return this.stages.cidrGroups.set(e.group.name, e.group);
      case 'deleteCidrGroup':
        return this.stages.cidrGroups.set(e.name, undefined);
      case 'upsertEndpoint':
      case 'deleteEndpoint': {
        const key = endpointKey(e);
        this.stages.pods.touchPod(key);
        return e.type === 'upsertEndpoint' ? this.stages.endpoints.set(key, e.identity, e.ips) : this.stages.endpoints.set(key, undefined);
      }
      case 'setApiServer': {
        const stale = this.stages.nodes.apiServerKnown ? [] : this.stages.nodes.standInPolicies();
        this.stages.nodes.setApiServer(e.addresses, e.held);
        // The addresses are known from now on: the stand-ins of finding 100 lapse.
        for (const p of stale) this.upsertPolicy(p);
        return;
      }
    }
  }

  /**
   * A node address entering or leaving a ClusterNetworkPolicy's networks changes the policy's node
   * entries (tiers.ts `nodePeers`, finding 442): `change` returns the policies to re-resolve. The
   * resolver's own undo compiles against the node table as it is then (not yet rolled back), so
   * an undo logged first (run last) re-resolves them once more against the restored table.
   */
  private nodeChanged(change: () => Policy[]): void {
    const moved: Policy[] = [];
    this.ctx.onUndo(() => {
      for (const p of moved) this.stages.resolver.upsertPolicy(this.stages.nodes.apiServerKnown ? withoutApiServerStandIns(p) : p, policyRefKey(p.ref), p);
    });
    for (const p of change()) {
      moved.push(p);
      this.upsertPolicy(p);
    }
  }

  /**
   * An external identity event, then its pods re-identified. The pods' own undo runs before the
   * identity table's (it was logged after), so it moves them to what the table still says; an
   * undo logged first (run last) re-identifies them once more against the restored table (1925),
   * label sets in reverse: a number given back to its old labels is left by the pods of the new
   * ones before the old ones' pods take it (an endpoint joins a local identity by number).
   */
  private identityChanged(id: number, change: () => string[]): void {
    const { identities, pods, resolver } = this.stages;
    const was = identities.get(id)?.unreadable === true;
    // The pods whose CiliumEndpoint names the number may take it or lose it in the ipcache (PodTable.ipIdentity).
    for (const key of this.stages.endpoints.keysOf(id)) pods.touchPod(key);
    let labelKeys: string[] = [];
    this.ctx.onUndo(() => pods.reidentify(labelKeys.reverse()));
    labelKeys = change();
    pods.reidentify(labelKeys);
    const now = identities.get(id)?.unreadable === true;
    if (was !== now) resolver.setDeniedEverywhere(id, now);
  }

  /**
   * An external identity upserted; `unreadable`: as the fail-closed stand-in (finding 1936). A number
   * turning readable or unreadable under the same labels is deleted first: its pods leave the old
   * record's endpoint maps before one of them joins the new record's (one number, one local identity).
   */
  private upsertIdentity(id: number, labels: LabelSet, unreadable: boolean): void {
    const { identities } = this.stages;
    const old = identities.get(id);
    if (old !== undefined && (old.unreadable === true) !== unreadable && old.key === labelSetKey(labels)) this.identityChanged(id, () => identities.deleteExternal(id));
    this.identityChanged(id, () => identities.upsertExternal(id, labels, unreadable));
  }

  /** The node table keeps the policy as given; the others see it without stand-ins once the API server's addresses are known. */
  private upsertPolicy(given: Policy): void {
    const { resolver, fqdn, splits, nodes } = this.stages;
    const policy = nodes.apiServerKnown ? withoutApiServerStandIns(given) : given;
    // The key once for every stage (one ref: the stand-ins' copy keeps it).
    const key = policyRefKey(given.ref);
    fqdn.policyUpserted(policy, key);
    splits.policyUpserted(policy, key);
    nodes.policyUpserted(given, key);
    resolver.upsertPolicy(policy, key, given);
  }

  private deletePolicy(key: string): void {
    const { resolver, fqdn, splits, nodes } = this.stages;
    fqdn.policyDeleted(key);
    splits.policyDeleted(key);
    nodes.policyDeleted(key);
    resolver.deletePolicy(key);
  }

  // ---------------------------------------------------------------- DNS cache file (restart)

  /** The committed DNS cache as a file (dns-persist.ts), to restore after a restart. */
  dnsCacheFile(): string {
    const { identities } = this.stages;
    // Bit 24 only: remote nodes' identities (bit 25) are derived anew from the nodes, as Cilium does not restore them.
    const local = [...identities.ids()].filter((id) => id > LOCAL_IDENTITY_FLAG && id < 2 * LOCAL_IDENTITY_FLAG).sort((a, b) => a - b);
    return formatDnsCache(this.model.dns, local.map((id) => ({ id, labels: (identities.get(id) as IdentityRecord).labels })));
  }

  /**
   * Loads a DNS cache file into a new engine, before its first transaction: the first transaction
   * (the cluster's initial events) then gives every restored IP its identity in the same change
   * set as the policy maps, so traffic to known names is not dropped while caches refill.
   */
  restoreDnsCache(text: string, source: string): void {
    if (this.statsCounters.transactions > 0) throw new EngineError(0, 'restoreDnsCache', 'a DNS cache is restored only before the first transaction');
    const { cache, identities } = parseDnsCache(text, source, this.model.dns.options);
    this.model.dns = cache;
    this.restoredEndpoints = cache.endpoints();
    // The numbers the previous run gave these label sets: the first write finds the pinned maps right.
    this.allocator.prefer(identities);
    this.resetStages();
  }

  /**
   * A restored endpoint that is no local pod after the first transaction is gone (deleted, or moved
   * to another node, while the agent was down): its answers go as a pod deletion's would, in that
   * transaction. Cilium restores only its own node's endpoints, their DNS history with them, and
   * its DNS GC collects only those (pkg/fqdn/namemanager/gc.go `doGC`: `EPMgr.GetEndpoints()`).
   */
  private forgetRestoredGone(): void {
    for (const ep of this.restoredEndpoints ?? []) if (this.stages.pods.get(ep)?.local !== true) this.stages.fqdn.podDeleted(ep);
  }

  private recordRestoredGone(): void {
    for (const ep of this.restoredEndpoints ?? []) if (this.stages.pods.get(ep)?.local !== true) this.model.dns.forgetEndpoint(ep, () => undefined);
    this.restoredEndpoints = null;
  }

  // ---------------------------------------------------------------- queries (explain.ts)

  stats(): EngineStats {
    return { ...this.statsCounters };
  }

  /** Local endpoints (pod keys `namespace/name`), sorted. */
  endpoints(): string[] {
    return this.stages.queries.endpoints();
  }

  /** An endpoint's policy map as the kernel would hold it (redirects carry its proxy ports). */
  mapState(endpoint: string): MapSnapshot {
    return frozenSnapshot(this.stages.queries.mapState(endpoint));
  }

  /** The endpoint's proxy redirects and the port each listens on. */
  redirects(endpoint: string): RedirectInfo[] {
    return this.stages.queries.redirects(endpoint);
  }

  /**
   * Releases the proxy ports an endpoint this engine does not have still holds (ports restored
   * from pinned maps of an endpoint that is gone: `reconcile` calls this when it removes its map).
   */
  releaseProxyPorts(endpoint: string): void {
    if (this.stages.queries.isEndpoint(endpoint)) throw new EngineError(0, 'query', `endpoint "${endpoint}" is live; its proxy ports follow its policy`);
    for (const id of [...this.proxyPorts.redirectsOf(endpoint).keys()]) this.proxyPorts.release(endpoint, id);
  }

  /** What the endpoint's proxies are told: per redirect, per peer identity (ANY_IDENTITY = any), the L7 policy. */
  l7Table(endpoint: string): L7TableRow[] {
    return this.stages.queries.l7Table(endpoint);
  }

  /**
   * The L7 tables as a proxy is configured (Cilium's NPDS shape): per redirect, the distinct L7
   * policies, each with the set of peer identities it applies to (ANY_IDENTITY = any peer).
   */
  l7Policies(endpoint: string): { redirect: RedirectInfo; portRange?: L7PortRange; policies: { peers: IdentityId[]; policy: L7Policy }[] }[] {
    return this.stages.queries.l7Policies(endpoint);
  }

  /**
   * The proxy's verdict on a request that reached it through proxy port `proxyPort` of the
   * endpoint from `peer`: the peer's row and the any-peer row are consulted. Undefined when the
   * port is not one of the endpoint's redirects or `port` is outside its prefix. `port` is the request's destination port: a
   * redirected port range's proxy also applies the narrower ranges' rules covering it.
   */
  l7Verdict(endpoint: string, proxyPort: number, peer: IdentityId, request: L7Request, port: number): { parser: L7Parser; allowed: boolean } | undefined {
    return this.stages.queries.l7Verdict(endpoint, proxyPort, peer, request, port);
  }

  /**
   * Why the proxy on `proxyPort` allows a request from `peer`: the rules that let it through,
   * either without L7 rules (they allow every request) or with L7 rules that match it.
   */
  l7AllowedBy(endpoint: string, proxyPort: number, peer: IdentityId, request: L7Request, port: number): RuleOrigin[] {
    return this.stages.queries.l7AllowedBy(endpoint, proxyPort, peer, request, port);
  }

  /** Changes whenever a local pod is added, removed or replaced (so the local endpoints' addresses may have changed). */
  localEndpointsVersion(): number {
    return this.stages.queries.localEndpointsVersion();
  }

  /** A local endpoint's addresses (both of a dual-stack pod); none for a key that is not one. */
  endpointAddresses(endpoint: string): readonly IpAddress[] {
    return this.stages.queries.endpointAddresses(endpoint);
  }

  /** The identity of a pod (local or remote). */
  identityOfPod(key: string): IdentityId | undefined {
    return this.stages.queries.identityOfPod(key);
  }

  /** The ipcache lookup: pod IPs exactly, then the longest CIDR identity prefix, then world. */
  identityOfIp(ip: IpAddress): IdentityId {
    return this.stages.queries.identityOfIp(ip);
  }

  /** The ipcache as the datapath would hold it: pod IPs (host prefixes) and CIDR identities. */
  ipcache(): { prefix: string; identity: IdentityId }[] {
    return this.stages.queries.ipcache();
  }

  identityLabels(id: IdentityId): LabelSet | undefined {
    return frozenLabels(this.stages.queries.identityLabels(id));
  }

  /** Every identity currently allocated, reserved ones included. */
  identities(): IdentityId[] {
    return this.stages.queries.identities();
  }

  /** The datapath's verdict for traffic between `endpoint` and a peer identity. */
  lookup(endpoint: string, peer: IdentityId, direction: Direction, protocol: number, port: number): LookupResult | undefined {
    const r = this.stages.queries.lookup(endpoint, peer, direction, protocol, port);
    return r === undefined ? r : frozenRecord(r);
  }

  /** Why an entry is in an endpoint's map: the rules contributing its key (null: the default allow). */
  contributors(endpoint: string, key: PolicyKey): { origin: RuleOrigin | null; entry: PolicyEntry }[] {
    return this.stages.queries.contributors(endpoint, key);
  }

  /** The policies that make `direction` of the endpoint default-deny. */
  enforcedBy(endpoint: string, direction: Direction): RuleOrigin[] {
    return this.stages.queries.enforcedBy(endpoint, direction);
  }

  /** The resolved per-identity policy of an endpoint: each rule selecting it, with its peers. */
  policyOf(endpoint: string): ResolvedRule[] {
    return this.stages.queries.policyOf(endpoint);
  }

  /** The selector caches, as `cilium-dbg policy selectors` lists them. */
  selectors(): SelectorInfo[] {
    return this.stages.queries.selectors();
  }

  /** Map pressure per endpoint (entries / capacity), fullest first. */
  mapPressure(): { endpoint: string; entries: number; capacity: number; pressure: number }[] {
    return this.stages.queries.mapPressure();
  }

  /** Sizes, for tests and benchmarks. */
  sizes(): EngineSizes {
    return this.stages.queries.sizes();
  }

  /**
   * External numbers read as the fail-closed stand-in (their value cannot be read, finding 1936): every local map
   * denies them. Ascending; 255, a pod's number before its own is known, is not one of them.
   */
  unreadableIdentities(): IdentityId[] {
    return this.stages.resolver.deniedEverywhereIds().filter((id) => id !== UNALLOCATED_POD_IDENTITY);
  }

  /** Identities by Cilium's identity type (`reserved`, `cluster_local`, `node_local`, `remote_node`): one pass, for scrapes. */
  identityTypes(): Map<IdentityType, number> {
    return this.stages.queries.identityTypes();
  }
}
