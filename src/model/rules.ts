import type { Cidr } from './cidr.js';
import type { GroupMatchMode } from './cidr-group.js';
import type { FqdnSelector } from './fqdn.js';
import type { L4Match } from './ports.js';
import type { Selector } from './selector.js';
import type { TieredSpec, TierOrigin } from './tiers.js';
import { flat } from './intern.js';

/** Traffic direction from the endpoint's side: ingress (to it) or egress (from it). */
export type Direction = 'ingress' | 'egress';
export const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];
export type Verdict = 'allow' | 'deny';

/** The policy kinds distill reads. */
export type PolicyKind = 'NetworkPolicy' | 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy' | 'ClusterNetworkPolicy';
export const POLICY_KINDS: readonly PolicyKind[] = ['NetworkPolicy', 'CiliumNetworkPolicy', 'CiliumClusterwideNetworkPolicy', 'ClusterNetworkPolicy'];

/** Names a policy object: clusterwide policies have no namespace. */
export interface PolicyRef {
  readonly kind: PolicyKind;
  readonly namespace?: string;
  readonly name: string;
}

/** The ref's key, flat (a kept key needs no `flat` of its own; a parsed policy's is built once). */
export function policyRefKey(ref: PolicyRef): string {
  if (ref instanceof KeyedPolicyRef) return ref.key;
  return flat(ref.namespace === undefined ? `${ref.kind}/${ref.name}` : `${ref.kind}/${ref.namespace}/${ref.name}`);
}

/**
 * A parsed policy's ref, whose key is built once: validation, the stages and the model store all
 * look a policy up by it (six keys a policy otherwise, two of them kept). Fields as a plain ref's,
 * in the same order; the key is private (not in JSON, spreads or `Object.keys`).
 */
export class KeyedPolicyRef implements PolicyRef {
  declare readonly kind: PolicyKind;
  declare readonly namespace?: string;
  declare readonly name: string;
  #key: string | undefined = undefined;

  constructor(kind: PolicyKind, namespace: string | undefined, name: string) {
    this.kind = kind;
    if (namespace !== undefined) this.namespace = namespace;
    this.name = name;
  }

  get key(): string {
    this.#key ??= flat(this.namespace === undefined ? `${this.kind}/${this.name}` : `${this.kind}/${this.namespace}/${this.name}`);
    return this.#key;
  }
}

/** Where a rule came from: the policy and the field path of the rule inside it. */
export interface RuleOrigin {
  readonly policy: PolicyRef;
  readonly path: string;
  /** A ClusterNetworkPolicy rule: its tier, priority, name and action. */
  readonly tier?: TierOrigin;
}

/** Origins without repeats, in a stable order (policy, then field path). */
export function uniqueOrigins(origins: readonly RuleOrigin[]): RuleOrigin[] {
  const byKey = new Map<string, RuleOrigin>();
  for (const o of origins) byKey.set(`${policyRefKey(o.policy)} ${o.path}`, o);
  return [...byKey.keys()].sort().map((k) => byKey.get(k) as RuleOrigin);
}

/**
 * A peer of a rule. Label-selected peers (endpoints, entities, the wildcard) match identities by
 * labels; CIDR peers match addresses outside the cluster (Cilium: pod traffic carries the pod's
 * identity, never a CIDR identity).
 */
export type Peer =
  /**
   * `apiServerStandIn`: a peer a `kube-apiserver` deny adds while the API server's addresses are
   * unknown (fail closed); dropped once they are known (`withoutApiServerStandIns`).
   */
  | { readonly kind: 'selector'; readonly selector: Selector; readonly entity?: string; readonly apiServerStandIn?: true }
  | { readonly kind: 'cidr'; readonly cidr: Cidr; readonly except: readonly Cidr[] }
  /**
   * A `fromCIDRSet`/`toCIDRSet` item with `cidrGroupRef` or `cidrGroupSelector`: the addresses
   * outside the cluster whose CIDR group labels (./cidr-group.ts) `selector` matches (keys of source
   * `cidrgroup`), outside `except`. `mode`: how labels groups disagree on are read (`all` in allow
   * rules, `any` in deny rules).
   */
  | { readonly kind: 'cidrGroup'; readonly selector: Selector; readonly except: readonly Cidr[]; readonly mode: GroupMatchMode }
  /**
   * A CiliumNetworkPolicy `toNodes`/`fromNodes` selector: the remote nodes (never the agent's own
   * node) whose Node labels it matches (Cilium adds `reserved:remote-node` to it).
   */
  | { readonly kind: 'nodes'; readonly selector: Selector };

/** A `headerMatches` entry of an HTTP rule: the header must be present (with `value`, equal to it). */
export interface HttpHeaderMatch {
  readonly name: string;
  readonly value?: string;
  readonly mismatch?: 'LOG' | 'ADD' | 'DELETE' | 'REPLACE';
}

/** One HTTP rule of a port rule (`rules.http[]`): every field it sets must match. */
export interface HttpRule {
  readonly method?: string;
  readonly path?: string;
  readonly host?: string;
  readonly headers?: readonly string[];
  readonly headerMatches?: readonly HttpHeaderMatch[];
}

/** One Kafka rule of a port rule (`rules.kafka[]`). */
export interface KafkaRule {
  readonly role?: 'produce' | 'consume';
  readonly apiKey?: string;
  readonly apiVersion?: string;
  readonly clientID?: string;
  readonly topic?: string;
}

