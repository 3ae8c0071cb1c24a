import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { EMPTY_CLUSTER, upsertExternal, type ClusterState } from '../../src/model/cluster.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';
import { judgeHistory, serverObjects } from './judged-history.js';
import { objectHistory, type Objects } from './object-history.js';

/*
 * 31z: the split step of 31b (finding 2916 = 3020) against an engine that refuses batches of several objects at will
 * (the mirror's guarantee holds whichever batches the engine refuses: a full map refuses by what the rest holds), and
 * one of 12-entry maps. Random steps of one to four objects of mixed kinds: pods of namespace y (labels, addresses
 * reused between them, deleted), y's labels, the API server's addresses, a remote node, CiliumNetworkPolicies
 * (allows and denies by labels, CIDR and entity), a NetworkPolicy whose policyTypes change, Admin ClusterNetworkPolicies
 * with Accept, Deny and Pass rules, a Baseline one. After every committed batch of a step, no flow of x/server the maps
 * allow is denied by both the input before the step and the input after it (the reference evaluator).
 */
const RUNS = fcRuns(process.env.DISTILL_LONG ? 3000 : 600);
const IPS = ['10.0.1.1', '10.0.1.2', '10.0.1.3'] as const;
const PEERS = [...IPS, '172.16.0.2', '192.0.2.1'].map((ip) => ({ name: `at-${ip}`, ip }));
const ROLES = ['a', 'b'] as const;

type Op =
  | { readonly k: 'pod'; readonly n: 1 | 2; readonly role: 'a' | 'b'; readonly ip: number; readonly gone: boolean; readonly http?: 8080 | 8081 }
  | { readonly k: 'group'; readonly net: 0 | 1 | null }
  | { readonly k: 'ns'; readonly team: 'a' | 'b' | null }
  | { readonly k: 'api'; readonly n: 1 | 2; readonly ips: readonly number[] }
  | { readonly k: 'node'; readonly role: 'a' | 'b'; readonly gone: boolean }
  | { readonly k: 'cnp'; readonly which: 'to-net' | 'allow-role' | 'deny-role' | 'deny-api' | 'to-world' | 'deny-group' | 'deny-http'; readonly role: 'a' | 'b'; readonly on: boolean }
  | { readonly k: 'np'; readonly types: 'none' | 'Egress' | 'Ingress' | 'both'; readonly team: 'a' | 'b' }
  | { readonly k: 'tier'; readonly which: 'anp10' | 'anp20' | 'banp'; readonly action: 'Accept' | 'Deny' | 'Pass' | null; readonly role: 'a' | 'b' | null; readonly dir: 'ingress' | 'egress' };

const role = fc.constantFrom(...ROLES);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('pod' as const), n: fc.constantFrom(1 as const, 2 as const), role, ip: fc.nat(2), gone: fc.boolean(), http: fc.constantFrom(8080 as const, 8081 as const) }, { requiredKeys: ['k', 'n', 'role', 'ip', 'gone'] }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('group' as const), net: fc.constantFrom(0 as const, 1 as const, null) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('ns' as const), team: fc.constantFrom('a' as const, 'b' as const, null) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('api' as const), n: fc.constantFrom(1 as const, 2 as const), ips: fc.subarray([0, 1, 2, 4]) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('node' as const), role, gone: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('cnp' as const), which: fc.constantFrom('to-net' as const, 'allow-role' as const, 'deny-role' as const, 'deny-api' as const, 'to-world' as const, 'deny-group' as const, 'deny-http' as const), role, on: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('np' as const), types: fc.constantFrom('none' as const, 'Egress' as const, 'Ingress' as const, 'both' as const), team: role }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('tier' as const), which: fc.constantFrom('anp10' as const, 'anp20' as const, 'banp' as const), action: fc.constantFrom('Accept' as const, 'Deny' as const, 'Pass' as const, null), role: fc.constantFrom('a' as const, 'b' as const, null), dir: fc.constantFrom('ingress' as const, 'egress' as const) }) },
);

const { item, set: setObject, inputState: readInput } = objectHistory();
const NS_KEY = 'k8s:io.kubernetes.pod.namespace';
const cnp = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const podObject = (n: number, r: string, ip: string, http?: number) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `p${n}`, namespace: 'y', labels: { role: r } }, spec: { nodeName: 'n2', containers: [{ name: 'c', image: 'i', ...(http === undefined ? {} : { ports: [{ name: 'http', containerPort: http, protocol: 'TCP' }] }) }] }, status: { phase: 'Running', podIP: ip } });
const NETS = ['10.0.1.0/30', '10.0.1.2/31'];
const groupObject = (net: number) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: { name: 'g', labels: { env: 'a' } }, spec: { externalCIDRs: [NETS[net]] } });
const apiSlice = (ips: readonly string[], n: 1 | 2 = 1) => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: { name: n === 1 ? 'kubernetes' : 'kubernetes-2', namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } }, endpoints: ips.map((a) => ({ addresses: [a] })), ports: [{ name: 'https', port: 6443, protocol: 'TCP' }] });
const rolePeer = (r: string) => ({ matchLabels: { [NS_KEY]: 'y', role: r } });

