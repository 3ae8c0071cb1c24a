/**
 * One generator of hostile cluster histories mixing every input the engine takes (attack round 9d):
 * gen.ts's NetworkPolicy / CNP / CCNP / ClusterNetworkPolicy operations (L3/L4, deny, named ports,
 * ranges, ICMP, CIDRSet, entities, L7, Pass, same priorities, networks) plus toFQDNs and DNS rules,
 * DNS answers (with and without a server) and clock steps, ClusterNetworkPolicy `nodes` and
 * `domainNames` peers, nodes with labels and health addresses, pods moved between namespaces,
 * re-added, re-addressed onto another pod's address, and events no model accepts (refused batches).
 */
import fc from 'fast-check';
import { parseIp } from '../../src/model/cidr.js';
import { ClusterState, upsertExternal } from '../../src/model/cluster.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { INITIAL_CLUSTER, op, Op, toEvent } from './gen.js';

const NAMESPACES = ['n0', 'n1', 'n2'];
const POD_NAMES = ['p0', 'p1', 'p2', 'p3'];
const DNS_NAMES = ['a.example.com', 'b.example.com', 'x.cilium.io'];
/** Learnt addresses: fresh ones, one inside the CIDR rules' 192.168.1.0/24 (ext-lan's), one a pod's (n0/p1). */
const LEARNT_IPS = ['198.51.100.1', '198.51.100.2', '203.0.113.7', '192.168.1.5', '10.244.0.3'];
/** Node addresses inside the CIDR rules' prefixes, outside every pod's; health addresses of their own. */
const NODE_IPS: readonly (readonly string[])[] = [['192.168.1.7'], ['192.168.1.8', '2001:db8::8'], ['10.1.2.9']];
const HEALTH_IPS = ['10.250.0.1', '10.250.0.2'];

/** Flows also go to every learnt and health address (externals named by the address). */
export const ALL_INITIAL: ClusterState = [...LEARNT_IPS, ...HEALTH_IPS]
  .filter((ip) => !ip.startsWith('10.244.') && !ip.startsWith('192.168.1.5'))
  .reduce((s, ip) => upsertExternal(s, { name: ip, ip: parseIp(ip) }), INITIAL_CLUSTER);

export type AllOp =
  | { readonly k: 'base'; readonly op: Op; readonly ip: number }
  | { readonly k: 'move'; readonly name: string; readonly from: string; readonly to: string; readonly labels: Record<string, string>; readonly ports: number; readonly local: boolean }
  | { readonly k: 'readdNs'; readonly name: string; readonly labels: Record<string, string> }
  | { readonly k: 'node'; readonly name: string; readonly ips: number; readonly local: boolean; readonly labels?: Record<string, string>; readonly health: number }
  | { readonly k: 'dns'; readonly pod: string; readonly name: string; readonly ips: string[]; readonly ttl: number; readonly server?: readonly [string, number] }
  | { readonly k: 'time'; readonly seconds: number }
  | { readonly k: 'manifest'; readonly manifest: Record<string, unknown> }
  | { readonly k: 'bad'; readonly which: number };

