import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { ChangeSet, EngineEvent } from '../../src/engine/events.js';
import { applyEventToCluster, diffEndpointMaps, endpointMaps, initialEvents } from '../../src/harness/cluster-sync.js';
import { engineDecision } from '../../src/harness/engine-decider.js';
import { cidrContainsIp, parseCidr, parseIp } from '../../src/model/cidr.js';
import { DnsCache } from '../../src/engine/dns-cache.js';
import { ClusterState, EMPTY_CLUSTER, Pod, upsertExternal } from '../../src/model/cluster.js';
import { DnsCacheOptions, EMPTY_DNS_CACHE } from '../../src/model/fqdn.js';

import type { Policy } from '../../src/model/rules.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { learnt, learntByOracle } from './learnt.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

const NAMES = ['a.example.com', 'b.example.com', 'x.cilium.io', 'deep.x.cilium.io', 's3.us.amazonaws.com'];
const SELECTORS = [
  { matchName: 'a.example.com' },
  { matchName: 'x.cilium.io' },
  { matchPattern: '*.example.com' },
  { matchPattern: '*.cilium.io' },
  { matchPattern: '**.cilium.io' },
  { matchPattern: '*' },
  { matchPattern: 's3.*.amazonaws.com' },
];
const IPS = ['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.9', '203.0.113.7', '10.0.0.3'];
const PODS: Pod[] = ['client-a', 'client-b', 'server'].map((name, i) => ({
  namespace: 'apps',
  name,
  labels: { app: name },
  ip: parseIp(`10.0.0.${i + 1}`),
  serviceAccount: 'default',
  ports: [],
}));

function cnp(name: string, spec: object): Policy {
  return parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'apps' }, spec }, `${name}.yaml`, { fqdn: true });
}

function clusterPolicy(name: string, priority: number, s: readonly string[], egress: object[]): Policy {
  const subject = { pods: { namespaceSelector: {}, podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: s }] } } };
  return parseManifest({ apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name }, spec: { tier: 'Admin', priority, subject, egress } }, `${name}.yaml`);
}

const subjects = fc.subarray(['client-a', 'client-b'], { minLength: 1 });
const dnsProtocolGen = fc.constantFrom('UDP', 'UDP', 'TCP', 'ANY');
const policyGen: fc.Arbitrary<Policy> = fc.oneof(
  fc.record({ s: subjects, pattern: fc.constantFrom('*', '*.example.com', '*.cilium.io', 'a.example.com') }).map(({ s, pattern }) =>
    cnp('dns', {
      endpointSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: s }] },
      egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: pattern }] } }] }],
    }),
  ),
  fc
    .record({ k: fc.integer({ min: 0, max: 2 }), s: subjects, sels: fc.subarray(SELECTORS, { minLength: 1, maxLength: 3 }), port: fc.option(fc.constantFrom('443', '80')), http: fc.boolean() })
    .map(({ k, s, sels, port, http }) =>
      cnp(`fqdn-${k}`, {
        endpointSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: s }] },
        egress: [{ toFQDNs: sels, ...(port === null ? {} : { toPorts: [{ ports: [{ port, protocol: 'TCP' }], ...(http ? { rules: { http: [{ method: 'GET' }] } } : {}) }] }) }],
      }),
    ),
  fc.constantFrom('198.51.100.0/30', '198.51.100.0/24', '0.0.0.0/0').map((cidr) =>
    cnp('cidr', { endpointSelector: { matchLabels: { app: 'client-a' } }, egressDeny: [{ toCIDR: [cidr], toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }] }] }] }),
  ),
  fc.constantFrom('198.51.100.2/32', '198.51.100.0/24').map((cidr) => cnp('cidr-allow', { endpointSelector: { matchLabels: { app: 'client-b' } }, egress: [{ toCIDR: [cidr] }] })),
  // DNS to the server pod, to addresses by CIDR, to a learnt name; a plain allow merging into the redirect; a deny.
  // DNS rules and plain allows on UDP (mostly), TCP or ANY: queries over TCP are judged on TCP (finding 850).
  fc.record({ s: subjects, pattern: fc.constantFrom('*', '*.example.com', '*.cilium.io'), to: fc.constantFrom<object>({ toEndpoints: [{ matchLabels: { app: 'server' } }] }, { toCIDR: ['192.0.2.0/24'] }, { toCIDR: ['198.51.100.0/24'] }, { toFQDNs: [{ matchName: 'x.cilium.io' }] }), protocol: dnsProtocolGen }).map(({ s, pattern, to, protocol }) =>
    cnp('dns-to', { endpointSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: s }] }, egress: [{ ...to, toPorts: [{ ports: [{ port: '53', protocol }], rules: { dns: [{ matchPattern: pattern }] } }] }] }),
  ),
  // Ranges too: one starting at 53 keys 53/16 but is its own L4Filter, which the DNS proxy does not read (finding 2030).
  fc.record({ s: subjects, to: fc.constantFrom<object>({ toEndpoints: [{ matchLabels: { app: 'server' } }] }, { toCIDR: ['192.0.2.53/32'] }, { toEntities: ['world'] }), port: fc.constantFrom<object>({ port: '53' }, { port: '5353' }, { port: '53', endPort: 54 }, { port: '52', endPort: 53 }, { port: '53', endPort: 53 }), protocol: dnsProtocolGen }).map(({ s, to, port, protocol }) =>
    cnp('plain-dns', { endpointSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: s }] }, egress: [{ ...to, toPorts: [{ ports: [{ ...port, protocol }] }] }] }),
  ),
  // ClusterNetworkPolicy domainNames (Accept), then maybe a Deny; an Admin Deny of one learnt IP at a priority between.
  fc
    .record({ s: subjects, priority: fc.constantFrom(10, 60), names: fc.subarray(['a.example.com', '*.example.com', '*.cilium.io', 'x.cilium.io'], { minLength: 1 }), port: fc.boolean(), deny: fc.option(fc.constantFrom('198.51.100.0/24', '0.0.0.0/0')) })
    .map(({ s, priority, names, port, deny }) =>
      clusterPolicy('cnp-domains', priority, s, [
        { action: 'Accept', to: [{ domainNames: names }], ...(port ? { protocols: [{ tcp: { destinationPort: { number: 443 } } }] } : {}) },
        ...(deny === null ? [] : [{ action: 'Deny', to: [{ networks: [deny] }] }]),
      ]),
    ),
  subjects.map((s) => clusterPolicy('cnp-deny', 30, s, [{ action: 'Deny', to: [{ networks: ['198.51.100.2/32'] }] }])),
  fc.constantFrom<object>({ toEndpoints: [{ matchLabels: { app: 'server' } }] }, { toCIDR: ['192.0.2.0/24'] }).map((to) =>
    cnp('deny-dns', { endpointSelector: { matchLabels: { app: 'client-a' } }, egressDeny: [{ ...to, toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }] }] }] }),
  ),
);

