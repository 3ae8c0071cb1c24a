import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { endpointMaps } from '../../src/harness/cluster-sync.js';
import { parseIp } from '../../src/model/cidr.js';
import { namespaceWithDefaults, Pod } from '../../src/model/cluster.js';
import { podIdentityLabels, securityLabels, UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { PRECEDENCE_STAND_IN_DENY } from '../../src/model/policy-map.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { poison } from './poison.js';

/*
 * Finding 2002 (docs/attack-findings-26a.md, fixed in 26b): with external identities a pod whose label set has no id
 * (a namespace relabel before the new set's CiliumIdentity exists, a CiliumIdentity deleted while its pods run, a pod
 * read before its identity) was 0 in the ipcache, which every wildcard allow (`fromEntities: [all]`, port-only rules,
 * an endpoint without policy) admits, past a deny that selects the pod under its old and its new labels. Cilium's
 * ipcache keeps the pod's CiliumEndpoint number (pkg/k8s/watchers/cilium_endpoint.go `endpointUpdated`, status.identity.id),
 * which distill does not read; distill fails closed instead: the pod's address is UNALLOCATED_POD_IDENTITY, which
 * every local map denies in both directions above every tier while some pod holds it.
 */
const nsEvent = (name: string, labels: Record<string, string> = {}): EngineEvent => ({ type: 'upsertNamespace', name, labels });
const mkPod = (namespace: string, name: string, ip: string): Pod => ({ namespace, name, labels: { app: name }, ip: parseIp(ip), serviceAccount: 'default', ports: [] });
const web = mkPod('shop', 'web', '10.0.0.2');
const other = mkPod('shop', 'other', '10.0.0.3');
const db = mkPod('data', 'db', '10.0.1.4');
const cache = mkPod('data', 'cache', '10.0.1.5');
const identity = (id: number, p: Pod, nsLabels: Record<string, string> = {}): EngineEvent => ({
  type: 'upsertIdentity',
  id,
  labels: securityLabels(podIdentityLabels(p, namespaceWithDefaults(p.namespace, nsLabels).labels)),
});
const [denyDb] = parseManifestFile(
  `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [all]}]
  ingressDeny: [{fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: data, app: db}}]}]
  egress: [{toEntities: [all]}]
  egressDeny: [{toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: data, app: db}}]}]
`,
  'web.yaml',
);
const start: EngineEvent[] = [
  nsEvent('shop'),
  nsEvent('data'),
  identity(300, web),
  identity(301, other),
  identity(303, db),
  identity(304, cache),
  { type: 'upsertPod', pod: web, local: true },
  { type: 'upsertPod', pod: other, local: true },
  { type: 'upsertPod', pod: db },
  { type: 'upsertPod', pod: cache },
  { type: 'upsertPolicy', policy: denyDb! },
];

/** An endpoint's verdict for a packet from / to `ip` on TCP/80, as the datapath takes it: the ipcache, then the map. */
function verdict(e: Engine, ep: string, ip: string, d: 'ingress' | 'egress'): 'allow' | 'deny' {
  const hit = e.lookup(ep, e.identityOfIp(parseIp(ip)), d, 6, 80);
  return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
}
const both = (e: Engine, ep: string, ip: string): string => `${verdict(e, ep, ip, 'ingress')}/${verdict(e, ep, ip, 'egress')}`;
/** The map keys of the unallocated number, per endpoint. */
const unallocatedKeys = (e: Engine): [string, string[]][] =>
  [...endpointMaps(e)].map(([ep, m]) => [ep, [...m.keys()].filter((k) => k.startsWith(`${UNALLOCATED_POD_IDENTITY}/`)).sort()]);
function kernelView(e: Engine): unknown {
  return { maps: [...endpointMaps(e)].map(([ep, m]) => [ep, [...m.keys()].sort().map((k) => `${k} ${JSON.stringify(m.get(k)?.entry)}`)]), ipcache: e.ipcache() };
}

describe('2002: a pod whose labels have no external identity is denied both ways by every local map', () => {
  it('a namespace relabel before the new id exists: web still denies db, in both directions', () => {
    const e = new Engine({ identitySource: 'external' });
    e.apply(start);
    expect(both(e, 'shop/web', '10.0.1.4')).toBe('deny/deny');
    expect(both(e, 'shop/web', '10.0.1.5')).toBe('allow/allow');
    e.apply([nsEvent('data', { team: 'x' })]);
    // Both data pods have no id now: the unallocated number, never 0 (which web's wildcard allow admits).
    expect(e.identityOfIp(parseIp('10.0.1.4'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(both(e, 'shop/web', '10.0.1.4')).toBe('deny/deny');
    // Stricter than Cilium in the window: cache too, and other (no policy: default allow) denies them as well.
    expect(both(e, 'shop/web', '10.0.1.5')).toBe('deny/deny');
    expect(both(e, 'shop/other', '10.0.1.4')).toBe('deny/deny');
    for (const ep of ['shop/web', 'shop/other']) {
      for (const d of ['ingress', 'egress'] as const) {
        const hit = e.lookup(ep, UNALLOCATED_POD_IDENTITY, d, 17, 53);
        expect(hit?.entry).toMatchObject({ deny: true, precedence: PRECEDENCE_STAND_IN_DENY });
      }
    }
    expect(e.identityLabels(UNALLOCATED_POD_IDENTITY)).toEqual([{ source: 'reserved', key: 'unallocated-identity', value: '' }]);
    // The new ids arrive: db is denied by its labels, cache allowed, and the unallocated entries are gone.
    e.apply([identity(310, db, { team: 'x' })]);
    expect(both(e, 'shop/web', '10.0.1.4')).toBe('deny/deny');
    expect(both(e, 'shop/web', '10.0.1.5')).toBe('deny/deny');
    e.apply([identity(311, cache, { team: 'x' })]);
    expect(both(e, 'shop/web', '10.0.1.5')).toBe('allow/allow');
    expect(unallocatedKeys(e)).toEqual([['shop/other', []], ['shop/web', []]]);
  });

  it('the deny entries exist exactly while some pod holds the number, and equal a rebuild from the state', () => {
    const e = new Engine({ identitySource: 'external' });
    const withDeny = [['shop/other', [`${UNALLOCATED_POD_IDENTITY}/egress/0/0/0`, `${UNALLOCATED_POD_IDENTITY}/ingress/0/0/0`]], ['shop/web', [`${UNALLOCATED_POD_IDENTITY}/egress/0/0/0`, `${UNALLOCATED_POD_IDENTITY}/ingress/0/0/0`]]];
    e.apply(start);
    expect(unallocatedKeys(e)).toEqual([['shop/other', []], ['shop/web', []]]);
    const steps: EngineEvent[][] = [
      [{ type: 'deleteIdentity', id: 303 }],
      [{ type: 'deleteIdentity', id: 304 }],
      [identity(303, db)],
      [{ type: 'deletePod', namespace: 'data', name: 'cache' }],
    ];
    const held = [true, true, true, false];
    const history: EngineEvent[] = [...start];
    steps.forEach((events, i) => {
      e.apply(events);
      history.push(...events);
      expect(unallocatedKeys(e)).toEqual(held[i] ? withDeny : [['shop/other', []], ['shop/web', []]]);
      // History-free: an engine given the same events in one batch has the same maps and ipcache.
      const twin = new Engine({ identitySource: 'external' });
      twin.apply(history);
      expect(kernelView(e)).toEqual(kernelView(twin));
    });
  });

  it('a new local endpoint populated while the number is held gets the deny; a refused transaction changes nothing', () => {
    const e = new Engine({ identitySource: 'external', mapCapacity: 160 });
    e.apply(start);
    const third = mkPod('shop', 'third', '10.0.0.9');
    e.apply([{ type: 'deleteIdentity', id: 303 }, identity(305, third), { type: 'upsertPod', pod: third, local: true }]);
    expect(both(e, 'shop/third', '10.0.1.4')).toBe('deny/deny');
    // A later endpoint, populated while the number is held already.
    const fourth = mkPod('shop', 'fourth', '10.0.0.10');
    e.apply([identity(306, fourth), { type: 'upsertPod', pod: fourth, local: true }]);
    expect(both(e, 'shop/fourth', '10.0.1.4')).toBe('deny/deny');
    expect(both(e, 'shop/fourth', '10.0.1.5')).toBe('allow/allow');
    // Refused (a policy overflowing every map) in each direction: the pod gets its id back, or another pod loses one.
    for (const events of [[identity(303, db)], [{ type: 'deleteIdentity', id: 304 } as EngineEvent], [nsEvent('data', { team: 'y' })]]) {
      const before = kernelView(e);
      expect(() => e.apply([...events, poison(6)])).toThrow(MapCapacityError);
      expect(kernelView(e)).toEqual(before);
    }
    e.apply([identity(303, db)]);
    expect(unallocatedKeys(e)).toEqual([['shop/fourth', []], ['shop/other', []], ['shop/third', []], ['shop/web', []]]);
    expect(both(e, 'shop/third', '10.0.1.4')).toBe('allow/allow');
  });
});
