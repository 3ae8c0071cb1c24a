import type { Cidr } from './cidr.js';
import type { FqdnSelector } from './fqdn.js';
import type { Direction } from './rules.js';
import type { Selector } from './selector.js';

/**
 * ClusterNetworkPolicy (kubernetes-sigs/network-policy-api, `policy.networking.k8s.io/v1beta1` and `v1alpha2`, alike here):
 * policies in ordered tiers around the NetworkPolicy tier. Evaluation order (the API's
 * `ClusterNetworkPolicySpec.Tier` doc): Admin → NetworkPolicy tier → Baseline → default allow.
 * Selectors here match identity labels, like NetworkPolicy's: pod keys as `k8s:` labels, namespace
 * keys as `io.cilium.k8s.namespace.labels.*`.
 */
export type Tier = 'Admin' | 'Baseline';
export const TIERS: readonly Tier[] = ['Admin', 'Baseline'];
export type TierAction = 'Accept' | 'Deny' | 'Pass';
export const TIER_ACTIONS: readonly TierAction[] = ['Accept', 'Deny', 'Pass'];
export const MIN_PRIORITY = 0;
export const MAX_PRIORITY = 1000;
/** The CRD's maximum number of rules per direction. */
export const RULES_PER_DIRECTION = 25;

/**
 * A peer. `namespaces` and `pods` select pods (never host-network ones); `networks` match any
 * address in the CIDRs, pod IPs included. `unknown` is a peer with no field distill understands
 * (a newer CRD): it fails closed, an Accept rule then matches nothing, a Deny or Pass rule
 * everything (the API's `ClusterNetworkPolicyEgressPeer` doc).
 */
export type TierPeer =
  | { readonly kind: 'pods'; readonly selector: Selector }
  | { readonly kind: 'networks'; readonly cidrs: readonly Cidr[] }
  /** Experimental `domainNames` (Accept only): addresses outside the cluster learnt from DNS answers, as `toFQDNs`. */
  | { readonly kind: 'domainNames'; readonly fqdns: readonly FqdnSelector[] }
  /**
   * Experimental `nodes` (egress): the addresses of the nodes whose labels the selector matches
   * (keys as `k8s:` labels of the node's own labels).
   */
  | { readonly kind: 'nodes'; readonly selector: Selector }
  | { readonly kind: 'unknown'; readonly fields: readonly string[] };

type TierPortProtocol = 'TCP' | 'UDP' | 'SCTP';

/** One `protocols` entry: a port (range) of one protocol, or a named port of the destination pod. */
export type TierPort =
  | { readonly kind: 'range'; readonly protocol: TierPortProtocol; readonly from: number; readonly to: number }
  | { readonly kind: 'named'; readonly name: string };

export interface TierRule {
  readonly direction: Direction;
  /** Position in its direction's list: the order rules are tried in. */
  readonly index: number;
  readonly name?: string;
  readonly action: TierAction;
  readonly peers: readonly TierPeer[];
  /** Empty: all traffic (every protocol, ICMP included). Entries are OR'ed. */
  readonly protocols: readonly TierPort[];
  /** Field path in the manifest, e.g. `spec.ingress[2]`. */
  readonly path: string;
}

/** The flattened spec of one ClusterNetworkPolicy. */
export interface TieredSpec {
  readonly tier: Tier;
  readonly priority: number;
  /** Pods the policy applies to (namespace and pod selector folded into one). */
  readonly subject: Selector;
  readonly rules: readonly TierRule[];
  /**
   * Only on a deny side held beside the version in force (`tieredDenySide`, finding 3300): the tier and priority of
   * the version it stands for, which the next form held beside it places by (not where this one sits).
   */
  readonly standsFor?: TierPlacement;
}

export interface TierPlacement {
  readonly tier: Tier;
  readonly priority: number;
}

/** Where a tier decision came from: what `reach --explain` prints. */
export interface TierOrigin {
  readonly tier: Tier;
  readonly policy: string;
  readonly priority: number;
  readonly rule: string;
  readonly path: string;
  readonly action: TierAction;
}

export function formatTierOrigin(o: TierOrigin): string {
  return `${o.tier} tier: ClusterNetworkPolicy/${o.policy} priority ${o.priority} rule "${o.rule}" (${o.path}): ${o.action}`;
}

/** A rule's display name: its `name`, or its field path when it has none. */
export function tierRuleName(rule: TierRule): string {
  return rule.name ?? rule.path;
}

/**
 * Do a rule's networks peers hold both /0s, i.e. every address (pods, externals, nodes alike)? Such a rule is one
 * identity-0 key and splits no pod identity (src/engine/network-splits.ts), so identities from outside encode it too.
 */
export function networksCoverEverything(peers: readonly TierPeer[]): boolean {
  const zeros = new Set(peers.flatMap((p) => (p.kind === 'networks' ? p.cidrs.filter((c) => c.prefixLength === 0).map((c) => c.family) : [])));
  return zeros.size === 2;
}