/** DNS servers: the server pod, another port, an address some answers hold (a learnt IP), a plain world address; over UDP or TCP. */
const serverGen = fc.option(fc.tuple(fc.constantFrom(['10.0.0.3', 53], ['10.0.0.3', 5353], ['198.51.100.9', 53], ['192.0.2.53', 53]), fc.constantFrom(undefined, undefined, 'TCP' as const)), { nil: undefined, freq: 3 });

const eventGen: fc.Arbitrary<EngineEvent> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .record({ pod: fc.constantFrom('apps/client-a', 'apps/client-b'), name: fc.constantFrom(...NAMES), ips: fc.subarray(IPS, { minLength: 1, maxLength: 3 }), ttl: fc.integer({ min: 0, max: 6 }), server: serverGen })
      .map((a) => ({ type: 'dnsResponse' as const, endpoint: a.pod, name: a.name, ips: a.ips.map(parseIp), ttl: a.ttl, ...(a.server ? { server: { ip: parseIp(a.server[0][0] as string), port: a.server[0][1] as number, ...(a.server[1] ? { protocol: a.server[1] } : {}) } } : {}) })),
  },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 4 }).map((seconds) => ({ type: 'advanceTime' as const, seconds })) },
  { weight: 2, arbitrary: policyGen.map((policy) => ({ type: 'upsertPolicy' as const, policy })) },
  { weight: 1, arbitrary: fc.constantFrom('dns', 'fqdn-0', 'fqdn-1', 'fqdn-2', 'cidr', 'cidr-allow', 'dns-to', 'plain-dns', 'deny-dns').map((name) => ({ type: 'deletePolicy' as const, ref: { kind: 'CiliumNetworkPolicy' as const, namespace: 'apps', name } })) },
);

function setup(options: DnsCacheOptions): { engine: Engine; state: ClusterState } {
  const engine = new Engine({ dns: options });
  let state: ClusterState = { ...EMPTY_CLUSTER, dns: { ...EMPTY_DNS_CACHE, options } };
  const events: EngineEvent[] = [{ type: 'upsertNamespace', name: 'apps', labels: {} }, ...PODS.map((pod) => ({ type: 'upsertPod' as const, pod, local: true }))];
  engine.apply(events);
  for (const e of events) state = applyEventToCluster(state, e);
  for (const ip of IPS) if (!PODS.some((p) => p.ip.text === ip)) state = upsertExternal(state, { name: ip, ip: parseIp(ip) });
  return { engine, state };
}

function maps(engine: Engine): Map<string, string> {
  const out = new Map<string, string>();
  for (const ep of engine.endpoints()) for (const [k, v] of engine.mapState(ep)) out.set(`${ep} ${k}`, JSON.stringify(v.entry ?? v));
  return out;
}

function ipcache(engine: Engine): Map<string, number> {
  return new Map(engine.ipcache().map((e) => [e.prefix, e.identity]));
}

/** The change set turns the old state into the new one, with no delta that changes nothing. */
function checkDeltas(beforeMaps: Map<string, string>, beforeIpc: Map<string, number>, cs: ChangeSet, engine: Engine): void {
  const ipc = new Map(beforeIpc);
  for (const d of cs.ipcache) {
    if (d.op === 'upsert') {
      expect(ipc.get(d.prefix)).not.toBe(d.identity);
      ipc.set(d.prefix, d.identity);
    } else {
      expect(ipc.get(d.prefix)).toBe(d.identity);
      ipc.delete(d.prefix);
    }
  }
  expect(ipc).toEqual(ipcache(engine));
  const after = maps(engine);
  let changed = 0;
  for (const k of new Set([...beforeMaps.keys(), ...after.keys()])) if (beforeMaps.get(k) !== after.get(k)) changed++;
  expect(cs.deltas.length).toBe(changed);
}

function checkFlows(engine: Engine, state: ClusterState): void {
  for (const from of ['apps/client-a', 'apps/client-b']) {
    for (const to of IPS) {
      const toName = PODS.find((p) => p.ip.text === to) ? `apps/${PODS.find((p) => p.ip.text === to)?.name}` : to;
      for (const port of [443, 80]) {
        for (const request of [undefined, { http: { method: 'GET', path: '/', headers: {} } }, { http: { method: 'POST', path: '/', headers: {} } }]) {
          const flow = { from, to: toName, port, protocol: 'TCP' as const, ...(request ? { request } : {}) };
          const want = decideFlow(state, flow);
          const got = engineDecision(engine, state, flow);
          expect([flow, got.allowed, got.proxied]).toEqual([flow, want.allowed, want.proxied]);
        }
      }
    }
  }
}

