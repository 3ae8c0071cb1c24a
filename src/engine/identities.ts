import { Cidr, cidrContainsCidr, cidrContainsIp, hostCidr, IpAddress, IpFamily } from '../model/cidr.js';
import { IdentityAllocator, IdentityId, RESERVED_IDENTITIES, ReservedName, reservedIdentityLabels, StackMode, UNALLOCATED_POD_IDENTITY, worldLabels, worldName } from '../model/identity.js';
import { FqdnSelector, fqdnSelectorKey } from '../model/fqdn.js';
import { LabelSet, labelSetKey, makeLabelSet, reservedLabel, SOURCE_CIDR } from '../model/labels.js';
import type { ContainerPort } from '../model/ports.js';
import type { EngineContext } from './context.js';
import { type NodeLabelsUnknown, SelectableIdentity, SelectorCache, SOURCE_FQDN } from './selector-cache.js';
import { IpKey, ipKeyOfText, IpMap, ipOfKey } from './ip-key.js';
import { NamedPorts } from './named-ports.js';
import { TombstoneMap } from './tombstone-map.js';

/** One allocated identity and what the engine knows about it. */
export interface IdentityRecord extends SelectableIdentity {
  readonly labels: LabelSet;
  /** `labelSetKey(labels)`, kept: freeing an identity needs it, and computing it builds a string per label. */
  readonly key: string;
  /** Pods and CIDR selectors holding it; reserved identities are never released. */
  refs: number;
  /** `name` → `protocol/port` → how many of its pods expose that named port; created with the first named port (most identities have none). */
  namedPorts: Map<string, Map<string, number>> | undefined;
  /** An FQDN identity: `cidr` (if any) is the prefix it stands in for, not an ipcache entry of its own. */
  readonly fqdn?: true;
  /** Set by `setHostNodeLabels` on `host`: the agent's own node's labels. */
  nodeLabels?: LabelSet | undefined;
  /** Set by `setHostNodeLabels` on `host`: the agent's own node is held fail-closed, its labels unknown (finding 2541). */
  nodeLabelsUnknown?: NodeLabelsUnknown | undefined;
  /** Changed in place on `host` and `kube-apiserver` only (`setApiServerLabels`). */
  matchLabels: LabelSet;
  /** An API server address's identity outside the cluster: `cidr` is its host prefix, not an LPM entry. */
  readonly apiServerHost?: true;
  /**
   * An external identity distill cannot read (finding 1936): a fail-closed stand-in. Its pods keep
   * it (`key` is its last readable labels'), the peer selector cache never holds it, every local
   * map denies it (policy-resolver.ts `setDeniedEverywhere`) and its own endpoints' maps stay empty.
   */
  readonly unreadable?: true;
}

/** The label source that keeps a remote node's labels in its identity's labels (never in `matchLabels`). */
const SOURCE_NODE = 'node';

/**
 * The identity table: identities refcounted per label set (pods: cluster scope; CIDRs that
 * active rules mention: node-local scope; reserved: fixed), the LPM part of the ipcache, and the
 * FQDN host entries. Every identity is added to the peer selector cache; every pod joining or
 * leaving one is told to its `namedPorts` (named-ports.ts).
 *
 * Contract: consumes acquire/release from the pod table and the policy resolver; emits identities
 * to the peer selector cache and pod joins/leaves to `namedPorts`. Never frees an identity
 * before commit (`freeUnused`), so one deleted and re-created in a transaction keeps its number.
 */
