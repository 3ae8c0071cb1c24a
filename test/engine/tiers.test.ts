import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { adminLevel, datapathLookup, precedence, sourcePrecedence, isPassFloor, type PolicyKey, policyKeyString, NP_TIER_LEVEL, passCopyPrecedence, passFloorPrecedence, PRECEDENCE_ALLOW, PRECEDENCE_DEFAULT_ALLOW, PRECEDENCE_DENY, PRECEDENCE_REDIRECT, precedenceLevel, tierPrecedence, verdictByte } from '../../src/model/policy-map.js';
import { parseManifest } from '../../src/policy/manifest.js';
import type { Contribution } from '../../src/engine/contribution.js';
import { MapState } from '../../src/engine/map-state.js';
import { emptyStats } from '../../src/engine/stats.js';

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
  it('two Admin policies with one priority: flattened, Deny over Pass over Accept, whatever the order they arrive in', () => {
    const e = new Engine();
    e.apply(base);
    const pass = '[{"name":"skip","action":"Pass","from":[{"namespaces":{}}]}]';
    const accept = '[{"name":"ok","action":"Accept","from":[{"namespaces":{}}]}]';
    e.apply([cnp('x', 5, RULE), cnp('y', 5, accept)]);
    const id = e.identityOfPod('a/p') as number;
    // x's Deny and y's Accept are both first matches: Deny. The cell (id, ingress, any) has depth 1: rule index 23.
    expect(e.lookup('a/p', id, 'ingress', 6, 80)?.entry).toEqual({ deny: true, proxyPort: 0, precedence: tierPrecedence('Admin', 5, 23, true) });
    // Pass over Accept: the lower tiers decide (here the default allow, copied into the cell's band).
    e.apply([cnp('x', 5, pass)]);
    expect(e.lookup('a/p', id, 'ingress', 6, 80)?.entry).toEqual({ deny: false, proxyPort: 0, precedence: passCopyPrecedence(adminLevel(5, 23), PRECEDENCE_DEFAULT_ALLOW) });
    // A later Admin Deny stays below the Pass.
    e.apply([cnp('z', 9, RULE)]);
    expect(e.lookup('a/p', id, 'ingress', 6, 80)?.entry.deny).toBe(false);
    e.apply([{ type: 'deletePolicy', ref: { kind: 'ClusterNetworkPolicy', name: 'x' } }]);
    expect(e.lookup('a/p', id, 'ingress', 6, 80)?.entry).toEqual({ deny: false, proxyPort: 0, precedence: tierPrecedence('Admin', 5, 0, false) });
  });
  it('two Baseline policies with one priority: flattened, Deny over Accept', () => {
    const e = new Engine();
    e.apply(base);
    e.apply([cnp('x', 5, '[{"name":"ok","action":"Accept","from":[{"namespaces":{}}]}]', 'Baseline'), cnp('y', 5, RULE, 'Baseline')]);
    const id = e.identityOfPod('a/p') as number;
    expect(e.lookup('a/p', id, 'ingress', 6, 80)?.entry).toEqual({ deny: true, proxyPort: 0, precedence: tierPrecedence('Baseline', 5, 23, true) });
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

describe('Pass bands (docs/tiers-encoding.md §3, materialised)', () => {
  it('order the copies inside a band as the lower tiers are ordered, between the Admin levels around it', () => {
    const L = adminLevel(3, 2);
    const ordered = [
      tierPrecedence('Admin', 3, 3, true),
      passFloorPrecedence(L),
      passCopyPrecedence(L, PRECEDENCE_DEFAULT_ALLOW),
      passCopyPrecedence(L, tierPrecedence('Baseline', 1000, 24, false)),
      passCopyPrecedence(L, tierPrecedence('Baseline', 1000, 24, true)),
      passCopyPrecedence(L, tierPrecedence('Baseline', 0, 0, false)),
      passCopyPrecedence(L, tierPrecedence('Baseline', 0, 0, true)),
      passCopyPrecedence(L, PRECEDENCE_ALLOW),
      passCopyPrecedence(L, PRECEDENCE_REDIRECT),
      passCopyPrecedence(L, PRECEDENCE_DENY),
      tierPrecedence('Admin', 3, 2, false),
    ];
    for (let i = 1; i < ordered.length; i++) expect(ordered[i] as number).toBeGreaterThan(ordered[i - 1] as number);
    for (const p of ordered.slice(1, -1)) expect(precedenceLevel(p)).toBe(L);
    expect(ordered.filter(isPassFloor)).toEqual([passFloorPrecedence(L)]);
    expect(verdictByte(passCopyPrecedence(L, PRECEDENCE_REDIRECT))).toBe(verdictByte(PRECEDENCE_REDIRECT));
    expect(() => passCopyPrecedence(L, tierPrecedence('Admin', 5, 0, true))).toThrow(RangeError);
    // A restarted agent finds a copied redirect's parser from the NP-tier precedence it was copied from.
    expect(sourcePrecedence(passCopyPrecedence(L, precedence('redirect', 1)))).toBe(precedence('redirect', 1));
    for (const p of [passFloorPrecedence(L), passCopyPrecedence(L, PRECEDENCE_DEFAULT_ALLOW), tierPrecedence('Admin', 3, 2, false), PRECEDENCE_DENY]) expect(sourcePrecedence(p)).toBe(p);
  });

  const pod = (name: string, labels: Record<string, string>, ip: string): EngineEvent => ({ type: 'upsertPod', pod: { namespace: 'a', name, labels, ip: parseIp(ip), serviceAccount: 'default', ports: [] }, local: true });
  const np = (from: Record<string, string>): EngineEvent => ({
    type: 'upsertPolicy',
    policy: parseManifest({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'np', namespace: 'a' }, spec: { podSelector: { matchLabels: { role: 'srv' } }, ingress: [{ from: [{ podSelector: { matchLabels: from } }] }] } }, 'np.yaml'),
  });
  const ADMIN = JSON.stringify([
    { name: 'pass-clients', action: 'Pass', from: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { role: 'client' } } } }] },
    { name: 'deny-rest', action: 'Deny', from: [{ namespaces: {} }] },
  ]);
  const setup = (): { e: Engine; client: number; other: number } => {
    const e = new Engine();
    e.apply([{ type: 'upsertNamespace', name: 'a', labels: {} }, pod('srv', { role: 'srv' }, '10.0.0.1'), pod('c', { role: 'client' }, '10.0.0.2'), pod('o', { role: 'other' }, '10.0.0.3'), cnp('admin', 4, ADMIN)]);
    return { e, client: e.identityOfPod('a/c') as number, other: e.identityOfPod('a/o') as number };
  };
  const allowed = (e: Engine, peer: number, port = 80): boolean => e.lookup('a/srv', peer, 'ingress', 6, port)?.entry.deny === false;

  it('an Admin Pass hands its peers to the lower tiers (default allow here), past a later Admin Deny', () => {
    const { e, client, other } = setup();
    expect(allowed(e, client)).toBe(true);
    expect(allowed(e, other)).toBe(false);
    expect(e.lookup('a/srv', client, 'ingress', 6, 80)?.entry.precedence).toBe(passCopyPrecedence(adminLevel(4, 0), PRECEDENCE_DEFAULT_ALLOW));
  });
  it('a NetworkPolicy change under the Pass updates the band: isolation drops, its allow opens, its removal restores', () => {
    const { e, client, other } = setup();
    const isolated = e.apply([np({ role: 'nobody' })]);
    expect(allowed(e, client)).toBe(false);
    expect(e.lookup('a/srv', client, 'ingress', 6, 80)?.entry).toEqual({ deny: true, proxyPort: 0, precedence: passFloorPrecedence(adminLevel(4, 0)) });
    // The band's copy of the default allow goes with it: one delta on the client key, one for the allow-all itself.
    expect(isolated.deltas.filter((d) => d.endpoint === 'a/srv' && d.key.direction === 'ingress').length).toBe(2);
    e.apply([np({ role: 'client' })]);
    expect(allowed(e, client)).toBe(true);
    expect(e.lookup('a/srv', client, 'ingress', 6, 80)?.entry.precedence).toBe(passCopyPrecedence(adminLevel(4, 0), PRECEDENCE_ALLOW));
    expect(allowed(e, other)).toBe(false);
    e.apply([{ type: 'deletePolicy', ref: { kind: 'NetworkPolicy', namespace: 'a', name: 'np' } }]);
    expect(allowed(e, client)).toBe(true);
    expect(allowed(e, other)).toBe(false);
  });
  it('an Admin Pass reaches Baseline where nothing isolates; a Baseline Pass reaches the default allow past a later Baseline Deny', () => {
    const { e, client } = setup();
    const baseline = (rules: unknown[]): EngineEvent => cnp('base', 2, JSON.stringify(rules), 'Baseline');
    e.apply([baseline([{ name: 'deny-clients', action: 'Deny', from: [{ namespaces: {} }] }])]);
    expect(allowed(e, client)).toBe(false);
    e.apply([baseline([{ name: 'skip', action: 'Pass', from: [{ namespaces: {} }] }, { name: 'deny-clients', action: 'Deny', from: [{ namespaces: {} }] }])]);
    expect(allowed(e, client)).toBe(true);
    e.apply([np({ role: 'nobody' })]);
    expect(allowed(e, client)).toBe(false);
  });
  it('a Pass rule with a peer distill cannot read fails closed to a Deny all, in both tiers', () => {
    for (const tier of ['Admin', 'Baseline']) {
      const e = new Engine();
      e.apply([{ type: 'upsertNamespace', name: 'a', labels: {} }, pod('srv', {}, '10.0.0.1'), pod('c', {}, '10.0.0.2')]);
      e.apply([cnp('x', 1, JSON.stringify([{ name: 'skip', action: 'Pass', from: [{ futurePeerField: {} }] }]), tier)]);
      expect(e.lookup('a/srv', e.identityOfPod('a/c') as number, 'ingress', 6, 80)?.entry).toEqual({ deny: true, proxyPort: 0, precedence: tierPrecedence(tier as 'Admin', 1, 0, true) });
    }
  });
});