describe('toFQDNs in the engine against the oracle', () => {
  it('agrees flow by flow on random answers, TTLs, clock steps, selectors and policy churn; deltas are minimal', () => {
    fc.assert(
      fc.property(
        fc.record({ minTtl: fc.constantFrom(0, 0, 3), maxIpsPerHostname: fc.constantFrom(1000, 2) }),
        fc.array(fc.array(eventGen, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 12 }),
        (options, batches) => {
          let { engine, state } = setup(options);
          for (const batch of batches) {
            const beforeMaps = maps(engine);
            const beforeIpc = ipcache(engine);
            const exists = new Set(state.policies.keys());
            const events = batch.filter((e) => {
              if (e.type === 'upsertPolicy') exists.add(`CiliumNetworkPolicy/apps/${e.policy.ref.name}`);
              return e.type !== 'deletePolicy' || exists.delete(`CiliumNetworkPolicy/apps/${e.ref.name}`);
            });
            if (events.length === 0) continue;
            const cs = engine.apply(events);
            for (const e of events) state = applyEventToCluster(state, e);
            checkDeltas(beforeMaps, beforeIpc, cs, engine);
            expect(learnt(engine)).toEqual(learntByOracle(state));
            checkFlows(engine, state);
          }
          // A restart: the DNS cache file, then the cluster's state in one transaction (policies in
          // reverse order) gives the same maps and ipcache, identity numbers included (proxy port
          // numbers are the agent's to restore, proxyPortsFromMaps: only whether a port is there counts).
          const restarted = new Engine({ dns: options });
          restarted.restoreDnsCache(engine.dnsCacheFile(), 'dns.jsonl');
          const initial = initialEvents(state).filter((e) => e.type !== 'dnsResponse' && e.type !== 'advanceTime');
          restarted.apply([...initial.filter((e) => e.type !== 'upsertPolicy'), ...initial.filter((e) => e.type === 'upsertPolicy').reverse()]);
          const noPorts = (e: Engine): Map<string, string> => new Map([...maps(e)].map(([k, v]) => [k, v.replace(/"proxyPort":[1-9]\d*/, '"proxyPort":"some"')]));
          expect(noPorts(restarted)).toEqual(noPorts(engine));
          expect(ipcache(restarted)).toEqual(ipcache(engine));
        },
      ),
      { numRuns: fcRuns(150), ...fcReplay() },
    );
  });
});

