import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineError, type EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { RESERVED_IDENTITIES, UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { parseManifest } from '../../src/policy/manifest.js';

/*
 * Round 28t (finding 2432): a remote node the agent holds fail-closed (`upsertNode.failClosed`: the engine refused its
 * change alone). Its own addresses read UNALLOCATED_POD_IDENTITY, which every local map denies both ways while
 * something holds it (src/engine/engine.ts `syncUnallocatedDeny`), whatever its labels and the `nodes` peers' keys;
 * its health address too since 31r (finding 3060: kept `health` at the refused version's address, a `networks` rule's
 * cover of the health role made the held form overflow as the change did). Read as written again, it takes its
 * labelled identity and its health address `health`.
 */
const policy = (doc: Record<string, unknown>) => parseManifest(doc, 't.yaml');
const allowAll = policy({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'all', namespace: 'x' }, spec: { endpointSelector: {}, ingress: [{ fromEntities: ['all'] }], egress: [{ toEntities: ['all'] }] } });
const denyNodes = (role: string) =>
  policy({ apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: { name: 'deny-nodes' }, spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ nodes: { matchLabels: { role } } }] }] } });
const node = (role: string, failClosed = false): EngineEvent => ({
  type: 'upsertNode',
  name: 'n2',
  ips: [parseIp('172.16.0.2')],
  health: [parseIp('10.1.0.9')],
  ingress: [parseIp('10.1.0.10')],
  labels: { role },
  ...(failClosed ? { failClosed: true as const } : {}),
});
const base: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'x', labels: {} },
  { type: 'upsertPod', pod: { namespace: 'x', name: 'server', labels: { app: 'server' }, ip: parseIp('10.0.0.1'), serviceAccount: 'default', ports: [] }, local: true },
  { type: 'upsertPolicy', policy: allowAll },
  { type: 'upsertPolicy', policy: denyNodes('a') },
  node('a'),
];
const verdict = (e: Engine, peer: string, dir: 'ingress' | 'egress'): string => {
  const hit = e.lookup('x/server', e.identityOfIp(parseIp(peer)), dir, 6, 80);
  return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
};
const N2 = '172.16.0.2';

describe('28t: a remote node held fail-closed', () => {
  it('reads the unallocated number at its own addresses, denied both ways under a wildcard allow, until read as written', () => {
    const e = new Engine();
    e.apply(base);
    const labelled = e.identityOfIp(parseIp(N2));
    expect(verdict(e, N2, 'egress')).toBe('deny');
    const held = e.apply([node('b', true)]);
    expect(held.ipcache).toEqual([
      { op: 'upsert', prefix: '10.1.0.10/32', identity: UNALLOCATED_POD_IDENTITY, previous: RESERVED_IDENTITIES.ingress },
      { op: 'upsert', prefix: '10.1.0.9/32', identity: UNALLOCATED_POD_IDENTITY, previous: RESERVED_IDENTITIES.health },
      { op: 'upsert', prefix: `${N2}/32`, identity: UNALLOCATED_POD_IDENTITY, previous: labelled },
    ]);
    expect(e.ipcache().find((r) => r.prefix === `${N2}/32`)?.identity).toBe(UNALLOCATED_POD_IDENTITY);
    for (const dir of ['ingress', 'egress'] as const) expect(verdict(e, N2, dir)).toBe('deny');
    expect(e.identityOfIp(parseIp('10.1.0.9'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(verdict(e, '203.0.113.1', 'egress')).toBe('allow');
    // The `nodes` peers' keys change (the deny moves to role=b, then goes): the node stays held.
    e.apply([{ type: 'upsertPolicy', policy: denyNodes('b') }]);
    expect(e.identityOfIp(parseIp(N2))).toBe(UNALLOCATED_POD_IDENTITY);
    // Read as written: role=b, which the deny selects; the deny of 255 is gone.
    e.apply([node('b')]);
    expect(e.identityOfIp(parseIp(N2))).not.toBe(UNALLOCATED_POD_IDENTITY);
    expect(verdict(e, N2, 'egress')).toBe('deny');
    expect(verdict(e, N2, 'ingress')).toBe('allow');
    expect(e.identityOfIp(parseIp('10.1.0.9'))).toBe(RESERVED_IDENTITIES.health);
    expect(e.identityOfIp(parseIp('10.1.0.10'))).toBe(RESERVED_IDENTITIES.ingress);
    expect(e.lookup('x/server', UNALLOCATED_POD_IDENTITY, 'ingress', 6, 80)?.entry.deny).not.toBe(true);
  });

  it('deleted while held: the deny of 255 goes; an unexpected failure rebuilds it held', () => {
    const e = new Engine();
    e.apply([...base, node('b', true)]);
    e.apply([{ type: 'deleteNode', name: 'n2' }]);
    expect(e.lookup('x/server', UNALLOCATED_POD_IDENTITY, 'ingress', 6, 80)?.entry.deny).not.toBe(true);
    let armed = false;
    const f = new Engine({ faultHook: (p) => { if (armed && p === 'attachUnit') throw new Error('boom'); } });
    f.apply([...base, node('b', true)]);
    const before = f.ipcache();
    armed = true;
    expect(() => f.apply([{ type: 'upsertPolicy', policy: denyNodes('c') }])).toThrow();
    armed = false;
    expect(f.ipcache()).toEqual(before);
    for (const dir of ['ingress', 'egress'] as const) expect(verdict(f, N2, dir)).toBe('deny');
  });

  // On the local node since 30a (finding 2541): its labels read as unknown (test/engine/held-local-node-30a.property.test.ts).
  it("validation: failClosed true or absent ('allPorts' or 'addresses' on the local node)", () => {
    const e = new Engine();
    expect(() => e.apply([{ ...node('a'), failClosed: 'yes' } as unknown as EngineEvent])).toThrow(EngineError);
    expect(() => e.apply([{ ...node('a', true), local: true } as EngineEvent])).not.toThrow();
    // `allPorts` (finding 2730) on the local node only.
    expect(() => e.apply([{ ...node('a'), failClosed: 'allPorts' } as EngineEvent])).toThrow(EngineError);
    expect(() => e.apply([{ ...node('a'), local: true, failClosed: 'allPorts' } as EngineEvent])).not.toThrow();
    // `addresses` (finding 2900) on the local node only.
    expect(() => e.apply([{ ...node('b'), failClosed: 'addresses' } as EngineEvent])).toThrow(EngineError);
    expect(() => e.apply([{ ...node('b'), local: true, failClosed: 'addresses' } as EngineEvent])).not.toThrow();
  });
  // Review 29r (mutation check): without the guard in NodeTable `apiServerVariant`, the held node's address as the
  // API server took an API-server variant of 255, a number the kube-apiserver entity selects.
  it('as the API server address, still reads the unallocated number (not an API-server variant of it)', () => {
    const e = new Engine();
    const toApi = policy({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'api', namespace: 'x' }, spec: { endpointSelector: {}, egress: [{ toEntities: ['kube-apiserver'] }] } });
    e.apply([...base.filter((ev) => ev.type !== 'upsertPolicy'), { type: 'upsertPolicy', policy: toApi }, { type: 'setApiServer', addresses: [parseIp(N2)] }]);
    expect(verdict(e, N2, 'egress')).toBe('allow');
    e.apply([node('b', true)]);
    expect(e.identityOfIp(parseIp(N2))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(verdict(e, N2, 'egress')).toBe('deny');
    e.apply([node('b')]);
    expect(verdict(e, N2, 'egress')).toBe('allow');
  });
});
