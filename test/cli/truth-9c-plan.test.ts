import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { scenarioEngine } from '../../src/scenario/engine.js';
import { scenarioState } from '../../src/scenario/run.js';
import { planChange } from '../../src/explain/plan.js';
import type { ChangeSet } from '../../src/engine/events.js';
import { clusterEvents } from '../../src/harness/cluster-sync.js';
import { ClusterState, deletePolicy, upsertPolicy } from '../../src/model/cluster.js';
import type { Policy } from '../../src/model/rules.js';
import { corpus, LONG } from './truth-9-corpus.js';

const SEED = process.env.DISTILL_SEED === undefined ? undefined : Number(process.env.DISTILL_SEED);

/** Per endpoint: upserts/deletes/l7 counts, as plan prints them. */
function counts(cs: ChangeSet): Record<string, string> {
  const out = new Map<string, [number, number, number]>();
  const of = (ep: string): [number, number, number] => out.get(ep) ?? (out.set(ep, [0, 0, 0]).get(ep) as [number, number, number]);
  for (const d of cs.deltas) of(d.endpoint)[d.op === 'upsert' ? 0 : 1]++;
  for (const d of cs.l7Deltas) of(d.endpoint)[2]++;
  for (const ep of [...cs.endpointsAdded, ...cs.endpointsRemoved]) of(ep);
  return Object.fromEntries([...out].sort(([a], [b]) => (a < b ? -1 : 1)).map(([ep, c]) => [ep, c.join('/')]));
}

const REFUSALS = /MapCapacityError|L7ParserConflictError|ProxyPortsExhaustedError|EngineError/;

describe('plan predicts what applying the change does (corpus scenarios, corpus policies)', () => {
  const scenarios = corpus().filter((c) => c.scenario.steps.length > 0);
  const policies: Policy[] = [];
  const seen = new Set<string>();
  for (const c of scenarios) {
    for (const p of scenarioState(c.scenario, undefined).policies.values()) {
      const k = JSON.stringify(p.manifest);
      if (!seen.has(k)) (seen.add(k), policies.push(p));
    }
  }
  it('per-endpoint upserts, deletes, L7 deltas and refusals equal the engine that went through the scenario', () => {
    const change = fc.record({
      scenario: fc.nat(scenarios.length - 1),
      step: fc.nat(),
      kind: fc.constantFrom('add', 'replace', 'delete'),
      policy: fc.nat(policies.length - 1),
      victim: fc.nat(),
    });
    let changed = 0;
    let refused = 0;
    fc.assert(
      fc.property(change, ({ scenario, step: stepSeed, kind, policy, victim }) => {
        const c = scenarios[scenario] as (typeof scenarios)[number];
        const step = stepSeed % c.scenario.steps.length;
        const built = scenarioEngine(c.scenario, step);
        const before: ClusterState = built.state;
        const existing = [...before.policies.values()];
        let after = before;
        if (kind !== 'add' && existing.length > 0) after = deletePolicy(after, (existing[victim % existing.length] as Policy).ref);
        if (kind !== 'delete') after = upsertPolicy(after, policies[policy] as Policy);
        const planned = planChange(before, after, []);
        let real: ChangeSet | undefined;
        let refusal: string | undefined;
        try {
          real = built.decider.engine.apply(clusterEvents(before, after));
        } catch (e) {
          if (!(e instanceof Error) || !REFUSALS.test(e.constructor.name)) throw e;
          refusal = e.message;
        }
        const where = `${c.file} step ${step} ${kind} ${kind !== 'delete' ? (policies[policy] as Policy).ref.name : ''}`;
        expect(planned.refused?.reason, where).toEqual(refusal);
        if (refusal !== undefined) refused++;
        if (real) {
          const predicted = Object.fromEntries([...planned.endpoints].sort(([a], [b]) => (a < b ? -1 : 1)).map(([ep, d]) => [ep, `${d.upserts.length}/${d.deletes.length}/${d.l7.length}`]));
          expect(predicted, where).toEqual(counts(real));
          if (real.deltas.length > 0) changed++;
        }
      }),
      { numRuns: LONG ? 3000 : 150, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
    // The changes mostly move map entries: the property is not vacuous.
    expect(changed).toBeGreaterThan(LONG ? 1000 : 50);
    console.log(`plan: ${changed} changes with map deltas, ${refused} refusals`);
  });
});
