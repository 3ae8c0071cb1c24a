import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { initialEvents } from '../src/harness/cluster-sync.js';
import { parseIp } from '../src/model/cidr.js';
import { ClusterState, EMPTY_CLUSTER, upsertExternal } from '../src/model/cluster.js';
import { parseManifest } from '../src/policy/manifest.js';
import { checkAllFlows } from './engine/all-flows.js';
import { modelAfter, normalizedMaps, trackLocality } from './engine/gen.js';

/*
 * Attack round 12a: features meeting at ONE (endpoint, peer, port). One address plays several roles
 * at once and in turn: a pod's, a remote or the local node's, a DNS answer (toFQDNs), an API
 * server backend (kube-apiserver), inside CIDR rules. Policies mix allows and denies on port 80 by
 * every route (number, range, ANY, named port, L3-only, L7, toFQDNs, entities, CIDR). After every
 * transaction the engine agrees with the oracle on every flow and with a fresh engine on every map.
 */
const RUNS = process.env.DISTILL_LONG ? 20_000 : 60;
const REPLAY = process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED), ...(process.env.DISTILL_PATH ? { path: process.env.DISTILL_PATH } : {}) } : {};

/** The contested addresses: a pod's (x/peer), two node addresses, two outside the cluster. */
const POD_IP = '10.244.0.11';
const ADDRS = [POD_IP, '192.168.1.1', '192.168.1.2', '198.51.100.1', '203.0.113.10'];
const PROBES = [
  { protocol: 'TCP' as const, port: 80 },
  { protocol: 'UDP' as const, port: 80 },
  { protocol: 'TCP' as const, port: 81 },
  { protocol: 'ICMP' as const, port: 8 },
];

const PORTS: readonly unknown[] = [
  [{ ports: [{ port: '80', protocol: 'TCP' }] }],
  [{ ports: [{ port: '80', protocol: 'ANY' }] }],
  [{ ports: [{ port: '79', endPort: 81, protocol: 'TCP' }] }],
  [{ ports: [{ port: 'http', protocol: 'TCP' }] }],
  [{ ports: [{ port: '0', protocol: 'ANY' }] }],
];
const L7: readonly unknown[] = [[{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{ method: 'GET' }] } }]];
const PEERS: readonly Record<string, unknown>[] = [
  { toEntities: ['kube-apiserver'] },
  { toEntities: ['world'] },
  { toEntities: ['remote-node'] },
  { toEntities: ['host'] },
  { toEntities: ['cluster'] },
  { toCIDR: ['192.168.0.0/16'] },
  { toCIDR: ['0.0.0.0/0'] },
  { toCIDRSet: [{ cidr: '0.0.0.0/0', except: ['203.0.113.0/24'] }] },
  { toCIDR: ['10.244.0.0/16'] },
  { toEndpoints: [{ matchLabels: { app: 'peer' } }] },
];
const FQDN: Record<string, unknown> = { toFQDNs: [{ matchPattern: '*.example.com' }] };
const DNS_RULE: Record<string, unknown> = { toEndpoints: [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'x', app: 'dns' } }], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }] };

const withPorts = (peer: fc.Arbitrary<Record<string, unknown>>, ports: readonly unknown[]): fc.Arbitrary<Record<string, unknown>> =>
  fc.tuple(peer, fc.option(fc.constantFrom(...ports), { nil: undefined })).map(([p, t]) => (t === undefined ? p : { ...p, toPorts: t }));
const allowRule = withPorts(fc.constantFrom(...PEERS, FQDN), [...PORTS, ...L7]);
const denyRule = withPorts(fc.constantFrom(...PEERS), PORTS);

const ingressOf = (r: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) out[k.startsWith('to') && k !== 'toPorts' ? `from${k.slice(2)}` : k] = v;
  return out;
};

const policy = fc.record({ name: fc.constantFrom('p1', 'p2'), allow: fc.array(allowRule, { maxLength: 3 }), deny: fc.array(denyRule, { maxLength: 2 }), ingress: fc.boolean() }).map(({ name, allow, deny, ingress }) => {
  const spec: Record<string, unknown> = { endpointSelector: { matchLabels: { app: 'web' } } };
  if (ingress) {
    const from = allow.filter((r) => !('toFQDNs' in r)).map(ingressOf);
    spec.ingress = from;
    spec.ingressDeny = deny.map(ingressOf);
  } else {
    spec.egress = [DNS_RULE, ...allow];
    spec.egressDeny = deny;
  }
  return { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec };
  // Cilium 1.19 refuses a rule with no section at all (Rule.Sanitize; finding 713): not generated.
}).filter((m) => ['ingress', 'ingressDeny', 'egress', 'egressDeny'].some((k) => ((m.spec[k] as unknown[] | undefined)?.length ?? 0) > 0));