export class IdentityTable {
  private readonly byKey = new TombstoneMap<string, IdentityRecord>();
  private readonly byId = new TombstoneMap<IdentityId, IdentityRecord>();
  /** prefix length → network → CIDR identity, per family: the ipcache's LPM part. */
  private readonly cidrs: Record<IpFamily, Map<number, Map<bigint, IdentityRecord>>> = { ipv4: new Map(), ipv6: new Map() };
  /** Named ports per identity and cluster-wide; the egress named-port resolvers. */
  readonly namedPorts = new NamedPorts(
    (id) => this.byId.get(id),
    (key) => this.byKey.get(key),
  );
  readonly worldIpv4: IdentityRecord;
  readonly worldIpv6: IdentityRecord;
  /** What a pod whose identity the cluster has not allocated yet gets (external identities): reserved init. */
  readonly pending: IdentityRecord;
  /**
   * The ipcache's number of a pod without an external identity (`PodTable.ipIdentity`, finding 2002):
   * `UNALLOCATED_POD_IDENTITY`, which no selector selects (it is never in the selector cache nor in
   * `get`) and every local map denies both ways while some pod holds it (`pendingPods` > 0; the engine
   * tells the resolver at commit): no wildcard allow admits the pod past a deny on its old or new labels.
   */
  readonly unallocated: IdentityRecord = { id: UNALLOCATED_POD_IDENTITY, key: '', labels: [reservedLabel('unallocated-identity')], matchLabels: [], refs: Infinity, namedPorts: undefined };
  /** How many pods hold `pending` now (external identities): a function of the state, kept by acquire and `releaseForPod`. */
  pendingPods = 0;
  /**
   * The prefixes of the CIDR groups the agent holds fail-closed (`CidrGroup.failClosed`, finding 2431), by group name:
   * every CIDR or learnt address inside one reads `unallocated` in the ipcache (`heldIp`, `heldPrefix`).
   */
  private readonly heldGroups = new Map<string, readonly Cidr[]>();
  /** External identities: label-set key → their ids, lowest first (duplicates happen in CRD mode; the lowest wins). */
  private readonly external = new Map<string, IdentityId[]>();
  /** Learnt IPs (FQDN, keyed as ip-key.ts: no object per IP) → their identity: host entries of the ipcache, set by the FQDN stage. */
  private readonly fqdnHosts = new IpMap<IdentityRecord>();
  /** Every FQDN selector a unit registered (key → selector); the peer cache says which are in force. */
  private readonly fqdnSelectorsSeen = new Map<string, FqdnSelector>();
  /**
   * Bumped whenever an FQDN identity is acquired as a selector's or released: the FQDN stage
   * re-checks the selectors in force only when it moved (O(1) for every other transaction).
   */
  fqdnSelectorEpoch = 0;

  constructor(
    private readonly ctx: EngineContext,
    private readonly allocator: IdentityAllocator,
    private readonly peerCache: SelectorCache,
    /** `external`: pods get the numbers identity events give (else `pending`); only CIDR identities are allocated here. */
    readonly source: 'local' | 'external' = 'local',
    /** Which world label and identity an outside address has (model/identity.ts `StackMode`). */
    readonly stack: StackMode = 'single',
  ) {
    // Every reserved identity, each with its one label (pkg/identity/numericidentity.go
    // `IterateReservedIdentities`, reserved.go): world-ipv4 and world-ipv6 exist in single-stack mode
    // too, but no address resolves to them then, as none resolves to world (2) in dual-stack mode.
    for (const [name, id] of Object.entries(RESERVED_IDENTITIES)) {
      const labels = reservedIdentityLabels(name as ReservedName);
      const key = labelSetKey(labels);
      // remote-node (6) is the identity of the remote nodes without labels.
      const rec: IdentityRecord = { id, key, labels, matchLabels: labels, refs: Infinity, namedPorts: undefined, ...(name === 'remote-node' ? { nodeLabels: [] } : {}) };
      this.byKey.set(key, rec);
      this.byId.set(id, rec);
      peerCache.addIdentity(rec);
    }
    // pkg/identity `GetWorldIdentityFromIP`: world single-stack, the family's world dual-stack.
    this.worldIpv4 = this.byId.get(RESERVED_IDENTITIES[worldName(stack, 'ipv4')]) as IdentityRecord;
    this.worldIpv6 = this.byId.get(RESERVED_IDENTITIES[worldName(stack, 'ipv6')]) as IdentityRecord;
    this.pending = this.byId.get(RESERVED_IDENTITIES.init) as IdentityRecord;
  }

  get(id: IdentityId): IdentityRecord | undefined {
    return this.byId.get(id);
  }

  get size(): number {
    return this.byId.size;
  }

  ids(): IterableIterator<IdentityId> {
    return this.byId.keys();
  }

