import type { IpAddress } from '../model/cidr.js';
import type { CidrGroup } from '../model/cidr-group.js';
import type { NodeHold, Pod } from '../model/cluster.js';
import type { FqdnEvent } from '../model/fqdn-events.js';
import type { L7Parser, L7Policy } from '../model/l7.js';
import type { LookupResult, PolicyEntry, PolicyKey } from '../model/policy-map.js';
import type { Policy, PolicyRef } from '../model/rules.js';
import type { EngineStats } from './stats.js';

/**
 * What the engine is told. Upserts carry the whole object (as a Kubernetes watch does); deletes
 * name it. Remote pods (`local` false or absent) only contribute identities; local pods are the
 * node's endpoints and get a policy map each. Identity events exist only with external identities.
 */
export type EngineEvent =
  | { readonly type: 'upsertNamespace'; readonly name: string; readonly labels: Readonly<Record<string, string>> }
  | { readonly type: 'deleteNamespace'; readonly name: string }
  /** `node`: the pod's `spec.nodeName` where the agent read one (the engine does not use it; the etcd wait names it). */
  | { readonly type: 'upsertPod'; readonly pod: Pod; readonly local?: boolean; readonly node?: string }
  | { readonly type: 'deletePod'; readonly namespace: string; readonly name: string }
  | { readonly type: 'upsertPolicy'; readonly policy: Policy }
  | { readonly type: 'deletePolicy'; readonly ref: PolicyRef }
  /**
   * A cluster identity allocated outside this engine (engines with `identitySource: 'external'`):
   * `labels` as Cilium's `security-labels` hold them, `source:key` → value (e.g. `k8s:app` → `web`).
   */
  /**
   * `unreadable`: the cluster holds the number but distill cannot read its value (a `security-labels`
   * map Cilium reads and distill refuses, finding 1936). The engine holds it as a fail-closed stand-in:
   * `labels` are the last labels it was read with (its pods keep the number in the ipcache; empty when
   * it was never readable), no selector selects it, every local map denies it in both directions above
   * every tier, and an endpoint of it has an empty map (default deny), until a readable upsert.
   */
  | { readonly type: 'upsertIdentity'; readonly id: number; readonly labels: Readonly<Record<string, string>>; readonly unreadable?: true }
  | { readonly type: 'deleteIdentity'; readonly id: number }
  /**
   * A CiliumEndpoint (cilium.io/v2) of the pod `namespace`/`name`: the identity number its agent
   * wrote (`status.identity.id`) and the addresses it lists (`status.networking.addressing`). With
   * external identities, a remote pod whose labels have no identity yet takes this number in the
   * ipcache for each listed address it owns, when the number is a readable external identity
   * (docs/semantics.md "CiliumEndpoint identities"); in every other case the endpoint changes nothing.
   */
  | { readonly type: 'upsertEndpoint'; readonly namespace: string; readonly name: string; readonly identity: number; readonly ips: readonly IpAddress[] }
  | { readonly type: 'deleteEndpoint'; readonly namespace: string; readonly name: string }
  /**
   * A cluster node and its addresses (`local`: the agent's own node): ipcache host entries with the
   * reserved identity host (1) or remote-node (6), which world and CIDR selectors do not select.
   * An upsert replaces the node's addresses. `health`, `ingress`: its health endpoint's and Ingress's
   * addresses, reserved identities health (4) and ingress (8). `labels`: the node's labels
   * (ClusterNetworkPolicy `nodes` peers select on them).
   */
  /**
   * `failClosed` (set by the agent only, for a node whose change the engine refused alone): a remote node's own
   * addresses read the unallocated number, which every local map denies both ways, whatever its labels (finding 2432);
   * the local node keeps `host` with its labels unknown: an Accept's `nodes` peer never selects it, a Deny's always
   * does, a Pass rule with a `nodes` peer denies it at its own level (finding 2541); `allPorts` (the local node only,
   * that form refused in turn, finding 2730): no `nodes` peer selects it, every Deny or Pass rule with one denies it on
   * every port at its own level; `addresses` (the local node only, that form refused too, finding 2900): its own addresses
   * read the unallocated number, as a held remote node's, and `host`'s labels read as under `allPorts`.
   */
  | { readonly type: 'upsertNode'; readonly name: string; readonly ips: readonly IpAddress[]; readonly local?: boolean; readonly health?: readonly IpAddress[]; readonly ingress?: readonly IpAddress[]; readonly labels?: Readonly<Record<string, string>>; readonly failClosed?: NodeHold }
  | { readonly type: 'deleteNode'; readonly name: string }
  /**
   * A CiliumCIDRGroup object (src/model/cidr-group.ts), created or replaced: its prefixes become
   * ipcache prefixes labelled with its name and labels; `cidrGroupRef`/`cidrGroupSelector` peers select them.
   */
  | { readonly type: 'upsertCidrGroup'; readonly group: CidrGroup }
  | { readonly type: 'deleteCidrGroup'; readonly name: string }
  /**
   * The API server's addresses (the backends of default/kubernetes), replacing the last set: each
   * is labelled `reserved:kube-apiserver` (docs/semantics.md, "kube-apiserver"). Before the first
   * such event they are unknown, and a deny naming the entity keeps its stand-in peers (finding 100). `held`: addresses
   * whose change the agent holds fail-closed (finding 3265), among `addresses` or not: they read the unallocated number,
   * which every local map denies both ways, a pod's address the pod's, the agent's own node's `host` (with the label if
   * some address of it is among `addresses`).
   */
  | { readonly type: 'setApiServer'; readonly addresses: readonly IpAddress[]; readonly held?: readonly IpAddress[] }
  /** DNS answers and clock steps (toFQDNs, src/model/fqdn-events.ts; the FQDN stage, fqdn-stage.ts). */
  | FqdnEvent;

