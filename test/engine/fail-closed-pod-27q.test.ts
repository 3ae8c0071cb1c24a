import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineError, type EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { namespaceWithDefaults, type Pod } from '../../src/model/cluster.js';
import { podIdentityLabels, securityLabels, UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { parseManifest } from '../../src/policy/manifest.js';

/*
 * Round 27q (the class of finding 2352): a pod the agent holds fail-closed (`Pod.failClosed`: the engine refused it,
 * or distill cannot read its update). Its addresses are UNALLOCATED_POD_IDENTITY, which every local map denies both
 * ways while some pod holds it (src/engine/engine.ts `syncUnallocatedDeny`, finding 2002); no selector selects it; it
 * joins no group of the network splits, so a networks rule holding one address of it is no refusal and it moves no
 * other pod's identity; a local one is an endpoint whose map stays empty (default deny both ways).
 */
const mkPod = (name: string, ips: string[], labels: Record<string, string> = { app: name }): Pod => ({
  namespace: 'shop',
  name,
  labels,
  ip: parseIp(ips[0] as string),
  ...(ips.length > 1 ? { ips: ips.map(parseIp) } : {}),
  serviceAccount: 'default',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
});
const web = mkPod('web', ['10.0.0.2', 'fd00::2']);
const db = mkPod('db', ['10.0.0.3', 'fd00::3']);
const closedDb: Pod = { ...db, failClosed: true };
const policy = (doc: Record<string, unknown>) => parseManifest(doc, 't.yaml');
const allowAll = policy({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'all' }, spec: { endpointSelector: {}, ingress: [{ fromEntities: ['all'] }], egress: [{ toEntities: ['all'] }] } });
const toDb = policy({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'to-db', namespace: 'shop' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, egress: [{ toEndpoints: [{ matchLabels: { app: 'db' } }] }] } });
const oneAddress = policy({
  apiVersion: 'policy.networking.k8s.io/v1beta1',
  kind: 'ClusterNetworkPolicy',
  metadata: { name: 'one-address' },
  spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ networks: ['10.0.0.3/32'] }, { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'db' } } } }] }] },
});
const ns: EngineEvent = { type: 'upsertNamespace', name: 'shop', labels: {} };
const verdict = (e: Engine, endpoint: string, peer: string, dir: 'ingress' | 'egress', port = 80): string => {
  const hit = e.lookup(endpoint, e.identityOfIp(parseIp(peer)), dir, 6, port);
  return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
};

describe('27q: a pod held fail-closed', () => {
  it('reads as the unallocated number at both addresses, denied both ways under a wildcard allow, selected by nothing', () => {
    const e = new Engine({ stack: 'dual' });
    e.apply([ns, { type: 'upsertPod', pod: web, local: true }, { type: 'upsertPolicy', policy: toDb }, { type: 'upsertPod', pod: closedDb }]);
    expect(e.identityOfIp(parseIp('10.0.0.3'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(e.identityOfIp(parseIp('fd00::3'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(verdict(e, 'shop/web', 'fd00::3', 'egress')).toBe('deny');
    expect(e.apply([{ type: 'upsertPolicy', policy: allowAll }]).ipcache).toEqual([]);
    for (const dir of ['ingress', 'egress'] as const) for (const peer of ['10.0.0.3', 'fd00::3']) expect(verdict(e, 'shop/web', peer, dir)).toBe('deny');
    expect(verdict(e, 'shop/web', '192.0.2.9', 'egress')).toBe('allow');
    // The last one gone: no pod holds the number, the deny goes, db is read as written.
    e.apply([{ type: 'upsertPod', pod: db }]);
    expect(e.identityOfIp(parseIp('fd00::3'))).toBe(e.identityOfPod('shop/db'));
    expect(verdict(e, 'shop/web', 'fd00::3', 'egress')).toBe('allow');
    expect(e.lookup('shop/web', UNALLOCATED_POD_IDENTITY, 'egress', 6, 80)?.entry.deny).not.toBe(true);
  });
  it('a networks rule holding one of its addresses is no refusal, and it moves no other pod\'s identity', () => {
    const e = new Engine({ stack: 'dual' });
    e.apply([ns, { type: 'upsertPod', pod: web, local: true }, { type: 'upsertPolicy', policy: oneAddress }]);
    const before = e.identityOfPod('shop/web');
    expect(() => e.apply([{ type: 'upsertPod', pod: db }])).toThrow(EngineError);
    e.apply([{ type: 'upsertPod', pod: closedDb }]);
    expect(e.identityOfPod('shop/web')).toBe(before);
    expect(verdict(e, 'shop/web', '10.0.0.3', 'egress')).toBe('deny');
    expect(verdict(e, 'shop/web', 'fd00::3', 'egress')).toBe('deny');
    // Its ports are no named port of the cluster, its labels no group: a namespace relabel keeps it fail-closed.
    e.apply([{ type: 'upsertNamespace', name: 'shop', labels: { team: 'a' } }]);
    expect(e.identityOfIp(parseIp('fd00::3'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(verdict(e, 'shop/web', 'fd00::3', 'egress')).toBe('deny');
  });
  it('a local one is an endpoint whose map denies both ways', () => {
    const e = new Engine({ stack: 'dual' });
    e.apply([ns, { type: 'upsertPolicy', policy: allowAll }, { type: 'upsertPod', pod: web, local: true }, { type: 'upsertPod', pod: closedDb, local: true }]);
    expect(e.endpoints()).toEqual(['shop/db', 'shop/web']);
    expect(e.mapState('shop/db').size).toBe(0);
    for (const dir of ['ingress', 'egress'] as const) for (const peer of ['10.0.0.2', 'fd00::2', '192.0.2.9']) expect(verdict(e, 'shop/db', peer, dir)).toBe('deny');
    e.apply([{ type: 'upsertPod', pod: db, local: true }]);
    expect(verdict(e, 'shop/db', '10.0.0.2', 'ingress')).toBe('allow');
  });
  it('with identities from outside, an identity event for its labels does not take it', () => {
    const e = new Engine({ stack: 'dual', identitySource: 'external' });
    const labels = (p: Pod) => securityLabels(podIdentityLabels(p, namespaceWithDefaults('shop', {}).labels));
    e.apply([ns, { type: 'upsertIdentity', id: 300, labels: labels(web) }, { type: 'upsertPod', pod: web, local: true }, { type: 'upsertPolicy', policy: allowAll }, { type: 'upsertPod', pod: closedDb }]);
    e.apply([{ type: 'upsertIdentity', id: 301, labels: labels(db) }]);
    expect(e.identityOfIp(parseIp('10.0.0.3'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(verdict(e, 'shop/web', '10.0.0.3', 'egress')).toBe('deny');
    e.apply([{ type: 'upsertPod', pod: db }]);
    expect(e.identityOfIp(parseIp('10.0.0.3'))).toBe(301);
  });
  it('the flag is true or absent', () => {
    const e = new Engine();
    e.apply([ns]);
    expect(() => e.apply([{ type: 'upsertPod', pod: { ...mkPod('x', ['10.0.0.9']), failClosed: 'yes' } as unknown as Pod }])).toThrow(/pod\.failClosed must be true or absent/);
  });
});