  /**
   * The identity of a label set, allocated on first use; `ports` are the named ports the new user brings, node-wide
   * too unless `nodeWide` is false (a pod owning none of its addresses: `NamedPorts.changeNamedPorts`).
   */
  acquire(labels: LabelSet, cidr: Cidr | undefined, ports: readonly ContainerPort[], key = labelSetKey(labels), nodeWide = true): IdentityRecord {
    if (this.ctx.faultHook) this.ctx.fault('acquireIdentity');
    const existing = this.byKey.get(key) ?? (this.source === 'external' && !cidr ? this.pending : undefined);
    if (existing) {
      existing.refs++;
      if (existing === this.pending) this.pendingPods++;
      this.ctx.pendingRelease.delete(existing);
      this.namedPorts.changeNamedPorts(existing, ports, +1, nodeWide);
      return existing;
    }
    const rec = this.revive(key, labels) ?? this.allocate(labels, key, cidr);
    // Before the named ports: the rules re-resolved there read the classes of port splits by key.
    this.byKey.set(key, rec);
    this.byId.set(rec.id, rec);
    this.namedPorts.changeNamedPorts(rec, ports, +1, nodeWide);
    if (cidr) {
      this.ctx.touchIpcache(cidr);
      const byLen = this.cidrs[cidr.family];
      let m = byLen.get(cidr.prefixLength);
      if (!m) byLen.set(cidr.prefixLength, (m = new Map()));
      m.set(cidr.network, rec);
    }
    this.ctx.stats.identitiesAllocated++;
    this.peerCache.addIdentity(rec);
    return rec;
  }

  /**
   * The identity of a remote node with `nodeLabels` (ClusterNetworkPolicy `nodes` peers select on
   * them): node-local, one per label set, `reserved:remote-node` to every other selector; a node
   * without labels has remote-node (6) itself. Released with `release`.
   */
  acquireNode(nodeLabels: LabelSet): IdentityRecord {
    const remote = this.byId.get(RESERVED_IDENTITIES['remote-node']) as IdentityRecord;
    if (nodeLabels.length === 0) return remote;
    const labels = makeLabelSet([...remote.labels, ...nodeLabels.map((l) => ({ source: SOURCE_NODE, key: l.key, value: l.value }))]);
    const key = labelSetKey(labels);
    return this.reuseLocal(key) ?? this.addLocal(key, this.revive(key, labels) ?? { ...this.allocate(labels, key, undefined, 'remote-node'), matchLabels: remote.matchLabels, nodeLabels });
  }

  /** The agent's own node's labels on `host` (undefined: no own node); selectors see it anew. */
  /** `unknown`: the agent's own node is held fail-closed (findings 2541, 2730), its labels read as unknown by `nodes` selectors. */
  setHostNodeLabels(nodeLabels: LabelSet | undefined, unknown?: NodeLabelsUnknown): void {
    const host = this.byId.get(RESERVED_IDENTITIES.host) as IdentityRecord;
    const old = host.nodeLabels;
    const same = old === nodeLabels || (old !== undefined && nodeLabels !== undefined && labelSetKey(old) === labelSetKey(nodeLabels));
    if (same && host.nodeLabelsUnknown === unknown) return;
    this.peerCache.removeIdentity(host.id);
    host.nodeLabels = nodeLabels;
    host.nodeLabelsUnknown = unknown;
    this.peerCache.addIdentity(host);
  }

  /**
   * An API server address outside the cluster: its labels are its CIDR labels (world included) and
   * `reserved:kube-apiserver` (pkg/ipcache/metadata.go `resolveIdentity`: an address with no
   * host, remote-node, health or ingress label gets `GetCIDRLabels(prefix)` merged in), a node-local
   * identity that CIDR selectors covering the address select. Released with `release`.
   */
  acquireApiServerHost(ip: IpAddress): IdentityRecord {
    const cidr = hostCidr(ip);
    const labels = makeLabelSet([{ source: SOURCE_CIDR, key: cidr.text, value: '' }, ...worldLabels(this.stack, ip.family), reservedLabel('kube-apiserver')]);
    const key = labelSetKey(labels);
    return this.reuseLocal(key) ?? this.addLocal(key, this.revive(key, labels) ?? { ...this.allocate(labels, key, cidr), apiServerHost: true as const });
  }