/** One operation on one endpoint's policy map. For a delete, `entry` is the value removed. */
export interface MapDelta {
  readonly endpoint: string;
  readonly op: 'upsert' | 'delete';
  readonly key: PolicyKey;
  readonly entry: PolicyEntry;
  /** For an upsert that overwrites an entry: the value it replaces (absent: a new key). */
  readonly previous?: PolicyEntry;
}

/** A proxy redirect of one endpoint and the proxy port it listens on. */
export interface RedirectInfo {
  readonly direction: 'ingress' | 'egress';
  readonly protocol: number;
  readonly port: number;
  /** A port range's prefix (absent: the single port `port`). */
  readonly portPrefixLen?: number;
  readonly parser: L7Parser;
  readonly proxyPort: number;
}

/** Ports `port`..`endPort` (inclusive), as Cilium's NPDS PortNetworkPolicy carries port/end_port. */
export interface L7PortRange {
  readonly port: number;
  readonly endPort: number;
}

/**
 * One row of an endpoint's L7 tables: what the proxy of `redirect` is told for `peer` (0 = any
 * peer). A row with `portRange` applies only to requests on those ports, a narrower range inside
 * a redirected port range (a narrower L7 range's rules, or allow-all for a plain allow there). The
 * proxy allows a request on port p from peer q when any row of q or of 0 allows it, among the rows
 * without `portRange` and those whose `portRange` holds p.
 */
export interface L7TableRow {
  readonly redirect: RedirectInfo;
  readonly peer: number;
  readonly policy: L7Policy;
  readonly portRange?: L7PortRange;
}

/**
 * One change to what an endpoint's L7 proxy is told: the row of (`redirect`, `peer`, `portRange`).
 * For a delete, `policy` is the row removed.
 */
export interface L7Delta extends L7TableRow {
  readonly endpoint: string;
  readonly op: 'upsert' | 'delete';
  readonly previous?: L7Policy;
}

/**
 * One change to the ipcache (IP prefix → identity of the peer behind it): pod IPs as host
 * prefixes, and the prefixes of CIDR identities. An address under no entry is world.
 */
export interface IpcacheDelta {
  readonly op: 'upsert' | 'delete';
  /** CIDR text, e.g. `10.0.0.5/32`. */
  readonly prefix: string;
  /** For a delete, the identity removed. */
  readonly identity: number;
  /** For an upsert that overwrites an entry: the identity it replaces. */
  readonly previous?: number;
}

/** The outcome of one transaction. */
export interface ChangeSet {
  /** Per endpoint, upserts then deletes; backends write them in the order `planWrites` gives (fail closed across endpoints). */
  readonly deltas: readonly MapDelta[];
  /** Changes to the endpoints' L7 tables (for their proxies), in endpoint order. */
  readonly l7Deltas: readonly L7Delta[];
  /** Changes to the ipcache, by prefix text. */
  readonly ipcache: readonly IpcacheDelta[];
  /** Endpoints whose map must be created (their entries are all in `deltas`). */
  readonly endpointsAdded: readonly string[];
  /** Endpoints whose map must be removed as a whole (no per-entry deletes are listed). */
  readonly endpointsRemoved: readonly string[];
  /** Work done by this transaction. */
  readonly work: EngineStats;
}

/** A rejected event: nothing in the transaction was applied. */
export class EngineError extends Error {
  override readonly name = 'EngineError';
  constructor(
    readonly eventIndex: number,
    readonly eventType: string,
    readonly detail: string,
  ) {
    super(`event #${eventIndex} (${eventType}): ${detail}`);
  }
}

/**
 * The engine met an internal error and could not rebuild its state from its committed model: it
 * refuses every further transaction (the kernel maps keep the last committed state). A bug.
 */
export class EngineFailedError extends Error {
  override readonly name = 'EngineFailedError';
  constructor(override readonly cause: Error) {
    super(`the engine stopped after an internal error it could not recover from (${cause.message}); restart it`);
  }
}

/** Rules and how many map entries each contributes to one endpoint's map. */
export interface EntryContribution {
  readonly rule: string;
  readonly entries: number;
}

/**
 * A transaction refused because an endpoint's policy map would exceed its capacity: nothing was
 * applied, to the engine or to any map.
 */
export class MapCapacityError extends Error {
  override readonly name = 'MapCapacityError';
  constructor(
    readonly endpoint: string,
    readonly needed: number,
    readonly capacity: number,
    readonly topContributors: readonly EntryContribution[],
  ) {
    super(
      `endpoint ${endpoint} would need ${needed} policy-map entries, over its capacity of ${capacity}; ` +
        `most entries come from: ${topContributors.map((c) => `${c.rule} (${c.entries})`).join('; ') || 'nothing identifiable'}. The transaction was not applied`,
    );
  }
}

/**
 * A transaction its caller refused after seeing the change set it would cause (`Engine.apply`'s `veto`): undone
 * like a capacity refusal, nothing applied (the agent's split after a refused identity event, finding 2370).
 */
export class TransactionVetoedError extends Error {
  override readonly name = 'TransactionVetoedError';
}

/** One endpoint's policy map, keyed by `policyKeyString`. */
export type MapSnapshot = ReadonlyMap<string, LookupResult>;