function cnpOf(o: Extract<Op, { k: 'cnp' }>): Record<string, unknown> {
  switch (o.which) {
    case 'to-net':
      return cnp(o.which, { egress: [{ toCIDR: ['10.0.0.0/8', '192.0.2.0/24'] }] });
    case 'to-world':
      return cnp(o.which, { egress: [{ toEntities: ['world'] }], ingress: [{ fromEntities: ['world'] }] });
    case 'allow-role':
      return cnp(o.which, { egress: [{ toEndpoints: [rolePeer(o.role)] }], ingress: [{ fromEndpoints: [rolePeer(o.role)] }] });
    case 'deny-role':
      return cnp(o.which, { egressDeny: [{ toEndpoints: [rolePeer(o.role)] }], ingressDeny: [{ fromEndpoints: [rolePeer(o.role)] }] });
    case 'deny-api':
      return cnp(o.which, { egressDeny: [{ toEntities: ['kube-apiserver'] }] });
    case 'deny-group':
      return cnp(o.which, { egressDeny: [{ toCIDRSet: [{ cidrGroupRef: 'g' }] }], ingressDeny: [{ fromCIDRSet: [{ cidrGroupRef: 'g' }] }] });
    case 'deny-http':
      return cnp(o.which, { egressDeny: [{ toEntities: ['all'], toPorts: [{ ports: [{ port: 'http', protocol: 'TCP' }] }] }] });
  }
}

function npOf(o: Extract<Op, { k: 'np' }>): Record<string, unknown> {
  const types = o.types === 'both' ? ['Ingress', 'Egress'] : o.types === 'none' ? [] : [o.types];
  const peer = { namespaceSelector: { matchLabels: { team: o.team } } };
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'np', namespace: 'x' }, spec: { podSelector: { matchLabels: { app: 'server' } }, policyTypes: types, ...(types.includes('Egress') ? { egress: [{ to: [peer] }] } : {}), ...(types.includes('Ingress') ? { ingress: [{ from: [peer] }] } : {}) } };
}

function tierOf(o: Extract<Op, { k: 'tier' }>): Record<string, unknown> {
  const action = o.which === 'banp' && o.action === 'Pass' ? 'Deny' : o.action;
  const peer = { pods: { namespaceSelector: {}, podSelector: o.role === null ? {} : { matchLabels: { role: o.role } } } };
  const rule = o.dir === 'egress' ? { action, to: [peer] } : { action, from: [peer] };
  const spec = { tier: o.which === 'banp' ? 'Baseline' : 'Admin', priority: o.which === 'anp20' ? 20 : 10, subject: { namespaces: { matchLabels: { 'kubernetes.io/metadata.name': 'x' } } }, [o.dir]: [rule] };
  return { apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: { name: o.which }, spec };
}

/**
 * The address a pod op asks for, or (held by the other pod or the API server) one it is free to take: two pods at one
 * address are a history the reference evaluator reads from the objects alone cannot know (the last writer owns it,
 * `ipOwner`). With no free one the pod keeps its address, or takes one no probe reads.
 */
function freeIp(objects: Objects, o: Extract<Op, { k: 'pod' }>): string {
  const other = objects.get(`p${3 - o.n}`);
  const taken = [(other?.status as { podIP?: string } | undefined)?.podIP, ...apiIps(objects)];
  const mine = (objects.get(`p${o.n}`)?.status as { podIP?: string } | undefined)?.podIP;
  return [IPS[o.ip]!, ...IPS].find((ip) => !taken.includes(ip)) ?? mine ?? `10.0.1.${4 + o.n}`;
}

/** The API server's addresses now; a pod and the API server at one address are left out as well (not judged here). */
function apiIps(objects: Objects): string[] {
  return ['api', 'api2'].flatMap((k) => ((objects.get(k)?.endpoints ?? []) as { addresses: string[] }[]).flatMap((e) => e.addresses));
}

const podIpsOf = (objects: Objects): string[] => ['p1', 'p2'].map((k) => (objects.get(k)?.status as { podIP?: string } | undefined)?.podIP).filter((ip): ip is string => ip !== undefined);

function applyOp(objects: Objects, o: Op): WatchItem {
  const set = (key: string, object: Record<string, unknown> | null): WatchItem => setObject(objects, key, object, () => cnp(key, {}));
  switch (o.k) {
    case 'pod':
      return set(`p${o.n}`, o.gone ? null : podObject(o.n, o.role, freeIp(objects, o), o.http));
    case 'group':
      return set('group', o.net === null ? null : groupObject(o.net));
    case 'ns':
      return set('ns/y', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'y', labels: o.team === null ? {} : { team: o.team } } });
    case 'api':
      return set(o.n === 1 ? 'api' : 'api2', apiSlice(o.ips.map((i) => PEERS[i]!.ip).filter((ip) => !podIpsOf(objects).includes(ip)), o.n));
    case 'node':
      return set('node', o.gone ? null : { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n2', labels: { role: o.role } }, status: { addresses: [{ type: 'InternalIP', address: '172.16.0.2' }] } });
    case 'cnp':
      return set(o.which, o.on ? cnpOf(o) : null);
    case 'np':
      return set('np', npOf(o));
    case 'tier':
      return set(o.which, o.action === null ? null : tierOf(o));
  }
}

