import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { policyRefKey, RuleOrigin } from '../../src/model/rules.js';
import type { PolicyKey } from '../../src/model/policy-map.js';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

// Equal rule units of different policies (or of one) make one contribution together
// (policy-resolver.ts UnitShare); every rule stays visible to explain, selectors and overflow
// diagnostics, and the leader leaving changes no map.

let ip = 2;
const pod = (name: string, labels: Record<string, string>, local: boolean): EngineEvent => {
  ip++;
  const p: Pod = { namespace: 'prod', name, labels, ip: parseIp(`10.244.0.${ip}`), serviceAccount: 'default', ports: [] };
  return { type: 'upsertPod', pod: p, local };
};
const policy = (yaml: string): EngineEvent => ({ type: 'upsertPolicy', policy: parseManifestFile(yaml, 'test.yaml')[0]! });
const del = (name: string): EngineEvent => ({ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'prod', name } });
const allowClients = (name: string, port = 80, extra = '') =>
  policy(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {role: client}}]
    toPorts: [{ports: [{port: "${port}", protocol: TCP}]${extra}}]
`);
const rules = (origins: readonly (RuleOrigin | null)[]): string[] => origins.map((o) => (o ? `${policyRefKey(o.policy)} ${o.path}` : 'default')).sort();
const CLIENTS = 20;

function setup(copies: number): { e: Engine; key: PolicyKey } {
  const e = new Engine();
  e.apply([{ type: 'upsertNamespace', name: 'prod', labels: {} }, pod('web', { app: 'web' }, true), ...Array.from({ length: CLIENTS }, (_, i) => pod(`c${i}`, { role: 'client', n: `${i}` }, false))]);
  for (let i = 0; i < copies; i++) e.apply([allowClients(`p${i}`)]);
  const client = e.identityOfPod('prod/c3')!;
  return { e, key: { identity: client, direction: 'ingress', protocol: 6, port: 80, portPrefixLen: 16 } };
}

describe('equal rule units share one contribution', () => {
  it('a copy of a rule costs no map work; explain names every copy', () => {
    const { e, key } = setup(1);
    const first = e.stats().mapEntriesVisited;
    expect(first).toBeGreaterThanOrEqual(CLIENTS);
    const copy = e.apply([allowClients('p1'), allowClients('p2')]);
    expect(copy.deltas).toEqual([]);
    expect(copy.work.mapEntriesVisited).toBe(0);
    // Per copy: its rule unit and its enforcement adopted by the endpoint's identity.
    expect(copy.work.policyResolutions).toBe(4);
    expect(rules(e.contributors('prod/web', key).map((c) => c.origin))).toEqual(['CiliumNetworkPolicy/prod/p0 spec.ingress[0]', 'CiliumNetworkPolicy/prod/p1 spec.ingress[0]', 'CiliumNetworkPolicy/prod/p2 spec.ingress[0]']);
    expect(e.policyOf('prod/web').map((r) => r.peers.length)).toEqual([CLIENTS, CLIENTS, CLIENTS]);
    const peerSel = e.selectors().find((s) => s.kind === 'peer');
    expect(peerSel).toMatchObject({ users: 3, policies: ['CiliumNetworkPolicy/prod/p0', 'CiliumNetworkPolicy/prod/p1', 'CiliumNetworkPolicy/prod/p2'] });
  });

  it('the leader leaving changes no map; the next copy names the entries; the last one takes them', () => {
    const { e, key } = setup(3);
    const gone = e.apply([del('p0')]);
    expect(gone.deltas).toEqual([]);
    expect(gone.work.mapEntriesVisited).toBe(0);
    expect(rules(e.contributors('prod/web', key).map((c) => c.origin))).toEqual(['CiliumNetworkPolicy/prod/p1 spec.ingress[0]', 'CiliumNetworkPolicy/prod/p2 spec.ingress[0]']);
    expect(e.selectors().find((s) => s.kind === 'peer')).toMatchObject({ users: 2, policies: ['CiliumNetworkPolicy/prod/p1', 'CiliumNetworkPolicy/prod/p2'] });
    // A copy coming back after its leader left joins the share again.
    expect(e.apply([allowClients('p0')]).deltas).toEqual([]);
    expect(e.apply([del('p1'), del('p2')]).deltas).toEqual([]);
    expect(rules(e.contributors('prod/web', key).map((c) => c.origin))).toEqual(['CiliumNetworkPolicy/prod/p0 spec.ingress[0]']);
    const last = e.apply([del('p0')]);
    expect(last.deltas.filter((d) => d.op === 'delete')).toHaveLength(CLIENTS);
    expect(e.selectors().filter((s) => s.kind === 'peer')).toEqual([]);
  });

  it('two equal rules of one policy share too, and a changed copy leaves the share', () => {
    const { e, key } = setup(0);
    const twice = e.apply([
      policy(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: twice, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {role: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {role: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`),
    ]);
    expect(twice.work.mapEntriesVisited).toBe(setup(0).e.apply([allowClients('once')]).work.mapEntriesVisited);
    expect(rules(e.contributors('prod/web', key).map((c) => c.origin))).toEqual(['CiliumNetworkPolicy/prod/twice spec.ingress[0]', 'CiliumNetworkPolicy/prod/twice spec.ingress[1]']);
    e.apply([allowClients('p0'), allowClients('p1', 81)]);
    expect(rules(e.contributors('prod/web', key).map((c) => c.origin))).toHaveLength(3);
    expect(rules(e.contributors('prod/web', { ...key, port: 81 }).map((c) => c.origin))).toEqual(['CiliumNetworkPolicy/prod/p1 spec.ingress[0]']);
  });

  it('overflow diagnostics name every copy', () => {
    const e = new Engine({ mapCapacity: CLIENTS + 2 });
    e.apply([{ type: 'upsertNamespace', name: 'prod', labels: {} }, pod('web', { app: 'web' }, true), ...Array.from({ length: CLIENTS }, (_, i) => pod(`c${i}`, { role: 'client', n: `${i}` }, false))]);
    e.apply([allowClients('p0'), allowClients('p1')]);
    let err: unknown;
    try {
      e.apply([allowClients('p2', 90), allowClients('p3', 90)]);
    } catch (x) {
      err = x;
    }
    expect(err).toBeInstanceOf(MapCapacityError);
    expect((err as MapCapacityError).topContributors.map((c) => c.entries)).toEqual([CLIENTS, CLIENTS, CLIENTS]);
    const all = ['p0', 'p1', 'p2', 'p3'].map((p) => `CiliumNetworkPolicy/prod/${p} spec.ingress[0]`);
    for (const c of (err as MapCapacityError).topContributors) expect(all).toContain(c.rule);
    expect(new Set((err as MapCapacityError).topContributors.map((c) => c.rule)).size).toBe(3);
  });

  it('L7: every copy allows the request; the leader leaving changes no L7 row', () => {
    const l7 = ', rules: {http: [{method: GET, path: /public}]}';
    const { e } = setup(0);
    e.apply([allowClients('p0', 80, l7), allowClients('p1', 80, l7)]);
    const client = e.identityOfPod('prod/c3')!;
    const proxyPort = e.lookup('prod/web', client, 'ingress', 6, 80)!.entry.proxyPort;
    const request = { http: { method: 'GET', path: '/public', host: 'web', headers: {} } };
    expect(rules(e.l7AllowedBy('prod/web', proxyPort, client, request, 80))).toEqual(['CiliumNetworkPolicy/prod/p0 spec.ingress[0]', 'CiliumNetworkPolicy/prod/p1 spec.ingress[0]']);
    const gone = e.apply([del('p0')]);
    expect([gone.deltas, gone.l7Deltas]).toEqual([[], []]);
    expect(rules(e.l7AllowedBy('prod/web', proxyPort, client, request, 80))).toEqual(['CiliumNetworkPolicy/prod/p1 spec.ingress[0]']);
  });
});
