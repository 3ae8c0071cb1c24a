import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { applyEventToCluster } from '../../src/harness/cluster-sync.js';
import { parseIp } from '../../src/model/cidr.js';
import { type ClusterState, EMPTY_CLUSTER } from '../../src/model/cluster.js';
import { resolveEndpoint } from '../../src/model/flow.js';
import { PROTOCOL_NUMBER } from '../../src/model/ports.js';
import type { Policy } from '../../src/model/rules.js';
import { decideDirection } from '../../src/naive/evaluator.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { denyAllSideOf, denySideOf } from '../../src/policy/stand-in.js';

/*
 * Finding 3300 (31r's property, seed 1254941977): the deny side held beside a held deny side. v0 Admin priority 2, v1
 * and v2 Baseline denying ingress from nb; another policy Passes ingress from tier=f pods at Admin priority 1. The form
 * for v2 beside the form for v1 (itself at v0's Admin priority 2) sat at Admin priority 2, where the Pass skipped it:
 * na/p1 allowed ingress from nb/p4, which v1 and v2 (Baseline, after the Pass) both deny.
 */
type Json = Record<string, unknown>;
const cnp = (name: string, tier: string, priority: number, subject: Json, ingress: Json[]): Policy =>
  parseManifest({ apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: { name }, spec: { tier, priority, subject, ingress } }, `${name}.yaml`);
const teamIn = (v: string) => ({ matchExpressions: [{ key: 'team', operator: 'In', values: [v] }] });

const v0 = cnp('p', 'Admin', 2, { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'a' }, matchExpressions: [{ key: 'app', operator: 'In', values: ['b'] }] } } }, [
  { action: 'Accept', from: [{ pods: { namespaceSelector: teamIn('y'), podSelector: {} } }] },
]);
const v1 = cnp('p', 'Baseline', 1, { pods: { namespaceSelector: { matchLabels: { team: 'x' } }, podSelector: { matchLabels: { app: 'a' } } } }, [
  { action: 'Deny', from: [{ pods: { namespaceSelector: teamIn('y'), podSelector: {} } }] },
  { action: 'Accept', from: [{ namespaces: { matchLabels: { team: 'x' } } }] },
]);
const v2 = cnp('p', 'Baseline', 1, { pods: { namespaceSelector: teamIn('x'), podSelector: {} } }, [
  { action: 'Deny', from: [{ namespaces: {} }] },
  { action: 'Accept', from: [{ namespaces: {} }] },
]);
const pass = cnp('o0', 'Admin', 1, { namespaces: {} }, [{ action: 'Pass', from: [{ pods: { namespaceSelector: {}, podSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['f'] }] } } }] }]);

const setup: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'na', labels: { team: 'x' } },
  { type: 'upsertNamespace', name: 'nb', labels: { team: 'y' } },
  { type: 'upsertPod', local: true, pod: { namespace: 'na', name: 'p1', labels: { app: 'a' }, ip: parseIp('10.244.0.11'), serviceAccount: 'default', ports: [] } },
  { type: 'upsertPod', local: true, pod: { namespace: 'nb', name: 'p4', labels: { app: 'c', tier: 'f' }, ip: parseIp('10.244.0.14'), serviceAccount: 'default', ports: [] } },
  { type: 'upsertPolicy', policy: pass },
];
const events = (p: Policy): EngineEvent[] => [...setup, { type: 'upsertPolicy', policy: p }];
const state = (p: Policy): ClusterState => events(p).reduce(applyEventToCluster, EMPTY_CLUSTER);

/** Does na/p1 admit nb/p4 on 80/TCP, by the oracle and by the engine's maps (which must agree)? */
function admits(p: Policy): boolean {
  const s = state(p);
  const [subject, peer] = [resolveEndpoint(s, 'na/p1'), resolveEndpoint(s, 'nb/p4')];
  if (subject.kind !== 'pod') throw new Error('na/p1 is not a pod');
  const oracle = decideDirection(s, subject, 'ingress', peer, 'TCP', 80).allowed;
  const e = new Engine();
  e.apply(events(p));
  const hit = e.lookup('na/p1', e.identityOfPod('nb/p4') as number, 'ingress', PROTOCOL_NUMBER.TCP, 80);
  expect(hit !== undefined && !hit.entry.deny, 'engine against the oracle').toBe(oracle);
  return oracle;
}

describe('3300: the tiered deny side held beside a held deny side', () => {
  it('v1 and v2 deny na/p1 ingress from nb/p4 after the Pass; v0 allows it', () => {
    expect([admits(v0), admits(v1), admits(v2)]).toEqual([true, false, false]);
  });
  it('the form for v2 beside the form for v1 denies it too, and so does its deny-all side', () => {
    const f1 = denySideOf(v1, v0);
    // v0 in Admin, v1 in Baseline: the form sits at Admin priority 0 (32r, finding 3540), which the Pass does not skip.
    expect([f1.tiered?.tier, f1.tiered?.priority, admits(f1)]).toEqual(['Admin', 0, false]);
    expect(admits(denySideOf(v2, f1))).toBe(false);
    expect(admits(denyAllSideOf(v2, f1))).toBe(false);
  });
  it('the deny side beside a deny-all form denies it too', () => {
    expect(admits(denySideOf(v2, denyAllSideOf(v1, v0)))).toBe(false);
  });
  it('the form sits at the higher placement of the version in force and the new one, not at an older one', () => {
    const f2 = denySideOf(v2, denySideOf(v1, v0));
    expect([f2.tiered?.tier, f2.tiered?.priority]).toEqual(['Baseline', 1]);
    // Back to Admin beside a Baseline version: Admin priority 0 (3540), not v0's 2, which a Pass above could skip.
    const f3 = denySideOf(v0, f2);
    expect([f3.tiered?.tier, f3.tiered?.priority, f3.tiered?.standsFor]).toEqual(['Admin', 0, { tier: 'Admin', priority: 2 }]);
  });
});
