import { describe, expect, it } from 'vitest';
import { parseTrace } from '../../src/churn/trace.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { namespaceWithDefaults, type Pod } from '../../src/model/cluster.js';
import { podIdentityLabels, securityLabels, UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { parseScenario } from '../../src/scenario/format.js';

/*
 * Round 27o: attacks on round 27q's fail-closed pods (`Pod.failClosed`, finding 2352). The contract under attack
 * (src/engine/pod-table.ts `addFailClosed`): such a pod's addresses are the unallocated number whatever the identity
 * source, "no CiliumEndpoint is read for it", no selector selects it, and every local map denies the number both ways.
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
const denyDb = policy({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'deny-db', namespace: 'shop' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, egressDeny: [{ toEndpoints: [{ matchLabels: { app: 'db' } }] }] } });
const ns: EngineEvent = { type: 'upsertNamespace', name: 'shop', labels: {} };
const verdict = (e: Engine, endpoint: string, peer: string, dir: 'ingress' | 'egress', port = 80): string => {
  const hit = e.lookup(endpoint, e.identityOfIp(parseIp(peer)), dir, 6, port);
  return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
};
const labelsOf = (p: Pod) => securityLabels(podIdentityLabels(p, namespaceWithDefaults('shop', {}).labels));

describe('27o: a pod held fail-closed, attacked', () => {
  it('a CiliumEndpoint for it (external identities) does not move its addresses off the unallocated number', () => {
    const e = new Engine({ stack: 'dual', identitySource: 'external' });
    const other = mkPod('db', ['10.0.0.3', 'fd00::3'], { app: 'other' });
    e.apply([
      ns,
      { type: 'upsertIdentity', id: 300, labels: labelsOf(web) },
      { type: 'upsertIdentity', id: 301, labels: labelsOf(db) },
      { type: 'upsertIdentity', id: 302, labels: labelsOf(other) },
      { type: 'upsertPod', pod: web, local: true },
      { type: 'upsertPolicy', policy: allowAll },
      { type: 'upsertPolicy', policy: denyDb },
      { type: 'upsertPod', pod: closedDb },
    ]);
    expect(e.identityOfIp(parseIp('10.0.0.3'))).toBe(UNALLOCATED_POD_IDENTITY);
    // Its CiliumEndpoint names a readable identity of its namespace and service account (other labels).
    e.apply([{ type: 'upsertEndpoint', namespace: 'shop', name: 'db', identity: 302, ips: [parseIp('10.0.0.3'), parseIp('fd00::3')] }]);
    expect(e.identityOfIp(parseIp('10.0.0.3'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(e.identityOfIp(parseIp('fd00::3'))).toBe(UNALLOCATED_POD_IDENTITY);
    for (const peer of ['10.0.0.3', 'fd00::3']) expect(verdict(e, 'shop/web', peer, 'egress')).toBe('deny');
    // Read as written, db is its own identity (the endpoint is not read for it), which the deny meets; with the deny
    // gone the wildcard admits it (the probe can allow).
    e.apply([{ type: 'upsertPod', pod: db }]);
    expect(e.identityOfIp(parseIp('10.0.0.3'))).toBe(301);
    expect(verdict(e, 'shop/web', '10.0.0.3', 'egress')).toBe('deny');
    e.apply([{ type: 'deletePolicy', ref: denyDb.ref }]);
    expect(verdict(e, 'shop/web', '10.0.0.3', 'egress')).toBe('allow');
  });
});

const toPort80 = policy({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'p80' }, spec: { endpointSelector: {}, ingress: [{ fromEntities: ['cluster'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }], egress: [{ toEntities: ['cluster'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }, { toEndpoints: [{}], toPorts: [{ ports: [{ port: 'http', protocol: 'TCP' }] }] }] } });
const tierAccept = policy({
  apiVersion: 'policy.networking.k8s.io/v1beta1',
  kind: 'ClusterNetworkPolicy',
  metadata: { name: 'accept-all' },
  spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, ingress: [{ action: 'Accept', from: [{ namespaces: {} }] }], egress: [{ action: 'Accept', to: [{ namespaces: {} }, { networks: ['0.0.0.0/0', '::/0'] }] }] },
});

describe('27o: selectors and port-specific allows against a fail-closed pod', () => {
  it('port-specific and named-port allows from `cluster`/`{}` do not admit its addresses; tier Accepts do not select it', () => {
    const e = new Engine({ stack: 'dual' });
    e.apply([ns, { type: 'upsertPod', pod: web, local: true }, { type: 'upsertPolicy', policy: toPort80 }, { type: 'upsertPolicy', policy: tierAccept }, { type: 'upsertPod', pod: closedDb }]);
    for (const peer of ['10.0.0.3', 'fd00::3']) for (const dir of ['ingress', 'egress'] as const) for (const port of [80, 8080, 443]) expect(verdict(e, 'shop/web', peer, dir, port), `${dir} ${peer}:${port}`).toBe('deny');
  });
  it('a local fail-closed pod stays at an empty map under `{}` subjects, tier Accepts and a pod sharing its labels', () => {
    const e = new Engine({ stack: 'dual' });
    const twin = mkPod('db2', ['10.0.0.4', 'fd00::4'], { app: 'db' });
    e.apply([ns, { type: 'upsertPod', pod: web }, { type: 'upsertPod', pod: twin, local: true }, { type: 'upsertPolicy', policy: allowAll }, { type: 'upsertPolicy', policy: toPort80 }, { type: 'upsertPolicy', policy: tierAccept }, { type: 'upsertPod', pod: closedDb, local: true }]);
    expect(e.mapState('shop/db').size).toBe(0);
    for (const peer of ['10.0.0.2', 'fd00::2', '10.0.0.4', '192.0.2.9']) for (const dir of ['ingress', 'egress'] as const) expect(verdict(e, 'shop/db', peer, dir)).toBe('deny');
    // Moving remote and back, and a namespace relabel, keep it so.
    e.apply([{ type: 'upsertPod', pod: closedDb }]);
    expect(e.identityOfIp(parseIp('fd00::3'))).toBe(UNALLOCATED_POD_IDENTITY);
    e.apply([{ type: 'upsertPod', pod: closedDb, local: true }, { type: 'upsertNamespace', name: 'shop', labels: { team: 'a' } }]);
    expect(e.mapState('shop/db').size).toBe(0);
    expect(verdict(e, 'shop/db', '10.0.0.4', 'ingress')).toBe('deny');
  });
  it('IP reuse: a pod that takes one of its addresses and goes leaves the address unowned, never another pod\'s identity', () => {
    const e = new Engine({ stack: 'dual' });
    const thief = mkPod('thief', ['10.0.0.3', 'fd00::9'], { app: 'thief' });
    e.apply([ns, { type: 'upsertPod', pod: web, local: true }, { type: 'upsertPolicy', policy: allowAll }, { type: 'upsertPolicy', policy: denyDb }, { type: 'upsertPod', pod: closedDb }]);
    e.apply([{ type: 'upsertPod', pod: thief }]);
    expect(e.identityOfIp(parseIp('10.0.0.3'))).toBe(e.identityOfPod('shop/thief'));
    expect(e.identityOfIp(parseIp('fd00::3'))).toBe(UNALLOCATED_POD_IDENTITY);
    e.apply([{ type: 'deletePod', namespace: 'shop', name: 'thief' }]);
    const after = e.identityOfIp(parseIp('10.0.0.3'));
    expect(after === UNALLOCATED_POD_IDENTITY || after === e.identityOfIp(parseIp('192.0.2.9'))).toBe(true);
  });
});

describe('27o: no trace or scenario can hold a pod fail-closed (the oracle, src/naive, knows nothing of the flag)', () => {
  it('a trace pod with `failClosed` is refused, one without it read', () => {
    const line = (extra: Record<string, unknown>) =>
      [JSON.stringify({ distillTrace: 1 }), JSON.stringify({ type: 'upsertNamespace', name: 'shop', labels: {} }), JSON.stringify({ type: 'upsertPod', pod: { namespace: 'shop', name: 'db', labels: { app: 'db' }, ip: '10.0.0.3', ...extra } })].join('\n') + '\n';
    expect(() => parseTrace(line({}), 't.jsonl')).not.toThrow();
    expect(() => parseTrace(line({ failClosed: true }), 't.jsonl')).toThrow(/failClosed/);
  });
  it('a scenario pod with `failClosed` is refused, one without it read', () => {
    const text = (extra: string) => `description: x\nnamespaces: [{name: shop}]\npods:\n  - {name: shop/db, labels: {app: db}${extra}}\npolicies: []\nsteps: []\n`;
    expect(() => parseScenario(text(''), 's.yaml')).not.toThrow();
    expect(() => parseScenario(text(', failClosed: true'), 's.yaml')).toThrow(/failClosed/);
  });
});

describe('27o: the deny of the unallocated number reaches every local map, whatever the order', () => {
  const accept0 = policy({
    apiVersion: 'policy.networking.k8s.io/v1beta1',
    kind: 'ClusterNetworkPolicy',
    metadata: { name: 'accept-0' },
    spec: { tier: 'Admin', priority: 0, subject: { namespaces: {} }, ingress: [{ action: 'Accept', from: [{ namespaces: {} }, { pods: { namespaceSelector: {}, podSelector: {} } }] }], egress: [{ action: 'Accept', to: [{ namespaces: {} }, { networks: ['0.0.0.0/0', '::/0'] }] }] },
  });
  it('endpoints that come, relabel or move after it, under an Admin Accept of priority 0', () => {
    const e = new Engine({ stack: 'dual' });
    e.apply([ns, { type: 'upsertPod', pod: closedDb }]);
    e.apply([{ type: 'upsertPod', pod: web, local: true }, { type: 'upsertPolicy', policy: accept0 }, { type: 'upsertPolicy', policy: allowAll }]);
    const all = (ep: string) => { for (const dir of ['ingress', 'egress'] as const) for (const peer of ['10.0.0.3', 'fd00::3']) for (const port of [80, 8080]) expect(verdict(e, ep, peer, dir, port), `${ep} ${dir} ${peer}:${port}`).toBe('deny'); };
    all('shop/web');
    e.apply([{ type: 'upsertPod', pod: { ...web, labels: { app: 'web', v: '2' } }, local: true }]);
    all('shop/web');
    const other = mkPod('api', ['10.0.0.5', 'fd00::5']);
    e.apply([{ type: 'upsertPod', pod: other, local: true }, { type: 'upsertNamespace', name: 'shop', labels: { team: 'b' } }]);
    all('shop/web');
    all('shop/api');
    // The guard: read as written, the same probes allow.
    e.apply([{ type: 'upsertPod', pod: db }]);
    expect(verdict(e, 'shop/api', '10.0.0.3', 'egress')).toBe('allow');
  });
});

describe('27o: a rebuild after an internal error keeps a pod fail-closed', () => {
  it('the rebuilt engine holds it at the unallocated number, denied both ways, and the failed transaction changed nothing', () => {
    let fail = false;
    const e = new Engine({ stack: 'dual', identitySource: 'external', faultHook: (p) => { if (fail && p === 'acquireIdentity') throw new Error('injected'); } });
    e.apply([ns, { type: 'upsertIdentity', id: 300, labels: labelsOf(web) }, { type: 'upsertIdentity', id: 301, labels: labelsOf(db) }, { type: 'upsertPod', pod: web, local: true }, { type: 'upsertPolicy', policy: allowAll }, { type: 'upsertPod', pod: closedDb, local: false }]);
    e.apply([{ type: 'upsertEndpoint', namespace: 'shop', name: 'db', identity: 301, ips: [parseIp('10.0.0.3'), parseIp('fd00::3')] }]);
    fail = true;
    expect(() => e.apply([{ type: 'upsertPod', pod: mkPod('api', ['10.0.0.5', 'fd00::5']) }])).toThrow();
    fail = false;
    for (const ip of ['10.0.0.3', 'fd00::3']) expect(e.identityOfIp(parseIp(ip))).toBe(UNALLOCATED_POD_IDENTITY);
    for (const dir of ['ingress', 'egress'] as const) expect(verdict(e, 'shop/web', 'fd00::3', dir)).toBe('deny');
    e.apply([{ type: 'upsertPod', pod: mkPod('api', ['10.0.0.5', 'fd00::5']) }]);
    expect(verdict(e, 'shop/web', '10.0.0.3', 'egress')).toBe('deny');
  });
});
