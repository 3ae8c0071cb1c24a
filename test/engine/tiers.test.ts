import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineError, EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { NP_TIER_LEVEL, PRECEDENCE_ALLOW, PRECEDENCE_DEFAULT_ALLOW, PRECEDENCE_DENY, precedenceLevel, tierPrecedence } from '../../src/model/policy-map.js';
import { parseManifest } from '../../src/policy/manifest.js';

const cnp = (name: string, priority: number, rules: string, tier = 'Admin'): EngineEvent => ({
  type: 'upsertPolicy',
  policy: parseManifest({ apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name }, spec: { tier, priority, subject: { namespaces: {} }, ingress: JSON.parse(rules) } }, 't.yaml'),
});
const RULE = '[{"name":"r","action":"Deny","from":[{"namespaces":{}}]}]';

describe('tier precedence (docs/tiers-encoding.md byte layout)', () => {
  it('orders Admin rules by priority then rule index, all above the NetworkPolicy tier, as unsigned 32-bit values', () => {
    const ps = [tierPrecedence('Admin', 0, 0, false), tierPrecedence('Admin', 0, 1, true), tierPrecedence('Admin', 0, 24, false), tierPrecedence('Admin', 1, 0, true), tierPrecedence('Admin', 1000, 24, true)];
    for (let i = 1; i < ps.length; i++) expect(ps[i - 1]).toBeGreaterThan(ps[i] as number);
    for (const p of ps) expect(p).toBeGreaterThan(PRECEDENCE_DENY);
    expect(ps[0]).toBe(0xffffff01);
    expect(precedenceLevel(ps[4] as number)).toBe(0xffff - 25024);
    expect(tierPrecedence('Admin', 3, 0, true) & 0xff).toBe(255);
    expect(() => tierPrecedence('Admin', 3, 25, true)).toThrow(RangeError);
  });
  it('puts every Baseline rule between the NetworkPolicy tier and the default allow, in priority then rule order', () => {
    const ps = [PRECEDENCE_ALLOW, tierPrecedence('Baseline', 0, 0, true), tierPrecedence('Baseline', 0, 1, false), tierPrecedence('Baseline', 1000, 24, true), PRECEDENCE_DEFAULT_ALLOW];
    for (let i = 1; i < ps.length; i++) expect(ps[i - 1]).toBeGreaterThan(ps[i] as number);
    expect(precedenceLevel(PRECEDENCE_DENY)).toBe(NP_TIER_LEVEL);
    expect(precedenceLevel(ps[1] as number)).toBe(NP_TIER_LEVEL - 1);
    expect(precedenceLevel(ps[3] as number)).toBe(NP_TIER_LEVEL - 1 - 25024);
  });
});

describe('the engine refuses what it cannot encode exactly, and nothing else', () => {
  const base: EngineEvent[] = [
    { type: 'upsertNamespace', name: 'a', labels: {} },
    { type: 'upsertPod', pod: { namespace: 'a', name: 'p', labels: {}, ip: parseIp('10.0.0.1'), serviceAccount: 'default', ports: [] }, local: true },
  ];
  it('two Admin policies with one priority: refused, in one batch or across batches; a changed priority frees the slot', () => {
    const e = new Engine();
    e.apply(base);
    expect(() => e.apply([cnp('x', 5, RULE), cnp('y', 5, RULE)])).toThrow(/ClusterNetworkPolicy\/x has the same priority 5 in the Admin tier/);
    e.apply([cnp('x', 5, RULE)]);
    expect(() => e.apply([cnp('y', 5, RULE)])).toThrow(EngineError);
    e.apply([cnp('x', 6, RULE), cnp('y', 5, RULE)]);
    e.apply([{ type: 'deletePolicy', ref: { kind: 'ClusterNetworkPolicy', name: 'x' } }, cnp('z', 6, RULE)]);
    expect(() => e.apply([cnp('w', 6, RULE)])).toThrow(/ClusterNetworkPolicy\/z has the same priority 6/);
  });
  it('Pass: refused with policy, rule and reason, in both tiers', () => {
    const e = new Engine();
    e.apply(base);
    const pass = '[{"name":"skip","action":"Pass","from":[{"namespaces":{}}]}]';
    expect(() => e.apply([cnp('p', 1, pass)])).toThrow(/spec\.ingress\[0\] \(skip\): action Pass is not encoded/);
    expect(() => e.apply([cnp('p', 1, pass, 'Baseline')])).toThrow(/spec\.ingress\[0\] \(skip\): action Pass is not encoded/);
  });
  it('a Baseline Deny decides only while no NetworkPolicy isolates the pod in that direction', () => {
    const e = new Engine();
    e.apply(base);
    e.apply([cnp('b', 1, RULE, 'Baseline')]);
    const id = e.identityOfPod('a/p') as number;
    expect(e.lookup('a/p', id, 'ingress', 6, 80)?.entry).toEqual({ deny: true, proxyPort: 0, precedence: tierPrecedence('Baseline', 1, 0, true) });
    expect(e.lookup('a/p', id, 'egress', 6, 80)?.entry.deny).toBe(false);
    const np = parseManifest({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'np', namespace: 'a' }, spec: { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] } }, 'np.yaml');
    e.apply([{ type: 'upsertPolicy', policy: np }]);
    expect(e.lookup('a/p', id, 'ingress', 6, 80)?.entry).toEqual({ deny: false, proxyPort: 0, precedence: PRECEDENCE_ALLOW });
    e.apply([{ type: 'deletePolicy', ref: { kind: 'NetworkPolicy', namespace: 'a', name: 'np' } }]);
    expect(e.lookup('a/p', id, 'ingress', 6, 80)?.entry.deny).toBe(true);
  });
  it('an Admin Deny decides above a NetworkPolicy allow; its entry carries the tier precedence', () => {
    const e = new Engine();
    e.apply(base);
    e.apply([cnp('x', 2, RULE)]);
    const id = e.identityOfPod('a/p') as number;
    expect(e.lookup('a/p', id, 'ingress', 6, 80)?.entry).toEqual({ deny: true, proxyPort: 0, precedence: tierPrecedence('Admin', 2, 0, true) });
  });
});
