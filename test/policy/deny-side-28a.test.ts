import { describe, expect, it } from 'vitest';
import { parseManifest } from '../../src/policy/manifest.js';
import { denyAllSideOf, denySideOf } from '../../src/policy/stand-in.js';

/** Finding 2433: the deny side of a policy the engine refuses alone (src/policy/stand-in.ts `denySideOf`). */
const sel = (app: string) => ({ matchLabels: { app } });

/** A ClusterNetworkPolicy with an Accept, a Pass and a Deny on ingress (indexes 0–2), nothing on egress. */
const tiered = () =>
  parseManifest(
    {
      apiVersion: 'policy.networking.k8s.io/v1beta1',
      kind: 'ClusterNetworkPolicy',
      metadata: { name: 'c' },
      spec: {
        tier: 'Admin',
        priority: 5,
        subject: { namespaces: {} },
        ingress: [
          { name: 'a', action: 'Accept', from: [{ namespaces: {} }] },
          { name: 'p', action: 'Pass', from: [{ namespaces: { matchLabels: { t: 'p' } } }] },
          { name: 'd', action: 'Deny', from: [{ namespaces: { matchLabels: { t: 'd' } } }] },
        ],
      },
    },
    'c.yaml',
  );

describe('2433: denySideOf', () => {
  it('a Cilium policy: its deny rules and its isolation, none of its allows', () => {
    const p = parseManifest(
      { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x' }, spec: { endpointSelector: sel('server'), ingress: [{ fromEndpoints: [sel('client')] }], ingressDeny: [{ fromEndpoints: [sel('bad')] }], egress: [{ toEndpoints: [sel('db')] }] } },
      'p.yaml',
    );
    const d = denySideOf(p);
    expect(p.rules.map((r) => r.verdict).sort()).toEqual(['allow', 'allow', 'deny']);
    expect(d.rules.map((r) => [r.direction, r.verdict])).toEqual([['ingress', 'deny']]);
    expect(d.enforcements).toEqual(p.enforcements);
    expect(d.enforcements.map((e) => e.direction).sort()).toEqual(['egress', 'ingress']);
  });
  it('enableDefaultDeny false: no isolation in that direction, the denies kept', () => {
    const p = parseManifest(
      { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x' }, spec: { endpointSelector: sel('server'), enableDefaultDeny: { ingress: false }, ingress: [{ fromEndpoints: [sel('client')] }], ingressDeny: [{ fromEndpoints: [sel('bad')] }] } },
      'p.yaml',
    );
    const d = denySideOf(p);
    expect(d.enforcements.filter((e) => e.direction === 'ingress')).toEqual([]);
    expect(d.rules.map((r) => r.verdict)).toEqual(['deny']);
  });
  it('a ClusterNetworkPolicy: Deny and Pass rules in their order, no Accept', () => {
    const p = tiered();
    const d = denySideOf(p);
    expect(d.tiered?.rules.map((r) => [r.name, r.action, r.index])).toEqual([
      ['p', 'Pass', 1],
      ['d', 'Deny', 2],
    ]);
    expect(d.tiered?.subject).toBe(p.tiered?.subject);
  });
});

describe('2523: denySideOf with the version in force (review 28r)', () => {
  const cnp = (name: string, spec: Record<string, unknown>) => parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec }, 't');
  it('keeps the new version\'s denies and isolation and the old version\'s denies and isolation (2670), no allow of either', () => {
    const old = cnp('p', { endpointSelector: sel('s'), egress: [{ toEndpoints: [sel('web')] }], egressDeny: [{ toEndpoints: [sel('a')] }] });
    const now = cnp('p', { endpointSelector: sel('s'), ingress: [{ fromEndpoints: [sel('c')] }], egressDeny: [{ toEndpoints: [sel('b')] }] });
    const d = denySideOf(now, old);
    expect(d.rules.map((r) => [r.verdict, r.origin.path])).toEqual([['deny', now.rules.find((r) => r.verdict === 'deny')?.origin.path], ['deny', `kept:${old.rules.find((r) => r.verdict === 'deny')?.origin.path}`]]);
    // The old version's egress isolation stays beside the new ingress one (finding 2670, review 29s).
    expect(d.enforcements.map((e) => [e.direction, e.origin.path])).toEqual([...now.enforcements.map((e) => [e.direction, e.origin.path]), ...old.enforcements.map((e) => [e.direction, `kept:${e.origin.path}`])]);
    expect(old.enforcements.map((e) => e.direction)).toEqual(['egress']);
    // Kept again (a deny side held and kept in turn): every deny stays, no path marked twice.
    const again = denySideOf(now, d);
    expect(again.rules.length).toBe(3);
    expect(again.rules.filter((r) => r.origin.path.startsWith('kept:kept:'))).toEqual([]);
    expect(again.enforcements.filter((e) => e.origin.path.startsWith('kept:kept:'))).toEqual([]);
  });
});