const podSel = fc.constantFrom<Record<string, unknown>>({}, { matchLabels: { app: 'web' } }, { matchLabels: { tier: 'back' } }, { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['db'] }] });
const fqdnSel = fc.constantFrom<Record<string, unknown>>({ matchName: 'a.example.com' }, { matchPattern: '*.example.com' }, { matchPattern: '*' }, { matchPattern: '*.cilium.io' });
const dnsRule = fc.constantFrom<Record<string, unknown>>(
  { toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }] },
  { toEndpoints: [{ matchLabels: { app: 'web' } }], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*.example.com' }] } }] },
  { toCIDR: ['8.8.8.8/32'], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchName: 'x.cilium.io' }, { matchPattern: 'a.*.com' }] } }] },
  { toEntities: ['world'], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }] }] },
);
const fqdnRule = fc.record({ toFQDNs: fc.uniqueArray(fqdnSel, { minLength: 1, maxLength: 2 }), toPorts: fc.constantFrom<unknown[]>([], [{ ports: [{ port: '443', protocol: 'TCP' }] }], [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{ method: 'GET' }] } }]) });
const fqdnPolicy = fc.record({
  apiVersion: fc.constant('cilium.io/v2'),
  kind: fc.constant('CiliumNetworkPolicy'),
  metadata: fc.record({ name: fc.constantFrom('cnp-a', 'fq-a'), namespace: fc.constantFrom(...NAMESPACES) }),
  spec: fc.record({ endpointSelector: podSel, egress: fc.array(fc.oneof(dnsRule, fqdnRule), { minLength: 1, maxLength: 3 }), egressDeny: fc.constantFrom<unknown[]>([], [{ toCIDR: ['198.51.100.0/30'] }]) }),
});
const ccnpFqdn = fc.record({
  apiVersion: fc.constant('cilium.io/v2'),
  kind: fc.constant('CiliumClusterwideNetworkPolicy'),
  metadata: fc.constant({ name: 'ccnp-fq' }),
  spec: fc.record({ endpointSelector: podSel, egress: fc.array(fc.oneof(dnsRule, fqdnRule), { minLength: 1, maxLength: 2 }) }),
});
const nodePeer = fc.constantFrom<Record<string, unknown>>({ nodes: {} }, { nodes: { matchLabels: { pool: 'gpu' } } }, { nodes: { matchExpressions: [{ key: 'pool', operator: 'NotIn', values: ['gpu'] }] } }, { domainNames: ['a.example.com'] }, { domainNames: ['*.cilium.io', 'b.example.com'] }, { networks: ['198.51.100.0/24'] });
const tierNodes = fc.record({
  apiVersion: fc.constant('policy.networking.k8s.io/v1alpha2'),
  kind: fc.constant('ClusterNetworkPolicy'),
  metadata: fc.constantFrom({ name: 'cnp-t0' }, { name: 'cnp-nodes' }),
  spec: fc.record({
    tier: fc.constantFrom('Admin', 'Baseline'),
    priority: fc.constantFrom(1, 20, 30),
    subject: fc.constantFrom<Record<string, unknown>>({ namespaces: {} }, { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'web' } } } }),
    egress: fc.array(
      fc.record({ action: fc.constantFrom('Accept', 'Deny', 'Pass'), to: fc.array(nodePeer, { minLength: 1, maxLength: 2 }), protocols: fc.constantFrom<unknown[] | undefined>(undefined, [{ tcp: { destinationPort: { number: 443 } } }], [{ destinationNamedPort: 'http' }]) }, { requiredKeys: ['action', 'to'] }),
      { minLength: 1, maxLength: 3 },
    ),
  }),
});

/** Some combinations the API refuses (a named port with a networks, nodes or domainNames peer): not generated. */
function parses(m: Record<string, unknown>): boolean {
  try {
    parseManifest(m, 'gen-all#1');
    return true;
  } catch {
    return false;
  }
}

const ns = fc.constantFrom(...NAMESPACES);
const nsLabels = fc.record({ team: fc.constantFrom('a', 'b') }, { requiredKeys: [] });
const podLabels = fc.record({ app: fc.constantFrom('web', 'db', 'api'), tier: fc.constantFrom('front', 'back') }, { requiredKeys: [] });
const podKey = fc.tuple(ns, fc.constantFrom(...POD_NAMES)).map(([n, p]) => `${n}/${p}`);

export const allOp: fc.Arbitrary<AllOp> = fc.oneof(
  { weight: 14, arbitrary: fc.record({ k: fc.constant('base' as const), op, ip: fc.constantFrom(0, 0, 0, 1, 2) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('move' as const), name: fc.constantFrom(...POD_NAMES), from: ns, to: ns, labels: podLabels, ports: fc.nat({ max: 4 }), local: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('readdNs' as const), name: ns, labels: nsLabels }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('node' as const), name: fc.constantFrom('n1', 'n2'), ips: fc.nat({ max: NODE_IPS.length - 1 }), local: fc.boolean(), labels: fc.constantFrom({ pool: 'gpu' }, { pool: 'cpu' }), health: fc.nat({ max: HEALTH_IPS.length }) }, { requiredKeys: ['k', 'name', 'ips', 'local', 'health'] }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('dns' as const), pod: podKey, name: fc.constantFrom(...DNS_NAMES), ips: fc.subarray(LEARNT_IPS, { minLength: 1, maxLength: 2 }), ttl: fc.integer({ min: 0, max: 5 }), server: fc.option(fc.constantFrom<readonly [string, number]>(['10.244.0.2', 53], ['8.8.8.8', 53], ['198.51.100.1', 53]), { nil: undefined }) }, { requiredKeys: ['k', 'pod', 'name', 'ips', 'ttl'] }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('time' as const), seconds: fc.integer({ min: 0, max: 4 }) }) },
  { weight: 4, arbitrary: fc.oneof(fqdnPolicy, ccnpFqdn, tierNodes).filter(parses).map((m) => ({ k: 'manifest' as const, manifest: m as Record<string, unknown> })) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('bad' as const), which: fc.nat({ max: 3 }) }) },
);