  /**
   * An API server address a node holds as its health or Ingress address, or a remote node with
   * labels `nodes` peers select on: the node address's identity plus `reserved:kube-apiserver`
   * (Cilium allocates an identity for the merged label set, pkg/ipcache/metadata.go
   * `resolveIdentity`). The plain remote-node address is identity 7 (`kube-apiserver`) instead.
   */
  acquireApiServerVariant(base: IdentityRecord): IdentityRecord {
    const kapi = reservedLabel('kube-apiserver');
    const labels = makeLabelSet([...base.labels, kapi]);
    const matchLabels = makeLabelSet([...base.matchLabels, kapi]);
    const key = labelSetKey(labels);
    return this.reuseLocal(key) ?? this.addLocal(key, this.revive(key, labels) ?? { ...this.allocate(labels, key, undefined, base.nodeLabels ? 'remote-node' : 'local'), matchLabels, ...(base.nodeLabels ? { nodeLabels: base.nodeLabels } : {}) });
  }

  /**
   * Node-local identities without named ports (nodes, FQDN IPs, API server addresses): `reuseLocal`
   * counts one more user of an existing one, `addLocal` registers a new (or revived) record.
   */
  private reuseLocal(key: string): IdentityRecord | undefined {
    const existing = this.byKey.get(key);
    if (existing) {
      existing.refs++;
      this.ctx.pendingRelease.delete(existing);
    }
    return existing;
  }

  private addLocal(key: string, rec: IdentityRecord): IdentityRecord {
    this.byKey.set(key, rec);
    this.byId.set(rec.id, rec);
    this.ctx.stats.identitiesAllocated++;
    this.peerCache.addIdentity(rec);
    return rec;
  }

  /**
   * The labels selectors see on a reserved identity that API server addresses may carry: `host`
   * gains `reserved:kube-apiserver` while one of its addresses is the API server's
   * (`AddReservedIdentityWithLabels(ReservedIdentityHost, lbls)` in `resolveIdentity`), and
   * `kube-apiserver` (7) carries `reserved:remote-node` while a remote node's address has it (pkg/identity
   * `LookupReservedIdentityByLabels`: remote-node + kube-apiserver is 7, `NewIdentity(nid, lbls)`).
   */
  setApiServerLabels(id: IdentityId, extra: ReservedName | undefined): void {
    const rec = this.byId.get(id) as IdentityRecord;
    const matchLabels = extra === undefined ? rec.labels : makeLabelSet([...rec.labels, reservedLabel(extra)]);
    if (labelSetKey(matchLabels) === labelSetKey(rec.matchLabels)) return;
    this.peerCache.removeIdentity(id);
    rec.matchLabels = matchLabels;
    // As a remote node's address, 7 is a node to ClusterNetworkPolicy `nodes` peers, as 6 is.
    if (extra === 'remote-node') rec.nodeLabels = [];
    else if (id !== RESERVED_IDENTITIES.host) rec.nodeLabels = undefined;
    this.peerCache.addIdentity(rec);
  }

  /** Rolling back a refused transaction: an identity its commit freed gets its old number back. */
  private revive(key: string, labels: LabelSet): IdentityRecord | undefined {
    const freed = this.ctx.freed.get(key);
    if (!freed) return undefined;
    this.ctx.freed.delete(key);
    this.allocator.revive(freed.id, labels);
    freed.refs = 1;
    return freed;
  }

  private allocate(labels: LabelSet, key: string, cidr: Cidr | undefined, scope: 'cluster' | 'local' | 'remote-node' = cidr !== undefined ? 'local' : 'cluster'): IdentityRecord {
    // Rebuilding after an internal error: the allocator's journal gave back the old numbers.
    const adopted = this.ctx.adopting ? this.allocator.lookup(labels) : undefined;
    const id = adopted ?? this.allocator.acquire(labels, scope, key).id;
    const matchLabels = cidr ? labels.filter((l) => l.source !== SOURCE_CIDR) : labels;
    // `cidr` always present (undefined for pods): pod and CIDR identities share one shape, so the churn's
    // first freed CIDR identity does not deoptimise `free` and the commit inlining it (perf19c).
    return { id, key, labels, matchLabels, refs: 1, namedPorts: undefined, cidr };
  }