type Op =
  | { k: 'policy'; manifest: Record<string, unknown> }
  | { k: 'dns'; ips: string[]; ttl: number }
  | { k: 'time'; seconds: number }
  | { k: 'api'; ips: string[] }
  | { k: 'node'; name: 'n1' | 'n2'; ip: string; local: boolean }
  | { k: 'delNode'; name: 'n1' | 'n2' }
  | { k: 'peer'; present: boolean; port: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: policy.map((manifest) => ({ k: 'policy' as const, manifest })) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('dns' as const), ips: fc.subarray(ADDRS, { minLength: 1 }), ttl: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('time' as const), seconds: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('api' as const), ips: fc.subarray(ADDRS) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('node' as const), name: fc.constantFrom('n1' as const, 'n2' as const), ip: fc.constantFrom(...ADDRS.slice(1)), local: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delNode' as const), name: fc.constantFrom('n1' as const, 'n2' as const) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('peer' as const), present: fc.boolean(), port: fc.constantFrom(80, 81) }) },
);

const pod = (name: string, app: string, ip: string, ports: { name: string; port: number }[] = []): EngineEvent => ({
  type: 'upsertPod',
  pod: { namespace: 'x', name, labels: { app }, ip: parseIp(ip), serviceAccount: 'default', ports: ports.map((p) => ({ ...p, protocol: 'TCP' as const })) },
  local: true,
});

function toEvents(o: Op, nodes: Map<string, string>): EngineEvent[] {
  switch (o.k) {
    case 'policy':
      return [{ type: 'upsertPolicy', policy: parseManifest(o.manifest, 'attacks-12a#1') }];
    case 'dns':
      return [{ type: 'dnsResponse', endpoint: 'x/web', name: 'a.example.com', ips: o.ips.map(parseIp), ttl: o.ttl, server: { ip: parseIp('10.244.0.2'), port: 53 } }];
    case 'time':
      return [{ type: 'advanceTime', seconds: o.seconds }];
    case 'api':
      return [{ type: 'setApiServer', addresses: o.ips.map(parseIp) }];
    case 'node':
      nodes.set(o.name, o.ip);
      return [{ type: 'upsertNode', name: o.name, ips: [parseIp(o.ip)], local: o.local }];
    case 'delNode':
      return nodes.delete(o.name) ? [{ type: 'deleteNode', name: o.name }] : [];
    case 'peer':
      return o.present ? [pod('peer', 'peer', POD_IP, [{ name: 'http', port: o.port }])] : [{ type: 'deletePod', namespace: 'x', name: 'peer' }];
  }
}

const SETUP: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'x', labels: {} },
  pod('web', 'web', '10.244.0.10', [{ name: 'http', port: 80 }]),
  pod('dns', 'dns', '10.244.0.2'),
  pod('peer', 'peer', POD_IP, [{ name: 'http', port: 80 }]),
];
/** Every contested address is also an external, so checkAllFlows probes it (resolved to whatever holds it). */
const INITIAL: ClusterState = ADDRS.reduce((s, ip) => upsertExternal(s, { name: `e-${ip}`, ip: parseIp(ip) }), EMPTY_CLUSTER);

const stats = { txns: 0, refused: 0, flows: 0 };

describe('attack 12a: one address in several roles, one port in several rules', () => {
  it('engine = oracle on every flow, engine = fresh engine on every map, after every transaction', () => {
    fc.assert(
      fc.property(fc.array(fc.array(opArb, { minLength: 1, maxLength: 3 }), { minLength: 2, maxLength: 12 }), (txns) => {
        const engine = new Engine();
        const local = new Map<string, boolean>();
        const nodes = new Map<string, string>();
        let state: ClusterState = INITIAL;
        const batches = [SETUP, ...txns.map((ops) => ops.flatMap((o) => toEvents(o, nodes)))];
        batches.forEach((events, ti) => {
          const next = modelAfter(state, events);
          if (next === null) {
            const before = JSON.stringify(normalizedMaps(engine));
            expect(() => engine.apply(events)).toThrow();
            expect(JSON.stringify(normalizedMaps(engine))).toBe(before);
            stats.refused++;
            return;
          }
          engine.apply(events);
          state = next;
          for (const e of events) trackLocality(local, state, e);
          stats.txns++;
          stats.flows += checkAllFlows(engine, state, PROBES, `txn ${ti}`).flows;
          const fresh = new Engine();
          fresh.restoreDnsCache(engine.dnsCacheFile(), 'dns.jsonl');
          fresh.apply(initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false).filter((e) => e.type !== 'dnsResponse' && e.type !== 'advanceTime'));
          expect(normalizedMaps(engine)).toEqual(normalizedMaps(fresh));
        });
      }),
      { numRuns: RUNS, ...REPLAY },
    );
  }, 300_000);
});

afterAll(() => {
  process.stdout.write(`attacks-12a: ${JSON.stringify(stats)}\n`);
});