/** Addresses a pod op may take instead of its own: its own, one p3 of n0 owns, one p0 of n1 owns. */
const POD_IPS = [undefined, '10.244.0.5', '10.244.1.2'];

function podAt(e: EngineEvent, ip: string | undefined): EngineEvent {
  return e.type === 'upsertPod' && ip !== undefined ? { ...e, pod: { ...e.pod, ip: parseIp(ip) } } : e;
}

/** Events no model accepts (each refuses its whole batch): absent objects, a pod name the API refuses. */
const BAD: readonly EngineEvent[] = [
  { type: 'deletePod', namespace: 'n0', name: 'ghost' },
  { type: 'deleteNode', name: 'ghost' },
  { type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'n1', name: 'ghost' } },
  { type: 'upsertPod', pod: { namespace: 'n0', name: 'Bad_Name', labels: {}, ip: parseIp('10.244.7.7'), serviceAccount: 'default', ports: [] }, local: true },
];

export function toEvents(o: AllOp): EngineEvent[] {
  switch (o.k) {
    case 'base':
      return [podAt(toEvent(o.op), POD_IPS[o.ip])];
    case 'move': {
      const ip = parseIp(`10.244.${NAMESPACES.indexOf(o.from)}.${POD_NAMES.indexOf(o.name) + 2}`);
      const ports = toEvent({ k: 'pod', ns: o.to, name: o.name, labels: o.labels, ports: o.ports, local: o.local });
      return [{ type: 'deletePod', namespace: o.from, name: o.name }, podAt(ports, ip.text)];
    }
    case 'readdNs':
      return [{ type: 'deleteNamespace', name: o.name }, { type: 'upsertNamespace', name: o.name, labels: o.labels }];
    case 'node': {
      const health = HEALTH_IPS[o.health];
      return [{ type: 'upsertNode', name: o.name, ips: (NODE_IPS[o.ips] ?? []).map(parseIp), local: o.local, ...(o.labels ? { labels: o.labels } : {}), ...(health ? { health: [parseIp(health)] } : {}) }];
    }
    case 'dns':
      return [{ type: 'dnsResponse', endpoint: o.pod, name: o.name, ips: o.ips.map(parseIp), ttl: o.ttl, ...(o.server ? { server: { ip: parseIp(o.server[0]), port: o.server[1] } } : {}) }];
    case 'time':
      return [{ type: 'advanceTime', seconds: o.seconds }];
    case 'manifest':
      return [{ type: 'upsertPolicy', policy: parseManifest(o.manifest, 'gen-all#1') }];
    case 'bad':
      return [BAD[o.which] as EngineEvent];
  }
}

/** The first transaction of every history: the namespaces and a local and a remote pod in each, so later DNS answers and deletes find them. */
const base = (o: Op): AllOp => ({ k: 'base', op: o, ip: 0 });
export const SETUP: readonly AllOp[] = NAMESPACES.flatMap((n, i) => [
  base({ k: 'ns', name: n, labels: i === 0 ? { team: 'a' } : {} }),
  base({ k: 'pod', ns: n, name: 'p0', labels: { app: 'web' }, ports: 1, local: true }),
  base({ k: 'pod', ns: n, name: 'p1', labels: { app: 'db', tier: 'back' }, ports: 3, local: i !== 1 }),
]);

/** Does the batch hold an event no model accepts? */
export const hasBad = (ops: readonly AllOp[]): boolean => ops.some((o) => o.k === 'bad');