  /**
   * An identity allocated outside (CiliumIdentity, kvstore): selectable as a peer from now on,
   * whether or not a pod uses it (as Cilium's selector cache holds every cluster identity). It is
   * held by its source, never freed by its pods. Returns the label-set key whose pods may change
   * identity (the caller re-identifies them). `unreadable`: a fail-closed stand-in (`IdentityRecord.unreadable`),
   * selectable by nothing.
   */
  upsertExternal(id: IdentityId, labels: LabelSet, unreadable = false): string[] {
    const key = labelSetKey(labels);
    const old = this.byId.get(id);
    if (old && old.key === key && (old.unreadable ?? false) === unreadable) return [];
    const touched = old ? this.deleteExternal(id) : [];
    if (this.ctx.faultHook) this.ctx.fault('acquireIdentity');
    const rec: IdentityRecord = unreadable
      ? { id, key, labels, matchLabels: labels, refs: Infinity, namedPorts: undefined, unreadable }
      : { id, key, labels, matchLabels: labels, refs: Infinity, namedPorts: undefined };
    this.byId.set(id, rec);
    const ids = [...(this.external.get(key) ?? []), id].sort((a, b) => a - b);
    this.external.set(key, ids);
    this.byKey.set(key, this.podIdentity(ids));
    this.ctx.stats.identitiesAllocated++;
    if (!unreadable) this.peerCache.addIdentity(rec);
    this.ctx.onUndo(() => this.deleteExternal(id));
    return [...touched, key];
  }

  /** An external identity deleted: no longer selectable; returns the label-set key whose pods must be re-identified. */
  deleteExternal(id: IdentityId): string[] {
    const rec = this.byId.get(id);
    if (!rec) throw new Error(`internal: external identity ${id} vanished`);
    const key = rec.key;
    if (rec.unreadable !== true) this.peerCache.removeIdentity(id);
    this.byId.delete(id);
    const ids = (this.external.get(key) ?? []).filter((x) => x !== id);
    if (ids.length > 0) {
      this.external.set(key, ids);
      this.byKey.set(key, this.podIdentity(ids));
    } else {
      this.external.delete(key);
      this.byKey.delete(key);
    }
    this.ctx.stats.identitiesReleased++;
    this.ctx.onUndo(() => this.upsertExternal(id, rec.labels, rec.unreadable ?? false));
    return [key];
  }

  /**
   * Which of a label set's external ids (lowest first) its pods get: the lowest readable one, else the
   * lowest (a stand-in, finding 1936). A stand-in keeps its last labels' pods only until their node
   * allocates them an id Cilium and distill both read (the etcd allocator's repair, a new CiliumIdentity).
   */
  private podIdentity(ids: readonly IdentityId[]): IdentityRecord {
    let pick: IdentityRecord | undefined;
    for (const id of ids) {
      const rec = this.byId.get(id) as IdentityRecord;
      if (rec.unreadable !== true) return rec;
      pick ??= rec;
    }
    return pick as IdentityRecord;
  }

  /**
   * `id` when it is an external identity (a CiliumIdentity or kvstore id) distill can read: not a
   * reserved, CIDR, FQDN or unknown number, not an unreadable stand-in (`PodTable.ipIdentity`).
   */
  externalReadable(id: IdentityId): IdentityRecord | undefined {
    const rec = this.byId.get(id);
    if (rec === undefined || rec.unreadable === true || !(this.external.get(rec.key)?.includes(id) ?? false)) return undefined;
    return rec;
  }

  /** The identity a pod with these labels gets now (external: the lowest id for them, else pending). */
  current(key: string): IdentityRecord | undefined {
    return this.byKey.get(key) ?? (this.source === 'external' ? this.pending : undefined);
  }

  /** The CIDR identity of a prefix a rule mentions (labels `cidr:<prefix>` plus world). */
  acquireCidr(cidr: Cidr): IdentityRecord {
    const labels = makeLabelSet([{ source: SOURCE_CIDR, key: cidr.text, value: '' }, ...worldLabels(this.stack, cidr.family)]);
    return this.acquire(labels, cidr, []);
  }

  /**
   * The identity of one FQDN selector alone (`fqdn:<key>` + the world label of IPv4), held while a unit has the
   * selector as a peer: its map entries exist before the first answer (CFP-28427).
   */
  acquireFqdnSelector(sel: FqdnSelector): IdentityRecord {
    this.fqdnSelectorEpoch++;
    const key = fqdnSelectorKey(sel);
    this.fqdnSelectorsSeen.set(key, sel);
    return this.acquireFqdn(makeLabelSet([{ source: SOURCE_FQDN, key, value: '' }, ...worldLabels(this.stack, 'ipv4')]), undefined);
  }

  fqdnSelectors(): Iterable<[string, FqdnSelector]> {
    return this.fqdnSelectorsSeen;
  }