describe('2542: denyAllSideOf (29b), for a policy whose deny side the engine refuses too', () => {
  it('a Cilium policy: one rule denying every peer on every port per subject and direction it denies in, its isolation, no allow', () => {
    const ports = [{ ports: [{ port: '80', protocol: 'TCP' }, { port: '81', protocol: 'TCP' }] }];
    const p = parseManifest(
      {
        apiVersion: 'cilium.io/v2',
        kind: 'CiliumNetworkPolicy',
        metadata: { name: 'p', namespace: 'x' },
        specs: [
          { endpointSelector: sel('server'), ingress: [{ fromEndpoints: [sel('client')] }], ingressDeny: [{ fromEndpoints: [sel('bad')], toPorts: ports }, { fromCIDR: ['192.0.2.0/24'] }], egress: [{ toEndpoints: [sel('db')] }] },
          { endpointSelector: sel('api'), egressDeny: [{ toEntities: ['world'] }] },
        ],
      },
      'p.yaml',
    );
    const d = denyAllSideOf(p);
    expect(d.rules.map((r) => [r.subject.key.split(' ')[0], r.direction, r.verdict, r.peers.map((q) => (q.kind === 'selector' ? q.entity : q.kind)), r.ports.map((x) => x.l4.kind)])).toEqual([
      ['any:app=server', 'ingress', 'deny', ['all'], ['all']],
      ['any:app=api', 'egress', 'deny', ['all'], ['all']],
    ]);
    expect(d.enforcements).toEqual(p.enforcements);
  });
  it('a ClusterNetworkPolicy: one Deny of a peer distill does not know in each direction with a Deny or Pass rule, no Accept', () => {
    const p = tiered();
    const d = denyAllSideOf(p);
    expect(d.tiered?.priority).toBe(5);
    expect(d.tiered?.subject).toBe(p.tiered?.subject);
    expect(d.tiered?.rules.map((r) => [r.direction, r.action, r.peers.map((q) => q.kind), r.protocols.length])).toEqual([['ingress', 'Deny', ['unknown'], 0]]);
  });
});

describe('2671: denySideOf a ClusterNetworkPolicy with the version in force (29t)', () => {
  const cnp = (tier: string, priority: number, egress: unknown[]) =>
    parseManifest({ apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: { name: 'c' }, spec: { tier, priority, subject: { namespaces: {} }, egress } }, 'c.yaml');
  const rule = (name: string, action: string) => ({ name, action, to: [{ namespaces: { matchLabels: { t: name } } }] });
  it('both versions\' Deny and Pass rules as Denies, no Accept, at the higher precedence of the two (across tiers Admin 0: 3540)', () => {
    const now = cnp('Baseline', 3, [rule('a', 'Accept'), rule('p', 'Pass'), rule('d', 'Deny')]);
    const kept = cnp('Admin', 40, [rule('ka', 'Accept'), rule('kp', 'Pass'), rule('kd', 'Deny')]);
    const d = denySideOf(now, kept);
    expect([d.tiered?.tier, d.tiered?.priority]).toEqual(['Admin', 0]);
    expect(d.tiered?.rules.map((r) => [r.name, r.action, r.index, r.path])).toEqual([
      ['p', 'Deny', 0, 'spec.egress[1]'],
      ['d', 'Deny', 1, 'spec.egress[2]'],
      ['kp', 'Deny', 2, 'kept:spec.egress[1]'],
      ['kd', 'Deny', 3, 'kept:spec.egress[2]'],
    ]);
    expect(denySideOf(cnp('Admin', 7, [rule('d', 'Deny')]), kept).tiered?.priority).toBe(7);
    // Its deny-all side: one Deny of every peer in the direction, at the same precedence.
    const all = denyAllSideOf(now, kept);
    expect([all.tiered?.tier, all.tiered?.priority, all.tiered?.rules.map((r) => [r.direction, r.action])]).toEqual(['Admin', 0, [['egress', 'Deny']]]);
    expect(denySideOf(cnp('Baseline', 7, [rule('d', 'Deny')]), cnp('Baseline', 4, [rule('kd', 'Deny')])).tiered).toMatchObject({ tier: 'Baseline', priority: 4 });
  });
  it('a changed subject: one covering both, with both versions\' Deny and Pass rules (one spec holds one subject; 2800)', () => {
    const subject = (app: string) => ({ pods: { namespaceSelector: sel('x'), podSelector: sel(app) } });
    const version = (app: string, egress: unknown[]) => parseManifest({ apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: { name: 'c' }, spec: { tier: 'Admin', priority: 9, subject: subject(app), egress } }, 'c.yaml');
    const d = denySideOf(version('b', [rule('d', 'Deny')]), version('a', [rule('ka', 'Accept'), rule('kp', 'Pass')]));
    expect(d.tiered?.subject.key).toBe('k8s:app in (a,b) && k8s:io.cilium.k8s.namespace.labels.app=x');
    expect(d.tiered?.rules.map((r) => [r.name, r.action, r.index])).toEqual([['d', 'Deny', 0], ['kp', 'Deny', 1]]);
  });
  it('more rules than the engine numbers in one direction share the last index (all deny)', () => {
    const many = (prefix: string) => Array.from({ length: 20 }, (_, i) => rule(`${prefix}${i}`, 'Deny'));
    const d = denySideOf(cnp('Admin', 5, many('n')), cnp('Admin', 5, many('k')));
    expect(d.tiered?.rules.length).toBe(40);
    expect(Math.max(...(d.tiered?.rules.map((r) => r.index) ?? []))).toBe(24);
  });
});