function initial(): Objects {
  const objects: Objects = serverObjects();
  objects.set('only-ext', cnp('only-ext', { egress: [{ toCIDR: ['198.51.100.0/24'] }] }));
  objects.set('ns/y', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'y', labels: { team: 'a' } } });
  objects.set('p1', podObject(1, 'a', IPS[0]));
  objects.set('p2', podObject(2, 'b', IPS[1]));
  objects.set('api', apiSlice(['192.0.2.1']));
  objects.set('api2', apiSlice([], 2));
  objects.set('group', groupObject(0));
  return objects;
}

const inputState = (objects: Objects): ClusterState => readInput(objects, PEERS.reduce((st, p) => upsertExternal(st, { name: p.name, ip: parseIp(p.ip) }), EMPTY_CLUSTER), { cidrGroups: true });
const probes = PEERS.flatMap((p) => [...(['ingress', 'egress'] as const).map((dir) => ({ peer: p.name, ip: p.ip, dir, port: 80 })), { peer: p.name, ip: p.ip, dir: 'egress' as const, port: 8080 }]);
// With small maps a step is judged only when its input before fits them (`fitting`): an input no map of 12 entries
// holds may have no fail-closed form short of isolating x/server (32a's 3322 and 3323, 32v's 3622: a pod bringing the
// port name deny-http names, whose own and held forms both need the deny entry). The CIDR group changes in the steps
// again (32a left it fixed for 3322); the API server's addresses move since 32a (3265).
const judged = { n: 0 };
const steps = fc.array(fc.array(op, { minLength: 2, maxLength: 4 }), { minLength: 1, maxLength: 6 });

function run(mapCapacity: number, start: readonly Op[], ops: readonly (readonly Op[])[], refusals: readonly boolean[], fitting = false): number {
  const objects = initial();
  for (const o of start) applyOp(objects, o);
  const items = [...objects.values()].map((o) => item('ADDED', o));
  // The adversary refuses batches of several events by its list, then none (so every step ends with the mirror idle).
  let i = 0;
  const refuse = (events: readonly EngineEvent[]): boolean => events.length > 1 && (refusals[i++] ?? false);
  return judgeHistory({ mapCapacity, mirrorOptions: { cidrGroups: true }, start: items, steps: ops.map((step) => () => step.map((o) => applyOp(objects, o))), input: () => inputState(objects), probes, refusedKey: () => true, refuse, ...(fitting ? { fitting, judged } : {}) });
}

describe('31z: a split step never commits a part allowing what both inputs deny', { timeout: 600_000 }, () => {
  it('an engine refusing batches of several objects at will', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 8 }), steps, fc.array(fc.constantFrom(true, true, false), { minLength: 8, maxLength: 40 }), (start, ops, refusals) => {
        run(16384, start, ops, refusals);
      }),
      { numRuns: RUNS, ...fcReplay(20261231) },
    );
  });
  it('3362: a pod taking in a split step the address another leaves in it', () => {
    // p1 .1 → .3 and p2 .2 → .1 with a 10.0.0.0/8 allow: both held at .1, p1 written last owns it; its own form
    // left .1 world (the engine gives an address its last writer leaves to no other claimant) while p2 was held.
    const ns = (team: 'a' | 'b'): Op => ({ k: 'ns', team });
    const pod = (n: 1 | 2, ip: number): Op => ({ k: 'pod', n, role: 'a', ip, gone: false });
    const toNet = (on: boolean): Op => ({ k: 'cnp', which: 'to-net', role: 'a', on });
    const steps = [[ns('a'), pod(1, 2), toNet(true), pod(2, 0)], [toNet(false), toNet(false)]];
    const objects = initial();
    applyOp(objects, ns('b'));
    let i = 0;
    const refusals = [true, true, false, true, true, true, true, true];
    const refuse = (events: readonly EngineEvent[]): boolean => events.length > 1 && (refusals[i++] ?? false);
    judgeHistory({ mapCapacity: 16384, mirrorOptions: { cidrGroups: true }, start: [...objects.values()].map((o) => item('ADDED', o)), steps: steps.map((step) => () => step.map((o) => applyOp(objects, o))), input: () => inputState(objects), probes, refusedKey: () => true, refuse });
  });
  it('and maps of 12 entries (steps from an input that fits them)', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 8 }), steps, fc.array(fc.constantFrom(true, false, false), { maxLength: 20 }), (start, ops, refusals) => {
        run(12, start, ops, refusals, true);
      }),
      { numRuns: RUNS, ...fcReplay(20261232) },
    );
    // Most steps are judged (about 9 in 10 at 200 runs; a replayed path or a short run judges its few).
    if (process.env.DISTILL_PATH === undefined && RUNS >= 100) expect(judged.n).toBeGreaterThan(RUNS);
  });
});