  /** A node-local FQDN identity; `cidr`: the CIDR identity's prefix the IPs stand in for (selection only). */
  acquireFqdn(labels: LabelSet, cidr: Cidr | undefined, key = labelSetKey(labels)): IdentityRecord {
    if (this.ctx.faultHook) this.ctx.fault('acquireIdentity');
    return this.reuseLocal(key) ?? this.addLocal(key, this.revive(key, labels) ?? { ...this.allocate(labels, key, cidr, 'local'), fqdn: true as const });
  }

  fqdnHost(ip: string): IdentityRecord | undefined {
    if (this.fqdnHosts.size === 0) return undefined; // no address text parsed per pod IP when nothing was learnt
    const key = ipKeyOfText(ip);
    return key === undefined ? undefined : this.fqdnHosts.get(key);
  }

  /** How many learnt IPs hold an fqdn identity. */
  get fqdnHostCount(): number {
    return this.fqdnHosts.size;
  }

  fqdnHostOf(ip: IpKey): IdentityRecord | undefined {
    return this.fqdnHosts.get(ip);
  }

  setFqdnHost(ip: IpKey, rec: IdentityRecord | undefined): void {
    if (rec) this.fqdnHosts.set(ip, rec);
    else this.fqdnHosts.delete(ip);
  }

  fqdnHostKeys(): Iterable<IpKey> {
    return this.fqdnHosts.keys();
  }

  *fqdnHostEntries(): Iterable<{ ip: IpAddress; identity: IdentityRecord }> {
    for (const [key, rec] of this.fqdnHosts.entries()) yield { ip: ipOfKey(key), identity: rec };
  }

  /** How many CIDR groups are held fail-closed: while some is, every local map denies `unallocated` (as for `pendingPods`). */
  get heldGroupCount(): number {
    return this.heldGroups.size;
  }

  /** Group `name` held fail-closed at `cidrs`, or no longer (undefined). The caller touches the ipcache prefixes inside first. */
  setHeldGroup(name: string, cidrs: readonly Cidr[] | undefined): void {
    const old = this.heldGroups.get(name);
    if (old === cidrs) return;
    if (cidrs) this.heldGroups.set(name, cidrs);
    else this.heldGroups.delete(name);
    this.ctx.onUndo(() => this.setHeldGroup(name, old));
  }

  /** Whether prefix `c` lies inside a group held fail-closed: its CIDR identity reads `unallocated` in the ipcache. */
  heldPrefix(c: Cidr): boolean {
    if (this.heldGroups.size === 0) return false;
    for (const cidrs of this.heldGroups.values()) for (const h of cidrs) if (cidrContainsCidr(h, c)) return true;
    return false;
  }

  /**
   * `unallocated` for exactly a prefix of a group held fail-closed: its ipcache entry, which holds no CIDR identity
   * (finding 3273, `CidrGroupTable.set`). Else undefined.
   */
  heldGroupEntry(at: Cidr | IpAddress): IdentityRecord | undefined {
    if (this.heldGroups.size === 0) return undefined;
    const [length, network] = 'prefixLength' in at ? [at.prefixLength, at.network] : [at.family === 'ipv4' ? 32 : 128, at.value];
    for (const cidrs of this.heldGroups.values()) for (const h of cidrs) if (h.family === at.family && h.prefixLength === length && h.network === network) return this.unallocated;
    return undefined;
  }

  /** The prefixes of the groups held fail-closed (each an ipcache entry at `unallocated`, `heldGroupEntry`). */
  *heldGroupPrefixes(): Iterable<Cidr> {
    for (const cidrs of this.heldGroups.values()) yield* cidrs;
  }

  /** Whether address `ip` lies inside a group held fail-closed (its learnt or CIDR host entry reads `unallocated`). */
  heldIp(ip: IpAddress): boolean {
    if (this.heldGroups.size === 0) return false;
    for (const cidrs of this.heldGroups.values()) for (const h of cidrs) if (cidrContainsIp(h, ip)) return true;
    return false;
  }

  /**
   * The ipcache's record for a CIDR-derived entry (a CIDR identity, a learnt address) at `ip` or `prefix`:
   * `unallocated` inside a group held fail-closed, else `rec`.
   */
  ipcacheOfCidr(rec: IdentityRecord | undefined, at: IpAddress | Cidr): IdentityRecord | undefined {
    if (rec === undefined || this.heldGroups.size === 0) return rec;
    return ('prefixLength' in at ? this.heldPrefix(at) : this.heldIp(at)) ? this.unallocated : rec;
  }

