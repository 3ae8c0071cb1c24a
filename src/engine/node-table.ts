import { type Cidr, cidrContainsIp, type IpAddress } from '../model/cidr.js';
import { NODE_ROLE_ORDER, nodeAddresses, NodeAddressRole, NodeEndpointAddresses, type NodeHold } from '../model/cluster.js';
import { RESERVED_IDENTITIES } from '../model/identity.js';
import { k8sLabels, LabelSet, makeLabelSet } from '../model/labels.js';
import { hasApiServerStandIns, type Peer, type Policy } from '../model/rules.js';
import type { Selector } from '../model/selector.js';
import type { EngineContext } from './context.js';
import type { IdentityRecord, IdentityTable } from './identities.js';
import { tierRuleNetworks } from './tiers.js';

interface NodeRecord extends NodeEndpointAddresses {
  readonly ips: readonly IpAddress[];
  readonly local: boolean;
  /** The node's labels (`k8s:`), which ClusterNetworkPolicy `nodes` peers select on. */
  readonly labels: LabelSet;
  /** When the node was first upserted (kept by later upserts): of several nodes holding one address, the first decides. */
  readonly seq: number;
  /**
   * Held fail-closed by the agent (`upsertNode.failClosed`): a remote node's identity is the unallocated number (finding
   * 2432); the local node's labels read as unknown (`host` keeps its identity, finding 2541); `addresses`, its own
   * addresses the unallocated number too (finding 2900).
   */
  readonly failClosed: NodeHold | undefined;
}

const rank = (role: NodeAddressRole): number => NODE_ROLE_ORDER.indexOf(role);
/** A node whose own addresses read the unallocated number: a remote node held fail-closed, the local node held at its addresses (2900). */
const holdsUnallocated = (rec: NodeRecord): boolean => rec.failClosed !== undefined && (!rec.local || rec.failClosed === 'addresses');
/** The role that decides an address's identity: of its holders' roles, the first in NODE_ROLE_ORDER. */
const roleOf = (holders: ReadonlyMap<string, NodeAddressRole>): NodeAddressRole => NODE_ROLE_ORDER[Math.min(...[...holders.values()].map(rank))] as NodeAddressRole;
/** A tiered policy with `networks` peers: each such rule's CIDRs. */
interface Networked {
  readonly policy: Policy;
  readonly rules: readonly (readonly Cidr[])[];
}
/** The `nodes` peer keys of a policy that has none (shared, never written). */
const NO_KEYS: Set<string> = new Set();

/** The selectors of a policy's `nodes` peers: ClusterNetworkPolicy `nodes`, Cilium `toNodes`/`fromNodes`. */
function nodeSelectorsOf(policy: Policy): Selector[] | null {
  let out: Selector[] | null = null;
  if (policy.tiered !== undefined) for (const r of policy.tiered.rules) for (const p of r.peers) if (p.kind === 'nodes') (out ??= []).push(p.selector);
  // Indexed: a cold start runs this once per policy, mostly before it is optimized (a for-of allocates a result per step there).
  const rules = policy.rules;
  for (let i = 0; i < rules.length; i++) {
    const peers = (rules[i] as Policy['rules'][number]).peers;
    for (let j = 0; j < peers.length; j++) {
      const p = peers[j] as Peer;
      if (p.kind === 'nodes') (out ??= []).push(p.selector);
    }
  }
  return out;
}

/** Some peer of the policy's rules is a `nodes` peer or an API server stand-in (indexed: asked once per policy upsert, mostly unoptimised). */
function hasNodeOrStandIn(policy: Policy): boolean {
  const rules = policy.rules;
  for (let i = 0; i < rules.length; i++) {
    const peers = (rules[i] as Policy['rules'][number]).peers;
    for (let j = 0; j < peers.length; j++) {
      const p = peers[j] as Peer;
      if (p.kind === 'nodes' || (p.kind === 'selector' && p.apiServerStandIn === true)) return true;
    }
  }
  return false;
}

/**
 * Cluster nodes and their addresses: each address is an ipcache host entry with the reserved
 * identity `host` (the agent's own node) or `remote-node` (Cilium's node manager,
 * pkg/node/manager/policy.go updatePolicy.Upsert), and its health endpoint's and Ingress's
 * addresses `health` and `ingress` (same function). So that ClusterNetworkPolicy `nodes` peers can
 * tell nodes apart, a remote node whose labels include keys some `nodes` peer selects on gets an
 * identity per set of those labels instead of `remote-node` (`IdentityTable.acquireNode`; every
 * other selector sees it as remote-node), and `host` carries the agent's own node's labels. Without
 * `nodes` peers every remote node is `remote-node`, as before.
 */
