/**
 * Generators for engine property tests: small label and port pools, so that generated selectors
 * actually select generated pods and generated ports actually hit their container ports.
 */
import fc from 'fast-check';
import { parseIp } from '../../src/model/cidr.js';
import {
  ClusterState,
  EMPTY_CLUSTER,
  NODE_ROLE_ORDER,
  nodeAddresses,
  type NodeAddressRole,
  Pod,
  upsertExternal,
} from '../../src/model/cluster.js';
import type { ContainerPort, FlowProtocol } from '../../src/model/ports.js';
import type { PolicyKind } from '../../src/model/rules.js';
import type { L7Request } from '../../src/model/l7.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseManifest } from '../../src/policy/manifest.js';

const NAMESPACES = ['n0', 'n1', 'n2'];
const POD_NAMES = ['p0', 'p1', 'p2', 'p3'];

const PORT_SETS: readonly (readonly ContainerPort[])[] = [
  [],
  [{ name: 'http', port: 80, protocol: 'TCP' }],
  [{ name: 'http', port: 8080, protocol: 'TCP' }],
  [
    { name: 'dns', port: 53, protocol: 'UDP' },
    { name: 'http', port: 80, protocol: 'TCP' },
  ],
  [{ port: 443, protocol: 'TCP' }],
];

export const EXTERNALS = [
  { name: 'ext-lan', ip: parseIp('192.168.1.5') },
  { name: 'ext-dns', ip: parseIp('8.8.8.8') },
  { name: 'ext-ten', ip: parseIp('10.1.2.3') },
  { name: 'ext-v6', ip: parseIp('2001:db8::5') },
];

/** Probed (protocol, port) pairs: named-port numbers, range edges, ICMP echo. */
export const PROBE_PORTS: readonly { protocol: FlowProtocol; port: number }[] = [
  { protocol: 'TCP', port: 80 },
  { protocol: 'TCP', port: 81 },
  { protocol: 'TCP', port: 90 },
  { protocol: 'TCP', port: 443 },
  { protocol: 'TCP', port: 8080 },
  { protocol: 'UDP', port: 53 },
  { protocol: 'UDP', port: 80 },
  { protocol: 'SCTP', port: 80 },
  { protocol: 'ICMP', port: 8 },
  { protocol: 'TCP', port: 9092 },
  { protocol: 'TCP', port: 85 },
  // L7 port ranges 4096-8191 and 8000-9000: only the first, both, only the second.
  { protocol: 'TCP', port: 4096 },
  { protocol: 'TCP', port: 8191 },
  { protocol: 'TCP', port: 9000 },
];

/** Requests sampled flows may carry: each matches some generated L7 rules and misses others. */
export const REQUESTS: readonly (L7Request | undefined)[] = [
  undefined,
  { http: { method: 'GET', path: '/public', host: 'shop.example' } },
  { http: { method: 'GET', path: '/public' } },
  { http: { method: 'POST', path: '/api/v1' } },
  { http: { method: 'DELETE', path: '/private', headers: { 'x-token': 'yes' } } },
  { http: { method: 'GET', path: '/private' } },
  { kafka: { apiKey: 'produce', topic: 'orders' } },
  { kafka: { apiKey: 'fetch', topic: 'orders', clientID: 'billing' } },
  { kafka: { apiKey: 'produce', topic: 'audit' } },
  { dns: { name: 'www.example.com' } },
  { dns: { name: 'cilium.io.' } },
  { dns: { name: 'a.b.example.com' } },
];

const podLabels = fc.record({ app: fc.constantFrom('web', 'db', 'api'), tier: fc.constantFrom('front', 'back') }, { requiredKeys: [] });
const nsLabels = fc.record({ team: fc.constantFrom('a', 'b') }, { requiredKeys: [] });