  /**
   * `pending` for a pod the agent holds fail-closed (`Pod.failClosed`, finding 2352), whatever the identity source, with
   * its named ports (finding 3264; node-wide while it owns an address, 3740): the cluster-wide ports a name has, which an egress deny on the name denies to every
   * peer, keep the held pod's (without them a deny lost a port both inputs gave it). Dropped by `releaseForPod`.
   */
  acquirePending(ports: readonly ContainerPort[], nodeWide: boolean): IdentityRecord {
    if (this.ctx.faultHook) this.ctx.fault('acquireIdentity');
    this.pending.refs++;
    this.pendingPods++;
    this.namedPorts.changeNamedPorts(this.pending, ports, +1, nodeWide);
    return this.pending;
  }

  /** Drops a pod using it, with the named ports the pod brought (`nodeWide`: as it acquired them). */
  releaseForPod(rec: IdentityRecord, ports: readonly ContainerPort[], nodeWide: boolean): void {
    if (rec === this.pending) this.pendingPods--;
    this.namedPorts.changeNamedPorts(rec, ports, -1, nodeWide);
    this.release(rec);
  }

  /** Drops one user. */
  release(rec: IdentityRecord): void {
    if (rec.fqdn) this.fqdnSelectorEpoch++;
    rec.refs--;
    if (rec.refs === 0) this.ctx.pendingRelease.add(rec);
  }

  /** At commit (and rollback): frees the identities nobody took back during the transaction. */
  freeUnused(): void {
    const pending = this.ctx.pendingRelease;
    if (pending.size === 0) return;
    // Freeing never adds to or deletes from `pendingRelease`, so it is iterated in place.
    for (const rec of pending) if (rec.refs === 0) this.free(rec);
    pending.clear();
  }

  private free(rec: IdentityRecord): void {
    if (this.ctx.faultHook) this.ctx.fault('freeIdentity');
    this.peerCache.removeIdentity(rec.id);
    this.byKey.delete(rec.key);
    this.byId.delete(rec.id);
    if (rec.cidr && !rec.fqdn && !rec.apiServerHost) {
      this.ctx.touchIpcache(rec.cidr);
      const m = this.cidrs[rec.cidr.family].get(rec.cidr.prefixLength);
      m?.delete(rec.cidr.network);
      if (m?.size === 0) this.cidrs[rec.cidr.family].delete(rec.cidr.prefixLength);
    }
    this.allocator.release(rec.id);
    this.ctx.freed.set(rec.key, rec);
    this.ctx.stats.identitiesReleased++;
  }

  /** The CIDR identity of exactly this prefix, if a rule holds one. */
  cidrExact(prefix: Cidr): IdentityRecord | undefined {
    return this.cidrs[prefix.family].get(prefix.prefixLength)?.get(prefix.network);
  }

  /** The CIDR identity of exactly the address's host prefix (/32, /128), if a rule holds one. */
  cidrHost(ip: IpAddress): IdentityRecord | undefined {
    return this.cidrs[ip.family].get(ip.family === 'ipv4' ? 32 : 128)?.get(ip.value);
  }

  /** The CIDR identities (the ipcache's prefix entries). */
  *cidrIdentities(): Iterable<IdentityRecord> {
    for (const byNetwork of this.cidrs.ipv4.values()) yield* byNetwork.values();
    for (const byNetwork of this.cidrs.ipv6.values()) yield* byNetwork.values();
  }

  /** The ipcache's LPM part: the longest CIDR identity prefix holding `ip`, else world. */
  cidrIdentityOf(ip: IpAddress): IdentityRecord {
    const byLen = this.cidrs[ip.family];
    const bits = ip.family === 'ipv4' ? 32 : 128;
    for (let len = bits; len >= 0; len--) {
      const m = byLen.get(len);
      if (!m) continue;
      const network = len === 0 ? 0n : (ip.value >> BigInt(bits - len)) << BigInt(bits - len);
      const rec = m.get(network);
      // refs 0: released in this transaction, gone at commit (the FQDN stage looks before that).
      if (rec && rec.refs > 0 && rec.cidr && cidrContainsIp(rec.cidr, ip)) return rec;
    }
    return ip.family === 'ipv4' ? this.worldIpv4 : this.worldIpv6;
  }
}