describe('FQDN identities and deltas', () => {
  const dnsPolicy = cnp('dns', { endpointSelector: {}, egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }] }] });
  const fqdnPolicy = cnp('fqdn-0', { endpointSelector: { matchLabels: { app: 'client-a' } }, egress: [{ toFQDNs: [{ matchPattern: '*.example.com' }], toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }] }] }] });
  const answer = (name: string, ips: string[], ttl = 30): EngineEvent => ({ type: 'dnsResponse', endpoint: 'apps/client-a', name, ips: ips.map(parseIp), ttl });

  it('a first answer of a name one selector matches, and a new IP of a known name, cost only ipcache upserts; a refresh costs nothing', () => {
    const { engine } = setup({ minTtl: 0, maxIpsPerHostname: 1000 });
    const withPolicy = engine.apply([{ type: 'upsertPolicy', policy: dnsPolicy }, { type: 'upsertPolicy', policy: fqdnPolicy }]);
    expect(withPolicy.ipcache).toEqual([]);
    const first = engine.apply([answer('a.example.com', ['198.51.100.1'])]);
    expect(first.deltas).toEqual([]);
    expect(first.ipcache.map((d) => [d.op, d.prefix])).toEqual([['upsert', '198.51.100.1/32']]);
    const next = engine.apply([answer('a.example.com', ['198.51.100.2', '198.51.100.3'])]);
    expect(next.deltas).toEqual([]);
    expect(next.ipcache.map((d) => [d.op, d.prefix, d.identity])).toEqual([
      ['upsert', '198.51.100.2/32', first.ipcache[0]?.identity],
      ['upsert', '198.51.100.3/32', first.ipcache[0]?.identity],
    ]);
    const refresh = engine.apply([answer('a.example.com', ['198.51.100.1'])]);
    expect([refresh.deltas, refresh.ipcache, refresh.l7Deltas]).toEqual([[], [], []]);
    // Live at exactly learnt + TTL (Cilium cache.go isExpiredBy), gone one second later.
    expect(engine.apply([{ type: 'advanceTime', seconds: 30 }]).ipcache).toEqual([]);
    const expire = engine.apply([{ type: 'advanceTime', seconds: 1 }]);
    expect(expire.deltas).toEqual([]);
    expect(expire.ipcache.map((d) => d.op)).toEqual(['delete', 'delete', 'delete']);
  });

  it('an answer the DNS rules refuse teaches nothing', () => {
    const { engine } = setup({ minTtl: 0, maxIpsPerHostname: 1000 });
    engine.apply([{ type: 'upsertPolicy', policy: fqdnPolicy }]);
    const cs = engine.apply([answer('a.example.com', ['198.51.100.1'])]);
    expect([cs.deltas, cs.ipcache]).toEqual([[], []]);
    expect(engine.identityOfIp(parseIp('198.51.100.1'))).toBe(engine.identityOfIp(parseIp('192.0.2.1')));
  });

  it('rebuilds the DNS cache exactly after an internal error', () => {
    let fail = false;
    const engine = new Engine({ faultHook: (p) => { if (fail && p === 'acquireIdentity') throw new Error('injected'); } });
    engine.apply([{ type: 'upsertNamespace', name: 'apps', labels: {} }, ...PODS.map((pod) => ({ type: 'upsertPod' as const, pod, local: true })), { type: 'upsertPolicy', policy: dnsPolicy }, { type: 'upsertPolicy', policy: fqdnPolicy }]);
    engine.apply([answer('a.example.com', ['198.51.100.1'], 10)]);
    const before = { ipc: engine.ipcache(), maps: maps(engine) };
    fail = true;
    expect(() => engine.apply([answer('b.example.com', ['198.51.100.2'], 10), { type: 'advanceTime', seconds: 3 }])).toThrow('injected');
    fail = false;
    expect({ ipc: engine.ipcache(), maps: maps(engine) }).toEqual(before);
    // The clock and the answers are the committed ones: 10 s from the answer, not 13.
    expect(engine.apply([{ type: 'advanceTime', seconds: 10 }]).ipcache).toEqual([]);
    expect(engine.apply([{ type: 'advanceTime', seconds: 1 }]).ipcache.map((d) => [d.op, d.prefix])).toEqual([['delete', '198.51.100.1/32']]);
  });

  it('restores a persisted DNS cache before the first transaction: the first change set holds the learnt IPs', () => {
    const initial: EngineEvent[] = [{ type: 'upsertNamespace', name: 'apps', labels: {} }, ...PODS.map((pod) => ({ type: 'upsertPod' as const, pod, local: true })), { type: 'upsertPolicy', policy: dnsPolicy }, { type: 'upsertPolicy', policy: fqdnPolicy }];
    const a = new Engine();
    a.apply(initial);
    a.apply([answer('a.example.com', ['198.51.100.1', '198.51.100.2'], 10), { type: 'advanceTime', seconds: 4 }, answer('b.example.com', ['198.51.100.3'], 2), answer('x.cilium.io', ['198.51.100.4'], 50)]);
    const file = a.dnsCacheFile();
    expect(file.split('\n')[0]).toBe('{"distillDnsCache":1,"now":4,"options":{"minTtl":0,"maxIpsPerHostname":1000}}');
    const b = new Engine();
    b.restoreDnsCache(file, 'dns.jsonl');
    const first = b.apply(initial);
    const learnt = (e: Engine): string[] => e.ipcache().filter((x) => x.prefix.startsWith('198.51.100.')).map((x) => x.prefix);
    expect(learnt(b)).toEqual(['198.51.100.1/32', '198.51.100.2/32', '198.51.100.3/32']);
    expect(first.ipcache.filter((d) => d.prefix.startsWith('198.51.100.')).length).toBe(3);
    expect(learnt(b)).toEqual(learnt(a));
    for (const e of [a, b]) e.apply([{ type: 'advanceTime', seconds: 3 }]);
    expect(learnt(b)).toEqual(['198.51.100.1/32', '198.51.100.2/32']);
    expect(learnt(a)).toEqual(learnt(b));
    expect(() => b.restoreDnsCache(file, 'dns.jsonl')).toThrow('only before the first transaction');
    const lineCount = file.trimEnd().split('\n').length;
    expect(() => new Engine().restoreDnsCache(`${file}{"endpoint":"apps/x","name":"a.io","ip":"nope","learntAt":0,"expiresAt":9}\n`, 'dns.jsonl')).toThrow(`dns.jsonl:${lineCount + 1} ip must be an IP address`);
    expect(() => new Engine().restoreDnsCache(`${file}{"identity":5,"labels":[["fqdn","a.io",""]]}\n`, 'dns.jsonl')).toThrow(`dns.jsonl:${lineCount + 1} identity must be a node-local identity number`);
  });

  it('validates DNS events, naming the field', () => {
    const { engine } = setup({ minTtl: 0, maxIpsPerHostname: 1000 });
    expect(() => engine.apply([{ type: 'advanceTime', seconds: -1 }])).toThrow('event #0 (advanceTime): seconds must be a non-negative integer');
    expect(() => engine.apply([{ ...(answer('a.example.com', ['198.51.100.1']) as object), endpoint: 'apps/nobody' } as EngineEvent])).toThrow('endpoint "apps/nobody" is not a pod');
    expect(() => engine.apply([answer('a b', ['198.51.100.1'])])).toThrow('event #0 (dnsResponse): name');
    expect(() => engine.apply([{ type: 'dnsResponse', endpoint: 'apps/client-a', name: 'a.io', ips: [{ family: 'ipv4', value: 1n, text: '10.0.0.9' }], ttl: 1 }])).toThrow('ips[0] (10.0.0.9) does not match');
  });
});