const labelKey = fc.constantFrom('app', 'tier');
const labelValue = fc.constantFrom('web', 'db', 'api', 'front', 'back');
const expr = fc.oneof(
  fc.record({ key: labelKey, operator: fc.constantFrom('In', 'NotIn'), values: fc.uniqueArray(labelValue, { minLength: 1, maxLength: 2 }) }),
  fc.record({ key: labelKey, operator: fc.constantFrom('Exists', 'DoesNotExist') }),
);
const podSelector = fc.oneof(
  { weight: 3, arbitrary: fc.record({ matchLabels: podLabels }) },
  { weight: 1, arbitrary: fc.record({ matchExpressions: fc.array(expr, { minLength: 1, maxLength: 2 }) }) },
  { weight: 1, arbitrary: fc.constant({}) },
);
const namespaceSelector = fc.oneof(
  fc.record({ matchLabels: nsLabels }),
  fc.constant({}),
  // Negative terms only: must still select pods only, never world or host.
  fc.constant({ matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['a'] }] }),
  fc.constant({ matchExpressions: [{ key: 'team', operator: 'DoesNotExist' }] }),
);

const npPort = fc.constantFrom<Record<string, unknown>>(
  { port: 80 },
  { port: 53, protocol: 'UDP' },
  { port: 'http' },
  { port: 'dns', protocol: 'UDP' },
  { protocol: 'TCP' },
  { port: 80, endPort: 90 },
  { port: 1, endPort: 1024 },
  { port: 80, protocol: 'SCTP' },
);
const ipBlock = fc.constantFrom({ cidr: '192.168.0.0/16', except: ['192.168.1.0/24'] }, { cidr: '8.8.8.8/32' }, { cidr: '10.0.0.0/8' }, { cidr: '0.0.0.0/0' }, { cidr: '2001:db8::/32' });
const npPeer = fc.oneof(
  fc.record({ podSelector }),
  fc.record({ namespaceSelector }),
  fc.record({ podSelector, namespaceSelector }),
  fc.record({ ipBlock }),
);
const npRule = (field: 'from' | 'to') => fc.record({ [field]: fc.array(npPeer, { maxLength: 2 }), ports: fc.array(npPort, { maxLength: 2 }) }, { requiredKeys: [] });

const networkPolicy = fc.record({
  apiVersion: fc.constant('networking.k8s.io/v1'),
  kind: fc.constant('NetworkPolicy'),
  metadata: fc.record({ name: fc.constantFrom('np-a', 'np-b'), namespace: fc.constantFrom(...NAMESPACES) }),
  spec: fc.record(
    {
      podSelector,
      policyTypes: fc.subarray(['Ingress', 'Egress'], { minLength: 1 }),
      ingress: fc.array(npRule('from'), { maxLength: 2 }),
      egress: fc.array(npRule('to'), { maxLength: 2 }),
    },
    { requiredKeys: ['podSelector'] },
  ),
});

