import { describe, expect, it } from 'vitest';
import { liveHeapReader } from '../live-heap.js';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { generateTrace } from '../../src/churn/profiles.js';
import { parseTrace } from '../../src/churn/trace.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

// A policy is compiled and attached only once one of its subjects selects a local identity
// (policy-resolver.ts SubjectGroup): until then it costs a record and a group entry. Whatever
// order the pods and policies come in, the endpoints end with the same rules, in the same order.

describe('lazy policies', () => {
  it('a policy no local identity needs keeps little heap (cilium-ci shape, 3,000 policies)', () => {
    const heap = liveHeapReader();
    const t = parseTrace(generateTrace({ profile: 'cilium-ci', seed: 7, scale: 0.1, churnEvents: 0 }), 'ci.jsonl', { manifests: false });
    const events = t.items.flatMap((i) => (i.kind === 'event' ? [i.event] : []));
    const policies = events.filter((e) => e.type === 'upsertPolicy');
    const e = new Engine();
    e.apply(events.filter((x) => x.type !== 'upsertPolicy'));
    const h1 = heap();
    e.apply(policies);
    const h2 = heap();
    expect(policies.length).toBe(3_000);
    // Measured here: 863 B a policy when every rule and enforcement was compiled and attached at
    // upsert (cd44777), 624 B lazily (the model store's copy included).
    expect((h2 - h1) / policies.length).toBeLessThan(740);
  });

  let ip = 2;
  const pod = (name: string, labels: Record<string, string>, local: boolean): EngineEvent => {
    ip++;
    const p: Pod = { namespace: 'prod', name, labels, ip: parseIp(`10.244.0.${ip}`), serviceAccount: 'default', ports: [] };
    return { type: 'upsertPod', pod: p, local };
  };
  const policy = (name: string, rules: string, egress = ''): EngineEvent => ({
    type: 'upsertPolicy',
    policy: parseManifestFile(
      `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
${rules}${egress}
`,
      'test.yaml',
    )[0]!,
  });
  const rule = (role: string, port: number): string => `  - fromEndpoints: [{matchLabels: {role: ${role}}}]\n    toPorts: [{ports: [{port: "${port}", protocol: TCP}]}]\n`;
  const EGRESS = `  egress:\n  - toEndpoints: [{matchLabels: {role: db}}]\n`;
  const history: EngineEvent[] = [
    policy('a', rule('client', 80)),
    policy('b', rule('client', 80) + rule('admin', 22)),
    // Updated while no local identity needs it: one rule kept, one new, an enforcement added.
    policy('a', rule('client', 80) + rule('admin', 443), EGRESS),
    policy('c', rule('client', 80)),
    { type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'prod', name: 'c' } },
  ];
  const view = (e: Engine) => ({ policy: e.policyOf('prod/web'), ingress: e.enforcedBy('prod/web', 'ingress'), egress: e.enforcedBy('prod/web', 'egress'), selectors: e.selectors(), maps: e.mapState('prod/web') });

  it('policies applied before their local pod resolve as if the pod had come first', () => {
    const base: EngineEvent[] = [{ type: 'upsertNamespace', name: 'prod', labels: {} }, pod('client', { role: 'client' }, false), pod('admin', { role: 'admin' }, false), pod('db', { role: 'db' }, false)];
    const web = pod('web', { app: 'web' }, true);
    const podFirst = new Engine();
    podFirst.apply([...base, web]);
    for (const ev of history) podFirst.apply([ev]);
    const policiesFirst = new Engine();
    policiesFirst.apply(base);
    for (const ev of history) policiesFirst.apply([ev]);
    policiesFirst.apply([web]);
    expect(view(policiesFirst)).toEqual(view(podFirst));
    expect(view(podFirst).policy.map((r) => r.origin.path)).toEqual(['spec.ingress[0]', 'spec.ingress[0]', 'spec.ingress[1]', 'spec.ingress[1]', 'spec.egress[0]']);
  });
});