describe('a DNS answer with its server: learnt only if the query reached the DNS proxy through the map and its rules allow it', () => {
  const KUBE_DNS = { ip: parseIp('10.0.0.3'), port: 53 };
  const dnsTo = (pattern: string, to: object = { toEndpoints: [{ matchLabels: { app: 'server' } }] }): Policy =>
    cnp('dns', { endpointSelector: { matchLabels: { app: 'client-a' } }, egress: [{ ...to, toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: pattern }] } }] }] });
  const plainToServer = cnp('plain', { endpointSelector: {}, egress: [{ toEndpoints: [{ matchLabels: { app: 'server' } }], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }] }] }] });
  const fqdnAll = cnp('fqdn-0', { endpointSelector: { matchLabels: { app: 'client-a' } }, egress: [{ toFQDNs: [{ matchPattern: '*' }], toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }] }] }] });
  const answer = (name: string, ip: string, server: { ip: ReturnType<typeof parseIp>; port: number; protocol?: 'UDP' | 'TCP' } | null = KUBE_DNS): EngineEvent => ({ type: 'dnsResponse', endpoint: 'apps/client-a', name, ips: [parseIp(ip)], ttl: 60, ...(server ? { server } : {}) });
  /** The engine learnt `ip` iff the change set gave it an ipcache entry; the oracle, fed the same events, must agree. */
  function run(setupEvents: EngineEvent[], batch: EngineEvent[]): { learnt: boolean; oracle: boolean } {
    let { engine, state } = setup({ minTtl: 0, maxIpsPerHostname: 1000 });
    engine.apply(setupEvents);
    for (const e of setupEvents) state = applyEventToCluster(state, e);
    const cs = engine.apply(batch);
    for (const e of batch) state = applyEventToCluster(state, e);
    const ip = '198.51.100.1';
    return { learnt: cs.ipcache.some((d) => d.op === 'upsert' && d.prefix === `${ip}/32`), oracle: (state.dns?.entries ?? []).some((e) => e.ip.text === ip) };
  }
  const policies = (...ps: Policy[]): EngineEvent[] => [fqdnAll, ...ps].map((policy) => ({ type: 'upsertPolicy' as const, policy }));

  it('a plain L4 allow to the server merges into the DNS redirect as allow-all: a name the DNS rule does not list is learnt (as in Cilium)', () => {
    expect(run(policies(dnsTo('*.cilium.io'), plainToServer), [answer('a.example.com', '198.51.100.1')])).toEqual({ learnt: true, oracle: true });
    // Without the plain allow, the DNS rule refuses the name.
    expect(run(policies(dnsTo('*.cilium.io')), [answer('a.example.com', '198.51.100.1')])).toEqual({ learnt: false, oracle: false });
    // Without a server, only the DNS rules are read (the rule of before, kept for answers that name none).
    expect(run(policies(dnsTo('*.cilium.io'), plainToServer), [answer('a.example.com', '198.51.100.1', null)])).toEqual({ learnt: false, oracle: false });
  });

  it('2030. a plain allow of a port range starting at the DNS port (53-54) is its own L4Filter: it does not widen the DNS proxy, which still refuses the name', () => {
    const rangeToServer = (ports: object[]): Policy => cnp('range', { endpointSelector: {}, egress: [{ toEndpoints: [{ matchLabels: { app: 'server' } }], toPorts: [{ ports }] }] });
    const range = { port: '53', endPort: 54, protocol: 'UDP' };
    for (const ports of [[range], [{ ...range, protocol: 'ANY' }], [{ port: '80', protocol: 'UDP' }, range]]) {
      expect(run(policies(dnsTo('*.cilium.io'), rangeToServer(ports)), [answer('a.example.com', '198.51.100.1')]), JSON.stringify(ports)).toEqual({ learnt: false, oracle: false });
      // The proxy's rules for the server (the L7 table the DNS proxy is given) list the DNS rule's pattern only.
      const { engine } = setup({ minTtl: 0, maxIpsPerHostname: 1000 });
      engine.apply(policies(dnsTo('*.cilium.io'), rangeToServer(ports)));
      const server = engine.identityOfPod('apps/server')!;
      const [redirect] = engine.redirects('apps/client-a');
      expect(redirect, JSON.stringify(ports)).toBeDefined();
      const verdict = (name: string) => engine.l7Verdict('apps/client-a', redirect!.proxyPort, server, { dns: { name } }, 53)?.allowed;
      expect([verdict('a.example.com'), verdict('x.cilium.io')], JSON.stringify(ports)).toEqual([false, true]);
    }
    // A named port beside the range in one rule, resolving elsewhere (the server's `dns` is 5353): the 53/16 key is the range's only (the rule's named and numbered ports are separate units).
    const serverDns5353: EngineEvent = { type: 'upsertPod', pod: { ...(PODS[2] as Pod), ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }] }, local: true };
    expect(run([serverDns5353, ...policies(dnsTo('*.cilium.io'), rangeToServer([{ port: 'dns', protocol: 'UDP' }, range]))], [answer('a.example.com', '198.51.100.1')])).toEqual({ learnt: false, oracle: false });
    // The same port alone (53-53), or beside the range in one rule, is in the DNS rule's filter: allow-all, as before.
    expect(run(policies(dnsTo('*.cilium.io'), rangeToServer([{ port: '53', endPort: 53, protocol: 'UDP' }])), [answer('a.example.com', '198.51.100.1')])).toEqual({ learnt: true, oracle: true });
    expect(run(policies(dnsTo('*.cilium.io'), rangeToServer([range, { port: '53', protocol: 'UDP' }])), [answer('a.example.com', '198.51.100.1')])).toEqual({ learnt: true, oracle: true });
  });

  it('an L7 DNS rule that refuses the name teaches nothing; one that allows it teaches', () => {
    expect(run(policies(dnsTo('*.cilium.io')), [answer('x.cilium.io', '198.51.100.1')])).toEqual({ learnt: true, oracle: true });
    expect(run(policies(dnsTo('*.cilium.io')), [answer('a.example.com', '198.51.100.1')])).toEqual({ learnt: false, oracle: false });
  });

  it('850. a query over TCP is judged as a TCP flow (the proxy serves both transports), UDP when the server names none', () => {
    const TCP_DNS = { ...KUBE_DNS, protocol: 'TCP' as const };
    const dnsOn = (protocol: string): Policy =>
      cnp(`dns-${protocol.toLowerCase()}`, { endpointSelector: { matchLabels: { app: 'client-a' } }, egress: [{ toEndpoints: [{ matchLabels: { app: 'server' } }], toPorts: [{ ports: [{ port: '53', protocol }], rules: { dns: [{ matchPattern: '*.cilium.io' }] } }] }] });
    const plainOn = (protocol: string): Policy => cnp(`plain-${protocol.toLowerCase()}`, { endpointSelector: {}, egress: [{ toEndpoints: [{ matchLabels: { app: 'server' } }], toPorts: [{ ports: [{ port: '53', protocol }] }] }] });
    // A DNS rule on 53/TCP only: the TCP query reaches the proxy (learnt), the UDP one does not.
    expect(run(policies(dnsOn('TCP')), [answer('x.cilium.io', '198.51.100.1', TCP_DNS)])).toEqual({ learnt: true, oracle: true });
    expect(run(policies(dnsOn('TCP'), plainOn('UDP')), [answer('x.cilium.io', '198.51.100.1')])).toEqual({ learnt: false, oracle: false });
    // A DNS rule on 53/UDP with a plain 53/TCP allow: the TCP query passes unredirected, so nothing is learnt.
    expect(run(policies(dnsOn('UDP'), plainOn('TCP')), [answer('x.cilium.io', '198.51.100.1', TCP_DNS)])).toEqual({ learnt: false, oracle: false });
    expect(run(policies(dnsOn('UDP'), plainOn('TCP')), [answer('x.cilium.io', '198.51.100.1', { ...KUBE_DNS, protocol: 'UDP' })])).toEqual({ learnt: true, oracle: true });
    // ANY covers both.
    expect(run(policies(dnsOn('ANY')), [answer('x.cilium.io', '198.51.100.1', TCP_DNS)])).toEqual({ learnt: true, oracle: true });
    const { engine } = setup({ minTtl: 0, maxIpsPerHostname: 1000 });
    expect(() => engine.apply([answer('x.cilium.io', '198.51.100.1', { ...KUBE_DNS, protocol: 'SCTP' } as unknown as typeof TCP_DNS)])).toThrow('server.protocol must be one of UDP, TCP');
  });

  it('915. an AAAA record holding an IPv4-mapped address teaches the IPv4 address (the proxy unmaps it, netipx.FromStdIP)', () => {
    // run() looks for an upsert of 198.51.100.1/32 and an oracle entry for 198.51.100.1.
    const mapped: EngineEvent = { type: 'dnsResponse', endpoint: 'apps/client-a', name: 'x.cilium.io', ips: [parseIp('::ffff:198.51.100.1')], ttl: 60, server: KUBE_DNS };
    expect(run(policies(dnsTo('*')), [mapped])).toEqual({ learnt: true, oracle: true });
    // An IPv6 address outside ::ffff:0:0/96 stays IPv6, and the engine's cache file holds the IPv4 text.
    const { engine } = setup({ minTtl: 0, maxIpsPerHostname: 1000 });
    engine.apply(policies(dnsTo('*')));
    const cs = engine.apply([{ ...mapped, ips: [parseIp('::ffff:198.51.100.1'), parseIp('64:ff9b::198.51.100.2')] }]);
    expect(cs.ipcache.map((d) => d.prefix).sort()).toEqual(['198.51.100.1/32', '64:ff9b::c633:6402/128']);
    expect(learnt(engine)).toEqual(['apps/client-a x.cilium.io 198.51.100.1 60', 'apps/client-a x.cilium.io 64:ff9b::c633:6402 60']);
  });

  it('a deny to the server wins over the DNS redirect: the proxy never sees the query', () => {
    const deny = cnp('deny', { endpointSelector: { matchLabels: { app: 'client-a' } }, egressDeny: [{ toEndpoints: [{ matchLabels: { app: 'server' } }], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }] }] }] });
    expect(run(policies(dnsTo('*'), deny), [answer('a.example.com', '198.51.100.1')])).toEqual({ learnt: false, oracle: false });
    // The deny covers UDP/53 only: a DNS rule on another port of the same server still sees its queries.
    const on5353 = cnp('dns-5353', { endpointSelector: {}, egress: [{ toEndpoints: [{ matchLabels: { app: 'server' } }], toPorts: [{ ports: [{ port: '5353', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }] }] });
    expect(run(policies(on5353, deny), [answer('a.example.com', '198.51.100.1', { ...KUBE_DNS, port: 5353 })])).toEqual({ learnt: true, oracle: true });
  });

  it('a server the DNS rule does not select, or another port, is not redirected: nothing is learnt', () => {
    const world = { ip: parseIp('192.0.2.53'), port: 53 };
    expect(run(policies(dnsTo('*')), [answer('a.example.com', '198.51.100.1', world)])).toEqual({ learnt: false, oracle: false });
    expect(run(policies(dnsTo('*')), [answer('a.example.com', '198.51.100.1', { ...KUBE_DNS, port: 5353 })])).toEqual({ learnt: false, oracle: false });
    // A DNS rule by CIDR selects that world address.
    expect(run(policies(dnsTo('*', { toCIDR: ['192.0.2.0/24'] })), [answer('a.example.com', '198.51.100.1', world)])).toEqual({ learnt: true, oracle: true });
  });

  it('judges the query with the state as of that event in its transaction: the server relabelled, the rule deleted, the server IP learnt just before', () => {
    const relabelled: Pod = { ...(PODS[2] as Pod), labels: { app: 'not-dns' } };
    const relabel: EngineEvent = { type: 'upsertPod', pod: relabelled, local: true };
    // The server stops being selected by the DNS rule before the answer: refused; after it: learnt.
    expect(run(policies(dnsTo('*')), [relabel, answer('a.example.com', '198.51.100.1')])).toEqual({ learnt: false, oracle: false });
    expect(run(policies(dnsTo('*')), [answer('a.example.com', '198.51.100.1'), relabel])).toEqual({ learnt: true, oracle: true });
    // Back to being the server in the same transaction: the answer after that is learnt.
    expect(run([...policies(dnsTo('*')), relabel], [{ type: 'upsertPod', pod: PODS[2] as Pod, local: true }, answer('a.example.com', '198.51.100.1')])).toEqual({ learnt: true, oracle: true });
    const deleteDns: EngineEvent = { type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'apps', name: 'dns' } };
    expect(run(policies(dnsTo('*')), [deleteDns, answer('a.example.com', '198.51.100.1')])).toEqual({ learnt: false, oracle: false });
    expect(run(policies(dnsTo('*')), [answer('a.example.com', '198.51.100.1'), deleteDns])).toEqual({ learnt: true, oracle: true });
    // The server's address is a learnt IP of a name a DNS rule selects by toFQDNs: an answer earlier in the same transaction gives it that identity.
    const viaName = cnp('dns-by-name', { endpointSelector: { matchLabels: { app: 'client-a' } }, egress: [{ toFQDNs: [{ matchName: 'ns.cilium.io' }], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }] }] });
    const resolver = { ip: parseIp('198.51.100.9'), port: 53 };
    expect(run(policies(dnsTo('*'), viaName), [answer('ns.cilium.io', '198.51.100.9'), answer('a.example.com', '198.51.100.1', resolver)])).toEqual({ learnt: true, oracle: true });
    expect(run(policies(dnsTo('*'), viaName), [answer('a.example.com', '198.51.100.1', resolver), answer('ns.cilium.io', '198.51.100.9')])).toEqual({ learnt: false, oracle: false });
  });

  it('validates the server, naming the field', () => {
    const { engine } = setup({ minTtl: 0, maxIpsPerHostname: 1000 });
    const bad = (server: unknown): EngineEvent => ({ ...(answer('a.example.com', '198.51.100.1') as object), server } as EngineEvent);
    expect(() => engine.apply([bad('10.0.0.3')])).toThrow('event #0 (dnsResponse): server must be {ip, port}');
    expect(() => engine.apply([bad({ ip: '10.0.0.3', port: 53 })])).toThrow('server.ip must be an IP address from parseIp');
    expect(() => engine.apply([bad({ ip: parseIp('10.0.0.3'), port: 0 })])).toThrow('server.port must be a port number');
  });
});