const ciliumPort = fc.constantFrom<Record<string, unknown>>(
  { port: '80', protocol: 'TCP' },
  { port: '53', protocol: 'ANY' },
  { port: '0', protocol: 'ANY' },
  { port: '80', endPort: 90, protocol: 'TCP' },
  { port: 'http' },
  { port: '0', protocol: 'UDP' },
  { port: '443' },
  { port: '8080', protocol: 'TCP' },
);
const httpRules: Record<string, unknown>[] = [
  { ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{ method: 'GET', path: '/public' }] } },
  { ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{ method: 'POST', path: '/api/.*' }, { headers: ['X-Token: yes'] }] } },
  { ports: [{ port: 'http', protocol: 'TCP' }], rules: { http: [{ path: '/public', host: 'shop\\.example' }] } },
  { ports: [{ port: '80', endPort: 90, protocol: 'TCP' }], rules: { http: [{}] } },
  // Kafka on 80-85 overlaps HTTP on 80 and 80-90 without naming the same L4 filter (Cilium
  // refuses two parsers on one (port, endPort, protocol), see L7ParserConflictError): on the
  // shared ports the HTTP listener has the lower priority number and wins.
  { ports: [{ port: '80', endPort: 85, protocol: 'TCP' }], rules: { kafka: [{ role: 'produce', topic: 'orders' }] } },
  { ports: [{ port: '80', endPort: 85, protocol: 'TCP' }, { port: '9092', protocol: 'TCP' }], rules: { kafka: [{ apiKey: 'fetch' }] } },
  { ports: [{ port: '9092', protocol: 'TCP' }], rules: { kafka: [{ topic: 'orders' }, { apiKey: 'fetch' }] } },
  { ports: [{ port: '9092', protocol: 'TCP' }], rules: { kafka: [{ role: 'consume', clientID: 'billing' }] } },
  // Wide overlapping ranges with different rules (one redirect per prefix, not per port): a
  // request is judged by every range covering its port, and by the plain allow on 8080 inside them.
  { ports: [{ port: '4096', endPort: 8191, protocol: 'TCP' }], rules: { http: [{ method: 'POST', path: '/api/.*' }] } },
  { ports: [{ port: '8000', endPort: 9000, protocol: 'TCP' }], rules: { http: [{ method: 'GET', path: '/public' }] } },
];
const dnsRules: Record<string, unknown>[] = [
  { ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } },
  { ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*.example.com' }, { matchName: 'cilium.io' }] } },
];
/** DNS rules are egress-only in Cilium. */
const l7Rule = (dir: 'from' | 'to') => fc.constantFrom<Record<string, unknown>>(...httpRules, ...(dir === 'to' ? dnsRules : []));
const portRule = (deny: boolean, dir: 'from' | 'to') =>
  deny ? fc.record({ ports: fc.array(ciliumPort, { minLength: 1, maxLength: 2 }) }) : fc.oneof(fc.record({ ports: fc.array(ciliumPort, { minLength: 1, maxLength: 2 }) }), l7Rule(dir));
const entity = fc.constantFrom('all', 'world', 'cluster', 'host', 'none');
// Nested prefixes on purpose: one rule's CIDR identities then select each other's peers.
const cidr = fc.constantFrom('192.168.1.0/24', '192.168.0.0/16', '8.8.8.8/32', '10.0.0.0/8', '2001:db8::/32');
const cidrSet = fc.constantFrom({ cidr: '192.168.0.0/16', except: ['192.168.1.0/24'] }, { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] });
const ciliumRule = (dir: 'from' | 'to', deny: boolean) =>
  fc.oneof(
    fc.record({ [`${dir}Endpoints`]: fc.array(podSelector, { minLength: 1, maxLength: 2 }), toPorts: fc.array(portRule(deny, dir), { maxLength: 1 }) }, { requiredKeys: [`${dir}Endpoints`] }),
    fc.record({ [`${dir}Entities`]: fc.uniqueArray(entity, { minLength: 1, maxLength: 2 }), toPorts: fc.array(portRule(deny, dir), { maxLength: 1 }) }, { requiredKeys: [`${dir}Entities`] }),
    fc.record({ [`${dir}CIDR`]: fc.uniqueArray(cidr, { minLength: 1, maxLength: 2 }), toPorts: fc.array(portRule(deny, dir), { maxLength: 1 }) }, { requiredKeys: [`${dir}CIDR`] }),
    fc.record({ [`${dir}CIDRSet`]: fc.array(cidrSet, { minLength: 1, maxLength: 1 }) }),
    fc.record({ toPorts: fc.array(portRule(deny, dir), { minLength: 1, maxLength: 1 }) }),
    fc.record({ [`${dir}Entities`]: fc.constant(['all']), icmps: fc.constant([{ fields: [{ type: 8 }] }]) }),
  );
