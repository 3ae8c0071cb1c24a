import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { scenarioEngine } from '../src/scenario/engine.js';
import { traceFlow } from '../src/explain/trace.js';
import { deletePolicy } from '../src/model/cluster.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseScenario } from '../src/scenario/format.js';

/**
 * Finding 182: the map state keeps no entry for an L3L4 allow an L4 allow of the same verdict
 * covers (Cilium's coverage), so no map entry carries it; trace must still name it, as deleting the
 * rules it names would otherwise leave the flow allowed.
 */
const FILE = 'fixtures/conformance/cilium-tests/merge-rules-000-031.yaml';

describe('trace names an allow the map state drops as covered (182)', () => {
  const scenario = parseScenario(readFileSync(FILE, 'utf8'), FILE);
  const built = scenarioEngine(scenario, 6);
  const t = traceFlow(built, 'x/foo-peer', 'x/foo', 80, 'TCP');
  const ingress = t.sides.find((s) => s.direction === 'ingress');

  it('the matched entry is the L4 allow; the covered L3L4 allow is listed as also allowing', () => {
    expect(ingress?.allowedBy).toEqual(['CiliumNetworkPolicy/x/r1-l4-allow spec.ingress[0]']);
    expect(ingress?.alsoAllowedBy).toEqual(['CiliumNetworkPolicy/x/r2-l3l4-allow spec.ingress[0]']);
  });

  it('without r1 the flow is still allowed, by r2; without both it is dropped', () => {
    const ref = (name: string) => ({ kind: 'CiliumNetworkPolicy' as const, namespace: 'x', name });
    const flow = { from: 'x/foo-peer', to: 'x/foo', port: 80, protocol: 'TCP' as const };
    const noR1 = deletePolicy(built.state, ref('r1-l4-allow'));
    expect(decideFlow(noR1, flow).ingress?.allowedBy.map((o) => o.policy.name)).toEqual(['r2-l3l4-allow']);
    expect(decideFlow(deletePolicy(noR1, ref('r2-l3l4-allow')), flow).ingress?.allowed).toBe(false);
  });
});