describe('the DNS cache finds the live IPs inside a CIDR by prefix', () => {
  it('gives exactly the live IPs inside, looking at no other (property, against a scan)', () => {
    const addr = fc.tuple(fc.constantFrom(10, 52, 198, 255), fc.constantFrom(0, 51, 255), fc.constantFrom(0, 1, 100), fc.integer({ min: 0, max: 255 })).map((b) => b.join('.'));
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.record({ ips: fc.array(addr, { minLength: 1, maxLength: 6 }), ttl: fc.integer({ min: 1, max: 5 }) }), fc.integer({ min: 1, max: 3 })), { maxLength: 30 }),
        fc.array(fc.tuple(addr, fc.integer({ min: 0, max: 32 })), { minLength: 1, maxLength: 5 }),
        (steps, cidrs) => {
          const cache = new DnsCache();
          for (const st of steps) {
            if (typeof st === 'number') cache.advance(st, () => undefined);
            else cache.record('apps/a', 'n.example.com', st.ips.map(parseIp), st.ttl, () => undefined);
          }
          const live = [...cache.liveIps()];
          for (const [a, len] of cidrs) {
            const cidr = parseCidr(`${a}/${len}`);
            const got: number[] = [];
            const seen = cache.liveWithin(cidr, (ip) => got.push(ip as number));
            const want = live.filter((ip) => cidrContainsIp(cidr, parseIp(ipText(ip as number))));
            expect(got.sort()).toEqual([...want].sort());
            expect(seen).toBe(want.length);
          }
        },
      ),
      { numRuns: fcRuns(300), ...fcReplay() },
    );
  });
});