const ciliumSpec = fc.record(
  {
    endpointSelector: podSelector,
    ingress: fc.array(ciliumRule('from', false), { maxLength: 2 }),
    ingressDeny: fc.array(ciliumRule('from', true), { maxLength: 1 }),
    egress: fc.array(ciliumRule('to', false), { maxLength: 2 }),
    egressDeny: fc.array(ciliumRule('to', true), { maxLength: 1 }),
    enableDefaultDeny: fc.record({ ingress: fc.boolean(), egress: fc.boolean() }, { requiredKeys: [] }),
  },
  { requiredKeys: ['endpointSelector'] },
).filter((s) => (['ingress', 'ingressDeny', 'egress', 'egressDeny'] as const).some((k) => (s[k]?.length ?? 0) > 0)); // else refused (Cilium 1.19 Rule.Sanitize, finding 713)
const ciliumPolicy = fc.oneof(
  fc.record({
    apiVersion: fc.constant('cilium.io/v2'),
    kind: fc.constant('CiliumNetworkPolicy'),
    metadata: fc.record({ name: fc.constantFrom('cnp-a', 'cnp-b'), namespace: fc.constantFrom(...NAMESPACES) }),
    spec: ciliumSpec,
  }),
  fc.record({ apiVersion: fc.constant('cilium.io/v2'), kind: fc.constant('CiliumClusterwideNetworkPolicy'), metadata: fc.record({ name: fc.constant('ccnp') }), specs: fc.array(ciliumSpec, { minLength: 1, maxLength: 2 }) }),
);

// ClusterNetworkPolicies (Admin and Baseline tiers, Accept/Deny/Pass: what the engine encodes). Each name has its own
// priorities (disjoint across names; same-priority groups come from SAME_PRIORITY_NAMES below), so upserts change
// priorities, reorder and re-action rules of one policy.
const TIER_NAMES = ['cnp-t0', 'cnp-t1', 'cnp-t2'];
/**
 * Egress `networks` (pods are at 10.244.<namespace>.<2..5>): one pod, part of a namespace, every pod
 * and ext-ten, the /0s (pod-to-pod too), externals only; they split pod identities by address.
 */
const NETWORKS: readonly (readonly string[])[] = [
  ['10.244.0.2/32'],
  ['10.244.1.0/24'],
  ['10.244.0.4/31', '10.244.2.3/32'],
  ['0.0.0.0/0'],
  ['10.0.0.0/8'],
  ['192.168.0.0/16', '8.8.8.8/32'],
  ['::/0'],
  ['0.0.0.0/0', '::/0'],
  ['2001:db8::/32', '10.244.1.5/32'],
];
const tierPeer = (dir: 'ingress' | 'egress') =>
  fc.oneof(
    fc.record({ namespaces: namespaceSelector }),
    fc.record({ pods: fc.record({ namespaceSelector, podSelector }, { requiredKeys: ['podSelector'] }) }),
    { weight: 1, arbitrary: fc.constant({ futurePeerField: {} }) },
    ...(dir === 'egress' ? [{ weight: 2, arbitrary: fc.constantFrom(...NETWORKS).map((n) => ({ networks: [...n] })) }] : []),
  );
/** Named ports on both sides: ingress resolves against the subject, egress against each destination pod (PORT_SETS disagree on http). */
const tierProtocol = fc.constantFrom<Record<string, unknown>>(
  { tcp: { destinationPort: { number: 80 } } },
  { udp: { destinationPort: { number: 53 } } },
  { tcp: { destinationPort: { range: { start: 80, end: 90 } } } },
  { sctp: { destinationPort: { number: 80 } } },
  { destinationNamedPort: 'http' },
  { destinationNamedPort: 'dns' },
);
export const ACTIONS = fc.constantFrom('Accept', 'Deny', 'Pass');
/** A ClusterNetworkPolicy's subject: namespaces, or pods in namespaces. */
export const tierSubject = fc.oneof(fc.record({ namespaces: namespaceSelector }), fc.record({ pods: fc.record({ namespaceSelector, podSelector }, { requiredKeys: ['podSelector'] }) }));
const hasNamed = (r: Record<string, unknown>): boolean => ((r.protocols ?? []) as Record<string, unknown>[]).some((p) => 'destinationNamedPort' in p);
const hasNetworks = (r: Record<string, unknown>): boolean => ((r.to ?? []) as Record<string, unknown>[]).some((p) => 'networks' in p);
export const tierRule = (dir: 'ingress' | 'egress', action: fc.Arbitrary<string>) =>
  fc
    .record(
      {
        name: fc.constantFrom('r-a', 'r-b', 'r-c'),
        action,
        [dir === 'ingress' ? 'from' : 'to']: fc.array(tierPeer(dir), { minLength: 1, maxLength: 2 }),
        protocols: fc.array(tierProtocol, { minLength: 1, maxLength: 2 }),
      },
      { requiredKeys: ['action', dir === 'ingress' ? 'from' : 'to'] },
    )
    // The API refuses destinationNamedPort with a networks peer (networks have no named ports).
    .filter((r) => !(hasNamed(r) && hasNetworks(r)));
