import type { ClusterState } from '../model/cluster.js';
import { Engine } from '../engine/engine.js';
import { EngineDecider } from '../harness/engine-decider.js';
import type { Scenario } from './format.js';
import { scenarioEngineOptions, scenarioState } from './run.js';

/**
 * The scenario's cluster after `step` (default: the last) and an engine that went through every
 * step before it, as `reach` does: the engine's state depends on its history (a DNS answer is
 * judged by the policy in force when it arrives, and a learned IP stays while the answer lives),
 * so an engine built from the final state alone can decide a flow differently from `reach`.
 */
export function scenarioEngine(scenario: Scenario, step: number | undefined): { state: ClusterState; decider: EngineDecider } {
  const decider = new EngineDecider(new Engine(scenarioEngineOptions(scenario)));
  const state = scenarioState(scenario, step, (_s, trail) => decider.syncThrough(trail));
  decider.sync(state);
  return { state, decider };
}