describe('FQDN scale: restore with identity numbers, the combination limit, O(1) for unrelated transactions', () => {
  const dnsPolicy = cnp('dns', { endpointSelector: {}, egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }] }] });
  const fqdn = (name: string, app: string, sels: object[]): Policy => cnp(name, { endpointSelector: { matchLabels: { app } }, egress: [{ toFQDNs: sels, toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }] }] }] });
  const answer = (endpoint: string, name: string, ips: string[], ttl = 60): EngineEvent => ({ type: 'dnsResponse', endpoint, name, ips: ips.map(parseIp), ttl });
  const base: EngineEvent[] = [{ type: 'upsertNamespace', name: 'apps', labels: {} }, ...PODS.map((pod) => ({ type: 'upsertPod' as const, pod, local: true }))];

  it('a restored DNS cache keeps every node-local identity number: restore + the cluster state in another order = the pinned maps and ipcache, 0 deltas', () => {
    const policies = [
      dnsPolicy,
      fqdn('p-pattern', 'client-a', [{ matchPattern: '*.example.com' }]),
      fqdn('p-name', 'client-b', [{ matchName: 'a.example.com' }, { matchPattern: '*.cilium.io' }]),
      cnp('p-cidr', { endpointSelector: { matchLabels: { app: 'client-a' } }, egressDeny: [{ toCIDR: ['198.51.100.0/30'], toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }] }] }] }),
    ];
    const a = new Engine();
    a.apply([...base, policies[0] as Policy, policies[1] as Policy].map((p) => ('type' in p ? p : { type: 'upsertPolicy' as const, policy: p })) as EngineEvent[]);
    // A history that numbers identities in an order a fresh start would not: combinations first, then the rest.
    a.apply([answer('apps/client-a', 'a.example.com', ['198.51.100.1', '198.51.100.9'])]);
    a.apply([{ type: 'upsertPolicy', policy: policies[2] as Policy }]);
    a.apply([answer('apps/client-b', 'x.cilium.io', ['203.0.113.7']), answer('apps/client-a', 'b.example.com', ['198.51.100.2'])]);
    a.apply([{ type: 'upsertPolicy', policy: policies[3] as Policy }, { type: 'advanceTime', seconds: 5 }]);
    a.apply([{ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'apps', name: 'p-pattern' } }, { type: 'upsertPolicy', policy: policies[1] as Policy }]);
    const file = a.dnsCacheFile();
    expect(file).toContain('"identity":');

    const b = new Engine();
    b.restoreDnsCache(file, 'dns.jsonl');
    b.apply([...base, ...[...policies].reverse().map((policy) => ({ type: 'upsertPolicy' as const, policy }))]);
    // What a reconcile of b against a's pinned maps and ipcache writes: nothing.
    expect(diffEndpointMaps(endpointMaps(a), endpointMaps(b))).toEqual([]);
    expect(ipcache(b)).toEqual(ipcache(a));
    // And both go on alike.
    for (const e of [a, b]) e.apply([answer('apps/client-a', 'c.example.com', ['198.51.100.3']), { type: 'advanceTime', seconds: 1 }]);
    expect(ipcache(b)).toEqual(ipcache(a));
  });

  it('past maxSelectorCombinations a learnt IP needing a new combination stays unselected (fail closed), counted; it is selected once a combination goes', () => {
    const engine = new Engine({ dns: { maxSelectorCombinations: 1 } });
    engine.apply([...base, { type: 'upsertPolicy', policy: dnsPolicy }, { type: 'upsertPolicy', policy: fqdn('p1', 'client-a', [{ matchPattern: '*.example.com' }, { matchName: 'a.example.com' }, { matchPattern: '*.cilium.io' }, { matchName: 'x.cilium.io' }]) }]);
    const world = engine.identityOfIp(parseIp('192.0.2.77'));
    const first = engine.apply([answer('apps/client-a', 'a.example.com', ['198.51.100.1'], 10)]);
    expect(first.ipcache.map((d) => [d.op, d.prefix])).toEqual([['upsert', '198.51.100.1/32']]);
    expect(first.work.fqdnIdentitiesRefused).toBe(0);
    const second = engine.apply([answer('apps/client-a', 'x.cilium.io', ['203.0.113.7'], 60), answer('apps/client-a', 'b.example.com', ['198.51.100.2'], 60)]);
    // x.cilium.io needs a second combination: refused, no entry, the IP is world; b.example.com needs only its selector's identity.
    expect(second.work.fqdnIdentitiesRefused).toBe(1);
    expect(second.ipcache.map((d) => d.prefix)).toEqual(['198.51.100.2/32']);
    expect(engine.identityOfIp(parseIp('203.0.113.7'))).toBe(world);
    expect(engineDecision(engine, stateOf(engine), { from: 'apps/client-a', to: '203.0.113.7', port: 443, protocol: 'TCP' }).allowed).toBe(false);
    expect(engineDecision(engine, stateOf(engine), { from: 'apps/client-a', to: '198.51.100.2', port: 443, protocol: 'TCP' }).allowed).toBe(true);
    // The first combination expires: the refused IP gets its identity in the same transaction.
    const expire = engine.apply([{ type: 'advanceTime', seconds: 11 }]);
    expect(expire.ipcache.map((d) => [d.op, d.prefix]).sort()).toEqual([['delete', '198.51.100.1/32'], ['upsert', '203.0.113.7/32']]);
    expect(engineDecision(engine, stateOf(engine), { from: 'apps/client-a', to: '203.0.113.7', port: 443, protocol: 'TCP' }).allowed).toBe(true);
  });

  it('a transaction that touches no DNS state and no FQDN selector re-identifies no learnt IP; a pod taking a learnt IP, a CIDR over some, a selector change re-identify exactly those', () => {
    const { engine } = setup({ minTtl: 0, maxIpsPerHostname: 1000 });
    engine.apply([{ type: 'upsertPolicy', policy: dnsPolicy }, { type: 'upsertPolicy', policy: fqdn('p1', 'client-a', [{ matchPattern: '*.example.com' }]) }]);
    const ips = Array.from({ length: 400 }, (_, i) => `198.51.${100 + (i >> 8)}.${i & 255}`);
    for (let i = 0; i < ips.length; i += 50) engine.apply([answer('apps/client-b', `n${i}.example.com`, ips.slice(i, i + 50), 600)]);
    const unrelatedPod: Pod = { namespace: 'apps', name: 'other', labels: { app: 'other' }, ip: parseIp('10.0.0.50'), serviceAccount: 'default', ports: [] };
    const checked = (events: EngineEvent[]): number => engine.apply(events).work.fqdnIpsChecked;
    expect(checked([{ type: 'upsertPod', pod: unrelatedPod, local: true }])).toBe(0);
    expect(checked([{ type: 'upsertPolicy', policy: cnp('plain', { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{}] }] }) }])).toBe(0);
    expect(checked([{ type: 'upsertNamespace', name: 'other', labels: { a: 'b' } }])).toBe(0);
    expect(checked([{ type: 'deletePod', namespace: 'apps', name: 'other' }])).toBe(0);
    // A pod takes one learnt IP: that IP only.
    expect(checked([{ type: 'upsertPod', pod: { ...unrelatedPod, ip: parseIp(ips[7] as string) }, local: true }])).toBe(1);
    // A CIDR identity over 4 learnt IPs: those, and only those are looked at (not the 400).
    const cidrAdded = engine.apply([{ type: 'upsertPolicy', policy: cnp('cidr', { endpointSelector: { matchLabels: { app: 'client-a' } }, egress: [{ toCIDR: ['198.51.100.0/30'] }] }) }]).work;
    expect([cidrAdded.fqdnIpsChecked, cidrAdded.fqdnIpsScanned]).toEqual([4, 4]);
    // A /23 over 256 + 144 of them, then a /25 over 128, freed: those.
    expect(engine.apply([{ type: 'upsertPolicy', policy: cnp('cidr', { endpointSelector: { matchLabels: { app: 'client-a' } }, egress: [{ toCIDR: ['198.51.101.0/25'] }] }) }]).work.fqdnIpsScanned).toBe(4 + 128);
    expect(engine.apply([{ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'apps', name: 'cidr' } }]).work.fqdnIpsScanned).toBe(128);
    // A new FQDN selector in force: every learnt IP (the selector sets may change).
    expect(checked([{ type: 'upsertPolicy', policy: fqdn('p2', 'client-b', [{ matchName: 'n0.example.com' }]) }])).toBe(ips.length);
  });
});

/** The cluster as engineDecision reads it (only to name endpoints): the pods, and the external IPs by name. */
function stateOf(_engine: Engine): ClusterState {
  let state: ClusterState = applyEventToCluster(EMPTY_CLUSTER, { type: 'upsertNamespace', name: 'apps', labels: {} });
  for (const pod of PODS) state = applyEventToCluster(state, { type: 'upsertPod', pod, local: true });
  for (const ip of ['203.0.113.7', '198.51.100.2']) state = upsertExternal(state, { name: ip, ip: parseIp(ip) });
  return state;
}

function ipText(key: number): string {
  const v = key >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}