const tierPolicy = (action: fc.Arbitrary<string>) => fc.nat({ max: TIER_NAMES.length - 1 }).chain((i) =>
  fc.record({
    apiVersion: fc.constant('policy.networking.k8s.io/v1alpha2'),
    kind: fc.constant('ClusterNetworkPolicy'),
    metadata: fc.constant({ name: TIER_NAMES[i] }),
    spec: fc.record({
      tier: fc.constantFrom('Admin', 'Baseline'),
      priority: fc.constantFrom(i + 1, i + 4, i + 7),
      subject: tierSubject,
      ingress: fc.array(tierRule('ingress', action), { maxLength: 3 }),
      egress: fc.array(tierRule('egress', action), { maxLength: 3 }),
    }),
  }),
);

/**
 * Same-priority groups (what the engine flattens): these names always share priority 20 (the
 * names above never reach it), in either tier, with every action.
 */
const SAME_PRIORITY_NAMES = ['cnp-s0', 'cnp-s1', 'cnp-s2'];
const samePriorityPolicy = fc.constantFrom(...SAME_PRIORITY_NAMES).chain((name) =>
  fc.record({
    apiVersion: fc.constant('policy.networking.k8s.io/v1alpha2'),
    kind: fc.constant('ClusterNetworkPolicy'),
    metadata: fc.constant({ name }),
    spec: fc.record({
      tier: fc.constantFrom('Admin', 'Baseline'),
      priority: fc.constant(20),
      subject: tierSubject,
      ingress: fc.array(tierRule('ingress', ACTIONS), { maxLength: 3 }),
      egress: fc.array(tierRule('egress', ACTIONS), { maxLength: 3 }),
    }),
  }),
);

/** A cluster operation, before it becomes an engine event. */
export type Op =
  | { readonly k: 'ns'; readonly name: string; readonly labels: Record<string, string> }
  | { readonly k: 'delNs'; readonly name: string }
  | { readonly k: 'pod'; readonly ns: string; readonly name: string; readonly labels: Record<string, string>; readonly ports: number; readonly local: boolean }
  | { readonly k: 'delPod'; readonly ns: string; readonly name: string }
  | { readonly k: 'policy'; readonly manifest: Record<string, unknown> }
  | { readonly k: 'delPolicy'; readonly kind: PolicyKind; readonly ns: string; readonly name: string }
  | { readonly k: 'node'; readonly name: string; readonly ips: number; readonly local: boolean }
  | { readonly k: 'delNode'; readonly name: string };

/**
 * Node addresses: inside the CIDR rules' prefixes (192.168.1.0/24, 10.0.0.0/8, 2001:db8::/32), which
 * must not select them, and outside every pod's and external's address.
 */
const NODE_IPS: readonly (readonly string[])[] = [['192.168.1.7'], ['192.168.1.8', '2001:db8::8'], ['10.1.2.9']];
const nodeName = fc.constantFrom('n1', 'n2');
const nodeOp: fc.Arbitrary<Op> = fc.record({ k: fc.constant('node' as const), name: nodeName, ips: fc.nat({ max: NODE_IPS.length - 1 }), local: fc.boolean() });
const delNodeOp: fc.Arbitrary<Op> = fc.record({ k: fc.constant('delNode' as const), name: nodeName });

