import type { ClusterState } from '../model/cluster.js';
import { DirectionDecision, droppedAtProxy, Flow, resolveEndpoint } from '../model/flow.js';
import { isAllowLocalhostOrigin } from '../model/localhost.js';
import { Direction, policyRefKey, RuleOrigin } from '../model/rules.js';
import { decideDirection } from './evaluator.js';

/**
 * Why a flow passes one side, as far down the tiers as it goes (finding 2550): the rules of the
 * decision, then those of the decision the flow would meet were their policies deleted, and so on
 * until it would drop or no policy would decide it any more. In tier order (Admin by priority, the
 * NetworkPolicy tier, Baseline by priority), the deciding rules first. An Admin Accept shadows a
 * NetworkPolicy allow completely (the map holds no entry of the latter): the tiers' reading says the
 * NetworkPolicy tier would decide without it (network-policy-api clusternetworkpolicy_types.go,
 * `Tier`: Admin, then NetworkPolicy, then Baseline), so the allow is a reason too.
 */
export function allowChain(state: ClusterState, flow: Flow, direction: Direction): RuleOrigin[] {
  const [src, dst] = [resolveEndpoint(state, flow.from), resolveEndpoint(state, flow.to)];
  const [subject, peer] = direction === 'egress' ? [src, dst] : [dst, src];
  if (subject.kind !== 'pod') return [];
  const out: RuleOrigin[] = [];
  const seen = new Set<string>();
  let st = state;
  for (;;) {
    const d = decideDirection(st, subject, direction, peer, flow.protocol, flow.port, flow.request);
    if (!passes(d)) return out;
    const fresh = allowersOf(d).filter((o) => !seen.has(reasonKey(o)));
    if (fresh.length === 0) return out;
    for (const o of fresh) seen.add(reasonKey(o));
    out.push(...fresh);
    st = without(st, fresh);
  }
}

/** Passes the L4 lookup: allowed, or handed to a proxy (whatever the proxy then says). */
function passes(d: DirectionDecision): boolean {
  return d.allowed || d.l7 !== undefined || droppedAtProxy(d);
}

/** A tier rule's decision (its one origin) carries its tier, priority and action on the origin, as the engine's do. */
function allowersOf(d: DirectionDecision): RuleOrigin[] {
  const tier = d.tier;
  if (tier) return d.allowedBy.map((o) => ({ ...o, tier }));
  return [...d.allowedBy, ...(d.l7?.allowedBy ?? [])];
}

function reasonKey(o: RuleOrigin): string {
  return `${policyRefKey(o.policy)} ${o.path}`;
}

/** The cluster without the origins' policies; allow-localhost, an agent option, is turned to `policy`. */
function without(state: ClusterState, origins: readonly RuleOrigin[]): ClusterState {
  const gone = new Set(origins.filter((o) => !isAllowLocalhostOrigin(o)).map((o) => policyRefKey(o.policy)));
  const policies = new Map([...state.policies].filter(([k]) => !gone.has(k)));
  return { ...state, policies, ...(origins.some(isAllowLocalhostOrigin) ? { allowLocalhost: 'policy' as const } : {}) };
}