describe('same-priority Admin groups, flattened in the map state', () => {
  const contribution = (policy: string, index: number, deny: boolean): Contribution => ({
    origin: { policy: { kind: 'ClusterNetworkPolicy', name: policy }, path: `spec.ingress[${index}]`, tier: { tier: 'Admin', policy, priority: 7, rule: `r${index}`, path: `spec.ingress[${index}]`, action: deny ? 'Deny' : 'Accept' } },
    entry: { deny, proxyPort: 0, precedence: tierPrecedence('Admin', 7, index, deny) },
    label: `${policy}${index}`,
  });
  const key = (identity: number, protocol = 0, port = 0): PolicyKey => ({ identity, direction: 'ingress', protocol, port, portPrefixLen: protocol === 0 ? 0 : 16 });
  const verdict = (m: MapState, identity: number, port: number): boolean | undefined => {
    m.settle();
    const hit = datapathLookup(m.entries, identity, 'ingress', 6, port);
    return hit === undefined ? undefined : !hit.entry.deny;
  };

  it('each policy first match, then Deny over Accept; the identity-0 key narrower than a specific one gets its own cell', () => {
    const m = new MapState(emptyStats());
    // a: [Accept from 9 (all ports), Deny from anyone on tcp/80]; b: [Accept from anyone on tcp/80].
    const a0 = contribution('a', 0, false);
    const a1 = contribution('a', 1, true);
    m.add(key(9), a0);
    m.add(key(0, 6, 80), a1);
    // One policy: plain rule order, a's Accept first for identity 9.
    expect(verdict(m, 9, 80)).toBe(true);
    expect(verdict(m, 5, 80)).toBe(false);
    const b0 = contribution('b', 0, false);
    m.add(key(0, 6, 80), b0);
    // a's first match for 9 on tcp/80 is its Accept, b's is its Accept: allowed (cell (9, tcp/80)).
    expect(verdict(m, 9, 80)).toBe(true);
    // For 5 on tcp/80: a's first match is its Deny, b's an Accept: Deny over Accept.
    expect(verdict(m, 5, 80)).toBe(false);
    // The cell's depth (L4 prefix 8 + 16 bits, then the specific identity: 18) picks rule index 24 - 18 of the priority.
    expect(m.entries.get(policyKeyString(key(9, 6, 80)))?.entry.precedence).toBe(tierPrecedence('Admin', 7, 6, false));
    const b1 = contribution('b', 1, true);
    m.add(key(9), b1);
    // Now b's first match for 9 on tcp/81 is its Deny; on tcp/80 still its Accept.
    expect(verdict(m, 9, 81)).toBe(false);
    expect(verdict(m, 9, 80)).toBe(true);
    // Back to one policy: entries at their own levels again, exactly as a alone.
    m.remove(key(9), b1);
    m.remove(key(0, 6, 80), b0);
    m.settle();
    expect([...m.entries.values()].map((r) => r.entry.precedence).sort()).toEqual([a0.entry.precedence, a1.entry.precedence].sort());
  });
});