const nsName = fc.constantFrom(...NAMESPACES);
const nsOp: fc.Arbitrary<Op> = fc.record({ k: fc.constant('ns' as const), name: nsName, labels: nsLabels });
const podOp: fc.Arbitrary<Op> = fc.record({
  k: fc.constant('pod' as const),
  ns: nsName,
  name: fc.constantFrom(...POD_NAMES),
  labels: podLabels,
  ports: fc.nat({ max: PORT_SETS.length - 1 }),
  local: fc.boolean(),
});
const npTierOp: fc.Arbitrary<Op> = fc.oneof(networkPolicy, ciliumPolicy).map((m) => ({ k: 'policy' as const, manifest: m as Record<string, unknown> }));
const tierOp = (action: fc.Arbitrary<string>): fc.Arbitrary<Op> => tierPolicy(action).map((m) => ({ k: 'policy' as const, manifest: m as Record<string, unknown> }));
const samePriorityOp: fc.Arbitrary<Op> = samePriorityPolicy.map((m) => ({ k: 'policy' as const, manifest: m as Record<string, unknown> }));
const delPolicyOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('delPolicy' as const), kind: fc.constant('NetworkPolicy' as PolicyKind), ns: nsName, name: fc.constantFrom('np-a', 'np-b') }),
  fc.record({ k: fc.constant('delPolicy' as const), kind: fc.constant('CiliumNetworkPolicy' as PolicyKind), ns: nsName, name: fc.constantFrom('cnp-a', 'cnp-b') }),
  fc.record({ k: fc.constant('delPolicy' as const), kind: fc.constant('CiliumClusterwideNetworkPolicy' as PolicyKind), ns: nsName, name: fc.constant('ccnp') }),
  fc.record({ k: fc.constant('delPolicy' as const), kind: fc.constant('ClusterNetworkPolicy' as PolicyKind), ns: nsName, name: fc.constantFrom(...TIER_NAMES, ...SAME_PRIORITY_NAMES) }),
);
export const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: nsOp },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delNs' as const), name: nsName }) },
  { weight: 6, arbitrary: podOp },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('delPod' as const), ns: nsName, name: fc.constantFrom(...POD_NAMES) }) },
  { weight: 5, arbitrary: npTierOp },
  { weight: 3, arbitrary: tierOp(ACTIONS) },
  { weight: 1, arbitrary: samePriorityOp },
  { weight: 2, arbitrary: delPolicyOp },
);

/**
 * `op` plus node changes (a separate arbitrary: `op`'s fixed-seed histories stay as they were).
 * `cluster` and `host` entities select nodes; the nodes' addresses lie in the CIDR rules' prefixes.
 */
export const opWithNodes: fc.Arbitrary<Op> = fc.oneof({ weight: 12, arbitrary: op }, { weight: 1, arbitrary: nodeOp }, { weight: 1, arbitrary: delNodeOp });

/** Histories dense in ClusterNetworkPolicies (Pass and same-priority groups included) and in NetworkPolicy-tier changes under them. */
export const tierHeavyOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 1, arbitrary: nsOp },
  { weight: 3, arbitrary: podOp },
  { weight: 4, arbitrary: npTierOp },
  { weight: 6, arbitrary: tierOp(fc.constantFrom('Pass', 'Pass', 'Accept', 'Deny')) },
  { weight: 3, arbitrary: samePriorityOp },
  { weight: 2, arbitrary: delPolicyOp },
);

/** A ClusterNetworkPolicy with egress networks peers or destinationNamedPort: identities from outside cannot encode it (they cannot be split). */
export function needsIdentitySplits(o: Op): boolean {
  if (o.k !== 'policy' || o.manifest.kind !== 'ClusterNetworkPolicy') return false;
  const egress = ((o.manifest.spec as Record<string, unknown>).egress ?? []) as Record<string, unknown>[];
  return egress.some((r) => hasNamed(r) || (hasNetworks(r) && !coversEverything(r)));
}

/** A rule's networks hold both /0s: one identity-0 key, no split, encoded with identities from outside too (review 27w, 2351). */
function coversEverything(r: Record<string, unknown>): boolean {
  const nets = ((r.to ?? []) as Record<string, unknown>[]).flatMap((p) => (Array.isArray(p.networks) ? (p.networks as string[]) : []));
  return nets.includes('0.0.0.0/0') && nets.includes('::/0');
}

