import { EngineError, type EngineEvent } from '../engine/events.js';

/**
 * The engine does not encode ClusterNetworkPolicy tiers yet (issue 15, phase 2; design in
 * docs/tiers-encoding.md). It would see such a policy as one with no rules and enforce nothing,
 * which is silently wrong, so every path that feeds the engine from a cluster state refuses it.
 * Remove this gate when Engine.apply accepts tiered policies.
 */
export function refuseTieredPolicies(events: readonly EngineEvent[]): void {
  events.forEach((e, i) => {
    if (e.type === 'upsertPolicy' && e.policy.tiered !== undefined) {
      throw new EngineError(i, e.type, `ClusterNetworkPolicy/${e.policy.ref.name} (${e.policy.tiered.tier} tier): ClusterNetworkPolicy is not supported by the engine yet; only the reference evaluator (--naive) decides it`);
    }
  });
}
