import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { planChange, PlanPort } from '../src/explain/plan.js';
import { Engine } from '../src/engine/engine.js';
import { EngineDecider } from '../src/harness/engine-decider.js';
import { INITIAL_CLUSTER, op, Op, PROBE_PORTS, toEvent, applyToModel } from './engine/gen.js';
import type { ClusterState } from '../src/model/cluster.js';

/** Applies generated ops to a cluster, skipping those the model refuses (as a watch would never send). */
function build(state: ClusterState, ops: readonly Op[]): ClusterState {
  let s = state;
  for (const o of ops) {
    try {
      s = applyToModel(s, toEvent(o));
    } catch {
      /* an op on something absent */
    }
  }
  return s;
}

const PORTS: PlanPort[] = PROBE_PORTS.slice(0, 3).map((p) => ({ port: p.port, protocol: p.protocol }));

/** Map keys → entry text per endpoint, after applying `plan`'s deltas to the maps before the change. */
function applyPlan(before: Record<string, string[]>, r: ReturnType<typeof planChange>): Record<string, string[]> {
  const out = new Map(Object.entries(before).map(([ep, rows]) => [ep, new Map(rows.map((row) => [row.split(' => ')[0] as string, row]))]));
  for (const ep of r.endpointsRemoved) out.delete(ep);
  for (const [ep, d] of r.endpoints) {
    if (r.endpointsRemoved.includes(ep)) continue;
    const m = out.get(ep) ?? new Map<string, string>();
    out.set(ep, m);
    for (const x of d.deletes) m.delete(keyText(x.key));
    for (const x of d.upserts) m.set(keyText(x.key), `${keyText(x.key)} => ${JSON.stringify(x.entry)}`);
  }
  return Object.fromEntries([...out].map(([ep, m]) => [ep, [...m.values()].sort()]));
}

/** Keys name identities by labels: a fresh engine numbers identities in its own order. */
let labelsOf: (id: number) => string = String;
const keyText = (k: { identity: number; direction: string; protocol: number; port: number; portPrefixLen: number }): string => JSON.stringify([labelsOf(k.identity), k.direction, k.protocol, k.port, k.portPrefixLen]);
const namer = (...engines: Engine[]) => (id: number): string => (id === 0 ? 'ANY' : JSON.stringify(engines.map((e) => e.identityLabels(id)).find((l) => l !== undefined) ?? id));

function mapsOf(engine: Engine): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const ep of engine.endpoints()) out[ep] = [...engine.mapState(ep).values()].map((r) => `${keyText(r.key)} => ${JSON.stringify(r.entry)}`).sort();
  return out;
}

describe('plan against reality', () => {
  it('deltas equal what applying the change emits (from-scratch maps after), verdict changes equal the engine before/after', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 3, maxLength: 25 }), fc.array(op, { minLength: 1, maxLength: 4 }), (setup, change) => {
        const before = build(INITIAL_CLUSTER, setup);
        const after = build(before, change);
        // Scenario states (what plan reads) never hold a pod outside an existing namespace: adding
        // a pod creates its namespace, deleting a namespace deletes its pods. The engine generators do.
        fc.pre([before, after].every((st) => [...st.pods.values()].every((p) => st.namespaces.has(p.namespace))));
        const r = planChange(before, after, PORTS);
        if (r.refused) return; // refusals are covered by the CLI tests
        const engineBefore = new Engine();
        const decideBefore = new EngineDecider(engineBefore);
        decideBefore.sync(before);
        const engineAfter = new Engine();
        const decideAfter = new EngineDecider(engineAfter);
        decideAfter.sync(after);
        // Proxy ports depend on allocation history: compare without them.
        const strip = (m: Record<string, string[]>): Record<string, string[]> => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, v.map((row) => row.replace(/"proxyPort":\d+/, '"proxyPort":P'))]));
        labelsOf = namer(r.engine, engineBefore);
        const planned = applyPlan(mapsOf(engineBefore), r);
        labelsOf = namer(engineAfter);
        expect(strip(planned)).toEqual(strip(mapsOf(engineAfter)));
        // Verdict changes by the engine, pair by pair: the same set plan reports from the oracle.
        const expected: string[] = [];
        const pods = [...before.pods.keys()].filter((p) => after.pods.has(p)).sort();
        for (const p of PORTS) {
          for (const from of pods) {
            for (const to of pods) {
              if (from === to) continue;
              const flow = { from, to, port: p.port, protocol: p.protocol };
              const b = decideBefore.decide(before, flow);
              const a = decideAfter.decide(after, flow);
              if (b.allowed !== a.allowed || b.proxied !== a.proxied) expected.push(`${from}->${to} ${p.port}/${p.protocol}`);
            }
          }
        }
        expect(r.verdictChanges.map((c) => `${c.from}->${c.to} ${c.port}/${c.protocol}`).sort()).toEqual(expected.sort());
      }),
      { numRuns: 150 },
    );
  });
});