/**
 * `toEvent` with one address shared: the last pod name's pods sit at 10.244.0.5 in every namespace,
 * where the ipcache gives it to the last writer. For tests of the engine against itself (faults):
 * the tier properties' `networks` CIDRs would split those pods' label sets far more often, which
 * they are not about.
 */
export function toEventSharedAddress(o: Op): EngineEvent {
  const e = toEvent(o);
  if (e.type !== 'upsertPod' || o.k !== 'pod' || POD_NAMES.indexOf(o.name) !== POD_NAMES.length - 1) return e;
  return { ...e, pod: { ...e.pod, ip: parseIp(`10.244.0.${POD_NAMES.length + 1}`) } };
}

export function toEvent(o: Op): EngineEvent {
  switch (o.k) {
    case 'ns':
      return { type: 'upsertNamespace', name: o.name, labels: o.labels };
    case 'delNs':
      return { type: 'deleteNamespace', name: o.name };
    case 'pod': {
      const ip = parseIp(`10.244.${NAMESPACES.indexOf(o.ns)}.${POD_NAMES.indexOf(o.name) + 2}`);
      const pod: Pod = { namespace: o.ns, name: o.name, labels: o.labels, ip, serviceAccount: 'default', ports: PORT_SETS[o.ports] ?? [] };
      return { type: 'upsertPod', pod, local: o.local };
    }
    case 'delPod':
      return { type: 'deletePod', namespace: o.ns, name: o.name };
    case 'policy':
      return { type: 'upsertPolicy', policy: parseManifest(o.manifest, 'gen#1') };
    case 'node':
      return { type: 'upsertNode', name: o.name, ips: (NODE_IPS[o.ips] ?? []).map(parseIp), local: o.local };
    case 'delNode':
      return { type: 'deleteNode', name: o.name };
    case 'delPolicy':
      return { type: 'deletePolicy', ref: o.kind === 'CiliumClusterwideNetworkPolicy' || o.kind === 'ClusterNetworkPolicy' ? { kind: o.kind, name: o.name } : { kind: o.kind, namespace: o.ns, name: o.name } };
  }
}

export const INITIAL_CLUSTER: ClusterState = EXTERNALS.reduce((s, e) => upsertExternal(s, e), EMPTY_CLUSTER);

import { applyEventToCluster } from '../../src/harness/cluster-sync.js';
export { applyEventToCluster as applyToModel, comparableMaps as normalizedMaps, trackLocality } from '../../src/harness/cluster-sync.js';

/** The model after a whole batch, or null when the model refuses any event of it (the engine must refuse it too). */
export function modelAfter(state: ClusterState, events: readonly EngineEvent[]): ClusterState | null {
  try {
    return events.reduce(applyEventToCluster, state);
  } catch {
    return null;
  }
}

/** The events the model takes one after another (those naming absent objects dropped): refused batches come from the `bad` ops only. */
export function acceptedEvents(state: ClusterState, events: readonly EngineEvent[]): EngineEvent[] {
  const out: EngineEvent[] = [];
  let s = state;
  for (const e of events) {
    const next = modelAfter(s, [e]);
    if (next === null) continue;
    out.push(e);
    s = next;
  }
  return out;
}

/** A small deterministic PRNG for sampling flows inside a property. */
export function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}

/** Each node address with the role that decides its identity (of its holders', the first in NODE_ROLE_ORDER). */
export function addressRoles(s: ClusterState): Map<string, NodeAddressRole> {
  const out = new Map<string, NodeAddressRole>();
  for (const n of s.nodes?.values() ?? []) {
    for (const { ip, role } of nodeAddresses(n)) {
      const had = out.get(ip.text);
      if (had === undefined || NODE_ROLE_ORDER.indexOf(role) < NODE_ROLE_ORDER.indexOf(had)) out.set(ip.text, role);
    }
  }
  return out;
}
