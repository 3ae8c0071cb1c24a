import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { backendEngine } from '../../src/datapath/backend-engine.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario, scenarioEngineOptions, scenarioState } from '../../src/scenario/run.js';

/**
 * Review 24b of finding 1875's fix (the runner's trail of states). The conformance file of 1875:
 * step 1 answers b.example.com, then deletes the DNS policy; the answer stays learnt (x/a -> eb:443
 * allowed), which `reach` (runScenario) now says.
 */
const FILE = join(import.meta.dirname, '../../fixtures/conformance/cilium-dns14/query-judged-by-rules-in-force-at-its-time.yaml');

describe('review24b: the trail of states (finding 1875 fix)', () => {
  it('maps dump builds a step\'s state as reach decides it (its onStep keeps the trail)', () => {
    const scenario = parseScenario(readFileSync(FILE, 'utf8'), FILE);
    const reach = runScenario(scenario, backendEngine(new MemoryBackend(), scenarioEngineOptions(scenario)).decide);
    const results = reach.steps[1]?.results ?? [];
    expect(results.length).toBeGreaterThan(0);
    // src/cli/maps-dump.ts mapsDump, --step 1: its onStep took only the state (`run.sync`), dropping the
    // trail (review 1894); it now brings the engine through it, as this does.
    const run = backendEngine(new MemoryBackend(), scenarioEngineOptions(scenario));
    const state = scenarioState(scenario, 1, (_s, trail) => run.decide.syncThrough(trail));
    run.sync(state);
    const dumped = results.map((r) => run.decide(state, { from: r.from, to: r.to, port: r.port, protocol: r.protocol as 'TCP' | 'UDP' }).allowed);
    expect(dumped, "maps dump --step 1's maps decide as reach's step 1").toEqual(results.map((r) => r.allowed));
  });

  /**
   * A step with neither DNS answers nor probes: before the trail it was merged into the next probed
   * step's transaction (the decider synced only to decide a flow); now every step is a transaction
   * of its own. A state the engine refuses (ClusterNetworkPolicy networks holding one address of a
   * dual-stack pod: docs/semantics.md "Tiers", finding 1180) in an unprobed step that the next step
   * undoes was never written before; now the run fails.
   */
  it('a step without DNS answers or probes gives the old transaction (merged into the next probed step)', () => {
    const text = `
namespaces: [{name: g, labels: {house: g}}, {name: r, labels: {house: r}}]
pods:
  - {name: g/harry, labels: {house: g}, ips: [10.244.51.11, "fd00:10:244:51::11"]}
  - {name: r/luna, labels: {house: r}, ips: [10.244.52.10, "fd00:10:244:52::10"]}
steps:
  - changes:
      - apply:
          apiVersion: policy.networking.k8s.io/v1alpha2
          kind: ClusterNetworkPolicy
          metadata: {name: one-family}
          spec:
            tier: Admin
            priority: 85
            subject: {pods: {namespaceSelector: {matchLabels: {house: g}}, podSelector: {}}}
            egress:
              - {name: deny-v6-of-luna, action: Deny, to: [{networks: ["fd00:10:244:52::10/128"]}]}
  - changes:
      - delete: {kind: ClusterNetworkPolicy, name: one-family}
    probes:
      - {from: g/harry, to: r/luna, port: 80}
`;
    const scenario = parseScenario(text, 'unprobed-step.yaml');
    const engine = new Engine(scenarioEngineOptions(scenario));
    const run = runScenario(scenario, new EngineDecider(engine).decide);
    // Fixed (review 1895): the decider syncs right before its first flow, so an unprobed step joins the next one.
    expect(run.steps[1]?.results.map((r) => r.allowed)).toEqual([true]);
  });
});