/** One DNS rule of a port rule (`rules.dns[]`): `matchName` or `matchPattern`. */
export interface DnsRule {
  readonly matchName?: string;
  readonly matchPattern?: string;
}

/** L7 rules of one port rule: at most one parser per port rule, as Cilium requires. */
export type L7Rules =
  | { readonly parser: 'http'; readonly http: readonly HttpRule[] }
  | { readonly parser: 'kafka'; readonly kafka: readonly KafkaRule[] }
  | { readonly parser: 'dns'; readonly dns: readonly DnsRule[] };

/** One port clause of a rule, with the L7 rules that apply to traffic it matches. */
export interface PortClause {
  readonly l4: L4Match;
  readonly l7?: L7Rules;
}

/**
 * A flattened rule: traffic in `direction` between an endpoint selected by `subject` and a peer
 * matched by any of `peers`, on any of `ports`, gets `verdict`.
 */
export interface PolicyRule {
  readonly origin: RuleOrigin;
  readonly subject: Selector;
  readonly direction: Direction;
  readonly verdict: Verdict;
  readonly peers: readonly Peer[];
  readonly ports: readonly PortClause[];
  /**
   * Egress allow rules only: `toFQDNs`. The rule's peers are then empty and it matches the IPs a
   * live DNS answer for a matching name holds (src/model/fqdn.ts). Only the oracle reads this; the
   * engine is never given such a rule (the manifest reader refuses it unless asked not to).
   */
  readonly toFQDNs?: readonly FqdnSelector[];
}

/** A subject whose `direction` becomes default-deny because of this policy. */
export interface Enforcement {
  readonly origin: RuleOrigin;
  readonly subject: Selector;
  readonly direction: Direction;
}

/**
 * Something accepted but probably not meant, e.g. a field Cilium silently rewrites. `source`
 * names the manifest (`file.yaml#2`), `path` the field.
 */
export interface PolicyWarning {
  readonly source: string;
  readonly path: string;
  readonly detail: string;
}

export function formatWarning(w: PolicyWarning): string {
  return `warning: ${w.source} ${w.path}: ${w.detail}`;
}

/** A validated manifest, flattened into rules. */
export interface Policy {
  readonly ref: PolicyRef;
  readonly rules: readonly PolicyRule[];
  readonly enforcements: readonly Enforcement[];
  /** Absent or empty: nothing to warn about. */
  readonly warnings?: readonly PolicyWarning[];
  /**
   * A ClusterNetworkPolicy (Admin or Baseline tier): its rules live here, not in `rules` and
   * `enforcements`, since tiered first-match semantics are not allow/deny unions.
   */
  readonly tiered?: TieredSpec;
  /** The manifest as given, for round-tripping and display. */
  readonly manifest: Readonly<Record<string, unknown>>;
}

/** Policies made by the manifest reader: the engine accepts no other (a hand-built one is unchecked). */
const PARSED_POLICIES = new WeakSet<Policy>();

export function markParsedPolicy(policy: Policy): Policy {
  const seen = new Set<object>();
  for (const [k, v] of Object.entries(policy)) if (k !== 'manifest') deepFreeze(v, seen); // the manifest is the caller's document
  PARSED_POLICIES.add(Object.freeze(policy));
  return policy;
}

/**
 * Finding 302: the engine trusts a parsed policy's shape (the reader's invariants) and keeps the
 * object, so a caller must not be able to change it after parsing (the type's `readonly` is not
 * checked at run time).
 */
function deepFreeze(v: unknown, seen: Set<object>): void {
  if (typeof v !== 'object' || v === null || seen.has(v)) return;
  seen.add(v);
  Object.freeze(v);
  for (const x of Object.values(v)) deepFreeze(x, seen);
}

/**
 * A base for policy classes built only from parsed policies (a trace's compact copies): their
 * instances count as parsed without a weak-set entry each (cilium-ci: 30,000 entries, 1 MB live
 * and as much again of garbage left as the set grows).
 */
export abstract class ParsedPolicyBase {
  #parsed = true;

  static holds(v: object): boolean {
    return #parsed in v;
  }
}

export function isParsedPolicy(v: unknown): v is Policy {
  return typeof v === 'object' && v !== null && (ParsedPolicyBase.holds(v) || PARSED_POLICIES.has(v as Policy));
}

/** `policy` without the peers standing in for unknown API server addresses (the same object if it has none). */
export function withoutApiServerStandIns(policy: Policy): Policy {
  if (!hasApiServerStandIns(policy)) return policy;
  const rules = policy.rules.map((r) => (r.peers.some(isStandIn) ? { ...r, peers: r.peers.filter((p) => !isStandIn(p)) } : r));
  return { ...policy, rules };
}

export function hasApiServerStandIns(policy: Policy): boolean {
  // Indexed, no callback: asked once per policy upsert (30,000 in a cilium-ci cold start).
  const rules = policy.rules;
  for (let i = 0; i < rules.length; i++) {
    const peers = (rules[i] as PolicyRule).peers;
    for (let j = 0; j < peers.length; j++) if (isStandIn(peers[j] as Peer)) return true;
  }
  return false;
}

function isStandIn(p: Peer): boolean {
  return p.kind === 'selector' && p.apiServerStandIn === true;
}