export class NodeTable {
  private readonly nodes = new Map<string, NodeRecord>();
  /** The identity each remote node holds (`acquireNode`). */
  private readonly remote = new Map<string, IdentityRecord>();
  /** Address text → the address and the nodes holding it, with the role each gives it (two Node objects may list one address). */
  private readonly ips = new Map<string, { readonly ip: IpAddress; readonly holders: Map<string, NodeAddressRole> }>();
  private nextSeq = 0;
  /** How many remote nodes are held fail-closed: while some is, every local map denies the unallocated number. */
  heldCount = 0;
  /** Node label keys the `nodes` peers of each policy select on; `keys`: their union. */
  private readonly keysByPolicy = new Map<string, ReadonlySet<string>>();
  private keys: ReadonlySet<string> = new Set();
  /** The API server's addresses by text (`setApiServer`); undefined while unknown. */
  private apiServer: ReadonlyMap<string, IpAddress> | undefined;
  /** Addresses whose API server change the agent holds fail-closed (`setApiServer.held`), by text. */
  private apiServerHeld: ReadonlyMap<string, IpAddress> = new Map();
  /** API server address → the identity it holds (acquired here; a node's address or one outside the cluster). */
  private readonly apiServerIds = new Map<string, IdentityRecord>();
  /** Policies with peers standing in for unknown API server addresses, by key: re-resolved once the addresses are known. */
  private readonly standIns = new Map<string, Policy>();
  /** Tiered policies with `networks` peers, by key, with each such rule's CIDRs: whether a node address lies in them decides their node entries (tiers.ts, finding 442). */
  private readonly networked = new Map<string, Networked>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly identities: IdentityTable,
  ) {}

  /** Returns the policies to re-resolve: those whose `networks` now hold a different share of a node role's addresses (tiers.ts `nodePeers`). */
  upsert(name: string, ips: readonly IpAddress[], local: boolean, endpoints: NodeEndpointAddresses = {}, labels: Readonly<Record<string, string>> = {}, failClosed?: NodeHold): Policy[] {
    return this.coverChanges(() => {
      const seq = this.nodes.get(name)?.seq ?? this.nextSeq++;
      if (this.nodes.has(name)) this.delete(name);
      const rec: NodeRecord = { ips, local, ...endpoints, labels: makeLabelSet(k8sLabels(labels)), seq, failClosed };
      for (const { ip } of nodeAddresses(rec)) this.ctx.touchIpcacheHost(ip);
      this.add(name, rec);
      this.ctx.onUndo(() => this.forget(name, rec));
    });
  }

  /** Returns the policies to re-resolve, as `upsert`. */
  delete(name: string): Policy[] {
    return this.coverChanges(() => {
      const rec = this.nodes.get(name);
      if (!rec) throw new Error(`internal: node "${name}" vanished`);
      for (const { ip } of nodeAddresses(rec)) this.ctx.touchIpcacheHost(ip);
      this.forget(name, rec);
      this.ctx.onUndo(() => this.add(name, rec));
    });
  }

  /**
   * The networked policies whose node cover `change` alters. Each is compared before and after:
   * work per node change is the networked policies' CIDRs times the node addresses (there are few
   * tiered policies with networks; a cilium-2019 cold start has none).
   */
  private coverChanges(change: () => void): Policy[] {
    if (this.networked.size === 0) {
      change();
      return [];
    }
    const before = new Map([...this.networked].map(([k, v]) => [k, this.coverKey(v)]));
    change();
    const out: Policy[] = [];
    for (const [k, v] of this.networked) if (before.get(k) !== this.coverKey(v)) out.push(v.policy);
    return out;
  }

  /** The node cover of each of the policy's networked rules, as text. */
  private coverKey(n: Networked): string {
    return n.rules.map((cidrs) => [...this.cover(cidrs)].map(([r, c]) => `${r}=${c}`).sort().join(',')).join(';');
  }

  /** Per node role, whether `cidrs` hold all or some of its addresses (tiers.ts `NodeCover`). */
  cover(cidrs: readonly Cidr[]): Map<NodeAddressRole, 'all' | 'some'> {
    const inside = new Map<NodeAddressRole, number>();
    const total = new Map<NodeAddressRole, number>();
    for (const { ip, holders } of this.ips.values()) {
      const role = roleOf(holders);
      const held = this.identityOf(holders) === this.identities.unallocated;
      // The held local node's own addresses are no host address (2900): no rule meets the host role through them.
      if (held && role === 'host') continue;
      total.set(role, (total.get(role) ?? 0) + 1);
      // An address a held node gives the unallocated number is never inside (3060, 3061): the role's cover is then at
      // most what it is in the refused version, so the held form adds no entry for it (left out, the others could
      // make the role whole).
      if (!held && cidrs.some((c) => cidrContainsIp(c, ip))) inside.set(role, (inside.get(role) ?? 0) + 1);
    }
    const out = new Map<NodeAddressRole, 'all' | 'some'>();
    for (const [role, n] of inside) out.set(role, n === total.get(role) ? 'all' : 'some');
    return out;
  }

  private add(name: string, rec: NodeRecord): void {
    this.nodes.set(name, rec);
    if (holdsUnallocated(rec)) this.heldCount++;
    // A node held fail-closed: its own addresses are the unallocated number, which no selector selects (finding 2432).
    if (!rec.local) this.remote.set(name, rec.failClosed !== undefined ? this.identities.unallocated : this.identities.acquireNode(this.relevant(rec.labels)));
    else this.updateHost();
    for (const { ip, role } of nodeAddresses(rec)) {
      let e = this.ips.get(ip.text);
      if (!e) this.ips.set(ip.text, (e = { ip, holders: new Map() }));
      // One node listing an address twice: its own address before its health, then Ingress address.
      const held = e.holders.get(name);
      if (held === undefined || rank(role) < rank(held)) e.holders.set(name, role);
    }
    this.refreshApiServer(nodeAddresses(rec).map((a) => a.ip.text));
  }

  private forget(name: string, rec: NodeRecord): void {
    this.nodes.delete(name);
    if (holdsUnallocated(rec)) this.heldCount--;
    const identity = this.remote.get(name);
    if (identity) this.identities.release(identity);
    this.remote.delete(name);
    if (rec.local) this.updateHost();
    for (const { ip } of nodeAddresses(rec)) {
      const e = this.ips.get(ip.text);
      if (e?.holders.delete(name) && e.holders.size === 0) this.ips.delete(ip.text);
    }
    this.refreshApiServer(nodeAddresses(rec).map((a) => a.ip.text));
  }

  /** `key` is `policyRefKey(policy.ref)`. */
  policyUpserted(policy: Policy, key: string): void {
    // A policy without tiers, `nodes` peers or stand-ins that the table does not hold changes nothing (nearly every policy of a cold start).
    if (policy.tiered === undefined && !this.standIns.has(key) && !this.keysByPolicy.has(key) && !this.networked.has(key) && !hasNodeOrStandIn(policy)) return;
    this.setStandIn(key, hasApiServerStandIns(policy) ? policy : undefined);
    // Most policies have no nodes peers and no tiers: no Set and no arrays for them (30,000 in a cilium-ci cold start).
    const selectors = nodeSelectorsOf(policy);
    const keys = selectors === null ? NO_KEYS : new Set(selectors.flatMap((sel) => sel.requirements.map((q) => q.key.key)));
    this.setPolicyKeys(key, keys);
    const rules = policy.tiered === undefined ? null : policy.tiered.rules.map(tierRuleNetworks).filter((c) => c.length > 0);
    this.setNetworked(key, rules === null || rules.length === 0 ? undefined : { policy, rules });
  }

  policyDeleted(key: string): void {
    this.setStandIn(key, undefined);
    this.setNetworked(key, undefined);
    this.setPolicyKeys(key, NO_KEYS);
  }

  private setPolicyKeys(key: string, keys: ReadonlySet<string>): void {
    const old = this.keysByPolicy.get(key);
    if (old !== undefined || keys.size > 0) this.changePolicyKeys(key, old, keys);
  }

  private changePolicyKeys(key: string, old: ReadonlySet<string> | undefined, keys: ReadonlySet<string>): void {
    const put = (k: ReadonlySet<string> | undefined): void => void (k === undefined || k.size === 0 ? this.keysByPolicy.delete(key) : this.keysByPolicy.set(key, k));
    put(keys);
    this.ctx.onUndo(() => {
      put(old);
      this.rekey();
    });
    this.rekey();
  }

  /** The union of the peers' keys changed: remote nodes whose relevant labels changed take their new identity. */
  private rekey(): void {
    const next = new Set<string>();
    for (const ks of this.keysByPolicy.values()) for (const k of ks) next.add(k);
    if (next.size === this.keys.size && [...next].every((k) => this.keys.has(k))) return;
    this.keys = next;
    for (const [name, rec] of this.nodes) {
      const old = this.remote.get(name);
      if (old === undefined || rec.failClosed !== undefined) continue;
      const identity = this.identities.acquireNode(this.relevant(rec.labels));
      // Touched before the change: the ipcache journal keeps the identity an address had at its first touch.
      if (identity !== old) for (const { ip } of nodeAddresses(rec)) this.ctx.touchIpcacheHost(ip);
      this.remote.set(name, identity);
      this.identities.release(old);
      if (identity !== old) this.refreshApiServer(nodeAddresses(rec).map((a) => a.ip.text));
    }
  }

  private relevant(labels: LabelSet): LabelSet {
    return labels.filter((l) => this.keys.has(l.key));
  }

  /** `host` carries the labels of the agent's own node (the first, if several are marked local). */
  private updateHost(): void {
    let own: NodeRecord | undefined;
    for (const rec of this.nodes.values()) if (rec.local && (own === undefined || rec.seq < own.seq)) own = rec;
    // Held at its addresses (2900), another local node's may still be `host`: read on every port, as `allPorts`.
    this.identities.setHostNodeLabels(own?.labels, own?.failClosed === undefined ? undefined : own.failClosed === true ? 'ports' : 'allPorts');
  }

  /** The identity of a node's address, if some node holds it: of several holders' roles, the first in NODE_ROLE_ORDER. */
  at(ipText: string): IdentityRecord | undefined {
    const e = this.ips.get(ipText);
    return e && (this.apiServerIds.get(ipText) ?? this.identityOf(e.holders));
  }

  /** The identity of an API server address no node holds (outside the cluster; a pod's address stays the pod's). */
  apiServerAt(ipText: string): IdentityRecord | undefined {
    return this.ips.has(ipText) ? undefined : this.apiServerIds.get(ipText);
  }

  get apiServerKnown(): boolean {
    return this.apiServer !== undefined;
  }

  /** The API server's addresses (the last set replaces the one before), and those held fail-closed (`held`). Undone on rollback. */
  setApiServer(addresses: readonly IpAddress[], held: readonly IpAddress[] = []): void {
    const [old, oldHeld] = [this.apiServer, this.apiServerHeld];
    const next = new Map(addresses.map((ip) => [ip.text, ip]));
    const nextHeld = new Map(held.map((ip) => [ip.text, ip]));
    const all = new Map([...(old ?? []), ...oldHeld, ...next, ...nextHeld]);
    const touch = (): void => {
      for (const ip of all.values()) this.ctx.touchIpcacheHost(ip);
    };
    touch();
    [this.apiServer, this.apiServerHeld] = [next, nextHeld];
    this.refreshApiServer(all.keys());
    this.ctx.onUndo(() => {
      touch();
      [this.apiServer, this.apiServerHeld] = [old, oldHeld];
      this.refreshApiServer(all.keys());
    });
  }

  /** How many API server addresses are held fail-closed: while some is, every local map denies the unallocated number. */
  get heldApiServerCount(): number {
    return this.apiServerHeld.size;
  }

  /** Policies whose kube-apiserver deny still holds stand-in peers (to re-resolve once the addresses are known). */
  standInPolicies(): Policy[] {
    return [...this.standIns.values()];
  }

  // setNetworked and setStandIn return before any closure when nothing changes (every policy of a
  // cold start): a closure in their bodies would allocate its context on every call.
  private setNetworked(key: string, next: Networked | undefined): void {
    const old = this.networked.get(key);
    if (old !== next) this.changeNetworked(key, old, next);
  }

  private changeNetworked(key: string, old: Networked | undefined, next: Networked | undefined): void {
    const put = (v: typeof next): void => void (v ? this.networked.set(key, v) : this.networked.delete(key));
    put(next);
    this.ctx.onUndo(() => put(old));
  }

  private setStandIn(key: string, policy: Policy | undefined): void {
    const old = this.standIns.get(key);
    if (old !== policy) this.changeStandIn(key, old, policy);
  }

  private changeStandIn(key: string, old: Policy | undefined, policy: Policy | undefined): void {
    const put = (p: Policy | undefined): void => void (p ? this.standIns.set(key, p) : this.standIns.delete(key));
    put(policy);
    this.ctx.onUndo(() => put(old));
  }

  /**
   * Gives each of `texts` that is an API server address the identity Cilium resolves for it
   * (pkg/ipcache/metadata.go `resolveIdentity`): on a remote node 7 (or the node's labelled
   * identity plus the label), on the agent's node `host` (which then carries the label for all its
   * addresses), a health or Ingress address its identity plus the label, elsewhere a CIDR identity
   * with the label. The others lose theirs. Callers touch the addresses' ipcache entries first.
   */
  private refreshApiServer(texts: Iterable<string>): void {
    if (this.apiServer === undefined && this.apiServerIds.size === 0 && this.apiServerHeld.size === 0) return;
    for (const t of texts) {
      const old = this.apiServerIds.get(t);
      const ip = this.apiServer?.get(t);
      const e = this.ips.get(t);
      const next = this.apiServerHeld.has(t) ? this.heldApiServerId(t) : ip === undefined ? undefined : e ? this.apiServerVariant(this.identityOf(e.holders)) : this.identities.acquireApiServerHost(ip);
      if (next) this.apiServerIds.set(t, next);
      else this.apiServerIds.delete(t);
      if (old) this.identities.release(old);
    }
    let host = false;
    let remote = false;
    for (const [t, rec] of this.apiServerIds) {
      // A held address on this node gives `host` the label only as one of the addresses (finding 3265).
      if (rec.id === RESERVED_IDENTITIES.host && this.apiServer?.has(t) === true) host = true;
      if (rec.id === RESERVED_IDENTITIES['kube-apiserver']) remote = true;
    }
    this.identities.setApiServerLabels(RESERVED_IDENTITIES.host, host ? 'kube-apiserver' : undefined);
    this.identities.setApiServerLabels(RESERVED_IDENTITIES['kube-apiserver'], remote ? 'remote-node' : undefined);
  }

  /**
   * An address whose API server change is held fail-closed (finding 3265): the unallocated number, which every local map
   * denies, below its reading in both versions; the agent's own node's stays `host` (the number of its every address),
   * which carries the label as the addresses (the version after) give it: so every flow to it reads one version.
   */
  private heldApiServerId(t: string): IdentityRecord {
    const e = this.ips.get(t);
    const base = e && this.identityOf(e.holders);
    return base?.id === RESERVED_IDENTITIES.host ? base : this.identities.unallocated;
  }

  /** A node address's identity once it is an API server address (acquired: the caller releases it). */
  private apiServerVariant(base: IdentityRecord): IdentityRecord {
    if (base.id === RESERVED_IDENTITIES.host || base === this.identities.unallocated) return base;
    if (base.id === RESERVED_IDENTITIES['remote-node']) return this.identities.get(RESERVED_IDENTITIES['kube-apiserver']) as IdentityRecord;
    return this.identities.acquireApiServerVariant(base);
  }

  private identityOf(holders: ReadonlyMap<string, NodeAddressRole>): IdentityRecord {
    const role = NODE_ROLE_ORDER[Math.min(...[...holders.values()].map(rank))];
    if (role === 'remote-node') {
      // Of the remote nodes holding it, the first upserted (the oracle: the first in the cluster's node order).
      let first: string | undefined;
      for (const [name, r] of holders) if (r === role && (first === undefined || this.seqOf(name) < this.seqOf(first))) first = name;
      const identity = first === undefined ? undefined : this.remote.get(first);
      if (identity) return identity;
    }
    if (role !== undefined && this.heldAt(role, holders)) return this.identities.unallocated;
    const identity = role === undefined ? undefined : this.identities.get(RESERVED_IDENTITIES[role]);
    if (!identity) throw new Error(`internal: reserved node identity ${String(role)} missing`);
    return identity;
  }

  /**
   * Whether an address whose holders give it `role` reads the unallocated number because a node holding it so is held
   * there (`holdsUnallocated`): the local node held at its addresses as `host` (finding 2900); a held node, remote or
   * local at its addresses, as `health` or `ingress`, which otherwise kept the reserved identity at the refused
   * version's address, so the held form overflowed as the change did (finding 3060). `remote-node` is the first
   * holder's identity (`identityOf`).
   */
  private heldAt(role: NodeAddressRole, holders: ReadonlyMap<string, NodeAddressRole>): boolean {
    if (role === 'remote-node') return false;
    for (const [name, r] of holders) {
      const rec = r === role ? this.nodes.get(name) : undefined;
      if (rec !== undefined && holdsUnallocated(rec)) return true;
    }
    return false;
  }

  private seqOf(name: string): number {
    return this.nodes.get(name)?.seq ?? Infinity;
  }

  *entries(): IterableIterator<{ ip: IpAddress; identity: IdentityRecord }> {
    for (const { ip, holders } of this.ips.values()) yield { ip, identity: this.apiServerIds.get(ip.text) ?? this.identityOf(holders) };
  }

  /** API server addresses no node holds, with their identities. */
  *apiServerEntries(): IterableIterator<{ ip: IpAddress; identity: IdentityRecord }> {
    for (const [t, identity] of this.apiServerIds) {
      const ip = this.apiServer?.get(t) ?? this.apiServerHeld.get(t);
      if (ip && !this.ips.has(t)) yield { ip, identity };
    }
  }
}
